//! HTTPS over TCP (TLS, then HTTP/2 or HTTP/1.1 by ALPN, served by hyper-util's auto builder),
//! and the plain-HTTP listener that redirects to HTTPS.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::body::Body;
use http::{Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::{
    Limits,
    service::{EdgeService, Peer},
};

/// Accepts TLS connections until `shutdown`, then asks each open connection to finish (GOAWAY
/// on HTTP/2, `Connection: close` on HTTP/1.1) through `graceful`.
pub async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    service: EdgeService,
    limits: Arc<Limits>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        // RFC 9113 rapid reset (CVE-2023-44487): bound resets a client may cause.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    loop {
        let Some((permit, stream, peer)) = accept(&listener, &slots, &shutdown).await else {
            break;
        };
        let tls = tls.clone();
        let service = service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tasks.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream = match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "tls handshake");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "tls handshake timed out");
                    return;
                }
            };
            let activity = Arc::new(Activity::new());
            let tracked = activity.clone();
            let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(Peer(peer));
                let guard = tracked.begin();
                let response = service.clone().oneshot(request);
                async move {
                    let response = response.await?;
                    // The request counts as active until its response body is done or dropped.
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        Body::new(Tracked {
                            body,
                            _guard: guard,
                        })
                    }))
                }
            });
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), hyper_service)
                .into_owned();
            let connection = watcher.watch(connection);
            tokio::pin!(connection);
            // The idle bound (for HTTP/2 above all: a client that answers pings but sends
            // nothing would otherwise hold its connection forever): no request in flight for
            // `idle_timeout` closes the connection; HTTP/1.1's header timeout also covers it.
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = activity.idle_for(limits.idle_timeout) => Ok(()),
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "https connection");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

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

/// Plain HTTP/1.1: every request gets a 308 to the same host, path and query over HTTPS.
pub async fn serve_redirect(
    listener: TcpListener,
    https: SocketAddr,
    limits: Arc<Limits>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    loop {
        let Some((permit, stream, peer)) = accept(&listener, &slots, &shutdown).await else {
            break;
        };
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(redirect(&request, https))
            }),
        );
        let watched = graceful.watch(connection);
        tasks.spawn(async move {
            if let Err(e) = watched.await {
                debug!(%peer, error = %e, "http connection");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// Milliseconds since `start` when the connection last went quiet.
    quiet_since: std::sync::atomic::AtomicU64,
    start: std::time::Instant,
}

struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.quiet_since.store(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            quiet_since: std::sync::atomic::AtomicU64::new(0),
            start: std::time::Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    /// Completes once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        use std::sync::atomic::Ordering;
        loop {
            let quiet = Duration::from_millis(self.quiet_since.load(Ordering::Relaxed));
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            let deadline = quiet + limit;
            let now = self.start.elapsed();
            if !busy && now >= deadline {
                return;
            }
            let wait = if busy { limit } else { deadline - now };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A response body that keeps its request counted as active until it is finished or dropped.
struct Tracked {
    body: Body,
    _guard: ActiveRequest,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
