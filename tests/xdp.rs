//! DNS over UDP in XDP mode (`[dns] xdp`), end to end: a veth pair into a network namespace of
//! the test's own, the server's XDP program and AF_XDP socket on the outer end, a client in the
//! namespace. The server's sockets listen on 127.0.0.1 only, so an answer that reaches the
//! namespace can only have come through XDP; its checksums are checked by the client's kernel,
//! which drops a datagram whose UDP checksum is wrong.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use support::{DEADLINE, Foobar, admin_get, promtool_check, query_message, skip_without};

/// A network namespace with one end of a veth pair in it; both gone when dropped.
struct Namespace {
    name: String,
    /// The pair's end outside, where the server listens.
    outer: String,
    /// Its addresses (IPv4, IPv6), and the namespace end's with their prefixes.
    server: [IpAddr; 2],
    client: [String; 2],
}

impl Namespace {
    /// None (the test skipped, or failed where required) without the privilege to make one.
    fn new(test: &str) -> Option<Namespace> {
        // Tests of this process side by side each have their own.
        static MADE: AtomicU32 = AtomicU32::new(0);
        let id = std::process::id() * 8 + MADE.fetch_add(1, Ordering::Relaxed) % 8;
        let name = format!("foobar-xdp-{id}");
        let outer = format!("fbx{id}");
        // A subnet of this process's own, so that runs side by side do not meet.
        let (a, b) = ((id / 250) % 250, id % 250);
        let server: [IpAddr; 2] = [
            format!("10.{}.{b}.1", 100 + a % 100).parse().unwrap(),
            format!("fd00:fb:{a:x}:{b:x}::1").parse().unwrap(),
        ];
        let client = [
            format!("10.{}.{b}.2/24", 100 + a % 100),
            format!("fd00:fb:{a:x}:{b:x}::2/64"),
        ];
        if !ip(&["netns", "add", &name]) {
            skip_without(
                test,
                "network namespaces (iproute2's ip, and root for CAP_NET_ADMIN and CAP_BPF)",
                "apt-get install iproute2, and run the tests as root",
            );
            return None;
        }
        let namespace = Namespace {
            name,
            outer,
            server,
            client,
        };
        namespace.link();
        Some(namespace)
    }

    /// Makes the veth pair, with two queues each way (as a card has several: a socket serves
    /// each), and its addresses.
    fn link(&self) {
        let (n, o, server, client) = (&self.name, &self.outer, &self.server, &self.client);
        let queues = ["numrxqueues", "2", "numtxqueues", "2"];
        let pair = [
            &["link", "add", o][..],
            &queues,
            &["type", "veth", "peer", "name", "inner"],
            &queues,
            &["netns", n],
        ]
        .concat();
        let v4 = format!("{}/24", server[0]);
        let v6 = format!("{}/64", server[1]);
        let steps: [&[&str]; 8] = [
            &pair,
            &["addr", "add", &v4, "dev", o],
            &["-6", "addr", "add", &v6, "dev", o, "nodad"],
            &["link", "set", o, "up"],
            &["-n", n, "addr", "add", &client[0], "dev", "inner"],
            &[
                "-n", n, "-6", "addr", "add", &client[1], "dev", "inner", "nodad",
            ],
            &["-n", n, "link", "set", "inner", "up"],
            &["-n", n, "link", "set", "lo", "up"],
        ];
        for step in steps {
            assert!(ip(step), "ip {}", step.join(" "));
        }
    }

    /// Runs `f` on a thread inside the namespace (its sockets are the namespace's).
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = std::fs::File::open(&path).unwrap();
                    rustix::thread::move_into_link_name_space(
                        namespace.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap();
                    f()
                })
                .join()
                .unwrap()
        })
    }

    /// Whether an XDP program is attached to the outer end.
    fn steered(&self) -> bool {
        let out = Command::new("ip")
            .args(["-d", "link", "show", "dev", &self.outer])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // The pair goes with the namespace its inner end is in.
        ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Sends `query` from inside the namespace to `server`, up to three times; the reply.
fn exchange(namespace: &Namespace, server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    namespace.inside(|| {
        let any: SocketAddr = match server {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        };
        let socket = UdpSocket::bind(any).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..3 {
            socket.send_to(query, server).unwrap();
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                assert_eq!(from, server, "the answer comes from the address asked");
                return Some(buf[..len].to_vec());
            }
        }
        None
    })
}

fn ask(namespace: &Namespace, server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let reply = exchange(namespace, server, &query_message(name, rtype))
        .unwrap_or_else(|| panic!("no answer from {server} for {name} {rtype}"));
    Message::from_vec(&reply).unwrap()
}

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// Many TXT records at one name: more than a plain (non-EDNS) UDP answer holds.
fn big_zone() -> String {
    let mut zone = support::shipped_zone();
    for i in 0..40 {
        zone.push_str(&format!(
            "big IN TXT \"record {i} of many, long enough to fill a datagram quickly\"\n"
        ));
    }
    zone
}

#[test]
fn queries_over_xdp_are_answered_and_everything_else_goes_to_the_kernel() {
    let test = "queries_over_xdp_are_answered_and_everything_else_goes_to_the_kernel";
    let Some(namespace) = Namespace::new(test) else {
        return;
    };
    let server = Foobar::setup()
        .zone("foobar.com.zone", &big_zone())
        .dns(&format!("xdp = [\"{}\"]", namespace.outer))
        .start();
    let attached = server.wait_for_log("dns listening on udp in xdp mode");
    assert!(attached.contains(&format!("interface={}", namespace.outer)));
    assert!(attached.contains("queues=2"), "{attached}");
    assert!(namespace.steered());
    let port = server.dns.port();
    let v4 = SocketAddr::new(namespace.server[0], port);
    let v6 = SocketAddr::new(namespace.server[1], port);

    // Over IPv4 and IPv6, to the address the query was sent to.
    for to in [v4, v6] {
        let a = ask(&namespace, to, "www.foobar.com", RecordType::A);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.metadata.authoritative);
        assert_eq!(addresses(&a), ["8.8.8.8"]);
        let nx = ask(&namespace, to, "nothere.foobar.com", RecordType::A);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    }

    // An answer too big for a plain query's 512 bytes is cut with TC, as over a socket.
    let mut plain = hickory_proto::op::Message::query();
    plain.metadata.id = 7;
    plain.add_query(hickory_proto::op::Query::query(
        "big.foobar.com.".parse().unwrap(),
        RecordType::TXT,
    ));
    let reply = exchange(&namespace, v4, &plain.to_vec().unwrap()).expect("an answer");
    assert!(reply.len() <= 512, "{} bytes", reply.len());
    let cut = Message::from_vec(&reply).unwrap();
    assert!(cut.metadata.truncation);
    // With EDNS, up to 1232 bytes, and an odd length checksummed right as well.
    let full = ask(&namespace, v6, "big.foobar.com", RecordType::TXT);
    assert!(full.metadata.truncation || full.answers.len() > 5);

    // Garbage to the port: the protocol's answer or nothing, and the server keeps answering.
    namespace.inside(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for junk in [&b"\x12"[..], &[0xff; 11], &[0u8; 300]] {
            socket.send_to(junk, v4).unwrap();
        }
    });
    let a = ask(&namespace, v4, "www.foobar.com", RecordType::A);
    assert_eq!(addresses(&a), ["8.8.8.8"]);

    // Another UDP port on the interface still reaches the kernel's sockets.
    let other = UdpSocket::bind(SocketAddr::new(namespace.server[0], 0)).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let other_addr = other.local_addr().unwrap();
    namespace.inside(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(b"not dns", other_addr).unwrap();
    });
    let mut buf = [0u8; 64];
    let (len, _) = other.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"not dns");

    // `/metrics` counts by interface and queue: both sockets serve, the answers above are
    // counted, and the one-byte datagram was taken and not answered.
    let (status, metrics) = admin_get(server.admin(), "/metrics");
    assert_eq!(status, 200);
    promtool_check(test, &metrics);
    let sample = |name: &str, labels: &str| -> u64 {
        let prefix = format!("{name}{{interface=\"{}\",{labels}}} ", namespace.outer);
        metrics
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.parse::<u64>().unwrap())
            .sum()
    };
    for queue in ["0", "1"] {
        assert_eq!(
            sample("foobar_dns_xdp_attached", &format!("queue=\"{queue}\"")),
            1
        );
    }
    let answered: u64 = ["0", "1"]
        .iter()
        .map(|q| {
            sample(
                "foobar_dns_xdp_frames_total",
                &format!("queue=\"{q}\",outcome=\"answered\""),
            )
        })
        .sum();
    let not_answered: u64 = ["0", "1"]
        .iter()
        .map(|q| {
            sample(
                "foobar_dns_xdp_frames_total",
                &format!("queue=\"{q}\",outcome=\"not_answered\""),
            )
        })
        .sum();
    assert!(answered >= 7, "{metrics}");
    assert!(not_answered >= 1, "{metrics}");
    assert!(
        metrics.contains("foobar_dns_xdp_kernel_drops_total{"),
        "{metrics}"
    );

    // The server's own sockets (127.0.0.1) answer as before.
    assert_eq!(
        addresses(&server.query("www.foobar.com", RecordType::A)),
        ["8.8.8.8"]
    );

    // Stopped, the program leaves the interface.
    let mut server = server;
    server.signal("TERM");
    assert!(server.wait().success());
    assert!(!namespace.steered(), "the XDP program outlived the server");
}

/// A namespace and a server in XDP mode on its pair, asked once through it; none when skipped.
fn served(test: &str) -> Option<(Namespace, Foobar, SocketAddr)> {
    let namespace = Namespace::new(test)?;
    let server = Foobar::setup()
        .zone("foobar.com.zone", &support::shipped_zone())
        .dns(&format!("xdp = [\"{}\"]", namespace.outer))
        .start();
    server.wait_for_log("dns listening on udp in xdp mode");
    let to = SocketAddr::new(namespace.server[0], server.dns.port());
    answers_www(&namespace, to);
    Some((namespace, server, to))
}

fn answers_www(namespace: &Namespace, to: SocketAddr) {
    let answer = ask(namespace, to, "www.foobar.com", RecordType::A);
    assert_eq!(addresses(&answer), ["8.8.8.8"]);
}

#[test]
fn an_interface_gone_and_back_is_attached_again() {
    let test = "an_interface_gone_and_back_is_attached_again";
    let Some((namespace, server, to)) = served(test) else {
        return;
    };
    let skip = server.log_len();
    assert!(ip(&["link", "del", &namespace.outer]));
    server.wait_for_log_after(skip, "dns xdp: detached");
    namespace.link();
    server.wait_for_log_after(skip, "dns listening on udp in xdp mode");
    assert!(namespace.steered());
    answers_www(&namespace, to);
}

#[test]
fn a_reload_that_names_an_interface_attaches_it() {
    let test = "a_reload_that_names_an_interface_attaches_it";
    let Some(namespace) = Namespace::new(test) else {
        return;
    };
    let server = Foobar::setup()
        .zone("foobar.com.zone", &support::shipped_zone())
        .start();
    let to = SocketAddr::new(namespace.server[0], server.dns.port());
    // No socket listens on the pair's address: without XDP nothing answers there.
    let query = query_message("www.foobar.com", RecordType::A);
    assert!(exchange(&namespace, to, &query).is_none());
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    let xdp = format!("[dns]\nxdp = [\"{}\"]\n", namespace.outer);
    assert!(config.contains("[dns]\n"));
    std::fs::write(server.config_path(), config.replacen("[dns]\n", &xdp, 1)).unwrap();
    let skip = server.log_len();
    let reloaded = server.control("reload");
    assert!(reloaded.status.success(), "{reloaded:?}");
    // XDP is attached once per process: the reload is made by a new one.
    server.wait_for_log_after(skip, "dns listening on udp in xdp mode");
    answers_www(&namespace, to);
}

#[test]
fn an_upgrade_hands_xdp_to_the_new_process() {
    let test = "an_upgrade_hands_xdp_to_the_new_process";
    let Some((namespace, server, to)) = served(test) else {
        return;
    };
    let old = server.serving_pid();
    let skip = server.log_len();
    let upgraded = server.control("upgrade");
    assert!(upgraded.status.success(), "{upgraded:?}");
    // The new process waits for the old one's program to leave, then attaches its own.
    server.wait_for_log_after(skip, "dns listening on udp in xdp mode");
    assert_ne!(server.serving_pid(), old);
    let start = Instant::now();
    while !support::exited(old) {
        assert!(start.elapsed() < DEADLINE, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(namespace.steered());
    answers_www(&namespace, to);
}
