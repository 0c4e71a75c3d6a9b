//! The reverse proxy: a route's requests sent on to its upstreams.
//!
//! ```text
//!  Request<Body> ──▶ hop-by-hop fields out, X-Forwarded-*/Forwarded/Via in
//!                ──▶ choose an upstream (policy; only those up) ──▶ its pool: a kept-alive
//!                    connection, or a new one ──▶ send ──▶ response head (response_timeout)
//!                       │ not sent (refused, a closed kept-alive connection): another upstream
//!                       │ failed before any response byte, idempotent and bodiless: again
//!                       ▼
//!                    response, streamed back frame by frame (read_timeout between frames);
//!                    the connection goes back to the pool once the body has been read whole
//!  WebSocket ask (HTTP/1.1 Upgrade, HTTP/2 or HTTP/3 extended CONNECT) ──▶ crate::tunnel
//! ```
//!
//! A request whose body was (even partly) sent is never sent again: a POST reaches the upstream
//! at most once.

pub mod balance;
pub mod forwarded;
pub mod metrics;
mod pool;
mod upstream;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
    uri::PathAndQuery,
};
use http_body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use self::upstream::{Target, UpstreamError};
use self::{
    balance::{Candidate, Choice},
    forwarded::Hop,
    metrics::Failure,
    pool::{Lease, SendError},
    upstream::{Scheme, Upstream},
};
use crate::probe::ProbeError;
use crate::{
    Error,
    service::{Connection, peer},
    site::{
        Trusted, client_ip,
        config::{HealthConfig, Policy, ProxyConfig},
        plain,
    },
    tunnel,
};

/// Every upstream in use, by route and address, so that a reload keeps the ones it did not
/// change (their connections, and what their health checks know), and the tasks that resolve
/// and check them.
#[derive(Debug)]
pub struct Registry {
    /// By route and address: the settings it was made with, and the upstream while in use.
    known: Mutex<HashMap<UpstreamKey, (ProxyConfig, Weak<Upstream>)>>,
    /// Stops every upstream's tasks when the edge stops.
    stop: CancellationToken,
}

type UpstreamKey = (String, String);

impl Registry {
    pub fn new(stop: CancellationToken) -> Registry {
        Registry {
            known: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// The upstream `address` of `route`: the one in use if its settings are the same, else a
    /// new one, with its tasks started.
    fn upstream(
        &self,
        route: &str,
        address: &str,
        config: &ProxyConfig,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.retain(|_, (_, weak)| weak.strong_count() > 0);
        let key = (route.to_string(), address.to_string());
        if let Some((settings, weak)) = known.get(&key)
            && settings == config
            && let Some(upstream) = weak.upgrade()
        {
            return Ok(upstream);
        }
        let upstream = Arc::new(Upstream::new(route, address, config)?);
        known.insert(key, (config.clone(), Arc::downgrade(&upstream)));
        drop(known);
        self.start(&upstream, config);
        Ok(upstream)
    }

    /// Resolves the upstream's name and sweeps its idle connections now and then, and runs
    /// its health checks, for as long as a route has it.
    fn start(&self, upstream: &Arc<Upstream>, config: &ProxyConfig) {
        if upstream.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(upstream);
        let stop = self.stop.clone();
        let every = config
            .resolve_interval
            .min(config.idle_timeout)
            .max(Duration::from_secs(1));
        let resolve_every = config.resolve_interval;
        tokio::spawn(maintain(weak.clone(), stop.clone(), every, resolve_every));
        if let Some(health) = config.health.clone() {
            let host = match config.host.as_deref() {
                Some(host) if host != "{upstream}" => host.to_string(),
                _ => upstream.connector.target.authority(),
            };
            tokio::spawn(check(weak, stop, health, host, config.connect_timeout));
        }
    }
}

async fn maintain(
    upstream: Weak<Upstream>,
    stop: CancellationToken,
    every: Duration,
    resolve_every: Duration,
) {
    let mut resolved = Instant::now();
    if let Some(upstream) = upstream.upgrade()
        && let Err(reason) = upstream.connector.resolve().await
    {
        warn!(upstream = %upstream.name, %reason, "upstream name not resolved; trying again");
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        upstream.pool.sweep();
        if resolved.elapsed() >= resolve_every {
            resolved = Instant::now();
            if let Err(reason) = upstream.connector.resolve().await {
                warn!(upstream = %upstream.name, %reason, "upstream name not resolved; the addresses known stay");
            }
        }
    }
}

/// Active health checks: a GET of the check's path on a connection of its own, every
/// interval, the first at once.
async fn check(
    upstream: Weak<Upstream>,
    stop: CancellationToken,
    health: HealthConfig,
    host: String,
    connect_timeout: Duration,
) {
    loop {
        let Some(target) = upstream.upgrade() else {
            return;
        };
        let timeout = health.timeout.0;
        let attempt = async {
            let stream = target
                .connector
                .connect(connect_timeout.min(timeout))
                .await
                .map_err(|e| ProbeError::Upstream(e.to_string()))?;
            let status = crate::probe::get(stream, &host, &health.path).await?;
            let good = match health.status {
                Some(expected) => status.as_u16() == expected,
                None => status.is_success() || status.is_redirection(),
            };
            if good {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        };
        let result = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(ProbeError::Timeout(timeout)));
        target.checked(result, health.rise, health.fall);
        drop(target);
        tokio::select! {
            () = tokio::time::sleep(health.interval.0) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// A proxy route, serving.
pub struct Proxy {
    /// Its site and path, for logs and metrics.
    route: String,
    upstreams: Vec<Arc<Upstream>>,
    config: ProxyConfig,
    trusted: Arc<Trusted>,
    turn: AtomicUsize,
    /// `host`'s value when it names one.
    fixed_host: Option<HeaderValue>,
    /// When "no upstream" was last logged (ms since `epoch`), to log it once a second at most.
    quiet_until: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Why a request got no response from an upstream.
#[derive(Debug)]
enum Trouble {
    /// No upstream was up to take it.
    NoneUp,
    Connect(String),
    Timeout,
    Reset(String),
    BodyTooLarge,
}

impl std::fmt::Display for Trouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trouble::NoneUp => f.write_str("no upstream is up"),
            Trouble::Connect(reason) => write!(f, "no connection: {reason}"),
            Trouble::Timeout => f.write_str("timed out"),
            Trouble::Reset(reason) => write!(f, "broke off: {reason}"),
            Trouble::BodyTooLarge => f.write_str("request body too large"),
        }
    }
}

impl Proxy {
    pub fn new(
        site: &str,
        path: &str,
        config: &ProxyConfig,
        registry: &Registry,
        trusted: Arc<Trusted>,
    ) -> Result<Proxy, Error> {
        let route = format!("{site}{path}");
        let upstreams = config
            .upstreams
            .iter()
            .map(|address| registry.upstream(&route, address, config))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| Error::Config {
                key: "site.route.proxy".to_string(),
                reason: format!("{route}: {reason}"),
            })?;
        Ok(Proxy {
            route,
            upstreams,
            config: config.clone(),
            trusted,
            turn: AtomicUsize::new(0),
            fixed_host: config
                .host
                .as_deref()
                .filter(|host| *host != "{upstream}")
                .and_then(|host| HeaderValue::from_str(host).ok()),
            quiet_until: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// The upstream for this try: by the policy, among those up and not tried yet.
    fn choose(&self, tried: u64, key: Option<&[u8]>) -> Option<usize> {
        let now = Instant::now();
        // Routes have a few upstreams: the candidates are made on the stack.
        let mut candidates = [Candidate {
            id: 0,
            usable: false,
            in_flight: 0,
        }; MAX_UPSTREAMS];
        for (i, upstream) in self.upstreams.iter().enumerate() {
            candidates[i] = Candidate {
                id: upstream.id,
                usable: tried & (1 << i) == 0 && upstream.is_up(now),
                in_flight: upstream.in_flight.load(Ordering::Relaxed),
            };
        }
        let candidates = &candidates[..self.upstreams.len()];
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let choice = match (&self.config.policy, key) {
            (Policy::LeastConn, _) => Choice::LeastConn { turn },
            (Policy::RoundRobin, _) | (_, None) => Choice::RoundRobin { turn },
            (_, Some(key)) => Choice::Sticky { key },
        };
        balance::choose(candidates, choice)
    }

    /// The key a sticky policy goes by, and a cookie to set when the client has none yet.
    fn sticky_key<B>(&self, request: &Request<B>) -> (Option<Vec<u8>>, Option<HeaderValue>) {
        match &self.config.policy {
            Policy::ClientIp => {
                let ip = client_ip(request.extensions());
                (ip.map(|ip| ip.to_string().into_bytes()), None)
            }
            Policy::Header(name) => (
                request.headers().get(name).map(|v| v.as_bytes().to_vec()),
                None,
            ),
            Policy::Cookie(name) => match cookie(request.headers(), name) {
                Some(value) => (Some(value.into_bytes()), None),
                None => {
                    let mut token = [0u8; 12];
                    let _ = ring::rand::SecureRandom::fill(
                        &ring::rand::SystemRandom::new(),
                        &mut token,
                    );
                    let value = data_encoding::HEXLOWER.encode(&token);
                    let set = HeaderValue::from_str(&format!(
                        "{name}={value}; Path=/; HttpOnly; Secure; SameSite=Lax"
                    ))
                    .ok();
                    (Some(value.into_bytes()), set)
                }
            },
            Policy::RoundRobin | Policy::LeastConn => (None, None),
        }
    }

    pub async fn handle(self: Arc<Self>, request: Request<Body>) -> Response<Body> {
        if let Some(ask) = tunnel::websocket(&request) {
            return self.websocket(request, ask).await;
        }
        let started = Instant::now();
        let (key, set_cookie) = self.sticky_key(&request);
        let (mut parts, body) = request.into_parts();
        self.outgoing_headers(&mut parts);
        // Without a body to send again, an idempotent request that failed before any response
        // byte may be tried again elsewhere: what it takes to make it again is kept (not its
        // extensions, which only this edge reads).
        let bodiless = http_body::Body::is_end_stream(&body);
        let template = (bodiless && is_idempotent(&parts.method)).then(|| Template {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        });
        let body = if bodiless {
            body
        } else {
            Body::new(Idle::new(body, self.config.read_timeout))
        };
        let mut pending = Some(Request::from_parts(parts, body));
        let deadline = started + self.config.try_timeout;
        let mut tried = 0u64;
        let mut tries = 0;
        // Kept-alive connections found closed are not the upstream's fault, and not a try.
        let mut stale = 0;
        let mut trouble = Trouble::NoneUp;
        while tries < self.config.tries && Instant::now() < deadline {
            let Some(chosen) = self.choose(tried, key.as_deref()) else {
                break;
            };
            let upstream = &self.upstreams[chosen];
            tried |= 1 << chosen;
            tries += 1;
            let connect_within = self.config.connect_timeout.min(left(deadline));
            let mut lease = match upstream
                .pool
                .lease(&upstream.connector, connect_within)
                .await
            {
                Ok(lease) => lease,
                Err(e) => {
                    upstream.failed(e.kind(), &e.to_string());
                    self.log_failure(upstream, &e.to_string());
                    trouble = match e.kind() {
                        Failure::Timeout => Trouble::Timeout,
                        _ => Trouble::Connect(e.to_string()),
                    };
                    continue;
                }
            };
            let Some(request) = pending.take() else {
                break;
            };
            let request = self.for_upstream(request, upstream);
            let in_flight = InFlight::new(upstream.clone());
            let sent = tokio::time::timeout(self.config.response_timeout, lease.send(request));
            match sent.await {
                Ok(Ok(response)) => {
                    return self.respond(response, lease, in_flight, started, set_cookie);
                }
                Ok(Err(SendError::Unsent(request, error))) => {
                    pending = Some(*request);
                    if lease.reused && stale < 8 {
                        stale += 1;
                        tried &= !(1 << chosen);
                        tries -= 1;
                        continue;
                    }
                    upstream.failed(Failure::Reset, &error.to_string());
                    self.log_failure(upstream, &error.to_string());
                    trouble = Trouble::Reset(error.to_string());
                }
                Ok(Err(SendError::Sent(error))) => {
                    if crate::site::body_too_large(&error) {
                        trouble = Trouble::BodyTooLarge;
                        break;
                    }
                    upstream.failed(Failure::Reset, &error.to_string());
                    self.log_failure(upstream, &error.to_string());
                    trouble = Trouble::Reset(error.to_string());
                    match &template {
                        Some(template) => pending = Some(template.request()),
                        None => break,
                    }
                }
                Err(_) => {
                    upstream.failed(Failure::Timeout, "no response in time");
                    self.log_failure(upstream, "no response head within response_timeout");
                    trouble = Trouble::Timeout;
                    match &template {
                        Some(template) => pending = Some(template.request()),
                        None => break,
                    }
                }
            }
        }
        self.failed(trouble)
    }

    /// Hop-by-hop fields out; forwarding fields in.
    fn outgoing_headers(&self, parts: &mut http::request::Parts) {
        let peer = peer(&parts.extensions).map(|p| p.ip());
        // The host the client asked for, as sent: :authority (HTTP/2, HTTP/3), else Host.
        let host = match parts.uri.authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        forwarded::remove_hop_by_hop(&mut parts.headers, true);
        // The edge answers `Expect: 100-continue` itself, as it reads the body.
        parts.headers.remove(header::EXPECT);
        if let Some(peer) = peer {
            forwarded::forward(
                &mut parts.headers,
                Hop {
                    peer,
                    trusted: self.trusted.contains(peer),
                    host: host.as_ref(),
                    version: forwarded::via_version(parts.version),
                },
            );
        }
        // The client's host goes on (unless `host` says otherwise), as `Host`.
        let host = match self.config.host.as_deref() {
            None => host,
            Some("{upstream}") => None,
            Some(_) => self.fixed_host.clone(),
        };
        match host {
            Some(value) => {
                parts.headers.insert(header::HOST, value);
            }
            None => {
                parts.headers.remove(header::HOST);
            }
        }
    }

    /// The request as `upstream` takes it: origin-form over HTTP/1.1, absolute over HTTP/2.
    fn for_upstream(&self, request: Request<Body>, upstream: &Upstream) -> Request<Body> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let host = match parts.headers.get(header::HOST) {
            Some(host) => host.clone(),
            None => HeaderValue::from_str(&upstream.connector.target.authority())
                .unwrap_or(HeaderValue::from_static("localhost")),
        };
        if upstream.connector.target.scheme == Scheme::H2c {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            parts.uri = Uri::builder()
                .scheme("http")
                .authority(host.to_str().unwrap_or("localhost"))
                .path_and_query(path)
                .build()
                .unwrap_or_default();
        } else {
            parts.version = Version::HTTP_11;
            parts.headers.insert(header::HOST, host);
            parts.uri = Uri::from(path);
        }
        Request::from_parts(parts, body)
    }

    fn respond(
        &self,
        response: Response<hyper::body::Incoming>,
        lease: Lease,
        in_flight: InFlight,
        started: Instant,
        set_cookie: Option<HeaderValue>,
    ) -> Response<Body> {
        let upstream = in_flight.0.clone();
        upstream.metrics.answered(
            response.status().as_u16(),
            started.elapsed().as_micros() as u64,
        );
        let (mut parts, body) = response.into_parts();
        forwarded::remove_hop_by_hop(&mut parts.headers, false);
        if let Some(cookie) = set_cookie {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        let body = UpstreamBody {
            body,
            lease: Some(lease),
            _in_flight: in_flight,
            stall: Stall::new(self.config.read_timeout),
            route: self.route.clone(),
        };
        let body = if http_body::Body::is_end_stream(&body) {
            body.finish();
            Body::empty()
        } else {
            Body::new(body)
        };
        Response::from_parts(parts, body)
    }

    fn log_failure(&self, upstream: &Upstream, cause: &str) {
        warn!(route = %self.route, upstream = %upstream.name, %cause, "proxy: upstream failed");
    }

    /// The answer when no upstream answered: 503 when none was up, 504 after a timeout, 502
    /// otherwise; one log line.
    fn failed(&self, trouble: Trouble) -> Response<Body> {
        let (status, page) = match &trouble {
            Trouble::NoneUp => (
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: no upstream is up to answer\n",
            ),
            Trouble::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Timeout: the upstream did not answer in time\n",
            ),
            Trouble::Connect(_) | Trouble::Reset(_) => (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the upstream could not be reached or broke off\n",
            ),
            Trouble::BodyTooLarge => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
        };
        let now = self.epoch.elapsed().as_millis() as u64;
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        if matches!(trouble, Trouble::NoneUp) {
            if now >= quiet_until {
                self.quiet_until.store(now + 1000, Ordering::Relaxed);
                warn!(route = %self.route, upstreams = self.upstreams.len(), "proxy: no upstream is up; answering 503");
            }
        } else {
            warn!(route = %self.route, status = status.as_u16(), cause = %trouble, "proxy: no upstream answered");
        }
        plain(status, page)
    }

    /// A WebSocket: a connection of its own to an upstream, the HTTP/1.1 handshake there, then
    /// the relay (crate::tunnel).
    async fn websocket(
        self: Arc<Self>,
        mut request: Request<Body>,
        ask: tunnel::Ask,
    ) -> Response<Body> {
        let client_side = tunnel::client_side(&mut request);
        let connection = request.extensions().get::<Connection>().cloned();
        let (key, _) = self.sticky_key(&request);
        let (mut parts, _body) = request.into_parts();
        let client_key = parts.headers.get("sec-websocket-key").cloned();
        self.outgoing_headers(&mut parts);
        let (key_header, expected_accept) = match (ask, client_key) {
            (tunnel::Ask::Upgrade, Some(key)) => (key, None),
            _ => match tunnel::handshake_key() {
                Some((key, accept)) => (key, Some(accept)),
                None => return plain(StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n"),
            },
        };
        let mut tried = 0u64;
        let mut trouble = Trouble::NoneUp;
        for _ in 0..self.config.tries {
            let Some(chosen) = self.choose(tried, key.as_deref()) else {
                break;
            };
            tried |= 1 << chosen;
            let upstream = &self.upstreams[chosen];
            let (stream, permit) = match upstream
                .pool
                .dedicated(&upstream.connector, self.config.connect_timeout)
                .await
            {
                Ok(connected) => connected,
                Err(e) => {
                    upstream.failed(e.kind(), &e.to_string());
                    self.log_failure(upstream, &e.to_string());
                    trouble = Trouble::Connect(e.to_string());
                    continue;
                }
            };
            let handshake = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream));
            let (mut sender, conn) = match handshake.await {
                Ok(pair) => pair,
                Err(e) => {
                    trouble = Trouble::Connect(e.to_string());
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    debug!(error = %e, "websocket upstream connection");
                }
            });
            let mut ask_parts = parts.clone();
            let headers = &mut ask_parts.headers;
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert("sec-websocket-key", key_header.clone());
            headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
            ask_parts.method = Method::GET;
            ask_parts.extensions = http::Extensions::new();
            let ask_request =
                self.for_upstream(Request::from_parts(ask_parts, Body::empty()), upstream);
            let in_flight = InFlight::new(upstream.clone());
            let started = Instant::now();
            let response = match tokio::time::timeout(
                self.config.response_timeout,
                sender.send_request(ask_request),
            )
            .await
            {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    upstream.failed(Failure::Reset, &e.to_string());
                    self.log_failure(upstream, &e.to_string());
                    trouble = Trouble::Reset(e.to_string());
                    continue;
                }
                Err(_) => {
                    upstream.failed(Failure::Timeout, "no handshake answer in time");
                    trouble = Trouble::Timeout;
                    continue;
                }
            };
            upstream.metrics.answered(
                response.status().as_u16(),
                started.elapsed().as_micros() as u64,
            );
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                // Refused (a 403, a 404...): the client hears what the upstream said.
                let (mut parts, body) = response.into_parts();
                forwarded::remove_hop_by_hop(&mut parts.headers, false);
                return Response::from_parts(parts, Body::new(body));
            }
            let accepted = response
                .headers()
                .get("sec-websocket-accept")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Some(expected) = &expected_accept
                && accepted.as_deref() != Some(expected.as_str())
            {
                self.log_failure(
                    upstream,
                    "WebSocket handshake answered with a wrong accept key",
                );
                return self.failed(Trouble::Reset("bad Sec-WebSocket-Accept".to_string()));
            }
            let mut answer = Response::new(Body::empty());
            for name in ["sec-websocket-protocol", "sec-websocket-extensions"] {
                if let Some(value) = response.headers().get(name) {
                    answer.headers_mut().insert(name, value.clone());
                }
            }
            match ask {
                tunnel::Ask::Upgrade => {
                    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    let headers = answer.headers_mut();
                    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                    if let Some(accept) = accepted.and_then(|a| HeaderValue::from_str(&a).ok()) {
                        headers.insert("sec-websocket-accept", accept);
                    }
                }
                tunnel::Ask::Connect => *answer.status_mut() = StatusCode::OK,
            }
            let upstream_side = hyper::upgrade::on(response);
            let idle = self.config.websocket_idle_timeout;
            let route = self.route.clone();
            let name = upstream.name.clone();
            let (activity, stop) = match &connection {
                Some(connection) => (
                    Some(connection.activity.begin()),
                    connection.streams.clone(),
                ),
                None => (None, CancellationToken::new()),
            };
            tokio::spawn(async move {
                let (client, upstream_io) = tokio::join!(client_side, upstream_side);
                let (Some(client), Ok(upstream_io)) = (client, upstream_io) else {
                    debug!(%route, "websocket ended before its relay began");
                    return;
                };
                let upstream_io: tunnel::BoxIo = Box::pin(TokioIo::new(upstream_io));
                match tunnel::relay(client, upstream_io, idle, stop).await {
                    Ok(ended) => debug!(%route, upstream = %name, ?ended, "websocket ended"),
                    Err(e) => debug!(%route, upstream = %name, error = %e, "websocket broke off"),
                }
                drop((permit, in_flight, activity));
            });
            return answer;
        }
        self.failed(trouble)
    }
}

/// The most upstreams a route has (the tries are a bit mask).
pub const MAX_UPSTREAMS: usize = 64;

/// What an idempotent request without a body takes to be made again.
struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Template {
    fn request(&self) -> Request<Body> {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_string())
        })
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// One request in flight to an upstream (least connections counts them).
struct InFlight(Arc<Upstream>);

impl InFlight {
    fn new(upstream: Arc<Upstream>) -> InFlight {
        upstream.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(upstream)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body from an upstream, passed on frame by frame (trailers too); its connection
/// goes back to the pool once it has been read to the end, and is closed if it is dropped
/// before (a client that went away) or stalls past `read_timeout`.
struct UpstreamBody {
    body: hyper::body::Incoming,
    lease: Option<Lease>,
    _in_flight: InFlight,
    stall: Stall,
    route: String,
}

/// How long a body may go without a frame: armed when it has none ready, disarmed by one.
struct Stall {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall { limit, timer: None }
    }

    /// The body had nothing ready: true once that has lasted the limit.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }

    /// A frame came.
    fn progress(&mut self) {
        self.timer = None;
    }
}

impl UpstreamBody {
    fn finish(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall.progress();
                // The last frame: the connection is free now (the server may not ask again,
                // seeing the body end).
                if this.body.is_end_stream()
                    && let Some(lease) = this.lease.take()
                {
                    lease.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.lease = None;
                this._in_flight.0.failed(Failure::Body, &e.to_string());
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.stall.expired(cx) {
                    this.lease = None;
                    this._in_flight
                        .0
                        .failed(Failure::Body, "response body stalled");
                    warn!(route = %this.route, upstream = %this._in_flight.0.name, "proxy: the upstream's response stalled past read_timeout");
                    return Poll::Ready(Some(Err("the upstream's response stalled".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once it has sent nothing for `idle` (a client that stops
/// uploading halfway cannot hold an upstream connection).
struct Idle {
    body: Body,
    stall: Stall,
}

impl Idle {
    fn new(body: Body, idle: Duration) -> Idle {
        Idle {
            body,
            stall: Stall::new(idle),
        }
    }
}

impl http_body::Body for Idle {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending if this.stall.expired(cx) => {
                Poll::Ready(Some(Err(axum::Error::new("the request body stalled"))))
            }
            Poll::Pending => Poll::Pending,
            other => {
                this.stall.progress();
                other
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
