//! The JSON API: posts and comments. Errors are `{"error": "..."}` with the right status.

use std::time::Duration;

use axum::{
    Extension, Json,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::error;

use crate::{
    AppState, ClientAddress,
    cache::{Key, Rendered, cached},
    store::{Comment, Post, StoreError},
};

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest post or comment body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest comment author, in characters.
pub const MAX_AUTHOR: usize = 80;
/// Most posts or comments in one page.
pub const MAX_LIMIT: u32 = 100;
/// Posts in a page unless the client asks otherwise.
const POSTS_PER_PAGE: u32 = 20;
/// Comments in a page unless the client asks otherwise.
pub const COMMENTS_PER_PAGE: u32 = 50;

/// An API error: the status and a message for the client; details of 5xx go to the log only.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
    /// For 429: when to try again.
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429: this client has posted too much; it may again after `wait`.
    pub fn too_many(wait: Duration) -> Self {
        ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many comments from this address; try again later",
            )
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: never earlier than allowed.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                error!(%detail, "database unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
            }
            StoreError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "post not found"),
            StoreError::Conflict => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "the post has changed since that ETag; fetch it again",
            ),
            other => {
                error!(error = %other, "database error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            other => other.status(),
        };
        ApiError::new(status, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

/// A post as the API shows it.
#[derive(Debug, Serialize)]
pub struct PostJson {
    id: i64,
    title: String,
    body: String,
    created_at: String,
    updated_at: String,
    comment_count: i64,
}

impl From<Post> for PostJson {
    fn from(post: Post) -> Self {
        PostJson {
            id: post.id,
            created_at: crate::rfc3339(post.created_at),
            updated_at: crate::rfc3339(post.updated_at),
            title: post.title,
            body: post.body,
            comment_count: post.comment_count,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CommentJson {
    id: i64,
    post_id: i64,
    author: String,
    body: String,
    created_at: String,
}

impl From<Comment> for CommentJson {
    fn from(comment: Comment) -> Self {
        CommentJson {
            id: comment.id,
            post_id: comment.post_id,
            created_at: crate::rfc3339(comment.created_at),
            author: comment.author,
            body: comment.body,
        }
    }
}

/// The ETag of a post's JSON: its id and version (what `If-Match` on a change compares) and
/// its number of comments (the rest of what the JSON shows).
pub fn etag(post: &Post) -> String {
    format!("\"{}-{}-{}\"", post.id, post.version, post.comment_count)
}

/// JSON text of `value`.
fn json_bytes(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| {
        error!(error = %e, "json");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

/// JSON text of `value` as a kept response with a weak ETag.
fn json_rendered(value: &impl Serialize) -> Result<Rendered, ApiError> {
    json_bytes(value).map(|body| Rendered::weak(body, "application/json"))
}

/// A post's JSON with its ETag, as reads keep it and writes answer with it.
fn post_rendered(post: Post) -> Result<Rendered, ApiError> {
    let tag = HeaderValue::from_str(&etag(&post))
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let body = json_bytes(&PostJson::from(post))?;
    Ok(Rendered::tagged(body, "application/json", tag))
}

/// A write's answer: the post as it now is, with its ETag.
fn with_etag(status: StatusCode, post: Post) -> Result<Response, ApiError> {
    let Rendered {
        body,
        content_type,
        etag,
    } = post_rendered(post)?;
    let headers = [(header::CONTENT_TYPE, content_type), (header::ETAG, etag)];
    Ok((status, headers, body).into_response())
}

/// Writes to posts need `Authorization: Bearer <token>`.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if crate::token::matches(token, &state.token) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// A post id from the path; anything that is not one names no post.
fn post_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "post not found"))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<u32>,
    before: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let limit = page_size(params.limit, POSTS_PER_PAGE)?;
    let before = params.before;
    let make = async {
        let page = state.store.list_posts(limit, before).await?;
        let posts: Vec<PostJson> = page.posts.into_iter().map(PostJson::from).collect();
        json_rendered(&json!({ "posts": posts, "next": page.next }))
    };
    Ok(cached(
        &state.cache,
        &headers,
        Key::ListJson { limit, before },
        make,
    )
    .await)
}

/// The page size a client asked for, or `default`.
fn page_size(asked: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match asked.unwrap_or(default) {
        limit @ 1..=MAX_LIMIT => Ok(limit),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_LIMIT}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct NewPost {
    title: String,
    body: String,
}

impl NewPost {
    fn validate(&self) -> Result<(), ApiError> {
        let title = self.title.trim().chars().count();
        if title == 0 || self.title.chars().count() > MAX_TITLE {
            return Err(ApiError::invalid(
                "title",
                format!("title must be 1 to {MAX_TITLE} characters"),
            ));
        }
        if self.body.len() > MAX_BODY {
            return Err(ApiError::invalid(
                "body",
                format!("body must be at most {MAX_BODY} bytes"),
            ));
        }
        Ok(())
    }
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    post: Result<Json<NewPost>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Json(post) = post?;
    post.validate()?;
    let write = state.store.create_post(&post.title, &post.body);
    let post = state.cache.writing(None, write).await?;
    let location = format!("/api/posts/{}", post.id);
    let mut response = with_etag(StatusCode::CREATED, post)?;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = post_id(&id)?;
    let make = async { post_rendered(state.store.get_post(id).await?) };
    Ok(cached(&state.cache, &headers, Key::PostJson { id }, make).await)
}

/// The version an `If-Match` header asks for: `None` for no header or `*`; an ETag of another
/// post or a malformed one can never match.
fn expected_version(headers: &HeaderMap, id: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return Ok(None);
    }
    // "ID-VERSION-COMMENTS"; a change compares the version only (a comment added since does
    // not conflict with a new title or body).
    let mut fields = value.trim_matches('"').split('-');
    let version = fields
        .next()
        .filter(|tag_id| tag_id.parse() == Ok(id))
        .and_then(|_| fields.next())
        .and_then(|version| version.parse::<i64>().ok());
    // A tag that names no version of this post fails like a stale one.
    Ok(Some(version.unwrap_or(-1)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    post: Result<Json<NewPost>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = post_id(&id)?;
    let Json(post) = post?;
    post.validate()?;
    let expected = expected_version(&headers, id)?;
    let write = state
        .store
        .update_post(id, &post.title, &post.body, expected);
    let post = state.cache.writing(Some(id), write).await?;
    with_etag(StatusCode::OK, post)
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = post_id(&id)?;
    let write = state.store.delete_post(id);
    state.cache.writing(Some(id), write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
pub struct CommentParams {
    limit: Option<u32>,
    after: Option<i64>,
}

/// A post's comments, oldest first, a page at a time: `next` is the `after` of the next page.
pub async fn comments(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<CommentParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = post_id(&id)?;
    let Query(params) = params?;
    let limit = page_size(params.limit, COMMENTS_PER_PAGE)?;
    let after = params.after;
    let make = async {
        let (_, page) = state.store.post_with_comments(id, limit, after).await?;
        let comments: Vec<CommentJson> = page.comments.into_iter().map(CommentJson::from).collect();
        json_rendered(&json!({ "comments": comments, "next": page.next }))
    };
    let key = Key::CommentsJson { id, limit, after };
    Ok(cached(&state.cache, &headers, key, make).await)
}

#[derive(Debug, Deserialize)]
pub struct NewComment {
    author: String,
    body: String,
}

/// Posting a comment needs no token, so it is limited per client address.
pub async fn comment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: Option<Extension<ClientAddress>>,
    comment: Result<Json<NewComment>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = post_id(&id)?;
    let Json(comment) = comment?;
    let author = comment.author.trim().chars().count();
    if author == 0 || comment.author.chars().count() > MAX_AUTHOR {
        return Err(ApiError::invalid(
            "author",
            format!("author must be 1 to {MAX_AUTHOR} characters"),
        ));
    }
    if comment.body.trim().is_empty() || comment.body.len() > MAX_BODY {
        return Err(ApiError::invalid(
            "body",
            format!("body must be 1 to {MAX_BODY} bytes"),
        ));
    }
    // Counted once the comment is valid, so a typo costs nothing. A request with no address
    // comes from inside the process, not the network.
    if let Some(Extension(ClientAddress(address))) = client
        && let Err(wait) = state.comments.check(address)
    {
        return Err(ApiError::too_many(wait));
    }
    let write = state.store.add_comment(id, &comment.author, &comment.body);
    let comment = state.cache.writing(Some(id), write).await?;
    let location = format!("/api/posts/{id}/comments");
    let mut response = (StatusCode::CREATED, Json(CommentJson::from(comment))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}
