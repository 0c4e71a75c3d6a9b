//! Server-rendered pages for people. Askama templates escape every value by default.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    AppState,
    cache::{Key, Rendered, cached},
    store::StoreError,
};

const PAGE_SIZE: u32 = 20;

pub struct PostView {
    id: i64,
    title: String,
    body: String,
    created: String,
    comment_count: i64,
}

pub struct CommentView {
    author: String,
    body: String,
    created: String,
}

#[derive(Template)]
#[template(path = "posts.html")]
struct PostsPage {
    posts: Vec<PostView>,
    next: Option<i64>,
}

#[derive(Template)]
#[template(path = "post.html")]
struct PostPage {
    post: PostView,
    comments: Vec<CommentView>,
    /// Whether this page starts after the first comment (it then links back to the first).
    later: bool,
    next: Option<i64>,
}

fn view(post: crate::store::Post) -> PostView {
    PostView {
        id: post.id,
        created: crate::rfc3339(post.created_at),
        title: post.title,
        body: post.body,
        comment_count: post.comment_count,
    }
}

/// A page-level error: its status, and plain text with no details.
#[derive(Debug)]
struct Failure(StatusCode);

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure(crate::api::ApiError::from(error).status())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let text = match self.0 {
            StatusCode::NOT_FOUND => "Not found.",
            StatusCode::SERVICE_UNAVAILABLE => "The database is unavailable; try again shortly.",
            _ => "Something went wrong.",
        };
        (self.0, text).into_response()
    }
}

fn render(template: impl Template) -> Result<Rendered, Failure> {
    match template.render() {
        Ok(html) => Ok(Rendered::weak(html, "text/html; charset=utf-8")),
        Err(e) => {
            tracing::error!(error = %e, "template");
            Err(Failure(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PageParams {
    before: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct CommentParams {
    after: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = params.ok().and_then(|Query(p)| p.before);
    let make = async {
        let page = state.store.list_posts(PAGE_SIZE, before).await?;
        render(PostsPage {
            posts: page.posts.into_iter().map(view).collect(),
            next: page.next,
        })
    };
    cached(&state.cache, &headers, Key::ListPage { before }, make).await
}

/// A post and a page of its comments, oldest first (`?after=ID` for the next page).
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<CommentParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Failure(StatusCode::NOT_FOUND).into_response();
    };
    let after = params.ok().and_then(|Query(p)| p.after);
    let make = async {
        let (post, page) = state
            .store
            .post_with_comments(id, crate::api::COMMENTS_PER_PAGE, after)
            .await?;
        render(PostPage {
            post: view(post),
            later: after.is_some_and(|after| after > 0),
            next: page.next,
            comments: page
                .comments
                .into_iter()
                .map(|c| CommentView {
                    created: crate::rfc3339(c.created_at),
                    author: c.author,
                    body: c.body,
                })
                .collect(),
        })
    };
    cached(&state.cache, &headers, Key::PostPage { id, after }, make).await
}
