//! Connections to one upstream, kept alive between requests.
//!
//! Written here on hyper's connection-level client rather than taken from hyper-util's pooled
//! `Client`, because what the proxy needs of a pool is its own: a hard bound on the connections
//! to each upstream (hyper-util's pool bounds only the idle ones), the connection handed back
//! only once its response has been read to the end, and a send that gives the request back
//! when it never left (`try_send_request`), which is what makes retrying a POST safe.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use axum::body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use super::{
    metrics::UpstreamMetrics,
    upstream::{ConnectError, Connector, Stream},
};

/// The connections of one upstream.
pub struct Pool {
    h2: bool,
    /// One per connection open, idle or not.
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    /// HTTP/2 (h2c): connections shared by many requests at once.
    shared: Mutex<Vec<Shared>>,
    max_idle: usize,
    idle_timeout: Duration,
    in_use: AtomicI64,
    /// Connections kept idle, or shared (HTTP/2).
    idle_count: AtomicI64,
    metrics: Arc<UpstreamMetrics>,
    /// Woken when a connection is handed back, for requests waiting for one.
    returned: tokio::sync::Notify,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
    permit: OwnedSemaphorePermit,
}

struct Shared {
    sender: http2::SendRequest<Body>,
    _permit: OwnedSemaphorePermit,
}

/// A connection taken for one request.
pub struct Lease {
    sender: Option<Sender>,
    permit: Option<OwnedSemaphorePermit>,
    /// It served an earlier request (a closed keep-alive connection is then no fault of the
    /// upstream's).
    pub reused: bool,
    pool: Arc<Pool>,
}

pub enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// Why a request got no response.
pub enum SendError {
    /// It never left: the connection was found closed first. The request comes back whole.
    Unsent(Box<http::Request<Body>>, hyper::Error),
    /// Some or all of it was sent.
    Sent(hyper::Error),
}

impl Lease {
    /// Sends `request` on this connection.
    pub async fn send(
        &mut self,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        let sender = &mut self.sender;
        // A keep-alive connection its upstream closed is found out here, with the request still
        // in hand.
        let readied = std::future::poll_fn(|cx| match sender.as_mut() {
            Some(Sender::H1(sender)) => sender.poll_ready(cx),
            Some(Sender::H2(sender)) => sender.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        })
        .await;
        if let Err(error) = readied {
            return Err(SendError::Unsent(Box::new(request), error));
        }
        let (mut over_h1, mut over_h2) = (None, None);
        match sender.as_mut() {
            Some(Sender::H1(sender)) => over_h1 = Some(sender.try_send_request(request)),
            Some(Sender::H2(sender)) => over_h2 = Some(sender.try_send_request(request)),
            None => return std::future::pending().await,
        }
        let mut over_h1 = std::pin::pin!(over_h1);
        let mut over_h2 = std::pin::pin!(over_h2);
        let sent = std::future::poll_fn(|cx| {
            if let Some(sending) = over_h1.as_mut().as_pin_mut() {
                return sending.poll(cx);
            }
            match over_h2.as_mut().as_pin_mut() {
                Some(sending) => sending.poll(cx),
                None => Poll::Pending,
            }
        })
        .await;
        sent.map_err(|mut error| match error.take_message() {
            Some(request) => SendError::Unsent(Box::new(request), error.into_error()),
            None => SendError::Sent(error.into_error()),
        })
    }
    /// The response was read to its end: the connection can serve another request.
    pub fn release(mut self) {
        if let (Some(Sender::H1(sender)), Some(permit)) = (self.sender.take(), self.permit.take())
            && !sender.is_closed()
        {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.pool.max_idle {
                idle.push(Idle {
                    sender,
                    since: Instant::now(),
                    permit,
                });
                self.pool
                    .idle_count
                    .store(idle.len() as i64, Ordering::Relaxed);
                drop(idle);
                self.pool.returned.notify_one();
            }
        }
    }
}

impl Pool {
    pub fn new(
        h2: bool,
        max_connections: usize,
        max_idle: usize,
        idle_timeout: Duration,
        metrics: Arc<UpstreamMetrics>,
    ) -> Pool {
        Pool {
            h2,
            slots: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            in_use: AtomicI64::new(0),
            idle_count: AtomicI64::new(0),
            metrics,
            returned: tokio::sync::Notify::new(),
        }
    }

    /// A connection for one request: an idle one, a shared HTTP/2 one, or a new one (waiting
    /// for a free slot no longer than `timeout`, which also bounds the connect).
    pub async fn lease(
        self: &Arc<Self>,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Lease, ConnectError> {
        if self.h2 {
            return self.lease_shared(connector, timeout).await;
        }
        let deadline = Instant::now() + timeout;
        // A kept connection, or a slot for a new one; while every slot is taken, a connection
        // handed back is as good (its slot comes with it).
        let permit = loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(idle) = self.take_idle() {
                return Ok(self.leased(Sender::H1(idle.sender), Some(idle.permit), true));
            }
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => return Err(ConnectError::Full),
                },
                () = &mut returned => continue,
                () = tokio::time::sleep_until(deadline.into()) => return Err(ConnectError::Full),
            }
        };
        let stream = connector.connect(left(deadline)).await?;
        self.metrics.opened();
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Refused(std::io::Error::other(e)))?;
        // Its own task (measured: driving it from the request's task instead cost 3-5% more
        // CPU per request, the connection being polled more often).
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "upstream connection");
            }
        });
        Ok(self.leased(Sender::H1(sender), Some(permit), false))
    }

    /// A connection of its own for a WebSocket: never pooled, counted against the bound.
    pub async fn dedicated(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<(Stream, OwnedSemaphorePermit), ConnectError> {
        let deadline = Instant::now() + timeout;
        let permit = self.slot(deadline).await?;
        let stream = connector.connect(left(deadline)).await?;
        self.metrics.opened();
        Ok((stream, permit))
    }

    async fn slot(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, ConnectError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // Every connection is busy: an idle one may be closed to make room.
        if let Some(idle) = self.take_idle() {
            drop(idle.sender);
            return Ok(idle.permit);
        }
        match tokio::time::timeout(left(deadline), self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ConnectError::Full),
        }
    }

    fn leased(
        self: &Arc<Self>,
        sender: Sender,
        permit: Option<OwnedSemaphorePermit>,
        reused: bool,
    ) -> Lease {
        self.in_use.fetch_add(1, Ordering::Relaxed);
        self.report();
        Lease {
            sender: Some(sender),
            permit,
            reused,
            pool: self.clone(),
        }
    }

    async fn lease_shared(
        self: &Arc<Self>,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<Lease, ConnectError> {
        {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            shared.retain(|connection| !connection.sender.is_closed());
            self.idle_count
                .store(shared.len() as i64, Ordering::Relaxed);
            if let Some(connection) = shared.first() {
                let sender = connection.sender.clone();
                drop(shared);
                return Ok(self.leased(Sender::H2(sender), None, true));
            }
        }
        let deadline = Instant::now() + timeout;
        let permit = self.slot(deadline).await?;
        let stream = connector.connect(left(deadline)).await?;
        self.metrics.opened();
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Refused(std::io::Error::other(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "upstream h2c connection");
            }
        });
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.push(Shared {
            sender: sender.clone(),
            _permit: permit,
        });
        self.idle_count
            .store(shared.len() as i64, Ordering::Relaxed);
        drop(shared);
        Ok(self.leased(Sender::H2(sender), None, false))
    }

    /// An idle connection still open and young enough.
    fn take_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(connection) = idle.pop() {
            if connection.sender.is_closed() || connection.since.elapsed() > self.idle_timeout {
                continue;
            }
            // Not yet ready, perhaps (its last response is being wound up): the send waits
            // for it, and gets the request back if it turns out closed.
            self.idle_count.store(idle.len() as i64, Ordering::Relaxed);
            return Some(connection);
        }
        self.idle_count.store(0, Ordering::Relaxed);
        None
    }

    /// Closes idle connections past the idle timeout.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() <= self.idle_timeout);
        let mut count = idle.len();
        drop(idle);
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.retain(|c| !c.sender.is_closed());
        count += shared.len();
        drop(shared);
        self.idle_count.store(count as i64, Ordering::Relaxed);
        self.report();
    }

    /// Tells the metrics how many connections are in use and idle (counted as they change:
    /// no lock is taken for it).
    fn report(&self) {
        self.metrics.pool(
            self.in_use.load(Ordering::Relaxed),
            self.idle_count.load(Ordering::Relaxed),
        );
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(1, Ordering::Relaxed);
        self.pool.report();
    }
}

/// How long until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
