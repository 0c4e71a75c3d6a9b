//! The storage suite: the same tests against SQLite (always) and MySQL/MariaDB (when
//! FOOBAR_TEST_MYSQL_URL names a server; each test makes and drops a fresh database there).
//! With FOOBAR_REQUIRE_INTEROP=1 (as in CI) a missing URL fails the MySQL tests.
#![allow(clippy::unwrap_used)]

use foobar_app::{Store, StoreError};
use mysql_async::prelude::Queryable;

/// A store on a fresh database of each backend available here.
async fn stores() -> Vec<(Store, Cleanup)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut stores = vec![(Store::open(&url).await.unwrap(), Cleanup::Dir(dir))];
    if let Some((url, cleanup)) = fresh_mysql().await {
        stores.push((Store::open(&url).await.unwrap(), cleanup));
    }
    stores
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Mysql { server: String, name: String },
}

impl Cleanup {
    async fn run(self) {
        if let Cleanup::Mysql { server, name } = self {
            let pool = mysql_async::Pool::new(server.as_str());
            let mut conn = pool.get_conn().await.unwrap();
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await
                .unwrap();
            drop(conn);
            pool.disconnect().await.unwrap();
        }
    }
}

/// A new empty database on the MySQL server named by FOOBAR_TEST_MYSQL_URL.
async fn fresh_mysql() -> Option<(String, Cleanup)> {
    let Ok(server) = std::env::var("FOOBAR_TEST_MYSQL_URL") else {
        assert!(
            std::env::var("FOOBAR_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "the MySQL part is required (FOOBAR_REQUIRE_INTEROP=1) but FOOBAR_TEST_MYSQL_URL is not set"
        );
        eprintln!(
            "MySQL part skipped: FOOBAR_TEST_MYSQL_URL is not set (e.g. mysql://root@127.0.0.1:3306/test)"
        );
        return None;
    };
    let name = format!(
        "foobar_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let pool = mysql_async::Pool::new(server.as_str());
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        .await
        .unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    Some((format!("{base}/{name}"), Cleanup::Mysql { server, name }))
}

#[tokio::test]
async fn posts_are_created_read_listed_and_paginated() {
    for (store, cleanup) in stores().await {
        let backend = store.backend();
        let first = store.create_post("First", "one").await.unwrap();
        assert_eq!(first.title, "First");
        assert_eq!(first.version, 1);
        assert_eq!(first.comment_count, 0);
        assert_eq!(first.created_at, first.updated_at);
        let mut ids = vec![first.id];
        for i in 2..=5 {
            ids.push(
                store
                    .create_post(&format!("Post {i}"), "text")
                    .await
                    .unwrap()
                    .id,
            );
        }
        assert_eq!(store.get_post(first.id).await.unwrap(), first, "{backend}");

        let page = store.list_posts(2, None).await.unwrap();
        let listed: Vec<i64> = page.posts.iter().map(|p| p.id).collect();
        assert_eq!(listed, [ids[4], ids[3]], "{backend}: newest first");
        assert_eq!(page.next, Some(ids[3]));
        let page = store.list_posts(2, page.next).await.unwrap();
        assert_eq!(
            page.posts.iter().map(|p| p.id).collect::<Vec<_>>(),
            [ids[2], ids[1]]
        );
        let page = store.list_posts(2, page.next).await.unwrap();
        assert_eq!(
            page.posts.iter().map(|p| p.id).collect::<Vec<_>>(),
            [ids[0]]
        );
        assert_eq!(page.next, None, "{backend}: last page");
        cleanup.run().await;
    }
}

#[tokio::test]
async fn shared_values_and_leases_for_the_nodes_of_a_cluster() {
    for (store, cleanup) in stores().await {
        let backend = store.backend();
        store
            .put_shared("acme/certificate/a", b"one", 10)
            .await
            .unwrap();
        store
            .put_shared("acme/certificate/b", b"two", 11)
            .await
            .unwrap();
        store
            .put_shared("acme/challenge/dns/x", b"v", 12)
            .await
            .unwrap();
        store
            .put_shared("acme/certificate/a", b"one again", 13)
            .await
            .unwrap();
        let certificates = store.shared("acme/certificate/").await.unwrap();
        let found: Vec<(&str, &[u8], i64)> = certificates
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_slice(), s.updated_at))
            .collect();
        assert_eq!(
            found,
            [
                ("acme/certificate/a", b"one again".as_slice(), 13),
                ("acme/certificate/b", b"two".as_slice(), 11)
            ],
            "{backend}"
        );
        store.delete_shared("acme/certificate/a").await.unwrap();
        assert_eq!(
            store.shared("acme/certificate/").await.unwrap().len(),
            1,
            "{backend}"
        );
        // A lease: one holder at a time until it expires or is given back.
        assert!(
            store.take_lease("order/a", "n1", 100, 700).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.take_lease("order/a", "n2", 200, 800).await.unwrap(),
            "{backend}"
        );
        // Asked for the very end the holder's lease has: still the holder's.
        assert!(
            !store.take_lease("order/a", "n2", 100, 700).await.unwrap(),
            "{backend}: same end"
        );
        assert!(
            store.take_lease("order/a", "n1", 300, 900).await.unwrap(),
            "{backend}: again"
        );
        assert!(
            store.take_lease("order/a", "n2", 901, 1500).await.unwrap(),
            "{backend}: expired"
        );
        assert!(
            !store.take_lease("order/a", "n1", 1000, 1600).await.unwrap(),
            "{backend}"
        );
        store.release_lease("order/a", "n1").await.unwrap();
        assert!(
            !store.take_lease("order/a", "n1", 1000, 1600).await.unwrap(),
            "{backend}: not n1's"
        );
        store.release_lease("order/a", "n2").await.unwrap();
        assert!(
            store.take_lease("order/a", "n1", 1000, 1600).await.unwrap(),
            "{backend}: given back"
        );
        cleanup.run().await;
    }
}

#[tokio::test]
async fn text_round_trips_exactly() {
    for (store, cleanup) in stores().await {
        let title = "Ünïcödé 🚀 <b>&amp;</b> 'quotes' \"double\" \\ ; DROP TABLE posts; --";
        let body = "line one\nline two\u{0}after nul\t tab ".repeat(100);
        let post = store.create_post(title, &body).await.unwrap();
        let read = store.get_post(post.id).await.unwrap();
        assert_eq!(read.title, title, "{}", store.backend());
        assert_eq!(read.body, body, "{}", store.backend());
        cleanup.run().await;
    }
}

#[tokio::test]
async fn updates_bump_the_version_and_respect_the_expected_one() {
    for (store, cleanup) in stores().await {
        let post = store.create_post("Draft", "v1").await.unwrap();
        let updated = store
            .update_post(post.id, "Final", "v2", Some(post.version))
            .await
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.title, "Final");
        assert!(updated.updated_at >= post.updated_at);
        assert_eq!(updated.created_at, post.created_at);
        let stale = store.update_post(post.id, "Lost", "update", Some(1)).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict)),
            "{}: {stale:?}",
            store.backend()
        );
        assert_eq!(store.get_post(post.id).await.unwrap().title, "Final");
        let unconditional = store
            .update_post(post.id, "Again", "v3", None)
            .await
            .unwrap();
        assert_eq!(unconditional.version, 3);
        let missing = store.update_post(999_999, "x", "y", None).await;
        assert!(matches!(missing, Err(StoreError::NotFound)));
        cleanup.run().await;
    }
}

#[tokio::test]
async fn comments_count_and_go_with_their_post() {
    for (store, cleanup) in stores().await {
        let post = store.create_post("With comments", "body").await.unwrap();
        let other = store.create_post("Other", "body").await.unwrap();
        let first = store.add_comment(post.id, "ann", "first!").await.unwrap();
        store.add_comment(post.id, "bob", "second").await.unwrap();
        store
            .add_comment(other.id, "cy", "elsewhere")
            .await
            .unwrap();
        assert_eq!(first.post_id, post.id);
        assert_eq!(store.get_post(post.id).await.unwrap().comment_count, 2);
        let (read, page) = store.post_with_comments(post.id, 50, None).await.unwrap();
        assert_eq!(
            read,
            store.get_post(post.id).await.unwrap(),
            "{}: the post read with its comments",
            store.backend()
        );
        assert_eq!(page.next, None);
        assert_eq!(
            page.comments
                .iter()
                .map(|c| c.author.as_str())
                .collect::<Vec<_>>(),
            ["ann", "bob"],
            "{}: oldest first",
            store.backend()
        );
        let missing = store.add_comment(999_999, "x", "y").await;
        assert!(matches!(missing, Err(StoreError::NotFound)));

        store.delete_post(post.id).await.unwrap();
        assert!(matches!(
            store.get_post(post.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.post_with_comments(post.id, 50, None).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store
                .post_with_comments(other.id, 50, None)
                .await
                .unwrap()
                .1
                .comments
                .len(),
            1,
            "others untouched"
        );
        assert!(matches!(
            store.delete_post(post.id).await,
            Err(StoreError::NotFound)
        ));
        cleanup.run().await;
    }
}

#[tokio::test]
async fn comments_come_a_page_at_a_time_oldest_first() {
    for (store, cleanup) in stores().await {
        let post = store.create_post("Busy", "body").await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let comment = store
                .add_comment(post.id, &format!("reader {i}"), "hi")
                .await
                .unwrap();
            ids.push(comment.id);
        }
        let ids_of = |page: &foobar_app::store::CommentPage| {
            page.comments.iter().map(|c| c.id).collect::<Vec<_>>()
        };
        // Every page carries the post with the count of all its comments, however the page
        // was cut: a first page that is only part of the thread, later pages, a first page
        // that is exactly the thread, and one with room to spare.
        let (read, first) = store.post_with_comments(post.id, 2, None).await.unwrap();
        assert_eq!(ids_of(&first), ids[..2], "{}", store.backend());
        assert_eq!(first.next, Some(ids[1]));
        assert_eq!(read.comment_count, 5, "{}: a first page", store.backend());
        let (read, second) = store
            .post_with_comments(post.id, 2, first.next)
            .await
            .unwrap();
        assert_eq!(ids_of(&second), ids[2..4]);
        assert_eq!(read.comment_count, 5, "{}: a later page", store.backend());
        let (read, last) = store
            .post_with_comments(post.id, 2, second.next)
            .await
            .unwrap();
        assert_eq!(ids_of(&last), ids[4..]);
        assert_eq!(last.next, None, "{}: last page", store.backend());
        assert_eq!(read.comment_count, 5, "{}: the last page", store.backend());
        let (read, exact) = store.post_with_comments(post.id, 5, None).await.unwrap();
        assert_eq!((exact.comments.len(), exact.next), (5, None));
        assert_eq!(
            read.comment_count,
            5,
            "{}: exactly one page",
            store.backend()
        );
        let (read, roomy) = store.post_with_comments(post.id, 50, None).await.unwrap();
        assert_eq!((roomy.comments.len(), read.comment_count), (5, 5));
        let bare = store.create_post("Quiet", "body").await.unwrap();
        let (read, none) = store.post_with_comments(bare.id, 2, None).await.unwrap();
        assert_eq!((none.comments.len(), read.comment_count), (0, 0));
        cleanup.run().await;
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_refuse_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let mut urls = vec![(url, None)];
    if let Some((url, cleanup)) = fresh_mysql().await {
        urls.push((url, Some(cleanup)));
    }
    for (url, cleanup) in urls {
        let store = Store::open(&url).await.unwrap();
        let post = store.create_post("Kept", "across opens").await.unwrap();
        drop(store);
        // Opening again applies nothing twice and keeps the data.
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.get_post(post.id).await.unwrap().title, "Kept");
        // A schema from a newer binary is refused.
        bump_schema(&url).await;
        let error = Store::open(&url).await.expect_err("newer schema refused");
        assert!(
            matches!(
                error,
                StoreError::SchemaTooNew {
                    found: 99,
                    known: foobar_app::store::SCHEMA_VERSION
                }
            ),
            "{error}"
        );
        if let Some(cleanup) = cleanup {
            cleanup.run().await;
        }
    }
}

async fn bump_schema(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
    } else {
        let pool = mysql_async::Pool::new(url);
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop("INSERT INTO schema_migrations (version) VALUES (99)")
            .await
            .unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_mysql_is_unavailable_quickly() {
    // Port 1 on loopback: nothing listens, connections are refused at once. Opening succeeds
    // (the schema is brought up when the server appears); every operation is Unavailable.
    let store = Store::open("mysql://root@127.0.0.1:1/none").await.unwrap();
    for error in [
        store.ping().await.expect_err("no server"),
        store.list_posts(10, None).await.expect_err("no server"),
        store.create_post("t", "b").await.expect_err("no server"),
    ] {
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    }
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    let error = Store::open("postgres://localhost/db")
        .await
        .expect_err("unsupported");
    assert!(
        error.to_string().contains("sqlite://PATH or mysql://"),
        "{error}"
    );
}

/// Runs each statement on the MySQL database at `url`.
async fn mysql_run(url: &str, statements: &[&str]) {
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await.unwrap();
    for statement in statements {
        conn.query_drop(*statement).await.unwrap();
    }
    drop(conn);
    pool.disconnect().await.unwrap();
}

#[tokio::test]
async fn mysql_migrations_resume_after_a_crash_between_steps() {
    let Some((url, cleanup)) = fresh_mysql().await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let post = store.create_post("Before the crash", "kept").await.unwrap();
    drop(store);
    // As a crash would leave it: the first step (posts) done, its record written; the second
    // (comments) run but not recorded; the version not recorded.
    mysql_run(
        &url,
        &[
            "DELETE FROM schema_migrations",
            "DELETE FROM schema_steps WHERE step > 0",
        ],
    )
    .await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(
        store.get_post(post.id).await.unwrap().title,
        "Before the crash"
    );
    store.add_comment(post.id, "ann", "hi").await.unwrap();
    drop(store);
    // As a crash before the second step ran at all, with nothing recorded after the first.
    mysql_run(
        &url,
        &[
            "DELETE FROM schema_migrations",
            "DELETE FROM schema_steps WHERE step > 0",
            "DROP TABLE comments",
        ],
    )
    .await;
    let store = Store::open(&url).await.unwrap();
    store.add_comment(post.id, "bob", "back").await.unwrap();
    assert_eq!(store.get_post(post.id).await.unwrap().comment_count, 1);
    drop(store);
    cleanup.run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_instances_migrate_side_by_side_and_a_cancelled_one_holds_nothing() {
    use std::time::Duration;
    let Some((url, cleanup)) = fresh_mysql().await else {
        return;
    };
    // One start cancelled in the middle of its migration, as a request dropped by its client
    // or a shutdown would.
    let cancelled = tokio::time::timeout(Duration::from_millis(15), async {
        let store = Store::open(&url).await;
        std::future::pending::<()>().await;
        store
    });
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    assert!(cancelled.await.is_err());
    for open in opens {
        let store = open.await.unwrap().unwrap();
        store.create_post("Side by side", "ok").await.unwrap();
    }
    let pool = mysql_async::Pool::new(url.as_str());
    let mut conn = pool.get_conn().await.unwrap();
    let held: Option<Option<i64>> = conn
        .query_first("SELECT IS_USED_LOCK('foobar_migrate')")
        .await
        .unwrap();
    assert_eq!(held, Some(None), "no migration lock left held");
    let versions: Vec<i64> = conn
        .query("SELECT version FROM schema_migrations")
        .await
        .unwrap();
    let all: Vec<i64> = (1..=foobar_app::store::SCHEMA_VERSION).collect();
    assert_eq!(versions, all);
    drop(conn);
    pool.disconnect().await.unwrap();
    cleanup.run().await;
}

#[tokio::test]
async fn mysql_tables_all_have_primary_keys_and_an_older_schema_record_carries_over() {
    let Some((url, cleanup)) = fresh_mysql().await else {
        return;
    };
    // As an older binary left it: its version in schema_version, a table with no key.
    mysql_run(
        &url,
        &[
            "CREATE TABLE schema_version (version BIGINT NOT NULL) ENGINE=InnoDB",
            "INSERT INTO schema_version VALUES (1), (1)",
        ],
    )
    .await;
    let store = Store::open(&url).await.unwrap();
    store.create_post("After", "the carry-over").await.unwrap();
    drop(store);
    let pool = mysql_async::Pool::new(url.as_str());
    let mut conn = pool.get_conn().await.unwrap();
    let versions: Vec<i64> = conn
        .query("SELECT version FROM schema_migrations")
        .await
        .unwrap();
    let all: Vec<i64> = (1..=foobar_app::store::SCHEMA_VERSION).collect();
    assert_eq!(
        versions, all,
        "the old record carried over, the later versions added"
    );
    // Galera replicates only tables with a primary key: every table the store writes has one.
    let keyless: Vec<String> = conn
        .query(
            "SELECT t.table_name FROM information_schema.tables t \
             WHERE t.table_schema = DATABASE() AND t.table_name <> 'schema_version' \
             AND NOT EXISTS (SELECT 1 FROM information_schema.table_constraints c \
             WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name \
             AND c.constraint_type = 'PRIMARY KEY')",
        )
        .await
        .unwrap();
    assert!(keyless.is_empty(), "{keyless:?}");
    drop(conn);
    pool.disconnect().await.unwrap();
    cleanup.run().await;
}
