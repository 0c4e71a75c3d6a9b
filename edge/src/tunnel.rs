//! WebSockets through the edge: asked for over HTTP/1.1 (`Upgrade: websocket`), HTTP/2 (RFC
//! 8441) or HTTP/3 (RFC 9220, extended CONNECT), bridged to an HTTP/1.1 WebSocket upstream, and
//! relayed both ways until either side ends, the connection idles out, or the server stops
//! (then each side gets a Close frame 1001, "going away", so clients reconnect cleanly).
//!
//! ```text
//!  client ══ frames ══▶ Relay ══ the same bytes ══▶ upstream
//!         ◀═ frames ═══       ◀═ the same bytes ═══
//!            Frames: where each frame ends, so a Close can be put between two frames
//! ```
//!
//! Frames pass through untouched (extensions such as permessage-deflate are the two ends'
//! business). The relay is written here, not taken from a WebSocket crate, because it must not
//! parse or buffer messages: it only tracks frame boundaries, and it holds no buffer of its own
//! while a WebSocket is idle (reads go through one scratch buffer per thread), so that ten
//! thousand idle WebSockets cost little more than their sockets.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::body::Body;
use http::{HeaderValue, Method, Request, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// How a client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// HTTP/1.1 `GET` with `Upgrade: websocket`: answered 101.
    Upgrade,
    /// Extended CONNECT with `:protocol websocket` (HTTP/2, HTTP/3): answered 200.
    Connect,
}

/// Whether `request` asks for a WebSocket, and how.
pub fn websocket<B>(request: &Request<B>) -> Option<Ask> {
    if request.method() == Method::CONNECT {
        let h2 = request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        let h3 = request
            .extensions()
            .get::<h3::ext::Protocol>()
            .is_some_and(|p| *p == h3::ext::Protocol::WEBSOCKET);
        return (h2 || h3).then_some(Ask::Connect);
    }
    let has = |name: header::HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    (request.method() == Method::GET
        && request.version() <= http::Version::HTTP_11
        && has(header::UPGRADE, "websocket")
        && has(header::CONNECTION, "upgrade"))
    .then_some(Ask::Upgrade)
}

/// A bidirectional byte stream.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Pin<Box<dyn Io>>;

/// The client's side of an HTTP/3 extended CONNECT, handed over by the HTTP/3 transport once
/// the 200 has gone out (HTTP/1.1 and HTTP/2 use hyper's upgrade for the same).
#[derive(Clone)]
pub struct H3Upgrade(pub Arc<Mutex<Option<tokio::sync::oneshot::Receiver<BoxIo>>>>);

impl H3Upgrade {
    pub fn new(receiver: tokio::sync::oneshot::Receiver<BoxIo>) -> H3Upgrade {
        H3Upgrade(Arc::new(Mutex::new(Some(receiver))))
    }
}

impl std::fmt::Debug for H3Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H3Upgrade")
    }
}

/// What resolves to the client's side of the tunnel once the response has been sent.
pub fn client_side(
    request: &mut Request<Body>,
) -> Pin<Box<dyn Future<Output = Option<BoxIo>> + Send>> {
    if let Some(H3Upgrade(receiver)) = request.extensions_mut().remove::<H3Upgrade>() {
        let receiver = receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        return Box::pin(async move { receiver?.await.ok() });
    }
    let upgrade = hyper::upgrade::on(request);
    Box::pin(async move {
        let upgraded = upgrade.await.ok()?;
        Some(Box::pin(hyper_util::rt::TokioIo::new(upgraded)) as BoxIo)
    })
}

/// A fresh `Sec-WebSocket-Key` and the `Sec-WebSocket-Accept` the upstream must answer with.
pub fn handshake_key() -> Option<(HeaderValue, String)> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).ok()?;
    let key = data_encoding::BASE64.encode(&nonce);
    let accept = accept_for(&key);
    Some((HeaderValue::from_str(&key).ok()?, accept))
}

/// RFC 6455 section 4.2.2: the accept value for `key`.
pub fn accept_for(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    data_encoding::BASE64.encode(digest.as_ref())
}

/// Where the frames of one direction begin and end: a frame header is read byte by byte as it
/// goes past, then its payload is counted down. Pure.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
}

impl Frames {
    /// Follows `bytes` going past.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(length) = self.header_done() {
                self.payload_left = length;
                self.have = 0;
            }
        }
    }

    /// The payload length once the header is whole.
    fn header_done(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let (extended, length) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            short => (0, Some(u64::from(short))),
        };
        let total = 2 + extended + if masked { 4 } else { 0 };
        if self.have < total {
            return None;
        }
        Some(match length {
            Some(length) => length,
            None => self.header[2..2 + extended]
                .iter()
                .fold(0u64, |n, &b| (n << 8) | u64::from(b)),
        })
    }

    /// Between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }
}

/// A Close frame with status 1001 ("going away"): unmasked to a client, masked (as a client
/// must) to the upstream.
fn going_away(masked: bool) -> Vec<u8> {
    let code = 1001u16.to_be_bytes();
    if !masked {
        return vec![0x88, 0x02, code[0], code[1]];
    }
    let mut mask = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut mask);
    vec![
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        code[0] ^ mask[0],
        code[1] ^ mask[1],
    ]
}

thread_local! {
    /// Where reads land: bytes are written on at once, and only what the other side cannot take
    /// yet is kept by the direction.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 16 * 1024]);
}

/// One direction of the relay.
struct Direction {
    /// Read but not yet written.
    pending: Vec<u8>,
    frames: Frames,
    /// Its reader has ended.
    ended: bool,
    /// Its writer has been shut down.
    closed: bool,
    /// A Close 1001 has been queued (when stopping).
    said_goodbye: bool,
    /// Written but not yet flushed.
    unflushed: bool,
}

impl Direction {
    fn new() -> Self {
        Direction {
            pending: Vec::new(),
            frames: Frames::default(),
            ended: false,
            closed: false,
            said_goodbye: false,
            unflushed: false,
        }
    }

    /// Moves bytes from `from` to `to` as far as both allow; `Ready` when this direction is
    /// over (its reader ended and everything was written and shut down). With `stopping`, no
    /// more is read once at a frame boundary, and `goodbye` is written instead.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut BoxIo,
        to: &mut BoxIo,
        stopping: bool,
        goodbye_masked: bool,
        active: &mut bool,
    ) -> Poll<std::io::Result<()>> {
        loop {
            while !self.pending.is_empty() {
                let written = ready!(to.as_mut().poll_write(cx, &self.pending))?;
                if written == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.pending.drain(..written);
                self.unflushed = true;
            }
            if self.pending.capacity() > 0 {
                // Idle again: the backlog's memory goes back.
                self.pending = Vec::new();
            }
            if self.unflushed {
                ready!(to.as_mut().poll_flush(cx))?;
                self.unflushed = false;
            }
            if stopping && !self.said_goodbye && self.frames.at_boundary() {
                self.said_goodbye = true;
                self.ended = true;
                self.pending = going_away(goodbye_masked);
                continue;
            }
            if self.ended {
                if !self.closed {
                    ready!(to.as_mut().poll_shutdown(cx))?;
                    self.closed = true;
                }
                return Poll::Ready(Ok(()));
            }
            let read = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match from.as_mut().poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        let bytes = buf.filled();
                        if bytes.is_empty() {
                            self.ended = true;
                            return Poll::Ready(Ok(()));
                        }
                        self.frames.feed(bytes);
                        // Written from the scratch buffer at once; only the rest is kept.
                        let written = match to.as_mut().poll_write(cx, bytes) {
                            Poll::Ready(Ok(n)) => n,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => 0,
                        };
                        if written > 0 {
                            self.unflushed = true;
                        }
                        self.pending.extend_from_slice(&bytes[written..]);
                        Poll::Ready(Ok(()))
                    }
                }
            });
            ready!(read)?;
            *active = true;
        }
    }
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// One side closed, and the other was told.
    Closed,
    /// Nothing either way for the idle timeout.
    Idle,
    /// The server stopped: both sides got a Close 1001.
    Stopped,
}

/// Relays frames between `client` and `upstream` until one side ends (the other is shut down),
/// neither sends anything for `idle`, or `stop` fires (each side then gets a Close 1001 between
/// two frames, within `STOP_GRACE`).
pub async fn relay(
    client: BoxIo,
    upstream: BoxIo,
    idle: Duration,
    stop: CancellationToken,
) -> std::io::Result<Ended> {
    /// How long a frame under way may take to finish before the Close goes anyway.
    const STOP_GRACE: Duration = Duration::from_secs(1);
    let mut relay = Relay {
        client,
        upstream,
        to_upstream: Direction::new(),
        to_client: Direction::new(),
        stopping: false,
    };
    let mut stopped = std::pin::pin!(stop.clone().cancelled_owned());
    let mut reason = Ended::Closed;
    let mut idle_timer = std::pin::pin!(tokio::time::sleep(idle));
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if !relay.stopping {
            let stop_now =
                stopped.as_mut().poll(cx).is_ready() || idle_timer.as_mut().poll(cx).is_ready();
            if stop_now {
                reason = if stop.is_cancelled() {
                    Ended::Stopped
                } else {
                    Ended::Idle
                };
                relay.stopping = true;
                grace = Some(Box::pin(tokio::time::sleep(STOP_GRACE)));
            }
        }
        if let Some(grace) = grace.as_mut()
            && grace.as_mut().poll(cx).is_ready()
        {
            // A frame that would not end: cut, so stopping is bounded.
            return Poll::Ready(Ok(()));
        }
        let mut active = false;
        let result = relay.poll_both(cx, &mut active);
        if active && !relay.stopping {
            idle_timer
                .as_mut()
                .reset(tokio::time::Instant::now() + idle);
            // Re-registers the timer's waker at its new deadline.
            let _ = idle_timer.as_mut().poll(cx);
        }
        result
    })
    .await?;
    Ok(reason)
}

struct Relay {
    client: BoxIo,
    upstream: BoxIo,
    to_upstream: Direction,
    to_client: Direction,
    stopping: bool,
}

impl Relay {
    fn poll_both(&mut self, cx: &mut Context<'_>, active: &mut bool) -> Poll<std::io::Result<()>> {
        let up = self.to_upstream.poll(
            cx,
            &mut self.client,
            &mut self.upstream,
            self.stopping,
            true,
            active,
        )?;
        let down = self.to_client.poll(
            cx,
            &mut self.upstream,
            &mut self.client,
            self.stopping,
            false,
            active,
        )?;
        match (up, down) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok(())),
            // One side ended (a close, or its connection went): the other is told by the end of
            // its stream; what it still sends is not waited for.
            (Poll::Ready(()), Poll::Pending) if !self.stopping && !self.to_client.ended => {
                self.to_client.ended = true;
                self.poll_both(cx, active)
            }
            (Poll::Pending, Poll::Ready(())) if !self.stopping && !self.to_upstream.ended => {
                self.to_upstream.ended = true;
                self.poll_both(cx, active)
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A frame as a client sends it (masked) with `len` payload bytes.
    fn frame(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => out.push(mask_bit | len as u8),
            126..=65535 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend(std::iter::repeat_n(b'x', len));
        out
    }

    #[test]
    fn frame_boundaries_are_found_whatever_the_reads() {
        let mut stream = Vec::new();
        for (len, masked) in [(5, true), (300, false), (70_000, true), (0, false)] {
            stream.extend(frame(0x2, len, masked));
        }
        let ends: Vec<usize> = {
            let mut at = 0;
            [(5, true), (300, false), (70_000, true), (0, false)]
                .iter()
                .map(|&(len, masked)| {
                    at += frame(0x2, len, masked).len();
                    at
                })
                .collect()
        };
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut frames = Frames::default();
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                // At every boundary it passes, it says so.
                for (i, &byte) in piece.iter().enumerate() {
                    frames.feed(&[byte]);
                    let position = fed + i + 1;
                    assert_eq!(
                        frames.at_boundary(),
                        ends.contains(&position),
                        "chunk {chunk}, byte {position}"
                    );
                }
                fed += piece.len();
            }
        }
    }

    #[test]
    fn accept_is_rfc_6455s_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn stopping_sends_going_away_between_frames_both_ways() {
        let (client, mut client_far) = tokio::io::duplex(1 << 20);
        let (upstream, mut upstream_far) = tokio::io::duplex(1 << 20);
        let stop = CancellationToken::new();
        let relay = tokio::spawn(relay(
            Box::pin(client),
            Box::pin(upstream),
            Duration::from_secs(60),
            stop.clone(),
        ));
        // Half a frame from the client, then the stop, then the rest: the rest goes through
        // before the Close.
        let whole = frame(0x1, 10, true);
        client_far.write_all(&whole[..7]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client_far.write_all(&whole[7..]).await.unwrap();
        let ended = relay.await.unwrap().unwrap();
        assert_eq!(ended, Ended::Stopped);
        let mut at_upstream = Vec::new();
        upstream_far.read_to_end(&mut at_upstream).await.unwrap();
        assert_eq!(&at_upstream[..whole.len()], &whole[..]);
        let close = &at_upstream[whole.len()..];
        assert_eq!(close.len(), 8, "{close:?}");
        assert_eq!(&close[..2], &[0x88, 0x82]);
        let code = [close[6] ^ close[2], close[7] ^ close[3]];
        assert_eq!(u16::from_be_bytes(code), 1001);
        let mut at_client = Vec::new();
        client_far.read_to_end(&mut at_client).await.unwrap();
        assert_eq!(at_client, [0x88, 0x02, 0x03, 0xE9]);
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_and_one_end_closing_ends_it() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let relay = tokio::spawn(relay(
            Box::pin(client),
            Box::pin(upstream),
            Duration::from_secs(60),
            CancellationToken::new(),
        ));
        let big = frame(0x2, 100_000, true);
        let writer = tokio::spawn(async move {
            client_far.write_all(&big).await.unwrap();
            client_far
        });
        let mut got = vec![0u8; frame(0x2, 100_000, true).len()];
        upstream_far.read_exact(&mut got).await.unwrap();
        assert_eq!(got, frame(0x2, 100_000, true));
        let mut client_far = writer.await.unwrap();
        upstream_far.write_all(&frame(0x1, 3, false)).await.unwrap();
        let mut back = vec![0u8; 5];
        client_far.read_exact(&mut back).await.unwrap();
        assert_eq!(back, frame(0x1, 3, false));
        drop(upstream_far);
        assert_eq!(relay.await.unwrap().unwrap(), Ended::Closed);
        let mut rest = Vec::new();
        client_far.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    /// Arbitrary bytes from a client never panic the frame tracker, and it finds the same
    /// boundaries however the reads cut them.
    #[test]
    fn any_bytes_give_the_same_boundaries_whatever_the_reads() {
        let mut next = crate::test_random(0x2545_F491_4F6C_DD1Du64);
        for _ in 0..2000 {
            let len = (next() % 400) as usize;
            let mut wire: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Short lengths mostly, so that many frames fit.
            for at in (1..wire.len()).step_by(7) {
                if next().is_multiple_of(2) {
                    wire[at] &= 0x8f;
                }
            }
            // Byte by byte: whether a frame ends after each byte.
            let mut frames = Frames::default();
            let after_byte: Vec<bool> = wire
                .iter()
                .map(|byte| {
                    frames.feed(std::slice::from_ref(byte));
                    frames.at_boundary()
                })
                .collect();
            let step = (next() % 13) as usize + 1;
            let mut frames = Frames::default();
            for (i, piece) in wire.chunks(step).enumerate() {
                frames.feed(piece);
                let end = i * step + piece.len() - 1;
                assert_eq!(
                    frames.at_boundary(),
                    after_byte[end],
                    "{wire:?} in pieces of {step}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_websocket_is_closed_after_the_idle_timeout() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, _upstream_far) = tokio::io::duplex(64);
        let ended = relay(
            Box::pin(client),
            Box::pin(upstream),
            Duration::from_secs(30),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(ended, Ended::Idle);
        let mut at_client = Vec::new();
        client_far.read_to_end(&mut at_client).await.unwrap();
        assert_eq!(at_client, [0x88, 0x02, 0x03, 0xE9]);
    }
}
