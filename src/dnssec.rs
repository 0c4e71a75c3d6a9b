//! The signing keys of the zones signed here, shared by the nodes of a cluster through the
//! app's database, so that every node signs with the same keys and one DS at the parent
//! covers them all.
//!
//! At each load, for each signed zone: the keys in the database are the zone's keys (written
//! to `state_dir`, replacing what is there); keys the zone's policy wants and the database
//! lacks (all of them, the first time) are made by the node that takes the zone's lease and put
//! there, and the others take them.

use std::time::Duration;

use anyhow::Context;
use foobar_app::store::Store;
use tracing::{info, warn};

use crate::{Config, acme::unix_now};

/// How long a node waits for another to put a zone's first keys in the database.
const WAIT_FOR_KEYS: Duration = Duration::from_secs(20);

fn prefix(zone: &str) -> String {
    format!(
        "dnssec/{}/",
        zone.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Makes each signed zone's keys in `state_dir` those the database holds, putting them there
/// first if no node has. A database that cannot be reached leaves the keys in `state_dir` as
/// they are (logged): the zone is signed with them.
pub async fn share_keys(config: &Config, store: &Store, holder: &str) {
    for (zone, settings) in &config.dns.zone {
        if !settings.dnssec {
            continue;
        }
        let keys = (settings.dnssec_algorithm, settings.dnssec_keys);
        if let Err(e) = share_zone_keys(config, store, holder, zone, keys).await {
            warn!(zone = %zone, error = format!("{e:#}"), "DNSSEC keys not shared through the database; the keys in state_dir sign");
        }
    }
}

async fn share_zone_keys(
    config: &Config,
    store: &Store,
    holder: &str,
    zone: &str,
    (algorithm, scheme): (foobar_dns::DnssecAlgorithm, foobar_dns::DnssecKeys),
) -> anyhow::Result<()> {
    let prefix = prefix(zone);
    let lease = format!("{prefix}lease");
    let started = std::time::Instant::now();
    loop {
        let shared = keys_in(store, &prefix).await?;
        if !shared.is_empty() {
            foobar_dns::replace_key_files(&config.state_dir, zone, &shared)?;
        }
        // The keys the zone's policy wants, made where missing (all of them at the first start).
        let (state_dir, name) = (config.state_dir.clone(), zone.to_string());
        let local = tokio::task::spawn_blocking(move || {
            foobar_dns::key_files(&state_dir, &name, algorithm, scheme)
        })
        .await
        .context("making the keys")??;
        let missing: Vec<&(String, Vec<u8>)> =
            local.iter().filter(|file| !shared.contains(file)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Keys made here that the database lacks: they go there under the lease, unless another
        // node put others first (then this node takes those, next time round).
        let now = unix_now();
        if store.take_lease(&lease, holder, now, now + 60).await? {
            let unchanged = keys_in(store, &prefix).await? == shared;
            if unchanged {
                for (name, bytes) in &missing {
                    store
                        .put_shared(&format!("{prefix}{name}"), bytes, unix_now())
                        .await?;
                }
                info!(zone = %zone, keys = missing.len(), "DNSSEC keys put in the database for the other nodes");
            }
            store.release_lease(&lease, holder).await?;
            if unchanged {
                return Ok(());
            }
        } else {
            anyhow::ensure!(
                started.elapsed() < WAIT_FOR_KEYS,
                "another node holds the lease to make the keys and has not put them in {} s",
                WAIT_FOR_KEYS.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The key files under `prefix` in the database, by file name.
async fn keys_in(store: &Store, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    Ok(store
        .shared(prefix)
        .await?
        .into_iter()
        .filter_map(|row| {
            let name = row.name.strip_prefix(prefix)?.to_string();
            name.ends_with(".key").then_some((name, row.value))
        })
        .collect())
}
