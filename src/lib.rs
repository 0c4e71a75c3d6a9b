//! The `foobar` binary's wiring: the only code that knows every crate.
//!
//! ```text
//! main ──▶ Config (file + defaults) ──▶ load zones ──▶ bind sockets ──▶ run until SIGTERM/Ctrl-C
//!                                                                     └─ SIGHUP: reload zones
//! ```

mod config;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use foobar_dns::{Dns, Sockets};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub use crate::config::Config;

/// Everything loaded and validated before a port is bound.
#[derive(Debug)]
pub struct Loaded {
    dns: Dns,
}

/// Sockets bound for every listener.
#[derive(Debug)]
pub struct Bound {
    dns: Vec<Sockets>,
}

impl Bound {
    /// The addresses the DNS listeners got (the real port where the config said 0).
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.dns
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Loads and validates everything the configuration names: zones now, more as crates join.
pub fn load(config: &Config) -> anyhow::Result<Loaded> {
    let Config { state_dir: _, dns } = config;
    let dns = Dns::load(dns).context("loading zones")?;
    Ok(Loaded { dns })
}

/// Binds every listen address of the configuration.
pub fn bind(config: &Config) -> anyhow::Result<Bound> {
    let dns = config
        .dns
        .listen
        .iter()
        .map(|&addr| foobar_dns::bind(addr))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Bound { dns })
}

/// Serves until `shutdown` fires or SIGTERM/Ctrl-C arrives; SIGHUP reloads zones.
pub async fn run(loaded: Loaded, bound: Bound, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Loaded { dns } = loaded;
    let Bound { dns: dns_sockets } = bound;
    tokio::spawn(signals(dns.clone(), shutdown.clone()));
    dns.run(dns_sockets, shutdown).await?;
    info!("stopped");
    Ok(())
}

#[cfg(unix)]
async fn signals(dns: Dns, shutdown: CancellationToken) {
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
                info!("SIGHUP: reloading zones");
                let report = dns.reload().await;
                info!(loaded = report.loaded, removed = report.removed, failed = report.failed, "reload done");
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = shutdown.cancelled() => return,
        }
    }
    info!("stopping");
    shutdown.cancel();
}

#[cfg(not(unix))]
async fn signals(_dns: Dns, shutdown: CancellationToken) {
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

/// `foobar check-zone`: validates zone files like named-checkzone. Prints one line per file and
/// returns whether all are valid.
pub fn check_zones(origin: Option<&str>, files: &[PathBuf]) -> anyhow::Result<bool> {
    let origin = origin
        .map(|text| {
            let mut name = hickory_name(text)?;
            name.set_fqdn(true);
            Ok::<_, anyhow::Error>(name)
        })
        .transpose()?;
    let mut all_ok = true;
    for file in files {
        match foobar_dns::load_zone(file, origin.as_ref()) {
            Ok(loaded) => println!(
                "{}: zone {} serial {}, {} records: OK",
                file.display(),
                loaded.zone.origin_text(),
                loaded.zone.serial(),
                loaded.zone.record_count()
            ),
            Err(e) => {
                eprintln!("{e}");
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}

fn hickory_name(text: &str) -> anyhow::Result<foobar_dns::load::Name> {
    foobar_dns::load::Name::from_ascii(text).with_context(|| format!("invalid origin \"{text}\""))
}

/// The configuration from `path`, or the built-in defaults.
pub fn config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::from_file(path),
        None => Ok(Config::default()),
    }
}
