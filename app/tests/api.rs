//! The app's handlers without sockets: `router(state).oneshot(request)` against in-memory SQLite.
#![allow(clippy::unwrap_used)]

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use foobar_app::{AppState, Store, router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

async fn app() -> Router {
    let store = Store::open("sqlite://:memory:").await.unwrap();
    router(AppState::new(store, TOKEN))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn json_request(method: &str, uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn create(app: &Router, title: &str) -> Reply {
    let body = json!({ "title": title, "body": "text" }).to_string();
    send(app, json_request("POST", "/api/posts", &body, Some(TOKEN))).await
}

#[tokio::test]
async fn create_returns_201_location_etag_and_the_post() {
    let app = app().await;
    let reply = create(&app, "Hello").await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.header(header::LOCATION), "/api/posts/1");
    assert_eq!(reply.header(header::ETAG), "\"1-1-0\"");
    let post = reply.json();
    assert_eq!(post["id"], 1);
    assert_eq!(post["title"], "Hello");
    assert_eq!(post["body"], "text");
    assert_eq!(post["comment_count"], 0);
    for field in ["created_at", "updated_at"] {
        let text = post[field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{field} {text}: {e}"));
    }
    let read = send(&app, get("/api/posts/1")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.header(header::ETAG), "\"1-1-0\"");
    assert_eq!(read.json(), post);
}

#[tokio::test]
async fn writes_need_the_token() {
    let app = app().await;
    let body = json!({ "title": "t", "body": "b" }).to_string();
    for token in [None, Some("wrong"), Some("test-token-but-longer")] {
        let reply = send(&app, json_request("POST", "/api/posts", &body, token)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), "Bearer");
        assert!(reply.json()["error"].is_string());
    }
    create(&app, "Mine").await;
    let put = send(&app, json_request("PUT", "/api/posts/1", &body, None)).await;
    assert_eq!(put.status, StatusCode::UNAUTHORIZED);
    let delete = send(
        &app,
        Request::delete("/api/posts/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    // Comments are public.
    let comment = json!({ "author": "ann", "body": "hi" }).to_string();
    let reply = send(
        &app,
        json_request("POST", "/api/posts/1/comments", &comment, None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_input_gets_400_422_or_413_naming_the_problem() {
    let app = app().await;
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, None),
        ("{\"title\": \"t\"}", StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            "{\"title\": 5, \"body\": \"b\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "{\"title\": \"\", \"body\": \"b\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "{\"title\": \"   \", \"body\": \"b\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
    ];
    for (body, status, field) in cases {
        let reply = send(&app, json_request("POST", "/api/posts", body, Some(TOKEN))).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert!(reply.json()["error"].is_string(), "{body}");
        if let Some(field) = field {
            assert_eq!(reply.json()["field"], field);
        }
    }
    let long_title = json!({ "title": "é".repeat(201), "body": "b" }).to_string();
    let reply = send(
        &app,
        json_request("POST", "/api/posts", &long_title, Some(TOKEN)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["field"], "title");
    let max_title = json!({ "title": "é".repeat(200), "body": "b" }).to_string();
    let reply = send(
        &app,
        json_request("POST", "/api/posts", &max_title, Some(TOKEN)),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "200 characters are allowed"
    );
    let long_body = json!({ "title": "t", "body": "x".repeat(64 * 1024 + 1) }).to_string();
    let reply = send(
        &app,
        json_request("POST", "/api/posts", &long_body, Some(TOKEN)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["field"], "body");
    let huge = json!({ "title": "t", "body": "x".repeat(300 * 1024) }).to_string();
    let reply = send(&app, json_request("POST", "/api/posts", &huge, Some(TOKEN))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.json()["error"].is_string());
    let comment = json!({ "author": "a".repeat(81), "body": "b" }).to_string();
    create(&app, "For comments").await;
    let reply = send(
        &app,
        json_request("POST", "/api/posts/2/comments", &comment, None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["field"], "author");
    let reply = send(&app, get("/api/posts?limit=0")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(&app, get("/api/posts?limit=abc")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"].is_string());
}

#[tokio::test]
async fn missing_posts_are_404() {
    let app = app().await;
    for uri in [
        "/api/posts/99",
        "/api/posts/abc",
        "/api/posts/-1",
        "/api/posts/99/comments",
    ] {
        let reply = send(&app, get(uri)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.json()["error"], "post not found");
    }
    let comment = json!({ "author": "a", "body": "b" }).to_string();
    let reply = send(
        &app,
        json_request("POST", "/api/posts/99/comments", &comment, None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = send(
        &app,
        Request::delete("/api/posts/99")
            .header(header::AUTHORIZATION, "Bearer test-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_with_a_stale_if_match_is_412() {
    let app = app().await;
    create(&app, "Draft").await;
    let body = json!({ "title": "Edited", "body": "new" }).to_string();
    let mut put = json_request("PUT", "/api/posts/1", &body, Some(TOKEN));
    put.headers_mut()
        .insert(header::IF_MATCH, "\"1-1\"".parse().unwrap());
    let reply = send(&app, put).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(header::ETAG), "\"1-2-0\"");
    assert_eq!(reply.json()["title"], "Edited");
    // The same If-Match again is stale now.
    let mut stale = json_request("PUT", "/api/posts/1", &body, Some(TOKEN));
    stale
        .headers_mut()
        .insert(header::IF_MATCH, "\"1-1\"".parse().unwrap());
    let reply = send(&app, stale).await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert!(reply.json()["error"].is_string());
    // An ETag of another post never matches; `*` always does.
    let mut other = json_request("PUT", "/api/posts/1", &body, Some(TOKEN));
    other
        .headers_mut()
        .insert(header::IF_MATCH, "\"2-2\"".parse().unwrap());
    assert_eq!(
        send(&app, other).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    let mut any = json_request("PUT", "/api/posts/1", &body, Some(TOKEN));
    any.headers_mut()
        .insert(header::IF_MATCH, "*".parse().unwrap());
    assert_eq!(send(&app, any).await.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_is_204_and_takes_the_comments() {
    let app = app().await;
    create(&app, "Doomed").await;
    let comment = json!({ "author": "a", "body": "b" }).to_string();
    send(
        &app,
        json_request("POST", "/api/posts/1/comments", &comment, None),
    )
    .await;
    let delete = Request::delete("/api/posts/1")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&app, delete).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.text.is_empty());
    assert_eq!(
        send(&app, get("/api/posts/1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, get("/api/posts/1/comments")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listing_paginates_newest_first() {
    let app = app().await;
    for i in 1..=5 {
        create(&app, &format!("Post {i}")).await;
    }
    let page = send(&app, get("/api/posts?limit=2")).await.json();
    let ids: Vec<i64> = page["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [5, 4]);
    assert_eq!(page["next"], 4);
    let page = send(&app, get("/api/posts?limit=2&before=4")).await.json();
    assert_eq!(page["posts"][0]["id"], 3);
    let page = send(&app, get("/api/posts?limit=10&before=2")).await.json();
    assert_eq!(page["posts"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], Value::Null);
}

#[tokio::test]
async fn pages_escape_what_users_wrote() {
    let app = app().await;
    let body =
        json!({ "title": "<script>alert('x')</script>", "body": "<img src=x onerror=alert(1)>" })
            .to_string();
    send(&app, json_request("POST", "/api/posts", &body, Some(TOKEN))).await;
    let comment = json!({ "author": "<b>eve</b>", "body": "\"><svg onload=alert(2)>" }).to_string();
    send(
        &app,
        json_request("POST", "/api/posts/1/comments", &comment, None),
    )
    .await;
    for uri in ["/posts", "/posts/1"] {
        let reply = send(&app, get(uri)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert!(reply.header(header::CONTENT_TYPE).starts_with("text/html"));
        assert!(
            !reply.text.contains("<script>alert"),
            "{uri}: {}",
            reply.text
        );
        assert!(reply.text.contains("&#60;script&#62;"), "{uri}");
    }
    let post = send(&app, get("/posts/1")).await.text;
    assert!(!post.contains("<img src=x"));
    assert!(!post.contains("<svg onload"));
    assert!(!post.contains("<b>eve</b>"));
    assert!(post.contains("Comments (1)"));
    assert_eq!(
        send(&app, get("/posts/2")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app().await;
    assert_eq!(send(&app, get("/healthz")).await.status, StatusCode::OK);
    let ready = send(&app, get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["status"], "ready");
    // A store whose server refuses connections is alive but not ready, and says so quickly.
    let store = Store::open("mysql://root@127.0.0.1:1/none").await.unwrap();
    let down = router(AppState::new(store, TOKEN));
    assert_eq!(send(&down, get("/healthz")).await.status, StatusCode::OK);
    let ready = send(&down, get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["error"], "database unavailable");
    let started = std::time::Instant::now();
    let list = send(&down, get("/api/posts")).await;
    assert_eq!(list.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(list.json()["error"], "database unavailable");
    let page = send(&down, get("/posts")).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "503 comes quickly"
    );
}

fn comment_from(post: i64, address: &str, n: usize) -> Request<Body> {
    let body = json!({ "author": format!("reader {n}"), "body": "hello" }).to_string();
    let mut request = json_request("POST", &format!("/api/posts/{post}/comments"), &body, None);
    request
        .extensions_mut()
        .insert(foobar_app::ClientAddress(address.parse().unwrap()));
    request
}

#[tokio::test]
async fn comments_are_paginated_in_the_api_and_on_the_page() {
    let app = app().await;
    create(&app, "Busy").await;
    for n in 0..7 {
        let reply = send(&app, comment_from(1, "192.0.2.1", n)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let first = send(&app, get("/api/posts/1/comments?limit=3"))
        .await
        .json();
    let authors = |page: &Value| -> Vec<String> {
        page["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["author"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(authors(&first), ["reader 0", "reader 1", "reader 2"]);
    let next = first["next"].as_i64().unwrap();
    let second = send(
        &app,
        get(&format!("/api/posts/1/comments?limit=3&after={next}")),
    )
    .await
    .json();
    assert_eq!(authors(&second), ["reader 3", "reader 4", "reader 5"]);
    let after = second["next"].as_i64().unwrap();
    let last = send(
        &app,
        get(&format!("/api/posts/1/comments?limit=3&after={after}")),
    )
    .await
    .json();
    assert_eq!(authors(&last), ["reader 6"]);
    assert_eq!(last["next"], Value::Null);
    // The default page holds them all here; a limit beyond the maximum is refused.
    let all = send(&app, get("/api/posts/1/comments")).await.json();
    assert_eq!(authors(&all).len(), 7);
    let too_many = send(&app, get("/api/posts/1/comments?limit=101")).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);

    // The page shows 50 at a time, the count of all, and links to the next page.
    for n in 7..60 {
        send(&app, comment_from(1, &format!("192.0.2.{}", n + 2), n)).await;
    }
    let page = send(&app, get("/posts/1")).await;
    assert!(page.text.contains("Comments (60)"), "{}", page.text);
    assert_eq!(page.text.matches("class=\"comment\"").count(), 50);
    assert!(page.text.contains("reader 49<") && !page.text.contains("reader 50<"));
    let link = page
        .text
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let page = send(&app, get(&link)).await;
    assert_eq!(page.text.matches("class=\"comment\"").count(), 10);
    assert!(page.text.contains("reader 50<") && page.text.contains("reader 59<"));
    assert!(!page.text.contains("rel=\"next\""));
    assert!(page.text.contains("First comments"));
}

#[tokio::test]
async fn comments_are_rate_limited_per_client_address_with_retry_after() {
    let store = Store::open("sqlite://:memory:").await.unwrap();
    let app = router(AppState::new(store, TOKEN).with_comment_limit(2, 3));
    create(&app, "Popular").await;
    for n in 0..3 {
        let reply = send(&app, comment_from(1, "198.51.100.7", n)).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let refused = send(&app, comment_from(1, "198.51.100.7", 3)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
    // Another address is not held back; nothing refused was stored.
    let other = send(&app, comment_from(1, "198.51.100.8", 4)).await;
    assert_eq!(other.status, StatusCode::CREATED);
    let post = send(&app, get("/api/posts/1")).await.json();
    assert_eq!(post["comment_count"], 4);
    // Invalid comments do not use up the allowance.
    let body = json!({ "author": "", "body": "x" }).to_string();
    for _ in 0..5 {
        let mut invalid = json_request("POST", "/api/posts/1/comments", &body, None);
        invalid
            .extensions_mut()
            .insert(foobar_app::ClientAddress("198.51.100.9".parse().unwrap()));
        let reply = send(&app, invalid).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(
        send(&app, comment_from(1, "198.51.100.9", 5)).await.status,
        StatusCode::CREATED
    );
}

fn conditional(uri: &str, etag: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap()
}

/// Reads are kept and answered without the database, but never after a write of this app has
/// changed them; a client's ETag gets a 304 while it is current.
#[tokio::test]
async fn kept_reads_follow_every_write_and_answer_if_none_match() {
    let app = app().await;
    create(&app, "First title").await;
    let mut tags = Vec::new();
    for uri in [
        "/api/posts/1",
        "/posts/1",
        "/api/posts",
        "/posts",
        "/api/posts/1/comments",
    ] {
        let first = send(&app, get(uri)).await;
        assert_eq!(first.status, StatusCode::OK, "{uri}");
        assert_eq!(first.header(header::CACHE_CONTROL), "no-cache");
        let etag = first.header(header::ETAG).to_string();
        let again = send(&app, get(uri)).await;
        assert_eq!(again.text, first.text, "{uri} kept");
        assert_eq!(again.header(header::ETAG), etag);
        let not_modified = send(&app, conditional(uri, &etag)).await;
        assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(not_modified.header(header::ETAG), etag);
        assert!(not_modified.text.is_empty());
        tags.push((uri, etag));
    }
    assert_eq!(tags[0].1, "\"1-1-0\"");
    assert!(
        tags[1].1.starts_with("W/\""),
        "pages get weak tags: {}",
        tags[1].1
    );

    // A comment changes the post's JSON, its page, its comments and the lists at once.
    let added = send(&app, comment_from(1, "192.0.2.1", 1)).await;
    assert_eq!(added.status, StatusCode::CREATED);
    for (uri, etag) in &tags {
        let read = send(&app, conditional(uri, etag)).await;
        assert_eq!(read.status, StatusCode::OK, "{uri} changed by the comment");
        assert_ne!(read.header(header::ETAG), etag);
    }
    assert_eq!(
        send(&app, get("/api/posts/1")).await.json()["comment_count"],
        1
    );
    assert!(
        send(&app, get("/posts/1"))
            .await
            .text
            .contains("Comments (1)")
    );

    // So do a new title, and a delete.
    let body = json!({ "title": "Second title", "body": "text" }).to_string();
    let put = send(
        &app,
        json_request("PUT", "/api/posts/1", &body, Some(TOKEN)),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(
        send(&app, get("/api/posts/1")).await.json()["title"],
        "Second title"
    );
    assert!(
        send(&app, get("/posts/1"))
            .await
            .text
            .contains("Second title")
    );
    assert!(
        send(&app, get("/posts"))
            .await
            .text
            .contains("Second title")
    );
    let delete = Request::delete("/api/posts/1")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, delete).await.status, StatusCode::NO_CONTENT);
    for uri in ["/api/posts/1", "/posts/1", "/api/posts/1/comments"] {
        assert_eq!(
            send(&app, get(uri)).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    assert!(
        !send(&app, get("/posts"))
            .await
            .text
            .contains("Second title")
    );
    create(&app, "Third").await;
    assert_eq!(
        send(&app, get("/api/posts")).await.json()["posts"][0]["title"],
        "Third",
        "a new post shows in the list at once"
    );
}
