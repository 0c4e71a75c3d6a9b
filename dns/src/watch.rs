//! Reloading zones when files in the zones folder change.

use std::{sync::Arc, time::Duration};

use notify::RecommendedWatcher;
use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{catalog::Zones, error::Error};

/// Quiet time after the last change before a reload; one editor save fires several events.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// A watch on the zones folder (recursive, so included files in subfolders count too).
pub struct Watch {
    zones: Arc<Zones>,
    changed: mpsc::Receiver<()>,
    _debouncer: Debouncer<RecommendedWatcher>,
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
        let mut debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| {
            match events {
                Ok(events) if !events.is_empty() => {
                    // A full channel already holds a pending reload, which will see this change.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "zones folder watch"),
            }
        })
        .map_err(watch_error)?;
        debouncer
            .watcher()
            .watch(&folder, RecursiveMode::Recursive)
            .map_err(watch_error)?;
        Ok(Watch {
            zones,
            changed,
            _debouncer: debouncer,
        })
    }

    /// Reloads changed zones on every batch of events until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                changed = self.changed.recv() => {
                    if changed.is_none() {
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
}
