use std::{path::PathBuf, process::ExitCode};

use clap::{Args, CommandFactory, Parser, Subcommand};

// jemalloc rather than the C library's allocator: the edge allocates and frees a few dozen
// small buffers per request on whichever worker thread runs it, where jemalloc's per-thread
// caches cost less (benches/instructions.sh: 6-8% fewer instructions per HTTP/1.1 and HTTP/2
// request; BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The version and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FOOBAR_REVISION"),
    ")"
);

/// One binary that owns a website end to end: authoritative DNS and the web edge.
#[derive(Debug, Parser)]
#[command(name = "foobar", version = VERSION, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS and the web edge (the default when no command is given).
    Serve(ServeArgs),
    /// Validate zone files; prints `file:line: reason` and exits non-zero on error.
    CheckZone {
        /// The zone's origin; default: a leading $ORIGIN, else the file name without ".zone".
        #[arg(long)]
        origin: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replace the running server with the binary on disk, without a gap: the new process
    /// takes over the sockets, then the old one drains and exits. Exits non-zero, saying why,
    /// if the new process does not start (the old one then serves on).
    Upgrade {
        #[command(flatten)]
        args: ControlArgs,
        /// Start this binary rather than the one the server was started from (e.g. a new
        /// version installed beside the old).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
    /// Re-read the configuration: applied in place where it can be, else by an upgrade to the
    /// same binary. A file that does not load changes nothing.
    Reload(ControlArgs),
    /// Write the manual pages (roff: foobar.1 and one per command) into a folder, for
    /// packaging.
    #[command(hide = true)]
    Manpages { folder: PathBuf },
    /// DNSSEC: the DS records of a signed zone, for its parent (a registrar).
    Dnssec {
        #[command(subcommand)]
        request: DnssecCommand,
    },
    /// Ask the running server, over its admin listener: its status, its zones; reload.
    Ctl {
        /// The configuration the server runs with (its [admin] listen is asked).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The admin listener's address, instead of the configuration's.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// The server's answer as JSON, for scripts.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        request: CtlCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DnssecCommand {
    /// Print the DS records of ZONE (signed here: `dnssec = true`) to give the registrar, one
    /// per key, in zone-file form.
    Ds {
        /// The configuration the server runs with (its state_dir holds the keys).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The zone, e.g. foobar.com.
        zone: String,
    },
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Version, uptime, listeners, zones with serials and last load, certificate, database.
    Status,
    /// Re-read the configuration (as `foobar reload`).
    Reload,
    /// The zones served.
    Zone {
        #[command(subcommand)]
        request: ZoneCommand,
    },
    /// Certificates from the ACME CA.
    Acme {
        #[command(subcommand)]
        request: AcmeCommand,
    },
    /// The signed zones' keys.
    Dnssec {
        #[command(subcommand)]
        request: CtlDnssecCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CtlDnssecCommand {
    /// Roll ZONE's keys to ALGORITHM ("ecdsap256sha256" or "ed25519"): new keys sign at once,
    /// are published once those signatures are cached, and replace the old ones once the
    /// parent serves the new DS (RFC 6781 section 4.1.4). Set `dnssec_algorithm` to it too.
    Algorithm { zone: String, algorithm: String },
}

#[derive(Debug, Subcommand)]
enum AcmeCommand {
    /// Order every ACME certificate again now, due or not.
    Renew,
}

#[derive(Debug, Subcommand)]
enum ZoneCommand {
    /// Every zone with its serial, records, state and last load.
    List,
    /// Load one zone again: its file, or a refresh from its primaries.
    Reload { name: String },
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// The configuration the server runs with (it names the state_dir where the server's
    /// control socket is).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (TOML); without it the built-in defaults apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Load and validate the configuration and zones, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: the environment naming inherited sockets is read and cleared.
    let inherited = match foobar::Inherited::from_env() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("Error: sockets from the previous process: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The log format is the configuration's: read it first when serving (a file that does
    // not load is reported once logging runs, in text).
    let format = match &cli.command {
        Some(Command::Serve(args)) => foobar::log_format(args.config.as_deref()),
        None => foobar::log_format(cli.serve.config.as_deref()),
        Some(_) => foobar::log::Format::Text,
    };
    let _log = foobar::log::init(format);
    let result = match cli.command {
        Some(Command::CheckZone { origin, files }) => {
            foobar::check_zones(origin.as_deref(), &files)
        }
        Some(Command::Upgrade { args, binary }) => match binary {
            Some(binary) => match std::path::absolute(&binary) {
                Ok(path) => control(args, &format!("upgrade {}", path.display())),
                Err(e) => Err(anyhow::anyhow!("{}: {e}", binary.display())),
            },
            None => control(args, "upgrade"),
        },
        Some(Command::Reload(args)) => control(args, "reload"),
        Some(Command::Manpages { folder }) => std::fs::create_dir_all(&folder)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &folder))
            .map(|()| true)
            .map_err(|e| anyhow::anyhow!("{}: {e}", folder.display())),
        Some(Command::Ctl {
            config,
            admin,
            json,
            request,
        }) => {
            let request = match request {
                CtlCommand::Status => foobar::ctl::Request::Status,
                CtlCommand::Reload => foobar::ctl::Request::Reload,
                CtlCommand::Zone {
                    request: ZoneCommand::List,
                } => foobar::ctl::Request::ZoneList,
                CtlCommand::Zone {
                    request: ZoneCommand::Reload { name },
                } => foobar::ctl::Request::ZoneReload(name),
                CtlCommand::Acme {
                    request: AcmeCommand::Renew,
                } => foobar::ctl::Request::AcmeRenew,
                CtlCommand::Dnssec {
                    request: CtlDnssecCommand::Algorithm { zone, algorithm },
                } => foobar::ctl::Request::AlgorithmRollover(zone, algorithm),
            };
            foobar::ctl::address(config.as_deref(), admin)
                .and_then(|admin| foobar::ctl::run(admin, request, json))
        }
        Some(Command::Dnssec {
            request: DnssecCommand::Ds { config, zone },
        }) => foobar::dnssec_ds(config.as_deref(), &zone),
        Some(Command::Serve(args)) => serve(args, inherited),
        None => serve(cli.serve, inherited),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs, mut inherited: Option<foobar::Inherited>) -> anyhow::Result<bool> {
    let config = match foobar::config(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            if let Some(inherited) = inherited.as_mut() {
                inherited.failed(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    let launch = foobar::Launch::current(args.config.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.check {
            foobar::check(&config).await?;
            println!("configuration, zones, certificate and database are valid");
            return Ok(true);
        }
        foobar::serve(launch, config, inherited).await?;
        Ok(true)
    })
}

/// `foobar upgrade` and `foobar reload`: asks the running server, prints its answer.
fn control(args: ControlArgs, command: &str) -> anyhow::Result<bool> {
    // Only the state_dir is needed, and it is found even in a file the server would refuse:
    // the server then says what is wrong with it.
    let state_dir = foobar::state_dir(args.config.as_deref())?;
    let answer = foobar::ask_server(&state_dir, command)?;
    match answer.strip_prefix("ok ") {
        Some(done) => {
            println!("{done}");
            Ok(true)
        }
        None => {
            eprintln!("{}", answer.strip_prefix("error ").unwrap_or(&answer));
            Ok(false)
        }
    }
}
