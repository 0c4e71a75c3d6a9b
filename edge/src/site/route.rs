//! One route of a site: which requests it takes (path prefix or exact path, methods) and what
//! answers them.

use std::{
    convert::Infallible,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
    uri::PathAndQuery,
};
use tower::{Service, ServiceExt};

use super::{
    Trusted,
    config::{Action, HeaderRules, RouteConfig},
    plain,
};
use crate::{Error, files::StaticFiles, service::EdgeService};

/// A route, serving.
pub(super) struct Route {
    path: String,
    exact: bool,
    methods: Vec<Method>,
    strip_prefix: bool,
    /// Largest request body.
    max_body: u64,
    request_headers: Rules,
    response_headers: Rules,
    handler: Handler,
}

enum Handler {
    Files {
        files: Option<StaticFiles>,
        index: Vec<String>,
        try_files: Vec<String>,
    },
    App(App),
    Proxy(Arc<crate::proxy::Proxy>),
    FastCgi(Arc<crate::fastcgi::FastCgi>),
    Redirect {
        to: String,
        status: StatusCode,
    },
    Respond {
        status: StatusCode,
        body: Bytes,
    },
}

/// Header rules, checked.
#[derive(Default)]
struct Rules {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Rules {
    fn new(rules: &HeaderRules) -> Rules {
        Rules {
            set: rules
                .set
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
            remove: rules
                .remove
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// What the request looked like before a route rewrote its path (FastCGI's `REQUEST_URI`, a
/// redirect's `{uri}`); only where a route did (`strip_prefix`), else the request's own URI.
#[derive(Debug, Clone)]
pub struct OriginalUri(pub Uri);

/// The built-in app as routes hand it requests: its service, and the paths it answers. A
/// request an `app` route takes for any other path goes to the site's files at once, rather
/// than through the app's router to find it has no route there ([`Fallthrough`]): the 2 KB
/// page of the default site cost 7% more so.
#[derive(Clone, Debug)]
pub struct App {
    service: EdgeService,
    /// Each, and whatever is below it (whole segments); `/` for all.
    paths: Arc<[String]>,
}

impl App {
    /// `service`, answering `paths` and what is below each: it must have no route elsewhere.
    pub fn new(service: EdgeService, paths: impl IntoIterator<Item = impl Into<String>>) -> App {
        App {
            service,
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// `service`, given every request of its routes.
    pub fn everywhere(service: EdgeService) -> App {
        App::new(service, ["/"])
    }

    fn answers(&self, path: &str) -> bool {
        self.paths.iter().any(|prefix| prefix_matches(prefix, path))
    }
}

/// The site's own static files, for the app's unknown paths.
#[derive(Clone)]
pub(crate) struct SiteFiles(pub Option<StaticFiles>);

/// The fallback of the built-in app's router: paths the app does not know are the site's static
/// files (`root`), or a 404 where the site has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fallthrough;

impl Service<Request<Body>> for Fallthrough {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let files = request
            .extensions_mut()
            .remove::<SiteFiles>()
            .and_then(|SiteFiles(files)| files);
        Box::pin(async move { Ok(not_the_apps(files.as_ref(), request).await) })
    }
}

/// A request of an `app` route for a path the app has no route for: the site's static files,
/// or a 404 where the site has none. Both ways there: through the app's router ([`Fallthrough`])
/// and straight from the route, for paths outside the app's own ([`App`]).
async fn not_the_apps(files: Option<&StaticFiles>, request: Request<Body>) -> Response<Body> {
    match files {
        Some(files) => match files.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

impl Route {
    /// `/readyz` on every site: the node's readiness, which `[[dns.health]]` checks probe.
    pub(super) fn readyz(app: App, max_body: u64) -> Route {
        Route {
            path: "/readyz".to_string(),
            exact: true,
            methods: vec![Method::GET, Method::HEAD],
            strip_prefix: false,
            max_body,
            request_headers: Rules::default(),
            response_headers: Rules::default(),
            handler: Handler::App(app),
        }
    }

    /// A site without routes: its static files.
    pub(super) fn files_only(files: Option<StaticFiles>, max_body: u64) -> Route {
        Route {
            path: "/".to_string(),
            exact: false,
            methods: Vec::new(),
            strip_prefix: false,
            max_body,
            request_headers: Rules::default(),
            response_headers: Rules::default(),
            handler: Handler::Files {
                files,
                index: vec!["index.html".to_string()],
                try_files: Vec::new(),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        site: &str,
        config: &RouteConfig,
        files: Option<StaticFiles>,
        app: &App,
        upstreams: &crate::proxy::Registry,
        fastcgi: &crate::fastcgi::Registry,
        trusted: &Arc<Trusted>,
        https_port: u16,
        default_max_body: u64,
    ) -> Result<Route, Error> {
        let handler = match &config.action {
            Action::Files(spec) => Handler::Files {
                files,
                index: spec.index.clone(),
                try_files: spec.try_files.clone(),
            },
            Action::App => Handler::App(app.clone()),
            Action::Proxy(spec) => Handler::Proxy(Arc::new(crate::proxy::Proxy::new(
                site,
                &config.path,
                spec,
                upstreams,
                trusted.clone(),
            )?)),
            Action::FastCgi(spec) => {
                let Some(files) = files else {
                    return Err(Error::Config {
                        key: "site.route".to_string(),
                        reason: format!("{:?}: FastCGI needs a root", config.path),
                    });
                };
                Handler::FastCgi(Arc::new(crate::fastcgi::FastCgi::new(
                    site,
                    &config.path,
                    spec,
                    files,
                    fastcgi,
                    trusted.clone(),
                    https_port,
                )?))
            }
            Action::Redirect { to, status } => Handler::Redirect {
                to: to.clone(),
                status: StatusCode::from_u16(*status).unwrap_or(StatusCode::PERMANENT_REDIRECT),
            },
            Action::Respond { status, body } => Handler::Respond {
                status: StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                body: Bytes::from(body.clone()),
            },
        };
        Ok(Route {
            path: config.path.clone(),
            exact: config.exact,
            methods: config
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            strip_prefix: config.strip_prefix,
            max_body: config.max_body_bytes.unwrap_or(default_max_body),
            request_headers: Rules::new(&config.request_headers),
            response_headers: Rules::new(&config.response_headers),
            handler,
        })
    }

    /// Whether the route takes `request`: its path, then its methods.
    pub(super) fn matches<B>(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        let path_matches = if self.exact {
            path == self.path
        } else {
            prefix_matches(&self.path, path)
        };
        path_matches && (self.methods.is_empty() || self.methods.contains(request.method()))
    }

    /// Whether `request` declares a body longer than the route takes (413).
    fn declared_too_large(&self, request: &Request<Body>) -> bool {
        request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|length| length > self.max_body)
    }

    /// The static files this route hands `request` to untouched, if it does: a files route as
    /// `ServeDir` serves (no `try_files`, the plain index), or the app's route for a path the
    /// app does not answer (`site_files`), with no header rules, no rewrite and no declared
    /// body over the limit (files never read a body). The site then answers from their kept
    /// responses at once (`Sites::call`).
    pub(super) fn untouched_files<'a>(
        &'a self,
        request: &Request<Body>,
        site_files: Option<&'a StaticFiles>,
    ) -> Option<&'a StaticFiles> {
        if self.strip_prefix
            || !self.request_headers.is_empty()
            || !self.response_headers.is_empty()
            || (!http_body::Body::is_end_stream(request.body()) && self.declared_too_large(request))
        {
            return None;
        }
        match &self.handler {
            Handler::Files {
                files,
                index,
                try_files,
            } if as_serve_dir(index, try_files) => files.as_ref(),
            Handler::App(app) if !app.answers(request.uri().path()) => site_files,
            _ => None,
        }
    }

    pub(super) async fn handle(
        &self,
        mut request: Request<Body>,
        site_files: Option<&StaticFiles>,
    ) -> Response<Body> {
        if self.declared_too_large(&request) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        // A request without a body (most) needs no counting.
        if !http_body::Body::is_end_stream(request.body()) {
            let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
            request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
        }
        self.request_headers.apply(request.headers_mut());
        if self.strip_prefix {
            let original = request.uri().clone();
            let rest = stripped(&self.path, original.path());
            let mut parts = original.clone().into_parts();
            let rewritten = match original.query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_string(),
            };
            parts.path_and_query = PathAndQuery::try_from(rewritten).ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
            request.extensions_mut().insert(OriginalUri(original));
        }
        let mut response = match &self.handler {
            Handler::Files {
                files,
                index,
                try_files,
            } => match files {
                Some(files) => serve_files(files, index, try_files, request).await,
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            },
            Handler::App(app) if app.answers(request.uri().path()) => {
                request
                    .extensions_mut()
                    .insert(SiteFiles(site_files.cloned()));
                match app.service.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            Handler::App(_) => not_the_apps(site_files, request).await,
            // Boxed: their futures are kilobytes, and inline they would make every request's
            // future (a static file's too) as large, copied whole as it is boxed.
            Handler::Proxy(proxy) => Box::pin(proxy.clone().handle(request)).await,
            Handler::FastCgi(fastcgi) => Box::pin(fastcgi.clone().handle(request)).await,
            Handler::Redirect { to, status } => redirect(to, *status, &request),
            Handler::Respond { status, body } => {
                let mut response = Response::new(Body::from(body.clone()));
                *response.status_mut() = *status;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                response
            }
        };
        self.response_headers.apply(response.headers_mut());
        response
    }
}

/// Whether `path` is under the prefix `prefix`: `/api/` takes `/api/x`; `/api` takes `/api`
/// and `/api/x` but not `/apix`; `/` takes everything.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `path` without the route's prefix, still starting with `/`.
fn stripped<'a>(prefix: &str, path: &'a str) -> std::borrow::Cow<'a, str> {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => rest.into(),
        Some(rest) => format!("/{rest}").into(),
        None => path.into(),
    }
}

fn redirect(to: &str, status: StatusCode, request: &Request<Body>) -> Response<Body> {
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = to.replace("{uri}", path_and_query);
    let mut response = Response::new(Body::empty());
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            *response.status_mut() = status;
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// Whether a files route serves as `ServeDir` does by itself: `index.html`, no `try_files`.
fn as_serve_dir(index: &[String], try_files: &[String]) -> bool {
    try_files.is_empty() && matches!(index, [only] if only == "index.html")
}

/// Static files with `index` names for folders and `try_files`: the first candidate that names
/// a file (or a folder with an index) is served; the last is served whatever it is.
async fn serve_files(
    files: &StaticFiles,
    index: &[String],
    try_files: &[String],
    mut request: Request<Body>,
) -> Response<Body> {
    if as_serve_dir(index, try_files) {
        // ServeDir's own behaviour: index.html, 404.html.
        return match files.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let path = request.uri().path().to_string();
    let default = ["{path}".to_string()];
    let candidates = if try_files.is_empty() {
        &default[..]
    } else {
        try_files
    };
    let mut chosen = None;
    for (i, pattern) in candidates.iter().enumerate() {
        let candidate = pattern.replace("{path}", &path);
        if let Some(found) = existing(files, &candidate, index) {
            chosen = Some(found);
            break;
        }
        if i + 1 == candidates.len() {
            chosen = Some(candidate);
        }
    }
    if let Some(target) = chosen
        && target != path
    {
        let rewritten = match request.uri().query() {
            Some(query) => format!("{target}?{query}"),
            None => target,
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = PathAndQuery::try_from(rewritten).ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    match files.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The path to serve for `candidate` (a request path) if it names a file under the root, or a
/// folder holding one of `index`.
pub(crate) fn existing(files: &StaticFiles, candidate: &str, index: &[String]) -> Option<String> {
    if !matches!(
        crate::files::contained(files.root(), candidate, files.follows_symlinks()),
        crate::files::Containment::Inside
    ) {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(candidate)
        .decode_utf8()
        .ok()?;
    let on_disk = files.root().join(decoded.trim_start_matches('/'));
    let metadata = std::fs::metadata(&on_disk).ok()?;
    if metadata.is_file() {
        return Some(candidate.to_string());
    }
    if metadata.is_dir() {
        for name in index {
            if is_file(&on_disk.join(name)) {
                let slash = if candidate.ends_with('/') { "" } else { "/" };
                return Some(format!("{candidate}{slash}{name}"));
            }
        }
    }
    None
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        let rows = [
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/api/", "/api/x", true),
            ("/api/", "/api", false),
            ("/api", "/api", true),
            ("/api", "/api/x", true),
            ("/api", "/apix", false),
            ("/api", "/ap", false),
        ];
        for (prefix, path, expected) in rows {
            assert_eq!(prefix_matches(prefix, path), expected, "{prefix} {path}");
        }
    }

    #[test]
    fn stripping_keeps_a_leading_slash() {
        assert_eq!(stripped("/api/", "/api/x"), "/x");
        assert_eq!(stripped("/api", "/api"), "/");
        assert_eq!(stripped("/api", "/api/x/y"), "/x/y");
        assert_eq!(stripped("/", "/x"), "/x");
    }
}
