//! Rendered pages and JSON kept in memory until a write of this app changes what they show.
//!
//! A read that finds its response here costs no query and no render. What keeps it right:
//!
//! - every write (a post created, changed or deleted, a comment added) drops what it touches
//!   (the post's own responses and every list) once the database has answered, before the
//!   writer's response is sent: a write acknowledged by this node is never followed by a stale
//!   read from this node;
//! - a read that raced a write does not store what it read: each write bumps a generation
//!   under the same lock that drops entries, and a read stores its response only if the
//!   generation is still the one it saw before querying;
//! - writes made elsewhere (another node of a cluster on the same database, a person with the
//!   `sqlite3` shell) are not seen here: an entry is kept at most `ttl`, which bounds how stale
//!   another node's writes can be read here.
//!
//! Written here rather than taken from a cache crate because the generation check and the drop
//! must happen under one lock; the rest is a map with a byte budget.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// What a cached response answers: the route and what in the request selects the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `/posts/{id}?after=`
    PostPage { id: i64, after: Option<i64> },
    /// `/api/posts/{id}`
    PostJson { id: i64 },
    /// `/api/posts/{id}/comments?limit=&after=`
    CommentsJson {
        id: i64,
        limit: u32,
        after: Option<i64>,
    },
    /// `/posts?before=`
    ListPage { before: Option<i64> },
    /// `/api/posts?limit=&before=`
    ListJson { limit: u32, before: Option<i64> },
}

impl Key {
    /// The post whose writes change this response; `None` for lists, which every write may
    /// change (a new post, a title, a comment count).
    fn post(&self) -> Option<i64> {
        match *self {
            Key::PostPage { id, .. } | Key::PostJson { id } | Key::CommentsJson { id, .. } => {
                Some(id)
            }
            Key::ListPage { .. } | Key::ListJson { .. } => None,
        }
    }
}

/// A response as kept: a 200 with its body, type and validator.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
}

impl Rendered {
    /// A body with a weak ETag from its content (a page may be compressed on the way out, so
    /// the tag promises the same content, not the same bytes).
    pub fn weak(body: impl Into<Bytes>, content_type: &'static str) -> Rendered {
        let body = body.into();
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("W/\"{:016x}\"", hasher.finish()))
            .unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""));
        Rendered::tagged(body, content_type, etag)
    }

    /// A body with the ETag its maker gives it.
    pub fn tagged(
        body: impl Into<Bytes>,
        content_type: &'static str,
        etag: HeaderValue,
    ) -> Rendered {
        Rendered {
            body: body.into(),
            content_type: HeaderValue::from_static(content_type),
            etag,
        }
    }

    /// The response to a request with these headers: 304 when its `If-None-Match` names this
    /// version, else the 200.
    pub fn answer(&self, request: &HeaderMap) -> Response {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(header::ETAG, self.etag.clone());
        // Browsers keep the response but ask again each time, with the tag.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if none_match(request, &self.etag) {
            crate::metrics::cache(crate::metrics::CacheResult::NotModified);
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        (headers, self.body.clone()).into_response()
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 section 13.1.2) or is `*`.
fn none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    fn opaque(tag: &[u8]) -> &[u8] {
        tag.strip_prefix(b"W/").unwrap_or(tag)
    }
    let ours = opaque(etag.as_bytes());
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || opaque(tag) == ours)
}

/// The response for `key`: kept, or made by `make` (and kept when it succeeds); 304 when the
/// client's `If-None-Match` names it.
pub async fn cached<E: IntoResponse>(
    cache: &Cache,
    headers: &HeaderMap,
    key: Key,
    make: impl Future<Output = Result<Rendered, E>>,
) -> Response {
    let ticket = match cache.get(&key) {
        Ok(kept) => return kept.answer(headers),
        Err(ticket) => ticket,
    };
    match make.await {
        Ok(made) => {
            cache.put(key, ticket, &made);
            made.answer(headers)
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Debug)]
struct Entry {
    rendered: Rendered,
    stored: Instant,
}

impl Entry {
    fn size(&self) -> usize {
        self.rendered.body.len() + self.rendered.etag.len() + 64
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every write; see the module's notes.
    generation: u64,
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

/// The cache; one per app.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

/// What a read saw before querying, to store its result with.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl Cache {
    /// Entries kept at most `ttl`, in all at most `max_bytes`; a zero for either keeps nothing.
    pub fn new(ttl: Duration, max_bytes: usize) -> Cache {
        Cache {
            ttl,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_bytes > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The response kept for `key` if it is fresh; else a ticket to store the one the caller
    /// makes.
    pub fn get(&self, key: &Key) -> Result<Rendered, Ticket> {
        if !self.enabled() {
            return Err(Ticket(u64::MAX));
        }
        let inner = self.lock();
        match inner.entries.get(key) {
            Some(entry) if entry.stored.elapsed() < self.ttl => {
                crate::metrics::cache(crate::metrics::CacheResult::Hit);
                Ok(entry.rendered.clone())
            }
            _ => {
                crate::metrics::cache(crate::metrics::CacheResult::Miss);
                Err(Ticket(inner.generation))
            }
        }
    }

    /// Keeps `rendered` for `key`, unless a write happened since `ticket` was taken.
    pub fn put(&self, key: Key, ticket: Ticket, rendered: &Rendered) {
        if !self.enabled() {
            return;
        }
        let entry = Entry {
            rendered: rendered.clone(),
            stored: Instant::now(),
        };
        let size = entry.size();
        if size > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.bytes + size > self.max_bytes {
            // Full: drop what has expired, and everything if that was not enough (entries live
            // for `ttl` at most, so the cache refills with what is asked for now).
            let ttl = self.ttl;
            inner
                .entries
                .retain(|_, entry| entry.stored.elapsed() < ttl);
            inner.bytes = inner.entries.values().map(Entry::size).sum();
            if inner.bytes + size > self.max_bytes {
                inner.entries.clear();
                inner.bytes = 0;
            }
        }
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.bytes -= old.size();
        }
        inner.bytes += size;
    }

    /// Runs `write`, a write to `post` (or a new post, with `None`), then drops what it
    /// changes: whether it succeeded or failed, and also when its request is abandoned midway
    /// (the database may have committed it all the same).
    pub async fn writing<T>(&self, post: Option<i64>, write: impl Future<Output = T>) -> T {
        let _changing = Changing { cache: self, post };
        write.await
    }

    /// A write to `post` (or a new post, with `None`) has been made or tried: drop the post's
    /// responses and every list.
    fn changed(&self, post: Option<i64>) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        let mut freed = 0;
        inner.entries.retain(|key, entry| {
            let keep = key.post().is_some_and(|id| Some(id) != post);
            if !keep {
                freed += entry.size();
            }
            keep
        });
        inner.bytes -= freed;
    }
}

/// Drops what a write changes, when the write is over (see [`Cache::writing`]).
#[derive(Debug)]
struct Changing<'a> {
    cache: &'a Cache,
    post: Option<i64>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.cache.changed(self.post);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rendered(text: &'static str) -> Rendered {
        Rendered::weak(text, "text/plain")
    }

    #[test]
    fn a_write_drops_the_post_and_the_lists() {
        let cache = Cache::new(Duration::from_secs(60), 1 << 20);
        let keys = [
            Key::PostJson { id: 1 },
            Key::PostPage { id: 2, after: None },
            Key::ListPage { before: None },
        ];
        for key in keys {
            let ticket = cache.get(&key).unwrap_err();
            cache.put(key, ticket, &rendered("x"));
            assert!(cache.get(&key).is_ok());
        }
        cache.changed(Some(1));
        assert!(cache.get(&keys[0]).is_err(), "the post written");
        assert!(cache.get(&keys[1]).is_ok(), "another post");
        assert!(cache.get(&keys[2]).is_err(), "lists");
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = Cache::new(Duration::from_secs(60), 1 << 20);
        let key = Key::PostJson { id: 1 };
        let ticket = cache.get(&key).unwrap_err();
        cache.changed(Some(1));
        cache.put(key, ticket, &rendered("read before the write"));
        assert!(cache.get(&key).is_err());
    }

    /// A write whose request is abandoned (its future dropped) after the database may have
    /// committed it still drops what it changes.
    #[tokio::test]
    async fn an_abandoned_write_still_drops_what_it_changes() {
        let cache = Cache::new(Duration::from_secs(60), 1 << 20);
        let key = Key::PostJson { id: 1 };
        let ticket = cache.get(&key).unwrap_err();
        cache.put(key, ticket, &rendered("before"));
        let writer = cache.writing(Some(1), std::future::pending::<()>());
        let abandoned = tokio::time::timeout(Duration::from_millis(10), writer).await;
        assert!(abandoned.is_err());
        assert!(cache.get(&key).is_err());
    }

    #[test]
    fn entries_expire_and_the_budget_holds() {
        let cache = Cache::new(Duration::from_millis(20), 1 << 20);
        let key = Key::PostJson { id: 1 };
        let ticket = cache.get(&key).unwrap_err();
        cache.put(key, ticket, &rendered("x"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(&key).is_err(), "expired");

        let cache = Cache::new(Duration::from_secs(60), 4096);
        let body = Bytes::from(vec![b'x'; 900]);
        for id in 0..20 {
            let key = Key::PostJson { id };
            let ticket = cache.get(&key).unwrap_err();
            cache.put(key, ticket, &Rendered::weak(body.clone(), "text/plain"));
            assert!(cache.lock().bytes <= 4096);
        }
    }

    #[test]
    fn if_none_match_gives_304() {
        let kept = rendered("page");
        let mut request = HeaderMap::new();
        assert_eq!(kept.answer(&request).status(), StatusCode::OK);
        let tag = kept
            .etag
            .to_str()
            .unwrap()
            .trim_start_matches("W/")
            .to_string();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", {tag}")).unwrap(),
        );
        assert_eq!(kept.answer(&request).status(), StatusCode::NOT_MODIFIED);
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(kept.answer(&request).status(), StatusCode::OK);
    }
}
