//! Health checks behind `[[dns.health]]`: every interval, each address of a checked name is
//! probed (HTTPS GET of the check's path, SNI and Host the name); after `fall` failures in a
//! row it leaves the DNS answers, after `rise` successes it returns. Each node decides alone, so
//! a node cut off from the others still answers; with every address down, all are served.
//!
//! The probing is HTTP (`foobar_edge::probe`) and the answers DNS (`Dns::set_health`): only the
//! binary knows both.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use foobar_dns::{Check, Dns};
use foobar_edge::probe::{Prober, Tally};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What the checks have learned, by name and address, kept across reloads: a reload that
/// restarts the checkers does not put a dead address back into the answers.
#[derive(Debug, Clone, Default)]
pub struct Memory(Arc<Mutex<HashMap<String, HashMap<IpAddr, Tally>>>>);

impl Memory {
    fn recall(&self, name: &str) -> HashMap<IpAddr, Tally> {
        let known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(name).cloned().unwrap_or_default()
    }

    fn keep(&self, name: &str, states: &HashMap<IpAddr, Tally>) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        known.insert(name.to_string(), states.clone());
    }
}

/// Starts a checker for each of `checks` until `stop`; `edge_port` is the port probed when a
/// check names none.
pub fn spawn(
    checks: &[Check],
    edge_port: u16,
    dns: &Dns,
    memory: &Memory,
    stop: &CancellationToken,
) {
    for check in checks {
        let prober = match Prober::new(check.verify_certificate) {
            Ok(prober) => prober,
            Err(e) => {
                warn!(name = %check.name, error = %e, "health check not started");
                continue;
            }
        };
        let port = check.port.unwrap_or(edge_port);
        let run = run(
            check.clone(),
            port,
            prober,
            (dns.clone(), memory.clone()),
            stop.clone(),
        );
        tokio::spawn(run);
    }
}

async fn run(
    check: Check,
    port: u16,
    prober: Prober,
    (dns, memory): (Dns, Memory),
    stop: CancellationToken,
) {
    let host = check.name.trim_end_matches('.').to_string();
    let timeout = Duration::from_secs(check.timeout.max(1));
    let mut states = memory.recall(&check.name);
    let mut all_down = false;
    // Until the first round, what an earlier checker learned stands (after a reload); at
    // start, every address is served, with the check's TTL.
    dns.set_health(
        &check.name,
        down(&states, &dns.addresses(&check.name)),
        check.ttl,
    );
    let mut tick = tokio::time::interval(Duration::from_secs(check.interval.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let addresses = dns.addresses(&check.name);
        let mut probes = tokio::task::JoinSet::new();
        for &address in &addresses {
            let (prober, host, path) = (prober.clone(), host.clone(), check.path.clone());
            probes.spawn(async move {
                let result = prober
                    .check(SocketAddr::new(address, port), &host, &path, timeout)
                    .await;
                (address, result)
            });
        }
        while let Some(Ok((address, result))) = probes.join_next().await {
            let healthy = result.is_ok();
            let Some(state) = states.get_mut(&address) else {
                // First seen (at start, or new in the zone): its first probe decides, so that a
                // node starting up does not send browsers to a dead address for `fall` rounds.
                states.insert(address, Tally::first(healthy));
                if let Err(reason) = result {
                    warn!(name = %check.name, %address, %reason, "health: down, left out of the answers");
                }
                continue;
            };
            match (state.record(healthy, check.rise, check.fall), result) {
                (Some(true), _) => {
                    info!(name = %check.name, %address, "health: back in the answers")
                }
                (Some(false), Err(reason)) => {
                    warn!(name = %check.name, %address, %reason, "health: down, left out of the answers")
                }
                _ => {}
            }
        }
        states.retain(|address, _| addresses.contains(address));
        memory.keep(&check.name, &states);
        let down = down(&states, &addresses);
        let now_all_down = !addresses.is_empty() && down.len() == addresses.len();
        if now_all_down && !all_down {
            warn!(name = %check.name, addresses = addresses.len(), "health: every address is down; all are served (fail open)");
        }
        all_down = now_all_down;
        dns.set_health(&check.name, down, check.ttl);
    }
}

/// The addresses of `addresses` known to be down.
fn down(states: &HashMap<IpAddr, Tally>, addresses: &[IpAddr]) -> Vec<IpAddr> {
    addresses
        .iter()
        .copied()
        .filter(|address| states.get(address).is_some_and(|s| !s.is_up()))
        .collect()
}
