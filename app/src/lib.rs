//! foobar.com's app: a small publishing site, posts and their comments, with pages for people
//! and a JSON API for programs.
//!
//! ```text
//! Request<Body> ──▶ router ──▶ pages (askama) ──┐
//!                          └─▶ api (JSON) ───────┴─▶ Store ──▶ SQLite (blocking thread)
//!                                                         └──▶ MySQL (mysql_async pool)
//! ```
//!
//! The app knows nothing of sockets, TLS or ports: the binary mounts its router in front of the
//! static site, and the edge serves both.

#![warn(missing_docs)]

mod api;
mod cache;
mod limit;
pub mod metrics;
mod pages;
pub mod store;
mod token;

use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{MethodRouter, get},
};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::{cache::Cache, limit::CommentLimit};
pub use crate::{
    limit::ClientAddress,
    store::{Store, StoreError},
};

/// The `[app]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH` or `mysql://user:password@host:port/db`; default: `foobar.db` in the
    /// state folder.
    pub database: Option<String>,
    /// Bearer token for API writes; default: generated once into the state folder.
    pub api_token: Option<String>,
    /// Comments one client address may post per minute, after `comment_burst` at once; 0 for
    /// no limit. Beyond it: 429 with `Retry-After`.
    pub comments_per_minute: u32,
    /// Comments one address may post at once before the per-minute rate applies.
    pub comment_burst: u32,
    /// Milliseconds a rendered page or JSON response is kept for the next reads; this node's
    /// own writes drop what they change at once, so this bounds only how late writes made
    /// through other nodes (or other programs) on the same database are seen here. 0: off.
    pub cache_ms: u64,
    /// Bytes of rendered responses kept at most.
    pub cache_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: None,
            api_token: None,
            comments_per_minute: 6,
            comment_burst: 10,
            cache_ms: 1000,
            cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Errors that stop the app from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API token file could not be read or written.
    #[error("API token file {}: {source}", path.display())]
    Token {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The posts' database.
    pub store: Store,
    token: Arc<str>,
    comments: Arc<CommentLimit>,
    /// Rendered responses of reads, dropped by writes.
    cache: Arc<Cache>,
    /// What else `/readyz` asks before it says "send me traffic" (the server's own state: not
    /// draining, zones loaded): what it reports (e.g. a zone whose file failed to load, served
    /// from its last good version), or the reason it is not ready.
    ready: Arc<dyn Fn() -> Readiness + Send + Sync>,
}

/// What the server says of itself to `/readyz`, beside the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Send traffic; with what is served in a degraded way (a zone from its last good copy).
    Ready(Vec<String>),
    /// Do not send traffic, for this reason (draining, a zone not loaded).
    NotReady(String),
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The app on `store`, with `token` for API writes and the default comment limit.
    pub fn new(store: Store, token: &str) -> Self {
        let Config {
            comments_per_minute,
            comment_burst,
            cache_ms,
            cache_bytes,
            ..
        } = Config::default();
        AppState {
            store,
            token: token.into(),
            comments: Arc::new(CommentLimit::new(comments_per_minute, comment_burst)),
            cache: Arc::new(Cache::new(Duration::from_millis(cache_ms), cache_bytes)),
            ready: Arc::new(|| Readiness::Ready(Vec::new())),
        }
    }

    /// `/readyz` also asks `ready`, and answers 503 with its reason when it says no, or lists
    /// what it reports when it says yes.
    pub fn with_readiness(mut self, ready: impl Fn() -> Readiness + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(ready);
        self
    }

    /// Comments limited to `per_minute` per client address after `burst` (0: no limit).
    pub fn with_comment_limit(mut self, per_minute: u32, burst: u32) -> Self {
        self.comments = Arc::new(CommentLimit::new(per_minute, burst));
        self
    }

    /// Rendered responses kept `ttl` at most, `max_bytes` in all (either 0: none).
    pub fn with_cache(mut self, ttl: Duration, max_bytes: usize) -> Self {
        self.cache = Arc::new(Cache::new(ttl, max_bytes));
        self
    }
}

/// Largest request body the API reads (413 above it); fields have their own limits.
const MAX_REQUEST: usize = 256 * 1024;

/// Opens the database (migrating it) and settles the API token.
pub async fn load(config: &Config, state_dir: &Path) -> Result<AppState, Error> {
    let Config {
        api_token,
        comments_per_minute,
        comment_burst,
        cache_ms,
        cache_bytes,
        ..
    } = config;
    let url = database_url(config, state_dir);
    let store = Store::open(&url).await?;
    info!(backend = store.backend(), "database ready");
    metrics::serving(&store);
    let token = match api_token {
        Some(token) => token.clone(),
        None => {
            let path = state_dir.join("api-token");
            let token = token::load_or_create(&path).map_err(|source| Error::Token {
                path: path.clone(),
                source,
            })?;
            info!(file = %path.display(), "API token for writes (Authorization: Bearer ...)");
            token
        }
    };
    Ok(AppState::new(store, &token)
        .with_comment_limit(*comments_per_minute, *comment_burst)
        .with_cache(Duration::from_millis(*cache_ms), *cache_bytes))
}

/// Checks what `load` would open, changing nothing (`serve --check`): the database's schema
/// and the API token file. A MySQL server that does not answer is only a warning, as at start.
pub async fn check(config: &Config, state_dir: &Path) -> Result<(), Error> {
    let url = database_url(config, state_dir);
    match Store::check(&url).await {
        Ok(version) => info!(schema_version = version, "database checked"),
        Err(StoreError::Unavailable(detail)) => {
            tracing::warn!(%detail, "database unavailable; serving would answer 503 until it returns");
        }
        Err(e) => return Err(e.into()),
    }
    if config.api_token.is_none() {
        let path = state_dir.join("api-token");
        if path.exists() {
            std::fs::read_to_string(&path).map_err(|source| Error::Token { path, source })?;
        }
    }
    Ok(())
}

fn database_url(config: &Config, state_dir: &Path) -> String {
    config
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("foobar.db").display()))
}

/// Where the app's routes are: each path [`router`] has a route for is one of these or below
/// one (whole segments), so that a caller can send it only those requests.
pub const PATHS: [&str; 4] = ["/healthz", "/readyz", "/posts", "/api/posts"];

/// The app's routes. Paths it does not know fall through to whatever the caller adds.
pub fn router(state: AppState) -> Router {
    let routes: [(&str, MethodRouter<AppState>); 7] = [
        ("/healthz", get(healthz)),
        ("/readyz", get(readyz)),
        ("/posts", get(pages::list)),
        ("/posts/{id}", get(pages::show)),
        ("/api/posts", get(api::list).post(api::create)),
        (
            "/api/posts/{id}",
            get(api::show).put(api::update).delete(api::delete),
        ),
        (
            "/api/posts/{id}/comments",
            get(api::comments).post(api::comment),
        ),
    ];
    let mut router = Router::new();
    for (path, methods) in routes {
        assert!(
            PATHS.iter().any(|under| path == *under
                || path
                    .strip_prefix(under)
                    .is_some_and(|rest| rest.starts_with('/'))),
            "the app's route {path} is outside its PATHS"
        );
        router = router.route(path, methods);
    }
    router
        .route_layer(axum::middleware::from_fn(metrics::count))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "alive" }))
}

/// "Send me traffic": the server is not stopping, its zones are served, and the database
/// answers. Health checks of the other nodes take a node out of DNS on a 503.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let notes = match (state.ready)() {
        Readiness::Ready(notes) => notes,
        Readiness::NotReady(reason) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": reason })),
            );
        }
    };
    match state.store.ping().await {
        Ok(()) if notes.is_empty() => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "degraded": notes })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "database unavailable" })),
        ),
    }
}

/// RFC 3339 text of a time in microseconds since the Unix epoch.
pub fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
