//! Watching files: every watcher of the server (zones, static files, certificates) reads what it
//! watches and must not take its own reads for edits, and one save fires several events.

use std::{path::Path, time::Duration};

use notify::{
    Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use tokio::sync::mpsc;
use tracing::warn;

/// Quiet time after the last change before a batch ends; one editor save fires several events.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A folder that never goes quiet ends a batch this often all the same.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// Whether `event` may mean content changed. Opening and reading change nothing; anything else
/// might, and so does a watch error (lost events: a full queue and the like).
pub fn is_change(event: &notify::Result<Event>) -> bool {
    match event {
        Ok(event) => !matches!(
            event.kind,
            EventKind::Access(
                AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
            )
        ),
        Err(_) => true,
    }
}

/// Changes under some paths, in batches.
pub struct Changes {
    changed: mpsc::Receiver<()>,
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Changes {
    /// Starts watching `paths` now, so that no change made after this returns is missed.
    /// `what` names them in the log.
    pub fn watch(
        paths: &[&Path],
        mode: RecursiveMode,
        what: &'static str,
    ) -> notify::Result<Changes> {
        let (tx, changed) = mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if let Err(e) = &event {
                warn!(error = %e, "{what} watch");
            }
            if is_change(&event) {
                // A full channel already holds a pending batch, which will see this change.
                let _ = tx.try_send(());
            }
        })?;
        for path in paths {
            watcher.watch(path, mode)?;
        }
        Ok(Changes {
            changed,
            _watcher: watcher,
        })
    }

    /// Waits for a change, then until none has come for `DEBOUNCE` (at most `LONGEST_WAIT`).
    /// False once the watcher is gone.
    pub async fn next(&mut self) -> bool {
        if self.changed.recv().await.is_none() {
            return false;
        }
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
