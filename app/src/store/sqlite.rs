//! SQLite: one connection in WAL mode, used from a blocking thread so the async runtime never
//! waits on the disk.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Comment, Post, SCHEMA_VERSION, StoreError};

/// Migrations by version; each runs in a transaction with its version bump.
const MIGRATIONS: &[&str] = &["
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
"];

const POST_COLUMNS: &str = "p.id, p.title, p.body, p.created_at, p.updated_at, p.version, \
     (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id)";

#[derive(Debug, Clone)]
pub struct Sqlite {
    connection: Arc<Mutex<Connection>>,
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
        let connection = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if path != ":memory:"
                && let Some(folder) = Path::new(&path).parent()
                && !folder.as_os_str().is_empty()
            {
                std::fs::create_dir_all(folder)
                    .map_err(|e| StoreError::Unavailable(format!("{}: {e}", folder.display())))?;
            }
            let connection = Connection::open(&path)?;
            connection.busy_timeout(Duration::from_secs(2))?;
            // WAL for concurrent readers; FULL sync so an acknowledged write survives power loss.
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
            Ok(connection)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
        Ok(Sqlite {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection in a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = match connection.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.run(|connection| {
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

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    pub async fn list_posts(&self, limit: u32, before: i64) -> Result<Vec<Post>, StoreError> {
        self.run(move |connection| {
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
        self.run(move |connection| select_post(connection, id))
            .await
    }

    pub async fn comments(&self, post_id: i64) -> Result<Vec<Comment>, StoreError> {
        self.run(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, post_id, author, body, created_at FROM comments \
                 WHERE post_id = ?1 ORDER BY id",
            )?;
            let comments = statement
                .query_map(params![post_id], comment)?
                .collect::<Result<_, _>>()?;
            Ok(comments)
        })
        .await
    }

    pub async fn create_post(&self, title: &str, body: &str, now: i64) -> Result<Post, StoreError> {
        let (title, body) = (title.to_string(), body.to_string());
        self.run(move |connection| {
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
        self.run(move |connection| {
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
        self.run(move |connection| {
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
        self.run(move |connection| {
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
