//! UDP and TCP listeners: bytes off the socket, through the [`Responder`], back out. Binding
//! (one port for UDP and TCP) and what the listeners share are here; `udp` and `tcp` serve.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use foobar_net::BindError;

use crate::{answer::Responder, error::Error, transfer::journal::Journals, zone::catalog::Catalog};

mod quic;
mod tcp;
mod udp;
mod xdp;

pub(crate) use quic::serve_quic;
pub(crate) use tcp::serve_tcp;
pub(crate) use udp::serve_udp;
pub(crate) use xdp::serve_xdp;
pub use xdp::turn_around;

/// What a listener answers with: the service hands it in, and may replace it whole while the
/// listener runs (a reload); the listener reads it afresh for each batch or connection.
pub(crate) trait Serving: Send + Sync + 'static {
    fn shared(&self) -> &Shared;
}

/// Largest message a query may be: the UDP datagrams we accept and TCP frames we read.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Receive and send buffer asked for each UDP socket, so that bursts are queued rather than
/// dropped by the kernel (its default is about 208 KiB).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// One listen address, bound on UDP and TCP with the same port.
#[derive(Debug)]
pub struct Sockets {
    /// The UDP socket.
    pub udp: std::net::UdpSocket,
    /// The TCP listener, on the same port.
    pub tcp: std::net::TcpListener,
}

impl Sockets {
    /// The address bound (its port is the one the system picked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Sockets bound by another process and handed over (an upgrade): ready as they are.
    pub fn taken_over(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> Result<Sockets, Error> {
        let addr = udp
            .local_addr()
            .map_err(|e| BindError::new("udp", SocketAddr::from(([0, 0, 0, 0], 0)), e))?;
        let bind_err = |proto, e| BindError::new(proto, addr, e);
        udp.set_nonblocking(true).map_err(|e| bind_err("udp", e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err("tcp", e))?;
        Ok(Sockets { udp, tcp })
    }
}

/// The DNS-over-TLS listeners and DNS-over-QUIC sockets, and the TLS configurations they
/// answer with (the edge's certificates, ALPN `dot` and `doq`).
#[derive(Debug, Default)]
pub struct TlsSockets {
    /// One TCP listener per `tls_listen` address.
    pub listeners: Vec<std::net::TcpListener>,
    /// Needed when there are listeners.
    pub config: Option<Arc<rustls::ServerConfig>>,
    /// One UDP socket per `quic_listen` address.
    pub quic: Vec<std::net::UdpSocket>,
    /// Needed when there are QUIC sockets: TLS 1.3 only, no 0-RTT.
    pub quic_config: Option<Arc<rustls::ServerConfig>>,
    /// How their connections live through an upgrade (the process's, shared with HTTP/3);
    /// none: a generation of their own.
    pub quic_routing: Option<foobar_net::quic::QuicRouting>,
}

/// Binds UDP and TCP on `addr` (one port for both; with port 0, one the system picks).
pub fn bind(addr: SocketAddr) -> Result<Sockets, Error> {
    let (udp, tcp) = foobar_net::bind_same_port(addr)?;
    foobar_net::udp_buffers(&udp, UDP_BUFFER_BYTES, "dns");
    Ok(Sockets { udp, tcp })
}

/// What every listener task shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub responder: Arc<Responder>,
    /// Differences between versions of each zone, for IXFR.
    pub journals: Arc<Journals>,
    pub max_tcp_connections: usize,
    pub max_tcp_connections_per_address: usize,
    pub tcp_idle_timeout: Duration,
    pub tcp_io_timeout: Duration,
}

/// A zone transfer's answer, made off the serving threads, and what its log line says.
struct Transfer {
    answer: crate::transfer::xfr::Answer,
    started: std::time::Instant,
    serial: u32,
    origin: String,
}

impl Transfer {
    /// The answer to `query`, a transfer request that `request` describes, from the zones of
    /// `catalog`; none if the zone is gone.
    async fn make(
        shared: &Shared,
        catalog: &Catalog,
        request: Box<crate::answer::TransferRequest>,
        query: &[u8],
        now: u32,
    ) -> std::io::Result<Option<Transfer>> {
        let Some(zone) = catalog.get(&request.origin_key).cloned() else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let (serial, origin) = (zone.serial(), zone.origin_text());
        let (journals, query) = (shared.journals.clone(), query.to_vec());
        let answer = tokio::task::spawn_blocking(move || {
            crate::transfer::xfr::answer(&zone, Some(&journals), &request, &query, u64::from(now))
        })
        .await
        .map_err(std::io::Error::other)?;
        crate::metrics::metrics().transferred_out();
        Ok(Some(Transfer {
            answer,
            started,
            serial,
            origin,
        }))
    }

    /// The log line, once every message went out to `peer` (over TLS or QUIC if `encrypted`).
    fn log(&self, peer: SocketAddr, encrypted: bool) {
        let bytes: usize = self.answer.messages.iter().map(Vec::len).sum();
        tracing::info!(
            zone = %self.origin,
            %peer,
            tls = encrypted,
            serial = self.serial,
            kind = self.answer.kind,
            records = self.answer.records,
            bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "transfer out"
        );
    }
}

/// Runs each of `works` on a thread of its own named `name` (the UDP and XDP workers: blocking
/// system calls, kept off tokio's pools) and waits until all have ended, a panic included.
async fn on_threads<F: FnOnce() + Send + 'static>(name: &str, works: impl Iterator<Item = F>) {
    let mut done = Vec::new();
    for work in works {
        let (finished, finish) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                work();
                drop(finished);
            });
        match spawned {
            Ok(_) => done.push(finish),
            Err(e) => tracing::warn!(error = %e, thread = name, "worker thread"),
        }
    }
    // Each thread drops its sender as it ends (a panic included).
    for finish in done {
        let _ = finish.await;
    }
}

/// Seconds since the Unix epoch, modulo 2^32, as cookies count them.
fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as u32)
}
