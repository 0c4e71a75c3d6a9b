//! Whole responses for small static files, kept in memory so that a repeated GET costs no file
//! system calls and no trip through `ServeDir`.
//!
//! Written here rather than taken from a crate because what may be reused is the product's own
//! rule: a response is `ServeDir`'s own 200 for a GET of that path with that `Accept-Encoding`
//! (the one request header that changes which file it picks), requests with ranges or
//! conditions always go to `ServeDir`, and every change under the root (seen by a file system
//! watcher) empties the cache before the next request can be answered from it.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use tracing::{debug, warn};

/// The largest file kept; larger ones are streamed from disk on every request.
const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Counted per entry on top of its body, so that many tiny variants also hit the bound.
const ENTRY_OVERHEAD: usize = 512;

/// The responses kept, with the watcher that empties them.
pub struct ResponseCache {
    state: Arc<State>,
    /// Kept for its drop: dropping it stops watching.
    _watcher: notify::RecommendedWatcher,
}

struct State {
    /// Bumped by every change under the root; an answer read from disk before a change is not
    /// kept (see `insert`).
    generation: AtomicU64,
    max_bytes: usize,
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Request path -> the variants kept for it, by `Accept-Encoding`.
    by_path: HashMap<String, Vec<Arc<Cached>>>,
    bytes: usize,
}

/// One kept response.
pub struct Cached {
    accept_encoding: Option<HeaderValue>,
    headers: HeaderMap,
    body: Bytes,
}

impl Cached {
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(chunked(self.body.clone()));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The size of the pieces a kept body is sent in, as `ServeDir` reads files: one piece of a
/// whole megabyte costs HTTP/3 (QUIC's send buffer) far more than sixteen of 64 KiB.
const CHUNK_BYTES: usize = 64 * 1024;

/// A body of `bytes` sent in `CHUNK_BYTES` slices of it (no copies).
pub fn chunked(bytes: Bytes) -> Body {
    if bytes.len() <= CHUNK_BYTES {
        return Body::from(bytes);
    }
    Body::new(Chunked(bytes))
}

struct Chunked(Bytes);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let rest = &mut self.0;
        if rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let piece = rest.split_to(rest.len().min(CHUNK_BYTES));
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.len() as u64)
    }
}

/// What a miss must remember to store its response: the request's key, and the generation it
/// started in.
pub struct Ticket {
    generation: u64,
    path: String,
    accept_encoding: Option<HeaderValue>,
}

impl Ticket {
    /// The request path, for messages about this miss.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl ResponseCache {
    /// Starts watching `root`; `None` when `max_bytes` is 0 or the watch cannot be set up (the
    /// site is then served from disk every time, which is only slower).
    pub fn new(root: &Path, max_bytes: usize) -> Option<ResponseCache> {
        if max_bytes == 0 {
            return None;
        }
        let state = Arc::new(State {
            generation: AtomicU64::new(0),
            max_bytes,
            entries: RwLock::new(Entries::default()),
        });
        let watched = Arc::downgrade(&state);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let changed = match &event {
                // Opening and reading (our own misses among them) change nothing.
                Ok(event) => !matches!(
                    event.kind,
                    EventKind::Access(
                        AccessKind::Open(_)
                            | AccessKind::Read
                            | AccessKind::Close(AccessMode::Read)
                    )
                ),
                // Lost events (a full queue and the like): assume anything changed.
                Err(_) => true,
            };
            if let (true, Some(state)) = (changed, watched.upgrade()) {
                state.clear();
            }
        });
        let watching = watcher.and_then(|mut watcher| {
            watcher.watch(root, RecursiveMode::Recursive)?;
            Ok(watcher)
        });
        match watching {
            Ok(watcher) => Some(ResponseCache {
                state,
                _watcher: watcher,
            }),
            Err(e) => {
                warn!(root = %root.display(), error = %e, "cannot watch the static files; serving them without a cache");
                None
            }
        }
    }

    /// The kept response for `request`, if it may be answered from memory.
    pub fn get(&self, request: &Request<Body>) -> Option<Arc<Cached>> {
        if !cacheable(request) {
            return None;
        }
        let accept = request.headers().get(header::ACCEPT_ENCODING);
        let entries = self.state.entries.read().ok()?;
        entries
            .by_path
            .get(request.uri().path())?
            .iter()
            .find(|cached| cached.accept_encoding.as_ref() == accept)
            .cloned()
    }

    /// For a request that missed: whether its response may be kept, and from which generation.
    pub fn ticket(&self, request: &Request<Body>) -> Option<Ticket> {
        cacheable(request).then(|| Ticket {
            generation: self.state.generation.load(Ordering::Acquire),
            path: request.uri().path().to_string(),
            accept_encoding: request.headers().get(header::ACCEPT_ENCODING).cloned(),
        })
    }

    /// Whether a response is one to keep: a 200 with a known, small enough length.
    pub fn wants(&self, response: &Response<Body>) -> bool {
        response.status() == StatusCode::OK
            && response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n <= MAX_FILE_BYTES.min(self.state.max_bytes))
    }

    /// Keeps a response read from disk, unless anything changed since its ticket was taken or
    /// the cache is full.
    pub fn insert(&self, ticket: Ticket, headers: HeaderMap, body: Bytes) {
        let Ticket {
            generation,
            path,
            accept_encoding,
        } = ticket;
        let cost = body.len() + ENTRY_OVERHEAD;
        let Ok(mut entries) = self.state.entries.write() else {
            return;
        };
        // Checked under the lock that `clear` takes after bumping the generation: either the
        // change is seen here, or its clear comes after this insert and removes it.
        if self.state.generation.load(Ordering::Acquire) != generation
            || entries.bytes + cost > self.state.max_bytes
        {
            return;
        }
        let variants = entries.by_path.entry(path).or_default();
        if variants
            .iter()
            .any(|cached| cached.accept_encoding == accept_encoding)
        {
            return;
        }
        variants.push(Arc::new(Cached {
            accept_encoding,
            headers,
            body,
        }));
        entries.bytes += cost;
    }
}

impl State {
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            if entries.bytes > 0 {
                debug!(bytes = entries.bytes, "static files changed; cache emptied");
            }
            *entries = Entries::default();
        }
    }
}

/// A plain GET: no range and no condition, which `ServeDir` answers differently per request.
fn cacheable(request: &Request<Body>) -> bool {
    request.method() == Method::GET
        && !request.headers().keys().any(|name| {
            name == header::RANGE
                || name == header::IF_RANGE
                || name == header::IF_MATCH
                || name == header::IF_NONE_MATCH
                || name == header::IF_MODIFIED_SINCE
                || name == header::IF_UNMODIFIED_SINCE
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    fn keep(cache: &ResponseCache, request: &Request<Body>, body: &'static str) {
        let ticket = cache.ticket(request).unwrap();
        let body = Bytes::from_static(body.as_bytes());
        cache.insert(ticket, HeaderMap::new(), body);
    }

    fn body(cached: &Cached) -> &[u8] {
        &cached.body
    }

    #[test]
    fn kept_per_path_and_accept_encoding_and_only_for_plain_gets() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), 1 << 20).unwrap();
        let plain = get("/a.html", &[]);
        let gzip = get("/a.html", &[("accept-encoding", "gzip")]);
        keep(&cache, &plain, "plain");
        keep(&cache, &gzip, "gzip");
        assert_eq!(body(&cache.get(&plain).unwrap()), b"plain");
        assert_eq!(body(&cache.get(&gzip).unwrap()), b"gzip");
        assert!(
            cache
                .get(&get("/a.html", &[("accept-encoding", "br")]))
                .is_none()
        );
        assert!(cache.get(&get("/b.html", &[])).is_none());
        for conditional in [
            ("range", "bytes=0-1"),
            ("if-none-match", "\"x\""),
            ("if-modified-since", "Sun, 29 Nov 2026 12:00:00 GMT"),
        ] {
            let request = get("/a.html", &[conditional]);
            assert!(cache.get(&request).is_none(), "{conditional:?}");
            assert!(cache.ticket(&request).is_none(), "{conditional:?}");
        }
        let head = Request::head("/a.html").body(Body::empty()).unwrap();
        assert!(cache.get(&head).is_none());
    }

    #[test]
    fn a_change_under_the_root_empties_it_and_voids_earlier_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), 1 << 20).unwrap();
        let request = get("/a.html", &[]);
        keep(&cache, &request, "old");
        let early = cache.ticket(&request).unwrap();
        std::fs::write(dir.path().join("a.html"), "new").unwrap();
        let start = Instant::now();
        while cache.get(&request).is_some() {
            assert!(start.elapsed() < Duration::from_secs(5), "never emptied");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Read before the change, stored after it: refused.
        let stale = Bytes::from_static(b"old");
        cache.insert(early, HeaderMap::new(), stale);
        assert!(cache.get(&request).is_none());
        keep(&cache, &request, "new");
        assert_eq!(body(&cache.get(&request).unwrap()), b"new");
    }

    #[test]
    fn bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), 2 * ENTRY_OVERHEAD + 10).unwrap();
        keep(&cache, &get("/a", &[]), "12345");
        keep(&cache, &get("/b", &[]), "12345");
        keep(&cache, &get("/c", &[]), "1");
        assert!(cache.get(&get("/a", &[])).is_some());
        assert!(cache.get(&get("/b", &[])).is_some());
        assert!(cache.get(&get("/c", &[])).is_none());
        let big = Response::builder()
            .header(header::CONTENT_LENGTH, "2000")
            .body(Body::empty())
            .unwrap();
        assert!(!cache.wants(&big), "larger than the whole cache");
        assert!(ResponseCache::new(dir.path(), 0).is_none());
    }
}
