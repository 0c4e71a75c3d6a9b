//! Requests in flight on one connection, whatever its protocol, and when it last had none: the
//! idle bound (a client that only answers pings cannot hold a connection) and the drain at
//! shutdown (a connection with nothing in flight closes at once) both follow from it.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::{sync::Notify, time::Instant};

/// One connection's requests.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun since the connection opened.
    begun: AtomicU64,
    /// Woken when a request begins.
    started: Notify,
    /// Milliseconds since `start` when the connection last went quiet.
    quiet_since: AtomicU64,
    start: Instant,
    /// Woken each time the last request in flight ends.
    quiet: Notify,
}

/// A request counted as in flight until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.start.elapsed().as_millis() as u64;
        activity.quiet_since.store(now, Ordering::Relaxed);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.quiet.notify_waiters();
        }
    }
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            started: Notify::new(),
            quiet_since: AtomicU64::new(0),
            start: Instant::now(),
            quiet: Notify::new(),
        })
    }

    /// Counts a request from now until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        self.started.notify_waiters();
        ActiveRequest(self.clone())
    }

    /// Completes once the connection has begun a request, or after `grace` if it has none.
    ///
    /// When the server stops, a connection that has not yet sent its first request is waited
    /// for that long before it is closed: the client opened it to send one, which is most
    /// likely on its way, and closing first would fail a request that nothing else had
    /// refused. Connections that have been used close as soon as they are quiet.
    pub async fn first_request(&self, grace: Duration) {
        let started = async {
            loop {
                let notified = self.started.notified();
                if self.begun.load(Ordering::Acquire) > 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, started).await;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Completes once no request is in flight (at once if none is).
    pub async fn quiet(&self) {
        loop {
            let notified = self.quiet.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Completes once no request has been in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            self.quiet().await;
            let quiet = Duration::from_millis(self.quiet_since.load(Ordering::Relaxed));
            let deadline = quiet + limit;
            let now = self.start.elapsed();
            if now >= deadline && self.in_flight() == 0 {
                return;
            }
            tokio::time::sleep(deadline.saturating_sub(now).max(Duration::from_millis(1))).await;
        }
    }
}

/// A response body that keeps its request counted as in flight until it is finished or dropped.
pub struct Tracked {
    body: Body,
    _request: ActiveRequest,
}

impl Tracked {
    pub fn new(body: Body, request: ActiveRequest) -> Self {
        Tracked {
            body,
            _request: request,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
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

    #[tokio::test(start_paused = true)]
    async fn quiet_and_idle_follow_the_requests() {
        let activity = Activity::new();
        activity.quiet().await;
        let request = activity.begin();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.quiet().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(request);
        assert!(waiting.await.is_ok());

        let start = tokio::time::Instant::now();
        activity.idle_for(Duration::from_secs(5)).await;
        assert!(start.elapsed() >= Duration::from_secs(4));
    }
}
