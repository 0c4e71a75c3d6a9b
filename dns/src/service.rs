//! The DNS service: its zones, how it answers, and the tasks that keep both current; what a
//! configuration reload swaps whole while the listeners run.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::{
    Error, answer,
    answer::{Responder, cookie::Cookies},
    config,
    config::Config,
    error::{AddedError, ZoneReloadError, ZoneReloaded},
    listener,
    listener::Sockets,
    metrics, transfer,
    transfer::{journal::Journals, secondary::Secondary},
    wire,
    zone::{
        self, Zone,
        catalog::{Change, Reloaded, Zones},
    },
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
    /// The challenge TXT records set now: kept across reloads.
    challenges: Arc<Mutex<Challenges>>,
    /// What stops the background tasks of the state served now (the zones-folder watch, the
    /// journal and NOTIFY, the secondary zones), and the service's own shutdown.
    background: Arc<Mutex<Option<(CancellationToken, CancellationToken)>>>,
    /// The interfaces answered in XDP mode, as the listen addresses: fixed from the start.
    xdp: Vec<String>,
}

/// What the listeners answer from, and what keeps it current.
#[derive(Debug)]
pub struct Live {
    zones: Arc<Zones>,
    shared: listener::Shared,
    health: Arc<answer::health::Health>,
    overlay: Arc<answer::overlay::Overlay>,
    /// The zones that ask for synthesized HTTPS records.
    https_zones: Vec<String>,
    checks: Vec<answer::health::Check>,
    /// The addresses NOTIFY and queries to primaries come from.
    sources: transfer::notify::Sources,
    /// The zones signed here.
    signing: Arc<crate::dnssec::Signing>,
    /// Wakes the task that signs again when keys change.
    keys_changed: Arc<tokio::sync::Notify>,
    secondaries: Vec<Arc<Secondary>>,
    /// Changes of served versions and NOTIFYs from primaries, for the background tasks.
    changes: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
    notified: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
}

/// TXT RDATAs by owner (wire form).
type Challenges = HashMap<Vec<u8>, Vec<Vec<u8>>>;

impl Dns {
    /// Loads every zone named by the configuration to serve it. A broken zone file is logged and
    /// served from its last good copy in `state_dir` (or answered SERVFAIL): it never stops the
    /// other zones from loading. Secondary zones start from their copy in `state_dir`.
    pub fn load(config: &Config, state_dir: &Path) -> Result<Dns, Error> {
        let Config {
            listen: _,
            tls_listen: _,
            quic_listen: _,
            xdp,
            https_path: _,
            zones,
            allow_transfer: _,
            tsig: _,
            tls_auth: _,
            zone: zone_settings,
            secondary: _,
            health: checks,
            journal_max_bytes,
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
        config::settings::https_path(config)?;
        let access = config::settings::access(config, state_dir)?;
        let secondaries = config::settings::secondaries(config, state_dir, &access)?;
        let initial: Vec<Arc<Zone>> = secondaries
            .iter()
            .map(|secondary| match secondary.load_copy() {
                Some((zone, _)) => {
                    info!(zone = %secondary.name(), serial = zone.serial(), "secondary zone served from its copy");
                    Arc::new(zone)
                }
                None => Arc::new(Zone::unavailable(&secondary.origin)),
            })
            .collect();
        let (changes, changed) = mpsc::unbounded_channel();
        let signing = Arc::new(config::settings::signing(config, state_dir)?);
        let zones = Arc::new(Zones::load(
            zones,
            &state_dir.join("dns/last-good"),
            initial,
            Some(changes),
            signing.clone(),
        )?);
        let cookies = match cookie_secret {
            Some(secret) => Cookies::new(*secret),
            None => Cookies::random().map_err(|_| Error::Randomness("the cookie secret"))?,
        };
        let (notify_sink, notified) = mpsc::unbounded_channel();
        let health = Arc::new(answer::health::Health::default());
        let overlay = Arc::new(answer::overlay::Overlay::default());
        let responder = Responder::new(access, cookies)
            .with_notify_sink(notify_sink)
            .with_health(health.clone())
            .with_overlay(overlay.clone())
            .with_signing(signing.clone())
            .with_nsid(nsid.as_deref())
            .with_chaos(identity.as_deref(), version.as_deref())
            .with_rate_limit(rate_limit);
        let shared = listener::Shared {
            catalog: zones.catalog(),
            responder: Arc::new(responder),
            journals: Arc::new(Journals::new(
                &state_dir.join("dns/journal"),
                *journal_max_bytes,
            )),
            max_tcp_connections: *max_tcp_connections,
            max_tcp_connections_per_address: *max_tcp_connections_per_address,
            tcp_idle_timeout: Duration::from_secs(*tcp_idle_timeout),
            tcp_io_timeout: Duration::from_secs(*tcp_io_timeout),
        };
        Ok(Dns {
            live: Arc::new(ArcSwap::from_pointee(Live {
                zones,
                shared,
                health,
                overlay,
                https_zones: zone_settings
                    .iter()
                    .filter(|(_, settings)| settings.https_records)
                    .map(|(name, _)| name.clone())
                    .collect(),
                checks: checks.clone(),
                sources: config::settings::sources(config),
                signing,
                keys_changed: Arc::default(),
                secondaries,
                changes: Mutex::new(Some(changed)),
                notified: Mutex::new(Some(notified)),
            })),
            background: Arc::default(),
            challenges: Arc::default(),
            xdp: xdp.clone(),
        })
    }

    /// Serves from now on what `loaded` loaded (a reloaded configuration: another zones folder,
    /// other limits, keys or answers), on the sockets already listening. TCP connections open
    /// now finish under the old settings.
    pub fn adopt(&self, loaded: Dns) {
        let state = loaded.live.load_full();
        let checked: Vec<Vec<u8>> = state
            .checks
            .iter()
            .filter_map(|check| wire::name::from_text(&check.name).ok())
            .map(|wire| wire::name::key_of(&wire))
            .collect();
        state.health.carry_over(&self.live.load().health, &checked);
        state.overlay.carry_over(&self.live.load().overlay);
        state
            .signing
            .set_planning(self.live.load().signing.planning());
        self.live.store(state.clone());
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((old, root)) = background.take() {
            old.cancel();
            let token = root.child_token();
            spawn_background(&state, &token);
            *background = Some((token, root));
        }
    }

    /// Checks every zone as `serve --check` does: fails on the first broken one and writes
    /// nothing. Returns the origins, as [`Dns::origins`] does.
    pub fn check(config: &Config, state_dir: &Path) -> Result<Vec<String>, Error> {
        config::settings::https_path(config)?;
        let access = config::settings::access(config, state_dir)?;
        config::settings::secondaries(config, state_dir, &access)?;
        config::settings::signing(config, state_dir)?;
        let zones = Zones::check(&config.zones)?;
        Ok(origin_names(zones.iter()))
    }

    /// Answers `query`, a DNS message asked over HTTPS (RFC 8484) by `client`: the response and
    /// the smallest TTL in it (what `Cache-Control` may allow), or `None` for a message that
    /// gets no answer (not a query) or a zone transfer, which is not answered over HTTPS.
    pub fn answer_https(&self, query: &[u8], client: std::net::IpAddr) -> Option<(Vec<u8>, u32)> {
        let live = self.live.load();
        let shared = &live.shared;
        let client = answer::Client {
            transport: answer::Transport::Doh,
            address: client,
            now: crate::dnssec::now() as u32,
        };
        let mut out = Vec::with_capacity(512);
        match shared
            .responder
            .respond(&shared.catalog.load(), query, client, &mut out)
        {
            answer::Outcome::Reply => {
                let ttl = smallest_ttl(&out);
                Some((out, ttl))
            }
            answer::Outcome::Drop | answer::Outcome::Transfer(_) => None,
        }
    }

    /// Whether this node moves the signed zones' keys on (rollovers): in a cluster, only the
    /// node that holds the keys' lease; the others sign with the keys it shares.
    pub fn set_dnssec_planning(&self, plans: bool) {
        self.live.load().signing.set_planning(plans);
    }

    /// Starts an algorithm rollover of the signed zone `zone` (text) to `algorithm` (its
    /// name, as `dnssec_algorithm` takes it): what it did, or why not.
    pub fn dnssec_algorithm_rollover(
        &self,
        zone: &str,
        algorithm: &str,
    ) -> Result<String, crate::dnssec::roll::RolloverError> {
        use crate::dnssec::roll::RolloverError;
        let origin = wire::name::from_text(zone).map_err(|_| RolloverError::NotSigned)?;
        let algorithm: crate::dnssec::Algorithm =
            serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                serde::de::value::Error,
            >::new(algorithm))
            .map_err(|_| RolloverError::UnknownAlgorithm(algorithm.to_string()))?;
        let live = self.live.load();
        let said =
            live.signing
                .start_algorithm_rollover(&origin, algorithm, crate::dnssec::now())?;
        live.keys_changed.notify_one();
        Ok(said.join("; "))
    }

    /// Told each time this node changes the key files of a signed zone (a rollover's step).
    pub fn dnssec_key_changes(&self) -> Arc<tokio::sync::Notify> {
        self.live.load().signing.changes()
    }

    /// The keys of the signed zone `zone` (text) in `state_dir` were replaced (by another
    /// node's, from the database): they are read again and the zone signed with them at once.
    pub fn dnssec_keys_replaced(&self, zone: &str) -> Result<(), Error> {
        let origin = wire::name::from_text(zone)
            .map_err(|e| Error::Config(format!("zone name {zone:?}: {e}")))?;
        let live = self.live.load();
        live.signing.reload_keys(&origin)?;
        live.keys_changed.notify_one();
        Ok(())
    }

    /// Every zone served now, with its serial, records and last load, sorted by name.
    pub fn zone_status(&self) -> Vec<crate::ZoneStatus> {
        self.live.load().zones.status()
    }

    /// What `/metrics` shows of the DNS server.
    pub fn collector(&self) -> metrics::DnsCollector {
        metrics::DnsCollector { dns: self.clone() }
    }

    /// The origins of the zones served now, as text without the final dot (`foobar.com`).
    pub fn origins(&self) -> Vec<String> {
        let catalog = self.live.load().zones.catalog();
        let catalog = catalog.load();
        origin_names(catalog.zones().map(|zone| &**zone))
    }

    /// The A and AAAA addresses `name` has in the zones served now (the addresses a health
    /// check probes).
    pub fn addresses(&self, name: &str) -> Vec<std::net::IpAddr> {
        let Ok(wire) = wire::name::from_text(name) else {
            return Vec::new();
        };
        let key = wire::name::key_of(&wire);
        let catalog = self.live.load().zones.catalog();
        let catalog = catalog.load();
        let Some(zone) = catalog.find(&key) else {
            return Vec::new();
        };
        let Ok(node) = zone.find(&key) else {
            return Vec::new();
        };
        let mut addresses = Vec::new();
        for rtype in [wire::rtype::A, wire::rtype::AAAA] {
            if let Some(set) = zone.rrset(node, rtype) {
                for rdata in set.rdatas() {
                    match rdata.len() {
                        4 => addresses
                            .extend(<[u8; 4]>::try_from(rdata).ok().map(std::net::IpAddr::from)),
                        16 => addresses
                            .extend(<[u8; 16]>::try_from(rdata).ok().map(std::net::IpAddr::from)),
                        _ => {}
                    }
                }
            }
        }
        addresses
    }

    /// The zones answered SERVFAIL now (a broken file with no good copy, a secondary zone not
    /// transferred yet or expired).
    pub fn unavailable_zones(&self) -> Vec<String> {
        let catalog = self.live.load().zones.catalog();
        let catalog = catalog.load();
        catalog
            .zones()
            .filter(|zone| !zone.is_available())
            .map(|zone| zone.origin_text())
            .collect()
    }

    /// The health checks of the configuration served now.
    pub fn health_checks(&self) -> Vec<answer::health::Check> {
        self.live.load().checks.clone()
    }

    /// Leaves `down` out of the answers for `name` (a health check's finding), with `ttl` at
    /// most.
    pub fn set_health(&self, name: &str, down: Vec<std::net::IpAddr>, ttl: u32) {
        if let Ok(wire) = wire::name::from_text(name) {
            self.live.load().health.set(
                wire::name::key_of(&wire),
                answer::health::Filter { down, ttl },
            );
        }
    }

    /// Answers `values` as the TXT records of `name` (an ACME DNS-01 challenge; an empty list
    /// stops): from memory at once, ahead of its zone; and, where the zone is a file's, in a
    /// new version of it too (the next serial), which its secondaries (Knot, NSD...) transfer.
    /// Names outside every zone are never answered.
    pub fn set_txt(&self, name: &str, values: &[String]) -> Result<(), AddedError> {
        let wire = parse_name(name)?;
        let key = wire::name::key_of(&wire);
        let live = self.live.load();
        let rdatas: Vec<Vec<u8>> = values
            .iter()
            .map(|v| answer::overlay::txt_rdata(v))
            .collect();
        let origin = {
            let catalog = live.shared.catalog.load();
            catalog.find(&key).map(|zone| zone.origin_key().to_vec())
        };
        let mut challenges = self
            .challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if challenges
            .get(&wire)
            .map_or(rdatas.is_empty(), |now| *now == rdatas)
        {
            // Unchanged: no new version.
            return Ok(());
        }
        live.overlay.set_txt(key, values);
        if rdatas.is_empty() {
            challenges.remove(&wire);
        } else {
            challenges.insert(wire, rdatas);
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        let records: Vec<zone::Rr> = challenges
            .iter()
            .filter(|(owner, _)| wire::name::key_of(owner).starts_with(&origin))
            .flat_map(|(owner, rdatas)| {
                rdatas.iter().map(|rdata| zone::Rr {
                    owner: owner.clone(),
                    rtype: wire::rtype::TXT,
                    ttl: answer::overlay::TXT_TTL,
                    rdata: rdata.clone(),
                })
            })
            .collect();
        drop(challenges);
        if let Err(reason) = live.zones.set_added(&origin, records) {
            // A secondary zone here: its primary has the record, or not; the check before
            // the CA's says.
            tracing::debug!(%name, %reason, "challenge record answered from memory only");
        }
        Ok(())
    }

    /// Done once every nameserver in the NS set of the zone of `name` answers `value` among the
    /// TXT records of `name`, asked on `port` (addresses from the zones served here, else the
    /// system's resolver); asks again every second until then.
    pub async fn txt_visible(&self, name: &str, value: &str, port: u16) -> Result<(), AddedError> {
        let wire = parse_name(name)?;
        let key = wire::name::key_of(&wire);
        let nameservers: Vec<String> = {
            let live = self.live.load();
            let catalog = live.shared.catalog.load();
            let zone = catalog
                .find(&key)
                .ok_or_else(|| AddedError::NoZone(name.to_string()))?;
            zone.apex()
                .and_then(|apex| zone.rrset(apex, wire::rtype::NS))
                .map(|set| set.rdatas().map(wire::name::to_text).collect())
                .unwrap_or_default()
        };
        if nameservers.is_empty() {
            return Err(AddedError::NoNameservers(name.to_string()));
        }
        let mut servers = Vec::new();
        for ns in &nameservers {
            let mut addresses = self.addresses(ns);
            if addresses.is_empty() {
                let host = ns.trim_end_matches('.');
                addresses = tokio::net::lookup_host((host, port))
                    .await
                    .map(|found| found.map(|a| a.ip()).collect())
                    .unwrap_or_default();
            }
            if addresses.is_empty() {
                return Err(AddedError::NoAddress(ns.clone()));
            }
            servers.extend(
                addresses
                    .into_iter()
                    .map(|ip| (ns.clone(), std::net::SocketAddr::new(ip, port))),
            );
        }
        let sources = self.live.load().sources.clone();
        let mut waiting = servers;
        loop {
            let mut still = Vec::new();
            for (ns, server) in waiting {
                let answers =
                    transfer::notify::ask(&wire, wire::rtype::TXT, server, None, None, &sources)
                        .await;
                let seen = answers.as_ref().is_ok_and(|records| {
                    records
                        .iter()
                        .any(|r| r.rtype == wire::rtype::TXT && txt_holds(&r.rdata, value))
                });
                if !seen {
                    tracing::debug!(%ns, %server, %name, "TXT not answered there yet");
                    still.push((ns, server));
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            waiting = still;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Answers HTTPS queries for `names` as `https` says (the edge's own settings), in the zones
    /// whose `[dns.zone."NAME"]` has `https_records = true`; names of other zones are left out.
    /// Replaces the names set before.
    pub fn set_https(&self, names: &[String], https: &answer::overlay::Https) {
        let live = self.live.load();
        let catalog = live.shared.catalog.load();
        let asking: Vec<Vec<u8>> = live
            .https_zones
            .iter()
            .filter_map(|zone| wire::name::from_text(zone).ok())
            .map(|wire| wire::name::key_of(&wire))
            .collect();
        let all: Vec<(Vec<u8>, answer::overlay::Https)> = names
            .iter()
            .filter_map(|name| wire::name::from_text(name).ok())
            .map(|wire| wire::name::key_of(&wire))
            .filter(|key| {
                catalog
                    .find(key)
                    .is_some_and(|zone| asking.iter().any(|a| a.as_slice() == zone.origin_key()))
            })
            .map(|key| (key, https.clone()))
            .collect();
        live.overlay.replace_https(&all);
    }

    /// Whether `name` is inside a zone served now (as its primary or a secondary): records
    /// added with [`Dns::set_txt`] are answered for it.
    pub fn serves(&self, name: &str) -> bool {
        let Ok(wire) = wire::name::from_text(name) else {
            return false;
        };
        let catalog = self.live.load().shared.catalog.load_full();
        catalog.find(&wire::name::key_of(&wire)).is_some()
    }

    /// Loads one zone again: a zone file is parsed again (as `foobar ctl zone reload`), a
    /// secondary zone asks its primaries now. What happened, or why nothing could.
    pub async fn reload_zone(&self, name: &str) -> Result<ZoneReloaded, ZoneReloadError> {
        let wire = wire::name::from_text(name).map_err(|error| ZoneReloadError::Name {
            name: name.to_string(),
            error,
        })?;
        let key = wire::name::key_of(&wire);
        let live = self.live.load_full();
        if let Some(secondary) = live
            .secondaries
            .iter()
            .find(|s| wire::name::key_of(&s.origin) == key)
        {
            secondary.notified.notify_one();
            return Ok(ZoneReloaded::Refreshing(name.to_string()));
        }
        let zones = live.zones.clone();
        let Some(path) = zones.file_of(&key) else {
            return Err(ZoneReloadError::NoSuchZone(name.to_string()));
        };
        let report = tokio::task::spawn_blocking(move || {
            let forced = path.clone();
            zones.reload_forcing(move |p| p == forced)
        })
        .await
        .unwrap_or_default();
        if report.failed > 0 {
            return Err(ZoneReloadError::Failed(name.to_string()));
        }
        let serial = self
            .zone_status()
            .into_iter()
            .find(|z| {
                wire::name::key_of(&wire::name::from_text(&z.zone).unwrap_or_default()) == key
            })
            .map(|z| z.serial);
        Ok(ZoneReloaded::Loaded {
            zone: name.to_string(),
            serial,
        })
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
        tls: listener::TlsSockets,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Result<(), Error> {
        let mut tasks = tokio::task::JoinSet::new();
        let live = self.live.load_full();
        let zones = live.zones.clone();
        let token = shutdown.child_token();
        spawn_background(&live, &token);
        *self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((token, shutdown.clone()));
        // Catch edits made between loading and the start of the watch, before serving.
        let _ = tokio::task::spawn_blocking(move || zones.reload(false)).await;
        let xdp_port = sockets
            .first()
            .and_then(|s| s.udp.local_addr().ok())
            .map(|addr| addr.port());
        if let (Some(port), false) = (xdp_port, self.xdp.is_empty()) {
            tasks.spawn(listener::serve_xdp(
                self.xdp.clone(),
                port,
                self.live.clone(),
                shutdown.clone(),
            ));
        }
        for Sockets { udp, tcp } in sockets {
            let addr = udp.local_addr().ok();
            let tcp = match (tokio::net::TcpListener::from_std(tcp), addr) {
                (Ok(tcp), Some(addr)) => {
                    info!(%addr, "dns listening on udp");
                    info!(%addr, "dns listening on tcp");
                    tcp
                }
                (Err(e), _) => {
                    let addr = addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                    return Err(foobar_net::BindError::new("tcp", addr, e).into());
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
                None,
                self.live.clone(),
                shutdown.clone(),
                drain,
            ));
        }
        let acceptor = tls.config.map(tokio_rustls::TlsAcceptor::from);
        for listener in tls.listeners {
            let Some(acceptor) = acceptor.clone() else {
                return Err(Error::Config(
                    "tls_listen needs the edge's certificates".to_string(),
                ));
            };
            let addr = listener.local_addr().ok();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| {
                let addr = addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                foobar_net::BindError::new("tls", addr, e)
            })?;
            if let Some(addr) = addr {
                info!(%addr, "dns listening on tls (DNS over TLS)");
            }
            tasks.spawn(listener::serve_tcp(
                listener,
                Some(acceptor),
                self.live.clone(),
                shutdown.clone(),
                drain,
            ));
        }
        let routing = match (&tls.quic_routing, tls.quic.is_empty()) {
            (Some(routing), _) => Some(routing.clone()),
            (None, true) => None,
            (None, false) => Some(foobar_net::quic::QuicRouting::new(
                foobar_net::quic::Generation::random()
                    .map_err(|_| Error::Randomness("a QUIC key"))?,
            )),
        };
        for socket in tls.quic {
            let (Some(config), Some(routing)) = (tls.quic_config.clone(), routing.clone()) else {
                return Err(Error::Config(
                    "quic_listen needs the edge's certificates".to_string(),
                ));
            };
            if let Ok(addr) = socket.local_addr() {
                info!(%addr, "dns listening on quic (DNS over QUIC)");
            }
            tasks.spawn(listener::serve_quic(
                socket,
                config,
                routing,
                self.live.clone(),
                shutdown.clone(),
                drain,
            ));
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Starts what keeps `live` current until `token` is cancelled: the zones-folder watch, the
/// journal and NOTIFY for every change, and the secondary zones.
fn spawn_background(live: &Arc<Live>, token: &CancellationToken) {
    match zone::watch::Watch::start(live.zones.clone()) {
        Ok(watch) => {
            tokio::spawn(watch.run(token.clone()));
        }
        Err(e) => error!(error = %e, "zone files are not watched; SIGHUP still reloads"),
    }
    let changes = live
        .changes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(changes) = changes {
        tokio::spawn(transfer::changes::follow(
            changes,
            live.shared.journals.clone(),
            live.shared.responder.clone(),
            live.sources.clone(),
            token.clone(),
        ));
    }
    let notified = live
        .notified
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(mut notified) = notified {
        let secondaries = live.secondaries.clone();
        let token = token.clone();
        tokio::spawn(async move {
            loop {
                let origin_key = tokio::select! {
                    key = notified.recv() => match key {
                        Some(key) => key,
                        None => return,
                    },
                    () = token.cancelled() => return,
                };
                if let Some(secondary) = secondaries
                    .iter()
                    .find(|s| wire::name::key_of(&s.origin) == origin_key)
                {
                    secondary.notified.notify_one();
                }
            }
        });
    }
    tokio::spawn(refresh_signatures(live.clone(), token.clone()));
    for secondary in &live.secondaries {
        let zones = live.zones.clone();
        let publish = {
            let zones = zones.clone();
            move |_old: Option<Arc<Zone>>, new: Arc<Zone>| zones.publish_secondary(new)
        };
        tokio::spawn(secondary.clone().run(zones, publish, token.clone()));
    }
}

/// Keeps the signed zones' signatures fresh and their keys rolling: each is signed again when
/// its first signature is due for refresh or one of its keys' events comes, and the parent's
/// servers are asked for the DS of a new KSK or CSK. Checked at least every minute, since
/// reloads and edits move the due times, and at once when keys change.
async fn refresh_signatures(live: Arc<Live>, token: CancellationToken) {
    const CHECK_AT_LEAST_EVERY: u64 = 60;
    loop {
        check_parents(&live).await;
        let zones = live.zones.clone();
        let now = crate::dnssec::now();
        let next = tokio::task::spawn_blocking(move || zones.refresh_signatures(now))
            .await
            .ok()
            .flatten();
        let next = [next, live.signing.next_ds_check(now)]
            .into_iter()
            .flatten()
            .min();
        let wait = next.map_or(CHECK_AT_LEAST_EVERY, |due| {
            due.saturating_sub(crate::dnssec::now())
                .clamp(1, CHECK_AT_LEAST_EVERY)
        });
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(wait)) => {}
            () = live.keys_changed.notified() => {}
            () = token.cancelled() => return,
        }
    }
}

/// Asks the parent's servers of each zone whose new KSK or CSK waits for its DS: once every one
/// of them serves it, the old key is scheduled to leave.
async fn check_parents(live: &Live) {
    let now = crate::dnssec::now();
    for check in live.signing.ds_checks(now) {
        let zone = wire::name::to_text(&check.origin);
        let mut ttl = None;
        for &parent in &check.parents {
            let seen = match transfer::notify::ask(
                &check.origin,
                wire::rtype::DS,
                parent,
                None,
                None,
                &live.sources,
            )
            .await
            {
                Ok(records) => records
                    .iter()
                    .filter(|record| {
                        record.rtype == wire::rtype::DS && check.wanted.contains(&record.rdata)
                    })
                    .map(|record| record.ttl)
                    .max(),
                Err(e) => {
                    info!(zone = %zone, parent = %parent, error = %e, "DNSSEC: the parent's DS not read");
                    None
                }
            };
            match seen {
                Some(seen) => ttl = Some(ttl.map_or(seen, |ttl: u32| ttl.max(seen))),
                None => {
                    info!(zone = %zone, parent = %parent, key = check.tag, "DNSSEC: the parent does not serve the new key's DS yet");
                    ttl = None;
                    break;
                }
            }
        }
        let Some(ttl) = ttl else { continue };
        if let Err(e) = live.signing.ds_seen(&check.origin, check.tag, ttl, now) {
            error!(zone = %zone, error = %e, "DNSSEC: the parent's DS seen, but the keys not kept");
        }
    }
}

impl Live {}

impl listener::Serving for Live {
    fn shared(&self) -> &listener::Shared {
        &self.shared
    }
}

/// The smallest TTL of the records in `message` (its OPT left out), 0 if it has none.
fn smallest_ttl(message: &[u8]) -> u32 {
    let (Some(counts), Some(mut at)) = (
        wire::read::counts(message),
        wire::read::after_question(message),
    ) else {
        return 0;
    };
    let records = counts[1..].iter().map(|&n| usize::from(n)).sum::<usize>();
    let mut smallest: Option<u32> = None;
    for _ in 0..records {
        let Some(record) = wire::read::read_record(message, at) else {
            break;
        };
        at = record.end;
        if record.rtype != wire::rtype::OPT {
            smallest = Some(smallest.map_or(record.ttl, |ttl| ttl.min(record.ttl)));
        }
    }
    smallest.unwrap_or(0)
}

/// Whether the TXT RDATA `rdata` (character-strings) says `value`, joined as RFC 7208 reads
/// strings back.
fn txt_holds(rdata: &[u8], value: &str) -> bool {
    let mut joined = Vec::with_capacity(rdata.len());
    let mut at = 0;
    while let Some(&len) = rdata.get(at) {
        let Some(part) = rdata.get(at + 1..at + 1 + usize::from(len)) else {
            return false;
        };
        joined.extend_from_slice(part);
        at += 1 + usize::from(len);
    }
    joined == value.as_bytes()
}

fn parse_name(name: &str) -> Result<Vec<u8>, AddedError> {
    wire::name::from_text(name).map_err(|reason| AddedError::Name {
        name: name.to_string(),
        reason: reason.to_string(),
    })
}
