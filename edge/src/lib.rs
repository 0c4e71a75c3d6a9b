//! foobar's web edge: what nginx or Caddy would be in the classic stack.
//!
//! ```text
//!  browsers ──TCP──▶ rustls (ALPN h2, http/1.1; certificate by SNI) ──▶ hyper-util auto ──┐
//!           ──UDP──▶ quinn (ALPN h3) ──▶ h3 ──────────────────────────────────────────────┤
//!           ──TCP──▶ plain HTTP/1.1 ──▶ 308 to https                     Request<Body>     ▼
//!                        access log ▶ compression ▶ site by name ▶ route (first match)
//!                           ├─▶ static files      ├─▶ the built-in app (a service it is handed)
//!                           ├─▶ proxy: upstreams, pools, health, WebSockets (tunnel)
//!                           ├─▶ FastCGI (PHP-FPM) └─▶ redirect, fixed response
//! ```
//!
//! The edge knows nothing of DNS or SQL: it is handed the app as a service and serves it where
//! the routes say.

#![warn(missing_docs)]

pub mod access;
mod activity;
pub mod challenge;
mod coalesce;
mod config;
mod date;
mod error;
mod fastcgi;
mod file_cache;
mod files;
mod h3;
pub mod metrics;
pub mod probe;
mod proxy;
mod quic;
mod renewal;
mod service;
mod site;
mod tcp;
mod tls;
mod tunnel;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use arc_swap::ArcSwap;

use foobar_net::quic::QuicRouting;
use foobar_net::{BindError, PerAddress};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::service::{ResponseFuture, Stack, stack};

pub use crate::{
    config::Config,
    error::Error,
    files::{StaticFiles, static_files},
    service::{EdgeService, Stamp, edge_service, peer},
    site::{
        App, ClientIp, Fallthrough, client_ip,
        config::{RouteConfig, SiteConfig},
    },
    tls::{AcmeCertificate, Source as CertificateSource, spki_sha256},
};

/// Receive and send buffer asked for the QUIC socket: bursts of new clients overflow the
/// system's default of about 208 KiB (quinn's documentation recommends raising it).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How long WebSockets get, once the drain at shutdown has run out, to be told the server goes
/// away.
const STREAMS_GRACE: Duration = Duration::from_secs(2);

/// Bounds applied to every connection, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_connections: usize,
    /// Connections per client address, shared by every listener (TCP and QUIC).
    pub per_address: PerAddress,
    pub max_streams: u32,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    /// QUIC handshakes in progress beyond which a client must answer a Retry first.
    pub quic_retry_after_handshakes: usize,
}

/// The edge, with its sites checked and certificates loaded, ready to serve. Clones share one
/// serving state, which a configuration reload replaces while connections go on
/// ([`Edge::adopt`]).
#[derive(Debug, Clone)]
pub struct Edge {
    certificates: Arc<tls::Certificates>,
    live: Arc<Live>,
}

/// What the transports read as they go.
struct Live {
    config: ArcSwap<Config>,
    /// The sites as loaded; built into a service by `run` and `adopt`.
    plan: ArcSwap<site::Plan>,
    limits: Arc<ArcSwap<Limits>>,
    /// The sites behind the front layers; set by `run`.
    service: Arc<ArcSwap<Option<Stack>>>,
    /// The upstreams and FastCGI servers in use, kept across reloads.
    upstreams: proxy::Registry,
    fastcgi: fastcgi::Registry,
    /// Fired when the drain at shutdown runs out: WebSockets still open get a Close 1001.
    streams: tokio_util::sync::CancellationToken,
    /// Stops what runs for the upstreams (name resolving, health checks).
    stop: tokio_util::sync::CancellationToken,
    /// What `adopt` needs of a running edge: the HTTPS port (for Alt-Svc), the QUIC endpoint
    /// and its TLS settings (its transport limits are changed in place).
    running: Mutex<Option<Running>>,
}

struct Running {
    https_port: u16,
    endpoint: quinn::Endpoint,
    quic_tls: rustls::ServerConfig,
    routing: QuicRouting,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Sockets for the edge: plain HTTP, and HTTPS on TCP and UDP with the same port.
#[derive(Debug)]
pub struct Sockets {
    /// The plain-HTTP listener (redirects, HTTP-01).
    pub http: std::net::TcpListener,
    /// HTTPS over TCP (HTTP/1.1 and HTTP/2).
    pub https_tcp: std::net::TcpListener,
    /// HTTPS over QUIC (HTTP/3), on the same port.
    pub https_udp: std::net::UdpSocket,
}

impl Sockets {
    /// The plain-HTTP address bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The HTTPS address bound (TCP and UDP share it).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_tcp.local_addr().ok()
    }
}

impl Edge {
    /// Checks the sites and loads what they need: static roots, certificates (the configured
    /// PEM files, or a self-signed certificate for `names` and the sites' names without
    /// their own, created in `state_dir` the first time and reused after). Without sites, the
    /// one default site of `[edge]` for `names` (the zones' names).
    pub fn load(
        config: &Config,
        sites: &[SiteConfig],
        state_dir: &Path,
        names: &[String],
        acme: bool,
    ) -> Result<Edge, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let plan = site::Plan::new(
            config,
            sites,
            state_dir,
            names,
            config.file_cache_bytes,
            acme,
        )?;
        let certificates = Arc::new(tls::Certificates::new(&plan.certificates, provider)?);
        let stop = tokio_util::sync::CancellationToken::new();
        Ok(Edge {
            certificates,
            live: Arc::new(Live {
                config: ArcSwap::from_pointee(config.clone()),
                plan: ArcSwap::from_pointee(plan),
                limits: Arc::new(ArcSwap::from_pointee(limits(
                    config,
                    PerAddress::new(config.max_connections_per_address),
                ))),
                service: Arc::new(ArcSwap::from_pointee(None)),
                upstreams: proxy::Registry::new(stop.clone()),
                fastcgi: fastcgi::Registry::default(),
                streams: tokio_util::sync::CancellationToken::new(),
                stop,
                running: Mutex::new(None),
            }),
        })
    }

    /// Serves from now on what `loaded` loaded (a reloaded configuration), with `app` as the
    /// built-in app: its sites, routes, upstreams, certificates, limits and headers, on the
    /// sockets already listening. New connections and requests get the new settings; open
    /// connections keep their limits, and requests in flight (a download, a WebSocket) what
    /// they started with. Upstreams whose settings did not change are kept, with their
    /// connections and what their health checks know. The listen addresses are not changed
    /// here (that takes new sockets: an upgrade).
    pub fn adopt(&self, loaded: &Edge, app: &App) -> Result<(), Error> {
        let config = loaded.live.config.load_full();
        let plan = loaded.live.plan.load_full();
        let running = self
            .live
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let https_port = running
            .as_ref()
            .map_or(config.https.port(), |r| r.https_port);
        let sites = plan.build(app, https_port, &self.live.upstreams, &self.live.fastcgi)?;
        let per_address = self.live.limits.load().per_address.clone();
        per_address.set_most(config.max_connections_per_address);
        let limits = limits(&config, per_address);
        if let Some(running) = running.as_ref() {
            let server = quic::server_config(running.quic_tls.clone(), &limits, &running.routing)?;
            running.endpoint.set_server_config(Some(server));
        }
        self.certificates.replace(&plan.certificates)?;
        self.live.service.store(Arc::new(Some(stack(sites))));
        self.live.plan.store(plan);
        self.live.limits.store(Arc::new(limits));
        self.live.config.store(config);
        Ok(())
    }

    /// Checks what `load` would load, writing nothing: the sites, their roots and certificate
    /// files, or the self-signed certificate if there is one already (else it would be
    /// created).
    pub fn check(
        config: &Config,
        sites: &[SiteConfig],
        state_dir: &Path,
        names: &[String],
        acme: bool,
    ) -> Result<(), Error> {
        let provider = rustls::crypto::ring::default_provider();
        // No file cache: it would start watching the roots.
        let plan = site::Plan::new(config, sites, state_dir, names, 0, acme)?;
        for (source, _) in &plan.certificates {
            tls::check(source, &provider)?;
        }
        Ok(())
    }

    /// The sites as one service, with `app` as the built-in app, without sockets: what the
    /// transports would call (for benchmarks and tests of routing).
    pub fn service(&self, app: &App) -> Result<EdgeService, Error> {
        let sites = self.live.plan.load().build(
            app,
            self.live.config.load().https.port(),
            &self.live.upstreams,
            &self.live.fastcgi,
        )?;
        Ok(edge_service(sites))
    }

    /// A TLS server configuration with the sites' certificates (files, self-signed or ACME, as
    /// they change), for another protocol on its own port, named by `alpn`: DNS over TLS and
    /// over QUIC take the edge's certificates this way. TLS 1.3, and 1.2 too where `with_tls12`
    /// (not for QUIC); no 0-RTT.
    pub fn tls_server_config(
        &self,
        alpn: &[&[u8]],
        with_tls12: bool,
    ) -> Result<rustls::ServerConfig, Error> {
        self.certificates.server_config(alpn, with_tls12)
    }

    /// How long stopping waits for requests in flight (`shutdown_timeout`).
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.live.config.load().shutdown_timeout)
    }

    /// The certificates to order from an ACME CA (sites without certificate files, with
    /// `[acme]`), as the configuration served now names them.
    pub fn acme_certificates(&self) -> Vec<tls::AcmeCertificate> {
        self.certificates
            .sources()
            .iter()
            .filter_map(|source| source.acme())
            .collect()
    }

    /// The exact names the sites answer to (for the HTTPS records the DNS synthesizes).
    pub fn site_names(&self) -> Vec<String> {
        self.live.plan.load().names()
    }

    /// The HTTPS port clients reach (the one listening, once running).
    pub fn https_port(&self) -> u16 {
        self.live
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(self.live.config.load().https.port(), |r| r.https_port)
    }

    /// Whether HTTP/3 listens (the QUIC endpoint is open).
    pub fn serves_h3(&self) -> bool {
        self.live
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Serves at once the certificates whose files were just replaced (an ACME certificate
    /// written by the binary); the watch on their folders would also, a moment later.
    pub fn refresh_certificates(&self) -> Result<(), Error> {
        self.certificates.refresh()
    }

    /// The ACME challenges this edge answers (HTTP-01, TLS-ALPN-01).
    pub fn challenges(&self) -> Arc<challenge::Challenges> {
        self.certificates.challenges().clone()
    }

    /// Re-reads the certificates (SIGHUP). Open connections keep theirs; new handshakes get
    /// the new ones. On error the current certificates stay.
    pub fn reload_certificate(&self) -> Result<(), Error> {
        self.certificates.reload()
    }

    /// Binds the configured addresses. With port 0 for `https`, TCP gets a free port and UDP is
    /// bound to the same one.
    pub fn bind(&self) -> Result<Sockets, Error> {
        self.bind_with(None, None)
    }

    /// Binds the configured addresses, except those given: sockets another process bound and
    /// handed over (an upgrade), the plain HTTP listener and the HTTPS pair.
    pub fn bind_with(
        &self,
        http: Option<std::net::TcpListener>,
        https: Option<(std::net::TcpListener, std::net::UdpSocket)>,
    ) -> Result<Sockets, Error> {
        let bind_err = BindError::new;
        let config = self.live.config.load();
        let http = match http {
            Some(http) => http,
            None => std::net::TcpListener::bind(config.http)
                .map_err(|e| bind_err("tcp", config.http, e))?,
        };
        let (https_tcp, https_udp) = match https {
            Some(pair) => pair,
            None => self.bind_https()?,
        };
        for socket in [&http, &https_tcp] {
            socket
                .set_nonblocking(true)
                .map_err(|e| bind_err("tcp", config.https, e))?;
        }
        https_udp
            .set_nonblocking(true)
            .map_err(|e| bind_err("udp", config.https, e))?;
        Ok(Sockets {
            http,
            https_tcp,
            https_udp,
        })
    }

    fn bind_https(&self) -> Result<(std::net::TcpListener, std::net::UdpSocket), Error> {
        let addr = self.live.config.load().https;
        let (udp, tcp) = foobar_net::bind_same_port(addr)?;
        foobar_net::udp_buffers(&udp, UDP_BUFFER_BYTES, "quic");
        // Segmentation offload: one system call for many datagrams each way.
        if let Ok(state) = quinn_udp::UdpSocketState::new((&udp).into()) {
            info!(
                gso_segments = state.max_gso_segments(),
                gro_segments = state.gro_segments(),
                "quic socket offload"
            );
        }
        Ok((tcp, udp))
    }

    /// Serves the sites on the sockets, with `app` as the built-in app, until `shutdown`; then
    /// stops accepting, lets in-flight requests finish (at most `shutdown_timeout`; WebSockets
    /// still open then get a Close 1001), and returns.
    pub async fn run(
        self,
        sockets: Sockets,
        app: App,
        shutdown: CancellationToken,
        routing: QuicRouting,
    ) -> Result<(), Error> {
        let limits = self.live.limits.clone();
        let config = self.live.config.load_full();
        let Sockets {
            http,
            https_tcp,
            https_udp,
        } = sockets;
        let https = https_tcp
            .local_addr()
            .map_err(|e| BindError::new("tcp", config.https, e))?;
        let sites = self.live.plan.load().build(
            &app,
            https.port(),
            &self.live.upstreams,
            &self.live.fastcgi,
        )?;
        self.live.service.store(Arc::new(Some(stack(sites))));
        // The transports call the site in force at each request.
        let service = Current(self.live.service.clone());

        let tcp_tls = self
            .certificates
            .server_config(&[b"h2", b"http/1.1", challenge::ACME_TLS_ALPN], true)?;
        let quic_tls = self.certificates.server_config(&[b"h3"], false)?;
        let endpoint = quic::endpoint(quic_tls.clone(), https_udp, &limits.load(), &routing)?;
        *self
            .live
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Running {
            https_port: https.port(),
            endpoint: endpoint.clone(),
            quic_tls,
            routing,
        });

        let tasks = TaskTracker::new();
        let accept = TaskTracker::new();
        let bind = |proto, e| Error::from(BindError::new(proto, https, e));
        let https_listener =
            tokio::net::TcpListener::from_std(https_tcp).map_err(|e| bind("tcp", e))?;
        let http_addr = http.local_addr().map_err(|e| bind("tcp", e))?;
        let http_listener = tokio::net::TcpListener::from_std(http).map_err(|e| bind("tcp", e))?;
        info!(addr = %https, "https listening on tcp (h2, http/1.1)");
        info!(addr = %https, "https listening on udp (h3)");
        info!(addr = %http_addr, "http listening on tcp (redirect to https)");
        if self
            .certificates
            .sources()
            .iter()
            .any(|source| source.self_signed_for_others(https))
        {
            warn!(
                addr = %https,
                "SERVING A SELF-SIGNED CERTIFICATE to other machines: browsers will refuse it. \
                 Set [edge] cert and key to a certificate from a CA (e.g. Let's Encrypt)"
            );
        }
        tokio::spawn(self.certificates.clone().keep_current(shutdown.clone()));
        let streams = self.live.streams.clone();
        accept.spawn(tcp::serve_https(
            https_listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tcp_tls)),
            service.clone(),
            limits.clone(),
            tasks.clone(),
            (shutdown.clone(), streams.clone()),
        ));
        accept.spawn(h3::serve_h3(
            endpoint.clone(),
            service,
            limits.clone(),
            tasks.clone(),
            (shutdown.clone(), streams.clone()),
        ));
        accept.spawn(tcp::serve_redirect(
            http_listener,
            https,
            self.certificates.challenges().clone(),
            limits,
            tasks.clone(),
            shutdown.clone(),
        ));

        shutdown.cancelled().await;
        let grace = self.drain_timeout();
        accept.close();
        tasks.close();
        let drained = tokio::time::timeout(grace, async {
            accept.wait().await;
            tasks.wait().await;
            endpoint.wait_idle().await;
        })
        .await;
        if drained.is_err() {
            // WebSockets still open are told the server goes away (Close 1001, between two
            // frames), so that their clients reconnect at once, to the new process.
            self.live.streams.cancel();
            let closed = tokio::time::timeout(STREAMS_GRACE, tasks.wait()).await;
            if closed.is_err() {
                warn!(
                    seconds = grace.as_secs(),
                    "requests still running after the shutdown timeout"
                );
            }
        }
        self.live.stop.cancel();
        endpoint.close(0u32.into(), b"shutdown");
        Ok(())
    }
}

/// The bounds of `config`, counting connections per address in `per_address`.
fn limits(config: &Config, per_address: PerAddress) -> Limits {
    let Config {
        max_connections,
        max_streams,
        max_header_bytes,
        header_timeout,
        idle_timeout,
        send_timeout,
        quic_retry_after_handshakes,
        ..
    } = *config;
    Limits {
        max_connections,
        per_address,
        max_streams,
        max_header_bytes,
        header_timeout: Duration::from_secs(header_timeout),
        idle_timeout: Duration::from_secs(idle_timeout),
        send_timeout: Duration::from_secs(send_timeout),
        quic_retry_after_handshakes,
    }
}

/// The sites in force, answering each request the transports hand on.
#[derive(Clone)]
pub(crate) struct Current(Arc<ArcSwap<Option<Stack>>>);

impl Current {
    /// Answers `request` with the sites in force: a clone of their stack (a few reference
    /// counts) called directly, as every layer of it is always ready. Not through a boxed
    /// service: that cost a boxed clone, a readiness step and a boxed future per request.
    pub(crate) fn respond(&self, request: http::Request<axum::body::Body>) -> ResponseFuture {
        use tower::Service;
        match self.0.load().as_ref() {
            Some(stack) => stack.clone().call(request),
            // `run` sets it before any transport starts.
            None => Box::pin(std::future::ready(Ok(http::Response::builder()
                .status(http::StatusCode::SERVICE_UNAVAILABLE)
                .body(axum::body::Body::empty())
                .unwrap_or_default()))),
        }
    }
}

/// A seeded xorshift generator for the randomized parser tests: the same inputs every run.
#[cfg(test)]
pub(crate) fn test_random(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
