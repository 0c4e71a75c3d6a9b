//! foobar's authoritative DNS: zone files in, answers out.
//!
//! ```text
//!  dig, resolvers ──UDP/TCP──▶ listener ──▶ Responder::respond (answer) ──▶ Catalog ──▶ Zone
//!                                                                            ▲
//!  zones/*.zone ──▶ load (lexer, checks) ──▶ Zone::build ──▶ Zones::reload ──┘ swapped whole
//!                     ▲ watch (notify, debounced) and SIGHUP
//! ```
//!
//! The crate knows nothing of HTTP or SQL. [`Dns::load`] reads zones before any port is bound;
//! [`bind`] binds; [`Dns::run`] serves until the shutdown token fires.

pub mod answer;
pub mod catalog;
mod config;
pub mod cookie;
mod error;
pub mod load;

pub mod listener;
pub mod message;
pub mod name;
pub mod rate_limit;
pub mod snapshot;
mod watch;
pub mod zone;

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use arc_swap::ArcSwap;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use crate::{
    answer::{Client, Responder, Transport},
    catalog::{Catalog, Reloaded, Zones},
    config::Config,
    cookie::Cookies,
    error::{Error, ZoneError},
    listener::{Sockets, bind},
    load::{load_zone, load_zone_text},
    zone::Zone,
};

fn origin_names<'z>(zones: impl Iterator<Item = &'z Zone>) -> Vec<String> {
    let mut origins: Vec<String> = zones
        .map(|zone| zone.origin_text().trim_end_matches('.').to_string())
        .filter(|origin| !origin.is_empty())
        .collect();
    origins.sort();
    origins
}

/// The DNS service: its zones and how it answers. Clones share one serving state, which a
/// configuration reload replaces whole while the listeners run ([`Dns::adopt`]).
#[derive(Debug, Clone)]
pub struct Dns {
    live: Arc<ArcSwap<Live>>,
    /// The zones-folder watch of the running service: what stops it, and what it answers to.
    watch: Arc<Mutex<Option<(CancellationToken, CancellationToken)>>>,
}

/// What the listeners answer from.
#[derive(Debug)]
pub struct Live {
    zones: Arc<Zones>,
    shared: listener::Shared,
}

impl Dns {
    /// Loads every zone named by the configuration to serve it. A broken zone file is logged and
    /// served from its last good copy in `state_dir` (or answered SERVFAIL): it never stops the
    /// other zones from loading.
    pub fn load(config: &Config, state_dir: &Path) -> Result<Dns, Error> {
        let Config {
            listen: _,
            zones,
            allow_transfer,
            max_tcp_connections,
            tcp_idle_timeout,
            tcp_io_timeout,
            max_tcp_connections_per_address,
            nsid,
            identity,
            version,
            cookie_secret,
            rate_limit,
        } = config;
        let zones = Arc::new(Zones::load(zones, &state_dir.join("dns/last-good"))?);
        let cookies = match cookie_secret {
            Some(secret) => Cookies::new(*secret),
            None => Cookies::random().map_err(Error::Randomness)?,
        };
        let responder = Responder::new(allow_transfer.clone(), cookies)
            .with_nsid(nsid.as_deref())
            .with_chaos(identity.as_deref(), version.as_deref())
            .with_rate_limit(rate_limit);
        let shared = listener::Shared {
            catalog: zones.catalog(),
            responder: Arc::new(responder),
            max_tcp_connections: *max_tcp_connections,
            max_tcp_connections_per_address: *max_tcp_connections_per_address,
            tcp_idle_timeout: Duration::from_secs(*tcp_idle_timeout),
            tcp_io_timeout: Duration::from_secs(*tcp_io_timeout),
        };
        Ok(Dns {
            live: Arc::new(ArcSwap::from_pointee(Live { zones, shared })),
            watch: Arc::default(),
        })
    }

    /// Serves from now on what `loaded` loaded (a reloaded configuration: another zones folder,
    /// other limits or answers), on the sockets already listening. TCP connections open now
    /// finish under the old settings.
    pub fn adopt(&self, loaded: Dns) {
        let state = loaded.live.load_full();
        let zones = state.zones.clone();
        self.live.store(state);
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((old, root)) = watch.take() {
            old.cancel();
            let token = root.child_token();
            spawn_watch(zones, token.clone());
            *watch = Some((token, root));
        }
    }

    /// Checks every zone as `serve --check` does: fails on the first broken one and writes
    /// nothing. Returns the origins, as [`Dns::origins`] does.
    pub fn check(config: &Config) -> Result<Vec<String>, Error> {
        let zones = Zones::check(&config.zones)?;
        Ok(origin_names(zones.iter()))
    }

    /// The origins of the zones served now, as text without the final dot (`foobar.com`).
    pub fn origins(&self) -> Vec<String> {
        let catalog = self.live.load().zones.catalog();
        let catalog = catalog.load();
        origin_names(catalog.zones().map(|zone| &**zone))
    }

    /// Re-reads every zone file (SIGHUP), keeping the previous version of any that fails.
    pub async fn reload(&self) -> Reloaded {
        let zones = self.live.load().zones.clone();
        tokio::task::spawn_blocking(move || zones.reload(true))
            .await
            .unwrap_or_default()
    }

    /// Serves on the bound sockets and watches the zones folder until `shutdown`, then lets TCP
    /// clients take the answers in hand for at most `drain` (and the TCP I/O timeout).
    pub async fn run(
        self,
        sockets: Vec<Sockets>,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Result<(), Error> {
        let mut tasks = tokio::task::JoinSet::new();
        let zones = self.live.load().zones.clone();
        let token = shutdown.child_token();
        spawn_watch(zones.clone(), token.clone());
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((token, shutdown.clone()));
        // Catch edits made between loading and the start of the watch, before serving.
        let _ = tokio::task::spawn_blocking(move || zones.reload(false)).await;
        for Sockets { udp, tcp } in sockets {
            let addr = udp.local_addr().ok();
            let tcp = match (tokio::net::TcpListener::from_std(tcp), addr) {
                (Ok(tcp), Some(addr)) => {
                    info!(%addr, "dns listening on udp");
                    info!(%addr, "dns listening on tcp");
                    tcp
                }
                (Err(e), _) => {
                    return Err(Error::Bind {
                        proto: "tcp",
                        addr: addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                        source: e,
                    });
                }
                (_, None) => continue,
            };
            tasks.spawn(listener::serve_udp(
                udp,
                self.live.clone(),
                shutdown.clone(),
            ));
            tasks.spawn(listener::serve_tcp(
                tcp,
                self.live.clone(),
                shutdown.clone(),
                drain,
            ));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Watches a zones folder until `token` is cancelled.
fn spawn_watch(zones: Arc<Zones>, token: CancellationToken) {
    match watch::Watch::start(zones) {
        Ok(watch) => {
            tokio::spawn(watch.run(token));
        }
        Err(e) => error!(error = %e, "zone files are not watched; SIGHUP still reloads"),
    }
}

impl Live {
    pub(crate) fn shared(&self) -> &listener::Shared {
        &self.shared
    }
}
