//! The control socket's commands (`foobar upgrade`, `foobar reload`): one line in, one answer
//! out.

use std::{path::PathBuf, time::Duration};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::{error, warn};

use super::Supervisor;

impl Supervisor {
    /// Answers the control socket until this process stops accepting.
    pub(super) async fn control(self) {
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
                Err(reason) => format!("error {reason:#}"),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            return;
        }
        let answer = match line {
            "upgrade" => match self.upgrade(None).await {
                Ok(pid) => format!("ok upgraded: new process {pid}"),
                Err(reason) => format!("error {reason:#}"),
            },
            "reload" => match self.reload().await {
                Ok(what) => format!("ok {what}"),
                Err(reason) => format!("error {reason:#}"),
            },
            "pid" => format!("ok {}", std::process::id()),
            other => format!("error unknown command {other:?} (upgrade, reload, pid)"),
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
    }
}
