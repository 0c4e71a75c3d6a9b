//! One upstream of a proxy route: where it is (an address as configured, its name resolved at
//! start and again every `resolve_interval`), how to reach it (TCP, TLS, a Unix socket), its
//! connection pool, and whether it is up (active checks, passive failures).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::{
    metrics::{Failure, UpstreamMetrics},
    pool::Pool,
};
use crate::{probe::Tally, site::config::ProxyConfig};

/// An upstream as configured: `http://host:port`, `https://host:port`, `h2c://host:port` or
/// `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub place: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 over TCP without TLS, multiplexed.
    H2c,
    /// HTTP/1.1 over a Unix socket.
    Unix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A host name or an address, and a port.
    Host {
        host: String,
        port: u16,
    },
    Socket(PathBuf),
}

/// Why an upstream cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("a Unix socket is an absolute path: unix:/run/app.sock")]
    RelativeSocket,
    #[error("http://, https://, h2c:// or unix:")]
    Scheme,
    #[error("no path here: the request's path is passed on (strip_prefix removes the route's)")]
    Path,
    #[error("not a host and port")]
    Authority,
    #[error("no user information in an upstream")]
    UserInfo,
    #[error("no host")]
    NoHost,
    #[error("tls_name: {0}")]
    TlsName(rustls_pki_types::InvalidDnsNameError),
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    #[error("ca: {0}")]
    Root(rustls::Error),
    #[error("ca {}: {error}", path.display())]
    Ca {
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
}

/// Why an upstream's name gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Lookup(#[from] std::io::Error),
    #[error("no address")]
    NoAddress,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, UpstreamError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(UpstreamError::RelativeSocket);
            }
            return Ok(Target {
                scheme: Scheme::Unix,
                place: Place::Socket(PathBuf::from(path)),
            });
        }
        let (scheme, rest, default_port) = if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest, 80)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest, 443)
        } else if let Some(rest) = text.strip_prefix("h2c://") {
            (Scheme::H2c, rest, 80)
        } else {
            return Err(UpstreamError::Scheme);
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('?') {
            return Err(UpstreamError::Path);
        }
        let authority: http::uri::Authority =
            authority.parse().map_err(|_| UpstreamError::Authority)?;
        if authority.as_str().contains('@') {
            return Err(UpstreamError::UserInfo);
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(UpstreamError::NoHost);
        }
        Ok(Target {
            scheme,
            place: Place::Host {
                host,
                port: authority.port_u16().unwrap_or(default_port),
            },
        })
    }

    /// What `Host` names when set to the upstream's own (`host = "{upstream}"`).
    pub fn authority(&self) -> String {
        match &self.place {
            Place::Host { host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let default = match self.scheme {
                    Scheme::Https => 443,
                    _ => 80,
                };
                if *port == default {
                    host
                } else {
                    format!("{host}:{port}")
                }
            }
            Place::Socket(_) => "localhost".to_string(),
        }
    }
}

/// A connection to an upstream, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type Stream = Pin<Box<dyn Io>>;

/// Why an upstream could not be reached.
#[derive(Debug)]
pub enum ConnectError {
    /// No address for its name (yet, or any more).
    Resolve(ResolveError),
    Refused(std::io::Error),
    Timeout,
    Tls(std::io::Error),
    /// Every connection it may have is in use, for the whole connect timeout.
    Full,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Resolve(reason) => write!(f, "cannot resolve: {reason}"),
            ConnectError::Refused(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => write!(f, "connect timed out"),
            ConnectError::Tls(e) => write!(f, "tls: {e}"),
            ConnectError::Full => write!(f, "every connection allowed is busy"),
        }
    }
}

impl ConnectError {
    pub fn kind(&self) -> Failure {
        match self {
            ConnectError::Timeout => Failure::Timeout,
            ConnectError::Full => Failure::Full,
            _ => Failure::Connect,
        }
    }
}

/// How to reach one upstream.
pub struct Connector {
    pub target: Target,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// The addresses its name resolves to; tried in turn.
    addresses: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Connector {
    pub fn new(target: Target, config: &ProxyConfig) -> Result<Connector, UpstreamError> {
        let tls = match (&target.scheme, &target.place) {
            (Scheme::Https, Place::Host { host, .. }) => {
                let name = config.tls_name.clone().unwrap_or_else(|| host.clone());
                let name = ServerName::try_from(name)
                    .map_err(UpstreamError::TlsName)?
                    .to_owned();
                Some((tls_connector(config)?, name))
            }
            _ => None,
        };
        let addresses = match &target.place {
            Place::Host { host, port } => match host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, *port)],
                Err(_) => Vec::new(),
            },
            Place::Socket(_) => Vec::new(),
        };
        Ok(Connector {
            target,
            tls,
            addresses: ArcSwap::from_pointee(addresses),
            next: AtomicUsize::new(0),
        })
    }

    /// Whether its host is a name to resolve (not an address, not a socket).
    fn named(&self) -> Option<(&str, u16)> {
        match &self.target.place {
            Place::Host { host, port } if host.parse::<std::net::IpAddr>().is_err() => {
                Some((host, *port))
            }
            _ => None,
        }
    }

    /// Resolves its name again; on failure the addresses known stay.
    pub async fn resolve(&self) -> Result<(), ResolveError> {
        let Some((host, port)) = self.named() else {
            return Ok(());
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if found.is_empty() {
            return Err(ResolveError::NoAddress);
        }
        if **self.addresses.load() != found {
            info!(upstream = %host, addresses = ?found, "upstream resolved");
            self.addresses.store(Arc::new(found));
        }
        Ok(())
    }

    /// A new connection, within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Stream, ConnectError> {
        match tokio::time::timeout(timeout, self.connect_now()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect_now(&self) -> Result<Stream, ConnectError> {
        if let Place::Socket(path) = &self.target.place {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(ConnectError::Refused)?;
            return Ok(Box::pin(stream));
        }
        if self.addresses.load().is_empty() {
            self.resolve().await.map_err(ConnectError::Resolve)?;
        }
        let addresses = self.addresses.load_full();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..addresses.len() {
            let address = addresses[(start + i) % addresses.len()];
            match tokio::net::TcpStream::connect(address).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return match &self.tls {
                        Some((connector, name)) => connector
                            .connect(name.clone(), tcp)
                            .await
                            .map(|tls| Box::pin(tls) as Stream)
                            .map_err(ConnectError::Tls),
                        None => Ok(Box::pin(tcp)),
                    };
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => ConnectError::Refused(e),
            None => ConnectError::Resolve(ResolveError::NoAddress),
        })
    }
}

/// TLS to an `https://` upstream: the system's roots or `ca`, or no verification at all.
fn tls_connector(config: &ProxyConfig) -> Result<tokio_rustls::TlsConnector, UpstreamError> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut tls = if config.tls_verify {
        let mut roots = rustls::RootCertStore::empty();
        let certificates = match &config.ca {
            Some(path) => {
                let ca = |error| UpstreamError::Ca {
                    path: path.clone(),
                    error,
                };
                CertificateDer::pem_file_iter(path)
                    .map_err(ca)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ca)?
            }
            None => crate::probe::rustls_native_roots(),
        };
        for certificate in certificates {
            roots.add(certificate).map_err(UpstreamError::Root)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::probe::AnyCertificate(provider)))
            .with_no_client_auth()
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

/// One upstream of a route: how to reach it, its pool, its health.
pub struct Upstream {
    /// As configured, for logs and metrics.
    pub name: String,
    /// Its identity for sticky choices.
    pub id: u64,
    pub connector: Connector,
    pub pool: Arc<Pool>,
    /// Requests in flight (least connections).
    pub in_flight: AtomicUsize,
    /// What the active checks say (up until they say otherwise).
    active: Mutex<Option<Tally>>,
    active_up: AtomicBool,
    passive: Mutex<Passive>,
    pub metrics: Arc<UpstreamMetrics>,
    /// Its checks and resolving have been started (once, whichever route build got it first).
    pub started: AtomicBool,
    route: String,
    max_fails: u32,
    fail_timeout: Duration,
}

/// Recent failures, and until when they keep the upstream out.
#[derive(Default)]
struct Passive {
    failures: VecDeque<Instant>,
    down_until: Option<Instant>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(route: &str, name: &str, config: &ProxyConfig) -> Result<Upstream, UpstreamError> {
        let target = Target::parse(name)?;
        let h2 = target.scheme == Scheme::H2c;
        let metrics = UpstreamMetrics::register(route, name);
        Ok(Upstream {
            name: name.to_string(),
            id: super::balance::identity(name),
            connector: Connector::new(target, config)?,
            pool: Arc::new(Pool::new(
                h2,
                config.max_connections,
                config.max_idle,
                config.idle_timeout,
                metrics.clone(),
            )),
            in_flight: AtomicUsize::new(0),
            active: Mutex::new(None),
            active_up: AtomicBool::new(true),
            passive: Mutex::new(Passive::default()),
            metrics,
            started: AtomicBool::new(false),
            route: route.to_string(),
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
        })
    }

    /// Whether requests may go to it now.
    pub fn is_up(&self, now: Instant) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let passive = self.passive.lock().unwrap_or_else(PoisonError::into_inner);
        passive.down_until.is_none_or(|until| now >= until)
    }

    /// A request to it failed: `max_fails` within `fail_timeout` keep it out for
    /// `fail_timeout` (nginx's `max_fails`, `fail_timeout`).
    pub fn failed(&self, kind: Failure, reason: &str) {
        self.metrics.failed(kind);
        // Busy is this proxy's own bound, not the upstream failing.
        if self.max_fails == 0 || kind == Failure::Full {
            return;
        }
        let now = Instant::now();
        let mut passive = self.passive.lock().unwrap_or_else(PoisonError::into_inner);
        passive.failures.push_back(now);
        while passive
            .failures
            .front()
            .is_some_and(|&at| now.duration_since(at) > self.fail_timeout)
        {
            passive.failures.pop_front();
        }
        let already_down = passive.down_until.is_some_and(|until| now < until);
        if passive.failures.len() >= self.max_fails as usize && !already_down {
            passive.down_until = Some(now + self.fail_timeout);
            passive.failures.clear();
            warn!(
                route = %self.route,
                upstream = %self.name,
                %reason,
                seconds = self.fail_timeout.as_secs_f64(),
                "upstream down: failing requests; none sent to it for a while"
            );
        }
        drop(passive);
        self.metrics.set_up(self.is_up(now));
    }

    /// An active check's result.
    pub fn checked(&self, result: Result<(), crate::probe::ProbeError>, rise: u32, fall: u32) {
        let healthy = result.is_ok();
        let mut tally = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match tally.as_mut() {
            None => {
                *tally = Some(Tally::first(healthy));
                (!healthy).then_some(false)
            }
            Some(tally) => tally.record(healthy, rise, fall),
        };
        drop(tally);
        match (changed, result) {
            (Some(true), _) => {
                self.active_up.store(true, Ordering::Relaxed);
                // Back by the checks: earlier passive failures no longer count.
                *self.passive.lock().unwrap_or_else(PoisonError::into_inner) = Passive::default();
                info!(route = %self.route, upstream = %self.name, "upstream up: health check passes");
            }
            (Some(false), Err(reason)) => {
                self.active_up.store(false, Ordering::Relaxed);
                warn!(route = %self.route, upstream = %self.name, %reason, "upstream down: health check fails");
            }
            _ => {}
        }
        self.metrics.set_up(self.is_up(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_default_ports() {
        let rows = [
            ("http://127.0.0.1:3000", Scheme::Http, "127.0.0.1", 3000),
            ("http://app.internal", Scheme::Http, "app.internal", 80),
            ("https://api.example/", Scheme::Https, "api.example", 443),
            ("h2c://[::1]:50051", Scheme::H2c, "::1", 50051),
        ];
        for (text, scheme, host, port) in rows {
            let target = Target::parse(text).expect(text);
            assert_eq!(target.scheme, scheme, "{text}");
            assert_eq!(
                target.place,
                Place::Host {
                    host: host.to_string(),
                    port
                },
                "{text}"
            );
        }
        assert_eq!(
            Target::parse("unix:/run/app.sock").map(|t| t.place).ok(),
            Some(Place::Socket(PathBuf::from("/run/app.sock")))
        );
        for bad in [
            "ftp://x",
            "127.0.0.1:3000",
            "http://x/api",
            "unix:run.sock",
            "http://",
            "http://u@x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Target::parse("h2c://[::1]:50051")
                .map(|t| t.authority())
                .ok(),
            Some("[::1]:50051".to_string())
        );
        assert_eq!(
            Target::parse("https://api.example:443")
                .map(|t| t.authority())
                .ok(),
            Some("api.example".to_string())
        );
    }
}
