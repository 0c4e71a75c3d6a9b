//! The signing keys of the zones signed here, shared by the nodes of a cluster through the
//! app's database, so that every node signs with the same keys and one DS at the parent
//! covers them all.
//!
//! At each load, for each signed zone: the keys in the database are the zone's keys (written
//! to `state_dir`, replacing what is there); keys the zone's policy wants and the database
//! lacks (all of them, the first time) are made by the node that takes the zone's lease and put
//! there, and the others take them.
//!
//! From then on, every few seconds ([`spawn`]): one node holds the planner's lease and moves
//! the keys on (rollovers), putting its key files in the database after each change; the
//! others take those files and sign with them. A node that loses the lease stops planning; one
//! that takes it starts from the database's files.

use std::time::Duration;

use anyhow::Context;
use foobar_app::store::Store;
use foobar_dns::Dns;
use tokio_util::sync::CancellationToken;
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

/// How often the keys are compared with the database's. A rollover's propagation delay is
/// meant to exceed it.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// How long the planner's lease lasts without renewal.
const PLANNER_LEASE: i64 = 20;
const PLANNER: &str = "dnssec/planner";

/// Starts keeping the signed zones' keys the same on every node, until `stop`.
pub fn spawn(config: &Config, dns: &Dns, store: &Store, stop: &CancellationToken) {
    let zones: Vec<String> = config
        .dns
        .zone
        .iter()
        .filter(|(_, settings)| settings.dnssec)
        .map(|(zone, _)| zone.clone())
        .collect();
    if zones.is_empty() {
        return;
    }
    // Until this node holds the lease, another may be planning.
    dns.set_dnssec_planning(false);
    let (state_dir, dns, store, holder, stop) = (
        config.state_dir.clone(),
        dns.clone(),
        store.clone(),
        planner_id(config),
        stop.clone(),
    );
    let changes = dns.dnssec_key_changes();
    tokio::spawn(async move {
        let mut planning = false;
        loop {
            match sync_round(&state_dir, &dns, &store, &holder, &zones, planning).await {
                Ok(plans) => planning = plans,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        "DNSSEC keys not compared with the database; this node stops moving them on"
                    );
                    planning = false;
                }
            }
            dns.set_dnssec_planning(planning);
            tokio::select! {
                () = tokio::time::sleep(SYNC_EVERY) => {}
                // A rollover's step here: shared at once.
                () = changes.notified() => {}
                () = stop.cancelled() => {
                    if planning {
                        let _ = store.release_lease(PLANNER, &holder).await;
                    }
                    return;
                }
            }
        }
    });
}

/// This node in the planner's lease: its host and `state_dir`, the same across its restarts and
/// upgrades, so that a restarted planner goes on planning at once (a process's own id would
/// leave the keys unplanned until the old lease ran out).
fn planner_id(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let dir = std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
    format!("{host}:{}", dir.display())
}

/// One round: takes or renews the planner's lease, then for each zone either puts this node's
/// key files in the database (the planner) or takes the database's. Returns whether this
/// node is the planner.
async fn sync_round(
    state_dir: &std::path::Path,
    dns: &Dns,
    store: &Store,
    holder: &str,
    zones: &[String],
    was_planning: bool,
) -> anyhow::Result<bool> {
    let now = unix_now();
    let plans = store
        .take_lease(PLANNER, holder, now, now + PLANNER_LEASE)
        .await?;
    for zone in zones {
        let prefix = prefix(zone);
        let rows = store.shared(&prefix).await?;
        let writer = format!("{prefix}writer");
        // The node that last put key files there: if this one, its own files are newer than
        // the database's (a change it made while the database was out of reach, or before a
        // restart) and go there, rather than being replaced.
        let wrote_last = rows
            .iter()
            .any(|row| row.name == writer && row.value == holder.as_bytes());
        let mut shared = key_rows(rows, &prefix);
        shared.sort();
        let mut local = foobar_dns::kept_key_files(state_dir, zone)?;
        local.sort();
        if shared == local {
            continue;
        }
        if plans && (was_planning || wrote_last || shared.is_empty()) {
            store
                .put_shared(&writer, holder.as_bytes(), unix_now())
                .await?;
            for (name, bytes) in &local {
                if !shared.contains(&(name.clone(), bytes.clone())) {
                    store
                        .put_shared(&format!("{prefix}{name}"), bytes, unix_now())
                        .await?;
                }
            }
            for (name, _) in &shared {
                if !local.iter().any(|(kept, _)| kept == name) {
                    store.delete_shared(&format!("{prefix}{name}")).await?;
                }
            }
            info!(zone = %zone, "DNSSEC key changes put in the database for the other nodes");
        } else if !shared.is_empty() {
            // A follower, or a planner starting from where the last one left the keys.
            foobar_dns::replace_key_files(state_dir, zone, &shared)?;
            dns.dnssec_keys_replaced(zone)?;
            info!(zone = %zone, "DNSSEC keys taken from the database");
        }
    }
    Ok(plans)
}

/// The key files under `prefix` in the database, by file name.
async fn keys_in(store: &Store, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    Ok(key_rows(store.shared(prefix).await?, prefix))
}

/// The key files among `rows` (under `prefix`), by file name.
fn key_rows(rows: Vec<foobar_app::store::Shared>, prefix: &str) -> Vec<(String, Vec<u8>)> {
    rows.into_iter()
        .filter_map(|row| {
            let name = row.name.strip_prefix(prefix)?.to_string();
            name.ends_with(".key").then_some((name, row.value))
        })
        .collect()
}
