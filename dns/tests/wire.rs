//! Wire-level behaviour: EDNS(0), truncation, the question echo, malformed packets, opcodes,
//! transfers. Packets are built with hickory-proto and, for the broken ones, edited by hand.
#![allow(clippy::unwrap_used)]

mod support;

use hickory_proto::{
    op::{Edns, Message, OpCode, ResponseCode},
    rr::{
        RecordType,
        rdata::opt::{EdnsCode, EdnsOption},
    },
};
use std::time::{Duration, Instant};

use support::{Server, plain_query, query, render};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const EXAMPLE: &str = include_str!("data/example.com.zone");

async fn example() -> Server {
    Server::start(&[("example.com.zone", EXAMPLE)]).await
}

fn with_payload(name: &str, rtype: RecordType, payload: u16) -> Message {
    let mut message = plain_query(name, rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.set_edns(edns);
    message
}

#[tokio::test]
async fn without_edns_udp_answers_are_at_most_512_bytes() {
    let server = example().await;
    // "big" holds about 850 bytes of TXT.
    let message = plain_query("big.example.com.", RecordType::TXT);
    let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    assert!(
        reply.edns.is_none(),
        "no OPT in reply to a query without one"
    );
    // TCP returns it whole.
    let reply = server.tcp(&message).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 8);
}

#[tokio::test]
async fn edns_buffer_size_is_honoured_and_capped_at_1232() {
    let server = example().await;
    // Fits in 1232: whole answer.
    let reply = server
        .udp(&with_payload("big.example.com.", RecordType::TXT, 4096))
        .await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 8);
    assert_eq!(reply.edns.as_ref().unwrap().max_payload(), 1232);
    // A smaller buffer than the answer: truncated, and the message fits the buffer.
    let message = with_payload("big.example.com.", RecordType::TXT, 700);
    let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
    assert!(raw.len() <= 700);
    assert!(Message::from_vec(&raw).unwrap().metadata.truncation);
    // About 2 KB: more than 1232 even though the client offers 4096.
    let message = with_payload("huge.example.com.", RecordType::TXT, 4096);
    let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
    assert!(raw.len() <= 1232, "{} bytes", raw.len());
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.edns.is_some(), "OPT kept in a truncated reply");
    let reply = server.tcp(&message).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 10);
    // Buffers below 512 count as 512 (RFC 6891 section 6.2.5).
    let message = with_payload("x.wild.example.com.", RecordType::MX, 100);
    let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
    assert!(raw.len() > 100, "{} bytes", raw.len());
    assert!(!Message::from_vec(&raw).unwrap().metadata.truncation);
}

#[tokio::test]
async fn edns_version_above_zero_gets_badvers() {
    let server = example().await;
    let mut message = query("www.example.com.", RecordType::A);
    message.edns.as_mut().unwrap().set_version(1);
    let reply = server.udp(&message).await;
    // BADVERS is 16, which hickory decodes under its other name, BADSIG.
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.edns.as_ref().unwrap().version(), 0);
}

#[tokio::test]
async fn do_bit_is_echoed_and_unknown_options_ignored() {
    let server = example().await;
    let mut message = query("www.example.com.", RecordType::A);
    message.edns.as_mut().unwrap().set_dnssec_ok(true);
    message
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
    let reply = server.udp(&message).await;
    assert!(reply.edns.as_ref().unwrap().flags().dnssec_ok);
    assert_eq!(
        render(&reply.answers),
        ["www.example.com. 3600 A 192.0.2.80"]
    );
    assert!(
        reply
            .edns
            .as_ref()
            .unwrap()
            .option(EdnsCode::Unknown(65001))
            .is_none()
    );

    let reply = server.udp(&query("www.example.com.", RecordType::A)).await;
    assert!(!reply.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[tokio::test]
async fn question_is_echoed_byte_for_byte() {
    let server = example().await;
    let message = query("wWw.EXample.CoM.", RecordType::A);
    let bytes = message.to_vec().unwrap();
    let raw = server.udp_raw(&bytes).await.unwrap();
    let question_len = "wWw.EXample.CoM.".len() + 1 + 4;
    assert_eq!(raw[12..12 + question_len], bytes[12..12 + question_len]);
    let reply = Message::from_vec(&raw).unwrap();
    // The answer's owner points at the question, so it carries the same case.
    assert_eq!(reply.answers[0].name.to_string(), "wWw.EXample.CoM.");
}

/// Flags and the ID of a reply, read by hand (hickory would reject some of these packets).
fn header(raw: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([raw[0], raw[1]]),
        u16::from_be_bytes([raw[2], raw[3]]),
    )
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing() {
    let server = example().await;
    let good = query("www.example.com.", RecordType::A).to_vec().unwrap();

    // Too short for a header: dropped.
    assert!(server.udp_dropped(&good[..5]).await);
    // A response (QR set): dropped, never answered.
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(server.udp_dropped(&response).await);

    let formerr = |raw: Option<Vec<u8>>| {
        let raw = raw.expect("a reply");
        let (id, flags) = header(&raw);
        assert_eq!(id, 0x1234);
        assert_eq!(flags & 0x8000, 0x8000, "QR");
        assert_eq!(flags & 0xF, 1, "FORMERR");
    };
    // Header only, QDCOUNT 1 but no question.
    formerr(server.udp_raw(&good[..12]).await);
    // Question cut in the middle of the name.
    formerr(server.udp_raw(&good[..16]).await);
    // QDCOUNT 0.
    let mut none = good.clone();
    none[5] = 0;
    formerr(server.udp_raw(&none).await);
    // QDCOUNT 2.
    let mut two = good.clone();
    two[5] = 2;
    formerr(server.udp_raw(&two).await);
    // A label length over 63.
    let mut long = good.clone();
    long[12] = 64;
    formerr(server.udp_raw(&long).await);
    // A compression pointer in the question (there is nothing before it to point at).
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    formerr(server.udp_raw(&pointer).await);
    // ARCOUNT says one record but none follows.
    let mut missing = plain_query("www.example.com.", RecordType::A)
        .to_vec()
        .unwrap();
    missing[11] = 1;
    formerr(server.udp_raw(&missing).await);
    // Two OPT records (RFC 6891 section 6.1.1).
    let mut twice = good.clone();
    let opt = good[good.len() - 11..].to_vec();
    twice.extend_from_slice(&opt);
    twice[11] = 2;
    formerr(server.udp_raw(&twice).await);

    // The server is still answering.
    let reply = server.udp(&query("www.example.com.", RecordType::A)).await;
    assert_eq!(reply.answers.len(), 1);
}

#[tokio::test]
async fn random_garbage_never_stops_the_server() {
    let server = example().await;
    // A fixed-seed generator keeps the run reproducible.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = query("www.example.com.", RecordType::A).to_vec().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3000 {
        let mut packet = if i % 2 == 0 {
            good.clone()
        } else {
            vec![0u8; (next() % 80) as usize]
        };
        for _ in 0..(next() % 6 + 1) {
            if packet.is_empty() {
                break;
            }
            let at = (next() as usize) % packet.len();
            packet[at] = next() as u8;
        }
        socket.send_to(&packet, server.addr).unwrap();
    }
    // Garbage over TCP too: a frame with a broken message, then one that claims more bytes
    // than are sent before the connection closes.
    let replies = server.tcp_raw(&[vec![0xFF; 7]], 1).await;
    assert!(replies.len() <= 1);
    // The burst overflows the socket's receive buffer, and UDP drops what does not fit: like
    // a resolver, ask again until the backlog is drained.
    let packet = query("www.example.com.", RecordType::A).to_vec().unwrap();
    let mut reply = None;
    for _ in 0..5 {
        reply = server.udp_raw(&packet).await;
        if reply.is_some() {
            break;
        }
    }
    let reply = Message::from_vec(&reply.expect("the server still answers")).unwrap();
    assert_eq!(
        render(&reply.answers),
        ["www.example.com. 3600 A 192.0.2.80"]
    );
    let reply = server.tcp(&query("www.example.com.", RecordType::A)).await;
    assert_eq!(reply.answers.len(), 1);
}

#[tokio::test]
async fn unknown_opcodes_get_notimp() {
    let server = example().await;
    for opcode in [OpCode::Status, OpCode::Update, OpCode::Unknown(7)] {
        let mut message = query("example.com.", RecordType::SOA);
        message.metadata.op_code = opcode;
        let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
        let (_, flags) = header(&raw);
        assert_eq!(flags & 0xF, 4, "{opcode:?} gets NOTIMP");
        assert_eq!((flags >> 11) & 0xF, u16::from(u8::from(opcode)));
    }
    // NOTIFY is understood, and refused for a zone that is not followed from that address.
    let mut message = query("example.com.", RecordType::SOA);
    message.metadata.op_code = OpCode::Notify;
    let raw = server.udp_raw(&message.to_vec().unwrap()).await.unwrap();
    let (_, flags) = header(&raw);
    assert_eq!(flags & 0xF, 5, "REFUSED");
    assert_eq!((flags >> 11) & 0xF, 4, "the NOTIFY opcode echoed");
}

#[tokio::test]
async fn tcp_answers_pipelined_queries_in_order() {
    let server = example().await;
    let mut first = query("www.example.com.", RecordType::A);
    first.metadata.id = 1;
    let mut second = query("mail.example.com.", RecordType::AAAA);
    second.metadata.id = 2;
    let replies = server
        .tcp_raw(&[first.to_vec().unwrap(), second.to_vec().unwrap()], 2)
        .await;
    let ids: Vec<u16> = replies
        .iter()
        .map(|r| Message::from_vec(r).unwrap().metadata.id)
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn axfr_is_refused_unless_allowed() {
    let server = example().await;
    let message = query("example.com.", RecordType::AXFR);
    let reply = server.tcp(&message).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    let reply = server.udp(&message).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn axfr_from_an_allowed_address_sends_the_zone() {
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.allow_transfer = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let message = query("example.com.", RecordType::AXFR);
    // The fixture fits one message; a second read would wait for a message that never comes.
    let replies = server.tcp_raw(&[message.to_vec().unwrap()], 1).await;
    let records: Vec<_> = replies
        .iter()
        .flat_map(|raw| Message::from_vec(raw).unwrap().answers)
        .collect();
    assert!(records.len() > 40, "{} records", records.len());
    assert_eq!(records.first().unwrap().record_type(), RecordType::SOA);
    assert_eq!(records.last().unwrap().record_type(), RecordType::SOA);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count(),
        2
    );
    // Over UDP an allowed transfer is sent to TCP.
    let reply = server.udp(&message).await;
    assert!(reply.metadata.truncation);
    // Not at a zone apex: refused.
    let reply = server
        .tcp(&query("www.example.com.", RecordType::AXFR))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn other_classes_are_refused() {
    let server = example().await;
    let mut message = query("www.example.com.", RecordType::A);
    message.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let reply = server.udp(&message).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

/// A TCP connection from `source` that sends `queries` copies of `message` and never reads its
/// answers (its receive buffer is small, so the server's writes block soon). The read half is
/// returned to see when the server gives up on it.
async fn flooder(
    server: &Server,
    source: [u8; 4],
    message: &Message,
    queries: usize,
) -> tokio::net::tcp::OwnedReadHalf {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind((source, 0).into()).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let bytes = message.to_vec().unwrap();
    let mut frames = Vec::with_capacity(queries * (bytes.len() + 2));
    for _ in 0..queries {
        frames.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        frames.extend_from_slice(&bytes);
    }
    let (reader, mut writer) = stream.into_split();
    // Once the server stops reading, this write blocks too: it runs on its own.
    tokio::spawn(async move { writer.write_all(&frames).await });
    reader
}

/// One query over a new TCP connection from `source`; `None` if the connection is closed
/// without an answer.
async fn tcp_from(server: &Server, source: [u8; 4], message: &Message) -> Option<Message> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let bytes = message.to_vec().unwrap();
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await.ok()?;
    let read = async {
        let len = stream.read_u16().await.ok()?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.ok()?;
        Message::from_vec(&reply).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer or a close within 10 s")
}

#[tokio::test]
async fn clients_that_stop_reading_are_cut_off_and_free_their_slots() {
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.max_tcp_connections = 2;
        config.tcp_io_timeout = 1;
    })
    .await;
    // Each answer is about 900 bytes: the server's writes block after a few megabytes.
    let big = query("big.example.com.", RecordType::TXT);
    let mut flooders = vec![
        flooder(&server, [127, 0, 0, 1], &big, 20_000).await,
        flooder(&server, [127, 0, 0, 1], &big, 20_000).await,
    ];
    // Every slot is taken; a client that reads is answered once the flooders are cut off.
    let started = Instant::now();
    let reply = tcp_from(
        &server,
        [127, 0, 0, 1],
        &query("www.example.com.", RecordType::A),
    )
    .await
    .expect("answered");
    assert_eq!(
        render(&reply.answers),
        ["www.example.com. 3600 A 192.0.2.80"]
    );
    eprintln!(
        "answered after {:?} with both slots flooded",
        started.elapsed()
    );
    // The flooders' connections were closed: reading drains what was sent, then ends.
    for reader in &mut flooders {
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 1 << 16];
            while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        assert!(drained.is_ok(), "a flooder's connection stayed open");
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_tcp_slot() {
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.max_tcp_connections_per_address = 2;
    })
    .await;
    let www = query("www.example.com.", RecordType::A);
    // Two connections from 127.0.0.1, each proven accepted by an answer, then held open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let bytes = www.to_vec().unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        held.push(stream);
    }
    assert!(
        tcp_from(&server, [127, 0, 0, 1], &www).await.is_none(),
        "a third connection from the same address is closed unanswered"
    );
    let reply = tcp_from(&server, [127, 0, 0, 2], &www).await;
    assert!(reply.is_some(), "another address is served");
    drop(held);
}

/// An OPT to send: version, flags, options (code, data).
type OptOut<'a> = (u8, u16, &'a [(u16, &'a [u8])]);
/// An OPT received: version, flags, options (code, data).
type OptIn = (u8, u16, Vec<(u16, Vec<u8>)>);

/// A query written byte by byte (hickory cannot write some of these): header flags, an optional
/// question (name, type, class), and an optional OPT (version, flags, options).
fn raw_query(flags: u16, question: Option<(&str, u16, u16)>, opt: Option<OptOut<'_>>) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34];
    packet.extend_from_slice(&flags.to_be_bytes());
    packet.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0]);
    packet.extend_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    if let Some((name, qtype, qclass)) = question {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label.as_bytes());
        }
        packet.push(0);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&qclass.to_be_bytes());
    }
    if let Some((version, edns_flags, options)) = opt {
        packet.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, version]);
        packet.extend_from_slice(&edns_flags.to_be_bytes());
        let rdata: Vec<u8> = options
            .iter()
            .flat_map(|(code, data)| {
                let mut o = code.to_be_bytes().to_vec();
                o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                o.extend_from_slice(data);
                o
            })
            .collect();
        packet.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        packet.extend_from_slice(&rdata);
    }
    packet
}

/// What the tests below read from a response: flags, the full RCODE, section counts, and the
/// OPT record's version, flags and options.
#[derive(Debug)]
struct Raw {
    flags: u16,
    rcode: u16,
    counts: [u16; 4],
    opt: Option<OptIn>,
}

fn read_raw(reply: &[u8]) -> Raw {
    let word = |at: usize| u16::from_be_bytes([reply[at], reply[at + 1]]);
    let counts = [word(4), word(6), word(8), word(10)];
    let skip_name = |mut at: usize| loop {
        match reply[at] {
            0 => return at + 1,
            len if len >= 0xC0 => return at + 2,
            len => at += 1 + usize::from(len),
        }
    };
    let mut at = 12;
    for _ in 0..counts[0] {
        at = skip_name(at) + 4;
    }
    let mut opt = None;
    let mut high = 0u16;
    for _ in 0..u32::from(counts[1]) + u32::from(counts[2]) + u32::from(counts[3]) {
        let start = at;
        at = skip_name(at);
        let rtype = word(at);
        let rdlen = usize::from(word(at + 8));
        if rtype == 41 {
            assert_eq!(reply[start], 0, "OPT is owned by the root");
            // TTL: the upper RCODE bits, the version, the flags.
            high = u16::from(reply[at + 4]);
            let mut options = Vec::new();
            let mut o = at + 10;
            while o < at + 10 + rdlen {
                let (code, len) = (word(o), usize::from(word(o + 2)));
                options.push((code, reply[o + 4..o + 4 + len].to_vec()));
                o += 4 + len;
            }
            opt = Some((reply[at + 5], word(at + 6), options));
        }
        at += 10 + rdlen;
    }
    assert_eq!(at, reply.len(), "nothing after the last record");
    let flags = word(2);
    Raw {
        flags,
        rcode: high << 4 | (flags & 0xF),
        counts,
        opt,
    }
}

const AA: u16 = 0x0400;
const RD: u16 = 0x0100;
const Z: u16 = 0x0040;
const AD: u16 = 0x0020;
const CD: u16 = 0x0010;

/// RFC 8906 section 8 (what ISC's EDNS compliance checker, genreport, tests), over UDP.
#[tokio::test]
async fn rfc8906_header_bits_opcodes_and_edns() {
    let server = example().await;
    let soa = Some(("example.com", 6, 1));
    let ask = |packet: Vec<u8>| {
        let server = &server;
        async move { read_raw(&server.udp_raw(&packet).await.expect("a reply")) }
    };
    // 8.1.1, 8.1.2: plain SOA, and an unknown type (NODATA).
    let r = ask(raw_query(0, soa, None)).await;
    assert_eq!((r.rcode, r.counts[1], r.flags & (AA | RD | AD)), (0, 1, AA));
    assert!(r.opt.is_none());
    let r = ask(raw_query(0, Some(("example.com", 1000, 1)), None)).await;
    assert_eq!((r.rcode, r.counts[1], r.flags & AA), (0, 0, AA));
    // 8.1.3: CD and RD are copied, AD and Z are not.
    let r = ask(raw_query(CD | RD | AD | Z, soa, None)).await;
    assert_eq!(r.flags & (CD | RD | AD | Z | AA), CD | RD | AA);
    // 8.1.4: an unknown opcode gets NOTIMP, with or without a question, no AA; RD and CD,
    // defined for QUERY only, are not copied (genreport's `opcodeflg`).
    for (flags, question) in [
        (15 << 11, None),
        (15 << 11, soa),
        (15 << 11 | RD, None),
        (15 << 11 | RD | CD, soa),
    ] {
        let r = ask(raw_query(flags, question, None)).await;
        assert_eq!(r.rcode, 4, "NOTIMP for {flags:#x} {question:?}");
        assert_eq!((r.flags >> 11) & 0xF, 15);
        assert_eq!(r.flags & (AA | RD | CD), 0);
        assert_eq!(r.counts[1..], [0, 0, 0]);
    }
    // NOTIFY too: refused here (no secondary zone), with RD and CD cleared.
    let r = ask(raw_query(4 << 11 | RD | CD, soa, None)).await;
    assert_eq!(
        (r.rcode, (r.flags >> 11) & 0xF, r.flags & (RD | CD)),
        (5, 4, 0)
    );
    // A QUERY without a question (and no cookie) is malformed.
    assert_eq!(ask(raw_query(0, None, None)).await.rcode, 1);
    // 8.2.1: minimal EDNS.
    let r = ask(raw_query(0, soa, Some((0, 0, &[])))).await;
    assert_eq!((r.rcode, r.counts[1], r.flags & AA), (0, 1, AA));
    assert_eq!(r.opt, Some((0, 0, Vec::new())));
    // 8.2.2, 8.2.5, 8.2.6, 8.2.9: BADVERS with version 0, no AA, no answer; DO is kept,
    // unknown flags and options are not.
    for (flags, options) in [
        (0, &[][..]),
        (0x4000, &[][..]),
        (0, &[(100, &[1u8, 2][..])][..]),
        (0x8000, &[][..]),
    ] {
        let r = ask(raw_query(0, soa, Some((1, flags, options)))).await;
        assert_eq!(r.rcode, 16, "BADVERS");
        assert_eq!((r.counts[1], r.flags & AA), (0, 0));
        assert_eq!(r.opt, Some((0, flags & 0x8000, Vec::new())));
    }
    // 8.2.3, 8.2.4, 8.2.8: unknown options and flags are ignored, DO is echoed.
    let r = ask(raw_query(0, soa, Some((0, 0x4000, &[(100, &[1u8][..])])))).await;
    assert_eq!((r.rcode, r.counts[1]), (0, 1));
    assert_eq!(r.opt, Some((0, 0, Vec::new())));
    let r = ask(raw_query(0, soa, Some((0, 0x8000, &[])))).await;
    assert_eq!(r.opt, Some((0, 0x8000, Vec::new())));
    // 8.2.10: NSID, EXPIRE and a zero client subnet together: a normal answer.
    let subnet = [0u8, 1, 0, 0];
    let r = ask(raw_query(
        0,
        soa,
        Some((0, 0, &[(3, &[][..]), (9, &[][..]), (8, &subnet[..])])),
    ))
    .await;
    assert_eq!((r.rcode, r.counts[1], r.flags & AA), (0, 1, AA));
}

#[tokio::test]
async fn nsid_is_sent_only_when_configured() {
    let soa = Some(("example.com", 6, 1));
    let asking = raw_query(0, soa, Some((0, 0, &[(3, &[][..])])));
    let server = example().await;
    let r = read_raw(&server.udp_raw(&asking).await.unwrap());
    assert_eq!(r.opt, Some((0, 0, Vec::new())), "off by default");
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.nsid = Some("ns1.example".to_string());
    })
    .await;
    let r = read_raw(&server.udp_raw(&asking).await.unwrap());
    assert_eq!(r.opt, Some((0, 0, vec![(3, b"ns1.example".to_vec())])));
    // Not sent to clients that did not ask.
    let r = read_raw(
        &server
            .udp_raw(&raw_query(0, soa, Some((0, 0, &[]))))
            .await
            .unwrap(),
    );
    assert_eq!(r.opt, Some((0, 0, Vec::new())));
}

#[tokio::test]
async fn client_cookies_get_server_cookies() {
    let server = example().await;
    let soa = Some(("example.com", 6, 1));
    let client = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let cookie_of = |raw: &Raw| -> Vec<u8> {
        let (_, _, options) = raw.opt.as_ref().expect("an OPT");
        options
            .iter()
            .find(|(code, _)| *code == 10)
            .map(|(_, data)| data.clone())
            .expect("a COOKIE option")
    };
    // A client cookie alone: the answer, with our server cookie (RFC 9018 layout).
    let r = read_raw(
        &server
            .udp_raw(&raw_query(0, soa, Some((0, 0, &[(10, &client[..])]))))
            .await
            .unwrap(),
    );
    assert_eq!((r.rcode, r.counts[1]), (0, 1));
    let cookie = cookie_of(&r);
    assert_eq!(cookie.len(), 24);
    assert_eq!(cookie[..8], client);
    assert_eq!(cookie[8..12], [1, 0, 0, 0], "version 1, reserved");
    // Presenting it (or a stale one) still gets an answer and a fresh cookie.
    for presented in [cookie.clone(), [&client[..], &[9u8; 16][..]].concat()] {
        let r = read_raw(
            &server
                .udp_raw(&raw_query(0, soa, Some((0, 0, &[(10, &presented[..])]))))
                .await
                .unwrap(),
        );
        assert_eq!((r.rcode, r.counts[1]), (0, 1));
        assert_eq!(cookie_of(&r)[..8], client);
    }
    // RFC 7873 section 5.4: a query with no question learns a server cookie.
    let r = read_raw(
        &server
            .udp_raw(&raw_query(0, None, Some((0, 0, &[(10, &client[..])]))))
            .await
            .unwrap(),
    );
    assert_eq!((r.rcode, r.counts), (0, [0, 0, 0, 1]));
    assert_eq!(cookie_of(&r).len(), 24);
    // Malformed cookies (7 bytes; 8 + 4) are FORMERR.
    for bad in [&client[..7], &[1u8; 12][..]] {
        let reply = server
            .udp_raw(&raw_query(0, soa, Some((0, 0, &[(10, bad)]))))
            .await
            .unwrap();
        assert_eq!(read_raw(&reply).rcode, 1);
    }
}

#[tokio::test]
async fn chaos_identity_and_version_only_when_configured() {
    let ch_txt = |name| raw_query(0, Some((name, 16, 3)), None);
    let server = example().await;
    for name in [
        "id.server",
        "version.bind",
        "hostname.bind",
        "version.server",
    ] {
        assert_eq!(
            read_raw(&server.udp_raw(&ch_txt(name)).await.unwrap()).rcode,
            5
        );
    }
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.identity = Some("ns1.example".to_string());
        config.version = Some("foobar".to_string());
    })
    .await;
    for (name, text) in [
        ("id.server", "ns1.example"),
        ("HOSTNAME.bind", "ns1.example"),
        ("version.bind", "foobar"),
        ("version.server", "foobar"),
    ] {
        let reply = server.udp_raw(&ch_txt(name)).await.unwrap();
        let r = read_raw(&reply);
        assert_eq!((r.rcode, r.counts[1], r.flags & AA), (0, 1, AA), "{name}");
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(u16::from(message.answers[0].dns_class), 3, "class CH");
        assert_eq!(message.answers[0].data.to_string(), text);
    }
    assert_eq!(
        read_raw(&server.udp_raw(&ch_txt("other.bind")).await.unwrap()).rcode,
        5
    );
}

/// Sends `count` copies of `packet` (each with its own ID) at once from `source`, then counts
/// the replies: (answered, truncated, other RCODE), the rest dropped.
async fn burst(
    server: &Server,
    source: [u8; 4],
    packet: &[u8],
    count: u16,
) -> (usize, usize, Vec<Raw>) {
    let from = std::net::SocketAddr::from((source, 0));
    let socket = tokio::net::UdpSocket::bind(from).await.unwrap();
    socket.connect(server.addr).await.unwrap();
    for id in 0..count {
        let mut copy = packet.to_vec();
        copy[..2].copy_from_slice(&id.to_be_bytes());
        socket.send(&copy).await.unwrap();
    }
    let (mut answered, mut truncated, mut other) = (0, 0, Vec::new());
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        let raw = read_raw(&buf[..len]);
        match (raw.rcode, raw.flags & 0x0200 != 0) {
            (0, false) => answered += 1,
            (0, true) => truncated += 1,
            _ => other.push(raw),
        }
    }
    (answered, truncated, other)
}

#[tokio::test]
async fn a_flood_from_one_prefix_is_rate_limited_and_others_are_not() {
    let server = Server::start_with(&[("example.com.zone", EXAMPLE)], |config| {
        config.rate_limit.responses_per_second = 5;
        config.rate_limit.slip = 2;
    })
    .await;
    let www = raw_query(0, Some(("www.example.com", 1, 1)), None);
    // A client learns a cookie before the flood starts.
    let client = [7u8; 8];
    let learned = server
        .udp_raw(&raw_query(
            0,
            Some(("www.example.com", 1, 1)),
            Some((0, 0, &[(10, &client[..])])),
        ))
        .await
        .unwrap();
    let (_, _, options) = read_raw(&learned).opt.unwrap();
    let cookie = options.into_iter().find(|(code, _)| *code == 10).unwrap().1;

    let (answered, truncated, other) = burst(&server, [127, 0, 0, 1], &www, 60).await;
    eprintln!(
        "flood of 60: {answered} answered, {truncated} truncated, {} dropped",
        60 - answered - truncated
    );
    assert!((1..=10).contains(&answered), "{answered} answered");
    assert!(
        truncated >= 20,
        "every second limited response slips: {truncated}"
    );
    assert!(60 - answered - truncated >= 20, "the rest are dropped");
    assert!(other.is_empty());

    // A client cookie without a valid server cookie slips as BADCOOKIE, with a fresh cookie;
    // 127.0.0.3 is in the flooded /24.
    let cookie_only = raw_query(
        0,
        Some(("www.example.com", 1, 1)),
        Some((0, 0, &[(10, &client[..])])),
    );
    let (_, _, bad_cookies) = burst(&server, [127, 0, 0, 3], &cookie_only, 20).await;
    assert!(!bad_cookies.is_empty());
    for raw in &bad_cookies {
        assert_eq!(raw.rcode, 23, "BADCOOKIE");
        assert_eq!(raw.opt.as_ref().unwrap().2[0].1.len(), 24);
    }
    // With the cookie it learned, the client is exempt.
    let with_cookie = raw_query(
        0,
        Some(("www.example.com", 1, 1)),
        Some((0, 0, &[(10, &cookie[..])])),
    );
    let (answered, _, _) = burst(&server, [127, 0, 0, 1], &with_cookie, 30).await;
    assert_eq!(answered, 30, "a valid cookie is never limited");
    // Another prefix has its own limit, and TCP none.
    let (answered, _, _) = burst(&server, [127, 0, 1, 1], &www, 5).await;
    assert_eq!(answered, 5);
    let queries: Vec<Vec<u8>> = (0..30).map(|_| www.clone()).collect();
    assert_eq!(server.tcp_raw(&queries, 30).await.len(), 30);
}
