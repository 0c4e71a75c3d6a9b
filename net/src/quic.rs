//! QUIC across a binary upgrade, for every QUIC endpoint of the process (the web edge's HTTP/3,
//! DNS over QUIC). The old and the new process share each UDP socket, and the kernel hands each
//! datagram to whichever of them reads first, so each datagram must find its way to the process
//! that holds its connection, or that connection dies (QUIC answers a packet for a connection it
//! does not know with a stateless reset, and the generations share the reset key).
//!
//! As QUIC load balancers do (draft-ietf-quic-load-balancers), the connection IDs say where
//! their connection lives: every CID this server issues carries its process's *generation*,
//! hidden so that only the server can read it (a 6-byte random nonce, then the generation
//! XORed with a keyed SipHash of the nonce; the key is shared by the generations). During a
//! handoff the two processes are joined by a Unix datagram socket, and each passes on what it
//! reads for the other, naming the socket it came in on where there are several:
//!
//! ```text
//!                      ┌─────────── shared UDP socket ───────────┐
//!                      ▼                                         ▼
//!   old process: RoutingSocket ◀── link (Unix datagrams) ──▶ RoutingSocket: new process
//!   keeps: CIDs of its generation            keeps: its own CIDs, and every new connection
//! ```
//!
//! A packet whose CID carries no live generation (a client's first Initial, with a CID of its
//! own choosing) starts a new connection: the process reading it keeps it, until the new process
//! is ready; from then on the old one passes such packets on too, as it accepts no more. The new
//! process's own connections are passed to it from the start (it accepts as soon as it runs).
//!
//! Besides the routing, the endpoint the generations share: the stateless reset key and the
//! address validation (Retry) token key come from the key they share ([`endpoint`]).

use std::{
    collections::HashMap,
    fmt,
    hash::Hasher,
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use quinn::{
    AsyncUdpSocket, ConnectionId, ConnectionIdGenerator, UdpPoller,
    udp::{EcnCodepoint, RecvMeta, Transmit},
};
use ring::rand::{SecureRandom, SystemRandom};
use siphasher::sip::SipHasher13;
use tokio::sync::mpsc;
use tracing::{debug, info};

/// Length of the connection IDs this server issues: a 6-byte nonce and the hidden generation.
const CID_LEN: usize = 8;
const NONCE_LEN: usize = 6;

/// Which process issued a connection ID, and the key that hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Generation {
    /// The process's number in the upgrade sequence.
    pub id: u16,
    /// The key the generations share.
    pub key: [u8; 16],
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// A first generation, for a process started afresh: a random id and key.
    pub fn random() -> io::Result<Generation> {
        let mut bytes = [0u8; 18];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io::Error::other("no system randomness"))?;
        let mut key = [0u8; 16];
        key.copy_from_slice(&bytes[2..]);
        Ok(Generation {
            id: u16::from_be_bytes([bytes[0], bytes[1]]),
            key,
        })
    }

    /// The generation of the process that takes over from this one: same key, next id.
    pub fn next(&self) -> Generation {
        Generation {
            id: self.id.wrapping_add(1),
            key: self.key,
        }
    }

    fn mask(&self, nonce: &[u8]) -> u16 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(nonce);
        hasher.finish() as u16
    }

    /// A connection ID carrying this generation.
    fn cid(&self, nonce: [u8; NONCE_LEN]) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        bytes[..NONCE_LEN].copy_from_slice(&nonce);
        bytes[NONCE_LEN..].copy_from_slice(&(self.id ^ self.mask(&nonce)).to_be_bytes());
        ConnectionId::new(&bytes)
    }

    /// The generation a connection ID carries, if it is one of ours (any other CID decodes to
    /// some value too: only a live generation's value means anything).
    fn of(&self, cid: &[u8]) -> Option<u16> {
        if cid.len() != CID_LEN {
            return None;
        }
        let hidden = u16::from_be_bytes([cid[NONCE_LEN], cid[NONCE_LEN + 1]]);
        Some(hidden ^ self.mask(&cid[..NONCE_LEN]))
    }
}

/// quinn's source of connection IDs: random nonces, this process's generation.
struct Cids {
    generation: Generation,
    random: SystemRandom,
}

impl Cids {
    fn new(generation: Generation) -> Cids {
        Cids {
            generation,
            random: SystemRandom::new(),
        }
    }
}

impl ConnectionIdGenerator for Cids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's randomness does not fail once the process runs; were it to, a
        // time-based nonce still differs from every other (quinn also refuses duplicates).
        if self.random.fill(&mut nonce).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_be_bytes();
            nonce.copy_from_slice(&now[now.len() - NONCE_LEN..]);
        }
        self.generation.cid(nonce)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The destination connection ID of a QUIC packet: after the version and its length in a long
/// header; right after the first byte in a short one, with our fixed length.
fn destination_cid(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first & 0x80 != 0 {
        let length = usize::from(*packet.get(5)?);
        packet.get(6..6 + length)
    } else {
        packet.get(1..1 + CID_LEN)
    }
}

/// The other process during a handoff.
struct Link {
    socket: Arc<tokio::net::UnixDatagram>,
    /// Its generation.
    generation: u16,
    /// The new process, rather than the old one.
    successor: bool,
    /// For a successor: it is serving, and takes every new connection.
    ready: AtomicBool,
    /// Told when the link is let go: its reader stops, and the socket closes.
    dropped: tokio::sync::Notify,
}

/// Passed-on packets waiting for the socket they are for.
type Inboxes = Arc<Mutex<HashMap<Frames, mpsc::Sender<Vec<u8>>>>>;

/// Packets passed on and not read yet, per socket; more are dropped, as a full network queue
/// drops them (QUIC resends).
const INBOX: usize = 1024;

/// Where the process's QUIC packets go during a handoff; the binary attaches and detaches the
/// other process as the handoff proceeds.
#[derive(Clone)]
pub struct QuicRouting {
    generation: Generation,
    link: Arc<ArcSwapOption<Link>>,
    inboxes: Inboxes,
}

/// How the packets of one socket are told apart on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frames {
    /// Unnamed: the process's first QUIC socket (the web edge's), whose frames have always
    /// been unnamed, so that the process before an upgrade and the one after understand each
    /// other whichever is the newer.
    Unnamed,
    /// Named by the address of the socket they came in on.
    Named(SocketAddr),
}

impl fmt::Debug for QuicRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicRouting")
            .field("generation", &self.generation)
            .field("linked", &self.link.load().is_some())
            .finish()
    }
}

impl QuicRouting {
    /// This process, of `generation`, with no other process linked yet.
    pub fn new(generation: Generation) -> QuicRouting {
        QuicRouting {
            generation,
            link: Arc::new(ArcSwapOption::empty()),
            inboxes: Arc::default(),
        }
    }

    /// This process's generation.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// Joins the process this one took over from: packets of its connections go to it over
    /// `socket` until it is gone.
    pub fn attach_predecessor(
        &self,
        socket: std::os::unix::net::UnixDatagram,
        generation: u16,
    ) -> io::Result<()> {
        self.attach(socket, generation, false)
    }

    /// Joins the process taking over: once it is ready, packets not of this process's
    /// connections go to it.
    pub fn attach_successor(
        &self,
        socket: std::os::unix::net::UnixDatagram,
        generation: u16,
    ) -> io::Result<()> {
        self.attach(socket, generation, true)
    }

    fn attach(
        &self,
        socket: std::os::unix::net::UnixDatagram,
        generation: u16,
        successor: bool,
    ) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let socket = Arc::new(tokio::net::UnixDatagram::from_std(socket)?);
        let link = Arc::new(Link {
            socket,
            generation,
            successor,
            ready: AtomicBool::new(false),
            dropped: tokio::sync::Notify::new(),
        });
        if let Some(replaced) = self.link.swap(Some(link.clone())) {
            replaced.dropped.notify_one();
        }
        tokio::spawn(deliver(link, self.link.clone(), self.inboxes.clone()));
        Ok(())
    }

    /// Where packets passed on for the socket of `frames` arrive.
    fn inbox(&self, frames: Frames) -> mpsc::Receiver<Vec<u8>> {
        let (sender, receiver) = mpsc::channel(INBOX);
        self.inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(frames, sender);
        receiver
    }

    /// The successor serves: new connections are its from now on.
    pub fn successor_ready(&self) {
        if let Some(link) = self.link.load().as_ref()
            && link.successor
        {
            link.ready.store(true, Ordering::Release);
        }
    }

    /// The other process is gone (or the upgrade failed): every packet is this process's.
    pub fn detach(&self) {
        if let Some(link) = self.link.swap(None) {
            link.dropped.notify_one();
        }
    }

    /// Whether a packet read here belongs to the other process.
    fn for_link(&self, link: &Link, packet: &[u8]) -> bool {
        let owner = destination_cid(packet).and_then(|cid| self.generation.of(cid));
        if owner == Some(link.generation) {
            // The other process's connection (a successor accepts from the moment it runs).
            true
        } else {
            link.successor
                && link.ready.load(Ordering::Acquire)
                && owner != Some(self.generation.id)
        }
    }
}

/// Reads what the other process passes on over `link` and hands each packet to the socket it
/// is for, until that process is gone (or another link replaces this one).
async fn deliver(link: Arc<Link>, current: Arc<ArcSwapOption<Link>>, inboxes: Inboxes) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            received = link.socket.recv(&mut buf) => received,
            () = link.dropped.notified() => return,
        };
        match received {
            Ok(length) if length > 0 => {
                let Some((frames, frame)) = unname(&buf[..length]) else {
                    continue;
                };
                let inbox = inboxes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&frames)
                    .cloned();
                // No such socket here, or a full inbox: dropped, as the network may drop it.
                if let Some(inbox) = inbox {
                    let _ = inbox.try_send(frame);
                }
            }
            other => {
                if let Err(e) = other {
                    debug!(error = %e, "quic handoff link");
                }
                info!(
                    generation = link.generation,
                    "quic handoff: the other process is gone"
                );
                current.compare_and_swap(&Some(link.clone()), None);
                return;
            }
        }
    }
}

/// The shared UDP socket as quinn sees it: packets for the other process are passed on, and
/// packets the other process passed on are read as if they came from the network.
pub struct RoutingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    routing: QuicRouting,
    frames: Frames,
    inbox: Mutex<mpsc::Receiver<Vec<u8>>>,
}

impl fmt::Debug for RoutingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingSocket")
            .field("inner", &self.inner)
            .field("handoff", &self.routing)
            .finish()
    }
}

impl RoutingSocket {
    /// `inner` routed by `routing`, its packets told apart on the link as `frames` says.
    pub fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        routing: QuicRouting,
        frames: Frames,
    ) -> RoutingSocket {
        let inbox = Mutex::new(routing.inbox(frames));
        RoutingSocket {
            inner,
            routing,
            frames,
            inbox,
        }
    }

    /// A packet the other process passed on, if one is waiting: copied into `buf`, with its
    /// metadata.
    fn poll_inbox(
        &self,
        cx: &mut Context,
        buf: &mut IoSliceMut<'_>,
        meta: &mut RecvMeta,
    ) -> Poll<()> {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match inbox.poll_recv(cx) {
                Poll::Ready(Some(frame)) if frame.len() <= buf.len() => {
                    buf[..frame.len()].copy_from_slice(&frame);
                    if let Some(received) = decode(buf, frame.len()) {
                        *meta = received;
                        return Poll::Ready(());
                    }
                    // Not one of ours: dropped, as the network may drop it.
                }
                Poll::Ready(Some(_)) => {}
                // The routing (which holds the sender) outlives its sockets: never closed.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Passes on the datagrams of `received` that belong to the other process, and keeps the
    /// rest in place; returns how many of `metas` are left.
    fn route(&self, link: &Link, bufs: &mut [IoSliceMut<'_>], metas: &mut [RecvMeta]) -> usize {
        let mut kept = 0;
        for index in 0..metas.len() {
            let mut meta = metas[index];
            let stride = meta.stride.max(1);
            // A GRO batch holds datagrams of one size (the last may be shorter); those to pass
            // on are taken out and the rest closed up, so the batch keeps that shape.
            let mut offset = 0;
            let mut end = 0;
            {
                let buf: &mut [u8] = &mut bufs[index];
                while offset < meta.len {
                    let size = stride.min(meta.len - offset);
                    let packet = &buf[offset..offset + size];
                    if self.routing.for_link(link, packet) {
                        let frame = encode(&meta, packet, self.frames);
                        // Full link: dropped, as a full network queue would (QUIC resends).
                        let _ = link.socket.try_send(&frame);
                    } else {
                        buf.copy_within(offset..offset + size, end);
                        end += size;
                    }
                    offset += size;
                }
            }
            if end == 0 {
                continue;
            }
            meta.len = end;
            if kept != index {
                let (head, tail) = bufs.split_at_mut(index);
                head[kept][..end].copy_from_slice(&tail[0][..end]);
            }
            metas[kept] = meta;
            kept += 1;
        }
        kept
    }
}

impl AsyncUdpSocket for RoutingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            if let (Some(buf), Some(first)) = (bufs.first_mut(), meta.first_mut())
                && self.poll_inbox(cx, buf, first).is_ready()
            {
                return Poll::Ready(Ok(1));
            }
            let received = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(received)) => received,
                other => return other,
            };
            let Some(link) = self.routing.link.load_full() else {
                return Poll::Ready(Ok(received));
            };
            let kept = self.route(&link, bufs, &mut meta[..received]);
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything went to the other process: read again (or register for wakeup).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// A QUIC endpoint on `socket` serving with `server` (see [`server_config`]), its packets
/// routed by `routing` and told apart on the link as `frames` says; its connection IDs carry
/// this process's generation, and its stateless resets use the key the generations share.
pub fn endpoint(
    server: quinn::ServerConfig,
    socket: std::net::UdpSocket,
    routing: &QuicRouting,
    frames: Frames,
) -> io::Result<quinn::Endpoint> {
    let reset_key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &derive(b"reset", &routing.generation().key),
    );
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(reset_key));
    let generation = routing.generation().clone();
    endpoint.cid_generator(move || Box::new(Cids::new(generation.clone())));
    let runtime =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no async runtime for QUIC"))?;
    let socket = runtime.wrap_udp_socket(socket)?;
    let socket = Arc::new(RoutingSocket::new(socket, routing.clone(), frames));
    quinn::Endpoint::new_with_abstract_socket(endpoint, Some(server), socket, runtime)
}

/// A QUIC server's settings with `crypto`, and the address validation (Retry) token key the
/// generations share, so that a token from one process is good in the next.
pub fn server_config(
    crypto: Arc<dyn quinn::crypto::ServerConfig>,
    routing: &QuicRouting,
) -> quinn::ServerConfig {
    let token_key = ring::hkdf::Prk::new_less_safe(
        ring::hkdf::HKDF_SHA256,
        &derive(b"token", &routing.generation().key),
    );
    quinn::ServerConfig::new(crypto, Arc::new(token_key))
}

/// From now on, every new connection to `endpoint` is refused at once (CONNECTION_REFUSED), so
/// that its client tries again (and reaches the process that serves, after an upgrade) rather
/// than waiting for its own timeout; connections open go on. For a process that is stopping.
pub fn refuse_new_connections(endpoint: quinn::Endpoint) {
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            incoming.refuse();
        }
    });
}

/// A key for `purpose` from the key the generations of an upgrade share.
fn derive(purpose: &[u8], key: &[u8; 16]) -> Vec<u8> {
    [purpose, &key[..]].concat()
}

// A passed-on packet: flags (bit 0: source is IPv6; bits 1-2: destination address absent, v4,
// v6; bit 3: named), for a named one the socket's address (its length, 4 or 16, the address,
// the port), the ECN bits (0xff: none), the source address and port, the destination address,
// then the packet.

const NAMED: u8 = 0x08;

fn encode(meta: &RecvMeta, packet: &[u8], frames: Frames) -> Vec<u8> {
    let mut frame = Vec::with_capacity(packet.len() + 60);
    let source_v6 = u8::from(meta.addr.is_ipv6());
    let destination = match meta.dst_ip {
        None => 0,
        Some(IpAddr::V4(_)) => 1,
        Some(IpAddr::V6(_)) => 2,
    };
    let named = match frames {
        Frames::Unnamed => 0,
        Frames::Named(_) => NAMED,
    };
    frame.push(source_v6 | destination << 1 | named);
    if let Frames::Named(socket) = frames {
        match socket.ip() {
            IpAddr::V4(ip) => frame.extend_from_slice(&[&[4][..], &ip.octets()].concat()),
            IpAddr::V6(ip) => frame.extend_from_slice(&[&[16][..], &ip.octets()].concat()),
        }
        frame.extend_from_slice(&socket.port().to_be_bytes());
    }
    frame.push(meta.ecn.map_or(0xff, |ecn| ecn as u8));
    match meta.addr.ip() {
        IpAddr::V4(ip) => frame.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => frame.extend_from_slice(&ip.octets()),
    }
    frame.extend_from_slice(&meta.addr.port().to_be_bytes());
    match meta.dst_ip {
        Some(IpAddr::V4(ip)) => frame.extend_from_slice(&ip.octets()),
        Some(IpAddr::V6(ip)) => frame.extend_from_slice(&ip.octets()),
        None => {}
    }
    frame.extend_from_slice(packet);
    frame
}

/// The socket a passed-on frame is for, and the frame without its name.
fn unname(frame: &[u8]) -> Option<(Frames, Vec<u8>)> {
    let (&flags, rest) = frame.split_first()?;
    if flags & NAMED == 0 {
        return Some((Frames::Unnamed, frame.to_vec()));
    }
    let (&length, rest) = rest.split_first()?;
    let (ip, rest) = rest.split_at_checked(usize::from(length))?;
    let ip = match length {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
        _ => return None,
    };
    let (port, rest) = rest.split_first_chunk::<2>()?;
    let socket = SocketAddr::new(ip, u16::from_be_bytes(*port));
    Some((
        Frames::Named(socket),
        [&[flags & !NAMED][..], rest].concat(),
    ))
}

/// The packet of the passed-on frame in `buf[..length]` (without a name), moved to the start
/// of `buf`, and its metadata.
fn decode(buf: &mut [u8], length: usize) -> Option<RecvMeta> {
    let frame = buf.get(..length)?;
    let (&flags, rest) = frame.split_first()?;
    let (&ecn, mut rest) = rest.split_first()?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let ip = |bytes: &[u8]| -> Option<IpAddr> {
        match bytes.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(bytes).ok()?,
            ))),
            _ => None,
        }
    };
    let source = ip(take(if flags & 1 == 1 { 16 } else { 4 })?)?;
    let port = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let dst_ip = match flags >> 1 {
        0 => None,
        1 => Some(ip(take(4)?)?),
        2 => Some(ip(take(16)?)?),
        _ => return None,
    };
    let (start, size) = (length - rest.len(), rest.len());
    buf.copy_within(start..length, 0);
    Some(RecvMeta {
        addr: SocketAddr::new(source, port),
        len: size,
        stride: size,
        ecn: EcnCodepoint::from_bits(ecn),
        dst_ip,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn short_packet(cid: &ConnectionId) -> Vec<u8> {
        let mut packet = vec![0x40];
        packet.extend_from_slice(cid);
        packet.extend_from_slice(&[0xaa; 30]);
        packet
    }

    fn long_packet(cid: &[u8]) -> Vec<u8> {
        let mut packet = vec![0xc0, 0, 0, 0, 1, cid.len() as u8];
        packet.extend_from_slice(cid);
        packet.extend_from_slice(&[8, 1, 2, 3, 4, 5, 6, 7, 8]);
        packet.extend_from_slice(&[0xbb; 1200]);
        packet
    }

    #[test]
    fn cids_carry_their_generation_hidden() {
        let old = Generation::random().unwrap();
        let new = old.next();
        let mut cids = Cids::new(old.clone());
        let a = cids.generate_cid();
        let b = cids.generate_cid();
        assert_eq!(a.len(), CID_LEN);
        assert_ne!(a, b);
        assert_eq!(new.of(&a), Some(old.id), "read with the shared key");
        assert_eq!(old.of(&b), Some(old.id));
        assert_eq!(new.of(&Cids::new(new.clone()).generate_cid()), Some(new.id));
        // Not in plain sight: the last two bytes differ between CIDs of one generation.
        let tails: std::collections::HashSet<[u8; 2]> = (0..64)
            .map(|_| {
                let cid = cids.generate_cid();
                [cid[6], cid[7]]
            })
            .collect();
        assert!(tails.len() > 32, "{}", tails.len());
        assert_eq!(old.of(&[1, 2, 3]), None, "another length is not ours");
    }

    #[tokio::test]
    async fn passed_on_packets_reach_the_socket_they_came_in_on() {
        let old = Generation::random().unwrap();
        let (here, there) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let routing = QuicRouting::new(old.clone());
        routing.attach_successor(here, old.next().id).unwrap();
        let dns: SocketAddr = "127.0.0.1:853".parse().unwrap();
        let mut inboxes = [
            routing.inbox(Frames::Unnamed),
            routing.inbox(Frames::Named(dns)),
        ];
        let meta = RecvMeta {
            addr: "192.0.2.1:4433".parse().unwrap(),
            len: 0,
            stride: 0,
            ecn: None,
            dst_ip: None,
        };
        let elsewhere = Frames::Named("127.0.0.1:1".parse().unwrap());
        for (packet, frames) in [
            (&b"nowhere"[..], elsewhere),
            (b"for the web", Frames::Unnamed),
            (b"for the dns", Frames::Named(dns)),
        ] {
            there.send(&encode(&meta, packet, frames)).unwrap();
        }
        for (inbox, packet) in inboxes
            .iter_mut()
            .zip([&b"for the web"[..], b"for the dns"])
        {
            let frame = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
                .await
                .unwrap()
                .unwrap();
            let mut buf = frame.clone();
            let received = decode(&mut buf, frame.len()).unwrap();
            assert_eq!(&buf[..received.len], packet);
            assert_eq!(received.addr, meta.addr);
            assert!(inbox.try_recv().is_err(), "one packet each");
        }
        // Let go, the link's socket closes (its reader stops).
        routing.detach();
        tokio::time::timeout(Duration::from_secs(5), async {
            while there.send(b"anyone?").is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }

    #[test]
    fn packets_go_to_the_process_of_their_connection() {
        let old = Generation::random().unwrap();
        let new = old.next();
        let (here, _there) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let old_cid = Cids::new(old.clone()).generate_cid();
        let new_cid = Cids::new(new.clone()).generate_cid();
        let client_cid = [7u8; 12];

        // The new process, joined to the old: the old one's connections go back to it.
        let in_new = QuicRouting::new(new.clone());
        in_new
            .attach_predecessor(here.try_clone().unwrap(), old.id)
            .unwrap();
        let link = in_new.link.load_full().unwrap();
        assert!(in_new.for_link(&link, &short_packet(&old_cid)));
        assert!(in_new.for_link(&link, &long_packet(&old_cid)));
        assert!(!in_new.for_link(&link, &short_packet(&new_cid)));
        assert!(
            !in_new.for_link(&link, &long_packet(&client_cid)),
            "new connections stay"
        );

        // The old process: passes on its successor's connections at once, new connections
        // once the successor is ready; then keeps only its own.
        let in_old = QuicRouting::new(old.clone());
        in_old.attach_successor(here, new.id).unwrap();
        let link = in_old.link.load_full().unwrap();
        assert!(in_old.for_link(&link, &short_packet(&new_cid)));
        assert!(!in_old.for_link(&link, &long_packet(&client_cid)));
        assert!(!in_old.for_link(&link, &short_packet(&old_cid)));
        in_old.successor_ready();
        assert!(in_old.for_link(&link, &short_packet(&new_cid)));
        assert!(in_old.for_link(&link, &long_packet(&client_cid)));
        assert!(!in_old.for_link(&link, &short_packet(&old_cid)));
    }

    #[test]
    fn a_passed_on_packet_arrives_as_it_was_received() {
        for (source, destination) in [
            ("192.0.2.1:4433", None),
            ("[2001:db8::1]:443", Some("2001:db8::2")),
            ("198.51.100.7:1", Some("203.0.113.9")),
        ] {
            let meta = RecvMeta {
                addr: source.parse().unwrap(),
                len: 5,
                stride: 5,
                ecn: Some(EcnCodepoint::Ect0),
                dst_ip: destination.map(|d| d.parse().unwrap()),
            };
            let named = Frames::Named("192.0.2.53:853".parse().unwrap());
            let (frames, unnamed) = unname(&encode(&meta, b"hello", named)).unwrap();
            assert_eq!(frames, named);
            let frame = encode(&meta, b"hello", Frames::Unnamed);
            assert_eq!(unnamed, frame, "the same frame once its name is read");
            assert_eq!(unname(&frame).unwrap(), (Frames::Unnamed, frame.clone()));
            let mut buf = frame.clone();
            let decoded = decode(&mut buf, frame.len()).unwrap();
            assert_eq!(&buf[..decoded.len], b"hello");
            assert_eq!(decoded.addr, meta.addr);
            assert_eq!(decoded.dst_ip, meta.dst_ip);
            assert_eq!(decoded.ecn, meta.ecn);
            for cut in 0..frame.len() - 5 {
                let mut buf = frame.clone();
                assert!(decode(&mut buf, cut).is_none(), "{cut}");
            }
        }
    }
}
