//! DNSSEC end to end: a zone signed by foobar is checked by BIND's `dnssec-verify` and
//! `ldns-verify-zone` over AXFR, and validated by Unbound, given only the DS that
//! `foobar dnssec ds` prints, through edits, a restart and a tampered signature.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, process::Command};

use support::{Foobar, installed, output_within, peers, shipped_zone, skip_without, wait_until};

/// The shipped zone with a wildcard, an unsigned delegation with glue, and a signed one (DS).
fn zone(serial: u32, extra: &str) -> String {
    shipped_zone().replace("2026112901", &serial.to_string())
        + "*.wild           IN TXT  \"from the wildcard\"\n\
           sub              IN NS   ns.sub\n\
           ns.sub           IN A    192.0.2.77\n\
           secure           IN NS   ns.secure\n\
           secure           IN DS   12345 13 2 \
           3A2E1B0D4C5F6A7B8C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D\n\
           ns.secure        IN A    192.0.2.78\n"
        + extra
}

/// Whether a tool the tests drive is missing: then `test` is skipped, saying why (or fails
/// where FOOBAR_REQUIRE_INTEROP=1 makes the tools required).
fn tools_missing(test: &str) -> bool {
    let missing = [
        ("dig", "-v", "bind9-dnsutils"),
        ("dnssec-verify", "-V", "bind9-utils"),
        ("ldns-verify-zone", "-v", "ldnsutils"),
        ("unbound", "-V", "unbound"),
    ]
    .into_iter()
    .find(|(tool, flag, _)| !installed(tool, &[flag]));
    if let Some((tool, _, package)) = missing {
        skip_without(test, tool, &format!("apt-get install {package}"));
    }
    missing.is_some()
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let output = output_within(
        Command::new("dig")
            .arg(format!("@{}", server.ip()))
            .args(["-p", &server.port().to_string(), "+time=5", "+tries=2"])
            .args(args),
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The zone as AXFR gives it, in zone-file form.
fn transfer(server: SocketAddr) -> String {
    dig(
        server,
        &["+nocmd", "+nostats", "+onesoa", "foobar.com", "AXFR"],
    )
}

/// Runs `dnssec-verify` and `ldns-verify-zone` on `zone_text`; panics with their output unless
/// both accept it.
fn verify(zone_text: &str) {
    verify_keys(zone_text, true);
}

/// [`verify`], for a zone whose key is a CSK (`csk`) or whose keys are a KSK and a ZSK.
fn verify_keys(zone_text: &str, csk: bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("foobar.com.zone");
    std::fs::write(&file, zone_text).unwrap();
    // -z: the key is a CSK (flags 257), signing everything, as BIND's own policies make them.
    let bind = output_within(
        Command::new("dnssec-verify")
            .args(if csk { &["-z"][..] } else { &[][..] })
            .args(["-o", "foobar.com"])
            .arg(&file),
    );
    let bind_said =
        String::from_utf8_lossy(&bind.stderr).into_owned() + &String::from_utf8_lossy(&bind.stdout);
    assert!(
        bind.status.success() && bind_said.contains("Zone fully signed"),
        "dnssec-verify:\n{bind_said}\n{zone_text}"
    );
    let ldns = output_within(Command::new("ldns-verify-zone").arg(&file));
    let ldns_said =
        String::from_utf8_lossy(&ldns.stdout).into_owned() + &String::from_utf8_lossy(&ldns.stderr);
    assert!(
        ldns.status.success() && ldns_said.contains("Zone is verified and complete"),
        "ldns-verify-zone:\n{ldns_said}"
    );
}

/// What a validating resolver answered: the status, whether it set AD, and the answer section.
struct Resolved {
    status: String,
    ad: bool,
    answer: String,
}

fn resolve(resolver: SocketAddr, name: &str, rtype: &str) -> Resolved {
    let out = dig(resolver, &["+dnssec", name, rtype]);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .to_string();
    let flags = out
        .split("flags: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default();
    let answer = out
        .split(";; ANSWER SECTION:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_default()
        .to_string();
    Resolved {
        status,
        ad: flags.split_whitespace().any(|flag| flag == "ad"),
        answer,
    }
}

/// Asserts that the resolver validates `name`/`rtype` (AD) with `status`.
fn validates(resolver: SocketAddr, name: &str, rtype: &str, status: &str) -> Resolved {
    let got = resolve(resolver, name, rtype);
    assert_eq!(got.status, status, "{name} {rtype}: {}", got.answer);
    assert!(got.ad, "{name} {rtype} {status} did not validate");
    got
}

fn ds_records(server: &Foobar) -> Vec<String> {
    let output = output_within(
        Command::new(support::binary())
            .args(["dnssec", "ds", "--config"])
            .arg(server.config_path())
            .arg("foobar.com"),
    );
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `signatures_made` of a "zone signed" log line.
fn signatures_made(line: &str) -> usize {
    line.split("signatures_made=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The SOA serial `server` answers for foobar.com.
fn serial(server: SocketAddr) -> u32 {
    let soa = dig(server, &["+short", "foobar.com", "SOA"]);
    soa.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// A server with `text` as foobar.com, signed with `settings` beside `dnssec = true`, started
/// once the zone is signed; AXFR open to loopback.
fn signed_server(text: &str, settings: &str) -> Foobar {
    let server = Foobar::setup()
        .zone("foobar.com.zone", text)
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .tables(&format!(
            "[dns.zone.\"foobar.com\"]\ndnssec = true\n{settings}"
        ))
        .start();
    server.wait_for_log("zone signed");
    server
}

#[test]
fn a_signed_zone_verifies_and_validates_through_edits_and_restarts() {
    if tools_missing("a_signed_zone_verifies_and_validates_through_edits_and_restarts") {
        return;
    }
    let server = signed_server(&zone(1, ""), "");
    verify(&transfer(server.dns));

    let ds = ds_records(&server);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert!(ds[0].starts_with("foobar.com. IN DS "), "{ds:?}");
    let tag = ds[0].split_whitespace().nth(3).unwrap();

    // The key and the schedule, in `foobar ctl` and /metrics.
    let admin = server.admin();
    let ctl = output_within(Command::new(support::binary()).args([
        "ctl",
        "--admin",
        &admin.to_string(),
        "zone",
        "list",
    ]));
    let listed = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        listed.contains(&format!("signed: key {tag} (algorithm 13, csk, active)")),
        "{listed}"
    );
    assert!(listed.contains("signed again"), "{listed}");
    let (_, metrics) = support::admin_get(admin, "/metrics");
    assert!(
        metrics.contains(&format!(
            "foobar_dns_dnssec_key{{zone=\"foobar.com.\",tag=\"{tag}\",algorithm=\"13\",role=\"csk\",state=\"active\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("foobar_dns_dnssec_next_signing_timestamp_seconds{zone=\"foobar.com.\"}"),
        "{metrics}"
    );
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    let resolver = resolver.address();

    let www = validates(resolver, "www.foobar.com", "A", "NOERROR");
    assert!(www.answer.contains("8.8.8.8"), "{}", www.answer);
    validates(resolver, "foobar.com", "MX", "NOERROR");
    validates(resolver, "foobar.com", "DNSKEY", "NOERROR");
    // NXDOMAIN, NODATA, NODATA at an empty non-terminal, a name below one.
    validates(resolver, "nothere.foobar.com", "A", "NXDOMAIN");
    validates(resolver, "www.foobar.com", "TXT", "NOERROR");
    validates(resolver, "_tcp.foobar.com", "A", "NOERROR");
    validates(resolver, "x._tcp.foobar.com", "A", "NXDOMAIN");
    // A wildcard's expansion, and a type it does not have.
    let wild = validates(resolver, "any.wild.foobar.com", "TXT", "NOERROR");
    assert!(wild.answer.contains("from the wildcard"), "{}", wild.answer);
    validates(resolver, "other.wild.foobar.com", "A", "NOERROR");
    // Delegations: a signed DS, and the NSEC that proves a delegation has none.
    let secure = validates(resolver, "secure.foobar.com", "DS", "NOERROR");
    assert!(secure.answer.contains("12345 13 2"), "{}", secure.answer);
    let insecure = validates(resolver, "sub.foobar.com", "DS", "NOERROR");
    assert!(insecure.answer.is_empty(), "{}", insecure.answer);

    // An edit: served signed within a second, the rest of the signatures kept.
    let before = server.log_len();
    std::fs::write(
        server.zone_path("foobar.com.zone"),
        zone(2, "blog             IN A    192.0.2.80\n"),
    )
    .unwrap();
    let line = server.wait_for_log_after(before, "zone signed");
    let made = signatures_made(&line);
    // The new A and its NSEC, the NSEC before it, and the SOA.
    assert!(
        made <= 4,
        "an edit of one record made {made} signatures: {line}"
    );
    verify(&transfer(server.dns));
    let blog = validates(resolver, "blog.foobar.com", "A", "NOERROR");
    assert!(blog.answer.contains("192.0.2.80"), "{}", blog.answer);

    // A restart keeps the key, so the DS at the parent stays right, and the signatures.
    let server = server.restart();
    let line = server.wait_for_log("zone signed");
    assert_eq!(signatures_made(&line), 0, "{line}");
    assert_eq!(ds_records(&server), ds);
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
}

#[test]
fn a_tampered_signature_is_refused_by_the_validator() {
    if tools_missing("a_tampered_signature_is_refused_by_the_validator") {
        return;
    }
    let signer = signed_server(&zone(1, ""), "");
    let ds = ds_records(&signer);
    // The signed zone, served as it is by a server that does not sign it, with one byte of
    // the signature over www's address changed.
    let signed = transfer(signer.dns);
    let tampered: String = signed
        .lines()
        .map(|line| {
            if line.starts_with("www.foobar.com.") && line.contains("RRSIG\tA ") {
                let (head, signature) = line.rsplit_once(' ').unwrap();
                let mut bytes = signature.as_bytes().to_vec();
                bytes[4] = if bytes[4] == b'A' { b'B' } else { b'A' };
                format!("{head} {}\n", String::from_utf8(bytes).unwrap())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_ne!(tampered.trim(), signed.trim());
    let presigned = Foobar::setup().zone("foobar.com.zone", &tampered).start();
    let resolver = peers::unbound("foobar.com", presigned.dns, &ds);
    let resolver = resolver.address();
    validates(resolver, "mail.foobar.com", "A", "NOERROR");
    wait_until("the resolver answers", || {
        !resolve(resolver, "www.foobar.com", "A").status.is_empty()
    });
    let www = resolve(resolver, "www.foobar.com", "A");
    assert_eq!(www.status, "SERVFAIL", "{}", www.answer);
}

#[test]
fn knot_and_nsd_as_secondaries_serve_the_signed_zone_and_its_edits() {
    let test = "knot_and_nsd_as_secondaries_serve_the_signed_zone_and_its_edits";
    if tools_missing(test) {
        return;
    }
    for (tool, flag, package) in [("knotd", "-V", "knot"), ("nsd", "-v", "nsd")] {
        if !installed(tool, &[flag]) {
            return skip_without(test, tool, &format!("apt-get install {package}"));
        }
    }
    let (knot_port, nsd_port) = (peers::free_port(), peers::free_port());
    let server = signed_server(
        &zone(1, ""),
        &format!(
            "allow_transfer = [\"127.0.0.1\"]\n\
             notify = [\"127.0.0.1:{knot_port}\", \"127.0.0.1:{nsd_port}\"]"
        ),
    );
    let ds = ds_records(&server);
    let knot = peers::knot(
        knot_port,
        &format!(
            "remote:\n  - id: foobar\n    address: 127.0.0.1@{}\n\
             acl:\n  - id: from_foobar\n    address: 127.0.0.1\n    action: notify\n  \
             - id: to_test\n    address: 127.0.0.1\n    action: transfer\n\
             zone:\n  - domain: foobar.com\n    master: foobar\n    acl: [from_foobar, to_test]\n",
            server.dns.port()
        ),
        &[],
    );
    let nsd = peers::nsd(
        nsd_port,
        &format!(
            "zone:\n    name: foobar.com\n    zonefile: foobar.com.zone\n    \
             allow-notify: 127.0.0.1 NOKEY\n    request-xfr: 127.0.0.1@{} NOKEY\n    \
             provide-xfr: 127.0.0.1 NOKEY\n",
            server.dns.port()
        ),
    );
    let through_knot = peers::unbound("foobar.com", knot.address(), &ds);
    let through_nsd = peers::unbound("foobar.com", nsd.address(), &ds);
    let resolvers = [through_knot.address(), through_nsd.address()];
    for resolver in resolvers {
        wait_until("the secondary serves the zone", || {
            resolve(resolver, "www.foobar.com", "A").ad
        });
        validates(resolver, "nothere.foobar.com", "A", "NXDOMAIN");
        validates(resolver, "any.wild.foobar.com", "TXT", "NOERROR");
    }

    // The edit reaches Knot by NOTIFY and IXFR: the signed differences.
    std::fs::write(
        server.zone_path("foobar.com.zone"),
        zone(2, "blog             IN A    192.0.2.80\n"),
    )
    .unwrap();
    for secondary in [knot.address(), nsd.address()] {
        wait_until("the secondary serves the edit", || {
            let answer = dig(secondary, &["+short", "blog.foobar.com", "A"]);
            answer.contains("192.0.2.80")
        });
        verify(&transfer(secondary));
    }
    for resolver in resolvers {
        let blog = validates(resolver, "blog.foobar.com", "A", "NOERROR");
        assert!(blog.answer.contains("192.0.2.80"), "{}", blog.answer);
    }
    assert!(
        knot.log().contains("IXFR") || knot.log().contains("incremental"),
        "{}",
        knot.log()
    );
}

#[test]
fn signatures_are_made_again_before_they_expire() {
    if tools_missing("signatures_are_made_again_before_they_expire") {
        return;
    }
    // Signatures valid for 36 s, refreshed 30 s before they expire: due 6 s after signing.
    let server = signed_server(
        &zone(1, ""),
        "signature_validity = \"36s\"\nsignature_refresh = \"30s\"",
    );
    let before = transfer(server.dns);
    assert_eq!(serial(server.dns), 1);
    let line = server.wait_for_log("signatures refreshed");
    assert!(line.contains("serial=2"), "{line}");
    assert_eq!(serial(server.dns), 2);
    let after = transfer(server.dns);
    verify(&after);
    let signatures = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.contains("\tRRSIG\t"))
            .map(str::to_string)
            .collect()
    };
    let (old, new) = (signatures(&before), signatures(&after));
    assert_eq!(old.len(), new.len());
    assert!(
        new.iter().all(|sig| !old.contains(sig)),
        "every signature is new"
    );
}

#[test]
fn answers_made_while_answering_validate_too() {
    if tools_missing("answers_made_while_answering_validate_too") {
        return;
    }
    // www has two addresses; nothing serves on 127.0.0.2, so the health check takes it out.
    let zone = "$TTL 300\n\
        @ IN SOA ns1.foobar.com. hostmaster.foobar.com. 1 3600 900 1209600 300\n\
        @ IN NS ns1\n\
        ns1 IN A 127.0.0.1\n\
        www IN A 127.0.0.1\n\
        www IN A 127.0.0.2\n";
    let server = Foobar::setup()
        .zone("foobar.com.zone", zone)
        .dns(
            "[dns.zone.\"foobar.com\"]\ndnssec = true\nhttps_records = true\n\
             [[dns.health]]\nname = \"www.foobar.com\"\ninterval = 1\nrise = 1\nfall = 1\n\
             verify_certificate = false",
        )
        .tables("[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{dir}/public\"\n")
        .start();
    server.wait_for_log("zone signed");
    let ds = ds_records(&server);
    wait_until("the address found down is left out", || {
        let answer = dig(server.dns, &["+short", "www.foobar.com", "A"]);
        let https = dig(server.dns, &["+short", "www.foobar.com", "HTTPS"]);
        answer.trim() == "127.0.0.1" && https.contains("ipv4hint=127.0.0.1")
    });
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    let resolver = resolver.address();
    // The part of the RRset that is up, signed as it is answered.
    let www = validates(resolver, "www.foobar.com", "A", "NOERROR");
    assert!(www.answer.contains("127.0.0.1"), "{}", www.answer);
    assert!(!www.answer.contains("127.0.0.2"), "{}", www.answer);
    // The HTTPS record made from the edge's settings, with the address that is up as a hint.
    let https = validates(resolver, "www.foobar.com", "HTTPS", "NOERROR");
    assert!(
        https.answer.contains("ipv4hint=127.0.0.1"),
        "{}",
        https.answer
    );
    assert!(!https.answer.contains("127.0.0.2"), "{}", https.answer);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_one_database_sign_with_the_same_keys() {
    let test = "nodes_on_one_database_sign_with_the_same_keys";
    if tools_missing(test) {
        return;
    }
    let Some(server_url) = support::mysql_url(test) else {
        return;
    };
    // Dropped (the database with it) after the nodes, at the end of the test.
    let fresh = support::Database::create(&server_url, "dnssec").await;
    let database = fresh.url();
    // Three nodes started at once: one makes the keys, the others take them.
    let nodes: Vec<Foobar> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|_| {
                let database = database.clone();
                scope.spawn(move || {
                    Foobar::setup()
                        .zone("foobar.com.zone", &zone(1, ""))
                        .app(&format!("database = \"{database}\""))
                        .tables("[dns.zone.\"foobar.com\"]\ndnssec = true")
                        .start()
                })
            })
            .collect();
        starting.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let dnskeys: Vec<String> = nodes
        .iter()
        .map(|node| dig(node.dns, &["+short", "foobar.com", "DNSKEY"]))
        .collect();
    assert!(!dnskeys[0].trim().is_empty());
    assert!(
        dnskeys.iter().all(|keys| *keys == dnskeys[0]),
        "{dnskeys:?}"
    );
    let made: usize = nodes
        .iter()
        .filter(|node| {
            node.log()
                .iter()
                .any(|line| line.contains("DNSSEC keys put in the database"))
        })
        .count();
    assert_eq!(made, 1, "one node makes the keys");
    // The DS one node gives validates what every node answers.
    let ds = ds_records(&nodes[0]);
    for node in &nodes {
        assert_eq!(ds_records(node), ds);
        let resolver = peers::unbound("foobar.com", node.dns, &ds);
        validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
        validates(resolver.address(), "nothere.foobar.com", "A", "NXDOMAIN");
    }
}

#[test]
fn a_ksk_and_a_zsk_as_an_option() {
    if tools_missing("a_ksk_and_a_zsk_as_an_option") {
        return;
    }
    let server = signed_server(&zone(1, ""), "dnssec_keys = \"ksk-zsk\"");
    let dnskeys = dig(server.dns, &["+short", "foobar.com", "DNSKEY"]);
    let flags: Vec<&str> = dnskeys
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(flags.len(), 2, "{dnskeys}");
    assert!(
        flags.contains(&"257") && flags.contains(&"256"),
        "{dnskeys}"
    );
    let text = transfer(server.dns);
    // Without -z: the DNSKEY set signed by the KSK, everything else by the ZSK.
    verify_keys(&text, false);
    let signers = |covered: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.contains(&format!("\tRRSIG\t{covered} ")))
            .filter_map(|line| line.split_whitespace().nth(10).map(str::to_string))
            .collect()
    };
    let (dnskey_signers, a_signers) = (signers("DNSKEY"), signers("A"));
    assert_eq!(dnskey_signers.len(), 1, "{text}");
    assert!(!a_signers.is_empty() && a_signers.iter().all(|tag| *tag != dnskey_signers[0]));
    let ds = ds_records(&server);
    assert_eq!(ds.len(), 1, "only the KSK has a DS: {ds:?}");
    assert!(
        ds[0].contains(&format!(" DS {} 13 2 ", dnskey_signers[0])),
        "{ds:?}"
    );
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
    validates(resolver.address(), "nothere.foobar.com", "A", "NXDOMAIN");
}

#[test]
fn ed25519_keys_and_signed_answers_too_big_for_udp() {
    if tools_missing("ed25519_keys_and_signed_answers_too_big_for_udp") {
        return;
    }
    // 40 TXT records of 60 bytes: with its signature, past 1232 bytes.
    let big: String = (0..40)
        .map(|i| format!("big              IN TXT  \"{i:02}{}\"\n", "x".repeat(58)))
        .collect();
    let server = signed_server(&zone(1, &big), "dnssec_algorithm = \"ed25519\"");
    let dnskey = dig(server.dns, &["+short", "foobar.com", "DNSKEY"]);
    assert!(dnskey.starts_with("257 3 15 "), "{dnskey}");
    verify(&transfer(server.dns));
    // Over UDP with the common 1232-byte limit: truncated, nothing half-written.
    let udp = dig(
        server.dns,
        &[
            "+dnssec",
            "+bufsize=1232",
            "+notcp",
            "+ignore",
            "big.foobar.com",
            "TXT",
        ],
    );
    assert!(udp.contains("flags: qr aa tc"), "{udp}");
    assert!(!udp.contains("RRSIG"), "{udp}");
    // Over TCP, whole; the validator retries there and validates it.
    let ds = ds_records(&server);
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    let answer = validates(resolver.address(), "big.foobar.com", "TXT", "NOERROR");
    assert_eq!(
        answer.answer.matches("\tTXT\t").count(),
        40,
        "{}",
        answer.answer
    );
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
}

#[test]
fn a_zone_that_cannot_be_signed_keeps_serving_its_signed_version() {
    if tools_missing("a_zone_that_cannot_be_signed_keeps_serving_its_signed_version") {
        return;
    }
    let server = signed_server(&zone(1, ""), "");
    let ds = ds_records(&server);
    // While it is down: the keys' folder made unusable (a file where it was; the copy in the
    // database would repair broken key files), and the zone edited.
    let keys = server.dir.path().join("data/dns/keys/foobar.com");
    let zone_file = server.zone_path("foobar.com.zone");
    let server = {
        let mut server = server;
        server.signal("TERM");
        assert!(server.wait().success());
        std::fs::remove_dir_all(&keys).unwrap();
        std::fs::write(&keys, "not a folder").unwrap();
        std::fs::write(&zone_file, zone(2, "blog             IN A    192.0.2.80\n")).unwrap();
        server.respawn()
    };
    let line = server.wait_for_log("cannot be signed");
    assert!(line.contains("last good copy"), "{line}");
    // Not the new version unsigned: the last signed one, which still validates.
    assert_eq!(serial(server.dns), 1);
    verify(&transfer(server.dns));
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
}
