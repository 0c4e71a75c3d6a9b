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
    time::Duration,
};

use foobar_dns::{Dns, health::Check};
use foobar_edge::probe::Prober;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Starts a checker for each of `checks` until `stop`; `edge_port` is the port probed when a
/// check names none.
pub fn spawn(checks: &[Check], edge_port: u16, dns: &Dns, stop: &CancellationToken) {
    for check in checks {
        let prober = match Prober::new(check.verify_certificate) {
            Ok(prober) => prober,
            Err(e) => {
                warn!(name = %check.name, error = %e, "health check not started");
                continue;
            }
        };
        let port = check.port.unwrap_or(edge_port);
        tokio::spawn(run(check.clone(), port, prober, dns.clone(), stop.clone()));
    }
}

/// What is known of one address.
#[derive(Debug, Clone, Copy)]
struct State {
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
}

async fn run(check: Check, port: u16, prober: Prober, dns: Dns, stop: CancellationToken) {
    let host = check.name.trim_end_matches('.').to_string();
    let timeout = Duration::from_secs(check.timeout.max(1));
    let mut states: HashMap<IpAddr, State> = HashMap::new();
    let mut all_down = false;
    // Until the first round, every address is served, with the check's TTL.
    dns.set_health(&check.name, Vec::new(), check.ttl);
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
            let state = states.entry(address).or_insert(State {
                up: true,
                streak: 0,
            });
            let healthy = result.is_ok();
            if healthy == state.up {
                state.streak = 0;
                continue;
            }
            state.streak += 1;
            let needed = if state.up { check.fall } else { check.rise };
            if state.streak >= needed.max(1) {
                state.up = healthy;
                state.streak = 0;
                match result {
                    Ok(()) => info!(name = %check.name, %address, "health: back in the answers"),
                    Err(reason) => {
                        warn!(name = %check.name, %address, %reason, "health: down, left out of the answers")
                    }
                }
            }
        }
        states.retain(|address, _| addresses.contains(address));
        let down: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|address| states.get(address).is_some_and(|s| !s.up))
            .collect();
        let now_all_down = !addresses.is_empty() && down.len() == addresses.len();
        if now_all_down && !all_down {
            warn!(name = %check.name, addresses = addresses.len(), "health: every address is down; all are served (fail open)");
        }
        all_down = now_all_down;
        dns.set_health(&check.name, down, check.ttl);
    }
}
