//! The static site: tower-http's `ServeDir` (Content-Type, ETag, Last-Modified, conditional
//! requests, single ranges, precompressed siblings, index.html), behind a guard that keeps every
//! request inside the root, with small files' responses kept in memory (`crate::file_cache`).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File as BackendFile};

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt, util::BoxCloneSyncService};
use tower_http::services::{ServeDir, ServeFile};
use tracing::warn;

use crate::{
    error::Error,
    file_cache::{self, ResponseCache, Ticket},
    service::{Stamp, vary_if_compressible},
};

/// The static files under `root`, as one service. Unknown paths get `root/404.html` (if there is
/// one) with status 404. Up to `cache_bytes` of small files' responses are kept in memory (0
/// turns that off). Responses get the `Cache-Control` of the longest prefix of their path in
/// `cache_control`.
pub fn static_files(
    root: &Path,
    cache_bytes: usize,
    cache_control: &BTreeMap<String, String>,
) -> Result<StaticFiles, Error> {
    let mut rules = Vec::with_capacity(cache_control.len());
    for (prefix, value) in cache_control {
        let invalid = |reason: String| Error::Config {
            key: format!("cache_control.{prefix:?}"),
            reason,
        };
        if !prefix.starts_with('/') {
            return Err(invalid("a path prefix starts with \"/\"".to_string()));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("not a valid header value: {value:?}")))?;
        rules.push((prefix.clone(), value));
    }
    // Longest prefix first: the first that matches is the most specific.
    rules.sort_by_key(|rule| std::cmp::Reverse(rule.0.len()));
    let canonical = std::fs::canonicalize(root).map_err(|reason| Error::Root {
        path: root.to_path_buf(),
        reason,
    })?;
    let not_found = ServeFile::new(canonical.join("404.html"));
    let files = ServeDir::with_backend(&canonical, Direct)
        .append_index_html_on_directories(true)
        .precompressed_br()
        .precompressed_gzip()
        .precompressed_zstd()
        .not_found_service(not_found);
    let files =
        ServiceExt::<Request<Body>>::map_response(files, |response| response.map(Body::new));
    Ok(StaticFiles(Arc::new(Shared {
        cache: ResponseCache::new(&canonical, cache_bytes).map(Arc::new),
        root: canonical,
        files: BoxCloneSyncService::new(files),
        cache_control: Arc::new(CacheControl(rules)),
        follow_symlinks: false,
        stamp: None,
    })))
}

/// File access for `ServeDir` done in place rather than on tokio's blocking pool.
///
/// A static site is small and stays in the page cache, where open, stat and a 64 KiB read take
/// microseconds; handing each to another thread (tokio's file backend) costs more in context
/// switches than the work itself. nginx serves files the same way. Written here because
/// tower-http's `Backend` trait is the extension point for exactly this.
#[derive(Debug, Clone, Copy, Default)]
struct Direct;

impl Backend for Direct {
    type File = DirectFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = std::future::Ready<io::Result<DirectFile>>;
    type MetadataFuture = std::future::Ready<io::Result<std::fs::Metadata>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let open = || {
            let file = std::fs::File::open(path)?;
            let metadata = file.metadata()?;
            Ok(DirectFile {
                file,
                left: metadata.len(),
                metadata,
                seek: None,
            })
        };
        std::future::ready(open())
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        std::future::ready(std::fs::metadata(path))
    }
}

struct DirectFile {
    file: std::fs::File,
    /// Bytes between the position and the end, so a read prepares no more buffer than it fills.
    left: u64,
    /// Taken once at open; `ServeDir` asks again for it.
    metadata: std::fs::Metadata,
    /// The result of the last `start_seek`, handed out by `poll_complete`.
    seek: Option<io::Result<u64>>,
}

impl AsyncRead for DirectFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let read = io::Read::read(&mut self.file, buf.initialize_unfilled_to(want))?;
        buf.advance(read);
        self.left = self.left.saturating_sub(read as u64);
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for DirectFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let result = io::Seek::seek(&mut self.file, position);
        if let Ok(at) = result {
            self.left = self.metadata.len().saturating_sub(at);
        }
        self.seek = Some(result);
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.seek.take() {
            Some(result) => Poll::Ready(result),
            None => Poll::Ready(io::Seek::stream_position(&mut self.file)),
        }
    }
}

impl BackendFile for DirectFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = std::future::Ready<io::Result<std::fs::Metadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        std::future::ready(Ok(self.metadata.clone()))
    }
}

/// Static files with the containment guard. Shared: a site's routes and the built-in app's
/// fallback each hold it, and a clone is taken per request where it is handed on.
#[derive(Clone)]
pub struct StaticFiles(Arc<Shared>);

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    cache: Option<Arc<ResponseCache>>,
    files: BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>,
    cache_control: Arc<CacheControl>,
    /// Links that lead outside the root are followed (`follow_symlinks`).
    follow_symlinks: bool,
    /// The fields the site puts on every response (`StaticFiles::stamped`).
    stamp: Option<Stamp>,
}

impl StaticFiles {
    /// Serves files reached through symbolic links wherever they lead (nginx's and Caddy's
    /// default): for a root assembled from links, as Debian's WordPress is.
    pub fn following_symlinks(mut self) -> StaticFiles {
        Arc::make_mut(&mut self.0).follow_symlinks = true;
        self
    }

    /// Kept responses hold the fields the site's stamp and the front layer's `Vary` add after
    /// them, so that adding them again to each copy finds them there: a copy of a kept field
    /// table has no spare room, and one more field would grow it (allocate it again and move
    /// every field), 2% of a small static response's instructions (`benches/instructions.sh`).
    /// A kept response that carries the site's stamp is sent as it is (`kept`); the site
    /// applies its stamp to any other, as one kept by another build of the same sites (one
    /// cache serves the builds for each port, whose Alt-Svc differ).
    pub(crate) fn stamped(mut self, stamp: &Stamp) -> StaticFiles {
        Arc::make_mut(&mut self.0).stamp = Some(stamp.clone());
        self
    }

    /// The kept response for `request` if it carries `stamp`'s fields already: the site sends
    /// it as it is, with no lookup of each of them to find it there (about 650 instructions a
    /// response over HTTP/1.1, `benches/instructions.sh`). `None` sends the request through
    /// `call` (a miss, or one kept by an earlier build with another stamp).
    pub(crate) fn kept(&self, request: &Request<Body>, stamp: &Stamp) -> Option<Response<Body>> {
        let hit = self.0.cache.as_ref()?.get(request)?;
        if !hit.stamped_with(stamp) {
            return None;
        }
        crate::metrics::metrics().cache(true);
        Some(hit.response(request.version()))
    }

    /// The root folder, canonical.
    pub fn root(&self) -> &Path {
        &self.0.root
    }

    /// Whether links leading outside the root are followed.
    pub(crate) fn follows_symlinks(&self) -> bool {
        self.0.follow_symlinks
    }
}

/// `Cache-Control` values by path prefix, the longest first.
struct CacheControl(Vec<(String, HeaderValue)>);

impl CacheControl {
    /// Sets the rule's `Cache-Control` on a response to `path` that may be cached (200, 206,
    /// 304), unless it has one.
    fn apply(&self, path: &str, response: &mut Response<Body>) {
        if !matches!(response.status().as_u16(), 200 | 206 | 304)
            || response.headers().contains_key(header::CACHE_CONTROL)
        {
            return;
        }
        if let Some((_, value)) = self.0.iter().find(|(prefix, _)| path.starts_with(prefix)) {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, value.clone());
        }
    }
}

impl std::fmt::Debug for StaticFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticFiles")
            .field("root", &self.0.root)
            .field("cache", &self.0.cache.is_some())
            .finish()
    }
}

impl Service<Request<Body>> for StaticFiles {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    /// Always ready: a miss goes to a clone of `ServeDir`'s service, readied by `oneshot`.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = &*self.0;
        // A kept response passed this guard when it was read, and any change under the root
        // since would have emptied the cache.
        if let Some(hit) = shared.cache.as_ref().and_then(|cache| cache.get(&request)) {
            crate::metrics::metrics().cache(true);
            return Box::pin(std::future::ready(Ok(hit.response(request.version()))));
        }
        let refusal = match contained(&shared.root, request.uri().path(), shared.follow_symlinks) {
            Containment::Inside => {
                let files = shared.files.clone();
                let kept = shared
                    .cache
                    .as_ref()
                    .and_then(|cache| Some((cache.clone(), cache.ticket(&request)?)));
                let rules = shared.cache_control.clone();
                return match kept {
                    Some((cache, ticket)) => {
                        crate::metrics::metrics().cache(false);
                        let stamp = shared.stamp.clone();
                        Box::pin(read_and_keep(files, request, cache, ticket, rules, stamp))
                    }
                    None => {
                        let path = request.uri().path().to_string();
                        Box::pin(async move {
                            let mut response = files.oneshot(request).await?;
                            rules.apply(&path, &mut response);
                            Ok(response)
                        })
                    }
                };
            }
            Containment::Malformed => plain(StatusCode::BAD_REQUEST, "bad request path\n"),
            Containment::Escapes => plain(StatusCode::NOT_FOUND, "not found\n"),
        };
        Box::pin(std::future::ready(Ok(refusal)))
    }
}

/// Answers a miss through `ServeDir` and keeps the response if it is a small 200.
async fn read_and_keep(
    files: BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>,
    request: Request<Body>,
    cache: Arc<ResponseCache>,
    ticket: Ticket,
    rules: Arc<CacheControl>,
    stamp: Option<Stamp>,
) -> Result<Response<Body>, Infallible> {
    let mut response = files.oneshot(request).await?;
    // Before it is kept: a response answered from memory carries it already.
    rules.apply(ticket.path(), &mut response);
    if !cache.wants(&response) {
        return Ok(response);
    }
    // As the layers after will, once (see `StaticFiles::stamped`).
    if let Some(stamp) = &stamp {
        stamp.apply(response.headers_mut());
    }
    vary_if_compressible(&mut response);
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            warn!(path = ticket.path(), error = %e, "reading a static file");
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file could not be read\n",
            ));
        }
    };
    cache.insert(ticket, parts.headers.clone(), body.clone(), stamp);
    Ok(Response::from_parts(parts, file_cache::chunked(body)))
}

pub(crate) enum Containment {
    Inside,
    /// A path that cannot name a file under the root: `..`, encoded separators, backslashes.
    Malformed,
    /// A path whose file is a link to somewhere outside the root.
    Escapes,
}

/// Checks a request path before it reaches `ServeDir`: refuses `..` (plain or percent-encoded),
/// `%2f`, `%5c`, backslashes and NUL, and (unless `follow_symlinks`) resolves symlinks so that
/// no link leads outside.
pub(crate) fn contained(root: &Path, raw_path: &str, follow_symlinks: bool) -> Containment {
    let lower = raw_path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return Containment::Malformed;
    }
    let Ok(decoded) = percent_encoding::percent_decode_str(raw_path).decode_utf8() else {
        return Containment::Malformed;
    };
    if decoded.contains('\\') || decoded.contains('\0') {
        return Containment::Malformed;
    }
    if follow_symlinks {
        return if decoded.split('/').any(|segment| segment == "..") {
            Containment::Malformed
        } else {
            Containment::Inside
        };
    }
    let mut path = root.to_path_buf();
    let mut through_link = false;
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Containment::Malformed,
            name => {
                path.push(name);
                // Only a symbolic link can lead outside: look at each component below the
                // (canonical) root, and resolve the whole path only when one is a link. Done in
                // place, like the file access itself (see `Direct`).
                if !through_link {
                    match std::fs::symlink_metadata(&path) {
                        Ok(meta) => through_link = meta.file_type().is_symlink(),
                        // Nothing there: ServeDir answers 404.
                        Err(_) => return Containment::Inside,
                    }
                }
            }
        }
    }
    if !through_link {
        return Containment::Inside;
    }
    match std::fs::canonicalize(&path) {
        Ok(real) if !real.starts_with(root) => Containment::Escapes,
        _ => Containment::Inside,
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
