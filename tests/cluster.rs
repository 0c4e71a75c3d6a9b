//! Several nodes: three foobar processes on 127.0.0.2-4 (the same ports on each), node 1 the
//! DNS primary and nodes 2-3 its secondaries, each node's app on its own node of a three-node
//! MariaDB Galera cluster, and `www.foobar.com` answered with the addresses of the nodes that
//! are alive. Without Galera the test says why and skips, unless FOOBAR_REQUIRE_INTEROP=1.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hickory_proto::rr::RecordType;
use http::StatusCode;
use support::{
    Foobar,
    galera::Galera,
    web::{self, Proto},
};

const TOKEN: &str = "cluster-token";
/// Health checks every second, two failures to withdraw, two successes to return.
const INTERVAL: u64 = 1;
const FALL: u64 = 2;

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A port free on 127.0.0.2, .3 and .4 for both TCP and UDP.
fn port_on_all() -> u16 {
    support::free_port_on(&[ip(2), ip(3), ip(4)])
}

#[derive(Clone, Copy)]
struct Ports {
    dns: u16,
    https: u16,
    http: u16,
}

const HEALTH: &str = "[[dns.health]]\nname = \"www.foobar.com\"\ninterval = 1\ntimeout = 1\n\
                      rise = 2\nfall = 2\nttl = 5\nverify_certificate = false";

/// Node `n` (2, 3 or 4 as the last byte of its address) on `database`.
fn node(n: u8, ports: Ports, database: &str) -> Foobar {
    let zone = support::shipped_zone().replace(
        "www             IN A    8.8.8.8",
        "www             IN A    127.0.0.2\n                IN A    127.0.0.3\n                IN A    127.0.0.4",
    );
    let setup = Foobar::setup()
        .shipped_site()
        .at(ip(n), ports.dns, ports.https, ports.http)
        .app(&format!("database = \"{database}\""))
        .app(&format!("api_token = \"{TOKEN}\""));
    let setup = if n == 2 {
        setup.zone("foobar.com.zone", &zone).dns(&format!(
            "allow_transfer = [\"127.0.0.0/8\"]\n\
             [dns.zone.\"foobar.com\"]\nnotify = [\"127.0.0.3:{0}\", \"127.0.0.4:{0}\"]\n{HEALTH}",
            ports.dns
        ))
    } else {
        setup.without_zone_files().dns(&format!(
            "[[dns.secondary]]\nzone = \"foobar.com\"\nprimaries = [\"127.0.0.2:{}\"]\n{HEALTH}",
            ports.dns
        ))
    };
    setup.start()
}

/// The addresses `dns` answers for www.foobar.com, sorted (`None` if it does not answer).
fn www(dns: SocketAddr) -> Option<Vec<String>> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket
        .send_to(
            &support::query_message("www.foobar.com.", RecordType::A),
            dns,
        )
        .unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    let reply = hickory_proto::op::Message::from_vec(&buf[..len]).ok()?;
    let mut addresses = support::addresses(&reply);
    addresses.sort();
    Some(addresses)
}

/// Waits until every server in `servers` answers www.foobar.com with `want`; how long that took.
async fn until_www(servers: &[SocketAddr], want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answers: Vec<Option<Vec<String>>> = servers.iter().map(|s| www(*s)).collect();
        if answers
            .iter()
            .all(|a| a.as_deref().is_some_and(|a| a == want))
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "not {want:?} within {within:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dns(n: u8, ports: Ports) -> SocketAddr {
    SocketAddr::new(ip(n), ports.dns)
}

fn https(n: u8, ports: Ports) -> SocketAddr {
    SocketAddr::new(ip(n), ports.https)
}

fn post(title: &str) -> http::Request<Bytes> {
    let body = serde_json::json!({ "title": title, "body": "written through one node" });
    http::Request::post("https://www.foobar.com/api/posts")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_follow_each_other_and_lose_no_acknowledged_write() {
    if let Some(package) = support::galera::missing() {
        return support::skip_without(
            "three_nodes_follow_each_other_and_lose_no_acknowledged_write",
            package,
            "apt-get install mariadb-server galera-4 rsync",
        );
    }
    let mut galera = Galera::start(3).await;
    let ports = Ports {
        dns: port_on_all(),
        https: port_on_all(),
        http: port_on_all(),
    };
    // All three at once, as after a power cut: their schema migrations race on Galera.
    let urls: Vec<String> = (0..3).map(|i| galera.url(i)).collect();
    let mut nodes: Vec<Option<Foobar>> = std::thread::scope(|scope| {
        let starting: Vec<_> = (2..=4u8)
            .zip(&urls)
            .map(|(n, url)| scope.spawn(move || node(n, ports, url)))
            .collect();
        starting
            .into_iter()
            .map(|node| Some(node.join().unwrap()))
            .collect()
    });
    let all = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let resolvers: Vec<SocketAddr> = (2..=4).map(|n| dns(n, ports)).collect();
    until_www(&resolvers, &all, Duration::from_secs(30)).await;
    let pems: Vec<Vec<u8>> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().certificate_pem())
        .collect();
    let pem_of = |n: u8| pems[usize::from(n - 2)].clone();

    // A post written through node 1 is read through nodes 2 and 3.
    let created = web::fetch(
        Proto::H2,
        https(2, ports),
        &pem_of(2),
        post("Through node 1"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let location = created.header("location").unwrap().to_string();
    for n in [3, 4] {
        let read = web::fetch(
            Proto::H1,
            https(n, ports),
            &pem_of(n),
            web::get(&location, &[]),
        )
        .await;
        assert_eq!(read.status, StatusCode::OK, "node {n}");
        let json: serde_json::Value = serde_json::from_slice(&read.body).unwrap();
        assert_eq!(json["title"], "Through node 1", "node {n}");
    }

    // Node 2 dies: nodes 1 and 3 stop answering with its address.
    let survivors = [resolvers[0], resolvers[2]];
    nodes[1].as_mut().unwrap().kill();
    let withdrawn = until_www(
        &survivors,
        &["127.0.0.2", "127.0.0.4"],
        Duration::from_secs(INTERVAL * FALL + 1) + Duration::from_millis(500),
    )
    .await;
    eprintln!("node 2 withdrawn from the answers {withdrawn:?} after its death");
    // It comes back.
    let revived = nodes[1].take().unwrap().respawn();
    nodes[1] = Some(revived);
    until_www(&resolvers, &all, Duration::from_secs(30)).await;

    // Writes through all three nodes while one Galera node stops and returns.
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0u32));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for n in 2..=4u8 {
        let (acknowledged, refused, stop, pem) = (
            acknowledged.clone(),
            refused.clone(),
            stop.clone(),
            pem_of(n),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let title = format!("node {n} write {i}");
                match web::try_h2(https(n, ports), &pem, post(&title)).await {
                    Ok(reply) if reply.status == StatusCode::CREATED => {
                        let location = reply.header("location").unwrap().to_string();
                        acknowledged.lock().unwrap().push((location, title));
                    }
                    _ => *refused.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    galera.stop(2);
    // Node 3's database is gone: its /readyz fails, and the others withdraw it.
    until_www(
        &resolvers[..2],
        &["127.0.0.2", "127.0.0.3"],
        Duration::from_secs(INTERVAL * FALL + 4),
    )
    .await;
    galera.rejoin(2).await;
    until_www(&resolvers, &all, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    // Every acknowledged write is there, through every node.
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 50, "{} writes", acknowledged.len());
    let mut lost = 0;
    for (location, title) in &acknowledged {
        for n in 2..=4u8 {
            let read = web::fetch(
                Proto::H1,
                https(n, ports),
                &pem_of(n),
                web::get(location, &[]),
            )
            .await;
            let json: serde_json::Value = serde_json::from_slice(&read.body).unwrap_or_default();
            if read.status != StatusCode::OK || json["title"] != title.as_str() {
                lost += 1;
                eprintln!("{location} through node {n}: {} {json}", read.status);
            }
        }
    }
    eprintln!(
        "{} writes acknowledged, {} refused while a database was away, {lost} lost",
        acknowledged.len(),
        refused.lock().unwrap()
    );
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_address_down_all_are_served() {
    // Nothing listens on these: every probe fails.
    let zone = support::shipped_zone().replace(
        "www             IN A    8.8.8.8",
        "www             IN A    127.0.0.7\n                IN A    127.0.0.8",
    );
    let server = Foobar::setup()
        .zone("foobar.com.zone", &zone)
        .dns("[[dns.health]]\nname = \"www.foobar.com\"\ninterval = 1\ntimeout = 1\nfall = 1\nttl = 5")
        .start();
    server.wait_for_log("every address is down; all are served");
    let reply = support::query_udp(server.dns, "www.foobar.com.", RecordType::A);
    let mut addresses = support::addresses(&reply);
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.7", "127.0.0.8"]);
    assert!(
        reply.answers.iter().all(|r| r.ttl <= 5),
        "the health check's TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_the_health_checks_know() {
    // www is this server (its own /readyz) and 127.0.0.7, where a listener on the same port
    // takes connections and never answers: each probe of it waits out the whole timeout.
    let zone = support::shipped_zone().replace(
        "www             IN A    8.8.8.8",
        "www             IN A    127.0.0.1\n                IN A    127.0.0.7",
    );
    let server = Foobar::setup()
        .zone("foobar.com.zone", &zone)
        .dns(
            "[[dns.health]]\nname = \"www.foobar.com\"\ninterval = 1\ntimeout = 2\nfall = 2\n\
             rise = 2\nttl = 5\nverify_certificate = false",
        )
        .start();
    let _silent = std::net::TcpListener::bind((ip(7), server.https.port())).unwrap();
    let answer = || {
        let mut addresses = support::addresses(&support::query_udp(
            server.dns,
            "www.foobar.com.",
            RecordType::A,
        ));
        addresses.sort();
        addresses
    };
    let start = Instant::now();
    while answer() != ["127.0.0.1"] {
        assert!(start.elapsed() < Duration::from_secs(15), "{:?}", answer());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    std::fs::write(server.config_path(), config.replace("ttl = 5", "ttl = 6")).unwrap();
    let reload = server.control("reload");
    assert!(reload.status.success(), "{reload:?}");
    // The new checkers have not finished a probe of 127.0.0.7 yet (each takes 2 s): what the
    // old ones learned keeps it out meanwhile.
    for _ in 0..10 {
        assert_eq!(answer(), ["127.0.0.1"], "right after the reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = support::query_udp(server.dns, "www.foobar.com.", RecordType::A);
    assert!(reply.answers.iter().all(|r| r.ttl <= 6), "the new TTL");
}
