//! What follows a change of a served zone: its difference goes into the journal (for IXFR),
//! and its secondaries are told (NOTIFY), at start as well.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    answer::Responder, transfer::journal::Journals, transfer::notify, wire::name, zone::Zone,
    zone::catalog::Change, zone::snapshot,
};

/// Follows `changes` until `shutdown`.
pub async fn follow(
    mut changes: mpsc::UnboundedReceiver<Change>,
    journals: Arc<Journals>,
    responder: Arc<Responder>,
    sources: notify::Sources,
    shutdown: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        if !change.new.is_available() {
            continue;
        }
        let moved = change
            .old
            .as_ref()
            .is_none_or(|old| !old.is_available() || old.serial() != change.new.serial());
        let journals = journals.clone();
        let recorded = tokio::task::spawn_blocking(move || journal_change(&journals, &change))
            .await
            .ok()
            .flatten();
        let Some(new) = recorded else { continue };
        if moved {
            announce(&new, &responder, &sources);
        }
    }
}

/// Records the difference a change brings, when there is one; the new version.
fn journal_change(journals: &Journals, change: &Change) -> Option<Arc<Zone>> {
    let new = &change.new;
    let old = match (&change.old, &change.last_good) {
        (Some(old), _) => Some(old.clone()),
        // First load after a start: the copy of the version served before, unless the zone did
        // not change meanwhile (its serial, read without decoding the whole copy).
        (None, Some(copy)) => match std::fs::read(copy) {
            Ok(bytes) if snapshot::peek_serial(&bytes) != Some(new.serial()) => {
                snapshot::decode(&bytes).ok().map(Arc::new)
            }
            _ => None,
        },
        (None, None) => None,
    };
    if let Some(old) = old
        && crate::zone::serial_newer(new.serial(), old.serial())
        && let Some(bytes) = journals.record(&old, new)
    {
        debug!(zone = %new.origin_text(), from = old.serial(), to = new.serial(), bytes, "journal: difference kept");
    }
    Some(new.clone())
}

/// Sends NOTIFY for `zone` to each of its configured secondaries.
fn announce(zone: &Zone, responder: &Responder, sources: &notify::Sources) {
    let access = responder.access();
    let Some(targets) = access
        .zones
        .get(zone.origin_key())
        .map(|settings| settings.notify.clone())
        .filter(|targets| !targets.is_empty())
    else {
        return;
    };
    let Some(soa) = crate::zone::soa(zone) else {
        return;
    };
    info!(zone = %name::to_text(&soa.owner), serial = zone.serial(), targets = targets.len(), "notify: telling secondaries");
    for target in targets {
        let key = access.key(target.key.as_deref());
        if target.key.is_some() && key.is_none() {
            warn!(%target.address, "notify: unknown key");
            continue;
        }
        let (soa, sources) = (soa.clone(), sources.clone());
        tokio::spawn(async move {
            notify::send(&soa, target.address, key, &sources).await;
        });
    }
}
