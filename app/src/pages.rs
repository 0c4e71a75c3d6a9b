//! Server-rendered pages for people. Askama templates escape every value by default.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use crate::{AppState, store::StoreError};

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

/// A page-level error: plain text, no details.
fn failure(error: StoreError) -> Response {
    let status = crate::api::ApiError::from(error).status();
    let text = match status {
        StatusCode::NOT_FOUND => "Not found.",
        StatusCode::SERVICE_UNAVAILABLE => "The database is unavailable; try again shortly.",
        _ => "Something went wrong.",
    };
    (status, text).into_response()
}

fn render(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.").into_response()
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
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let before = params.ok().and_then(|Query(p)| p.before);
    match state.store.list_posts(PAGE_SIZE, before).await {
        Ok(page) => render(PostsPage {
            posts: page.posts.into_iter().map(view).collect(),
            next: page.next,
        }),
        Err(e) => failure(e),
    }
}

/// A post and a page of its comments, oldest first (`?after=ID` for the next page).
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<CommentParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return failure(StoreError::NotFound);
    };
    let after = params.ok().and_then(|Query(p)| p.after);
    let post = match state.store.get_post(id).await {
        Ok(post) => post,
        Err(e) => return failure(e),
    };
    let page = crate::api::COMMENTS_PER_PAGE;
    match state.store.comments(id, page, after).await {
        Ok(page) => render(PostPage {
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
        }),
        Err(e) => failure(e),
    }
}
