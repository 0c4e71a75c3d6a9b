//! Certificates from an ACME CA (Pebble, Let's Encrypt's test CA) with no other tool: DNS-01
//! answered by foobar's own DNS (a wildcard too), HTTP-01 on the plain HTTP port, TLS-ALPN-01
//! on the TLS port; each served and verified against Pebble's root; a forced renewal under
//! HTTP/1.1, HTTP/2 and HTTP/3 load with no failed request; a refused challenge and the CA down
//! keep the old certificate serving while the retries back off.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use support::{Foobar, pebble::Pebble, web};

const ZONE: &str = "$TTL 300\n\
@     IN SOA ns1.foobar.com. hostmaster.foobar.com. 1 3600 900 1209600 300\n\
@     IN NS  ns1\n\
ns1   IN A   127.0.0.1\n\
www   IN A   127.0.0.1\n\
http  IN A   127.0.0.1\n\
alpn  IN A   127.0.0.1\n";

const PAGE: &str = "hello over a certificate from the CA\n";

/// How long Pebble and foobar may take to issue (Pebble validates at once: PEBBLE_VA_NOSLEEP).
const ISSUE: Duration = Duration::from_secs(60);

struct Setup {
    foobar: Foobar,
    pebble: Pebble,
}

fn start(test: &str) -> Option<Setup> {
    if let Some(tool) = support::pebble::missing() {
        support::skip_without(test, tool, "apt-get install pebble");
        return None;
    }
    let (dns, https, http) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let pebble = Pebble::start(SocketAddr::from(([127, 0, 0, 1], dns)), http, https);
    let foobar = Foobar::setup()
        .zone("foobar.com.zone", ZONE)
        .file("index.html", PAGE)
        .at([127, 0, 0, 1].into(), dns, https, http)
        .tables(&format!(
            "[acme]\ndirectory = \"{directory}\"\ncontact = [\"hostmaster@foobar.com\"]\n\
             ca_root = \"{ca}\"\ndns_check_port = {dns}\n\
             [[site]]\nnames = [\"www.foobar.com\", \"*.foobar.com\"]\nroot = \"{{dir}}/public\"\n\
             [[site]]\nnames = [\"http.foobar.com\"]\nroot = \"{{dir}}/public\"\nacme_challenge = \"http-01\"\n\
             [[site]]\nnames = [\"alpn.foobar.com\"]\nroot = \"{{dir}}/public\"\nacme_challenge = \"tls-alpn-01\"\n",
            directory = pebble.directory(),
            ca = pebble.endpoint_ca_path().display(),
        ))
        .start();
    Some(Setup { foobar, pebble })
}

/// The ACME part of `foobar ctl status --json`.
fn acme_status(foobar: &Foobar) -> Vec<serde_json::Value> {
    let output = support::output_within(std::process::Command::new(support::binary()).args([
        "ctl",
        "--json",
        "--admin",
        &foobar.admin().to_string(),
        "status",
    ]));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    status["acme"].as_array().cloned().unwrap_or_default()
}

/// Waits until every ACME certificate has had `orders` orders, the last one `result`.
fn until_orders(
    foobar: &Foobar,
    orders: u64,
    result: impl Fn(&str) -> bool,
) -> Vec<serde_json::Value> {
    until_status(foobar, |c| {
        c["orders"].as_u64() >= Some(orders) && c["last_result"].as_str().is_some_and(&result)
    })
}

/// Waits until `done` holds for each of the three ACME certificates.
fn until_status(
    foobar: &Foobar,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let all = acme_status(foobar);
        if all.len() == 3 && all.iter().all(&done) {
            return all;
        }
        assert!(
            start.elapsed() < ISSUE,
            "orders not done: {all:#?}\nfoobar:\n{}",
            foobar.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The certificate chain served for `name`, checked against `root` (PEM) by rustls, and the
/// page over HTTP/1.1 on that connection.
async fn served(https: SocketAddr, name: &str, root: &[u8]) -> Result<Vec<u8>, String> {
    let stream = web::connect(https, name, web::tls_config(root, &[b"http/1.1"]))
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .ok_or("no certificate")?;
    let request = http::Request::get(format!("https://{name}/"))
        .body(bytes::Bytes::new())
        .unwrap();
    let reply = web::send_tcp(web::Proto::H1, stream, request).await;
    assert_eq!(reply.status, 200, "{name}");
    assert_eq!(reply.body, PAGE, "{name}");
    Ok(leaf)
}

fn leaf_in(path: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let pem = std::fs::read(path).unwrap();
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn renew(foobar: &Foobar) {
    let output = support::output_within(std::process::Command::new(support::binary()).args([
        "ctl",
        "--admin",
        &foobar.admin().to_string(),
        "acme",
        "renew",
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns01_http01_and_tls_alpn01_certificates_are_served_and_renewed_under_load() {
    let Some(Setup { foobar, pebble }) =
        start("dns01_http01_and_tls_alpn01_certificates_are_served_and_renewed_under_load")
    else {
        return;
    };
    let started = Instant::now();
    let all = until_orders(&foobar, 1, |r| r == "ok");
    let took = started.elapsed();
    eprintln!("three certificates issued {took:?} after the server started");
    for certificate in &all {
        assert!(
            certificate["issuer"].as_str().unwrap().contains("Pebble"),
            "{certificate}"
        );
    }
    // `ctl status` lists the three certificates served, no longer their self-signed stand-ins
    // (each is swapped in once the edge sees its new files, within a moment of the order).
    let status_text = || {
        let output = support::output_within(std::process::Command::new(support::binary()).args([
            "ctl",
            "--admin",
            &foobar.admin().to_string(),
            "status",
        ]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut text = String::new();
    let start = Instant::now();
    while start.elapsed() < support::DEADLINE {
        text = status_text();
        if !text.contains("localhost") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("certificate: "))
        .collect();
    assert_eq!(listed.len(), 3, "{text}");
    assert!(!text.contains("localhost"), "{text}");
    assert_eq!(text.matches("; last order: ok").count(), 3, "{text}");
    let root = pebble.issuing_root().await;
    for name in [
        "www.foobar.com",
        "any.foobar.com",
        "http.foobar.com",
        "alpn.foobar.com",
    ] {
        served(foobar.https, name, &root).await.unwrap();
    }
    // Each name by the challenge its site asked for: DNS-01 by default where the zone is ours.
    for (name, kind) in [
        ("foobar.com", "dns-01"),
        ("www.foobar.com", "dns-01"),
        ("http.foobar.com", "http-01"),
        ("alpn.foobar.com", "tls-alpn-01"),
    ] {
        let line = foobar.wait_for_log(&format!(
            "challenge answered; asking the CA to validate name={name} "
        ));
        assert!(line.contains(&format!("kind=\"{kind}\"")), "{line}");
    }
    assert!(
        pebble
            .log()
            .contains("Attempting to validate w/ HTTP: http://http.foobar.com:"),
        "{}",
        pebble.log()
    );
    // The challenge records are gone once the orders are done.
    for name in [
        "_acme-challenge.www.foobar.com.",
        "_acme-challenge.foobar.com.",
    ] {
        let reply = foobar.query(name, RecordType::TXT);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // A renewal under load: every request of every protocol answered.
    let before = leaf_in(&foobar.state_path("acme/certificates/www.foobar.com.crt"));
    let load = support::load::Load::start(
        foobar.https,
        foobar.dns,
        &root,
        "/index.html",
        PAGE.len(),
        "127.0.0.1",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    renew(&foobar);
    let renewed = tokio::task::block_in_place(|| until_orders(&foobar, 2, |r| r == "ok"));
    assert_eq!(renewed.len(), 3);
    let after = leaf_in(&foobar.state_path("acme/certificates/www.foobar.com.crt"));
    assert_ne!(before, after, "a new certificate was written");
    let start = Instant::now();
    while served(foobar.https, "www.foobar.com", &root).await.unwrap() != after {
        assert!(
            start.elapsed() < support::DEADLINE,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    eprintln!("during the renewal: {}", report.summary());
    for proto in ["H1", "H2", "H3"] {
        assert!(report.sent(proto) > 0, "{}", report.summary());
        assert_eq!(report.failed(proto), 0, "{}", report.summary());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_challenge_and_the_ca_down_keep_the_old_certificate_and_back_off() {
    let Some(Setup { foobar, mut pebble }) =
        start("a_refused_challenge_and_the_ca_down_keep_the_old_certificate_and_back_off")
    else {
        return;
    };
    tokio::task::block_in_place(|| until_orders(&foobar, 1, |r| r == "ok"));
    let root = pebble.issuing_root().await;
    let mut first = served(foobar.https, "http.foobar.com", &root)
        .await
        .unwrap();
    // http.foobar.com no longer resolves: Pebble refuses its HTTP-01 challenge.
    let zone = ZONE
        .replace("http  IN A   127.0.0.1\n", "")
        .replace(" 1 3600", " 2 3600");
    std::fs::write(foobar.zone_path("foobar.com.zone"), zone).unwrap();
    foobar.until("http.foobar.com.", RecordType::A, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    });
    // Pebble approves about one order in a hundred by the authorization validated before,
    // without a challenge, even with PEBBLE_AUTHZREUSE=0 (it validates again only when
    // `rand.Intn(100) > 0`): such a renewal rightly succeeds, and is not the refusal this test
    // is about, so it renews again until the CA asks and is refused.
    let mut rounds = 1;
    let mut reused = 0;
    let (status, skip) = loop {
        rounds += 1;
        let skip = foobar.log_len();
        renew(&foobar);
        let status = tokio::task::block_in_place(|| until_orders(&foobar, rounds, |_| true));
        if named(&status, "http.foobar.com")["last_result"] != "ok" {
            break (status, skip);
        }
        reused += 1;
        assert!(
            reused < 4,
            "the CA never asked for the challenge again:\n{}",
            pebble.log()
        );
        first = served(foobar.https, "http.foobar.com", &root)
            .await
            .unwrap();
    };
    let http = named(&status, "http.foobar.com");
    assert_eq!(
        http["failures"],
        1,
        "{http}\npebble:\n{}\nfoobar:\n{}",
        pebble.log(),
        foobar.log().join("\n")
    );
    assert!(
        http["last_result"]
            .as_str()
            .unwrap()
            .contains("http.foobar.com"),
        "{http}"
    );
    for name in ["www.foobar.com", "alpn.foobar.com"] {
        assert_eq!(named(&status, name)["last_result"], "ok", "{status:#?}");
    }
    let line = foobar.wait_for_log_after(skip, "certificate order failed");
    assert!(line.contains("http.foobar.com"), "{line}");
    let retry = retry_in(&line);
    assert!((60..=75).contains(&retry), "{line}");
    assert_eq!(
        served(foobar.https, "http.foobar.com", &root)
            .await
            .unwrap(),
        first,
        "the old certificate keeps serving"
    );
    // The CA down: every order fails, the old certificates serve, the refused one waits twice
    // as long as before.
    pebble.stop();
    let skip = foobar.log_len();
    renew(&foobar);
    let status = tokio::task::block_in_place(|| until_orders(&foobar, rounds + 1, |r| r != "ok"));
    assert_eq!(
        named(&status, "http.foobar.com")["failures"],
        2,
        "{status:#?}"
    );
    assert_eq!(
        named(&status, "www.foobar.com")["failures"],
        1,
        "{status:#?}"
    );
    let line = foobar.wait_for_log_after(skip, "failures=2");
    assert!(line.contains("http.foobar.com"), "{line}");
    let retry = retry_in(&line);
    assert!((120..=150).contains(&retry), "{line}");
    assert_eq!(
        served(foobar.https, "http.foobar.com", &root)
            .await
            .unwrap(),
        first
    );
    for name in ["www.foobar.com", "alpn.foobar.com"] {
        served(foobar.https, name, &root).await.unwrap();
    }
    // What an operator's monitoring sees: expiry, issuer, the last result, orders by result.
    let admin = foobar.admin();
    let (status, metrics) =
        tokio::task::spawn_blocking(move || support::admin_get(admin, "/metrics"))
            .await
            .unwrap();
    assert_eq!(status, 200);
    let http = "names=\"http.foobar.com\"";
    for line in [
        format!(
            "foobar_acme_orders_total{{{http},result=\"ok\"}} {}",
            1 + reused
        ),
        format!("foobar_acme_orders_total{{{http},result=\"failed\"}} 2"),
        format!("foobar_acme_last_order_success{{{http}}} 0"),
        format!("foobar_acme_certificate_info{{{http},issuer=\"CN=Pebble Intermediate CA"),
        "foobar_acme_certificate_expiry_timestamp_seconds{names=\"www.foobar.com,*.foobar.com\"}"
            .to_string(),
    ] {
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    support::promtool_check(
        "a_refused_challenge_and_the_ca_down_keep_the_old_certificate_and_back_off",
        &metrics,
    );
}

fn named<'a>(status: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    status.iter().find(|c| c["names"][0] == name).unwrap()
}

fn retry_in(line: &str) -> u64 {
    line.split("retry_in_seconds=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry_in_seconds in {line}"))
}

fn ip(n: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, n])
}

/// A port free on 127.0.0.2, .3 and .4 for both TCP and UDP.
fn port_on_all() -> u16 {
    support::free_port_on(&[ip(2), ip(3), ip(4)])
}

/// Three nodes on one database, each the authoritative DNS of the zone and its web edge: one
/// of them orders (DNS-01, which the CA may check at any of the three nameservers), all three
/// serve the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_order_once_and_all_serve_the_certificate() {
    let test = "three_nodes_on_one_database_order_once_and_all_serve_the_certificate";
    if let Some(tool) = support::pebble::missing() {
        return support::skip_without(test, tool, "apt-get install pebble");
    }
    let Some(server_url) = support::mysql_url(test) else {
        return;
    };
    // Dropped (the database with it) after the nodes, at the end of the test.
    let fresh = support::Database::create(&server_url, "acme").await;
    let database = fresh.url();
    let (dns, https, http) = (port_on_all(), port_on_all(), port_on_all());
    let zone = "$TTL 300\n\
        @ IN SOA ns1.foobar.com. hostmaster.foobar.com. 1 3600 900 1209600 300\n\
        @ IN NS ns1\n@ IN NS ns2\n@ IN NS ns3\n\
        ns1 IN A 127.0.0.2\nns2 IN A 127.0.0.3\nns3 IN A 127.0.0.4\n\
        www IN A 127.0.0.2\nwww IN A 127.0.0.3\nwww IN A 127.0.0.4\n";
    let pebble = Pebble::start(SocketAddr::new(ip(2), dns), http, https);
    let nodes: Vec<Foobar> = (2..=4)
        .map(|n| {
            Foobar::setup()
                .zone("foobar.com.zone", zone)
                .file("index.html", PAGE)
                .at(ip(n), dns, https, http)
                .app(&format!("database = \"{database}\""))
                .tables(&format!(
                    "[acme]\ndirectory = \"{directory}\"\nca_root = \"{ca}\"\ndns_check_port = {dns}\n\
                     [[site]]\nnames = [\"www.foobar.com\", \"*.foobar.com\"]\nroot = \"{{dir}}/public\"\n",
                    directory = pebble.directory(),
                    ca = pebble.endpoint_ca_path().display(),
                ))
                .start()
        })
        .collect();
    let root = pebble.issuing_root().await;
    let start = Instant::now();
    let mut leaves = Vec::new();
    for node in &nodes {
        loop {
            if let Ok(leaf) = served(node.https, "www.foobar.com", &root).await {
                leaves.push(leaf);
                break;
            }
            assert!(
                start.elapsed() < ISSUE,
                "{} serves no certificate from the CA:\n{}",
                node.https,
                node.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(leaves.windows(2).all(|w| w[0] == w[1]), "one certificate");
    let ordered: usize = nodes
        .iter()
        .map(|node| {
            node.log()
                .iter()
                .filter(|l| l.contains("ordering a certificate"))
                .count()
        })
        .sum();
    assert_eq!(ordered, 1, "one order across the nodes");
    let taken = nodes
        .iter()
        .filter(|node| {
            node.log()
                .iter()
                .any(|l| l.contains("certificate taken from the shared store"))
        })
        .count();
    assert_eq!(taken, 2, "the other two took it from the database");
    drop(nodes);
    drop(fresh);
}

/// Chromium trusting Pebble's root (as a browser trusts a private CA, in its NSS database)
/// verifies and loads the site with the ACME certificate, no pin, no exception; over HTTP/3
/// when QUIC is allowed for the origin. Allowed is the word: Chromium speaks QUIC only to
/// certificates from roots built into it (`proof_verifier_chromium.cc` refuses others with
/// ERR_QUIC_CERT_ROOT_NOT_KNOWN unless the host is named by `--origin-to-force-quic-on`), so with
/// a test CA its move to HTTP/3 by Alt-Svc or the HTTPS record alone cannot be shown; a site
/// with a Let's Encrypt certificate gets it. Without the flag, the pages come over HTTP/2 with
/// the Alt-Svc that names HTTP/3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_trusting_the_ca_loads_the_site_over_http2_and_http3() {
    let test = "chromium_trusting_the_ca_loads_the_site_over_http2_and_http3";
    let Some(binary) = support::browser::chromium() else {
        return support::skip_without(test, "Chromium", "apt-get install chromium");
    };
    let Some(Setup { foobar, pebble }) = start(test) else {
        return;
    };
    tokio::task::block_in_place(|| until_orders(&foobar, 1, |r| r == "ok"));
    let root = pebble.issuing_root().await;
    let port = foobar.https.port();
    let origin = format!("www.foobar.com:{port}");
    let loaded = tokio::task::block_in_place(|| {
        let mut protocols = Vec::new();
        for quic in [None, Some(origin.as_str())] {
            let Some(mut browser) = support::browser::Browser::trusting(binary, &root, quic) else {
                support::skip_without(test, "certutil", "apt-get install libnss3-tools");
                return None;
            };
            let page = browser.load(&format!("https://{origin}/?quic={}", quic.is_some()));
            assert_eq!(page.text.trim(), PAGE.trim(), "{page:?}");
            protocols.push(page.protocol);
        }
        Some(protocols)
    });
    let Some(protocols) = loaded else { return };
    assert_eq!(protocols, ["h2", "h3"]);
    // The edge saw the same: Chromium's page over HTTP/2, then over HTTP/3 (access lines are
    // written in batches, up to 100 ms late).
    let chrome = || -> Vec<String> {
        foobar
            .log()
            .into_iter()
            .filter(|l| l.contains("path=/ ") && l.contains("HeadlessChrome"))
            .collect()
    };
    support::wait_until("both page loads are logged", || chrome().len() >= 2);
    let chrome = chrome();
    assert!(chrome[0].contains("protocol=HTTP/2.0"), "{chrome:?}");
    assert!(chrome[1].contains("protocol=HTTP/3.0"), "{chrome:?}");
    // What told the browser HTTP/3 is there.
    let reply = web::fetch(
        web::Proto::H2,
        foobar.https,
        &root,
        http::Request::get(format!("https://www.foobar.com:{port}/"))
            .body(bytes::Bytes::new())
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.header("alt-svc"),
        Some(format!("h3=\":{port}\"; ma=86400").as_str())
    );
}

/// A port free on 127.0.0.1 and 127.0.0.2 for both TCP and UDP.
fn port_on_one_and_two() -> u16 {
    'search: loop {
        let port = support::free_port();
        for n in 1..=2 {
            if std::net::TcpListener::bind((ip(n), port)).is_err()
                || std::net::UdpSocket::bind((ip(n), port)).is_err()
            {
                continue 'search;
            }
        }
        return port;
    }
}

/// A zone whose second nameserver is Knot, a secondary of foobar: the DNS-01 record reaches
/// Knot by NOTIFY and IXFR (a new serial of the zone, never written to the file), foobar waits
/// until Knot answers it, and Pebble, which asks Knot, validates; then the record is gone from
/// both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_reaches_a_knot_secondary_before_the_ca_asks() {
    let test = "dns01_reaches_a_knot_secondary_before_the_ca_asks";
    if let Some(tool) = support::pebble::missing() {
        return support::skip_without(test, tool, "apt-get install pebble");
    }
    if !support::installed("knotd", &["-V"]) {
        return support::skip_without(test, "knotd", "apt-get install knot");
    }
    let port = port_on_one_and_two();
    let zone = "$TTL 300\n\
        @ IN SOA ns1.foobar.com. hostmaster.foobar.com. 1 3600 900 1209600 300\n\
        @ IN NS ns1\n@ IN NS ns2\n\
        ns1 IN A 127.0.0.1\nns2 IN A 127.0.0.2\nwww IN A 127.0.0.1\n";
    // Pebble resolves through Knot: the CA sees what the secondary serves.
    let pebble = Pebble::start(SocketAddr::new(ip(2), port), 1, 1);
    let foobar = Foobar::setup()
        .zone("foobar.com.zone", zone)
        .file("index.html", PAGE)
        .at(ip(1), port, support::free_port(), support::free_port())
        .dns(&format!(
            "[dns.zone.\"foobar.com\"]\nallow_transfer = [\"127.0.0.0/8\"]\nnotify = [\"127.0.0.2:{port}\"]"
        ))
        .tables(&format!(
            "[acme]\ndirectory = \"{directory}\"\nca_root = \"{ca}\"\ndns_check_port = {port}\n\
             [[site]]\nnames = [\"www.foobar.com\", \"*.foobar.com\"]\nroot = \"{{dir}}/public\"\n",
            directory = pebble.directory(),
            ca = pebble.endpoint_ca_path().display(),
        ))
        .start();
    let knot = support::peers::knot_at(
        SocketAddr::new(ip(2), port),
        &format!(
            "remote:\n  - id: foobar\n    address: 127.0.0.1@{port}\n\
             acl:\n  - id: from_foobar\n    address: 127.0.0.1\n    action: notify\n\
             zone:\n  - domain: foobar.com\n    master: foobar\n    acl: [from_foobar]\n"
        ),
        &[],
    );
    let start = Instant::now();
    let status = loop {
        let status = acme_status(&foobar);
        if status.first().is_some_and(|c| c["last_result"] == "ok") {
            break status;
        }
        assert!(
            start.elapsed() < ISSUE,
            "{status:#?}\nknot:\n{}\nfoobar:\n{}",
            knot.log(),
            foobar.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "issued through Knot after {:?}: {status:?}",
        start.elapsed()
    );
    let root = pebble.issuing_root().await;
    served(foobar.https, "www.foobar.com", &root).await.unwrap();
    // Knot took the record by IXFR from foobar, and its removal after.
    let log = knot.log();
    assert!(log.contains("IXFR"), "{log}");
    let gone = |server: SocketAddr| {
        support::query_udp(server, "_acme-challenge.www.foobar.com.", RecordType::TXT)
            .metadata
            .response_code
            == ResponseCode::NXDomain
    };
    support::wait_until("the record is gone from Knot", || {
        gone(SocketAddr::new(ip(2), port))
    });
    assert!(gone(foobar.dns));
    // The zone file was not written to.
    assert_eq!(
        std::fs::read_to_string(foobar.zone_path("foobar.com.zone")).unwrap(),
        zone
    );
}
