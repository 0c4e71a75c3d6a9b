//! Keeping the served certificate current: certificate and key files are watched and reloaded
//! when they change (a certbot renewal, a secret swapped in place), checked again every minute in
//! case a change was missed, and an expiring certificate is warned about every day from
//! `WARN_BEFORE` on.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use foobar_state::watch::Changes;
use notify::RecursiveMode;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::tls::{Resolver, Source};

/// How long before expiry the warnings start.
const WARN_BEFORE: Duration = Duration::from_secs(14 * 86_400);
/// How often the files are checked without a change event, and the expiry with them.
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often an expiring certificate is warned about.
const WARN_EVERY: Duration = Duration::from_secs(86_400);

/// How the certificate stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Valid beyond `WARN_BEFORE`, or of unknown validity.
    Fine,
    /// Valid for this many more whole days, fewer than `WARN_BEFORE`.
    Soon { days_left: u64 },
    /// Expired this many whole days ago: browsers refuse it.
    Expired { days_ago: u64 },
}

impl Expiry {
    pub fn of(not_after: Option<SystemTime>, now: SystemTime) -> Expiry {
        let Some(not_after) = not_after else {
            return Expiry::Fine;
        };
        match not_after.duration_since(now) {
            Ok(left) if left >= WARN_BEFORE => Expiry::Fine,
            Ok(left) => Expiry::Soon {
                days_left: left.as_secs() / 86_400,
            },
            Err(past) => Expiry::Expired {
                days_ago: past.duration().as_secs() / 86_400,
            },
        }
    }
}

/// Watches the certificate's files until `shutdown` (the edge stops, or a reload no longer
/// uses them), reloading them when they change.
pub async fn keep_current(resolver: Arc<Resolver>, shutdown: CancellationToken) {
    let mut changes = watch(&resolver.source());
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let changed = async {
            match &mut changes {
                Some(changes) => changes.next().await,
                None => std::future::pending().await,
            }
        };
        let renewed = tokio::select! {
            alive = changed => {
                if !alive {
                    changes = None;
                    continue;
                }
                refresh(&resolver).await
            }
            _ = tick.tick() => refresh(&resolver).await,
            () = shutdown.cancelled() => return,
        };
        if renewed {
            // A new certificate gets its own expiry verdict at once.
            warned = None;
        }
        let mut expiry = Expiry::of(resolver.not_after(), SystemTime::now());
        if resolver.source().acme().is_some() && matches!(expiry, Expiry::Soon { .. }) {
            // Renewing is the ACME client's job (short-lived certificates are always "soon");
            // it logs its failures itself.
            expiry = Expiry::Fine;
        }
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) && report(expiry) {
            warned = Some(tokio::time::Instant::now());
        }
    }
}

/// A watch on the folders of the certificate's files, if they are the operator's.
fn watch(source: &Source) -> Option<Changes> {
    let (cert, key) = match (source, source.acme()) {
        (Source::Files { cert, key }, _) => (cert.clone(), key.clone()),
        // Written by the binary as certificates are issued; the folder exists from the start.
        (_, Some(acme)) => {
            if let Some(folder) = acme.cert.parent() {
                let _ = std::fs::create_dir_all(folder);
            }
            (acme.cert, acme.key)
        }
        // Created and kept by the server itself.
        _ => return None,
    };
    // The folders, not the files: renewals replace files (and symlinks to them) by rename.
    let mut folders: Vec<&Path> = [&cert, &key]
        .into_iter()
        .map(|path| match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder,
            _ => Path::new("."),
        })
        .collect();
    folders.dedup();
    match Changes::watch(&folders, RecursiveMode::NonRecursive, "certificate folder") {
        Ok(changes) => Some(changes),
        Err(e) => {
            warn!(error = %e, "certificate files are not watched; they are checked every minute");
            None
        }
    }
}

/// Loads the files again if they changed; true if a new certificate is served.
async fn refresh(resolver: &Arc<Resolver>) -> bool {
    let resolver = resolver.clone();
    let refreshed = tokio::task::spawn_blocking(move || resolver.refresh())
        .await
        .map_err(|e| e.to_string())
        .and_then(|result| result.map_err(|e| e.to_string()));
    match refreshed {
        Ok(true) => {
            info!("certificate files changed: certificate reloaded");
            true
        }
        Ok(false) => false,
        // Often a renewal halfway: the certificate written, its key not yet. The next change
        // event loads the pair.
        Err(error) => {
            error!(%error, "certificate reload failed; the previous one stays");
            false
        }
    }
}

/// Logs the expiry if it needs saying; true if it did.
pub fn report(expiry: Expiry) -> bool {
    match expiry {
        Expiry::Fine => false,
        Expiry::Soon { days_left } => {
            warn!(
                days_left,
                "certificate expires soon: renew it (the new files are picked up as they change)"
            );
            true
        }
        Expiry::Expired { days_ago } => {
            error!(days_ago, "certificate expired: browsers refuse it");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_fine_then_soon_then_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(Expiry::of(None, now), Expiry::Fine);
        assert_eq!(Expiry::of(Some(now + 90 * day), now), Expiry::Fine);
        assert_eq!(Expiry::of(Some(now + 14 * day), now), Expiry::Fine);
        assert_eq!(
            Expiry::of(Some(now + 14 * day - Duration::from_secs(1)), now),
            Expiry::Soon { days_left: 13 }
        );
        assert_eq!(
            Expiry::of(Some(now + Duration::from_secs(5)), now),
            Expiry::Soon { days_left: 0 }
        );
        assert_eq!(
            Expiry::of(Some(now - 3 * day - Duration::from_secs(1)), now),
            Expiry::Expired { days_ago: 3 }
        );
    }
}
