//! DNS over HTTPS (RFC 8484) on the web edge: GET with `?dns=` (base64url) and POST of an
//! `application/dns-message` body at `[dns] https_path`, answered by the DNS service. It is a
//! route of the built-in app, so the edge carries it over HTTP/1.1, HTTP/2 and HTTP/3 with its
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
            .route(path, get(by_get).post(by_post))
            .layer(DefaultBodyLimit::max(MAX_MESSAGE))
            .with_state(dns),
    )
}

async fn by_get(
    State(dns): State<Dns>,
    client: Option<Extension<ClientAddress>>,
    uri: Uri,
) -> Response {
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
        Ok(query) => answer(&dns, &query, client),
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
    answer(&dns, &body, client)
}

/// The DNS answer as an HTTP response, fresh for as long as its smallest TTL (RFC 8484 section
/// 5.1).
fn answer(dns: &Dns, query: &[u8], client: Option<Extension<ClientAddress>>) -> Response {
    let address = client.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |Extension(a)| a.0);
    let Some((message, ttl)) = dns.answer_https(query, address) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "not a DNS query this server answers over HTTPS",
        );
    };
    let mut response = message.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
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
