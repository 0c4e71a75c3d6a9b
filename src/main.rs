use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// One binary that owns a website end to end: authoritative DNS and the web edge.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
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
    let _log = foobar::log::init();
    let result = match cli.command {
        Some(Command::CheckZone { origin, files }) => {
            foobar::check_zones(origin.as_deref(), &files)
        }
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
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

fn serve(args: ServeArgs) -> anyhow::Result<bool> {
    let config = foobar::config(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.check {
            foobar::check(&config).await?;
            println!("configuration, zones, certificate and database are valid");
            return Ok(true);
        }
        let loaded = foobar::load(&config).await?;
        let bound = foobar::bind(&config, &loaded)?;
        foobar::run(loaded, bound, CancellationToken::new()).await?;
        Ok(true)
    })
}
