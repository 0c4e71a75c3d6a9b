//! Whole responses for small static files, kept in memory so that a repeated GET costs no file
//! system calls and no trip through `ServeDir`.
//!
//! Written here rather than taken from a crate because what may be reused is the product's own
//! rule: a response is `ServeDir`'s own 200 for a GET of that path by a client that prefers the
//! same encodings in the same order (`Accept-Encoding` is the one request header that changes
//! which file it picks, and only through that order), requests with ranges or conditions always
//! go to `ServeDir`, every change under the root (seen by a file system watcher) empties the
//! cache before the next request can be answered from it, and past `file_cache_bytes` the least
//! recently used responses make room.

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
use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use notify::{RecursiveMode, Watcher};
use tracing::{debug, warn};

use crate::service::Stamp;

/// The largest file kept; larger ones are streamed from disk on every request.
const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Counted per entry on top of its body, so that many tiny variants also hit the bound.
const ENTRY_OVERHEAD: usize = 1024;

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
    /// Ticks at every hit and insert: the recency that eviction goes by.
    clock: AtomicU64,
}

#[derive(Default)]
struct Entries {
    /// Request path -> the variants kept for it, by encoding preference. Hashed by foldhash
    /// (seeded at random per cache), not SipHash: looked up on every static request, where
    /// SipHash of the path cost 190 instructions of a 29,000-instruction response; only paths
    /// of files read are ever inserted, so a client cannot choose the keys.
    by_path: HashMap<String, Vec<Arc<Cached>>, foldhash::fast::RandomState>,
    bytes: usize,
}

impl Drop for Entries {
    /// Emptied (a change under the root) or gone (a reload replaced the cache): what it held
    /// leaves the gauge.
    fn drop(&mut self) {
        crate::metrics::metrics().cache_size(-(self.bytes as i64));
    }
}

/// One kept response.
pub struct Cached {
    preference: Preference,
    headers: HeaderMap,
    /// The same with a place for `Date`, for HTTP/2 and HTTP/3 (see `response`).
    dated: HeaderMap,
    body: Bytes,
    /// The site's fields it carries (`StaticFiles::stamped`), if it was stamped.
    stamp: Option<Stamp>,
    /// When it was last answered from, on the cache's clock, for eviction.
    used: AtomicU64,
}

/// The encodings a client accepts that `ServeDir` can serve precompressed (and identity), in
/// the order `ServeDir` tries them, packed four bits each: what decides which file it sends.
/// Junk or unsupported values all come to the same few keys, so they cannot fill the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preference(u16);

impl Preference {
    /// As tower-http's `ServeDir` reads `Accept-Encoding` (its `content_encoding::encodings`
    /// and `Encoding::preferred_encoding`): unknown codings and malformed q-values are ignored,
    /// each coding counts with its highest q, codings with q = 0 are left out, and the rest are
    /// tried from the highest (q, coding rank) down.
    pub fn of(headers: &HeaderMap) -> Preference {
        // Ranks as tower-http orders `Encoding`: identity < gzip < br < zstd.
        const CODINGS: [(&str, u16); 5] = [
            ("identity", 1),
            ("gzip", 2),
            ("x-gzip", 2),
            ("br", 3),
            ("zstd", 4),
        ];
        let mut best = [None::<u16>; 5];
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for item in text.split(',') {
                let mut parts = item.splitn(2, ';');
                let name = parts.next().unwrap_or_default().trim();
                let Some(&(_, rank)) = CODINGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))
                else {
                    continue;
                };
                let q = match parts.next() {
                    Some(q) => match q_value(q.trim()) {
                        Some(q) => q,
                        None => continue,
                    },
                    None => 1000,
                };
                let slot = &mut best[usize::from(rank)];
                *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
            }
        }
        let mut order: Vec<(u16, u16)> = (1..5u16)
            .filter_map(|rank| best[usize::from(rank)].map(|q| (q, rank)))
            .filter(|&(q, _)| q > 0)
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        Preference(order.iter().fold(0, |key, &(_, rank)| key << 4 | rank))
    }
}

/// A q-value, `q=0` to `q=1` with at most three decimals, in thousandths (RFC 9110 section
/// 12.4.2), parsed as tower-http does.
fn q_value(text: &str) -> Option<u16> {
    let number = text
        .strip_prefix("q=")
        .or_else(|| text.strip_prefix("Q="))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .zip([100u16, 10, 1])
        .map(|(digit, factor)| u16::from(digit - b'0') * factor)
        .sum::<u16>();
    let value = whole + thousandths;
    (value <= 1000).then_some(value)
}

impl Cached {
    /// The kept response, for a request of `version`.
    ///
    /// A field added to a copy of a kept table grows it (allocates it again and moves every
    /// field: 2% of a small response's instructions, `benches/instructions.sh`), as the copy
    /// has no spare room; so the site's own fields are kept with it already
    /// (`StaticFiles::stamped`), and `Date` has its place in the copy for HTTP/2 and HTTP/3,
    /// where hyper or the HTTP/3 stream would add it. hyper writes HTTP/1.1's own.
    pub fn response(&self, version: Version) -> Response<Body> {
        let mut response = Response::new(chunked(self.body.clone()));
        let headers = response.headers_mut();
        if version >= Version::HTTP_2 {
            *headers = self.dated.clone();
            headers.insert(header::DATE, crate::date::now());
        } else {
            *headers = self.headers.clone();
        }
        response
    }

    /// Whether it carries `stamp`'s fields already, and so needs them no more.
    pub fn stamped_with(&self, stamp: &Stamp) -> bool {
        self.stamp.as_ref() == Some(stamp)
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
    preference: Preference,
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
            clock: AtomicU64::new(0),
        });
        let watched = Arc::downgrade(&state);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own misses read files: only a change empties the cache.
            let changed = foobar_state::watch::is_change(&event);
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
        let preference = Preference::of(request.headers());
        let entries = self.state.entries.read().ok()?;
        let hit = entries
            .by_path
            .get(request.uri().path())?
            .iter()
            .find(|cached| cached.preference == preference)?
            .clone();
        hit.used.store(self.state.tick(), Ordering::Relaxed);
        Some(hit)
    }

    /// For a request that missed: whether its response may be kept, and from which generation.
    pub fn ticket(&self, request: &Request<Body>) -> Option<Ticket> {
        cacheable(request).then(|| Ticket {
            generation: self.state.generation.load(Ordering::Acquire),
            path: request.uri().path().to_string(),
            preference: Preference::of(request.headers()),
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

    /// Keeps a response read from disk, unless anything changed since its ticket was taken;
    /// the least recently used responses make room when the cache is full.
    pub fn insert(&self, ticket: Ticket, headers: HeaderMap, body: Bytes, stamp: Option<Stamp>) {
        let Ticket {
            generation,
            path,
            preference,
        } = ticket;
        let cost = body.len() + ENTRY_OVERHEAD;
        if cost > self.state.max_bytes {
            return;
        }
        let Ok(mut entries) = self.state.entries.write() else {
            return;
        };
        // Checked under the lock that `clear` takes after bumping the generation: either the
        // change is seen here, or its clear comes after this insert and removes it.
        if self.state.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries
            .by_path
            .get(&path)
            .is_some_and(|variants| variants.iter().any(|c| c.preference == preference))
        {
            return;
        }
        if entries.bytes + cost > self.state.max_bytes {
            evict(&mut entries, self.state.max_bytes - cost);
        }
        entries
            .by_path
            .entry(path)
            .or_default()
            .push(Arc::new(Cached {
                preference,
                dated: {
                    let mut dated = headers.clone();
                    dated.insert(header::DATE, crate::date::now());
                    dated
                },
                headers,
                body,
                stamp,
                used: AtomicU64::new(self.state.tick()),
            }));
        entries.bytes += cost;
        crate::metrics::metrics().cache_size(cost as i64);
    }
}

/// Drops the least recently used responses until at most `room` bytes are kept, and a little
/// more (an eighth of the cache at least), so that a full cache does not sort on every insert.
fn evict(entries: &mut Entries, room: usize) {
    let mut by_age: Vec<(u64, String, Preference, usize)> = entries
        .by_path
        .iter()
        .flat_map(|(path, variants)| {
            variants.iter().map(|cached| {
                let cost = cached.body.len() + ENTRY_OVERHEAD;
                (
                    cached.used.load(Ordering::Relaxed),
                    path.clone(),
                    cached.preference,
                    cost,
                )
            })
        })
        .collect();
    by_age.sort_unstable_by_key(|&(used, ..)| used);
    let target = room.saturating_sub(room / 8);
    let mut evicted = 0;
    for (_, path, preference, cost) in by_age {
        if entries.bytes <= target {
            break;
        }
        if let Some(variants) = entries.by_path.get_mut(&path) {
            variants.retain(|cached| cached.preference != preference);
            if variants.is_empty() {
                entries.by_path.remove(&path);
            }
        }
        entries.bytes -= cost;
        crate::metrics::metrics().cache_size(-(cost as i64));
        evicted += 1;
    }
    debug!(
        evicted,
        bytes = entries.bytes,
        "file cache full; least recently used dropped"
    );
}

impl State {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

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
        cache.insert(ticket, HeaderMap::new(), body, None);
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
        cache.insert(early, HeaderMap::new(), stale, None);
        assert!(cache.get(&request).is_none());
        // Read after it: kept. The watcher may report one write as several events, the last
        // after the first has emptied the cache, and each empties it again: a response kept
        // before the last event is rightly dropped, so it is kept again until one stays.
        let start = Instant::now();
        let kept = loop {
            keep(&cache, &request, "new");
            if let Some(kept) = cache.get(&request) {
                break kept;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "never kept again");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(body(&kept), b"new");
    }

    #[test]
    fn bounded_in_bytes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), 3 * ENTRY_OVERHEAD + 30).unwrap();
        for path in ["/a", "/b", "/c"] {
            keep(&cache, &get(path, &[]), "12345");
        }
        assert!(cache.get(&get("/a", &[])).is_some());
        keep(&cache, &get("/d", &[]), "12345");
        assert!(cache.get(&get("/a", &[])).is_some(), "recently used, kept");
        assert!(
            cache.get(&get("/b", &[])).is_none(),
            "least recently used, dropped"
        );
        assert!(cache.get(&get("/d", &[])).is_some(), "the new one is kept");
        let big = Response::builder()
            .header(header::CONTENT_LENGTH, 4 * ENTRY_OVERHEAD)
            .body(Body::empty())
            .unwrap();
        assert!(!cache.wants(&big), "larger than the whole cache");
        assert!(ResponseCache::new(dir.path(), 0).is_none());
    }

    #[test]
    fn junk_accept_encoding_values_share_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), 1 << 20).unwrap();
        for i in 0..1000 {
            let junk = format!("junk-{i}, other;q=0.{}", i % 10);
            keep(
                &cache,
                &get("/a.html", &[("accept-encoding", &junk)]),
                "plain",
            );
        }
        let entries = cache.state.entries.read().unwrap();
        assert_eq!(entries.by_path["/a.html"].len(), 1);
    }

    #[test]
    fn preferences_follow_serve_dir_order() {
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            Preference::of(&headers)
        };
        let none = Preference::of(&HeaderMap::new());
        assert_eq!(of("junk, *"), none);
        assert_eq!(of("gzip;q=0"), none);
        assert_eq!(of("gzip;q=0.5"), of("gzip"));
        assert_eq!(of("x-gzip"), of("gzip"));
        assert_eq!(
            of("GZIP, Br"),
            of("br, gzip"),
            "equal q: tower-http's rank decides"
        );
        assert_ne!(of("gzip;q=1, br;q=0.5"), of("br, gzip"));
        assert_eq!(of("gzip;q=0.2, gzip;q=0.9, br;q=0.5"), of("gzip, br;q=0.5"));
        assert_eq!(
            of("br;q=2, gzip"),
            of("gzip"),
            "a malformed q-value drops its item"
        );
        assert_ne!(of("identity, gzip;q=0.5"), of("gzip"));
    }
}
