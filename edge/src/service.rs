//! What every request passes through, whichever transport carried it: the access log and
//! compression, around the sites' one service (which stamps each site's headers and applies
//! each route's body limit).

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Version, header};
use http_body::{Frame, SizeHint};
use tower::{Service, ServiceBuilder, util::BoxCloneSyncService};
use tower_http::compression::{Compression, CompressionLayer, Predicate};

use crate::{config::Headers, error::Error, site::Sites};

/// A boxed HTTP service, `Request<Body>` in, `Response<Body>` out: the built-in app as the
/// binary hands it over, and the sites' `Stack` as one service (`Edge::service`).
pub type EdgeService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The address of a request's peer (who is asking), from what its transport set.
pub fn peer(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions.get::<Connection>().map(|c| c.peer)
}

/// Set by the transport on every request: what it knows of the connection. The peer's
/// address ([`peer`]), the TLS server name (a site's requests over another site's certificate
/// get 421), the requests in flight on it (a WebSocket keeps its connection counted while it
/// lasts), and the signal that the server is stopping and long-lived streams must end. One
/// extension for all of it: each one a request carries is an allocation and a map entry.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub peer: SocketAddr,
    pub tls_name: Option<Arc<str>>,
    pub activity: Arc<crate::activity::Activity>,
    pub streams: tokio_util::sync::CancellationToken,
}

/// The headers the front layer puts on every HTTPS response: Alt-Svc always (it names our
/// HTTP/3 port), and the security headers of `[edge.headers]` unless the site set its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    alt_svc: HeaderValue,
    hsts: Option<HeaderValue>,
    csp: Option<HeaderValue>,
    frame_options: Option<HeaderValue>,
}

impl Stamp {
    /// The headers every response of a site gets, with HTTPS on `https_port`.
    pub fn new(https_port: u16, headers: &Headers) -> Result<Stamp, Error> {
        let Headers {
            hsts_max_age,
            hsts_include_subdomains,
            hsts_preload,
            content_security_policy,
            frame_ancestors,
        } = headers;
        let value = |key: &str, text: String| {
            HeaderValue::from_str(&text).map_err(|_| Error::Config {
                key: format!("headers.{key}"),
                reason: format!("not a valid header value: {text:?}"),
            })
        };
        let alt_svc = value("https", format!("h3=\":{https_port}\"; ma=86400"))?;
        let hsts = (*hsts_max_age > 0)
            .then(|| {
                let mut text = format!("max-age={hsts_max_age}");
                if *hsts_include_subdomains {
                    text.push_str("; includeSubDomains");
                }
                if *hsts_preload {
                    text.push_str("; preload");
                }
                value("hsts_max_age", text)
            })
            .transpose()?;
        let policy = match (content_security_policy, frame_ancestors) {
            (Some(policy), Some(ancestors)) => {
                Some(format!("{policy}; frame-ancestors {ancestors}"))
            }
            (Some(policy), None) => Some(policy.clone()),
            (None, Some(ancestors)) => Some(format!("frame-ancestors {ancestors}")),
            (None, None) => None,
        };
        let csp = policy
            .map(|policy| value("content_security_policy", policy))
            .transpose()?;
        // The older header knows only these two.
        let frame_options = match frame_ancestors.as_deref().map(str::trim) {
            Some("'none'") => Some(HeaderValue::from_static("DENY")),
            Some("'self'") => Some(HeaderValue::from_static("SAMEORIGIN")),
            _ => None,
        };
        Ok(Stamp {
            alt_svc,
            hsts,
            csp,
            frame_options,
        })
    }

    pub(crate) fn apply(&self, headers: &mut http::HeaderMap) {
        headers.insert(header::ALT_SVC, self.alt_svc.clone());
        let defaults = [
            (header::STRICT_TRANSPORT_SECURITY, self.hsts.as_ref()),
            (header::CONTENT_SECURITY_POLICY, self.csp.as_ref()),
            (header::X_FRAME_OPTIONS, self.frame_options.as_ref()),
        ];
        // One lookup each: a field the response has already is kept.
        for (name, value) in defaults {
            if let Some(value) = value
                && let http::header::Entry::Vacant(vacant) = headers.entry(name)
            {
                vacant.insert(value.clone());
            }
        }
        if let http::header::Entry::Vacant(vacant) = headers.entry(header::X_CONTENT_TYPE_OPTIONS) {
            vacant.insert(HeaderValue::from_static("nosniff"));
        }
    }
}

/// The sites with what the edge adds to every HTTPS request (the access log and compression),
/// as the transports call them. Every layer is always ready, as the sites are.
pub(crate) type Stack = Front<Compress<Sites>>;

/// The future of a response from the [`Stack`].
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

pub(crate) fn stack(sites: Sites) -> Stack {
    let compression = ServiceBuilder::new()
        .layer(CompressionLayer::new().compress_when(Compressible))
        .service(sites.clone());
    Front {
        inner: Compress {
            plain: sites,
            compression: BoxBody { inner: compression },
        },
    }
}

/// The [`Stack`] as one boxed service.
pub fn edge_service(sites: Sites) -> EdgeService {
    BoxCloneSyncService::new(stack(sites))
}

/// What is compressed on the fly: responses of a compressible type (below) whose length is
/// known and at least [`MIN_COMPRESSED`] bytes. A response of unknown length is streamed as it
/// comes (a proxied chunked response, a script's output, server-sent events): compressing it
/// would hold its bytes back until the compressor's buffer fills.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compressible;

/// tower-http's default threshold: smaller bodies grow when compressed.
const MIN_COMPRESSED: u64 = 32;

impl Predicate for Compressible {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        let length = response.body().size_hint().exact().or_else(|| {
            response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        length.is_some_and(|length| length >= MIN_COMPRESSED) && compressible(response.headers())
    }
}

/// Whether a response's type is one that compresses: text, and the structured formats sent as
/// text. Images, video, archives and `application/octet-stream` are compressed already or at
/// random; compressing them on every request costs CPU for nothing (nginx's `gzip_types` and
/// Caddy's `encode` take the same view); gRPC compresses its own messages. Asked of every
/// response, so it reads the type in place, without a lowercased copy.
fn compressible(headers: &http::HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = content_type
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let is = |name: &str| essence.eq_ignore_ascii_case(name.as_bytes());
    let starts = |prefix: &str| {
        essence
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    let ends = |suffix: &str| {
        essence
            .len()
            .checked_sub(suffix.len())
            .is_some_and(|at| essence[at..].eq_ignore_ascii_case(suffix.as_bytes()))
    };
    if starts("application/grpc") && !starts("application/grpc-web") {
        return false;
    }
    if starts("image/") {
        return is("image/svg+xml");
    }
    (starts("text/") && !is("text/event-stream"))
        || ends("+json")
        || ends("+xml")
        || [
            "application/json",
            "application/javascript",
            "application/xml",
            "application/wasm",
            "font/ttf",
            "font/otf",
            "application/vnd.ms-fontobject",
        ]
        .into_iter()
        .any(is)
}

/// On-the-fly compression (tower-http's), entered only by requests that accept an encoding.
/// Its response body has room for every encoder inline (5.8 KB) and is moved several times on
/// the way out, over a thousand instructions a response where the client asked for no
/// encoding (most clients but browsers). Those get what tower-http would have given them: the
/// response as it is, with `Vary: Accept-Encoding` where it could have been compressed.
#[derive(Clone)]
pub(crate) struct Compress<S> {
    plain: S,
    compression: BoxBody<Compression<S, Compressible>>,
}

impl<S> Service<Request<Body>> for Compress<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Compressing<
        S::Future,
        BoxedBody<tower_http::compression::ResponseFuture<S::Future, Compressible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.plain.poll_ready(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.compression.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.headers().contains_key(header::ACCEPT_ENCODING) {
            Compressing::Encoded(self.compression.call(request))
        } else {
            Compressing::Plain(self.plain.call(request))
        }
    }
}

/// The future of a [`Compress`] response.
pub(crate) enum Compressing<P, E> {
    Plain(P),
    Encoded(E),
}

impl<P, E> Future for Compressing<P, E>
where
    P: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
    E: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Compressing::Plain(future) => Pin::new(future).poll(cx).map_ok(|mut response| {
                vary_if_compressible(&mut response);
                response
            }),
            Compressing::Encoded(future) => Pin::new(future).poll(cx),
        }
    }
}

/// What tower-http's compression adds to a response it leaves as it is: `Vary:
/// Accept-Encoding` where it would have compressed for a client that asked (caches must not
/// give this response to one).
pub(crate) fn vary_if_compressible(response: &mut Response<Body>) {
    let headers = response.headers();
    // Asked first: a kept static response names it already (`StaticFiles::stamped`).
    let named = headers.get_all(header::VARY).iter().any(|value| {
        value
            .as_bytes()
            .windows(b"accept-encoding".len())
            .any(|window| window.eq_ignore_ascii_case(b"accept-encoding"))
    });
    let could = || {
        !headers.contains_key(header::CONTENT_ENCODING)
            && !headers.contains_key(header::CONTENT_RANGE)
            && Compressible.should_compress(response)
    };
    if !named && could() {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

#[derive(Clone)]
pub(crate) struct BoxBody<S> {
    inner: S,
}

impl<S, B> Service<Request<Body>> for BoxBody<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    S::Future: Unpin,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxedBody<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        BoxedBody(self.inner.call(request))
    }
}

pub(crate) struct BoxedBody<F>(F);

impl<F, B> Future for BoxedBody<F>
where
    F: Future<Output = Result<Response<B>, Infallible>> + Unpin,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map_ok(|response| response.map(|body| Body::new(Box::pin(body))))
    }
}

/// The outermost layer: logs one line per request when its response body has been sent (or
/// dropped): method, path, status, bytes, duration, protocol, peer.
#[derive(Clone)]
pub(crate) struct Front<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for Front<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // What only the access line shows is kept only when access lines are written, and
        // kept without copies: the request's URI and header values share its buffers.
        let logged = crate::access::enabled().then(|| {
            let header = |name: http::header::HeaderName| request.headers().get(name).cloned();
            Box::new(Logged {
                uri: request.uri().clone(),
                // HTTP/2 and HTTP/3 carry the host as :authority, HTTP/1.1 as Host.
                host: match request.uri().authority() {
                    Some(_) => None,
                    None => header(http::header::HOST),
                },
                user_agent: header(http::header::USER_AGENT),
                referer: header(http::header::REFERER),
                id: request_id(),
                peer: peer(request.extensions()),
            })
        });
        let line = Line {
            start: Instant::now(),
            method: request.method().clone(),
            version: request.version(),
            status: 0,
            logged,
        };
        // `poll_ready` readied `inner`, so it is called here and only its future goes into
        // this one: no clone of the stack and no `Oneshot` state per request.
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let status = response.status().as_u16();
            Ok(response.map(|body| {
                Body::new(Counted {
                    body,
                    bytes: 0,
                    line: Some(Line { status, ..line }),
                })
            }))
        })
    }
}

struct Line {
    start: Instant,
    method: Method,
    version: Version,
    status: u16,
    /// What the access line adds, when access lines are written.
    logged: Option<Box<Logged>>,
}

struct Logged {
    uri: http::Uri,
    peer: Option<SocketAddr>,
    /// The Host header, when the URI has no authority.
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    id: u64,
}

/// A request's id in the access log: unique in this process and, by a random start, across
/// processes and restarts; written as 16 hex digits.
fn request_id() -> u64 {
    static NEXT: std::sync::LazyLock<std::sync::atomic::AtomicU64> =
        std::sync::LazyLock::new(|| {
            let mut seed = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
            std::sync::atomic::AtomicU64::new(u64::from_be_bytes(seed))
        });
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A response body that counts what it sends and logs the request when done.
struct Counted {
    body: Body,
    bytes: u64,
    line: Option<Line>,
}

impl Counted {
    fn log(&mut self) {
        if let Some(line) = self.line.take() {
            let micros = line.start.elapsed().as_micros() as u64;
            crate::metrics::metrics().request(
                crate::metrics::Protocol::of(line.version),
                &line.method,
                line.status,
                micros,
                self.bytes,
            );
            if let Some(logged) = line.logged {
                crate::access::write(&crate::access::Entry {
                    method: &line.method,
                    path: logged.uri.path(),
                    status: line.status,
                    bytes: self.bytes,
                    micros,
                    version: line.version,
                    peer: logged.peer,
                    host: match logged.uri.authority() {
                        Some(authority) => Some(authority.as_str().as_bytes()),
                        None => logged.host.as_ref().map(HeaderValue::as_bytes),
                    },
                    user_agent: logged.user_agent.as_ref().map(HeaderValue::as_bytes),
                    referer: logged.referer.as_ref().map(HeaderValue::as_bytes),
                    request_id: logged.id,
                });
            }
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.log();
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.log(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, body: &'static str) -> Response<Body> {
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("a valid header value"),
        );
        response
    }

    #[test]
    fn compressible_types_are_text_and_structured_text() {
        let page = "x".repeat(64).leak();
        for (content_type, expected) in [
            ("text/html", true),
            ("Text/HTML; charset=utf-8", true),
            (" text/css ;charset=utf-8", true),
            ("text/event-stream", false),
            ("application/json", true),
            ("application/problem+json", true),
            ("application/atom+XML", true),
            ("image/svg+xml", true),
            ("image/png", false),
            ("image/x-custom+xml", false),
            ("application/grpc", false),
            ("application/grpc+json", false),
            ("application/grpc-web+json", true),
            ("application/octet-stream", false),
            ("font/ttf", true),
            ("font/woff2", false),
            ("", false),
        ] {
            let response = response(content_type, page);
            assert_eq!(
                Compressible.should_compress(&response),
                expected,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn small_or_unknown_length_bodies_are_not_compressed() {
        assert!(!Compressible.should_compress(&response("text/html", "short")));
        let mut streamed = response("text/html", "");
        *streamed.body_mut() =
            Body::from_stream(futures_util::stream::empty::<Result<Bytes, std::io::Error>>());
        assert!(!Compressible.should_compress(&streamed));
        streamed
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
        assert!(Compressible.should_compress(&streamed));
    }
}
