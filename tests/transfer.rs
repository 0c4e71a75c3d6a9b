//! Zone transfers with real peers: Knot and NSD following foobar, foobar following Knot, a chain
//! of the three, all TSIG-signed, NOTIFY-driven and incremental; over TLS (XoT, RFC 9103) BIND
//! and NSD following foobar, foobar following BIND and another foobar, each primary's
//! certificate checked; and what TSIG and the transfer rules refuse. Each peer runs from a temporary folder on loopback ports; without
//! knotd or nsd the tests say why and skip, unless FOOBAR_REQUIRE_INTEROP=1.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RecordType, TSigner, rdata::tsig::TsigAlgorithm},
};

use support::{
    Foobar, free_port,
    peers::{Peer, knot, nsd},
};

fn secret() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    data_encoding::BASE64.encode(&bytes)
}

fn rand_byte() -> u8 {
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut byte)
        .unwrap();
    byte[0]
}

fn available(test: &str) -> bool {
    for (program, package) in [
        ("knotd", "knot"),
        ("nsd", "nsd"),
        ("named", "bind9"),
        ("dig", "bind9-dnsutils"),
    ] {
        if !support::installed(program, &["-V"]) && !support::installed(program, &["-v"]) {
            support::skip_without(test, program, &format!("apt-get install {package}"));
            return false;
        }
    }
    true
}

/// knotc against the knotd of `peer`.
fn knotc(peer: &Peer, args: &[&str]) {
    let conf = peer.log.with_file_name("knot.conf");
    let output = support::output_within(Command::new("knotc").arg("-c").arg(conf).args(args));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// named (BIND) on `port` (its own configuration text for keys and zones).
fn bind(port: u16, config: &str) -> Peer {
    bind_with(port, "", config)
}

/// [`bind`] with more lines for its `options` (each indented, ending in a newline).
fn bind_with(port: u16, options: &str, config: &str) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let conf = root.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{\n    directory \"{root}\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    \
             listen-on-v6 {{ none; }};\n    pid-file \"{root}/named.pid\";\n    recursion no;\n    \
             dnssec-validation no;\n{options}}};\n{config}",
            root = root.display()
        ),
    )
    .unwrap();
    let mut named = Command::new("named");
    named.args(["-g", "-c"]).arg(&conf);
    Peer::start(
        named,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        "named.log",
    )
}

/// The addresses `server` answers for `name` A, if it answers.
fn addresses(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket
        .send_to(&support::query_message(name, RecordType::A), server)
        .unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..len])
        .ok()
        .map(|reply| support::addresses(&reply))
}

/// Waits until `server` answers `want` for `name` A; how long it took (bounded by 10 s).
fn until_answer(server: SocketAddr, name: &str, want: &str) -> Duration {
    let start = Instant::now();
    while addresses(server, name).as_deref() != Some(&[want.to_string()]) {
        assert!(
            start.elapsed() < support::DEADLINE,
            "{server} never answered {want} for {name}: {:?}",
            addresses(server, name)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// The records of a zone as `dig AXFR` prints them, TSIG lines and comments left out, sorted.
fn axfr(server: SocketAddr, zone: &str, key: &str) -> Vec<String> {
    let output = support::output_within(Command::new("dig").args([
        "+nocmd",
        "+nostats",
        "+onesoa",
        "-p",
        &server.port().to_string(),
        "@127.0.0.1",
        "-y",
        key,
        zone,
        "AXFR",
    ]));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut records: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .filter(|line| !line.contains("\tTSIG\t"))
        .map(|line| {
            line.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .collect();
    records.sort();
    records
}

fn edited(zone: &str, serial: &str, address: &str) -> String {
    zone.replace("2026112901", serial)
        .replace("IN A    8.8.8.8", &format!("IN A    {address}"))
}

/// Edits the shipped zone on `server` (a new serial, www at 8.8.4.4): the log lines before it,
/// and when.
fn edit_www(server: &Foobar) -> (usize, Instant) {
    let skip = server.log_len();
    support::save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &edited(&support::shipped_zone(), "2026112902", "8.8.4.4"),
    );
    (skip, Instant::now())
}

/// Waits until `count` IXFRs out are logged after the first `skip` lines.
fn ixfrs_out_logged(server: &Foobar, skip: usize, count: usize) {
    support::wait_until("the transfers are logged", || {
        server
            .log()
            .iter()
            .skip(skip)
            .filter(|line| line.contains("transfer out") && line.contains("kind=\"IXFR\""))
            .count()
            >= count
    });
}

#[test]
fn knot_nsd_and_bind_follow_foobar_over_tsig_notify_and_ixfr() {
    if !available("knot_nsd_and_bind_follow_foobar_over_tsig_notify_and_ixfr") {
        return;
    }
    let secret = secret();
    let (knot_port, nsd_port, bind_port) = (free_port(), free_port(), free_port());
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.tsig]]\nname = \"xfr.foobar.com.\"\nsecret = \"{secret}\"\n\
             [dns.zone.\"foobar.com\"]\nallow_transfer = [\"key:xfr.foobar.com.\"]\n\
             notify = [\"127.0.0.1:{knot_port} key:xfr.foobar.com.\", \"127.0.0.1:{nsd_port} key:xfr.foobar.com.\", \
             \"127.0.0.1:{bind_port} key:xfr.foobar.com.\"]"
        ))
        .start();
    let primary = server.dns;
    let key =
        format!("key:\n  - id: xfr.foobar.com\n    algorithm: hmac-sha256\n    secret: {secret}\n");
    let knot = knot(
        knot_port,
        &format!(
            "{key}remote:\n  - id: foobar\n    address: 127.0.0.1@{}\n    key: xfr.foobar.com\n\
             acl:\n  - id: from_foobar\n    address: 127.0.0.1\n    key: xfr.foobar.com\n    action: notify\n  \
             - id: to_test\n    address: 127.0.0.1\n    key: xfr.foobar.com\n    action: transfer\n\
             zone:\n  - domain: foobar.com\n    master: foobar\n    acl: [from_foobar, to_test]\n",
            primary.port()
        ),
        &[],
    );
    let nsd = nsd(
        nsd_port,
        &format!(
            "key:\n    name: \"xfr.foobar.com\"\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n\
             zone:\n    name: foobar.com\n    zonefile: foobar.com.zone\n    \
             allow-notify: 127.0.0.1 xfr.foobar.com\n    request-xfr: 127.0.0.1@{} xfr.foobar.com\n    \
             provide-xfr: 127.0.0.1 xfr.foobar.com\n",
            primary.port()
        ),
    );
    let bind = bind(
        bind_port,
        &format!(
            "key \"xfr.foobar.com\" {{\n    algorithm hmac-sha256;\n    secret \"{secret}\";\n}};\n\
             server 127.0.0.1 {{ keys {{ xfr.foobar.com; }}; }};\n\
             zone \"foobar.com\" {{\n    type secondary;\n    \
             primaries port {} {{ 127.0.0.1 key xfr.foobar.com; }};\n    file \"foobar.com.db\";\n    \
             allow-notify {{ key xfr.foobar.com; }};\n    allow-transfer {{ key xfr.foobar.com; }};\n}};\n",
            primary.port()
        ),
    );
    for peer in [&knot, &nsd, &bind] {
        until_answer(peer.address(), "www.foobar.com.", "8.8.8.8");
    }

    let (skip, edit) = edit_www(&server);
    until_answer(knot.address(), "www.foobar.com.", "8.8.4.4");
    let knot_took = edit.elapsed();
    until_answer(nsd.address(), "www.foobar.com.", "8.8.4.4");
    let nsd_took = edit.elapsed();
    until_answer(bind.address(), "www.foobar.com.", "8.8.4.4");
    let bind_took = edit.elapsed();
    eprintln!(
        "edit served by Knot after {knot_took:?}, by NSD after {nsd_took:?}, by BIND after {bind_took:?}"
    );
    for took in [knot_took, nsd_took, bind_took] {
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // Both came by NOTIFY then IXFR (a difference, not the whole zone).
    ixfrs_out_logged(&server, skip, 3);
    assert!(knot.log().contains("IXFR, incoming"), "{}", knot.log());

    // The same zone everywhere.
    let key = format!("hmac-sha256:xfr.foobar.com:{secret}");
    let ours = axfr(primary, "foobar.com", &key);
    assert!(ours.iter().any(|r| r.contains("8.8.4.4")), "{ours:?}");
    assert_eq!(axfr(knot.address(), "foobar.com", &key), ours);
    assert_eq!(axfr(nsd.address(), "foobar.com", &key), ours);
    assert_eq!(axfr(bind.address(), "foobar.com", &key), ours);
}

#[test]
fn foobar_follows_knot_and_serves_its_copy_after_a_restart() {
    if !available("foobar_follows_knot_and_serves_its_copy_after_a_restart") {
        return;
    }
    let secret = secret();
    let knot_port = free_port();
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.tsig]]\nname = \"xfr.example.net.\"\nsecret = \"{secret}\"\n\
             [[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"127.0.0.1:{knot_port}\"]\n\
             key = \"xfr.example.net.\""
        ))
        .start();
    let zone = |serial: u32, address: &str| {
        format!(
            "$ORIGIN example.net.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 60 10 600 60\n  NS ns1\n\
             ns1 A 192.0.2.1\nwww A {address}\n"
        )
    };
    let knot = knot(
        knot_port,
        &format!(
            "key:\n  - id: xfr.example.net\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             remote:\n  - id: foobar\n    address: 127.0.0.1@{}\n    key: xfr.example.net\n\
             acl:\n  - id: to_foobar\n    address: 127.0.0.1\n    key: xfr.example.net\n    action: transfer\n\
             zone:\n  - domain: example.net\n    notify: foobar\n    acl: to_foobar\n",
            server.dns.port()
        ),
        &[("example.net.zone", &zone(1, "192.0.2.10"))],
    );
    until_answer(server.dns, "www.example.net.", "192.0.2.10");

    std::fs::write(
        knot.log.with_file_name("zones").join("example.net.zone"),
        zone(2, "192.0.2.20"),
    )
    .unwrap();
    let skip = server.log_len();
    knotc(&knot, &["zone-reload", "example.net"]);
    let took = until_answer(server.dns, "www.example.net.", "192.0.2.20");
    eprintln!("edit on Knot served by foobar after {took:?}");
    assert!(took < Duration::from_secs(2));
    let line = server.wait_for_log_after(skip, "transfer in");
    assert!(line.contains("kind=\"IXFR\""), "{line}");
    assert!(
        server.log()[skip..]
            .iter()
            .any(|l| l.contains("notify from a primary")),
        "it came by NOTIFY"
    );

    // The primary gone, a restarted foobar still serves the zone from its copy.
    drop(knot);
    let server = server.restart();
    assert_eq!(
        addresses(server.dns, "www.example.net.").unwrap(),
        ["192.0.2.20"]
    );
}

#[test]
fn a_chain_knot_to_foobar_to_nsd() {
    if !available("a_chain_knot_to_foobar_to_nsd") {
        return;
    }
    let secret = secret();
    let (knot_port, nsd_port) = (free_port(), free_port());
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.tsig]]\nname = \"xfr.\"\nsecret = \"{secret}\"\n\
             [[dns.secondary]]\nzone = \"example.org\"\nprimaries = [\"127.0.0.1:{knot_port}\"]\n\
             key = \"xfr.\"\nallow_transfer = [\"127.0.0.1 key:xfr.\"]\n\
             notify = [\"127.0.0.1:{nsd_port} key:xfr.\"]"
        ))
        .start();
    let zone = |serial: u32, address: &str| {
        format!(
            "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 60 10 600 60\n  NS ns1\n\
             ns1 A 192.0.2.1\nwww A {address}\n"
        )
    };
    let knot = knot(
        knot_port,
        &format!(
            "key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             remote:\n  - id: foobar\n    address: 127.0.0.1@{}\n    key: xfr\n\
             acl:\n  - id: to_foobar\n    address: 127.0.0.1\n    key: xfr\n    action: transfer\n\
             zone:\n  - domain: example.org\n    notify: foobar\n    acl: to_foobar\n",
            server.dns.port()
        ),
        &[("example.org.zone", &zone(1, "192.0.2.10"))],
    );
    until_answer(server.dns, "www.example.org.", "192.0.2.10");
    let nsd = nsd(
        nsd_port,
        &format!(
            "key:\n    name: \"xfr\"\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n\
             zone:\n    name: example.org\n    zonefile: example.org.zone\n    \
             allow-notify: 127.0.0.1 xfr\n    request-xfr: 127.0.0.1@{} xfr\n",
            server.dns.port()
        ),
    );
    until_answer(nsd.address(), "www.example.org.", "192.0.2.10");

    std::fs::write(
        knot.log.with_file_name("zones").join("example.org.zone"),
        zone(2, "192.0.2.20"),
    )
    .unwrap();
    knotc(&knot, &["zone-reload", "example.org"]);
    let took = until_answer(nsd.address(), "www.example.org.", "192.0.2.20");
    eprintln!("edit on Knot served by NSD, through foobar, after {took:?}");
    assert!(took < Duration::from_secs(4));
}

/// A query for `name` `rtype`, signed by hickory's own TSIG code (an implementation
/// independent of foobar's) with `secret` under `key` at `time`.
fn signed_query(name: &str, rtype: RecordType, key: &str, secret: &[u8], time: u64) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let signer = TSigner::new(
        secret.to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(key).unwrap(),
        300,
    )
    .unwrap();
    message.finalize(&signer, time).unwrap();
    message.to_vec().unwrap()
}

/// One exchange over TCP.
#[test]
fn tsig_failures_and_transfer_rules_get_the_rfc_answers() {
    let secret_bytes: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    let secret = data_encoding::BASE64.encode(&secret_bytes);
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.tsig]]\nname = \"xfr.foobar.com.\"\nsecret = \"{secret}\"\n\
             [dns.zone.\"foobar.com\"]\nallow_transfer = [\"127.0.0.1 key:xfr.foobar.com.\"]"
        ))
        .start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rcode = |reply: &Message| u16::from(reply.metadata.response_code);
    let raw_tsig = |reply_bytes: &[u8]| foobar_dns::TsigRecord::find(reply_bytes).unwrap();

    // Signed right, from an allowed address: the transfer, signed.
    let good = signed_query(
        "foobar.com.",
        RecordType::AXFR,
        "xfr.foobar.com.",
        &secret_bytes,
        now,
    );
    let reply = support::message_tcp(server.dns, &good);
    assert_eq!(rcode(&reply), 0);
    assert!(reply.answers.len() > 10);
    assert!(reply.signature.is_some(), "the answer is signed");

    // Each failure: NOTAUTH in the header, the reason in the TSIG record.
    let cases: [(&str, Vec<u8>, u16); 3] = [
        (
            "a wrong secret",
            signed_query(
                "foobar.com.",
                RecordType::AXFR,
                "xfr.foobar.com.",
                b"wrong secret",
                now,
            ),
            foobar_dns::tsig_error::BADSIG,
        ),
        (
            "an unknown key",
            signed_query(
                "foobar.com.",
                RecordType::AXFR,
                "other.foobar.com.",
                &secret_bytes,
                now,
            ),
            foobar_dns::tsig_error::BADKEY,
        ),
        (
            "a stale time",
            signed_query(
                "foobar.com.",
                RecordType::AXFR,
                "xfr.foobar.com.",
                &secret_bytes,
                now - 3600,
            ),
            foobar_dns::tsig_error::BADTIME,
        ),
    ];
    for (what, query, error) in cases {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(support::DEADLINE)).unwrap();
        socket.send_to(&query, server.dns).unwrap();
        let mut buf = [0u8; 4096];
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        let bytes = &buf[..len];
        assert_eq!(bytes[3] & 0xF, 9, "{what}: NOTAUTH");
        let record = raw_tsig(bytes).unwrap_or_else(|| panic!("{what}: a TSIG record"));
        assert_eq!(record.error, error, "{what}");
        // BADTIME is signed and says our time; BADSIG and BADKEY cannot be.
        assert_eq!(
            record.mac.is_empty(),
            error != foobar_dns::tsig_error::BADTIME,
            "{what}"
        );
        if error == foobar_dns::tsig_error::BADTIME {
            assert_eq!(record.other.len(), 6, "our time in other data");
        }
    }

    // Unsigned, to a zone whose rule wants the key: refused.
    let unsigned = support::message_tcp(
        server.dns,
        &support::query_message("foobar.com.", RecordType::AXFR),
    );
    assert_eq!(rcode(&unsigned), 5, "REFUSED");
    // Signed, but from an address outside the rule.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    socket.connect(&server.dns.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    let reply = support::exchange_tcp(&mut stream, &good);
    assert_eq!(reply[3] & 0xF, 5, "REFUSED from 127.0.0.2");
    // An ordinary signed query is answered, and signed.
    let plain = support::message_tcp(
        server.dns,
        &signed_query(
            "www.foobar.com.",
            RecordType::A,
            "xfr.foobar.com.",
            &secret_bytes,
            now,
        ),
    );
    assert_eq!(support::addresses(&plain), ["8.8.8.8"]);
    assert!(plain.signature.is_some());
}

/// What `dig` says of a transfer: "N records" of its XFR size line, and the answer records.
fn dig_ixfr(server: SocketAddr, serial: u32, tcp: bool) -> (Option<usize>, Vec<String>) {
    let output = support::output_within(Command::new("dig").args([
        "+nocmd",
        if tcp { "+tcp" } else { "+notcp" },
        "-p",
        &server.port().to_string(),
        "@127.0.0.1",
        "foobar.com",
        &format!("IXFR={serial}"),
    ]));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let records = text
        .lines()
        .find_map(|line| line.split("XFR size: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let answers = text
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (records, answers)
}

#[test]
fn ixfr_serves_the_difference_after_a_restart_and_the_soa_over_udp() {
    if !support::installed("dig", &["-v"]) {
        return support::skip_without(
            "ixfr_serves_the_difference_after_a_restart_and_the_soa_over_udp",
            "dig",
            "apt-get install bind9-dnsutils",
        );
    }
    let server = Foobar::setup()
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .start();
    support::save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &edited(&support::shipped_zone(), "2026112902", "8.8.4.4"),
    );
    until_answer(server.dns, "www.foobar.com.", "8.8.4.4");
    support::wait_until("the difference is journaled", || {
        dig_ixfr(server.dns, 2026112901, true).0 == Some(6)
    });
    // After a restart the journal is read back: still incremental.
    let server = server.restart();
    let (records, answers) = dig_ixfr(server.dns, 2026112901, true);
    assert_eq!(records, Some(6), "{answers:#?}");
    assert!(answers.iter().any(|r| r.ends_with("A 8.8.8.8")), "removed");
    assert!(answers.iter().any(|r| r.ends_with("A 8.8.4.4")), "added");
    // An older serial than the journal holds: the whole zone, AXFR-style.
    let (records, _) = dig_ixfr(server.dns, 2026112800, true);
    assert!(records.is_some_and(|n| n > 20), "{records:?}");
    // Over UDP, the current SOA alone (RFC 1995 section 2): ask again over TCP.
    let (_, answers) = dig_ixfr(server.dns, 2026112901, false);
    assert_eq!(answers.len(), 1, "{answers:#?}");
    assert!(
        answers[0].contains("SOA") && answers[0].contains("2026112902"),
        "{answers:?}"
    );
}

#[test]
fn a_secondary_zone_expires_to_servfail_when_no_primary_answers() {
    if !available("a_secondary_zone_expires_to_servfail_when_no_primary_answers") {
        return;
    }
    let knot_port = free_port();
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.secondary]]\nzone = \"example.com\"\nprimaries = [\"127.0.0.1:{knot_port}\"]"
        ))
        .start();
    // Refresh and retry every 5 s, expire after 6: the shortest the secondary allows.
    let zone = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 1 5 5 6 60\n  NS ns1\n\
                ns1 A 192.0.2.1\nwww A 192.0.2.10\n";
    let knot = knot(
        knot_port,
        "acl:\n  - id: anyone\n    address: 127.0.0.1\n    action: transfer\n\
         zone:\n  - domain: example.com\n    acl: anyone\n",
        &[("example.com.zone", zone)],
    );
    until_answer(server.dns, "www.example.com.", "192.0.2.10");
    drop(knot);
    let gone = Instant::now();
    let servfail = || {
        support::query_udp(server.dns, "www.example.com.", RecordType::A)
            .metadata
            .response_code
            == hickory_proto::op::ResponseCode::ServFail
    };
    while !servfail() {
        assert!(gone.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gone.elapsed() >= Duration::from_secs(4),
        "expired too early: {:?}",
        gone.elapsed()
    );
    server.wait_for_log("no primary reached within the SOA expire time");
}

/// A CA and a certificate it issued for `name` and 127.0.0.1, in `dir` as `ca.pem`, `ns.crt`
/// and `ns.key`; the certificate's SPKI pin (base64 of the SHA-256 of its public key).
fn tls_identity(dir: &std::path::Path, name: &str) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "transfer test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("ns.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("ns.key"), key.serialize_pem()).unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    );
    data_encoding::BASE64.encode(digest.as_ref())
}

/// `dig AXFR` of `zone` at `server`, over TLS or plain TCP: the records, or the failure dig
/// prints.
fn dig_axfr(server: SocketAddr, zone: &str, tls: bool) -> String {
    let port = server.port().to_string();
    let mut args = vec![
        "+nocmd",
        "+nostats",
        "-p",
        &port,
        "@127.0.0.1",
        zone,
        "AXFR",
    ];
    if tls {
        args.push("+tls");
    }
    let output = support::output_within(Command::new("dig").args(args));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bind_and_nsd_follow_foobar_over_tls() {
    if !available("bind_and_nsd_follow_foobar_over_tls") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    tls_identity(certs.path(), "ns1.foobar.test");
    let c = certs.path().display();
    let (nsd_port, bind_port) = (free_port(), free_port());
    let server = Foobar::setup()
        .edge(&format!("cert = \"{c}/ns.crt\"\nkey = \"{c}/ns.key\""))
        .dns(&format!(
            "tls_listen = [\"127.0.0.1:0\"]\n\
             [dns.zone.\"foobar.com\"]\nallow_transfer = [\"127.0.0.1 tls\"]\n\
             notify = [\"127.0.0.1:{nsd_port}\", \"127.0.0.1:{bind_port}\"]"
        ))
        .start();
    let dot = server.address_in("dns listening on tls");
    let nsd = support::peers::nsd_with(
        nsd_port,
        &format!("    tls-cert-bundle: \"{c}/ca.pem\"\n"),
        &format!(
            "tls-auth:\n    name: foobar\n    auth-domain-name: ns1.foobar.test\n\
             zone:\n    name: foobar.com\n    zonefile: foobar.com.zone\n    \
             allow-notify: 127.0.0.1 NOKEY\n    request-xfr: 127.0.0.1@{} NOKEY foobar\n",
            dot.port()
        ),
    );
    let bind = bind(
        bind_port,
        &format!(
            "tls foobar {{ ca-file \"{c}/ca.pem\"; remote-hostname \"ns1.foobar.test\"; }};\n\
             zone \"foobar.com\" {{\n    type secondary;\n    \
             primaries port {} {{ 127.0.0.1 tls foobar; }};\n    file \"foobar.com.db\";\n    \
             allow-notify {{ 127.0.0.1; }};\n}};\n",
            dot.port()
        ),
    );
    for peer in [&nsd, &bind] {
        until_answer(peer.address(), "www.foobar.com.", "8.8.8.8");
    }

    let (skip, edit) = edit_www(&server);
    until_answer(nsd.address(), "www.foobar.com.", "8.8.4.4");
    until_answer(bind.address(), "www.foobar.com.", "8.8.4.4");
    eprintln!(
        "edit served by NSD and BIND over XoT after {:?}",
        edit.elapsed()
    );
    // By NOTIFY, then a difference over TLS; nothing went out over plain TCP.
    ixfrs_out_logged(&server, skip, 2);
    let out: Vec<String> = server
        .log()
        .into_iter()
        .filter(|line| line.contains("transfer out"))
        .collect();
    assert!(out.iter().all(|line| line.contains("tls=true")), "{out:?}");

    // The rule asks for TLS: dig gets the zone over TLS and is refused over TCP.
    let over_tls = dig_axfr(dot, "foobar.com", true);
    assert!(over_tls.contains("8.8.4.4"), "{over_tls}");
    let over_tcp = dig_axfr(server.dns, "foobar.com", false);
    assert!(over_tcp.contains("Transfer failed"), "{over_tcp}");
}

#[test]
fn foobar_follows_bind_over_tls_and_trusts_only_the_right_key() {
    if !available("foobar_follows_bind_over_tls_and_trusts_only_the_right_key") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let pin = tls_identity(certs.path(), "ns1.example.test");
    let wrong_pin = data_encoding::BASE64.encode(&[7u8; 32]);
    let c = certs.path().display();
    let (bind_port, bind_tls) = (free_port(), free_port());
    // example.net checked by its CA and name, example.org by the pin, example.com by a pin
    // that is not its key's.
    let server = Foobar::setup()
        .dns(&format!(
            "[[dns.tls_auth]]\nname = \"by-ca\"\nserver_name = \"ns1.example.test\"\n\
             ca_file = \"{c}/ca.pem\"\n\
             [[dns.tls_auth]]\nname = \"by-pin\"\npin = \"{pin}\"\n\
             [[dns.tls_auth]]\nname = \"wrong\"\npin = \"{wrong_pin}\"\n\
             [[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"127.0.0.1:{bind_tls} tls:by-ca\"]\n\
             [[dns.secondary]]\nzone = \"example.org\"\nprimaries = [\"127.0.0.1:{bind_tls} tls:by-pin\"]\n\
             [[dns.secondary]]\nzone = \"example.com\"\nprimaries = [\"127.0.0.1:{bind_tls} tls:wrong\"]"
        ))
        .start();
    let zone = |origin: &str, serial: u32, address: &str| {
        format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 60 10 600 60\n  NS ns1\n\
             ns1 A 192.0.2.1\nwww A {address}\n"
        )
    };
    let zones = ["example.net", "example.org", "example.com"];
    for origin in zones {
        std::fs::write(
            certs.path().join(format!("{origin}.db")),
            zone(origin, 1, "192.0.2.10"),
        )
        .unwrap();
    }
    let bind = bind_with(
        bind_port,
        &format!("    listen-on port {bind_tls} tls primary {{ 127.0.0.1; }};\n"),
        &format!(
            "tls primary {{ key-file \"{c}/ns.key\"; cert-file \"{c}/ns.crt\"; }};\n{}",
            zones
                .iter()
                .map(|origin| format!(
                    "zone \"{origin}\" {{\n    type primary;\n    file \"{c}/{origin}.db\";\n    \
                     allow-transfer transport tls {{ 127.0.0.1; }};\n    ixfr-from-differences yes;\n    \
                     max-ixfr-ratio unlimited;\n    \
                     notify explicit;\n    also-notify {{ 127.0.0.1 port {}; }};\n}};\n",
                    server.dns.port()
                ))
                .collect::<String>()
        ),
    );
    until_answer(server.dns, "www.example.net.", "192.0.2.10");
    until_answer(server.dns, "www.example.org.", "192.0.2.10");

    // An edit on BIND: NOTIFY over UDP, SOA query and IXFR over TLS.
    for origin in zones {
        std::fs::write(
            certs.path().join(format!("{origin}.db")),
            zone(origin, 2, "192.0.2.20"),
        )
        .unwrap();
    }
    let skip = server.log_len();
    let reload =
        support::output_within(Command::new("kill").args(["-HUP", &bind.child.id().to_string()]));
    assert!(reload.status.success());
    until_answer(server.dns, "www.example.net.", "192.0.2.20");
    until_answer(server.dns, "www.example.org.", "192.0.2.20");
    let line = server.wait_for_log_after(skip, "transfer in");
    assert!(line.contains("kind=\"IXFR\""), "{line}");
    assert!(line.contains("tls=\"by-"), "{line}");

    // The primary whose key is not the pinned one is never trusted.
    support::wait_until("the pinned primary is refused", || {
        server.log().iter().any(|line| {
            line.contains("refresh failed")
                && line.contains("example.com")
                && line.contains("not the one pinned")
        })
    });
    assert_eq!(addresses(server.dns, "www.example.com."), Some(Vec::new()));
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("transfer in") && line.contains("example.com")),
        "nothing came from the primary with the wrong key"
    );
}

#[test]
fn foobar_follows_foobar_over_tls_trusting_its_self_signed_certificate() {
    let primary = Foobar::setup()
        .dns(
            "tls_listen = [\"127.0.0.1:0\"]\n\
             [dns.zone.\"foobar.com\"]\nallow_transfer = [\"127.0.0.1 tls\"]",
        )
        .start();
    let dot = primary.address_in("dns listening on tls");
    let certs = tempfile::tempdir().unwrap();
    let own = certs.path().join("primary.crt");
    std::fs::write(&own, primary.certificate_pem()).unwrap();
    let secondary = Foobar::setup()
        .without_zone_files()
        .dns(&format!(
            "[[dns.tls_auth]]\nname = \"primary\"\nserver_name = \"foobar.com\"\n\
             ca_file = \"{}\"\n\
             [[dns.secondary]]\nzone = \"foobar.com\"\nprimaries = [\"{dot} tls:primary\"]",
            own.display()
        ))
        .start();
    until_answer(secondary.dns, "www.foobar.com.", "8.8.8.8");
    let line = secondary.wait_for_log_after(0, "transfer in");
    assert!(line.contains("tls=\"primary\""), "{line}");
    // Over plain TCP the primary refuses: the rule asks for TLS.
    let refused = support::query_tcp(primary.dns, "foobar.com", RecordType::AXFR);
    assert_eq!(
        refused.metadata.response_code,
        hickory_proto::op::ResponseCode::Refused
    );
}
