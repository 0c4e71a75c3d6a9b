//! MySQL and MariaDB through a mysql_async pool. Every operation waits a bounded time for a
//! connection, so an outage turns into quick `Unavailable` errors, and the pool reconnects by
//! itself when the server is back.

use std::{sync::Arc, time::Duration};

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, TxOpts, prelude::Queryable};

use tokio::sync::OnceCell;

use super::{Comment, Post, StoreError};

/// How long a request waits for a database connection before answering 503.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long one operation may take in all.
const OPERATION_WAIT: Duration = Duration::from_secs(10);
/// ER_LOCK_DEADLOCK: also what Galera answers a transaction that failed certification.
const DEADLOCK: u16 = 1213;
/// Runs of a write transaction that failed that way, before the client is told to retry later.
const TRANSACTION_TRIES: u32 = 4;
/// Runs of the whole migration when a step conflicted with another node's (Galera applies DDL
/// in total order and may abort a statement that raced it): every step is idempotent, so a run
/// again finishes what is left. Pauses grow from 10 ms to 2.56 s, under 8 s in all.
const MIGRATION_TRIES: u32 = 10;

/// Migrations by version, each a list of steps. MySQL commits every DDL statement on its own,
/// so a version cannot be applied in one transaction: instead every step is idempotent (`IF NOT
/// EXISTS`) and recorded in `schema_steps` once done. A crash between two steps resumes at the
/// first step not recorded, and instances starting side by side may run the same step at once
/// without harm, so no lock is taken (a lock held across steps outlives a cancelled start on its
/// pooled connection, and Galera does not replicate `GET_LOCK`).
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS posts (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        title VARCHAR(200) NOT NULL,
        body MEDIUMTEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        version BIGINT NOT NULL DEFAULT 1
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS comments (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        post_id BIGINT NOT NULL,
        author VARCHAR(80) NOT NULL,
        body MEDIUMTEXT NOT NULL,
        created_at BIGINT NOT NULL,
        INDEX comments_by_post (post_id, id),
        FOREIGN KEY (post_id) REFERENCES posts(id) ON DELETE CASCADE
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    ],
    &[
        "CREATE TABLE IF NOT EXISTS shared_state (
        name VARCHAR(255) NOT NULL PRIMARY KEY,
        value MEDIUMBLOB NOT NULL,
        updated_at BIGINT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        "CREATE TABLE IF NOT EXISTS leases (
        name VARCHAR(255) NOT NULL PRIMARY KEY,
        holder VARCHAR(255) NOT NULL,
        expires_at BIGINT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    ],
];

/// The highest version done (0 before the first migration).
const VERSION_FOUND: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// The schema version this binary brings a database to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A post's own columns (macros, so that statements are `concat!`ed constants rather than
/// strings formatted on every request).
macro_rules! post_fields {
    () => {
        "p.id, p.title, p.body, p.created_at, p.updated_at, p.version"
    };
}

/// A post's columns with its comment count last.
macro_rules! post_columns {
    () => {
        concat!(
            post_fields!(),
            ", (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id)"
        )
    };
}

/// A page of a post's comments in the columns of `post_with_comments`: the post's id, the id
/// to start after and the page's length as parameters.
macro_rules! comments_after {
    () => {
        "(SELECT 1, id, author, body, created_at, 0, 0, 0 FROM comments \
         WHERE post_id = ? AND id > ? ORDER BY id LIMIT ?)"
    };
}

type PostRow = (i64, String, String, i64, i64, i64, i64);
type CommentRow = (i64, i64, String, String, i64);
/// `post_with_comments`'s rows: a part (0 the post, 1 a comment), then a post's columns, or a
/// comment's id, author, body and creation time padded with zeros.
type PostOrCommentRow = (i64, i64, String, String, i64, i64, i64, i64);

fn post((id, title, body, created_at, updated_at, version, comment_count): PostRow) -> Post {
    Post {
        id,
        title,
        body,
        created_at,
        updated_at,
        version,
        comment_count,
    }
}

fn comment((id, post_id, author, body, created_at): CommentRow) -> Comment {
    Comment {
        id,
        post_id,
        author,
        body,
        created_at,
    }
}

impl From<mysql_async::Error> for StoreError {
    fn from(error: mysql_async::Error) -> Self {
        match &error {
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {
                StoreError::Unavailable(error.to_string())
            }
            // Too many connections, shutdown in progress, server gone, connection lost; a
            // Galera node that is not (yet) part of the primary component (1047).
            mysql_async::Error::Server(e) if matches!(e.code, 1040 | 1047 | 1053 | 2006 | 2013) => {
                StoreError::Unavailable(error.to_string())
            }
            // A deadlock, or on Galera a write set that lost certification to another node's:
            // nothing was committed, and the transaction may run again.
            mysql_async::Error::Server(e) if e.code == DEADLOCK => {
                StoreError::Retry(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mysql {
    pool: Pool,
    /// Set once the schema is known to be current; until then every operation tries to get
    /// there first, so a server that was down at start is migrated when it comes back.
    migrated: Arc<OnceCell<()>>,
}

impl Mysql {
    /// A pool for `url`; connections are made on demand, so a server that is down now is not an
    /// error until it is used.
    pub fn open(url: &str) -> Result<Mysql, StoreError> {
        let opts = Opts::from_url(url).map_err(|e| StoreError::Url(format!("{url}: {e}")))?;
        let constraints = PoolConstraints::new(0, 32).unwrap_or_default();
        let opts = OptsBuilder::from_opts(opts)
            // Stay on the address given: no switch to a local socket behind the operator's back.
            .prefer_socket(false)
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // The app sets no session state (no variables, no temporary tables, no
                    // session locks; transactions are committed or rolled back by the driver
                    // before a connection goes back). A reset would only cost a round trip and
                    // throw away the connection's prepared statements: with it, every request
                    // prepared its queries again.
                    .with_reset_connection(false)
                    .with_inactive_connection_ttl(Duration::from_secs(60)),
            );
        Ok(Mysql {
            pool: Pool::new(opts),
            migrated: Arc::new(OnceCell::new()),
        })
    }

    /// Brings the schema up to date once; called before every operation.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| self.migrate_now())
            .await
            .map(|_| ())
    }

    /// A connection for an operation, once the schema is current.
    async fn conn(&self) -> Result<mysql_async::Conn, StoreError> {
        self.migrate().await?;
        self.connect().await
    }

    /// A connection from the pool, waiting at most `CONNECT_WAIT`.
    async fn connect(&self) -> Result<mysql_async::Conn, StoreError> {
        match tokio::time::timeout(CONNECT_WAIT, self.pool.get_conn()).await {
            Ok(connection) => Ok(connection?),
            Err(_) => Err(StoreError::Unavailable(
                "no database connection within 2 s".to_string(),
            )),
        }
    }

    /// Bounds a whole operation in time.
    async fn bounded<T>(
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(OPERATION_WAIT, work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("database timed out".to_string())))
    }

    /// The schema version of the database, read without changing anything: 0 before the first
    /// migration.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let found = Self::bounded(async {
            let mut conn = self.connect().await?;
            let found: Result<Option<i64>, _> = conn.query_first(VERSION_FOUND).await;
            match found {
                Ok(found) => Ok(found.unwrap_or(0)),
                // No such table: nothing migrated yet.
                Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(0),
                Err(e) => Err(e.into()),
            }
        })
        .await;
        let _ = self.pool.clone().disconnect().await;
        found
    }

    /// Runs a write transaction, again when it lost a deadlock or Galera's certification
    /// (nothing was committed then), at most `TRANSACTION_TRIES` times.
    async fn retried<T, F, Fut>(work: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut last = String::new();
        for attempt in 0..TRANSACTION_TRIES {
            match Self::bounded(work()).await {
                Err(StoreError::Retry(reason)) => {
                    last = reason;
                    // A short, growing pause: the other transaction is committing now.
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                other => return other,
            }
        }
        Err(StoreError::Unavailable(format!(
            "a transaction kept conflicting with others ({TRANSACTION_TRIES} tries): {last}"
        )))
    }

    async fn migrate_now(&self) -> Result<(), StoreError> {
        let mut last = String::new();
        for attempt in 0..MIGRATION_TRIES {
            match self.migrate_once().await {
                Err(StoreError::Retry(reason)) => {
                    last = reason;
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(8))).await;
                }
                other => return other,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the schema migration kept conflicting with another node's ({MIGRATION_TRIES} tries): {last}"
        )))
    }

    async fn migrate_once(&self) -> Result<(), StoreError> {
        Self::bounded(async {
            let mut conn = self.connect().await?;
            // Versions done, one row each, keyed (Galera replicates only tables with a primary
            // key); what an older binary recorded in `schema_version` is carried over.
            conn.query_drop(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT NOT NULL PRIMARY KEY) ENGINE=InnoDB",
            )
            .await?;
            let old: Option<i64> = conn
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = 'schema_version'",
                )
                .await?;
            if old.unwrap_or(0) > 0 {
                conn.query_drop(
                    "INSERT IGNORE INTO schema_migrations (version) \
                     SELECT DISTINCT version FROM schema_version",
                )
                .await?;
            }
            conn.query_drop(
                "CREATE TABLE IF NOT EXISTS schema_steps (version BIGINT NOT NULL, \
                 step INT NOT NULL, PRIMARY KEY (version, step)) ENGINE=InnoDB",
            )
            .await?;
            let found: Option<i64> = conn.query_first(VERSION_FOUND).await?;
            let found = found.unwrap_or(0);
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            // Every step not recorded runs, whatever version is recorded: the steps are
            // idempotent, so a step done but not recorded (a crash, an older binary that kept
            // only versions) is done again harmlessly.
            for (version, steps) in (1i64..).zip(MIGRATIONS) {
                let done: Vec<i64> = conn
                    .exec(
                        "SELECT step FROM schema_steps WHERE version = ?",
                        (version,),
                    )
                    .await?;
                for (step, statement) in (0i64..).zip(*steps) {
                    if done.contains(&step) {
                        continue;
                    }
                    conn.query_drop(*statement).await?;
                    conn.exec_drop(
                        "INSERT IGNORE INTO schema_steps (version, step) VALUES (?, ?)",
                        (version, step),
                    )
                    .await?;
                }
                conn.exec_drop(
                    "INSERT IGNORE INTO schema_migrations (version) VALUES (?)",
                    (version,),
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    pub fn pool(&self) -> super::PoolState {
        let metrics = self.pool.metrics();
        super::PoolState {
            in_use: metrics
                .connections_in_use
                .load(std::sync::atomic::Ordering::Relaxed),
            idle: metrics
                .connections_in_pool
                .load(std::sync::atomic::Ordering::Relaxed),
            waiting: metrics
                .active_wait_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            threads: 0,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Self::bounded(async {
            let mut conn = self.conn().await?;
            // A query, not a protocol ping: a Galera node out of the primary component answers
            // pings but refuses queries.
            conn.query_drop("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    pub async fn put_shared(&self, name: &str, value: &[u8], now: i64) -> Result<(), StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT INTO shared_state (name, value, updated_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)",
                (name, value, now),
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_shared(&self, name: &str) -> Result<(), StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            conn.exec_drop("DELETE FROM shared_state WHERE name = ?", (name,))
                .await?;
            Ok(())
        })
        .await
    }

    pub async fn shared(&self, prefix: &str) -> Result<Vec<super::Shared>, StoreError> {
        Self::bounded(async {
            let mut conn = self.conn().await?;
            let rows: Vec<(String, Vec<u8>, i64)> = conn
                .exec(
                    "SELECT name, value, updated_at FROM shared_state \
                     WHERE LEFT(name, CHAR_LENGTH(?)) = ? ORDER BY name",
                    (prefix, prefix),
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|(name, value, updated_at)| super::Shared {
                    name,
                    value,
                    updated_at,
                })
                .collect())
        })
        .await
    }

    /// One statement, so that two nodes asking at once cannot both get it (on Galera, the
    /// second to commit fails certification and asks again, then sees the first's holder).
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            // MySQL assigns in order: `holder` first, from the old row; then `expires_at` moves
            // exactly when the holder is (now) the asker.
            conn.exec_drop(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                 holder = IF(holder = VALUES(holder) OR expires_at < ?, VALUES(holder), holder), \
                 expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)",
                (name, holder, until, now),
            )
            .await?;
            let by: Option<String> = conn
                .exec_first("SELECT holder FROM leases WHERE name = ?", (name,))
                .await?;
            Ok(by.as_deref() == Some(holder))
        })
        .await
    }

    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "DELETE FROM leases WHERE name = ? AND holder = ?",
                (name, holder),
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn list_posts(&self, limit: u32, before: i64) -> Result<Vec<Post>, StoreError> {
        Self::bounded(async {
            let mut conn = self.conn().await?;
            let rows: Vec<PostRow> = conn
                .exec(
                    concat!(
                        "SELECT ",
                        post_columns!(),
                        " FROM posts p WHERE p.id < ? ORDER BY p.id DESC LIMIT ?"
                    ),
                    (before, limit),
                )
                .await?;
            Ok(rows.into_iter().map(post).collect())
        })
        .await
    }

    pub async fn get_post(&self, id: i64) -> Result<Post, StoreError> {
        Self::bounded(async {
            let mut conn = self.conn().await?;
            select_post(&mut conn, id).await
        })
        .await
    }

    /// A post and up to `limit` of its comments with an id above `after`, oldest first, in
    /// one statement (one round trip): the post's row first (`part` 0), then the comments'
    /// (`part` 1) in the same columns.
    ///
    /// A page from the first comment (`after` 0) leaves the post's comment count out of the
    /// statement: when fewer than `limit` rows come back they are all the comments, so their
    /// number is the count, and the correlated `COUNT(*)` was a sixth of the server's work for
    /// the statement (`benches/db-statements.sh`). Only a first page that is not the whole
    /// thread asks for the count, in a second statement.
    pub async fn post_with_comments(
        &self,
        id: i64,
        limit: u32,
        after: i64,
    ) -> Result<(Post, Vec<Comment>), StoreError> {
        const COUNTED: &str = concat!(
            "(SELECT 0 AS part, ",
            post_columns!(),
            " FROM posts p WHERE p.id = ?) UNION ALL ",
            comments_after!()
        );
        const FIRST: &str = concat!(
            "(SELECT 0 AS part, ",
            post_fields!(),
            ", 0 FROM posts p WHERE p.id = ?) UNION ALL ",
            comments_after!()
        );
        let first = after <= 0;
        Self::bounded(async {
            let mut conn = self.conn().await?;
            let rows: Vec<PostOrCommentRow> = conn
                .exec(if first { FIRST } else { COUNTED }, (id, id, after, limit))
                .await?;
            let mut found = None;
            let mut comments = Vec::with_capacity(rows.len());
            for (part, row_id, text, body, created_at, updated_at, version, count) in rows {
                if part == 0 {
                    found = Some(post((
                        row_id, text, body, created_at, updated_at, version, count,
                    )));
                } else {
                    comments.push(comment((row_id, id, text, body, created_at)));
                }
            }
            let mut found = found.ok_or(StoreError::NotFound)?;
            if first {
                found.comment_count = if comments.len() < limit as usize {
                    comments.len() as i64
                } else {
                    let count: Option<i64> = conn
                        .exec_first("SELECT COUNT(*) FROM comments WHERE post_id = ?", (id,))
                        .await?;
                    count.unwrap_or_default()
                };
            }
            // The server may return a union's rows in any order.
            comments.sort_unstable_by_key(|comment| comment.id);
            Ok((found, comments))
        })
        .await
    }

    pub async fn create_post(&self, title: &str, body: &str, now: i64) -> Result<Post, StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            tx.exec_drop(
                "INSERT INTO posts (title, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, body, now, now),
            )
            .await?;
            let id = tx.last_insert_id().unwrap_or_default() as i64;
            let post = select_post(&mut tx, id).await?;
            tx.commit().await?;
            Ok(post)
        })
        .await
    }

    pub async fn update_post(
        &self,
        id: i64,
        title: &str,
        body: &str,
        expected_version: Option<i64>,
        now: i64,
    ) -> Result<Post, StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let version: Option<i64> = tx
                .exec_first("SELECT version FROM posts WHERE id = ? FOR UPDATE", (id,))
                .await?;
            let version = version.ok_or(StoreError::NotFound)?;
            if expected_version.is_some_and(|v| v != version) {
                return Err(StoreError::Conflict);
            }
            tx.exec_drop(
                "UPDATE posts SET title = ?, body = ?, updated_at = ?, version = version + 1 \
                 WHERE id = ?",
                (title, body, now, id),
            )
            .await?;
            let post = select_post(&mut tx, id).await?;
            tx.commit().await?;
            Ok(post)
        })
        .await
    }

    pub async fn delete_post(&self, id: i64) -> Result<(), StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            tx.exec_drop("DELETE FROM comments WHERE post_id = ?", (id,))
                .await?;
            tx.exec_drop("DELETE FROM posts WHERE id = ?", (id,))
                .await?;
            if tx.affected_rows() == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub async fn add_comment(
        &self,
        post_id: i64,
        author: &str,
        body: &str,
        now: i64,
    ) -> Result<Comment, StoreError> {
        Self::retried(|| async move {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let exists: Option<i64> = tx
                .exec_first("SELECT id FROM posts WHERE id = ? FOR UPDATE", (post_id,))
                .await?;
            exists.ok_or(StoreError::NotFound)?;
            tx.exec_drop(
                "INSERT INTO comments (post_id, author, body, created_at) VALUES (?, ?, ?, ?)",
                (post_id, author, body, now),
            )
            .await?;
            let id = tx.last_insert_id().unwrap_or_default() as i64;
            let row: Option<CommentRow> = tx
                .exec_first(
                    "SELECT id, post_id, author, body, created_at FROM comments WHERE id = ?",
                    (id,),
                )
                .await?;
            let comment = row.map(comment).ok_or(StoreError::NotFound)?;
            tx.commit().await?;
            Ok(comment)
        })
        .await
    }
}

async fn select_post(conn: &mut impl Queryable, id: i64) -> Result<Post, StoreError> {
    let row: Option<PostRow> = conn
        .exec_first(
            concat!("SELECT ", post_columns!(), " FROM posts p WHERE p.id = ?"),
            (id,),
        )
        .await?;
    row.map(post).ok_or(StoreError::NotFound)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_conflicting_transaction_runs_again_a_bounded_number_of_times() {
        let runs = AtomicU32::new(0);
        let twice_then_done = Mysql::retried(|| async {
            if runs.fetch_add(1, Ordering::Relaxed) < 2 {
                Err(StoreError::Retry("deadlock".to_string()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(twice_then_done.unwrap_or_default(), 7);
        assert_eq!(runs.load(Ordering::Relaxed), 3);

        runs.store(0, Ordering::Relaxed);
        let always: Result<(), StoreError> = Mysql::retried(|| async {
            runs.fetch_add(1, Ordering::Relaxed);
            Err(StoreError::Retry("deadlock".to_string()))
        })
        .await;
        assert!(
            matches!(always, Err(StoreError::Unavailable(_))),
            "{always:?}"
        );
        assert_eq!(runs.load(Ordering::Relaxed), TRANSACTION_TRIES);
        // Other errors are not run again.
        runs.store(0, Ordering::Relaxed);
        let _: Result<(), StoreError> = Mysql::retried(|| async {
            runs.fetch_add(1, Ordering::Relaxed);
            Err(StoreError::NotFound)
        })
        .await;
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn every_migration_step_is_idempotent() {
        for steps in MIGRATIONS {
            for step in *steps {
                assert!(step.contains("IF NOT EXISTS"), "{step}");
            }
        }
    }
}
