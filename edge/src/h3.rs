//! HTTP/3: QUIC connections from quinn, requests from h3, each turned into the same
//! `Request<Body>` the TCP side produces and answered by the same service.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;
use tracing::debug;

use crate::{
    Limits,
    service::{EdgeService, Peer},
};

/// Accepts QUIC connections until `shutdown`; then each connection sends GOAWAY and finishes
/// the requests it has.
pub async fn serve_h3(
    endpoint: quinn::Endpoint,
    service: EdgeService,
    limits: Arc<Limits>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            incoming.refuse();
            continue;
        }
        let service = service.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        let request_tasks = tasks.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            if let Err(e) = connection(incoming, service, &limits, request_tasks, shutdown).await {
                debug!(error = %e, "h3 connection");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // No new connections; open ones drain through their own shutdown handling.
    endpoint.set_server_config(None);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connection(
    incoming: quinn::Incoming,
    service: EdgeService,
    limits: &Limits,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let connection = tokio::time::timeout(limits.header_timeout, incoming).await??;
    let peer = connection.remote_address();
    let mut h3 = h3::server::builder()
        .max_field_section_size(limits.max_header_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await?;
    let mut draining = false;
    loop {
        let resolver = tokio::select! {
            accepted = h3.accept() => match accepted? {
                Some(resolver) => resolver,
                None => return Ok(()),
            },
            () = shutdown.cancelled(), if !draining => {
                // GOAWAY: requests already started finish, new ones go elsewhere.
                draining = true;
                h3.shutdown(0).await?;
                continue;
            }
        };
        let service = service.clone();
        tasks.spawn(async move {
            let (request, stream) = match resolver.resolve_request().await {
                Ok(resolved) => resolved,
                Err(e) => {
                    debug!(%peer, error = %e, "h3 request");
                    return;
                }
            };
            if let Err(e) = request_stream(request, stream, service, peer).await {
                debug!(%peer, error = %e, "h3 request");
            }
        });
    }
}

/// Answers one request: the body streams in through [`RequestBody`], the response body streams
/// out frame by frame, trailers included.
async fn request_stream<S>(
    request: Request<()>,
    stream: RequestStream<S, Bytes>,
    service: EdgeService,
    peer: std::net::SocketAddr,
) -> Result<(), BoxError>
where
    S: h3::quic::BidiStream<Bytes> + Send + 'static,
    S::RecvStream: Send + Unpin + 'static,
{
    let (mut send, recv) = stream.split();
    let (parts, ()) = request.into_parts();
    let mut request = Request::from_parts(parts, Body::new(RequestBody::new(recv)));
    request.extensions_mut().insert(Peer(peer));
    let response = service.oneshot(request).await?;
    let (parts, mut body) = response.into_parts();
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}

/// A request body read from an h3 stream: data frames, then trailers.
struct RequestBody<R> {
    recv: RequestStream<R, Bytes>,
    state: Reading,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    Data,
    Trailers,
    Done,
}

impl<R> RequestBody<R> {
    fn new(recv: RequestStream<R, Bytes>) -> Self {
        RequestBody {
            recv,
            state: Reading::Data,
        }
    }
}

impl<R> http_body::Body for RequestBody<R>
where
    R: h3::quic::RecvStream + Send + Unpin,
{
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.state == Reading::Data {
            match self.recv.poll_recv_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(Some(mut data))) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Poll::Ready(Ok(None)) => self.state = Reading::Trailers,
            }
        }
        if self.state == Reading::Done {
            return Poll::Ready(None);
        }
        let polled = self.recv.poll_recv_trailers(cx);
        if polled.is_ready() {
            self.state = Reading::Done;
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
        }
    }
}
