//! The serving process's life: started afresh or by the process it replaces, serving, and
//! handing over to a successor (an upgrade, or a reload that cannot be applied in place).
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
    time::Duration,
};

use anyhow::Context;
use foobar_dns::Dns;
use foobar_edge::{Edge, Generation, Handoff};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    sync::watch,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    Config, Draining, Loaded,
    admin::Admin,
    bind, control,
    handoff::{self, Handover, Inherited, Successor},
    health, load,
};

/// How long a new process may take to load and start serving before the upgrade is given up.
const START_WAIT: Duration = Duration::from_secs(60);

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

/// The signals the serving process acts on, their handlers installed.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    upgrade: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            upgrade: signal(SignalKind::user_defined2())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
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
    let mut handover = Handover::default();
    let mut bound = bind(config, &loaded, inherited.as_deref_mut(), &mut handover)?;
    handover.add("control".to_string(), &control)?;
    let generation = match inherited.as_deref() {
        Some(inherited) => inherited.generation.clone(),
        None => Generation::random().context("no system randomness")?,
    };
    let quic = Handoff::new(generation.clone());
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
    let servers = {
        let (dns, edge, shutdown, quic) =
            (dns.clone(), edge.clone(), shutdown.clone(), quic.clone());
        tokio::spawn(async move {
            let (dns_result, edge_result) = tokio::join!(
                dns.run(bound.dns, shutdown.clone(), drain),
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
            checks: Mutex::new((checks, https_port)),
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

struct Inner {
    launch: Launch,
    config: Mutex<Config>,
    /// Set when this process stops serving: `/readyz` says so first.
    draining: Draining,
    /// What stops the running health checks, and the HTTPS port they probe by default.
    checks: Mutex<(CancellationToken, u16)>,
    /// What the health checks know, for the checkers a reload starts.
    health: health::Memory,
    /// What stops the ACME client, and what it knows.
    acme: Mutex<CancellationToken>,
    acme_status: Arc<foobar_acme::Status>,
    /// Duplicates of the listening sockets, for a successor; dropped once they are not needed
    /// (a successor has them, or the server stops), so that a stopped server's ports close.
    handover: Mutex<Option<Handover>>,
    quic: Handoff,
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

impl Supervisor {
    /// Starts the binary on disk with this process's sockets; once it serves, this process
    /// stops accepting and drains. The new process's PID, or why it did not start (this
    /// process then serves on, untouched).
    async fn upgrade(&self, program: Option<PathBuf>) -> Result<u32, String> {
        let _busy = self
            .inner
            .busy
            .try_lock()
            .map_err(|_| "an upgrade or reload is already in progress".to_string())?;
        self.upgrade_now(program).await
    }

    /// Upgrades to `program`, or to the binary this process was started from.
    async fn upgrade_now(&self, program: Option<PathBuf>) -> Result<u32, String> {
        if self.inner.shutdown.is_cancelled() {
            return Err("this process is stopping".to_string());
        }
        // One handover at a time: a predecessor still draining goes first.
        let mut gone = self.inner.gone.clone();
        let wait = self.inner.edge.drain_timeout() + Duration::from_secs(5);
        if tokio::time::timeout(wait, gone.wait_for(|gone| *gone))
            .await
            .is_err()
        {
            return Err("the previous process is still draining".to_string());
        }
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now().map_err(|e| e.to_string())?,
        ]);
        let program = program.unwrap_or_else(|| self.inner.launch.program.clone());
        info!(program = %program.display(), "upgrade: starting the new process");
        let result = self.hand_over(&program).await;
        match &result {
            Ok(pid) => info!(
                pid,
                "upgrade: the new process serves; this one drains and exits"
            ),
            Err(reason) => {
                error!(%reason, "upgrade failed; this process serves on");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
        result
    }

    async fn hand_over(&self, program: &Path) -> Result<u32, String> {
        let launch = &self.inner.launch;
        let successor = {
            let handover = lock(&self.inner.handover);
            let Some(handover) = handover.as_ref() else {
                return Err("this process has handed its sockets over already".to_string());
            };
            handoff::spawn(
                program,
                &launch.args,
                handover,
                self.inner.quic.generation(),
            )
            .map_err(|e| format!("{e:#}"))?
        };
        let pid = successor.child.id();
        let link = successor.quic_link.try_clone().map_err(|e| e.to_string())?;
        if let Err(e) = self.inner.quic.attach_successor(link, successor.generation) {
            return Err(self.abandon(successor, e.to_string()).await);
        }
        let answer = match wait_ready(&successor).await {
            Ok(answer) => answer,
            Err(reason) => return Err(self.abandon(successor, reason).await),
        };
        info!(pid, answer = %answer, "upgrade: the new process is ready");
        // The PID file names the serving process from the moment the upgrade is answered.
        write_pid_file(&self.state_dir, pid);
        // From here the new process takes every new connection; this one stops accepting.
        self.inner.draining.set();
        self.inner.quic.successor_ready();
        self.inner.shutdown.cancel();
        lock(&self.inner.control).take();
        lock(&self.inner.handover).take();
        let mut stream = successor.stream.try_clone().map_err(|e| e.to_string())?;
        if let Err(e) = std::io::Write::write_all(&mut stream, b"done\n") {
            warn!(error = %e, "telling the new process it serves");
        }
        *lock(&self.inner.successor) = Some(successor);
        Ok(pid)
    }

    /// Gives up a successor that did not start: it is stopped if still running, and this
    /// process keeps every packet. Returns `reason`.
    async fn abandon(&self, mut successor: Successor, reason: String) -> String {
        self.inner.quic.detach();
        let _ = successor.child.kill();
        match tokio::task::spawn_blocking(move || successor.child.wait()).await {
            Ok(Ok(status)) => format!("{reason} ({status})"),
            _ => reason,
        }
    }

    /// Reads the configuration file again. What can change in place does; a change that needs
    /// new sockets is made by an upgrade to the same binary. A file that does not load changes
    /// nothing.
    pub(crate) async fn reload(&self) -> Result<String, String> {
        let _busy = self
            .inner
            .busy
            .try_lock()
            .map_err(|_| "an upgrade or reload is already in progress".to_string())?;
        let config = crate::config(self.inner.launch.config_path.as_deref())
            .map_err(|e| format!("{e:#}"))?;
        let current = lock(&self.inner.config).clone();
        if needs_new_sockets(&current, &config) {
            info!("reload: listen addresses or state_dir changed; a new process takes over");
            return self
                .upgrade_now(None)
                .await
                .map(|pid| format!("reloaded by a new process, pid {pid}"));
        }
        if config != current {
            // Everything is loaded anew (zones, certificate, database, site) and only then put
            // in place of what serves: a part that fails to load changes nothing.
            let file = self
                .inner
                .launch
                .config_path
                .as_deref()
                .map_or_else(String::new, |path| format!("{}: ", path.display()));
            let Loaded {
                dns,
                edge,
                app,
                store,
            } = load(&config, &self.inner.draining)
                .await
                .map_err(|e| format!("{file}{e:#}"))?;
            self.inner
                .edge
                .adopt(&edge, app)
                .map_err(|e| format!("{file}{e:#}"))?;
            self.inner.dns.adopt(dns);
            {
                // The health checks start over with the new settings.
                let mut checks = lock(&self.inner.checks);
                checks.0.cancel();
                checks.0 = self.inner.shutdown.child_token();
                let (stop, port) = (checks.0.clone(), checks.1);
                health::spawn(
                    &config.dns.health,
                    port,
                    &self.inner.dns,
                    &self.inner.health,
                    &stop,
                );
            }
            let before = lock(&self.inner.config).clone();
            if before.acme != config.acme || before.app != config.app {
                // Another CA or account, or another database to share through: the client
                // starts over with them.
                let mut stop = lock(&self.inner.acme);
                stop.cancel();
                *stop = self.inner.shutdown.child_token();
                if let Some(acme) = &config.acme {
                    crate::acme::spawn(
                        acme,
                        &config.state_dir,
                        (&self.inner.dns, &self.inner.edge, &store),
                        &self.inner.acme_status,
                        &stop,
                    );
                }
            }
            *lock(&self.inner.config) = config;
            info!("reload: the new configuration serves");
            return Ok("reloaded in place".to_string());
        }
        let report = self.inner.dns.reload().await;
        info!(
            loaded = report.loaded,
            removed = report.removed,
            failed = report.failed,
            "zones reloaded"
        );
        self.inner
            .edge
            .reload_certificate()
            .map_err(|e| format!("certificate: {e}"))?;
        info!("certificate reloaded");
        Ok("reloaded in place".to_string())
    }

    /// Answers the control socket until this process stops accepting.
    async fn control(self) {
        let listener = self
            .inner
            .control
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|listener| listener.try_clone().ok()));
        let Some(listener) = listener.and_then(|l| tokio::net::UnixListener::from_std(l).ok())
        else {
            error!("the control socket cannot be served");
            return;
        };
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %e, "control socket");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = self.inner.shutdown.cancelled() => return,
            };
            let supervisor = self.clone();
            tokio::spawn(async move { supervisor.answer(stream).await });
        }
    }

    async fn answer(&self, stream: tokio::net::UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            BufReader::new(read).read_line(&mut line),
        )
        .await;
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let line = line.trim();
        if let Some(program) = line.strip_prefix("upgrade ") {
            let answer = match self.upgrade(Some(PathBuf::from(program))).await {
                Ok(pid) => format!("ok upgraded: new process {pid}"),
                Err(reason) => format!("error {reason}"),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            return;
        }
        let answer = match line {
            "upgrade" => match self.upgrade(None).await {
                Ok(pid) => format!("ok upgraded: new process {pid}"),
                Err(reason) => format!("error {reason}"),
            },
            "reload" => match self.reload().await {
                Ok(what) => format!("ok {what}"),
                Err(reason) => format!("error {reason}"),
            },
            "pid" => format!("ok {}", std::process::id()),
            other => format!("error unknown command {other:?} (upgrade, reload, pid)"),
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
    }

    /// SIGHUP reloads, SIGUSR2 upgrades, SIGTERM and Ctrl-C stop.
    async fn signals(self, signals: std::io::Result<Signals>) {
        let Ok(Signals {
            mut hangup,
            mut terminate,
            mut upgrade,
            mut interrupt,
        }) = signals
        else {
            error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    info!("SIGHUP: reloading");
                    match self.reload().await {
                        Ok(what) => info!("{what}"),
                        Err(reason) => error!(%reason, "reload failed; the running configuration stays"),
                    }
                }
                _ = upgrade.recv() => {
                    info!("SIGUSR2: upgrading");
                    let _ = self.upgrade(None).await;
                }
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                () = self.inner.shutdown.cancelled() => return,
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // /readyz fails first, and the listeners stay open while the other nodes' health
        // checks take this one out of DNS.
        self.inner.draining.set();
        let delay = Duration::from_secs(lock(&self.inner.config).edge.shutdown_delay);
        if !delay.is_zero() {
            info!(
                seconds = delay.as_secs(),
                "stopping: /readyz fails; waiting for the other nodes to withdraw this one"
            );
            tokio::time::sleep(delay).await;
        }
        info!("stopping: finishing in-flight requests");
        // No successor: the ports close now (new connections are refused, so clients go
        // elsewhere), and so does the control socket.
        lock(&self.inner.handover).take();
        lock(&self.inner.control).take();
        let _ = std::fs::remove_file(control::socket_path(&self.state_dir));
        self.inner.shutdown.cancel();
    }
}

/// Whether going from `current` to `new` takes sockets that this process does not have.
fn needs_new_sockets(current: &Config, new: &Config) -> bool {
    current.state_dir != new.state_dir
        || current.dns.listen != new.dns.listen
        || current.edge.http != new.edge.http
        || current.edge.https != new.edge.https
        || current.admin.listen != new.admin.listen
        // The log's format is set once per process.
        || current.log.format != new.log.format
}

/// The value in `mutex`, also if a thread panicked holding it (every value here stays whole).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The successor's first word: "ready", or why it failed (its own message, or its exit).
async fn wait_ready(successor: &Successor) -> Result<String, String> {
    let stream = successor.stream.try_clone().map_err(|e| e.to_string())?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(|e| e.to_string())?;
    let mut line = String::new();
    let read = tokio::time::timeout(START_WAIT, BufReader::new(stream).read_line(&mut line)).await;
    match read {
        Err(_) => Err(format!(
            "the new process did not start serving within {} s",
            START_WAIT.as_secs()
        )),
        // Its end closed unread (a reset), or the like: it is gone.
        Ok(Err(_)) => Err("the new process exited before serving".to_string()),
        Ok(Ok(_)) => match line.trim().split_once(' ') {
            Some(("ready", pid)) => Ok(format!("ready {pid}")),
            Some(("failed", reason)) => Err(format!("the new process failed: {reason}")),
            _ if line.is_empty() => Err("the new process exited before serving".to_string()),
            _ => Err(format!("the new process said {:?}", line.trim())),
        },
    }
}
