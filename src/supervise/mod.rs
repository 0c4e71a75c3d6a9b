//! The serving process's life: started afresh or by the process it replaces, serving, and
//! handing over to a successor (an upgrade, or a reload that cannot be applied in place).
//! Here: start and serve; `upgrade`, `reload`, `signals` and the control socket's `commands`
//! each in their own file.
//!
//! ```text
//!  start ─▶ control socket, load, bind (or take over) ─▶ serve ─▶ [successor: "ready"]
//!                                                          ▲         │
//!        SIGUSR2, `foobar upgrade` ─▶ upgrade ─────────────┘         ▼
//!        SIGHUP, `foobar reload`   ─▶ reload: in place, or upgrade   drain, exit
//! ```

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context;
use foobar_dns::Dns;
use foobar_edge::Edge;
use foobar_net::quic::{Generation, QuicRouting};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    Config, Draining, Loaded,
    admin::Admin,
    bind, control, health,
    inheritance::{Inherited, ListeningSockets, Successor},
    load,
};

mod commands;
mod reload;
mod signals;
mod upgrade;

use signals::Signals;

/// How this process was started, to start its successor the same way.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary on disk: a new version replaces the file, and the successor runs it.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub config_path: Option<PathBuf>,
}

impl Launch {
    /// This process's binary and arguments. Called at start: once the binary on disk is
    /// replaced, the running one's own path (/proc/self/exe) names a deleted file.
    pub fn current(config_path: Option<PathBuf>) -> anyhow::Result<Launch> {
        Ok(Launch {
            program: std::env::current_exe().context("finding this binary")?,
            args: std::env::args_os().skip(1).collect(),
            config_path,
        })
    }
}

/// Serves `config` until stopped, or until a successor has taken over.
pub async fn serve(
    launch: Launch,
    config: Config,
    mut inherited: Option<Inherited>,
) -> anyhow::Result<()> {
    let running = match start(&launch, &config, inherited.as_mut()).await {
        Ok(running) => running,
        Err(e) => {
            if let Some(inherited) = inherited.as_mut() {
                inherited.failed(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    let Running {
        supervisor,
        servers,
    } = running;
    if let Some(inherited) = inherited {
        take_over(inherited, &supervisor).await;
    }
    // The handlers are in place before the process says it serves: a SIGTERM sent the moment
    // it does must stop it cleanly, not kill it.
    let signals = Signals::install();
    announce(&supervisor.state_dir);
    let control = tokio::spawn(supervisor.clone().control());
    tokio::spawn(supervisor.clone().signals(signals));
    let result = servers.await.context("the servers stopped")?;
    control.abort();
    let pid_file = control::pid_path(&supervisor.state_dir);
    if std::fs::read_to_string(&pid_file)
        .is_ok_and(|pid| pid.trim() == std::process::id().to_string())
    {
        let _ = std::fs::remove_file(pid_file);
    }
    result?;
    info!("stopped");
    Ok(())
}

struct Running {
    supervisor: Supervisor,
    servers: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Loads, binds (taking over what the predecessor hands over) and starts serving.
async fn start(
    launch: &Launch,
    config: &Config,
    mut inherited: Option<&mut Inherited>,
) -> anyhow::Result<Running> {
    let state_dir = config.state_dir.clone();
    let control = match inherited.as_deref_mut() {
        Some(inherited) => inherited.unix("control")?,
        None => None,
    };
    let control = match control {
        Some(control) => control,
        None => control::bind(&state_dir)?,
    };
    let draining = Draining::default();
    let loaded = load(config, &draining).await?;
    let mut handover = ListeningSockets::default();
    let mut bound = bind(config, &loaded, inherited.as_deref_mut(), &mut handover)?;
    handover.add("control".to_string(), &control)?;
    let generation = match inherited.as_deref() {
        Some(inherited) => inherited.generation.clone(),
        None => Generation::random().context("no system randomness")?,
    };
    let quic = QuicRouting::new(generation.clone());
    let (predecessor_gone, gone) = watch::channel(inherited.is_none());
    if let Some(inherited) = inherited.as_deref() {
        quic.attach_predecessor(
            inherited.quic_link.try_clone()?,
            generation.id.wrapping_sub(1),
        )?;
    }
    let shutdown = CancellationToken::new();
    let Loaded {
        dns,
        edge,
        app,
        store,
    } = loaded;
    let drain = edge.drain_timeout();
    let https_port = bound
        .edge
        .https_addr()
        .map_or(config.edge.https.port(), |addr| addr.port());
    let acting = Arc::new(std::sync::OnceLock::new());
    let acme_status = Arc::new(foobar_acme::Status::default());
    if let Some(listener) = bound.admin.take() {
        let admin = admin_of(config, &dns, acting.clone(), acme_status.clone());
        tokio::spawn(admin.serve(listener, shutdown.clone()));
    }
    let checks = shutdown.child_token();
    let memory = health::Memory::default();
    health::spawn(&config.dns.health, https_port, &dns, &memory, &checks);
    crate::dnssec::spawn(config, &dns, &store, &checks);
    crate::acme::spawn_https_records(&dns, &edge, &shutdown);
    let acme_stop = shutdown.child_token();
    if let Some(acme) = &config.acme {
        crate::acme::spawn(
            acme,
            &config.state_dir,
            (&dns, &edge, &store),
            &acme_status,
            &acme_stop,
        );
    }
    // DNS over TLS answers with the edge's certificates; TLS 1.3 only, as RFC 9103 asks of the
    // zone transfers it carries (and as Knot serves it).
    let dot = foobar_dns::TlsSockets {
        config: if bound.dot.is_empty() {
            None
        } else {
            Some(Arc::new(edge.tls_server_config(&[b"dot"], false)?))
        },
        listeners: bound.dot,
        quic_config: if bound.doq.is_empty() {
            None
        } else {
            Some(Arc::new(edge.tls_server_config(&[b"doq"], false)?))
        },
        quic: bound.doq,
        quic_routing: Some(quic.clone()),
    };
    let servers = {
        let (dns, edge, shutdown, quic) =
            (dns.clone(), edge.clone(), shutdown.clone(), quic.clone());
        tokio::spawn(async move {
            let (dns_result, edge_result) = tokio::join!(
                dns.run(bound.dns, dot, shutdown.clone(), drain),
                edge.run(bound.edge, app, shutdown.clone(), quic)
            );
            dns_result?;
            edge_result?;
            Ok(())
        })
    };
    control.set_nonblocking(true)?;
    let supervisor = Supervisor {
        inner: Arc::new(Inner {
            launch: launch.clone(),
            config: Mutex::new(config.clone()),
            draining,
            checks: Mutex::new(Checks {
                stop: checks,
                port: https_port,
            }),
            health: memory,
            acme: Mutex::new(acme_stop),
            acme_status,
            handover: Mutex::new(Some(handover)),
            quic,
            dns,
            edge,
            shutdown,
            busy: tokio::sync::Mutex::new(()),
            predecessor_gone,
            gone,
            successor: Mutex::new(None),
            control: Mutex::new(Some(control)),
        }),
        state_dir,
    };
    let _ = acting.set(supervisor.clone());
    Ok(Running {
        supervisor,
        servers,
    })
}

/// What the admin listener serves: every crate's metrics, and the status `foobar ctl` shows.
fn admin_of(
    config: &Config,
    dns: &Dns,
    acting: Arc<std::sync::OnceLock<Supervisor>>,
    acme: Arc<foobar_acme::Status>,
) -> Admin {
    let started = crate::admin::unix_now();
    let listeners = serde_json::json!({
        "dns": config.dns.listen,
        "dns_tls": config.dns.tls_listen,
        "dns_quic": config.dns.quic_listen,
        "dns_https": config.dns.https_path,
        "https": config.edge.https,
        "http": config.edge.http,
        "admin": config.admin.listen,
    });
    let collectors: Vec<Box<dyn foobar_metrics::Collector>> = vec![
        Box::new(dns.collector()),
        Box::new(foobar_edge::metrics::EdgeCollector),
        Box::new(foobar_app::metrics::AppCollector),
        Box::new(foobar_acme::AcmeCollector(acme.clone())),
    ];
    let status_dns = dns.clone();
    Admin::new(collectors, dns.clone(), acting, acme, move || {
        let dns = &status_dns;
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "started": started,
            "uptime_seconds": crate::admin::unix_now().saturating_sub(started),
            "listeners": listeners,
            "zones": dns.zone_status(),
        })
    })
}

/// The old process hands over: it is told this one serves, stops accepting, and is then
/// watched until it exits.
async fn take_over(mut inherited: Inherited, supervisor: &Supervisor) {
    if let Err(e) = inherited.ready() {
        warn!(error = %e, "cannot tell the old process this one serves");
    }
    let inherited = match tokio::task::spawn_blocking(move || {
        let result = inherited.handed_over();
        (inherited, result)
    })
    .await
    {
        Ok((inherited, Ok(()))) => {
            info!(
                pid = inherited.predecessor,
                "took over from the previous process; it drains and exits"
            );
            inherited
        }
        Ok((inherited, Err(e))) => {
            warn!(error = %e, "the previous process did not hand over");
            inherited
        }
        Err(e) => {
            warn!(error = %e, "waiting for the previous process");
            return;
        }
    };
    // The stream closes when the old process exits: its QUIC connections are gone too.
    let supervisor = supervisor.clone();
    tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut &inherited.parent, &mut rest);
        info!(pid = inherited.predecessor, "the previous process exited");
        supervisor.inner.quic.detach();
        let _ = supervisor.inner.predecessor_gone.send(true);
    });
}

/// This process serves: the PID file names it, and systemd hears so.
fn announce(state_dir: &Path) {
    let pid = std::process::id();
    write_pid_file(state_dir, pid);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::MainPid(pid),
        sd_notify::NotifyState::Ready,
    ]);
    info!(pid, "serving");
}

fn write_pid_file(state_dir: &Path, pid: u32) {
    if let Err(e) = foobar_state::write(
        &control::pid_path(state_dir),
        format!("{pid}\n").as_bytes(),
        foobar_state::Access::Public,
    ) {
        warn!(error = %e, "cannot write the PID file");
    }
}

/// What upgrades and reloads act on.
#[derive(Clone)]
pub(crate) struct Supervisor {
    inner: Arc<Inner>,
    state_dir: PathBuf,
}

/// The running health checks: what stops them, and the HTTPS port they probe by default.
struct Checks {
    stop: CancellationToken,
    port: u16,
}

struct Inner {
    launch: Launch,
    config: Mutex<Config>,
    /// Set when this process stops serving: `/readyz` says so first.
    draining: Draining,
    checks: Mutex<Checks>,
    /// What the health checks know, for the checkers a reload starts.
    health: health::Memory,
    /// What stops the ACME client, and what it knows.
    acme: Mutex<CancellationToken>,
    acme_status: Arc<foobar_acme::Status>,
    /// Duplicates of the listening sockets, for a successor; dropped once they are not needed
    /// (a successor has them, or the server stops), so that a stopped server's ports close.
    handover: Mutex<Option<ListeningSockets>>,
    quic: QuicRouting,
    dns: Dns,
    edge: Edge,
    shutdown: CancellationToken,
    /// One upgrade or reload at a time.
    busy: tokio::sync::Mutex<()>,
    predecessor_gone: watch::Sender<bool>,
    gone: watch::Receiver<bool>,
    /// The process that took over, kept joined until this one exits.
    successor: Mutex<Option<Successor>>,
    control: Mutex<Option<std::os::unix::net::UnixListener>>,
}

/// The value in `mutex`, also if a thread panicked holding it (every value here stays whole).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
