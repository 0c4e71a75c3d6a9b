//! Reloading zones when files in the zones folder change.

use std::{sync::Arc, time::Duration};

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{catalog::Zones, error::Error};

/// Quiet time after the last change before a reload; one editor save fires several events.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the zones folder (recursively, so included files in subfolders count too) until
/// `shutdown`, reloading changed zones.
pub async fn watch(zones: Arc<Zones>, shutdown: CancellationToken) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let folder = zones.folder().to_path_buf();
    let mut debouncer: Debouncer<_> =
        new_debouncer(DEBOUNCE, move |events: DebounceEventResult| {
            match events {
                Ok(events) if !events.is_empty() => {
                    // A full channel already holds a pending reload, which will see this change.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "zones folder watch"),
            }
        })
        .map_err(|source| Error::Watch {
            path: folder.clone(),
            source,
        })?;
    debouncer
        .watcher()
        .watch(&folder, RecursiveMode::Recursive)
        .map_err(|source| Error::Watch {
            path: folder.clone(),
            source,
        })?;
    loop {
        tokio::select! {
            changed = rx.recv() => {
                if changed.is_none() {
                    return Ok(());
                }
                let zones = zones.clone();
                let report = tokio::task::spawn_blocking(move || zones.reload(false)).await;
                debug!(?report, "zones folder changed");
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
