//! The `foobar` binary's wiring: the only code that knows every crate.
//!
//! ```text
//! main ──▶ Config (file + defaults) ──▶ load zones, certificate, site ──▶ bind sockets
//!      ──▶ run DNS and the edge until SIGTERM/Ctrl-C        SIGHUP: reload zones and certificate
//! ```

mod acme;
mod admin;
mod config;
mod control;
pub mod ctl;
mod dnssec;
mod doh;
mod health;
mod inheritance;
pub mod log;
mod supervise;

use std::path::{Path, PathBuf};

use anyhow::Context;
use foobar_dns::Dns;
use foobar_edge::Edge;

pub use crate::config::Config;
use crate::inheritance::ListeningSockets;
pub use crate::{
    inheritance::Inherited,
    supervise::{Launch, serve},
};

/// Everything loaded and validated before a port is bound.
#[derive(Debug)]
pub struct Loaded {
    dns: Dns,
    edge: Edge,
    /// The built-in app, which the edge serves where the sites' routes say.
    app: foobar_edge::App,
    /// The app's database: also what the nodes of a cluster share (certificates, leases).
    store: foobar_app::store::Store,
}

/// Sockets bound for every listener.
#[derive(Debug)]
pub struct Bound {
    dns: Vec<foobar_dns::Sockets>,
    /// DNS over TLS.
    dot: Vec<std::net::TcpListener>,
    /// DNS over QUIC.
    doq: Vec<std::net::UdpSocket>,
    edge: foobar_edge::Sockets,
    admin: Option<std::net::TcpListener>,
}

/// Loads and validates everything the configuration names: zones, the sites (their roots,
/// routes and certificates, a self-signed one for the zones' names where none is configured),
/// the database (migrated), and the built-in app.
pub async fn load(config: &Config, draining: &Draining) -> anyhow::Result<Loaded> {
    let Config {
        state_dir,
        dns,
        edge,
        app,
        admin,
        log,
        site,
        acme,
    } = config;
    admin.address()?;
    if let Some(acme) = acme {
        acme.check()?;
    }
    foobar_dns::log_queries(log.dns_queries);
    // The database first: the nodes of a cluster share the zones' signing keys through it.
    let app = foobar_app::load(app, state_dir)
        .await
        .context("opening the database")?;
    let store = app.store.clone();
    dnssec::share_keys(config, &store, &acme::node_id()).await;
    let dns = Dns::load(dns, state_dir).context("loading zones")?;
    let names = site_names(dns.origins());
    let edge =
        Edge::load(edge, site, state_dir, &names, acme.is_some()).context("loading the sites")?;
    let ready = {
        let (draining, dns) = (draining.clone(), dns.clone());
        move || {
            if draining.is_set() {
                return foobar_app::Readiness::NotReady(
                    "draining: this node is stopping or handing over".to_string(),
                );
            }
            if let Some(zone) = dns.unavailable_zones().first() {
                return foobar_app::Readiness::NotReady(format!("zone {zone} is not loaded"));
            }
            // Served, but not from the current file: reported, not a reason to leave.
            foobar_app::Readiness::Ready(dns
                .zone_status()
                .into_iter()
                .filter(|zone| zone.state == foobar_dns::ZoneState::Failed)
                .map(|zone| {
                    format!(
                        "zone {}: its file failed to load; serial {} (the last good version) serves",
                        zone.zone, zone.serial
                    )
                })
                .collect(),
            )
        }
    };
    // DNS over HTTPS, where configured; paths the app does not know are the site's static files.
    let app = doh::routes(
        foobar_app::router(app.with_readiness(ready)),
        &config.dns.https_path,
        dns.clone(),
    )
    .fallback_service(foobar_edge::Fallthrough)
    // A plain function of the request: no future of its own per request. The app's routes
    // only: the static files behind the fallback have no use for it.
    .route_layer(tower::util::MapRequestLayer::new(client_address));
    // A DoH GET is answered before the router (its other methods go through the route above).
    let app = doh::Gets::new(app, &config.dns.https_path, dns.clone());
    Ok(Loaded {
        dns,
        edge,
        app: foobar_edge::App::new(
            foobar_edge::EdgeService::new(app),
            foobar_app::PATHS
                .iter()
                .copied()
                .chain(Some(config.dns.https_path.as_str()).filter(|path| !path.is_empty())),
        ),
        store,
    })
}

/// Set when this process stops serving (stopping, or handing over to a new one): `/readyz`
/// answers 503 from then on, so that the other nodes' health checks withdraw this one.
#[derive(Debug, Clone, Default)]
pub struct Draining(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Draining {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Tells the app the client's address, which the edge knows from the connection (and, behind
/// a trusted proxy, from what it forwards).
fn client_address(mut request: axum::extract::Request) -> axum::extract::Request {
    if let Some(address) = foobar_edge::client_ip(request.extensions()) {
        request
            .extensions_mut()
            .insert(foobar_app::ClientAddress(address));
    }
    request
}

/// Validates everything the configuration names, as `serve --check` does: a broken zone is an
/// error here, where serving would fall back to its last good copy.
///
/// A dry run: nothing is written or created. A self-signed certificate, API token or SQLite
/// database that does not exist yet is reported as one that serving would create.
pub async fn check(config: &Config) -> anyhow::Result<()> {
    let Config {
        state_dir,
        dns,
        edge,
        app,
        admin,
        log: _,
        site,
        acme,
    } = config;
    admin.address()?;
    if let Some(acme) = acme {
        acme.check()?;
    }
    let names = Dns::check(dns, state_dir).context("checking zones")?;
    Edge::check(edge, site, state_dir, &site_names(names), acme.is_some())
        .context("checking the sites")?;
    foobar_app::check(app, state_dir)
        .await
        .context("checking the database")?;
    Ok(())
}

/// The names the site answers to: each zone's apex and www.
fn site_names(origins: Vec<String>) -> Vec<String> {
    origins
        .into_iter()
        .flat_map(|origin| [format!("www.{origin}"), origin])
        .collect()
}

/// Binds every listen address of the configuration, taking over the sockets a predecessor
/// hands over for the same configured addresses; every socket goes into `handover` for a
/// successor in turn.
pub fn bind(
    config: &Config,
    loaded: &Loaded,
    mut inherited: Option<&mut Inherited>,
    handover: &mut ListeningSockets,
) -> anyhow::Result<Bound> {
    let mut dns = Vec::new();
    for &addr in &config.dns.listen {
        let (udp_name, tcp_name) = (format!("dns-udp@{addr}"), format!("dns-tcp@{addr}"));
        let taken = match inherited.as_deref_mut() {
            Some(inherited) => (inherited.udp(&udp_name)?, inherited.tcp(&tcp_name)?),
            None => (None, None),
        };
        let sockets = match taken {
            (Some(udp), Some(tcp)) => foobar_dns::Sockets::taken_over(udp, tcp)?,
            _ => foobar_dns::bind(addr)?,
        };
        handover.add(udp_name, &sockets.udp)?;
        handover.add(tcp_name, &sockets.tcp)?;
        dns.push(sockets);
    }
    let mut dot = Vec::new();
    for &addr in &config.dns.tls_listen {
        let name = format!("dns-tls@{addr}");
        let listener = tcp_listener(inherited.as_deref_mut(), &name, addr, "DNS over TLS")?;
        listener.set_nonblocking(true)?;
        handover.add(name, &listener)?;
        dot.push(listener);
    }
    let mut doq = Vec::new();
    for &addr in &config.dns.quic_listen {
        let name = format!("dns-quic@{addr}");
        let taken = match inherited.as_deref_mut() {
            Some(inherited) => inherited.udp(&name)?,
            None => None,
        };
        let socket = match taken {
            Some(socket) => socket,
            None => std::net::UdpSocket::bind(addr)
                .with_context(|| format!("DNS over QUIC socket on {addr}"))?,
        };
        socket.set_nonblocking(true)?;
        handover.add(name, &socket)?;
        doq.push(socket);
    }
    let edge_config = &config.edge;
    let names = (
        format!("http@{}", edge_config.http),
        format!("https-tcp@{}", edge_config.https),
        format!("https-udp@{}", edge_config.https),
    );
    let (http, https) = match inherited.as_deref_mut() {
        Some(inherited) => (
            inherited.tcp(&names.0)?,
            match (inherited.tcp(&names.1)?, inherited.udp(&names.2)?) {
                (Some(tcp), Some(udp)) => Some((tcp, udp)),
                _ => None,
            },
        ),
        None => (None, None),
    };
    let edge = loaded.edge.bind_with(http, https)?;
    handover.add(names.0, &edge.http)?;
    handover.add(names.1, &edge.https_tcp)?;
    handover.add(names.2, &edge.https_udp)?;
    let admin = match config.admin.address()? {
        Some(addr) => {
            let name = format!("admin@{addr}");
            let listener = tcp_listener(inherited, &name, addr, "admin")?;
            handover.add(name, &listener)?;
            Some(listener)
        }
        None => None,
    };
    Ok(Bound {
        dns,
        dot,
        doq,
        edge,
        admin,
    })
}

/// The TCP listener `name` a predecessor hands over, else one bound on `addr` (`what` says
/// which, in an error).
fn tcp_listener(
    inherited: Option<&mut Inherited>,
    name: &str,
    addr: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<std::net::TcpListener> {
    if let Some(listener) = inherited
        .map(|inherited| inherited.tcp(name))
        .transpose()?
        .flatten()
    {
        return Ok(listener);
    }
    std::net::TcpListener::bind(addr).with_context(|| format!("{what} listener on {addr}"))
}

/// The log format the configuration asks for; text if it cannot be read.
pub fn log_format(path: Option<&Path>) -> log::Format {
    config(path).map_or(log::Format::Text, |config| config.log.format)
}

/// The state_dir a configuration file names (the default without one), read leniently: only
/// that key must be readable.
pub fn state_dir(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let default = Config::default().state_dir;
    let Some(path) = path else {
        return Ok(default);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let named = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|table| table.get("state_dir")?.as_str().map(PathBuf::from));
    Ok(named.unwrap_or(default))
}

/// Sends a command (`upgrade`, `reload`, `pid`) to the server running on `state_dir` and
/// returns its answer line; an upgrade may take as long as the new process takes to load.
pub fn ask_server(state_dir: &Path, command: &str) -> anyhow::Result<String> {
    control::ask(state_dir, command, std::time::Duration::from_secs(120))
}

/// `foobar check-zone`: validates zone files like named-checkzone. Prints one line per file and
/// returns whether all are valid.
pub fn check_zones(origin: Option<&str>, files: &[PathBuf]) -> anyhow::Result<bool> {
    let origin = origin
        .map(|text| {
            foobar_dns::parse_origin(text)
                .map_err(|e| anyhow::anyhow!("invalid origin \"{text}\": {e}"))
        })
        .transpose()?;
    let mut all_ok = true;
    for file in files {
        match foobar_dns::load_zone(file, origin.as_deref()) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{warning} (warning)");
                }
                println!(
                    "{}: zone {} serial {}, {} records: OK",
                    file.display(),
                    loaded.zone.origin_text(),
                    loaded.zone.serial(),
                    loaded.zone.record_count()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

/// The configuration from `path`, or the built-in defaults.
/// `foobar dnssec ds ZONE`: prints the DS records of a zone signed here.
pub fn dnssec_ds(config: Option<&Path>, zone: &str) -> anyhow::Result<bool> {
    let config = self::config(config)?;
    let signed = config.dns.zone.iter().any(|(name, settings)| {
        settings.dnssec
            && name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(zone.trim_end_matches('.'))
    });
    if !signed {
        anyhow::bail!("{zone}: not signed here (set dnssec = true in [dns.zone.\"{zone}\"])");
    }
    for line in foobar_dns::ds_records(&config.state_dir, zone)? {
        println!("{line}");
    }
    Ok(true)
}

pub fn config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    }
}
