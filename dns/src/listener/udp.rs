//! UDP: worker threads of their own taking datagrams in batches.

use std::{
    io::{IoSlice, IoSliceMut},
    os::fd::AsRawFd,
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use nix::{
    errno::Errno,
    sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{MAX_MESSAGE, Serving, on_threads, unix_now};
use crate::answer::{Client, Outcome, Transport};

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
    live: Arc<ArcSwap<impl Serving>>,
    shutdown: CancellationToken,
) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let works = (0..workers).filter_map(|_| {
        let socket = socket
            .try_clone()
            .map_err(|e| warn!(error = %e, "udp worker"))
            .ok()?;
        let (live, shutdown) = (live.clone(), shutdown.clone());
        Some(move || udp_worker(&socket, &live, &shutdown))
    });
    on_threads("dns-udp", works).await;
}

/// The address a datagram came from.
fn peer_ip(address: &SockaddrStorage) -> Option<std::net::IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(v4.ip().into())
    } else {
        address.as_sockaddr_in6().map(|v6| v6.ip().into())
    }
}

fn udp_worker(
    socket: &std::net::UdpSocket,
    live: &ArcSwap<impl Serving>,
    shutdown: &CancellationToken,
) {
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
