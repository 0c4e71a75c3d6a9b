//! Posts and comments, stored in SQLite (the embedded default) or MySQL behind one interface.
//!
//! Both backends keep the same schema, applied by versioned migrations at start; a database
//! whose schema is newer than this binary knows is refused rather than changed.

mod mysql;
mod sqlite;

use serde::Serialize;
use tracing::warn;

use self::{mysql::Mysql, sqlite::Sqlite};

/// A post as stored, with its number of comments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Post {
    /// Its number, given by the database.
    pub id: i64,
    /// The title, as the author wrote it.
    pub title: String,
    /// The body, as the author wrote it (rendered escaped).
    pub body: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    /// Microseconds since the Unix epoch, of the last change.
    pub updated_at: i64,
    /// Incremented on every change; the ETag is derived from it.
    pub version: i64,
    /// How many comments it has.
    pub comment_count: i64,
}

/// A comment on a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Its number, given by the database.
    pub id: i64,
    /// The post it is on.
    pub post_id: i64,
    /// Who wrote it, as they gave their name.
    pub author: String,
    /// What they wrote.
    pub body: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
}

/// One page of a post's comments, oldest first, and the cursor for the next (newer) page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentPage {
    /// The comments, oldest first.
    pub comments: Vec<Comment>,
    /// The cursor for the next page, if there is one.
    pub next: Option<i64>,
}

/// One page of posts, newest first, and the cursor for the next (older) page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The posts, newest first.
    pub posts: Vec<Post>,
    /// The cursor for the next page, if there is one.
    pub next: Option<i64>,
}

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// No such post.
    #[error("not found")]
    NotFound,
    /// A conditional update whose expected version is no longer current.
    #[error("the post has changed")]
    Conflict,
    /// The database was migrated by a newer binary.
    #[error("the database schema is version {found}, newer than the {known} this binary knows")]
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// The database URL names no backend this binary has.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH or mysql://user:password@host:port/db"
    )]
    Url(String),
    /// Anything else the database said.
    #[error("database error: {0}")]
    Database(String),
    /// A transaction that lost a deadlock or Galera's certification: nothing was committed;
    /// it is run again (a bounded number of times) before the client sees `Unavailable`.
    #[error("transaction conflict: {0}")]
    Retry(String),
}

/// A connection pool's state: connections in use and idle, requests waiting for one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolState {
    /// Connections busy with a call.
    pub in_use: usize,
    /// Connections open and free.
    pub idle: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
    /// Threads of its own the backend reads on: SQLite's reader threads, a fixed number (none
    /// for MySQL, whose connections are async).
    pub threads: usize,
}

/// The storage interface, over one of the two backends.
#[derive(Debug, Clone)]
pub struct Store(Backend);

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(Sqlite),
    Mysql(Mysql),
}

/// A value the nodes of a cluster share through the database (certificates, challenges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Its name (`acme/...`).
    pub name: String,
    /// Its bytes.
    pub value: Vec<u8>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Runs an operation on the backend in use, timed and counted under its name.
macro_rules! dispatch {
    ($self:ident, $store:ident => $store2:ident . $op:ident ( $($arg:expr),* )) => {
        crate::metrics::timed(stringify!($op), async {
            match &$self.0 {
                Backend::Sqlite($store) => $store2.$op($($arg),*).await,
                Backend::Mysql($store) => $store2.$op($($arg),*).await,
            }
        })
        .await
    };
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let store = Store(Backend::Sqlite(Sqlite::open(path).await?));
            store.migrate().await?;
            Ok(store)
        } else if url.starts_with("mysql://") {
            let store = Store(Backend::Mysql(Mysql::open(url)?));
            match store.migrate().await {
                // A server that is down now gets migrated when it comes back; until then
                // requests that need it are answered 503.
                Err(StoreError::Unavailable(detail)) => {
                    warn!(%detail, "database unavailable at start; serving 503 until it returns");
                    Ok(store)
                }
                other => other.map(|()| store),
            }
        } else {
            Err(StoreError::Url(url.to_string()))
        }
    }

    /// Checks the database `url` names and changes nothing (`serve --check`): its schema is one
    /// this binary can bring up to date. The version found: 0 for a database not created or
    /// migrated yet.
    pub async fn check(url: &str) -> Result<i64, StoreError> {
        let found = if let Some(path) = url.strip_prefix("sqlite://") {
            Sqlite::schema_version(path).await?
        } else if url.starts_with("mysql://") {
            Mysql::open(url)?.schema_version().await?
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(found)
    }

    /// The connection pool now.
    pub fn pool(&self) -> PoolState {
        match &self.0 {
            Backend::Sqlite(s) => s.pool(),
            Backend::Mysql(s) => s.pool(),
        }
    }

    /// The backend's name, `sqlite` or `mysql`.
    pub fn backend(&self) -> &'static str {
        match &self.0 {
            Backend::Sqlite(_) => "sqlite",
            Backend::Mysql(_) => "mysql",
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate())
    }

    /// Sets the shared value `name` (every node of a cluster reads the same database).
    pub async fn put_shared(&self, name: &str, value: &[u8], now: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_shared(name, value, now))
    }

    /// Removes the shared value `name`.
    pub async fn delete_shared(&self, name: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_shared(name))
    }

    /// Every shared value whose name starts with `prefix`, by name.
    pub async fn shared(&self, prefix: &str) -> Result<Vec<Shared>, StoreError> {
        dispatch!(self, s => s.shared(prefix))
    }

    /// Takes the lease `name` for `holder` until `until` (Unix seconds) if it is free, expired
    /// (before `now`) or already `holder`'s; whether `holder` has it now.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.take_lease(name, holder, now, until))
    }

    /// Gives the lease `name` back, if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.release_lease(name, holder))
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }

    /// Up to `limit` posts with an id below `before` (all when `None`), newest first.
    pub async fn list_posts(&self, limit: u32, before: Option<i64>) -> Result<Page, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        let posts = dispatch!(self, s => s.list_posts(limit + 1, before))?;
        let (posts, next) = page(posts, limit, |post| post.id);
        Ok(Page { posts, next })
    }

    /// The post `id`, with its number of comments.
    pub async fn get_post(&self, id: i64) -> Result<Post, StoreError> {
        dispatch!(self, s => s.get_post(id))
    }

    /// A post and up to `limit` of its comments with an id above `after` (from the first when
    /// `None`), oldest first: one round trip to the database.
    pub async fn post_with_comments(
        &self,
        id: i64,
        limit: u32,
        after: Option<i64>,
    ) -> Result<(Post, CommentPage), StoreError> {
        let after = after.unwrap_or(0);
        let (post, comments) = dispatch!(self, s => s.post_with_comments(id, limit + 1, after))?;
        let (comments, next) = page(comments, limit, |comment| comment.id);
        Ok((post, CommentPage { comments, next }))
    }

    /// Stores a new post, written now.
    pub async fn create_post(&self, title: &str, body: &str) -> Result<Post, StoreError> {
        dispatch!(self, s => s.create_post(title, body, now()))
    }

    /// Replaces a post's title and body; with `expected_version`, only if the post is still at
    /// that version (else `Conflict`).
    pub async fn update_post(
        &self,
        id: i64,
        title: &str,
        body: &str,
        expected_version: Option<i64>,
    ) -> Result<Post, StoreError> {
        dispatch!(self, s => s.update_post(id, title, body, expected_version, now()))
    }

    /// Deletes a post and its comments in one transaction.
    pub async fn delete_post(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_post(id))
    }

    /// Adds a comment to a post (`NotFound` if the post is gone), in one transaction.
    pub async fn add_comment(
        &self,
        post_id: i64,
        author: &str,
        body: &str,
    ) -> Result<Comment, StoreError> {
        dispatch!(self, s => s.add_comment(post_id, author, body, now()))
    }
}

/// The first `limit` of `items` (fetched one more than a page), and the cursor to the rest:
/// the id of the last one kept, when there is more.
fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        let next = items.last().map(id);
        (items, next)
    } else {
        (items, None)
    }
}

/// Microseconds since the Unix epoch.
fn now() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}

/// The schema version this binary knows; each backend's follows from its migration list, and
/// both describe the same schema.
pub const SCHEMA_VERSION: i64 = sqlite::SCHEMA_VERSION;
const _: () = assert!(sqlite::SCHEMA_VERSION == mysql::SCHEMA_VERSION);
