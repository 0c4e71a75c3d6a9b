//! Reloading zones when files in the zones folder change.

use std::sync::Arc;

use foobar_state::watch::Changes;
use notify::RecursiveMode;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{error::Error, zone::catalog::Zones};

/// A watch on the zones folder (recursive, so included files in subfolders count too).
pub struct Watch {
    zones: Arc<Zones>,
    changes: Changes,
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
        let folder = zones.folder();
        let changes = Changes::watch(&[folder], RecursiveMode::Recursive, "zones folder").map_err(
            |source| Error::Watch {
                path: folder.to_path_buf(),
                source,
            },
        )?;
        Ok(Watch { zones, changes })
    }

    /// Reloads changed zones on every batch of events until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                changed = self.changes.next() => {
                    if !changed {
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
