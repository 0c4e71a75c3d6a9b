//! SQLite in WAL mode: one connection writes, a small pool of read-only connections reads, so
//! reads run side by side with each other and with the write (WAL readers see the last commit
//! and never wait on the writer).
//!
//! No call runs on the async runtime's threads, so it never waits on the disk: each read-only
//! connection has a thread of its own (`sqlite-reader`), fed by one channel, and the write runs
//! on a blocking thread. Callers wait their turn in async code (a semaphore for the readers, an
//! async mutex for the writer), so a burst of requests queues as cheap futures, and the threads
//! are a fixed number whatever the load. The pool is written here because the async pools made
//! for rusqlite (deadpool-sqlite) pin older rusqlite versions, and two cannot link in one
//! binary.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::Semaphore;

use super::{Comment, Post, StoreError};

/// Migrations by version; each runs in one transaction with its version bump (SQLite's DDL is
/// transactional, so a crash leaves a version applied whole or not at all).
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE comments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
        author TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX comments_by_post ON comments(post_id, id);
",
    "
    CREATE TABLE shared_state (
        name TEXT NOT NULL PRIMARY KEY,
        value BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE leases (
        name TEXT NOT NULL PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
",
];

/// The schema version this binary brings a database to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for a lock before the database counts as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

const POST_COLUMNS: &str = "p.id, p.title, p.body, p.created_at, p.updated_at, p.version, \
     (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id)";

#[derive(Debug, Clone)]
pub struct Sqlite {
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// `None` for `:memory:`, whose database only its own connection sees: reads then go
    /// through the writer.
    readers: Option<Arc<Readers>>,
}

/// Read-only connections, each on a thread of its own that opens it on its first read and
/// keeps it; a read goes to whichever thread is free.
#[derive(Debug)]
struct Readers {
    jobs: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    size: usize,
    /// Connections open now.
    opened: Arc<AtomicUsize>,
    /// Reads waiting for a connection now.
    waiting: AtomicUsize,
}

/// A read handed to a reader thread: its connection, or why it could not be opened.
type Job = Box<dyn FnOnce(Result<&Connection, StoreError>) + Send>;

impl Readers {
    /// How many: reads are mostly CPU work on cached pages, so about one per core, with a few
    /// more to overlap the reads that do wait on the disk.
    fn count() -> usize {
        std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(2, 8)
            * 2
    }

    /// Starts the reader threads; they end when the last handle to the store goes.
    fn start(path: String) -> Result<Readers, StoreError> {
        let size = Readers::count();
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let opened = Arc::new(AtomicUsize::new(0));
        for _ in 0..size {
            let (path, queue, opened) = (path.clone(), queue.clone(), opened.clone());
            std::thread::Builder::new()
                .name("sqlite-reader".to_string())
                .spawn(move || reader(&path, &queue, &opened))
                .map_err(|e| StoreError::Unavailable(format!("a reader thread: {e}")))?;
        }
        Ok(Readers {
            jobs,
            permits: Arc::new(Semaphore::new(size)),
            size,
            opened,
            waiting: AtomicUsize::new(0),
        })
    }
}

/// One reader thread: takes reads from the shared queue one at a time, on its own connection.
fn reader(path: &str, queue: &Mutex<mpsc::Receiver<Job>>, opened: &AtomicUsize) {
    let mut connection: Option<Connection> = None;
    loop {
        // The lock is held only by the thread waiting for the next read; the others are busy
        // or wait for the lock.
        let job = queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
        let Ok(job) = job else { return };
        if connection.is_none() {
            match open_reader(path) {
                Ok(fresh) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    connection = Some(fresh);
                }
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        if let Some(open) = &connection {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(open))));
            if ran.is_err() {
                // The read panicked: its caller hears of it as a closed channel; this thread
                // stays, with a fresh connection for the next read.
                connection = None;
                opened.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn open_reader(path: &str) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DiskFull,
            ) => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Database(error.to_string()),
        }
    }
}

fn post(row: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        id: row.get(0)?,
        title: row.get(1)?,
        body: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        version: row.get(5)?,
        comment_count: row.get(6)?,
    })
}

fn comment(row: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        post_id: row.get(1)?,
        author: row.get(2)?,
        body: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn select_post(connection: &Connection, id: i64) -> Result<Post, StoreError> {
    connection
        .query_row(
            &format!("SELECT {POST_COLUMNS} FROM posts p WHERE p.id = ?1"),
            params![id],
            post,
        )
        .optional()?
        .ok_or(StoreError::NotFound)
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`; `:memory:` for a private
    /// in-memory database.
    pub async fn open(path: &str) -> Result<Sqlite, StoreError> {
        let path = path.to_string();
        let in_memory = path == ":memory:";
        let writer = {
            let path = path.clone();
            blocking(move || -> Result<Connection, StoreError> {
                if !in_memory
                    && let Some(folder) = Path::new(&path).parent()
                    && !folder.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(folder).map_err(|e| {
                        StoreError::Unavailable(format!("{}: {e}", folder.display()))
                    })?;
                }
                let connection = Connection::open(&path)?;
                connection.busy_timeout(BUSY_TIMEOUT)?;
                // WAL for concurrent readers; FULL sync so an acknowledged write survives
                // power loss.
                connection.pragma_update(None, "journal_mode", "WAL")?;
                connection.pragma_update(None, "synchronous", "FULL")?;
                connection.pragma_update(None, "foreign_keys", "ON")?;
                Ok(connection)
            })
            .await?
        };
        let readers = if in_memory {
            None
        } else {
            Some(Arc::new(Readers::start(path)?))
        };
        Ok(Sqlite {
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers,
        })
    }

    /// The schema version of the database at `path`, read without changing anything: 0 when
    /// there is no such file (it would be created) or no schema yet.
    pub async fn schema_version(path: &str) -> Result<i64, StoreError> {
        if path == ":memory:" || !Path::new(path).exists() {
            return Ok(0);
        }
        let path = path.to_string();
        blocking(move || {
            let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let exists: bool = connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'schema_version')",
                [],
                |row| row.get(0),
            )?;
            if !exists {
                return Ok(0);
            }
            Ok(connection.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )?)
        })
        .await
    }

    /// Runs `work` on the writing connection, once it is free, in a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut connection = self.writer.clone().lock_owned().await;
        blocking(move || work(&mut connection)).await
    }

    /// Runs `work` on a read-only connection, once one is free, on its reader thread.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(readers) = self.readers.clone() else {
            return self.write(move |connection| work(connection)).await;
        };
        readers.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = readers.permits.clone().acquire_owned().await;
        readers.waiting.fetch_sub(1, Ordering::Relaxed);
        let permit = permit.map_err(|e| StoreError::Database(e.to_string()))?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let _ = answer.send(connection.and_then(work));
        });
        readers
            .jobs
            .send(job)
            .map_err(|_| StoreError::Database("the reader threads are gone".to_string()))?;
        let result = answered
            .await
            .map_err(|_| StoreError::Database("the read failed (panicked)".to_string()))?;
        // Released once the reader is done: the permits count the free threads.
        drop(permit);
        result
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.write(|connection| {
            connection.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            )?;
            let found: i64 = connection.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
                let tx = connection.transaction()?;
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    params![version],
                )?;
                tx.commit()?;
            }
            Ok(())
        })
        .await
    }

    /// The read-only pool (the single writer is not counted).
    pub fn pool(&self) -> super::PoolState {
        let Some(readers) = &self.readers else {
            return super::PoolState::default();
        };
        let in_use = readers.size - readers.permits.available_permits();
        super::PoolState {
            in_use,
            idle: readers
                .opened
                .load(Ordering::Relaxed)
                .saturating_sub(in_use),
            waiting: readers.waiting.load(Ordering::Relaxed),
            threads: readers.size,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    pub async fn put_shared(&self, name: &str, value: &[u8], now: i64) -> Result<(), StoreError> {
        let (name, value) = (name.to_string(), value.to_vec());
        self.write(move |connection| {
            connection.execute(
                "INSERT INTO shared_state (name, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![name, value, now],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn delete_shared(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |connection| {
            connection.execute("DELETE FROM shared_state WHERE name = ?1", params![name])?;
            Ok(())
        })
        .await
    }

    pub async fn shared(&self, prefix: &str) -> Result<Vec<super::Shared>, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT name, value, updated_at FROM shared_state \
                 WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
            )?;
            let rows = statement.query_map(params![prefix], |row| {
                Ok(super::Shared {
                    name: row.get(0)?,
                    value: row.get(1)?,
                    updated_at: row.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |connection| {
            let tx = connection.transaction()?;
            let current: Option<(String, i64)> = tx
                .query_row(
                    "SELECT holder, expires_at FROM leases WHERE name = ?1",
                    params![name],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let free = current.is_none_or(|(by, expires)| by == holder || expires < now);
            if free {
                tx.execute(
                    "INSERT OR REPLACE INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)",
                    params![name, holder, until],
                )?;
            }
            tx.commit()?;
            Ok(free)
        })
        .await
    }

    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list_posts(&self, limit: u32, before: i64) -> Result<Vec<Post>, StoreError> {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {POST_COLUMNS} FROM posts p WHERE p.id < ?1 ORDER BY p.id DESC LIMIT ?2"
            ))?;
            let posts = statement
                .query_map(params![before, limit], post)?
                .collect::<Result<_, _>>()?;
            Ok(posts)
        })
        .await
    }

    pub async fn get_post(&self, id: i64) -> Result<Post, StoreError> {
        self.read(move |connection| select_post(connection, id))
            .await
    }

    /// A post and up to `limit` of its comments with an id above `after`, oldest first, in
    /// one trip to a reader thread.
    pub async fn post_with_comments(
        &self,
        id: i64,
        limit: u32,
        after: i64,
    ) -> Result<(Post, Vec<Comment>), StoreError> {
        self.read(move |connection| {
            let post = select_post(connection, id)?;
            let mut statement = connection.prepare_cached(
                "SELECT id, post_id, author, body, created_at FROM comments \
                 WHERE post_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let comments = statement
                .query_map(params![id, after, limit], comment)?
                .collect::<Result<_, _>>()?;
            Ok((post, comments))
        })
        .await
    }

    pub async fn create_post(&self, title: &str, body: &str, now: i64) -> Result<Post, StoreError> {
        let (title, body) = (title.to_string(), body.to_string());
        self.write(move |connection| {
            let tx = connection.transaction()?;
            tx.execute(
                "INSERT INTO posts (title, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![title, body, now],
            )?;
            let post = select_post(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
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
        let (title, body) = (title.to_string(), body.to_string());
        self.write(move |connection| {
            let tx = connection.transaction()?;
            let current = select_post(&tx, id)?;
            if expected_version.is_some_and(|v| v != current.version) {
                return Err(StoreError::Conflict);
            }
            tx.execute(
                "UPDATE posts SET title = ?1, body = ?2, updated_at = ?3, version = version + 1 \
                 WHERE id = ?4",
                params![title, body, now, id],
            )?;
            let post = select_post(&tx, id)?;
            tx.commit()?;
            Ok(post)
        })
        .await
    }

    pub async fn delete_post(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |connection| {
            let tx = connection.transaction()?;
            tx.execute("DELETE FROM comments WHERE post_id = ?1", params![id])?;
            if tx.execute("DELETE FROM posts WHERE id = ?1", params![id])? == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit()?;
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
        let (author, body) = (author.to_string(), body.to_string());
        self.write(move |connection| {
            let tx = connection.transaction()?;
            select_post(&tx, post_id)?;
            tx.execute(
                "INSERT INTO comments (post_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![post_id, author, body, now],
            )?;
            let id = tx.last_insert_rowid();
            let comment = tx.query_row(
                "SELECT id, post_id, author, body, created_at FROM comments WHERE id = ?1",
                params![id],
                comment,
            )?;
            tx.commit()?;
            Ok(comment)
        })
        .await
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
}
