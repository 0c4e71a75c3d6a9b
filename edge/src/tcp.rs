//! HTTPS over TCP (TLS, then HTTP/2 or HTTP/1.1 by ALPN, served by hyper-util's auto builder),
//! and the plain-HTTP listener that redirects to HTTPS.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::body::Body;
use http::{Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulConnection},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use crate::{
    Current, Limits,
    activity::{Activity, Tracked},
    coalesce::Coalesce,
    metrics::{Protocol, metrics},
    service::Connection,
};

/// How long a connection that has not yet sent its first request is waited for when the server
/// stops (see `Activity::first_request`).
pub(crate) const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Accepts TLS connections until `shutdown`, then asks each open connection to finish (GOAWAY
/// on HTTP/2, `Connection: close` on HTTP/1.1) once it has had its first request.
pub async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    service: Current,
    current: Arc<ArcSwap<Limits>>,
    tasks: TaskTracker,
    (shutdown, streams): (CancellationToken, CancellationToken),
) {
    let mut limits = current.load_full();
    let mut built = Built::for_limits(&limits);
    loop {
        let Some((permit, stream, peer)) = accept(&listener, &built.slots, &shutdown).await else {
            break;
        };
        // A reloaded configuration applies from the next connection on.
        let now = current.load_full();
        if !Arc::ptr_eq(&now, &limits) {
            limits = now;
            built = Built::for_limits(&limits);
        }
        let Some(slot) = limits.per_address.take(peer.ip()) else {
            debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        let (http1, http2) = (built.http1.clone(), built.http2.clone());
        let tls = tls.clone();
        let service = service.clone();
        let shutdown = shutdown.clone();
        let streams = streams.clone();
        let limits = limits.clone();
        let lingering = tasks.clone();
        tasks.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream = Coalesce::new(stream);
            let mut stream =
                match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics().handshake(false);
                        debug!(%peer, error = %e, "tls handshake");
                        return;
                    }
                    Err(_) => {
                        metrics().handshake(false);
                        debug!(%peer, "tls handshake timed out");
                        return;
                    }
                };
            metrics().handshake(true);
            if stream.get_ref().1.alpn_protocol() == Some(crate::challenge::ACME_TLS_ALPN) {
                // RFC 8737 section 3: a TLS-ALPN-01 validation ends with the handshake.
                debug!(%peer, "acme-tls/1 handshake answered");
                return;
            }
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            if h2 {
                stream.get_mut().0.hold_writes();
            }
            let protocol = if h2 { Protocol::H2 } else { Protocol::H1 };
            metrics().opened(protocol);
            let activity = Activity::new();
            let tracked = activity.clone();
            let max_head = limits.max_header_bytes;
            let connection_info = Connection {
                peer,
                tls_name: stream.get_ref().1.server_name().map(Arc::from),
                activity: activity.clone(),
                streams,
            };
            let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let too_large = head_too_large(&request, max_head);
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(connection_info.clone());
                let guard = tracked.begin();
                let response = service.respond(request);
                async move {
                    if too_large {
                        return Ok(header_fields_too_large());
                    }
                    let response = response.await?;
                    // The request counts as active until its response body is done or dropped.
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| Body::new(Tracked::new(body, guard))),
                    )
                }
            });
            let io = TokioIo::new(SendTimeout::new(
                Linger::new(stream, lingering.clone()),
                limits.send_timeout,
            ));
            let connection: Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> = if h2 {
                let connection = http2.serve_connection(io, hyper_service).into_owned();
                Box::pin(until_shutdown(connection, activity.clone(), shutdown))
            } else {
                let connection = http1
                    .serve_connection_with_upgrades(io, hyper_service)
                    .into_owned();
                Box::pin(until_shutdown(connection, activity.clone(), shutdown))
            };
            // The idle bound (for HTTP/2 above all: a client that answers pings but sends
            // nothing would otherwise hold its connection forever): no request in flight for
            // `idle_timeout` closes the connection; HTTP/1.1's header timeout also covers it.
            let result = tokio::select! {
                result = connection => result,
                () = activity.idle_for(limits.idle_timeout) => Ok(()),
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "https connection");
            }
            // An HTTP/1.1 connection upgraded to a WebSocket lives on in its relay, which
            // counts as a request in flight: it keeps its connection slots until it ends.
            activity.quiet().await;
            metrics().closed(protocol);
            drop((permit, slot));
        });
    }
    drop(listener);
}

/// What a listener makes from its limits: the connection slots and the protocol builders.
struct Built {
    slots: Arc<Semaphore>,
    http1: Arc<auto::Builder<TokioExecutor>>,
    http2: Arc<auto::Builder<TokioExecutor>>,
}

impl Built {
    fn for_limits(limits: &Limits) -> Built {
        let mut http1 = auto::Builder::new(TokioExecutor::new());
        http1
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        // ALPN chose HTTP/2: only HTTP/2 is spoken, so a bad preface gets a GOAWAY, not an
        // HTTP/1.1 400 (RFC 9113 section 3.4).
        let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        http2
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams)
            .max_header_list_size(limits.max_header_bytes as u32)
            // RFC 9113 rapid reset (CVE-2023-44487): bound resets a client may cause.
            .max_pending_accept_reset_streams(20)
            // RFC 8441: WebSockets over HTTP/2 (extended CONNECT).
            .enable_connect_protocol()
            .max_local_error_reset_streams(1024)
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(Duration::from_secs(20));
        Built {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            http1: Arc::new(http1),
            http2: Arc::new(http2),
        }
    }
}

/// Serves `connection` to its end; when `shutdown` fires, lets its first request come if it has
/// had none (within `FIRST_REQUEST_GRACE`), then shuts it down gracefully: what is in flight
/// finishes, and it closes.
async fn until_shutdown<C>(
    connection: C,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
) -> Result<(), BoxError>
where
    C: GracefulConnection,
    C::Error: Into<BoxError>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result.map_err(Into::into),
        () = shutdown.cancelled() => {}
    }
    tokio::select! {
        result = connection.as_mut() => return result.map_err(Into::into),
        () = activity.first_request(FIRST_REQUEST_GRACE) => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await.map_err(Into::into)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The next connection, once a connection slot is free; `None` at shutdown.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        permit = slots.clone().acquire_owned() => permit.ok()?,
        () = shutdown.cancelled() => return None,
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((permit, stream, peer)),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep the slot.
                    warn!(error = %e, addr = ?listener.local_addr().ok(), "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Plain HTTP/1.1: every request gets a 308 to the same host, path and query over HTTPS,
/// except the ACME HTTP-01 challenges being answered (`challenges`).
pub async fn serve_redirect(
    listener: TcpListener,
    https: SocketAddr,
    challenges: Arc<crate::challenge::Challenges>,
    current: Arc<ArcSwap<Limits>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut limits = current.load_full();
    let mut slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let Some((permit, stream, peer)) = accept(&listener, &slots, &shutdown).await else {
            break;
        };
        let now = current.load_full();
        if !Arc::ptr_eq(&now, &limits) {
            limits = now;
            slots = Arc::new(Semaphore::new(limits.max_connections));
        }
        let Some(slot) = limits.per_address.take(peer.ip()) else {
            debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let max_head = limits.max_header_bytes;
        let activity = Activity::new();
        let tracked = activity.clone();
        let challenges = challenges.clone();
        let connection = builder.serve_connection(
            TokioIo::new(SendTimeout::new(stream, limits.send_timeout)),
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let _request = tracked.begin();
                let answer = challenges.http(request.uri().path());
                async move {
                    if head_too_large(&request, max_head) {
                        return Ok::<_, std::convert::Infallible>(header_fields_too_large());
                    }
                    if let Some(key_authorization) = answer {
                        return Ok(challenge_answer(key_authorization));
                    }
                    metrics().redirected();
                    Ok::<_, std::convert::Infallible>(redirect(&request, https))
                }
            }),
        );
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = until_shutdown(connection, activity, shutdown).await {
                debug!(%peer, error = %e, "http connection");
            }
            drop((permit, slot));
        });
    }
    drop(listener);
}

/// The answer to an ACME HTTP-01 request (RFC 8555 section 8.3).
fn challenge_answer(key_authorization: String) -> Response<Body> {
    let mut response = Response::new(Body::from(key_authorization));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Whether an HTTP/1.x request's head (request line and header lines, as sent) is larger than
/// `max` bytes. hyper bounds it only by its read buffer, which is never below 8 KiB, so a
/// smaller `max_header_bytes` is held here, the same on both HTTP/1.1 listeners. HTTP/2 and
/// HTTP/3 hold it in their own codecs.
fn head_too_large<B>(request: &Request<B>, max: usize) -> bool {
    if request.version() > http::Version::HTTP_11 {
        return false;
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + fields + 2 > max
}

fn header_fields_too_large() -> Response<Body> {
    let mut response = Response::new(Body::from("request header fields too large\n"));
    *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// The HTTPS location for a plain-HTTP request: its host (without port), the HTTPS port unless
/// it is 443, and the original path and query.
fn redirect<B>(request: &Request<B>, https: SocketAddr) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map(|authority| authority.host().to_string())
        .unwrap_or_else(|| match https.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    let port = match https.port() {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    let mut response = Response::new(Body::empty());
    match location.parse::<Uri>() {
        Ok(_) => {
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            if let Ok(value) = header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
        }
        Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// How long a closed connection goes on reading what its client still sends (nginx's
/// `lingering_close`).
const LINGER: Duration = Duration::from_secs(2);

/// A connection that, once the server is done with it, is closed the way nginx closes one: the
/// server's side shut down first (a TLS close_notify, then FIN), then what the client still sends
/// (window updates, a ping, a request it pipelined) read and thrown away until it closes its
/// side or `LINGER` passes. Closing with unread bytes in the receive buffer would send a reset
/// instead of a FIN, and a reset may destroy the end of the response still on its way to the
/// client.
struct Linger<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<S>,
    /// Where the closing runs: tracked, so that the server waits for it when it stops.
    tasks: TaskTracker,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Linger<S> {
    fn new(inner: S, tasks: TaskTracker) -> Self {
        Linger {
            inner: Some(inner),
            tasks,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Linger<S> {
    fn drop(&mut self) {
        let Some(mut stream) = self.inner.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.tasks.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tokio::time::timeout(LINGER, async {
                let _ = stream.shutdown().await;
                let mut scratch = [0u8; 4096];
                while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A stream whose writes fail once they have made no progress for `limit`: a client that
/// stops reading (nginx's `send_timeout`) cannot hold its connection and its buffers forever.
struct SendTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while the current write is stuck.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SendTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        SendTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// `Pending` from a write: fails once the stall has lasted `limit`.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        result: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.stalled(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(result, cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn location(host: Option<&str>, path: &str, https: &str) -> String {
        let mut request = Request::builder().uri(path);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        let response = redirect(&request.body(()).unwrap(), https.parse().unwrap());
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn redirects_keep_host_path_and_query() {
        assert_eq!(
            location(Some("www.foobar.com:8080"), "/a/b?c=d", "127.0.0.1:8443"),
            "https://www.foobar.com:8443/a/b?c=d"
        );
        assert_eq!(
            location(Some("www.foobar.com"), "/", "0.0.0.0:443"),
            "https://www.foobar.com/"
        );
        assert_eq!(
            location(None, "/x", "127.0.0.1:8443"),
            "https://127.0.0.1:8443/x"
        );
        assert_eq!(
            location(Some("[::1]:80"), "/", "[::1]:8443"),
            "https://[::1]:8443/"
        );
    }
}
