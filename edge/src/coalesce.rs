//! Coalesced writes for HTTP/2 connections: what the TLS layer writes is held until a flush,
//! and a flush first lets the other ready tasks run once, so that the responses of every
//! stream that is ready go out in one system call.
//!
//! Why: hyper runs each HTTP/2 stream as its own task, and a stream that finishes wakes the
//! connection task, which tokio runs next (its LIFO slot). Without this the connection wrote
//! and flushed once per response: one `writev`, one TLS record and one TCP segment for each,
//! where nginx writes the responses to all the requests it has read at once. Written here
//! because it is a policy of this server (when to write), not a missing library piece.
//!
//! Nothing held is lost when the connection ends: `h2` closes it (after the client's GOAWAY,
//! an error, or the idle bound) through `poll_shutdown`, which writes what is held before the
//! TLS close_notify and the FIN. `tests/h2_conformance.rs` checks that under load.

use std::{
    io::IoSlice,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held at most before a write goes out without waiting for the flush; writes this large
/// or larger pass straight through (a large body gains nothing from waiting, and is not copied).
const HOLD: usize = 16 * 1024;

pub(crate) struct Coalesce<S> {
    inner: S,
    /// Off (every write passes through) until the connection is known to be HTTP/2.
    on: bool,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    sent: usize,
    /// Whether this flush has already let the other tasks run.
    yielded: bool,
}

impl<S> Coalesce<S> {
    pub(crate) fn new(inner: S) -> Self {
        Coalesce {
            inner,
            on: false,
            held: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }

    /// Holds writes from now on.
    pub(crate) fn hold_writes(&mut self) {
        self.on = true;
        self.held.reserve(HOLD);
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out what is held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if !this.on {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.held.len() + len > HOLD {
            ready!(this.poll_drain(cx))?;
        }
        if len >= HOLD {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.held.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.held.len() > this.sent {
            if !this.yielded {
                // A task that wakes itself is run again after the tasks already waiting (tokio
                // treats it as a yield): those are the streams whose responses are ready.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Wake,
    };

    use super::*;

    /// A socket that records each write it is given.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn writes_wait_for_the_flush_which_yields_once_then_writes_them_together() {
        let wakes = Arc::new(Wakes::default());
        let waker = Arc::clone(&wakes).into();
        let mut cx = Context::from_waker(&waker);
        let mut stream = Coalesce::new(Recorder::default());
        let mut pinned = Pin::new(&mut stream);
        assert!(pinned.as_mut().poll_write(&mut cx, b"hand").is_ready());
        assert_eq!(pinned.inner.0.len(), 1, "before HTTP/2: straight through");

        pinned.hold_writes();
        for part in [&b"one "[..], b"two ", b"three"] {
            assert!(matches!(
                pinned.as_mut().poll_write(&mut cx, part),
                Poll::Ready(Ok(_))
            ));
        }
        assert_eq!(pinned.inner.0.len(), 1, "held");
        assert!(
            pinned.as_mut().poll_flush(&mut cx).is_pending(),
            "yields first"
        );
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "and asks to run again");
        assert!(pinned.as_mut().poll_write(&mut cx, b" four").is_ready());
        assert!(pinned.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(pinned.inner.0[1], b"one two three four", "one write");
        assert!(
            pinned.as_mut().poll_flush(&mut cx).is_ready(),
            "nothing held: no yield"
        );

        let large = vec![7u8; HOLD];
        assert!(pinned.as_mut().poll_write(&mut cx, b"small").is_ready());
        assert!(pinned.as_mut().poll_write(&mut cx, &large).is_ready());
        assert_eq!(pinned.inner.0[2], b"small", "what was held goes first");
        assert_eq!(
            pinned.inner.0[3].len(),
            HOLD,
            "a large write passes through"
        );
        assert!(pinned.as_mut().poll_write(&mut cx, b"last").is_ready());
        assert!(pinned.as_mut().poll_shutdown(&mut cx).is_ready());
        assert_eq!(pinned.inner.0[4], b"last", "written before shutdown");
    }
}
