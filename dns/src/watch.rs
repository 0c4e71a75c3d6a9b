//! Reloading zones when files in the zones folder change.

use std::{sync::Arc, time::Duration};

use notify::{
    EventKind, RecommendedWatcher, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{catalog::Zones, error::Error};

/// Quiet time after the last change before a reload; one editor save fires several events.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A folder that never goes quiet is reloaded this often all the same.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// A watch on the zones folder (recursive, so included files in subfolders count too).
pub struct Watch {
    zones: Arc<Zones>,
    changed: mpsc::Receiver<()>,
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("folder", &self.zones.folder())
            .finish()
    }
}

impl Watch {
    /// Starts watching now, so that no edit made after this returns is missed.
    pub fn start(zones: Arc<Zones>) -> Result<Watch, Error> {
        let (tx, changed) = mpsc::channel::<()>(1);
        let folder = zones.folder().to_path_buf();
        let watch_error = |source| Error::Watch {
            path: folder.clone(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let changed = match event {
                    // Opening and reading files, the reload's own included, change nothing: counting
                    // them would reload forever.
                    Ok(event) => !matches!(
                        event.kind,
                        EventKind::Access(
                            AccessKind::Open(_)
                                | AccessKind::Read
                                | AccessKind::Close(AccessMode::Read)
                        )
                    ),
                    Err(e) => {
                        warn!(error = %e, "zones folder watch");
                        true
                    }
                };
                if changed {
                    // A full channel already holds a pending reload, which will see this change.
                    let _ = tx.try_send(());
                }
            })
            .map_err(watch_error)?;
        watcher
            .watch(&folder, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        Ok(Watch {
            zones,
            changed,
            _watcher: watcher,
        })
    }

    /// Reloads changed zones on every batch of events until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                changed = self.changed.recv() => {
                    if changed.is_none() || !self.quiet().await {
                        return;
                    }
                    let zones = self.zones.clone();
                    let report = tokio::task::spawn_blocking(move || zones.reload(false)).await;
                    debug!(?report, "zones folder changed");
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Waits until no change has come for `DEBOUNCE` (at most `LONGEST_WAIT`); false once the
    /// watcher is gone.
    async fn quiet(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + LONGEST_WAIT;
        loop {
            let until = deadline.min(tokio::time::Instant::now() + DEBOUNCE);
            match tokio::time::timeout_at(until, self.changed.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                Ok(Some(())) | Err(_) => return true,
                Ok(None) => return false,
            }
        }
    }
}
