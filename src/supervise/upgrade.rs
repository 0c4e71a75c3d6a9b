//! Upgrades: the binary on disk started with this process's sockets; once it serves, this
//! process stops accepting and drains.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing::{error, info, warn};

use super::{Supervisor, lock, write_pid_file};
use crate::inheritance::{self, Successor};

/// How long a new process may take to load and start serving before the upgrade is given up.
const START_WAIT: Duration = Duration::from_secs(60);

impl Supervisor {
    /// Starts the binary on disk with this process's sockets; once it serves, this process
    /// stops accepting and drains. The new process's PID, or why it did not start (this
    /// process then serves on, untouched).
    pub(super) async fn upgrade(&self, program: Option<PathBuf>) -> anyhow::Result<u32> {
        let _busy = self
            .inner
            .busy
            .try_lock()
            .map_err(|_| anyhow!("an upgrade or reload is already in progress"))?;
        self.upgrade_now(program).await
    }

    /// Upgrades to `program`, or to the binary this process was started from.
    pub(super) async fn upgrade_now(&self, program: Option<PathBuf>) -> anyhow::Result<u32> {
        if self.inner.shutdown.is_cancelled() {
            bail!("this process is stopping");
        }
        // One handover at a time: a predecessor still draining goes first.
        let mut gone = self.inner.gone.clone();
        let wait = self.inner.edge.drain_timeout() + Duration::from_secs(5);
        if tokio::time::timeout(wait, gone.wait_for(|gone| *gone))
            .await
            .is_err()
        {
            bail!("the previous process is still draining");
        }
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now()?,
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
                error!(
                    reason = format!("{reason:#}"),
                    "upgrade failed; this process serves on"
                );
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
        result
    }

    async fn hand_over(&self, program: &Path) -> anyhow::Result<u32> {
        let launch = &self.inner.launch;
        let successor = {
            let handover = lock(&self.inner.handover);
            let Some(handover) = handover.as_ref() else {
                bail!("this process has handed its sockets over already");
            };
            inheritance::spawn(
                program,
                &launch.args,
                handover,
                self.inner.quic.generation(),
            )?
        };
        let pid = successor.child.id();
        let link = successor.quic_link.try_clone()?;
        if let Err(e) = self.inner.quic.attach_successor(link, successor.generation) {
            return Err(self.abandon(successor, e.into()).await);
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
        let mut stream = successor.stream.try_clone()?;
        if let Err(e) = std::io::Write::write_all(&mut stream, b"done\n") {
            warn!(error = %e, "telling the new process it serves");
        }
        *lock(&self.inner.successor) = Some(successor);
        Ok(pid)
    }

    /// Gives up a successor that did not start: it is stopped if still running, and this
    /// process keeps every packet. Returns `reason`.
    async fn abandon(&self, mut successor: Successor, reason: anyhow::Error) -> anyhow::Error {
        self.inner.quic.detach();
        let _ = successor.child.kill();
        match tokio::task::spawn_blocking(move || successor.child.wait()).await {
            Ok(Ok(status)) => anyhow!("{reason:#} ({status})"),
            _ => reason,
        }
    }
}

/// The successor's first word: "ready", or why it failed (its own message, or its exit).
async fn wait_ready(successor: &Successor) -> anyhow::Result<String> {
    let stream = successor.stream.try_clone()?;
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let mut line = String::new();
    let read = tokio::time::timeout(START_WAIT, BufReader::new(stream).read_line(&mut line)).await;
    match read {
        Err(_) => Err(anyhow!(
            "the new process did not start serving within {} s",
            START_WAIT.as_secs()
        )),
        // Its end closed unread (a reset), or the like: it is gone.
        Ok(Err(_)) => Err(anyhow!("the new process exited before serving")),
        Ok(Ok(_)) => match line.trim().split_once(' ') {
            Some(("ready", pid)) => Ok(format!("ready {pid}")),
            Some(("failed", reason)) => Err(anyhow!("the new process failed: {reason}")),
            _ if line.is_empty() => Err(anyhow!("the new process exited before serving")),
            _ => Err(anyhow!("the new process said {:?}", line.trim())),
        },
    }
}
