//! What each fuzz target checks, shared by the targets and by `dns/tests/fuzz_inputs.rs`, which
//! replays every seed and every past finding under `cargo test`.
//!
//! Beyond "no panic": a reply echoes the query's ID, fits the UDP limit, and parses as a DNS
//! message; a zone that loads survives its snapshot; a snapshot that decodes encodes back to
//! the same zone; a frame answered in XDP mode goes back where it came from, its checksums
//! holding.
#![allow(dead_code)] // each fuzz target uses one of these checks

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, LazyLock},
};

use foobar_dns::{
    Catalog, Client, Cookies, Outcome, RateLimitConfig, Responder, Transport, internals,
    load_zone_text, parse_origin,
};
use hickory_proto::op::Message;

const ZONE: &[u8] = include_bytes!("../dns/tests/data/example.com.zone");

static SERVER: LazyLock<(Catalog, Responder)> = LazyLock::new(|| {
    let origin = parse_origin("example.com").expect("an origin");
    let zone = load_zone_text(Path::new("example.com.zone"), ZONE, Some(&origin))
        .expect("the fixture loads")
        .zone;
    let limit = RateLimitConfig {
        responses_per_second: 20,
        ..RateLimitConfig::default()
    };
    let access = foobar_dns::Access {
        default_transfer: vec!["0.0.0.0/0".parse().expect("a network")],
        ..Default::default()
    };
    let responder = Responder::new(access, Cookies::new([7; 16]))
        .with_nsid(Some("fuzz"))
        .with_chaos(Some("fuzz"), Some("0"))
        .with_rate_limit(&limit);
    (Catalog::new([Arc::new(zone)]), responder)
});

/// The first byte picks the transport and the clock; the rest is the query.
pub fn query(data: &[u8]) {
    let Some((&first, packet)) = data.split_first() else {
        return;
    };
    let (catalog, responder) = &*SERVER;
    let transport = if first & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client = Client {
        transport,
        address: IpAddr::from([192, 0, 2, first >> 5]),
        now: u32::from(first >> 1),
    };
    let mut out = Vec::new();
    match responder.respond(catalog, packet, client, &mut out) {
        Outcome::Drop => {}
        Outcome::Reply => check_reply(packet, &out, transport),
        Outcome::Transfer(request) => {
            assert_eq!(transport, Transport::Tcp, "transfers only over TCP");
            let zone = catalog
                .get(&request.origin_key)
                .expect("the zone transferred exists");
            for message in internals::transfer_answer(zone, None, &request, packet, 0).messages {
                check_reply(packet, &message, Transport::Tcp);
            }
        }
    }
}

fn check_reply(packet: &[u8], reply: &[u8], transport: Transport) {
    assert!(reply.len() >= 12, "a reply has a header");
    assert_eq!(reply[..2], packet[..2], "the reply carries the query's ID");
    assert!(reply[2] & 0x80 != 0, "QR is set");
    if transport == Transport::Udp {
        assert!(reply.len() <= 1232, "{} bytes over UDP", reply.len());
    }
    assert!(reply.len() <= usize::from(u16::MAX));
    if let Err(e) = Message::from_vec(reply) {
        panic!("the reply does not parse: {e}\nquery {packet:02x?}\nreply {reply:02x?}");
    }
}

/// A zone file's text; a zone that loads must come back whole from its snapshot.
pub fn zone_file(data: &[u8]) {
    let origin = [7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0];
    if let Ok(loaded) = load_zone_text(Path::new("fuzz.zone"), data, Some(&origin)) {
        let back = internals::decode_snapshot(&internals::encode_snapshot(&loaded.zone))
            .expect("a loaded zone survives its snapshot");
        assert_eq!(back.record_count(), loaded.zone.record_count());
        assert_eq!(back.serial(), loaded.zone.serial());
    }
}

/// A snapshot file's bytes, as they are and with a valid checksum appended (so that the
/// fuzzer gets past the checksum to the records); one that decodes must encode back to a
/// snapshot of the same zone.
pub fn snapshot(data: &[u8]) {
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32(data).to_be_bytes());
    for bytes in [data, &sealed] {
        if let Ok(zone) = internals::decode_snapshot(bytes) {
            let again = internals::decode_snapshot(&internals::encode_snapshot(&zone))
                .expect("re-encoded snapshot decodes");
            assert_eq!(again.record_count(), zone.record_count());
        }
    }
}

/// CRC-32 (IEEE), as the snapshot format seals its bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A transfer's answer as a primary would stream it: the first byte says AXFR (even) or IXFR
/// from the fixture zone (odd); then length-prefixed messages. Whatever comes, reading stops
/// with a zone or a reason, and a zone that comes out survives its snapshot.
pub fn transfer_in(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let (catalog, _) = &*SERVER;
    let zone = catalog.zones().next().expect("the fixture zone");
    let current = (first & 1 == 1).then_some(&**zone);
    let soa = current.and_then(internals::soa);
    let mut incoming = foobar_dns::Incoming::new(zone.origin(), soa);
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (message, tail) = tail.split_at(len);
        rest = tail;
        match incoming.message(message) {
            Ok(false) => {}
            Ok(true) => {
                if let Ok(foobar_dns::Transferred { zone, .. }) = incoming.finish(current) {
                    let back = internals::decode_snapshot(&internals::encode_snapshot(&zone))
                        .expect("a transferred zone survives its snapshot");
                    assert_eq!(back.record_count(), zone.record_count());
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// A frame as an AF_XDP socket hands it over (`[dns] xdp`), answered in place: the reply goes
/// back to the addresses and port it came from, its IP and UDP checksums hold as a receiver
/// checks them, and its DNS message passes `check_reply`.
pub fn frame(data: &[u8]) {
    let (catalog, responder) = &*SERVER;
    let mut frame = [0u8; 2048];
    let len = data.len().min(frame.len());
    frame[..len].copy_from_slice(&data[..len]);
    let original = frame;
    let mut query = Vec::new();
    let answered = internals::xdp_turn_around(&mut frame, len, &mut Vec::new(), |q, from, out| {
        query = q.to_vec();
        let client = Client {
            transport: Transport::Udp,
            address: from,
            now: 0,
        };
        responder.respond(catalog, q, client, out) == Outcome::Reply
    });
    let Some(length) = answered else {
        return;
    };
    let reply = &frame[..length];
    assert_eq!(
        reply[..6],
        original[6..12],
        "to the sender's Ethernet address"
    );
    assert_eq!(reply[6..12], original[..6], "from ours");
    assert_eq!(reply[12..14], original[12..14], "the same IP version");
    let (addresses, udp_at) = match &reply[12..14] {
        [0x08, 0x00] => {
            assert_eq!(
                fold(sum(&reply[14..34])),
                0,
                "the IPv4 header checksum holds"
            );
            assert_eq!(reply[26..30], original[30..34]);
            assert_eq!(reply[30..34], original[26..30]);
            (&reply[26..34], 34)
        }
        [0x86, 0xdd] => {
            assert_eq!(reply[22..38], original[38..54]);
            assert_eq!(reply[38..54], original[22..38]);
            (&reply[22..54], 54)
        }
        other => panic!("answered a frame of ethertype {other:02x?}"),
    };
    let udp = &reply[udp_at..];
    assert_eq!(
        udp[..2],
        original[udp_at + 2..udp_at + 4],
        "from the port asked"
    );
    assert_eq!(
        udp[2..4],
        original[udp_at..udp_at + 2],
        "to the sender's port"
    );
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
    let pseudo = sum(addresses) + 17 + udp.len() as u64;
    assert_eq!(fold(pseudo + sum(udp)), 0, "the UDP checksum holds");
    check_reply(&query, &udp[8..], Transport::Udp);
}

/// RFC 1071's sum, 16 bits at a time (an independent reckoning of what the server computes).
fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|pair| u64::from(pair[0]) << 8 | u64::from(pair.get(1).copied().unwrap_or(0)))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
