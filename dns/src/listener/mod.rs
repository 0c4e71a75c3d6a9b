//! UDP and TCP listeners: bytes off the socket, through the [`Responder`], back out.

use std::{
    io::{IoSlice, IoSliceMut},
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::Arc,
    time::Duration,
};

use foobar_net::PerAddress;

use arc_swap::ArcSwap;
use nix::{
    errno::Errno,
    sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Live,
    answer::{Client, Outcome, Responder, Transport},
    error::Error,
    transfer::journal::Journals,
    transfer::xfr,
    zone::catalog::Catalog,
};

/// Largest message a query may be: the UDP datagrams we accept and TCP frames we read.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Receive and send buffer asked for each UDP socket, so that bursts are queued rather than
/// dropped by the kernel (its default is about 208 KiB).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// One listen address, bound on UDP and TCP with the same port.
#[derive(Debug)]
pub struct Sockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
}

impl Sockets {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Sockets bound by another process and handed over (an upgrade): ready as they are.
    pub fn taken_over(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> Result<Sockets, Error> {
        let addr = udp.local_addr().map_err(|source| Error::Bind {
            proto: "udp",
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let bind_err = |proto, source| Error::Bind {
            proto,
            addr,
            source,
        };
        udp.set_nonblocking(true).map_err(|e| bind_err("udp", e))?;
        tcp.set_nonblocking(true).map_err(|e| bind_err("tcp", e))?;
        Ok(Sockets { udp, tcp })
    }
}

/// Binds UDP and TCP on `addr`. With port 0 the system picks a port for UDP and TCP is bound
/// to the same one (retrying with another port if TCP's is taken).
pub fn bind(addr: SocketAddr) -> Result<Sockets, Error> {
    let bind_err = |proto, addr, source| Error::Bind {
        proto,
        addr,
        source,
    };
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(addr).map_err(|e| bind_err("udp", addr, e))?;
        let bound = udp.local_addr().map_err(|e| bind_err("udp", addr, e))?;
        match std::net::TcpListener::bind(bound) {
            Ok(tcp) => {
                foobar_net::udp_buffers(&udp, UDP_BUFFER_BYTES, "dns");
                udp.set_nonblocking(true)
                    .map_err(|e| bind_err("udp", bound, e))?;
                tcp.set_nonblocking(true)
                    .map_err(|e| bind_err("tcp", bound, e))?;
                return Ok(Sockets { udp, tcp });
            }
            Err(e) => last = Some(bind_err("tcp", bound, e)),
        }
    }
    Err(last.unwrap_or(bind_err(
        "tcp",
        addr,
        std::io::Error::other("no port free for both UDP and TCP"),
    )))
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

/// The TCP connection bounds in force, and the settings they were made for.
struct Bounds {
    limit: Arc<Semaphore>,
    per_address: PerAddress,
    made_for: (usize, usize),
}

impl Bounds {
    fn of(shared: &Shared) -> Bounds {
        Bounds {
            limit: Arc::new(Semaphore::new(shared.max_tcp_connections)),
            per_address: PerAddress::new(shared.max_tcp_connections_per_address),
            made_for: (
                shared.max_tcp_connections,
                shared.max_tcp_connections_per_address,
            ),
        }
    }

    /// Whether these bounds are still the ones `shared` asks for.
    fn follow(&self, shared: &Shared) -> bool {
        self.made_for
            == (
                shared.max_tcp_connections,
                shared.max_tcp_connections_per_address,
            )
    }
}

/// When stopping, how long a TCP connection that has not sent its first query is waited for.
const FIRST_QUERY_GRACE: Duration = Duration::from_secs(1);

/// How often a blocked UDP worker looks at the shutdown token.
const UDP_SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Datagrams taken by one `recvmmsg` and answered by one `sendmmsg`.
const UDP_BATCH: usize = 32;

/// Serves UDP with one thread per core of its own (not tokio's blocking pool, which other work
/// shares and grows), all reading the same socket.
///
/// Plain blocking system calls rather than the async reactor: each datagram is one independent
/// request, so readiness polling and task wake-ups would only add work per packet. Datagrams are
/// taken in batches (`recvmmsg` with `MSG_WAITFORONE`: whatever has arrived, up to
/// [`UDP_BATCH`], without waiting for more) and the batch's answers sent with one `sendmmsg`,
/// so under load two system calls serve many queries; when idle a batch is one datagram.
pub async fn serve_udp(
    socket: std::net::UdpSocket,
    live: Arc<ArcSwap<Live>>,
    shutdown: CancellationToken,
) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut done = Vec::with_capacity(workers);
    for _ in 0..workers {
        let socket = match socket.try_clone() {
            Ok(socket) => socket,
            Err(e) => {
                warn!(error = %e, "udp worker");
                continue;
            }
        };
        let live = live.clone();
        let shutdown = shutdown.clone();
        let (finished, finish) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("dns-udp".to_string())
            .spawn(move || {
                udp_worker(&socket, &live, &shutdown);
                drop(finished);
            });
        match spawned {
            Ok(_) => done.push(finish),
            Err(e) => warn!(error = %e, "udp worker thread"),
        }
    }
    // Each worker drops its sender as it ends (a panic included).
    for finish in done {
        let _ = finish.await;
    }
}

/// The address a datagram came from.
fn peer_ip(address: &SockaddrStorage) -> Option<std::net::IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(v4.ip().into())
    } else {
        address.as_sockaddr_in6().map(|v6| v6.ip().into())
    }
}

fn udp_worker(socket: &std::net::UdpSocket, live: &ArcSwap<Live>, shutdown: &CancellationToken) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_SHUTDOWN_POLL)))
    {
        warn!(error = %e, "udp socket setup");
        return;
    }
    let fd = socket.as_raw_fd();
    // Every buffer is made once per worker; the loop allocates nothing.
    let mut packets = vec![0u8; UDP_BATCH * MAX_MESSAGE];
    let mut answers: Vec<Vec<u8>> = (0..UDP_BATCH)
        .map(|_| Vec::with_capacity(MAX_MESSAGE))
        .collect();
    let mut receiving = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut sending = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(UDP_BATCH);
    // Which answers to send, and to whom.
    let mut replies: Vec<usize> = Vec::with_capacity(UDP_BATCH);
    let mut peers: Vec<Option<SockaddrStorage>> = Vec::with_capacity(UDP_BATCH);
    while !shutdown.is_cancelled() {
        received.clear();
        let mut chunks = packets.chunks_mut(MAX_MESSAGE);
        let mut slices: [[IoSliceMut<'_>; 1]; UDP_BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        match recvmmsg(
            fd,
            &mut receiving,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(batch) => received.extend(batch.map(|datagram| (datagram.bytes, datagram.address))),
            // The read timeout: time to look at the shutdown token.
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep serving.
                debug!(error = %e, "udp receive");
                continue;
            }
        }
        let live = live.load();
        let shared = live.shared();
        let catalog = shared.catalog.load();
        let now = unix_now();
        replies.clear();
        peers.clear();
        for (i, (len, address)) in received.iter().enumerate() {
            let Some(ip) = address.as_ref().and_then(peer_ip) else {
                continue;
            };
            let client = Client {
                transport: Transport::Udp,
                address: ip,
                now,
            };
            let start = i * MAX_MESSAGE;
            let query = &packets[start..start + (*len).min(MAX_MESSAGE)];
            let outcome = shared
                .responder
                .respond(&catalog, query, client, &mut answers[i]);
            if outcome == Outcome::Reply {
                replies.push(i);
                peers.push(*address);
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            let mut pending = replies[sent..].iter().map(|i| answers[*i].as_slice());
            let slices: [[IoSlice<'_>; 1]; UDP_BATCH] =
                std::array::from_fn(|_| [IoSlice::new(pending.next().unwrap_or_default())]);
            let count = replies.len() - sent;
            match sendmmsg(
                fd,
                &mut sending,
                &slices[..count],
                &peers[sent..],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::empty(),
            ) {
                // Fewer than asked: the next one failed, and says why on the next call.
                Ok(done) => sent += done.count().max(1),
                Err(e) => {
                    debug!(error = %e, peer = ?peers[sent], "udp send");
                    sent += 1;
                }
            }
        }
    }
}

/// Accepts TCP connections (RFC 7766) up to the configured bounds: in all, and per address.
pub async fn serve_tcp(
    listener: TcpListener,
    live: Arc<ArcSwap<Live>>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut bounds = Bounds::of(live.load().shared());
    let mut connections = JoinSet::new();
    loop {
        // The bounds follow a reloaded configuration; connections open keep their slots.
        if !bounds.follow(live.load().shared()) {
            bounds = Bounds::of(live.load().shared());
        }
        let (limit, per_address) = (&bounds.limit, &bounds.per_address);
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = per_address.take(peer.ip()) else {
            debug!(%peer, "tcp connection refused: too many from this address");
            continue;
        };
        // What serves now, taken once the connection is in: a reload while this loop waited
        // to accept must not leave the new connection on the replaced zones.
        let shared = live.load().shared().clone();
        let shutdown = shutdown.clone();
        crate::metrics::metrics().tcp_opened();
        connections.spawn(async move {
            if let Err(e) = connection(stream, peer, &shared, &shutdown).await {
                debug!(error = %e, %peer, "tcp connection");
            }
            crate::metrics::metrics().tcp_closed();
            drop((permit, slot));
        });
        while connections.try_join_next().is_some() {}
    }
    // Connections answer the query in hand and stop at their next read; a client that does not
    // take its answer is cut off by the I/O timeout, and this wait is bounded as well.
    let drain = drain.min(live.load().shared().tcp_io_timeout);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let io_timeout = shared.tcp_io_timeout;
    // What has arrived and is not answered yet: `input[start..end]`. Room for the largest
    // message and its length, and more, so that pipelined queries are read together.
    let mut input = vec![0u8; TCP_INPUT];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(4096);
    // Answers not written yet: every query that has arrived is answered, then all of them are
    // written at once (RFC 7766 section 6.2.1.1 pipelining).
    let mut pending = Vec::with_capacity(4096);
    let mut answered = 0u64;
    loop {
        // The queries that arrived together are answered from one version of the zones.
        let catalog = shared.catalog.load_full();
        let client = Client {
            transport: Transport::Tcp,
            address: peer.ip(),
            now: unix_now(),
        };
        while let Some(len) = complete_frame(&input[start..end]) {
            let query = start + 2..start + 2 + len;
            start = query.end;
            answered += 1;
            let outcome =
                shared
                    .responder
                    .respond(&catalog, &input[query.clone()], client, &mut out);
            match outcome {
                Outcome::Reply => {
                    frame(&mut pending, &out);
                    if pending.len() >= TCP_INPUT {
                        write_pending(&mut stream, &mut pending, io_timeout).await?;
                    }
                }
                Outcome::Drop => {
                    write_pending(&mut stream, &mut pending, io_timeout).await?;
                    return Ok(());
                }
                Outcome::Transfer(request) => {
                    write_pending(&mut stream, &mut pending, io_timeout).await?;
                    let Some(zone) = catalog.get(&request.origin_key).cloned() else {
                        return Ok(());
                    };
                    let started = std::time::Instant::now();
                    let query = input[query].to_vec();
                    let journals = shared.journals.clone();
                    let serial = zone.serial();
                    let origin = zone.origin_text();
                    let now = u64::from(client.now);
                    let answer = tokio::task::spawn_blocking(move || {
                        xfr::answer(&zone, Some(&journals), &request, &query, now)
                    })
                    .await
                    .map_err(std::io::Error::other)?;
                    let bytes: usize = answer.messages.iter().map(Vec::len).sum();
                    crate::metrics::metrics().transferred_out();
                    for message in &answer.messages {
                        frame(&mut pending, message);
                        write_pending(&mut stream, &mut pending, io_timeout).await?;
                    }
                    info!(
                        zone = %origin,
                        %peer,
                        serial,
                        kind = answer.kind,
                        records = answer.records,
                        bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "transfer out"
                    );
                }
            }
        }
        write_pending(&mut stream, &mut pending, io_timeout).await?;
        // Keep what is left of a message at the front, with room after it for the rest.
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        // A message begun must be finished within the I/O timeout. Before the next one: the idle
        // timeout; once stopping, only what has already arrived, except on a connection that
        // has not sent its first query yet, which is on its way and gets `FIRST_QUERY_GRACE`
        // (closing first would fail a query nothing else refused).
        let partial = end > 0;
        let wait = |stopping: bool| match (partial, stopping, answered) {
            (true, _, _) => io_timeout,
            (false, false, _) => shared.tcp_idle_timeout,
            (false, true, 0) => FIRST_QUERY_GRACE,
            (false, true, _) => Duration::ZERO,
        };
        let room = &mut input[end..];
        let read = tokio::select! {
            read = tokio::time::timeout(wait(shutdown.is_cancelled()), stream.read(room)) => read,
            () = shutdown.cancelled(), if !shutdown.is_cancelled() => {
                tokio::time::timeout(wait(true), stream.read(&mut input[end..])).await
            }
        };
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => end += n,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Bytes read at once from a TCP connection: the largest message with its length, and more.
const TCP_INPUT: usize = 2 * (MAX_MESSAGE + 2);

/// The length of the message at the start of `input`, if all of it has arrived.
fn complete_frame(input: &[u8]) -> Option<usize> {
    let (length, rest) = input.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*length));
    (rest.len() >= len).then_some(len)
}

/// Appends `message` to `pending` with its two-byte length (RFC 1035 section 4.2.2).
fn frame(pending: &mut Vec<u8>, message: &[u8]) {
    pending.extend_from_slice(&(message.len() as u16).to_be_bytes());
    pending.extend_from_slice(message);
}

/// Writes `bytes` (and empties it) within `timeout`.
async fn write_pending(
    stream: &mut TcpStream,
    bytes: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let written = match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client does not read its answers",
        )),
    };
    bytes.clear();
    written
}

/// Seconds since the Unix epoch, modulo 2^32, as cookies count them.
fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as u32)
}
