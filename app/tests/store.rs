//! The storage suite: the same tests against SQLite (always) and MySQL/MariaDB (when
//! FOOBAR_TEST_MYSQL_URL names a server; each test makes and drops a fresh database there).
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
        let comments = store.comments(post.id).await.unwrap();
        assert_eq!(
            comments
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
        assert!(
            store.comments(post.id).await.unwrap().is_empty(),
            "comments deleted too"
        );
        assert_eq!(
            store.comments(other.id).await.unwrap().len(),
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
                    known: 1
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
        conn.query_drop("INSERT INTO schema_version (version) VALUES (99)")
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
