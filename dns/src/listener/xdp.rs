//! UDP in XDP mode (`[dns] xdp`): queries to the DNS port on the named interfaces taken off
//! the card by an AF_XDP socket per queue, before the kernel's IP and UDP stack, and answered
//! in place in the same frame. What the kernel's stack did for a socket is done here: the
//! Ethernet, IP and UDP headers read and written back turned around, with their checksums.
//!
//! The sockets bound on the port keep serving everything else (other interfaces, TCP) and take
//! the interface's queries back whenever XDP is not attached: while it starts, if it cannot
//! (no privilege, no XDP support), and through an upgrade, where the new process attaches as
//! soon as the old one's program leaves the interface.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::Range,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use foobar_xdp::{Steering, Xsk};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Serving, on_threads, unix_now};
use crate::{
    answer::{Client, Outcome, Transport},
    metrics::XdpQueue,
};

/// How often a waiting worker looks at the shutdown token, and how often an interface held by
/// another XDP program (an earlier process of ours, during an upgrade), or gone, is tried
/// again.
const POLL: Duration = Duration::from_millis(200);
const RETRY_ATTACH: Duration = Duration::from_secs(1);
/// How often a worker reads the kernel's drop counts of its socket for `/metrics`, and checks
/// that its interface is still there.
const STATISTICS_EVERY: Duration = Duration::from_secs(1);
/// Frames answered per pass over the rings.
const BATCH: u32 = 64;
const ETHERNET: usize = 14;
const UDP: u8 = 17;
const HOP_LIMIT: u8 = 64;

/// Serves DNS over UDP in XDP mode on each of `interfaces` for `port`, until `shutdown`.
/// An interface that cannot be served this way is logged; its queries stay with the sockets.
pub async fn serve_xdp(
    interfaces: Vec<String>,
    port: u16,
    live: Arc<ArcSwap<impl Serving>>,
    shutdown: CancellationToken,
) {
    let works = interfaces.into_iter().map(|interface| {
        let (live, shutdown) = (live.clone(), shutdown.clone());
        move || {
            if let Err(e) = serve_interface(&interface, port, &live, &shutdown) {
                warn!(%interface, port, error = %e, "dns xdp: not attached; the interface's UDP queries go to the sockets");
            }
        }
    });
    on_threads("dns-xdp", works).await;
}

/// One interface: a socket per queue, the program attached, a worker thread per queue; when
/// the interface goes away (or a worker fails), detached, and attached again once it is back.
fn serve_interface(
    interface: &str,
    port: u16,
    live: &ArcSwap<impl Serving>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut served = false;
    loop {
        let Some((ifindex, mut sockets, steering)) =
            attach_when_free(interface, port, served, shutdown)?
        else {
            return Ok(());
        };
        let queues = sockets.len();
        info!(%interface, port, queues, native = steering.native, "dns listening on udp in xdp mode");
        served = true;
        // One worker failing stops them all: the program then leaves the interface rather
        // than steer queries to a socket nobody reads.
        let stop = shutdown.child_token();
        std::thread::scope(|scope| {
            for (queue, socket) in (0..).zip(&mut sockets) {
                let counters = crate::metrics::metrics().xdp_queue(interface, queue);
                let stop = &stop;
                scope.spawn(move || {
                    counters.attached.store(1, Relaxed);
                    let on = Interface {
                        name: interface,
                        index: ifindex,
                    };
                    if let Err(e) = worker(socket, &on, &counters, live, stop) {
                        warn!(%interface, queue, error = %e, "dns xdp worker stopped");
                        stop.cancel();
                    }
                    counters.attached.store(0, Relaxed);
                });
            }
        });
        // The program leaves the interface first, then the sockets close.
        drop(steering);
        drop(sockets);
        if shutdown.is_cancelled() {
            return Ok(());
        }
        warn!(%interface, "dns xdp: detached; the interface's UDP queries go to the sockets until it can attach again");
    }
}

/// An interface served, by name and by the index it had when attached.
struct Interface<'a> {
    name: &'a str,
    index: u32,
}

/// Sockets and the program attached to `interface`, waiting while another process holds it
/// (the one this one took over from, which lets go once it has stopped) or, once it has been
/// `served`, while it is gone; none if shut down meanwhile.
fn attach_when_free(
    interface: &str,
    port: u16,
    served: bool,
    shutdown: &CancellationToken,
) -> std::io::Result<Option<(u32, Vec<Xsk>, Steering)>> {
    let mut waited = false;
    loop {
        let attached = foobar_xdp::interface_index(interface).and_then(|ifindex| {
            let queues = foobar_xdp::interface_queues(interface)?;
            let (sockets, steering) = attach(ifindex, queues, port)?;
            Ok((ifindex, sockets, steering))
        });
        let error = match attached {
            Ok(attached) => return Ok(Some(attached)),
            Err(e) => e,
        };
        let busy = error.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32);
        let gone = error.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32);
        let worth_waiting = busy || (served && gone);
        if !worth_waiting {
            return Err(error);
        }
        if !waited {
            info!(%interface, error = %error, "dns xdp: waiting for the interface to be free");
            waited = true;
        }
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        std::thread::sleep(RETRY_ATTACH);
    }
}

/// A socket bound to each of the interface's `queues`, and the program steering `port` to them.
fn attach(ifindex: u32, queues: u32, port: u16) -> std::io::Result<(Vec<Xsk>, Steering)> {
    let sockets = (0..queues)
        .map(|queue| Xsk::bind(ifindex, queue))
        .collect::<std::io::Result<Vec<_>>>()?;
    let descriptors: Vec<_> = sockets.iter().map(Xsk::raw_fd).collect();
    let steering = Steering::attach(ifindex, port, &descriptors)?;
    Ok((sockets, steering))
}

fn worker(
    socket: &mut Xsk,
    interface: &Interface<'_>,
    counters: &XdpQueue,
    live: &ArcSwap<impl Serving>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    // Made once per worker: the answer is written here, then into the frame.
    let mut answer = Vec::with_capacity(4096);
    let mut statistics_read = Instant::now();
    while !shutdown.is_cancelled() {
        if statistics_read.elapsed() >= STATISTICS_EVERY {
            statistics_read = Instant::now();
            // A socket whose interface is gone is told nothing: it only stops receiving.
            if foobar_xdp::interface_index(interface.name).ok() != Some(interface.index) {
                return Err(std::io::Error::other("the interface is gone"));
            }
            let drops = socket.statistics()?;
            for (count, value) in counters.kernel_drops.iter().zip([
                drops.dropped,
                drops.ring_full,
                drops.fill_ring_empty,
            ]) {
                count.store(value, Relaxed);
            }
        }
        // What answers is read afresh for each batch, and let go before sleeping.
        let (taken, sent) = {
            let live = live.load();
            let shared = live.shared();
            let catalog = shared.catalog.load();
            let now = unix_now();
            socket.answer(BATCH, |frame| {
                let (buffer, len) = frame.into_parts();
                turn_around(buffer, len, &mut answer, |query, client, out| {
                    let client = Client {
                        transport: Transport::Udp,
                        address: client,
                        now,
                    };
                    shared.responder.respond(&catalog, query, client, out) == Outcome::Reply
                })
            })?
        };
        counters.answered.fetch_add(sent as u64, Relaxed);
        counters
            .not_answered
            .fetch_add((taken - sent) as u64, Relaxed);
        // Nothing waiting: sleep until a frame arrives. Under load this is never reached, and
        // each batch comes back round to the shutdown token and the statistics.
        if taken == 0 {
            socket.wait(POLL)?;
        }
    }
    Ok(())
}

/// Where a datagram's parts are in its frame.
#[derive(Debug, PartialEq, Eq)]
struct Datagram {
    source: IpAddr,
    /// The DNS message, after the Ethernet, IP and UDP headers.
    payload: Range<usize>,
}

impl Datagram {
    /// An IPv4 datagram without options or an IPv6 one without extension headers, carrying
    /// UDP (what the steering program hands over), from a unicast address; none for anything
    /// else.
    fn parse(packet: &[u8]) -> Option<Datagram> {
        let ethertype = be16(packet, 12)?;
        // The source, where UDP starts, and the most bytes IP says UDP may have.
        let (source, udp, udp_limit) = match ethertype {
            0x0800 => {
                let header = packet.get(ETHERNET..ETHERNET + 20)?;
                let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff;
                if header[0] != 0x45 || header[9] != UDP || fragment != 0 {
                    return None;
                }
                let total = usize::from(be16(header, 2)?);
                let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
                if source.is_broadcast() || source.is_multicast() || source.is_unspecified() {
                    return None;
                }
                (IpAddr::V4(source), ETHERNET + 20, total.checked_sub(20)?)
            }
            0x86dd => {
                let header = packet.get(ETHERNET..ETHERNET + 40)?;
                if header[0] >> 4 != 6 || header[6] != UDP {
                    return None;
                }
                let payload = usize::from(be16(header, 4)?);
                let octets: [u8; 16] = header[8..24].try_into().ok()?;
                let source = Ipv6Addr::from(octets);
                if source.is_multicast() || source.is_unspecified() {
                    return None;
                }
                (IpAddr::V6(source), ETHERNET + 40, payload)
            }
            _ => return None,
        };
        let udp_len = usize::from(be16(packet, udp + 4)?);
        let source_port = be16(packet, udp)?;
        let end = udp + udp_len;
        if udp_len < 8 || udp_len > udp_limit || end > packet.len() || source_port == 0 {
            return None;
        }
        Some(Datagram {
            source,
            payload: udp + 8..end,
        })
    }
}

/// Answers the query in the first `len` bytes of `buffer` (a frame) with `respond` (the query,
/// the client's address, the answer's buffer; whether to reply), and writes the reply over the
/// query: the answer after headers turned around (addresses and ports swapped, lengths and
/// checksums made anew). The reply's length, or none to send nothing.
pub fn turn_around(
    buffer: &mut [u8],
    len: usize,
    answer: &mut Vec<u8>,
    respond: impl FnOnce(&[u8], IpAddr, &mut Vec<u8>) -> bool,
) -> Option<usize> {
    let packet = buffer.get(..len)?;
    let datagram = Datagram::parse(packet)?;
    answer.clear();
    if !respond(&packet[datagram.payload.clone()], datagram.source, answer) {
        return None;
    }
    // The headers end where the DNS message starts.
    let headers = datagram.payload.start;
    let udp_at = headers - 8;
    let length = headers + answer.len();
    buffer.get_mut(headers..length)?.copy_from_slice(answer);
    let (ethernet, rest) = buffer.split_at_mut(ETHERNET);
    let (destination, source) = ethernet.split_at_mut(6);
    destination.swap_with_slice(&mut source[..6]);
    let udp_len = u16::try_from(8 + answer.len()).ok()?;
    let ip = &mut rest[..udp_at - ETHERNET];
    let pseudo = match datagram.source {
        IpAddr::V4(_) => {
            let total = udp_len.checked_add(20)?;
            ip[1] = 0; // DSCP and ECN
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..8].fill(0); // identification; may be fragmented on the way, as from a socket
            ip[8] = HOP_LIMIT;
            ip[10..12].fill(0);
            let (from, to) = ip[12..20].split_at_mut(4);
            from.swap_with_slice(to);
            let checksum = fold(sum(ip, 0));
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            sum(&ip[12..20], u64::from(UDP) + u64::from(udp_len))
        }
        IpAddr::V6(_) => {
            ip[..4].copy_from_slice(&[0x60, 0, 0, 0]); // version; no traffic class or flow
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[7] = HOP_LIMIT;
            let (from, to) = ip[8..40].split_at_mut(16);
            from.swap_with_slice(to);
            sum(&ip[8..40], u64::from(UDP) + u64::from(udp_len))
        }
    };
    let udp = &mut buffer[udp_at..length];
    let (from, to) = udp[..4].split_at_mut(2);
    from.swap_with_slice(to);
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].fill(0);
    // RFC 768: a computed zero is sent as all ones (zero says "no checksum", which IPv6
    // does not allow).
    let checksum = match fold(sum(udp, pseudo)) {
        0 => 0xffff,
        checksum => checksum,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    Some(length)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The Internet checksum's sum (RFC 1071) of `bytes` added to `sum`, in 32-bit words (the
/// one's-complement sum is the same however the words are grouped).
fn sum(bytes: &[u8], mut sum: u64) -> u64 {
    let mut words = bytes.chunks_exact(4);
    for word in &mut words {
        sum += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    let mut last = [0u8; 4];
    last[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(last))
}

/// The sum folded to 16 bits and complemented: the checksum to write.
fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ethernet(ethertype: u16) -> Vec<u8> {
        let mut p = SERVER_MAC.to_vec();
        p.extend(CLIENT_MAC);
        p.extend(ethertype.to_be_bytes());
        p
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let mut u = 5300u16.to_be_bytes().to_vec();
        u.extend(53u16.to_be_bytes());
        u.extend(u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        u.extend([0xde, 0xad]); // as a sender offloading its checksum may leave it
        u.extend(payload);
        u
    }

    fn ipv4(payload: &[u8]) -> Vec<u8> {
        let mut p = ethernet(0x0800);
        let total = u16::try_from(28 + payload.len()).unwrap();
        p.extend([0x45, 0]);
        p.extend(total.to_be_bytes());
        p.extend([0, 1, 0x40, 0, 63, UDP, 0, 0, 192, 0, 2, 1, 192, 0, 2, 53]);
        p.extend(udp(payload));
        p
    }

    fn ipv6(payload: &[u8]) -> Vec<u8> {
        let mut p = ethernet(0x86dd);
        p.extend([0x60, 1, 2, 3]);
        p.extend(u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        p.extend([UDP, 63]);
        p.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("2001:db8::53".parse::<Ipv6Addr>().unwrap().octets());
        p.extend(udp(payload));
        p
    }

    /// Runs `turn_around` on `packet` in a frame of 2 KiB, answering `reply`; the frame's
    /// bytes up to the reply's end, and what the responder was given.
    fn answered(packet: &[u8], reply: &[u8]) -> Option<(Vec<u8>, Vec<u8>, IpAddr)> {
        let mut frame = packet.to_vec();
        frame.resize(2048, 0xaa);
        let mut seen = None;
        let length = turn_around(
            &mut frame,
            packet.len(),
            &mut Vec::new(),
            |query, from, out| {
                seen = Some((query.to_vec(), from));
                out.extend_from_slice(reply);
                true
            },
        )?;
        let (query, from) = seen?;
        Some((frame[..length].to_vec(), query, from))
    }

    /// Whether the reply's checksums hold, as a receiver checks them: each sum folds to zero.
    fn checksums_hold(reply: &[u8]) -> bool {
        let v6 = reply[12..14] == [0x86, 0xdd];
        let (udp_at, addresses) = if v6 { (54, 22..54) } else { (34, 26..34) };
        let udp = &reply[udp_at..];
        let pseudo = sum(&reply[addresses], u64::from(UDP) + udp.len() as u64);
        let ip_holds = v6 || fold(sum(&reply[14..34], 0)) == 0;
        ip_holds && fold(sum(udp, pseudo)) == 0
    }

    #[test]
    fn an_ipv4_query_is_answered_in_place_turned_around() {
        let query = b"\x12\x34 a query";
        // An odd length: the checksum's last word is padded.
        let (reply, seen, from) = answered(&ipv4(query), b"an answer of 21 bytes").unwrap();
        assert_eq!(seen, query);
        assert_eq!(from, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(reply.len(), 42 + 21);
        assert_eq!(reply[..6], CLIENT_MAC);
        assert_eq!(reply[6..12], SERVER_MAC);
        assert_eq!(reply[16..18], 49u16.to_be_bytes()); // total length
        assert_eq!(reply[22], HOP_LIMIT);
        assert_eq!(reply[26..34], [192, 0, 2, 53, 192, 0, 2, 1]);
        assert_eq!(reply[34..38], [0, 53, 0x14, 0xb4]); // ports: from 53 to 5300
        assert_eq!(reply[38..40], 29u16.to_be_bytes());
        assert_eq!(&reply[42..], b"an answer of 21 bytes");
        assert!(checksums_hold(&reply));
    }

    #[test]
    fn an_ipv6_query_is_answered_in_place_turned_around() {
        let (reply, _, from) = answered(&ipv6(b"query"), b"answer").unwrap();
        assert_eq!(from, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(reply.len(), 62 + 6);
        assert_eq!(reply[..6], CLIENT_MAC);
        assert_eq!(reply[14..18], [0x60, 0, 0, 0]);
        assert_eq!(reply[18..20], 14u16.to_be_bytes());
        assert_eq!(reply[21], HOP_LIMIT);
        assert_eq!(
            reply[22..38],
            "2001:db8::53".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            reply[38..54],
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert!(checksums_hold(&reply));
    }

    #[test]
    fn what_a_socket_would_not_get_is_not_answered() {
        let good = ipv4(b"query");
        let altered = |changes: &[(usize, u8)]| {
            let mut p = good.clone();
            for (at, byte) in changes {
                p[*at] = *byte;
            }
            p
        };
        let cases = [
            ("a fragment", altered(&[(20, 0x20)])),
            ("IP options", altered(&[(14, 0x46)])),
            ("TCP", altered(&[(23, 6)])),
            ("ARP", altered(&[(12, 0x08), (13, 0x06)])),
            ("cut short", good[..good.len() - 3].to_vec()),
            ("too short for UDP", good[..40].to_vec()),
            ("UDP longer than IP", altered(&[(39, 200)])),
            ("no source port", altered(&[(34, 0), (35, 0)])),
            (
                "from broadcast",
                altered(&[(26, 255), (27, 255), (28, 255), (29, 255)]),
            ),
        ];
        for (what, packet) in cases {
            assert!(answered(&packet, b"answer").is_none(), "{what}");
        }
        // Nothing to send when the responder says so, or when the answer outgrows the frame.
        let mut frame = good.clone();
        frame.resize(2048, 0);
        assert!(turn_around(&mut frame, good.len(), &mut Vec::new(), |_, _, _| false).is_none());
        assert!(answered(&good, &[0; 2048]).is_none());
    }
}
