//! FastCGI: PHP sites (PHP-FPM) behind the edge, as Caddy's `php_fastcgi` serves them.
//!
//! ```text
//!  Request<Body> ──▶ php::resolve: redirect to the folder's slash │ static file │ script
//!                                                                               ▼
//!     a kept-alive connection to FPM (or a new one) ──▶ BEGIN_REQUEST, PARAMS (CGI variables)
//!                                                   ──▶ STDIN: the body, streamed
//!                                                   ◀── STDOUT: CGI headers, then the body,
//!                                                       streamed back; STDERR to the log;
//!                                                       END_REQUEST: the connection goes back
//! ```
//!
//! The record layer is written here (`record`, pure) rather than taken from a crate: the one
//! maintained client (`fastcgi-client`) lends its connection to a response stream only by
//! borrow, so a response could not outlive the handler that started it and be streamed back by
//! hyper, and it leaves keeping connections apart per request to the caller; what is needed of
//! FastCGI is a few record types. PHP-FPM does not multiplex (it answers `FCGI_MPXS_CONNS` 0,
//! asked when the first connection opens), so each connection carries one request at a time,
//! and connections are kept alive between them (`FCGI_KEEP_CONN`); their number is bounded by
//! `max_connections` and by what FPM says it takes (`FCGI_MAX_CONNS`).

mod php;
pub mod record;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::{Duration, Instant},
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use self::record::{Decoder, Record};
use crate::{
    Error,
    files::StaticFiles,
    proxy::metrics::{Failure, UpstreamMetrics},
    service::peer,
    site::{Trusted, client_ip, config::FastCgiConfig, plain, request_host, route::OriginalUri},
};

/// Where the FastCGI server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

/// Why a FastCGI address does not read; each says the form wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("a socket is an absolute path: unix:/run/php/php8.2-fpm.sock")]
    RelativeSocket,
    #[error("tcp:HOST:PORT")]
    HostPort,
    #[error("unix:/path/to.sock or tcp:host:port")]
    Scheme,
}

impl Address {
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(AddressError::RelativeSocket);
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(address) = text.strip_prefix("tcp:") {
            let (host, port) = address.rsplit_once(':').ok_or(AddressError::HostPort)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(AddressError::HostPort);
            }
            return Ok(Address::Tcp(address.to_string()));
        }
        Err(AddressError::Scheme)
    }
}

/// Why an exchange with the FastCGI server ended before its response was whole.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error("bad CGI headers: {0}")]
    Headers(httparse::Error),
    #[error("bad Status header")]
    Status,
    #[error("CGI headers too large")]
    HeadTooLarge,
    #[error("no end to the CGI headers")]
    HeadUnended,
    #[error("the connection closed mid-response")]
    Closed,
    #[error("the response stalled past read_timeout")]
    Stalled,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(address) => write!(f, "tcp:{address}"),
        }
    }
}

/// A connection to the FastCGI server.
enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Stream {
    async fn connect(address: &Address) -> std::io::Result<Stream> {
        Ok(match address {
            Address::Unix(path) => Stream::Unix(tokio::net::UnixStream::connect(path).await?),
            Address::Tcp(address) => {
                let tcp = tokio::net::TcpStream::connect(address.as_str()).await?;
                let _ = tcp.set_nodelay(true);
                Stream::Tcp(tcp)
            }
        })
    }

    /// Whether an idle connection is still open: nothing to read yet (the server closing it
    /// would make it readable, at its end).
    fn alive(&self) -> bool {
        let mut byte = [0u8; 1];
        let read = match self {
            Stream::Unix(s) => s.try_read(&mut byte),
            Stream::Tcp(s) => s.try_read(&mut byte),
        };
        matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    fn split(
        &mut self,
    ) -> (
        Box<dyn AsyncRead + Send + Unpin + '_>,
        Box<dyn AsyncWrite + Send + Unpin + '_>,
    ) {
        match self {
            Stream::Unix(s) => {
                let (r, w) = s.split();
                (Box::new(r), Box::new(w))
            }
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                (Box::new(r), Box::new(w))
            }
        }
    }
}

/// The connections to one FastCGI server.
///
/// PHP-FPM gives each connection a worker of its own for as long as it stays open, kept alive
/// or not: an idle connection kept here holds a worker that no other request can have. So few
/// are kept (`max_idle`), and not for long (`idle_timeout`): under load, a connection goes from
/// one request to the next; when the load stops, the workers are given back. Requests beyond
/// `max_connections` wait here for one, as they would in FPM's listen queue.
struct Pool {
    address: Address,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<(Stream, OwnedSemaphorePermit, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Asked once, when the first connection opens.
    asked: std::sync::atomic::AtomicBool,
    metrics: Arc<UpstreamMetrics>,
    in_use: std::sync::atomic::AtomicI64,
}

/// Why no connection was had.
enum LeaseError {
    /// Every connection allowed stayed busy for the whole wait.
    Busy,
    Connect(std::io::Error),
}

impl Pool {
    /// A connection: a kept one still open, or a new one once a slot is free (waiting at most
    /// `wait` for it) and within `connect`.
    async fn lease(
        self: &Arc<Self>,
        wait: Duration,
        connect: Duration,
    ) -> Result<(Stream, OwnedSemaphorePermit), LeaseError> {
        if let Some((stream, permit)) = self.take_idle() {
            return Ok((stream, permit));
        }
        let permit = match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(LeaseError::Busy),
        };
        // A connection may have come back while this one waited.
        if let Some((stream, kept)) = self.take_idle() {
            drop(permit);
            return Ok((stream, kept));
        }
        let stream = match tokio::time::timeout(connect, Stream::connect(&self.address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(LeaseError::Connect(e)),
            Err(_) => {
                return Err(LeaseError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )));
            }
        };
        self.metrics.opened();
        if !self.asked.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let pool = self.clone();
            tokio::spawn(async move { pool.ask_limits().await });
        }
        Ok((stream, permit))
    }

    /// A kept connection, open and not kept too long.
    fn take_idle(&self) -> Option<(Stream, OwnedSemaphorePermit)> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((stream, permit, since)) = idle.pop() {
            if since.elapsed() <= self.idle_timeout && stream.alive() {
                return Some((stream, permit));
            }
        }
        None
    }

    /// Closes kept connections past the idle timeout, giving their workers back to FPM.
    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(_, _, since)| since.elapsed() <= self.idle_timeout);
        let count = idle.len() as i64;
        drop(idle);
        self.report(count);
    }

    fn report(&self, idle: i64) {
        self.metrics
            .pool(self.in_use.load(std::sync::atomic::Ordering::Relaxed), idle);
    }

    fn put(&self, stream: Stream, permit: OwnedSemaphorePermit) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push((stream, permit, Instant::now()));
        }
        let count = idle.len() as i64;
        drop(idle);
        self.report(count);
    }

    /// Asks the server how many connections it takes and whether it multiplexes; its limit
    /// bounds the pool (requests beyond it wait here, not in its listen queue).
    async fn ask_limits(&self) {
        let Ok(mut stream) = Stream::connect(&self.address).await else {
            return;
        };
        let mut query = Vec::new();
        record::get_values(
            &mut query,
            &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"],
        );
        let (mut read, mut write) = stream.split();
        if write.write_all(&query).await.is_err() {
            return;
        }
        let mut decoder = Decoder::default();
        let mut buf = [0u8; 1024];
        let answer = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                let n = read.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                decoder.push(&buf[..n]);
                if let Ok(Some((_, Record::Values(values)))) = decoder.next() {
                    return Some(values);
                }
            }
        })
        .await;
        let Ok(Some(values)) = answer else {
            return;
        };
        let value = |name: &str| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        info!(
            fastcgi = %self.address,
            max_conns = ?value("FCGI_MAX_CONNS"),
            multiplexes = value("FCGI_MPXS_CONNS").unwrap_or(0) == 1,
            "FastCGI server"
        );
        if let Some(most) = value("FCGI_MAX_CONNS").filter(|&n| n > 0) {
            let available = self.slots.available_permits();
            // Only what is free can be taken back now; enough in practice, as this is asked
            // when the first connection opens.
            let extra = available.saturating_sub(most.saturating_sub(1));
            self.slots.forget_permits(extra);
        }
    }
}

/// Every FastCGI server in use, by address, so that routes (and reloads) share connections.
#[derive(Default)]
pub struct Registry {
    pools: Mutex<HashMap<PoolKey, Weak<Pool>>>,
}

type PoolKey = (Address, usize, usize, Duration);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// The pool of `address` for `route`: shared by routes (and kept across reloads) with the
    /// same address and settings.
    fn pool(&self, route: &str, address: Address, config: &FastCgiConfig) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|_, weak| weak.strong_count() > 0);
        let key = (
            address.clone(),
            config.max_connections,
            config.max_idle,
            config.idle_timeout,
        );
        if let Some(pool) = pools.get(&key).and_then(Weak::upgrade) {
            return pool;
        }
        let pool = Arc::new(Pool {
            address: address.clone(),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            idle: Mutex::new(Vec::new()),
            max_idle: config.max_idle,
            idle_timeout: config.idle_timeout,
            asked: std::sync::atomic::AtomicBool::new(false),
            metrics: UpstreamMetrics::register(route, &address.to_string()),
            in_use: std::sync::atomic::AtomicI64::new(0),
        });
        pools.insert(key, Arc::downgrade(&pool));
        let weak = Arc::downgrade(&pool);
        let every = (config.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => return,
                }
            }
        });
        pool
    }
}

/// A FastCGI route, serving.
pub struct FastCgi {
    route: String,
    pool: Arc<Pool>,
    files: StaticFiles,
    /// The document root as PHP is told it (the configured path, not its canonical form, so
    /// that a root made of links keeps the paths the scripts expect).
    root: PathBuf,
    index: Vec<String>,
    try_files: Vec<String>,
    params: Vec<(String, String)>,
    https_port: u16,
    connect_timeout: Duration,
    response_timeout: Duration,
    read_timeout: Duration,
    _trusted: Arc<Trusted>,
}

impl std::fmt::Debug for FastCgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastCgi")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// Largest CGI header block a script may send before its body.
const MAX_HEAD: usize = 64 * 1024;
/// A request body of unknown length is held in memory up to this, then in a temporary file:
/// PHP needs CONTENT_LENGTH to read a form.
const BODY_IN_MEMORY: usize = 1024 * 1024;

impl FastCgi {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        site: &str,
        path: &str,
        config: &FastCgiConfig,
        files: StaticFiles,
        registry: &Registry,
        trusted: Arc<Trusted>,
        https_port: u16,
    ) -> Result<FastCgi, Error> {
        let address = Address::parse(&config.address).map_err(|reason| Error::Config {
            key: "site.route.fastcgi".to_string(),
            reason: reason.to_string(),
        })?;
        let root = config
            .root
            .clone()
            .unwrap_or_else(|| files.root().to_path_buf());
        Ok(FastCgi {
            route: format!("{site}{path}"),
            pool: registry.pool(&format!("{site}{path}"), address, config),
            files,
            root,
            index: config.index.clone(),
            try_files: config.try_files.clone(),
            params: config
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            https_port,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            read_timeout: config.read_timeout,
            _trusted: trusted,
        })
    }

    fn is_file(&self, path: &str) -> bool {
        self.inside(path) && std::fs::metadata(self.on_disk(path)).is_ok_and(|m| m.is_file())
    }

    fn is_dir(&self, path: &str) -> bool {
        self.inside(path) && std::fs::metadata(self.on_disk(path)).is_ok_and(|m| m.is_dir())
    }

    /// Whether `path` stays inside the root, and names no hidden file (`.htaccess`, `.git`)
    /// other than under `.well-known`.
    fn inside(&self, path: &str) -> bool {
        let hidden = path
            .split('/')
            .any(|segment| segment.starts_with('.') && segment != ".well-known");
        !hidden
            && matches!(
                crate::files::contained(self.files.root(), path, self.files.follows_symlinks()),
                crate::files::Containment::Inside
            )
    }

    fn on_disk(&self, path: &str) -> PathBuf {
        self.files.root().join(path.trim_start_matches('/'))
    }

    pub async fn handle(self: Arc<Self>, mut request: Request<Body>) -> Response<Body> {
        let Ok(path) = percent_encoding::percent_decode_str(request.uri().path()).decode_utf8()
        else {
            return plain(StatusCode::BAD_REQUEST, "bad request path\n");
        };
        let path = path.into_owned();
        let resolved = php::resolve(
            &path,
            &self.index,
            &self.try_files,
            |p| self.is_file(p),
            |p| self.is_dir(p),
        );
        match resolved {
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
            Some(php::Resolved::Slash(to)) => {
                let location = match request.uri().query() {
                    Some(query) => format!("{to}?{query}"),
                    None => to,
                };
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                if let Ok(value) = HeaderValue::from_str(&encode_path(&location)) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            Some(php::Resolved::File(file)) => {
                let target = match request.uri().query() {
                    Some(query) => format!("{}?{query}", encode_path(&file)),
                    None => encode_path(&file),
                };
                if let Ok(uri) = target.parse::<Uri>() {
                    *request.uri_mut() = uri;
                }
                match self.files.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            Some(php::Resolved::Script(script)) => self.run(request, script).await,
        }
    }

    /// Runs `script` for `request` on a connection to the FastCGI server.
    async fn run(&self, request: Request<Body>, script: php::Script) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        let request_uri = original.path_and_query().map_or("/", |p| p.as_str());
        let peer = peer(&parts.extensions);
        let client = client_ip(&parts.extensions).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let head = Request::from_parts(parts, ());
        let host = request_host(&head).unwrap_or_default().to_string();
        // The body: streamed when its length is known, else read (memory, then a file) first.
        let (content_length, body) = match body_length(&head, &body) {
            Some(length) => (Some(length), Upload::Stream(body)),
            None => match spool(body).await {
                Ok((length, upload)) => (Some(length), upload),
                Err(response) => return *response,
            },
        };
        let root = self.root.to_string_lossy().into_owned();
        let vars = php::variables(&php::Cgi {
            method: head.method(),
            version: head.version(),
            request_uri,
            query: original.query().unwrap_or(""),
            headers: head.headers(),
            host: &host,
            https_port: self.https_port,
            client,
            client_port: peer.map_or(0, |p| p.port()),
            root: &root,
            script: &script,
            content_length: content_length.filter(|&n| n > 0),
            extra: &self.params,
        });
        let leased = self
            .pool
            .lease(self.response_timeout, self.connect_timeout)
            .await;
        let (stream, permit) = match leased {
            Ok(leased) => leased,
            Err(LeaseError::Connect(e)) => {
                self.pool.metrics.failed(Failure::Connect);
                warn!(route = %self.route, fastcgi = %self.pool.address, error = %e, "FastCGI server unavailable; answering 503");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Unavailable: the application server is not answering\n",
                );
            }
            Err(LeaseError::Busy) => {
                self.pool.metrics.failed(Failure::Full);
                warn!(route = %self.route, fastcgi = %self.pool.address, max_connections = self.pool.slots.available_permits(), "FastCGI: every connection stayed busy; answering 503");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Unavailable: the application server is busy\n",
                );
            }
        };
        let started = Instant::now();
        let in_use = InUse::new(&self.pool);
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let exchange = Exchange {
            route: self.route.clone(),
            script: script.name.clone(),
            pool: self.pool.clone(),
            read_timeout: self.read_timeout,
        };
        tokio::spawn(exchange.run(stream, permit, vars, body, head_tx, body_tx));
        let head = match tokio::time::timeout(self.response_timeout, head_rx).await {
            Ok(Ok(Ok(head))) => head,
            Ok(Ok(Err(reason))) => {
                self.pool.metrics.failed(Failure::Reset);
                warn!(route = %self.route, script = %script.name, %reason, "FastCGI: no response; answering 502");
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "502 Bad Gateway: the application server broke off\n",
                );
            }
            Ok(Err(_)) => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    "502 Bad Gateway: the application server broke off\n",
                );
            }
            Err(_) => {
                self.pool.metrics.failed(Failure::Timeout);
                warn!(route = %self.route, script = %script.name, seconds = self.response_timeout.as_secs_f64(), "FastCGI: the script did not answer in time; answering 504");
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the application did not answer in time\n",
                );
            }
        };
        let (status, headers, first) = head;
        self.pool
            .metrics
            .answered(status.as_u16(), started.elapsed().as_micros() as u64);
        drop(in_use);
        let stream = futures_stream(first, body_rx);
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// A connection of the pool in use, counted until dropped.
struct InUse(Arc<Pool>);

impl InUse {
    fn new(pool: &Arc<Pool>) -> InUse {
        pool.in_use
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InUse(pool.clone())
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0
            .in_use
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A request body for FastCGI.
enum Upload {
    Stream(Body),
    Memory(Bytes),
    File(tokio::fs::File),
}

/// The body's length when known before reading it: a `Content-Length`, or an empty body.
fn body_length(head: &Request<()>, body: &Body) -> Option<u64> {
    if http_body::Body::is_end_stream(body) {
        return Some(0);
    }
    head.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| http_body::Body::size_hint(body).exact())
}

/// Reads a body of unknown length: in memory up to `BODY_IN_MEMORY`, the rest in an unnamed
/// temporary file.
async fn spool(mut body: Body) -> Result<(u64, Upload), Box<Response<Body>>> {
    let too_large = || {
        Box::new(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        ))
    };
    let broke = || {
        Box::new(plain(
            StatusCode::BAD_REQUEST,
            "the request body broke off\n",
        ))
    };
    let mut memory = Vec::new();
    let mut file: Option<tokio::fs::File> = None;
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if crate::site::body_too_large(&e) {
                too_large()
            } else {
                broke()
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        length += data.len() as u64;
        match &mut file {
            Some(file) => file.write_all(&data).await.map_err(|_| broke())?,
            None if memory.len() + data.len() > BODY_IN_MEMORY => {
                let spill = tempfile::tempfile().map_err(|_| broke())?;
                let mut spill = tokio::fs::File::from_std(spill);
                spill.write_all(&memory).await.map_err(|_| broke())?;
                spill.write_all(&data).await.map_err(|_| broke())?;
                memory = Vec::new();
                file = Some(spill);
            }
            None => memory.extend_from_slice(&data),
        }
    }
    Ok(match file {
        Some(mut file) => {
            use tokio::io::AsyncSeekExt;
            file.rewind().await.map_err(|_| broke())?;
            (length, Upload::File(file))
        }
        None => (length, Upload::Memory(Bytes::from(memory))),
    })
}

/// The response's status, headers, and body bytes that came with the headers.
type Head = (StatusCode, http::HeaderMap, Bytes);

/// One request on one connection, run as a task: the request written (body streamed), the
/// response read (head handed over, body streamed on), the connection put back if whole.
struct Exchange {
    route: String,
    script: String,
    pool: Arc<Pool>,
    read_timeout: Duration,
}

impl Exchange {
    async fn run(
        self,
        mut stream: Stream,
        permit: OwnedSemaphorePermit,
        vars: Vec<(String, String)>,
        upload: Upload,
        head_tx: oneshot::Sender<Result<Head, Broken>>,
        body_tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) {
        const ID: u16 = 1;
        let mut out = Vec::with_capacity(4096);
        record::begin(
            &mut out,
            ID,
            vars.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        );
        let reusable = {
            let (mut read, mut write) = stream.split();
            let send = async {
                write.write_all(&out).await?;
                send_body(&mut write, upload, ID).await?;
                write.flush().await?;
                Ok::<(), std::io::Error>(())
            };
            let receive = self.receive(&mut read, head_tx, &body_tx);
            let (sent, received) = tokio::join!(send, receive);
            if let Err(e) = &sent {
                debug!(route = %self.route, error = %e, "FastCGI: sending the request");
            }
            sent.is_ok() && received
        };
        if reusable {
            self.pool.put(stream, permit);
        }
    }

    /// Reads records to END_REQUEST; true if the connection ended the request cleanly.
    async fn receive(
        &self,
        read: &mut (dyn AsyncRead + Send + Unpin),
        head_tx: oneshot::Sender<Result<Head, Broken>>,
        body_tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> bool {
        let mut decoder = Decoder::default();
        let mut head_tx = Some(head_tx);
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        // Output that came in one read goes on as one chunk: a script's many small writes
        // become few TLS records and system calls (as nginx's fastcgi_buffering does).
        let mut batch = bytes::BytesMut::new();
        loop {
            loop {
                let next = match decoder.next() {
                    Ok(next) => next,
                    Err(e) => {
                        return self.broke(&mut head_tx, body_tx, e.into()).await;
                    }
                };
                let Some((_, record)) = next else {
                    if !batch.is_empty() && body_tx.send(Ok(batch.split().freeze())).await.is_err()
                    {
                        // The client went away: the rest is not read, the connection goes.
                        return false;
                    }
                    break;
                };
                match record {
                    Record::Stdout(bytes) if head_tx.is_some() => {
                        head.extend_from_slice(&bytes);
                        match parse_head(&head) {
                            Ok(Some((parsed, used))) => {
                                let (status, headers) = parsed;
                                let rest = Bytes::copy_from_slice(&head[used..]);
                                if let Some(tx) = head_tx.take() {
                                    let _ = tx.send(Ok((status, headers, rest)));
                                }
                                head = Vec::new();
                            }
                            Ok(None) if head.len() > MAX_HEAD => {
                                return self
                                    .broke(&mut head_tx, body_tx, Broken::HeadTooLarge)
                                    .await;
                            }
                            Ok(None) => {}
                            Err(reason) => {
                                return self.broke(&mut head_tx, body_tx, reason).await;
                            }
                        }
                    }
                    // The empty record that ends the output carries nothing to send.
                    Record::Stdout(bytes) if bytes.is_empty() => {}
                    Record::Stdout(bytes) => batch.extend_from_slice(&bytes),
                    Record::Stderr(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            warn!(route = %self.route, script = %self.script, stderr = %line, "FastCGI");
                        }
                    }
                    Record::End {
                        protocol_status, ..
                    } => {
                        if !batch.is_empty()
                            && body_tx.send(Ok(batch.split().freeze())).await.is_err()
                        {
                            return false;
                        }
                        if head_tx.is_some() {
                            // A script that printed nothing: an empty 200, as PHP means it.
                            if head.is_empty() {
                                if let Some(tx) = head_tx.take() {
                                    let _ = tx.send(Ok((
                                        StatusCode::OK,
                                        http::HeaderMap::new(),
                                        Bytes::new(),
                                    )));
                                }
                            } else {
                                return self
                                    .broke(&mut head_tx, body_tx, Broken::HeadUnended)
                                    .await;
                            }
                        }
                        return protocol_status == 0;
                    }
                    Record::Values(_) | Record::Other(_) => {}
                }
            }
            let timeout = if head_tx.is_some() {
                // The handler bounds the wait for the head (response_timeout).
                Duration::from_secs(24 * 3600)
            } else {
                self.read_timeout
            };
            let n = match tokio::time::timeout(timeout, read.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    return self.broke(&mut head_tx, body_tx, Broken::Closed).await;
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return self.broke(&mut head_tx, body_tx, e.into()).await,
                Err(_) => {
                    return self.broke(&mut head_tx, body_tx, Broken::Stalled).await;
                }
            };
            decoder.push(&buf[..n]);
        }
    }

    async fn broke(
        &self,
        head_tx: &mut Option<oneshot::Sender<Result<Head, Broken>>>,
        body_tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
        reason: Broken,
    ) -> bool {
        match head_tx.take() {
            Some(tx) => {
                let _ = tx.send(Err(reason));
            }
            None => {
                warn!(route = %self.route, script = %self.script, %reason, "FastCGI: response broke off");
                let _ = body_tx.send(Err(std::io::Error::other(reason))).await;
            }
        }
        false
    }
}

/// Writes the request body as STDIN records, then their end.
async fn send_body(
    write: &mut (dyn AsyncWrite + Send + Unpin),
    upload: Upload,
    id: u16,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    match upload {
        Upload::Memory(bytes) => {
            record::stdin(&mut out, id, &bytes);
            write.write_all(&out).await?;
        }
        Upload::Stream(mut body) => {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if let Ok(data) = frame.into_data() {
                    out.clear();
                    record::stdin(&mut out, id, &data);
                    write.write_all(&out).await?;
                }
            }
        }
        Upload::File(mut file) => {
            let mut buf = vec![0u8; 64 * 1024 - 1];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                out.clear();
                record::stdin(&mut out, id, &buf[..n]);
                write.write_all(&out).await?;
            }
        }
    }
    out.clear();
    record::stdin_end(&mut out, id);
    write.write_all(&out).await
}

/// The CGI header block at the start of `bytes`, if whole: the status (`Status:`, else 302 with
/// a `Location`, else 200), the headers, and how many bytes it took.
#[allow(clippy::type_complexity)]
fn parse_head(bytes: &[u8]) -> Result<Option<((StatusCode, http::HeaderMap), usize)>, Broken> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let (used, fields) = match httparse::parse_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete((used, fields))) => (used, fields),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Broken::Headers(e)),
    };
    let mut status = None;
    let mut headers = http::HeaderMap::new();
    for field in fields.iter() {
        if field.name.eq_ignore_ascii_case("status") {
            let code = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u16>().ok())
                .and_then(|v| StatusCode::from_u16(v).ok())
                .ok_or(Broken::Status)?;
            status = Some(code);
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    crate::proxy::forwarded::remove_hop_by_hop(&mut headers, false);
    let status = status.unwrap_or(if headers.contains_key(header::LOCATION) {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(Some(((status, headers), used)))
}

/// The body: what came with the head, then what the exchange sends on.
fn futures_stream(
    first: Bytes,
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let first = (!first.is_empty()).then_some(Ok(first));
    Chunks { first, receiver }
}

struct Chunks {
    first: Option<Result<Bytes, std::io::Error>>,
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(first));
        }
        self.receiver.poll_recv(cx)
    }
}

/// A path percent-encoded again for a URI (spaces and other characters a URI cannot hold).
fn encode_path(path: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'%');
    percent_encoding::utf8_percent_encode(path, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_heads_give_status_headers_and_where_the_body_starts() {
        let ((status, headers), used) =
            parse_head(b"Status: 404 Not Found\r\nContent-Type: text/html\r\nX-A: 1\r\n\r\nbody")
                .expect("parses")
                .expect("whole");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/html");
        assert_eq!(used, 58);
        let ((status, _), _) = parse_head(b"Location: /wp-admin/\r\n\r\n")
            .expect("parses")
            .expect("whole");
        assert_eq!(status, StatusCode::FOUND);
        let ((status, _), _) = parse_head(b"Content-type: text/html\n\n")
            .expect("parses")
            .expect("whole");
        assert_eq!(status, StatusCode::OK);
        assert!(
            parse_head(b"Content-type: text/ht")
                .expect("parses")
                .is_none()
        );
        assert!(parse_head(b"Status: nope\r\n\r\n").is_err());
    }

    #[test]
    fn addresses_are_unix_sockets_or_tcp() {
        assert_eq!(
            Address::parse("unix:/run/php/php8.2-fpm.sock"),
            Ok(Address::Unix(PathBuf::from("/run/php/php8.2-fpm.sock")))
        );
        assert_eq!(
            Address::parse("tcp:127.0.0.1:9000"),
            Ok(Address::Tcp("127.0.0.1:9000".to_string()))
        );
        for bad in ["/run/php.sock", "unix:php.sock", "tcp:9000", "tcp::9000"] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
