//! The binary as a DNS server: start-up, live zone edits, signals, check-zone, and dig.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use support::{
    Foobar, addresses, binary, installed, output_within, save_by_rename, shipped_zone,
    skip_without, wait_until, web,
};

#[test]
fn serves_www_foobar_com_from_the_shipped_zone() {
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let reply = server.query("www.foobar.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(addresses(&reply), ["8.8.8.8"]);

    // The site's records: HTTPS advertising h3, MX with its address, CAA, SPF, two NS with glue.
    let https = server.query("www.foobar.com.", RecordType::HTTPS);
    assert!(https.answers[0].data.to_string().contains("alpn=h3,h2"));
    let mx = server.query("foobar.com.", RecordType::MX);
    assert_eq!(mx.answers.len(), 1);
    assert_eq!(mx.additionals.len(), 2, "A and AAAA: {mx:?}");
    let ns = server.query("foobar.com.", RecordType::NS);
    assert_eq!(ns.answers.len(), 2);
    assert!(ns.additionals.len() >= 4);
    assert_eq!(
        server.query("foobar.com.", RecordType::CAA).answers.len(),
        2
    );
    let txt = server.query("foobar.com.", RecordType::TXT);
    assert!(txt.answers[0].data.to_string().contains("v=spf1"));
    // _tcp.foobar.com is an empty non-terminal.
    let ent = server.query("_tcp.foobar.com.", RecordType::A);
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
}

/// Queries arriving together are taken and answered in batches: every one is answered once, to
/// the socket that asked, with the answer to its own question, whatever else is in the batch.
#[test]
fn a_burst_of_udp_queries_is_answered_each_to_its_sender() {
    use hickory_proto::op::Message;
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let names = ["www.foobar.com.", "foobar.com.", "missing.foobar.com."];
    let clients: Vec<std::net::UdpSocket> = (0..8)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            socket
        })
        .collect();
    const PER_CLIENT: u16 = 100;
    for id in 0..PER_CLIENT {
        for (c, client) in clients.iter().enumerate() {
            let mut query = support::query_message(names[(id as usize + c) % 3], RecordType::A);
            query[..2].copy_from_slice(&(id + 1000 * c as u16).to_be_bytes());
            client.send_to(&query, server.dns).unwrap();
            if id % 25 == 0 {
                // Not DNS at all, amid the queries: dropped, and the rest still answered.
                client.send_to(b"\x01\x02\x03", server.dns).unwrap();
            }
        }
    }
    let mut buf = [0u8; 4096];
    for (c, client) in clients.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..PER_CLIENT {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.dns);
            let reply = Message::from_vec(&buf[..len]).unwrap();
            let id = reply.metadata.id - 1000 * c as u16;
            assert!(
                id < PER_CLIENT,
                "client {c} got another's answer: {}",
                reply.metadata.id
            );
            assert!(seen.insert(id), "answered twice: {id}");
            let asked = names[(id as usize + c) % 3];
            assert_eq!(reply.queries[0].name().to_ascii(), asked);
            let expected = if asked.starts_with("missing") {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            assert_eq!(reply.metadata.response_code, expected, "{asked}");
            if asked.starts_with("www") {
                assert_eq!(addresses(&reply), ["8.8.8.8"]);
            }
        }
    }
    // One worker thread of its own per core answered them, outside tokio's blocking pool.
    let workers = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "dns-udp")
        .count();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(workers, cores, "UDP worker threads");
}

/// Over TCP, queries sent together in one write (and one split across writes) are answered
/// in order, each with its own id (RFC 7766 section 6.2.1.1).
#[test]
fn pipelined_tcp_queries_are_answered_in_order() {
    use hickory_proto::op::Message;
    use std::io::{Read, Write};
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let mut stream = std::net::TcpStream::connect(server.dns).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let names = ["www.foobar.com.", "missing.foobar.com."];
    let (mut burst, mut last) = (Vec::new(), 0);
    for id in 0..300u16 {
        last = burst.len();
        let mut query = support::query_message(names[usize::from(id % 2)], RecordType::A);
        query[..2].copy_from_slice(&id.to_be_bytes());
        burst.extend_from_slice(&(query.len() as u16).to_be_bytes());
        burst.extend_from_slice(&query);
    }
    // The last query arrives in three pieces: one byte of its length, then half of the rest.
    let half = last + (burst.len() - last) / 2;
    for piece in [&burst[..=last], &burst[last + 1..half], &burst[half..]] {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in 0..300u16 {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut reply).unwrap();
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, id, "in order");
        let expected = if id % 2 == 0 {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        assert_eq!(reply.metadata.response_code, expected);
    }
}

#[test]
fn logs_name_every_bound_address() {
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let udp = server.wait_for_log("dns listening on udp");
    let tcp = server.wait_for_log("dns listening on tcp");
    assert!(udp.contains(&server.dns.to_string()), "{udp}");
    assert!(tcp.contains(&server.dns.to_string()), "{tcp}");
}

fn with_www(zone: &str, serial: &str, address: &str) -> String {
    let edited = zone
        .replace("2026112901", serial)
        .replace("IN A    8.8.8.8", &format!("IN A    {address}"));
    assert_ne!(edited, zone);
    edited
}

#[test]
fn an_edit_saved_by_rename_is_served_without_a_restart() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    assert_eq!(
        addresses(&server.query("www.foobar.com.", RecordType::A)),
        ["8.8.8.8"]
    );
    save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &with_www(&zone, "2026112902", "8.8.4.4"),
    );
    let took = server.until("www.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["8.8.4.4"]
    });
    eprintln!("edit served after {took:?}");
}

/// The reload opens the folder and its files; those events must not count as changes, or the
/// folder would be reloaded over and over while nothing changes.
#[test]
fn an_idle_zones_folder_is_not_reloaded() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    // That nothing happens can only be seen by waiting: 800 ms is eight debounce windows.
    std::thread::sleep(std::time::Duration::from_millis(800));
    let reloads = |server: &Foobar| {
        server
            .log()
            .iter()
            .filter(|line| line.contains("zones folder changed"))
            .count()
    };
    assert_eq!(reloads(&server), 0, "{:#?}", server.log());
    std::fs::write(
        server.zone_path("foobar.com.zone"),
        with_www(&zone, "2026112902", "9.9.9.8"),
    )
    .unwrap();
    server.wait_for_log("zones folder changed");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(reloads(&server), 1, "{:#?}", server.log());
}

#[test]
fn an_edit_written_in_place_is_served_too() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    std::fs::write(
        server.zone_path("foobar.com.zone"),
        with_www(&zone, "2026112902", "9.9.9.9"),
    )
    .unwrap();
    server.until("www.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["9.9.9.9"]
    });
}

#[test]
fn a_broken_edit_keeps_the_previous_zone_serving() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    let path = server.zone_path("foobar.com.zone");
    let broken = format!(
        "{}oops            IN AAA  ::1\n",
        with_www(&zone, "2026112902", "1.1.1.1")
    );
    let line = broken.lines().count();
    let skip = server.log_len();
    save_by_rename(&path, &broken);
    let error = server.wait_for_log_after(skip, "unknown record type");
    assert!(
        error.contains(&format!(
            "foobar.com.zone:{line}: unknown record type \"AAA\""
        )),
        "{error}"
    );
    assert!(error.contains("previous version keeps serving"), "{error}");
    assert_eq!(
        addresses(&server.query("www.foobar.com.", RecordType::A)),
        ["8.8.8.8"]
    );

    // Fixing the file brings the edit in.
    save_by_rename(&path, &with_www(&zone, "2026112902", "1.1.1.1"));
    server.until("www.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["1.1.1.1"]
    });
}

#[test]
fn new_files_add_zones_and_deleted_files_remove_them() {
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let refused =
        |r: &hickory_proto::op::Message| r.metadata.response_code == ResponseCode::Refused;
    assert!(refused(&server.query("www.example.net.", RecordType::A)));
    let other = "$TTL 60\n@ SOA ns1 h 1 1 1 1 1\n NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.44\n";
    save_by_rename(&server.zone_path("example.net.zone"), other);
    server.until("www.example.net.", RecordType::A, |r| {
        addresses(r) == ["192.0.2.44"]
    });
    std::fs::remove_file(server.zone_path("example.net.zone")).unwrap();
    server.until("www.example.net.", RecordType::A, refused);
    // The other zone was untouched throughout.
    assert_eq!(
        addresses(&server.query("www.foobar.com.", RecordType::A)),
        ["8.8.8.8"]
    );
}

#[test]
fn an_edit_to_an_included_file_reloads_its_zone() {
    let zone = format!("{}$INCLUDE hosts/extra.inc\n", shipped_zone());
    let server = Foobar::start(&[
        ("foobar.com.zone", &zone),
        ("hosts/extra.inc", "extra IN A 192.0.2.77\n"),
    ]);
    let hosts = server.zone_path("hosts");
    assert_eq!(
        addresses(&server.query("extra.foobar.com.", RecordType::A)),
        ["192.0.2.77"]
    );
    std::fs::write(hosts.join("extra.inc"), "extra IN A 192.0.2.78\n").unwrap();
    server.until("extra.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["192.0.2.78"]
    });
}

#[test]
fn sighup_reloads_even_what_the_watcher_cannot_see() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    let path = server.zone_path("foobar.com.zone");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Same length and, after this, the same modification time: only a forced reload sees it.
    let edited = with_www(&zone, "2026112902", "8.8.8.9");
    assert_eq!(edited.len(), zone.len());
    let skip = server.log_len();
    std::fs::write(&path, &edited).unwrap();
    set_modified(&path, modified);
    // The watcher's reload runs and, seeing the same size and time, keeps the loaded version:
    // only SIGHUP's forced reload brings the edit in.
    server.wait_for_log_after(skip, "zones folder changed");
    assert_eq!(
        addresses(&server.query("www.foobar.com.", RecordType::A)),
        ["8.8.8.8"]
    );
    server.signal("HUP");
    server.wait_for_log_after(skip, "SIGHUP");
    server.until("www.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["8.8.8.9"]
    });
}

fn set_modified(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

#[test]
fn an_unchanged_serial_is_loaded_with_a_warning() {
    let zone = shipped_zone();
    let server = Foobar::start(&[("foobar.com.zone", &zone)]);
    let skip = server.log_len();
    save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &with_www(&zone, "2026112901", "4.4.4.4"),
    );
    server.until("www.foobar.com.", RecordType::A, |r| {
        addresses(r) == ["4.4.4.4"]
    });
    let warning = server.wait_for_log_after(skip, "serial did not increase");
    assert!(warning.contains("WARN"), "{warning}");
}

#[test]
fn sigterm_stops_with_exit_code_zero() {
    // Sent the moment the server says it serves, several times over: the handlers must be in
    // place by then, or the signal's default action kills the process.
    for _ in 0..10 {
        let mut server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
        server.signal("TERM");
        let status = server.wait();
        assert!(status.success(), "{status:?}");
        server.wait_for_log("stopped");
    }
}

#[test]
fn sigterm_stops_within_shutdown_timeout_whatever_tcp_clients_do() {
    let mut server = Foobar::setup()
        .dns("tcp_io_timeout = 60")
        .edge("shutdown_timeout = 2")
        .start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A client that pipelines queries and never reads its answers: the server's writes block.
    let flood = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(server.dns).await.unwrap();
        let query = support::query_message("foobar.com.", RecordType::NS);
        let mut frames = Vec::new();
        for _ in 0..60_000 {
            frames.extend_from_slice(&(query.len() as u16).to_be_bytes());
            frames.extend_from_slice(&query);
        }
        let (reader, mut writer) = stream.into_split();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            writer.write_all(&frames).await
        });
        reader
    });
    let client = flood.local_addr().unwrap();
    // The server answers until its writes block: answers pile up in its send queue until it
    // stops growing (unchanged over 20 looks, 10 ms apart).
    let (mut last, mut unchanged) = (0, 0);
    support::wait_until("the server's writes block", || {
        let now = support::unsent_bytes(server.dns, client).unwrap_or(0);
        unchanged = if now > 0 && now == last {
            unchanged + 1
        } else {
            0
        };
        last = now;
        unchanged >= 20
    });
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!("stopped {took:?} after SIGTERM with a client that does not read");
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn a_broken_zone_at_start_is_served_from_its_last_good_copy_and_the_rest_starts() {
    let shipped = shipped_zone();
    let other = "$ORIGIN other.test.\n$TTL 60\n@ SOA ns1 h 1 1 1 1 1\n NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.2\n";
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped)
        .zone("other.test.zone", other)
        .start();
    let copy = server.state_path("dns/last-good/foobar.com.zone");
    wait_until("the last good copy is kept", || copy.exists());

    // A bad edit while stopped (a reboot after it, say), and a new zone that never loaded.
    let broken = shipped.replace("IN MX   10 mail", "IN MX   mail");
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("IN MX   mail"))
        .unwrap();
    std::fs::write(server.zone_path("foobar.com.zone"), &broken).unwrap();
    std::fs::write(
        server.zone_path("new.test.zone"),
        "$TTL 60\n@ SOA ns1 h 1 1 1 1 1\n NS ns1\nns1 A 192.0.2.300\n",
    )
    .unwrap();
    let server = server.restart();

    server.wait_for_log(&format!(
        "foobar.com.zone:{line}: MX: invalid preference \"mail\"; serving the last good copy (serial 2026112901)"
    ));
    let reply = server.query("www.foobar.com.", RecordType::A);
    assert!(reply.metadata.authoritative);
    assert_eq!(addresses(&reply), ["8.8.8.8"]);
    assert_eq!(
        addresses(&server.query("www.other.test.", RecordType::A)),
        ["192.0.2.2"]
    );
    server.wait_for_log("new.test.zone:4: A: invalid IPv4 address \"192.0.2.300\"; no good copy: new.test. is answered SERVFAIL");
    let reply = server.query("new.test.", RecordType::SOA);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    // The web edge started as well.
    let pem = server.certificate_pem();
    let reply = tokio::runtime::Runtime::new().unwrap().block_on(web::fetch(
        web::Proto::H2,
        server.https,
        &pem,
        web::get("/healthz", &[]),
    ));
    assert_eq!(reply.status, 200);

    // An edit of another zone reloads the folder: the broken files, unchanged, are not
    // reported again (each was loaded twice already: at start, and as the watch began).
    save_by_rename(
        &server.zone_path("other.test.zone"),
        &other
            .replace("1 1 1 1 1", "2 1 1 1 1")
            .replace("192.0.2.2", "192.0.2.3"),
    );
    server.until("www.other.test.", RecordType::A, |reply| {
        addresses(reply) == ["192.0.2.3"]
    });
    let log = server.log();
    for error in ["serving the last good copy", "no good copy: new.test."] {
        let times = log.iter().filter(|l| l.contains(error)).count();
        assert_eq!(
            times,
            1,
            "{error:?} logged {times} times:\n{}",
            log.join("\n")
        );
    }

    // Fixing the file is picked up without a restart.
    save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &with_www(&shipped, "2026112902", "8.8.4.4"),
    );
    server.until("www.foobar.com.", RecordType::A, |reply| {
        addresses(reply) == ["8.8.4.4"]
    });
}

#[test]
fn an_invalid_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("foobar.toml");
    std::fs::write(
        &config,
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone_folder = \"zones\"\n",
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config"), "{stderr}");
    assert!(
        stderr.contains(":3:1: unknown field `zone_folder`"),
        "{stderr}"
    );
}

#[test]
fn check_zone_validates_like_named_checkzone() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("foobar.com.zone");
    std::fs::write(&good, shipped_zone()).unwrap();
    let output = Command::new(binary())
        .arg("check-zone")
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("zone foobar.com. serial 2026112901"),
        "{stdout}"
    );

    let bad = dir.path().join("broken.zone");
    let text = format!("$ORIGIN foobar.com.\n{}", shipped_zone())
        .replace("IN A    8.8.8.8", "IN AAA  8.8.8.8");
    std::fs::write(&bad, &text).unwrap();
    let output = Command::new(binary())
        .args(["check-zone", "--origin", "foobar.com"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = 1 + text.lines().position(|l| l.contains("IN AAA  ")).unwrap();
    let want = format!("{}:{line}: unknown record type \"AAA\"", bad.display());
    assert!(stderr.contains(&want), "{stderr}\nwant {want}");

    // --origin overrides the file name; records under another $ORIGIN are then out of zone:
    // skipped with a warning each (as BIND and Knot do), which leaves nothing to serve.
    let moved = dir.path().join("moved.zone");
    std::fs::write(&moved, format!("$ORIGIN foobar.com.\n{}", shipped_zone())).unwrap();
    let output = Command::new(binary())
        .args(["check-zone", "--origin", "example.org"])
        .arg(&moved)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no records inside the zone \"example.org.\" (records outside it were ignored, the first at "),
        "{stderr}"
    );
}

/// Interoperability with the real `dig`. Skipped with a message when dig is not installed,
/// unless FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes it required.
#[test]
fn dig_gets_authoritative_answers() {
    if !installed("dig", &["-v"]) {
        return skip_without(
            "dig_gets_authoritative_answers",
            "dig",
            "apt-get install bind9-dnsutils",
        );
    }
    let server = Foobar::start(&[("foobar.com.zone", &shipped_zone())]);
    let port = server.dns.port().to_string();
    let dig = |args: &[&str]| {
        let output = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=3", "+tries=1"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for transport in ["+notcp", "+tcp"] {
        let out = dig(&[transport, "www.foobar.com"]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("flags: qr aa rd;"), "{out}");
        assert!(
            out.contains("www.foobar.com.\t\t3600\tIN\tA\t8.8.8.8"),
            "{out}"
        );
    }
    let out = dig(&["+dnssec", "nothere.foobar.com"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("flags: do;"), "{out}");
    assert!(
        out.contains("IN\tSOA\tns1.foobar.com. hostmaster.foobar.com. 2026112901"),
        "{out}"
    );
    // dig retries with version 0 when the server answers BADVERS, and says so.
    let out = dig(&["+edns=1", "www.foobar.com"]);
    assert!(
        out.contains("BADVERS, retrying with EDNS version 0"),
        "{out}"
    );
    let out = dig(&["+short", "foobar.com", "MX"]);
    assert_eq!(out.trim(), "10 mail.foobar.com.");
    let out = dig(&["example.org"]);
    assert!(out.contains("status: REFUSED"), "{out}");
}

#[test]
fn check_flag_validates_without_serving() {
    let (dir, config) = config_with_zone(&shipped_zone());
    let check = || {
        output_within(
            Command::new(binary())
                .args(["serve", "--check", "--config"])
                .arg(&config),
        )
    };
    let output = check();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid"));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("listening"));

    // A broken zone fails the check with file and line, where serving would fall back.
    let broken = shipped_zone().replace("IN MX   10 mail", "IN MX   mail");
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("IN MX   mail"))
        .unwrap();
    std::fs::write(dir.path().join("zones/foobar.com.zone"), &broken).unwrap();
    let output = check();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let want = format!("foobar.com.zone:{line}: MX: invalid preference \"mail\"");
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// A folder with `zones/foobar.com.zone` holding `zone`, and a config that would serve it on
/// ports the system picks, with its state in the folder.
fn config_with_zone(zone: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/foobar.com.zone"), zone).unwrap();
    let config = dir.path().join("foobar.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{dir}/data\"\n\
             [dns]\nlisten = [\"127.0.0.1:0\"]\nzones = \"{dir}/zones\"\n\
             [edge]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    (dir, config)
}

/// HTTPS records (RFC 9460) made from the edge's configuration for the site names of a zone
/// that asks for them: the real port and `alpn="h3,h2"`, the addresses the health checks find
/// up as hints; a static HTTPS record in the zone file wins; other zones get none. Read by
/// hickory, and by dig and kdig when installed.
#[test]
fn https_records_follow_the_edge_and_the_health_checks() {
    let zone = "$TTL 300\n\
        @ IN SOA ns1.foobar.com. hostmaster.foobar.com. 1 3600 900 1209600 300\n\
        @ IN NS ns1\n\
        ns1 IN A 127.0.0.1\n\
        www IN A 127.0.0.1\n\
        www IN A 127.0.0.2\n\
        static IN A 127.0.0.1\n\
        static IN HTTPS 1 . alpn=\"h2\"\n";
    let other = "$TTL 300\n\
        @ IN SOA ns1.example.net. hostmaster.example.net. 1 3600 900 1209600 300\n\
        @ IN NS ns1.foobar.com.\n\
        www IN A 127.0.0.1\n";
    let server = Foobar::setup()
        .zone("foobar.com.zone", zone)
        .zone("example.net.zone", other)
        .dns(
            "[dns.zone.\"foobar.com\"]\nhttps_records = true\n\
             [[dns.health]]\nname = \"www.foobar.com\"\ninterval = 1\nrise = 1\nfall = 1\n\
             verify_certificate = false",
        )
        .tables(
            "[[site]]\nnames = [\"www.foobar.com\", \"static.foobar.com\", \"www.example.net\"]\n\
             root = \"{dir}/public\"\n",
        )
        .start();
    let port = server.https.port();
    let https = |name: &str| -> Vec<String> {
        server
            .query(name, RecordType::HTTPS)
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    };
    // 127.0.0.2 serves nothing: the health check takes it out of the hints, as of the A answer.
    let mut seen = Vec::new();
    wait_until("the hints leave out the address found down", || {
        seen = https("www.foobar.com.");
        seen.len() == 1 && !seen[0].contains("127.0.0.2")
    });
    let record = &seen[0];
    assert!(record.starts_with("1 ."), "{record}");
    assert!(record.contains("alpn=h3,h2"), "{record}");
    assert!(record.contains(&format!("port={port}")), "{record}");
    assert!(record.contains("ipv4hint=127.0.0.1"), "{record}");
    assert_eq!(
        https("static.foobar.com."),
        ["1 . alpn=h2,"],
        "the zone's own wins"
    );
    let none = server.query("www.example.net.", RecordType::HTTPS);
    assert_eq!(none.metadata.response_code, ResponseCode::NoError);
    assert!(
        none.answers.is_empty(),
        "a zone that does not ask gets none"
    );
    for (tool, version, package) in [
        ("dig", "-v", "bind9-dnsutils"),
        ("kdig", "-V", "knot-dnsutils"),
    ] {
        if !installed(tool, &[version]) {
            skip_without(
                "https_records_follow_the_edge_and_the_health_checks",
                tool,
                &format!("apt-get install {package}"),
            );
            continue;
        }
        let output = Command::new(tool)
            .args(["@127.0.0.1", "-p", &server.dns.port().to_string(), "+short"])
            .args(["www.foobar.com", "HTTPS"])
            .output()
            .unwrap();
        // dig quotes the ALPN list, kdig does not.
        let out = String::from_utf8_lossy(&output.stdout).replace('"', "");
        assert!(
            out.contains(&format!("1 . alpn=h3,h2 port={port} ipv4hint=127.0.0.1")),
            "{tool}: {out}"
        );
    }
}
