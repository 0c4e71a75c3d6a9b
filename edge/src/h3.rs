//! HTTP/3: QUIC connections from quinn, requests from h3, each turned into the same
//! `Request<Body>` the TCP side produces and answered by the same service.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::body::Body;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::debug;

use crate::{Current, Limits, activity::Activity, service::Connection, tcp::FIRST_REQUEST_GRACE};

/// HTTP/3's "no error" code, for connections we close on purpose.
const H3_NO_ERROR: u32 = 0x100;

/// Accepts QUIC connections until `shutdown`; then each connection sends GOAWAY, finishes the
/// requests it has, and closes (at once when it has none).
pub async fn serve_h3(
    endpoint: quinn::Endpoint,
    service: Current,
    current: Arc<ArcSwap<Limits>>,
    tasks: TaskTracker,
    (shutdown, streams): (CancellationToken, CancellationToken),
) {
    let open = Arc::new(AtomicUsize::new(0));
    let handshaking = Arc::new(AtomicUsize::new(0));
    crate::metrics::metrics().quic(&endpoint);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        // A reloaded configuration applies from the next connection on.
        let limits = current.load_full();
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            incoming.refuse();
            continue;
        }
        // RFC 9000 section 8.1: past this many handshakes in progress, a client must first
        // prove it owns its address (a Retry round trip), so that spoofed Initial packets
        // cannot hold handshake state.
        if !incoming.remote_address_validated()
            && handshaking.load(Ordering::Relaxed) >= limits.quic_retry_after_handshakes
        {
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
            continue;
        }
        let Some(slot) = limits.per_address.take(incoming.remote_address().ip()) else {
            debug!(peer = %incoming.remote_address(), "quic connection refused: too many from this address");
            incoming.refuse();
            continue;
        };
        let service = service.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let streams = streams.clone();
        let open = open.clone();
        let request_tasks = tasks.clone();
        open.fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics().opened(crate::metrics::Protocol::H3);
        let handshake = Counted::new(&handshaking);
        tasks.spawn(async move {
            let result = connection(
                incoming,
                handshake,
                service,
                &limits,
                request_tasks,
                (shutdown, streams),
            )
            .await;
            if let Err(e) = result {
                debug!(error = %e, "h3 connection");
            }
            open.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::metrics().closed(crate::metrics::Protocol::H3);
            drop(slot);
        });
    }
    // No new connections until the endpoint closes; open connections drain through their own
    // shutdown handling.
    foobar_net::quic::refuse_new_connections(endpoint);
}

/// Waits until the client has taken what was sent on `quic`, or closes, or is gone.
///
/// A response is done for h3 once its last bytes are in quinn's send buffer, and closing the
/// connection then would throw away what the client has not received. h3-quinn keeps quinn's
/// streams (and their `stopped()`) to itself, so this watches the connection instead: while
/// data is on its way, the server keeps sending STREAM frames (new data, or retransmissions).
/// After max(1 s, 3 RTT) without one, everything was acknowledged, or the client stopped
/// reading, or it vanished (retransmissions back off past a second); in each case there is
/// nothing left to wait for. Pings from an idle client do not count.
async fn delivered(quic: &quinn::Connection) {
    let mut sent = quic.stats().frame_tx.stream;
    let mut silent_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = quic.closed() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let now = quic.stats().frame_tx.stream;
        if now != sent {
            sent = now;
            silent_since = tokio::time::Instant::now();
        } else if silent_since.elapsed() >= (quic.rtt() * 3).max(Duration::from_secs(1)) {
            return;
        }
    }
}

/// One in a count, until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connection(
    incoming: quinn::Incoming,
    handshake: Counted,
    service: Current,
    limits: &Limits,
    tasks: TaskTracker,
    (shutdown, streams): (CancellationToken, CancellationToken),
) -> Result<(), BoxError> {
    let connection = tokio::time::timeout(limits.header_timeout, incoming.accept()?).await??;
    drop(handshake);
    let quic = connection.clone();
    let peer = connection.remote_address();
    let tls_name = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.server_name.map(Arc::from));
    let mut h3 = h3::server::builder()
        .max_field_section_size(limits.max_header_bytes as u64)
        // RFC 9220: WebSockets over HTTP/3 (extended CONNECT).
        .enable_extended_connect(true)
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await?;
    let activity = Activity::new();
    let connection_info = Connection {
        peer,
        tls_name,
        activity: activity.clone(),
        streams,
    };
    let mut draining = false;
    // Made once, not at each turn of the loop: made anew, the idle bound set a timer for every
    // request, and waking at the end of each request polled the connection's streams again.
    let idle = activity.idle_for(limits.idle_timeout);
    let stopping = async {
        shutdown.cancelled().await;
        activity.first_request(FIRST_REQUEST_GRACE).await;
    };
    tokio::pin!(idle, stopping);
    loop {
        let resolver = tokio::select! {
            accepted = h3.accept() => match accepted? {
                Some(resolver) => resolver,
                // No more requests (a GOAWAY, from either side): those in flight still need the
                // connection, and what they sent must reach the client before it closes
                // (when `h3` is dropped).
                None => {
                    activity.quiet().await;
                    delivered(&quic).await;
                    return Ok(());
                }
            },
            // GOAWAY: requests already started finish, new ones go elsewhere; a connection
            // that has not sent its first request yet gets it in first.
            () = &mut stopping, if !draining => {
                draining = true;
                h3.shutdown(0).await?;
                continue;
            }
            // Draining with nothing in flight: once the client has what was sent (or is gone),
            // the connection closes, rather than at QUIC's idle timeout. Meanwhile `accept`
            // goes on rejecting requests sent after the GOAWAY (H3_REQUEST_REJECTED), so that
            // their clients retry elsewhere at once.
            () = async {
                activity.quiet().await;
                delivered(&quic).await;
            }, if draining => {
                quic.close(H3_NO_ERROR.into(), b"shutdown");
                return Ok(());
            }
            // No request for `idle_timeout`, whatever pings keep QUIC itself alive.
            () = &mut idle => {
                delivered(&quic).await;
                quic.close(H3_NO_ERROR.into(), b"idle");
                return Ok(());
            }
        };
        let request = activity.begin();
        let service = service.clone();
        let connection_info = connection_info.clone();
        let (header_timeout, send_timeout) = (limits.header_timeout, limits.send_timeout);
        // Boxed: the request's future is large, and spawning it as it is copied it whole
        // several times over (into the task, and its stages in the task): 3.5% of a small
        // response's instructions.
        tasks.spawn(Box::pin(async move {
            let (request_head, stream) =
                match tokio::time::timeout(header_timeout, resolver.resolve_request()).await {
                    Ok(Ok(resolved)) => resolved,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "h3 request");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "h3 request headers timed out");
                        return;
                    }
                };
            let served =
                request_stream(request_head, stream, service, connection_info, send_timeout);
            if let Err(e) = served.await {
                debug!(%peer, error = %e, "h3 request");
            }
            drop(request);
        }));
    }
}

/// Answers one request: the body streams in through [`RequestBody`], the response body streams
/// out frame by frame, trailers included. An extended CONNECT for a WebSocket (RFC 9220) that is
/// answered 2xx becomes a byte stream both ways, handed to the tunnel.
async fn request_stream<S>(
    request: Request<()>,
    stream: RequestStream<S, Bytes>,
    service: Current,
    connection: Connection,
    send_timeout: Duration,
) -> Result<(), BoxError>
where
    S: h3::quic::BidiStream<Bytes> + Send + 'static,
    S::RecvStream: Send + Unpin + 'static,
    S::SendStream: Send + 'static,
{
    let (mut send, recv) = stream.split();
    let (parts, ()) = request.into_parts();
    let tunnel = parts.method == http::Method::CONNECT
        && parts.extensions.get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::WEBSOCKET);
    if tunnel {
        let mut request = Request::from_parts(parts, Body::empty());
        let (handed, taken) = tokio::sync::oneshot::channel();
        request
            .extensions_mut()
            .insert(crate::tunnel::H3Upgrade::new(taken));
        request.extensions_mut().insert(connection);
        let response = service.respond(request).await?;
        let (mut parts, body) = response.into_parts();
        dated(&mut parts.headers);
        let opened = parts.status.is_success();
        send.send_response(Response::from_parts(parts, ())).await?;
        if !opened {
            let sent = send_body(&mut send, body, send_timeout).await;
            if sent.is_err() {
                send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
            }
            return sent;
        }
        // The tunnel's writes come here and go out as DATA frames; its reads are the
        // request's DATA frames.
        let (writes, mut written) = tokio::sync::mpsc::channel::<Bytes>(4);
        let io = TunnelIo {
            recv,
            leftover: Bytes::new(),
            ended: false,
            writes: tokio_util::sync::PollSender::new(writes),
        };
        if handed.send(Box::pin(io)).is_err() {
            send.finish().await?;
            return Ok(());
        }
        while let Some(data) = written.recv().await {
            let sent = tokio::time::timeout(send_timeout, send.send_data(data)).await;
            if !matches!(sent, Ok(Ok(()))) {
                send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                return Err("the client stopped reading".into());
            }
        }
        send.finish().await?;
        return Ok(());
    }
    let mut request = Request::from_parts(parts, Body::new(RequestBody::new(recv)));
    request.extensions_mut().insert(connection);
    let response = service.respond(request).await?;
    let (mut parts, body) = response.into_parts();
    dated(&mut parts.headers);
    send.send_response(Response::from_parts(parts, ())).await?;
    let sent = send_body(&mut send, body, send_timeout).await;
    if sent.is_err() {
        // A response cut short must not look whole: the stream is reset, not finished (a
        // dropped quinn stream would be finished, and the client take the part for all).
        send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
    }
    sent
}

/// A `Date` on a response that has none, as hyper gives the responses it sends over HTTP/1.1
/// and HTTP/2 (RFC 9110 §6.6.1: an origin server with a clock sends one).
fn dated(headers: &mut http::HeaderMap) {
    if let http::header::Entry::Vacant(vacant) = headers.entry(http::header::DATE) {
        vacant.insert(crate::date::now());
    }
}

/// Sends a response body frame by frame, trailers included, then ends the stream.
async fn send_body<S>(
    send: &mut RequestStream<S, Bytes>,
    mut body: Body,
    send_timeout: Duration,
) -> Result<(), BoxError>
where
    S: h3::quic::SendStream<Bytes>,
{
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            // A client that stops reading holds its flow control shut: bounded, as over TCP.
            Ok(data) => tokio::time::timeout(send_timeout, send.send_data(data))
                .await
                .map_err(|_| "the client stopped reading")??,
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

/// An HTTP/3 request stream as a byte stream (a WebSocket's): reads are its DATA frames, writes
/// go to the task that sends them as DATA frames; shutting down ends the stream.
struct TunnelIo<R: h3::quic::RecvStream> {
    recv: RequestStream<R, Bytes>,
    leftover: Bytes,
    ended: bool,
    writes: tokio_util::sync::PollSender<Bytes>,
}

impl<R> tokio::io::AsyncRead for TunnelIo<R>
where
    R: h3::quic::RecvStream + Send + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.leftover.is_empty() && !self.ended {
            match self.recv.poll_recv_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(Ok(None)) => self.ended = true,
                Poll::Ready(Ok(Some(mut data))) => {
                    self.leftover = data.copy_to_bytes(data.remaining());
                }
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<R> tokio::io::AsyncWrite for TunnelIo<R>
where
    R: h3::quic::RecvStream + Send + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        match self.writes.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(closed())),
            Poll::Ready(Ok(())) => {
                let taken = buf.len().min(16 * 1024);
                match self.writes.send_item(Bytes::copy_from_slice(&buf[..taken])) {
                    Ok(()) => Poll::Ready(Ok(taken)),
                    Err(_) => Poll::Ready(Err(closed())),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.writes.close();
        Poll::Ready(Ok(()))
    }
}

/// A request body read from an h3 stream: data frames, then trailers.
struct RequestBody<R: h3::quic::RecvStream> {
    recv: RequestStream<R, Bytes>,
    state: Reading,
}

/// A request body given up before its end (a GET whose FIN is still on its way, or a body
/// the handler did not read) asks the client to stop sending with H3_NO_ERROR, as RFC 9114
/// section 4.1.2 says, rather than quinn's default code 0, which clients take for an error.
impl<R: h3::quic::RecvStream> Drop for RequestBody<R> {
    fn drop(&mut self) {
        if self.state != Reading::Done {
            self.recv.stop_sending(h3::error::Code::H3_NO_ERROR);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    Data,
    Trailers,
    Done,
}

impl<R: h3::quic::RecvStream> RequestBody<R> {
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
