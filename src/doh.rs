//! DNS over HTTPS (RFC 8484) on the web edge: GET with `?dns=` (base64url) and POST of an
//! `application/dns-message` body at `[dns] https_path`, answered by the DNS service. It is
//! part of the built-in app's service (a GET answered in front of its router, [`Gets`], the
//! rest a route of it), so the edge carries it over HTTP/1.1, HTTP/2 and HTTP/3 with its
//! certificates; wired here because the edge knows nothing of DNS.

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Extension, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use foobar_app::ClientAddress;
use foobar_dns::Dns;

/// The media type of a DNS message (RFC 8484 section 6).
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message.
const MAX_MESSAGE: usize = 65_535;

/// `app` with DNS over HTTPS at `path` (none when `path` is empty).
pub fn routes(app: Router, path: &str, dns: Dns) -> Router {
    if path.is_empty() {
        return app;
    }
    app.merge(
        Router::new()
            .route(path, get(by_get_route).post(by_post))
            .layer(DefaultBodyLimit::max(MAX_MESSAGE))
            .with_state(dns),
    )
}

/// `app` (with [`routes`] merged in) behind a GET of `path` answered without it: the router's
/// matching, URL parameters, extractors and the client-address layer took 7,000 instructions
/// of a 57,600-instruction answer over HTTP/2. Other methods at `path` (POST with
/// its body limit, HEAD, and the 405 for the rest) still go through the route.
#[derive(Clone)]
pub struct Gets {
    app: Router,
    path: std::sync::Arc<str>,
    dns: Dns,
}

impl Gets {
    pub fn new(app: Router, path: &str, dns: Dns) -> Gets {
        Gets {
            app,
            path: path.into(),
            dns,
        }
    }
}

impl tower::Service<axum::extract::Request> for Gets {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<axum::extract::Request>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Answer {
        // (A request's path is never empty, so an empty `path`, DoH off, matches none.)
        if request.method() == axum::http::Method::GET && request.uri().path() == &*self.path {
            let address = foobar_edge::client_ip(request.extensions());
            let response = by_get(&self.dns, address, request.uri());
            return Answer::Now(std::future::ready(Ok(response)));
        }
        Answer::App(self.app.call(request))
    }
}

/// What [`Gets`] answers with: a DoH GET's response at once, or the router's.
pub enum Answer {
    Now(std::future::Ready<Result<Response, std::convert::Infallible>>),
    App(axum::routing::future::RouteFuture<std::convert::Infallible>),
}

impl std::future::Future for Answer {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Answer::Now(ready) => std::pin::Pin::new(ready).poll(cx),
            Answer::App(future) => std::pin::Pin::new(future).poll(cx),
        }
    }
}

async fn by_get_route(
    State(dns): State<Dns>,
    client: Option<Extension<ClientAddress>>,
    uri: Uri,
) -> Response {
    by_get(&dns, client.map(|Extension(a)| a.0), &uri)
}

fn by_get(dns: &Dns, client: Option<std::net::IpAddr>, uri: &Uri) -> Response {
    let encoded = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="));
    let Some(encoded) = encoded else {
        return refused(StatusCode::BAD_REQUEST, "no dns parameter");
    };
    // RFC 8484 section 4.1: base64url with the padding left out.
    if encoded.len() > MAX_MESSAGE.div_ceil(3) * 4 {
        return refused(
            StatusCode::URI_TOO_LONG,
            "the message is longer than 65,535 bytes",
        );
    }
    match data_encoding::BASE64URL_NOPAD.decode(encoded.trim_end_matches('=').as_bytes()) {
        Ok(query) => answer(dns, &query, client),
        Err(_) => refused(
            StatusCode::BAD_REQUEST,
            "the dns parameter is not base64url",
        ),
    }
}

async fn by_post(
    State(dns): State<Dns>,
    client: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|media| media.eq_ignore_ascii_case(DNS_MESSAGE)) {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/dns-message",
        );
    }
    answer(&dns, &body, client.map(|Extension(a)| a.0))
}

/// The DNS answer as an HTTP response, fresh for as long as its smallest TTL (RFC 8484 section
/// 5.1).
fn answer(dns: &Dns, query: &[u8], client: Option<std::net::IpAddr>) -> Response {
    let address = client.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let Some((message, ttl)) = dns.answer_https(query, address) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "not a DNS query this server answers over HTTPS",
        );
    };
    let length = HeaderValue::from(message.len());
    let mut response = message.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    headers.insert(header::CONTENT_LENGTH, length);
    // Without `format!`: 440 instructions of a 58,000-instruction answer.
    let max_age = ["max-age=", itoa::Buffer::new().format(ttl)].concat();
    if let Ok(value) = HeaderValue::try_from(max_age) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

fn refused(status: StatusCode, reason: &'static str) -> Response {
    (status, reason).into_response()
}
