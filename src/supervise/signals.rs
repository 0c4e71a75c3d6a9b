//! Signals: SIGHUP reloads, SIGUSR2 upgrades, SIGTERM and Ctrl-C stop.

use std::time::Duration;

use tracing::{error, info};

use super::{Supervisor, lock};
use crate::control;

/// The signals the serving process acts on, their handlers installed.
pub(super) struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    upgrade: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            upgrade: signal(SignalKind::user_defined2())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

impl Supervisor {
    /// SIGHUP reloads, SIGUSR2 upgrades, SIGTERM and Ctrl-C stop.
    pub(super) async fn signals(self, signals: std::io::Result<Signals>) {
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
                        Err(reason) => error!(reason = format!("{reason:#}"), "reload failed; the running configuration stays"),
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
