//! The `foobar` binary's wiring: the only code that knows every crate.
//!
//! ```text
//! main ──▶ Config (file + defaults) ──▶ load zones, certificate, site ──▶ bind sockets
//!      ──▶ run DNS and the edge until SIGTERM/Ctrl-C        SIGHUP: reload zones and certificate
//! ```

mod config;
pub mod log;

use std::path::{Path, PathBuf};

use anyhow::Context;
use foobar_dns::Dns;
use foobar_edge::{Edge, Peer, StaticFiles};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use crate::config::Config;

/// Everything loaded and validated before a port is bound.
#[derive(Debug)]
pub struct Loaded {
    dns: Dns,
    edge: Edge,
    site: axum::Router,
}

/// Sockets bound for every listener.
#[derive(Debug)]
pub struct Bound {
    dns: Vec<foobar_dns::Sockets>,
    edge: foobar_edge::Sockets,
}

/// Loads and validates everything the configuration names: zones, the certificate (created
/// for the zones' names when none is configured), the database (migrated), the site: the app's
/// routes in front of the static files.
pub async fn load(config: &Config) -> anyhow::Result<Loaded> {
    let Config {
        state_dir,
        dns,
        edge,
        app,
    } = config;
    let dns = Dns::load(dns, state_dir).context("loading zones")?;
    let names = site_names(dns.origins());
    let files: StaticFiles =
        foobar_edge::static_files(&edge.root, edge.file_cache_bytes, &edge.cache_control)
            .context("loading the static site")?;
    let edge = Edge::load(edge, state_dir, &names).context("loading the certificate")?;
    let app = foobar_app::load(app, state_dir)
        .await
        .context("opening the database")?;
    let site = foobar_app::router(app)
        .fallback_service(files)
        .layer(axum::middleware::map_request(client_address));
    Ok(Loaded { dns, edge, site })
}

/// Tells the app the client's address, which the edge knows from the connection.
async fn client_address(mut request: axum::extract::Request) -> axum::extract::Request {
    if let Some(&Peer(address)) = request.extensions().get::<Peer>() {
        request
            .extensions_mut()
            .insert(foobar_app::ClientAddress(address.ip()));
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
    } = config;
    let names = Dns::check(dns).context("checking zones")?;
    // No file cache: it would start watching the root.
    foobar_edge::static_files(&edge.root, 0, &edge.cache_control)
        .context("checking the static site")?;
    Edge::check(edge, state_dir, &site_names(names)).context("checking the certificate")?;
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

/// Binds every listen address of the configuration.
pub fn bind(config: &Config, loaded: &Loaded) -> anyhow::Result<Bound> {
    let dns = config
        .dns
        .listen
        .iter()
        .map(|&addr| foobar_dns::bind(addr))
        .collect::<Result<Vec<_>, _>>()?;
    let edge = loaded.edge.bind()?;
    Ok(Bound { dns, edge })
}

/// Serves until `shutdown` fires or SIGTERM/Ctrl-C arrives; SIGHUP reloads zones and the
/// certificate.
pub async fn run(loaded: Loaded, bound: Bound, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Loaded { dns, edge, site } = loaded;
    let Bound {
        dns: dns_sockets,
        edge: edge_sockets,
    } = bound;
    tokio::spawn(signals(dns.clone(), edge.clone(), shutdown.clone()));
    // Every part of the server stops within the one bound the operator sets.
    let drain = edge.drain_timeout();
    let (dns_result, edge_result) = tokio::join!(
        dns.run(dns_sockets, shutdown.clone(), drain),
        edge.run(edge_sockets, site, shutdown.clone())
    );
    dns_result?;
    edge_result?;
    info!("stopped");
    Ok(())
}

#[cfg(unix)]
async fn signals(dns: Dns, edge: Edge, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hangup), Ok(mut terminate)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                info!("SIGHUP: reloading zones and certificate");
                let report = dns.reload().await;
                info!(loaded = report.loaded, removed = report.removed, failed = report.failed, "zones reloaded");
                match edge.reload_certificate() {
                    Ok(()) => info!("certificate reloaded"),
                    Err(e) => error!(error = %e, "certificate reload failed; the previous one stays"),
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = shutdown.cancelled() => return,
        }
    }
    info!("stopping: finishing in-flight requests");
    shutdown.cancel();
}

#[cfg(not(unix))]
async fn signals(_dns: Dns, _edge: Edge, shutdown: CancellationToken) {
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

/// `foobar check-zone`: validates zone files like named-checkzone. Prints one line per file and
/// returns whether all are valid.
pub fn check_zones(origin: Option<&str>, files: &[PathBuf]) -> anyhow::Result<bool> {
    let origin = origin
        .map(|text| {
            foobar_dns::load::parse_origin(text)
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
pub fn config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    }
}
