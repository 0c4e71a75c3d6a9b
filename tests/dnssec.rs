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
    transfer_zone(server, "foobar.com")
}

/// The zone `zone` as AXFR gives it, in zone-file form.
fn transfer_zone(server: SocketAddr, zone: &str) -> String {
    dig(server, &["+nocmd", "+nostats", "+onesoa", zone, "AXFR"])
}

/// Runs `dnssec-verify` and `ldns-verify-zone` on `zone_text`; panics with their output unless
/// both accept it.
fn verify(zone_text: &str) {
    verify_keys(zone_text, true);
}

/// [`verify`], for a zone whose key is a CSK (`csk`) or whose keys are a KSK and a ZSK.
fn verify_keys(zone_text: &str, csk: bool) {
    verify_zone(zone_text, "foobar.com", csk);
}

/// [`verify_keys`] for the zone `zone`.
fn verify_zone(zone_text: &str, zone: &str, csk: bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{zone}.zone"));
    std::fs::write(&file, zone_text).unwrap();
    // -z: the key is a CSK (flags 257), signing everything, as BIND's own policies make them.
    let bind = output_within(
        Command::new("dnssec-verify")
            .args(if csk { &["-z"][..] } else { &[][..] })
            .args(["-o", zone])
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
    ds_of(server, "foobar.com")
}

/// What `foobar dnssec ds` prints for `zone` served by `server`.
fn ds_of(server: &Foobar, zone: &str) -> Vec<String> {
    let output = output_within(
        Command::new(support::binary())
            .args(["dnssec", "ds", "--config"])
            .arg(server.config_path())
            .arg(zone),
    );
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that the resolver validates the answers and proofs of [`zone`]: a name, NXDOMAIN
/// (also below a missing name), NODATA, NODATA at an empty non-terminal and a name below it, a
/// wildcard's expansion (also two labels deep) and a type it lacks, a signed DS at a delegation
/// and the proof that another has none.
fn proofs_validate(resolver: SocketAddr) {
    let www = validates(resolver, "www.foobar.com", "A", "NOERROR");
    assert!(www.answer.contains("8.8.8.8"), "{}", www.answer);
    validates(resolver, "nothere.foobar.com", "A", "NXDOMAIN");
    validates(resolver, "a.b.nothere.foobar.com", "A", "NXDOMAIN");
    validates(resolver, "www.foobar.com", "TXT", "NOERROR");
    validates(resolver, "_tcp.foobar.com", "A", "NOERROR");
    validates(resolver, "x._tcp.foobar.com", "A", "NXDOMAIN");
    let wild = validates(resolver, "any.wild.foobar.com", "TXT", "NOERROR");
    assert!(wild.answer.contains("from the wildcard"), "{}", wild.answer);
    validates(resolver, "a.b.wild.foobar.com", "TXT", "NOERROR");
    validates(resolver, "other.wild.foobar.com", "A", "NOERROR");
    let secure = validates(resolver, "secure.foobar.com", "DS", "NOERROR");
    assert!(secure.answer.contains("12345 13 2"), "{}", secure.answer);
    let insecure = validates(resolver, "sub.foobar.com", "DS", "NOERROR");
    assert!(insecure.answer.is_empty(), "{}", insecure.answer);
}

/// Adds one record to [`zone`] on `server`: served signed at once with at most 4 signatures
/// made (the rest kept), the zone still verifies, and the new name and its NODATA validate.
fn an_edit_is_signed_where_it_changed(server: &Foobar, resolver: SocketAddr) {
    let before = server.log_len();
    std::fs::write(
        server.zone_path("foobar.com.zone"),
        zone(2, "blog             IN A    192.0.2.80\n"),
    )
    .unwrap();
    let line = server.wait_for_log_after(before, "zone signed");
    let made = signatures_made(&line);
    assert!(
        made <= 4,
        "an edit of one record made {made} signatures: {line}"
    );
    verify(&transfer(server.dns));
    let blog = validates(resolver, "blog.foobar.com", "A", "NOERROR");
    assert!(blog.answer.contains("192.0.2.80"), "{}", blog.answer);
    validates(resolver, "blog.foobar.com", "AAAA", "NOERROR");
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

    validates(resolver, "foobar.com", "MX", "NOERROR");
    validates(resolver, "foobar.com", "DNSKEY", "NOERROR");
    proofs_validate(resolver);
    // The new A and its NSEC, the NSEC before it, and the SOA.
    an_edit_is_signed_where_it_changed(&server, resolver);

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
    secondaries_serve_the_signed_zone(
        "knot_and_nsd_as_secondaries_serve_the_signed_zone_and_its_edits",
        "",
    );
}

#[test]
fn knot_and_nsd_as_secondaries_serve_an_nsec3_zone_and_its_edits() {
    secondaries_serve_the_signed_zone(
        "knot_and_nsd_as_secondaries_serve_an_nsec3_zone_and_its_edits",
        "nsec3 = true\n",
    );
}

/// Knot and NSD follow the zone signed with `settings`; Unbound validates through each, before
/// and after an edit that reaches them by NOTIFY and IXFR.
fn secondaries_serve_the_signed_zone(test: &str, settings: &str) {
    if tools_missing(test) {
        return;
    }
    for (tool, flag, package) in [("knotd", "-V", "knot"), ("nsd", "-v", "nsd")] {
        if !installed(tool, &[flag]) {
            return skip_without(test, tool, &format!("apt-get install {package}"));
        }
    }
    let (knot_port, nsd_port) = (support::free_port(), support::free_port());
    let server = signed_server(
        &zone(1, ""),
        &format!(
            "{settings}allow_transfer = [\"127.0.0.1\"]\n\
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
    // Three nodes started at once: one makes the keys, the others take them. The ZSK rolls 6 s
    // after: one node plans it, and every node publishes the new key.
    let nodes: Vec<Foobar> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|_| {
                let database = database.clone();
                scope.spawn(move || {
                    Foobar::setup()
                        .zone("foobar.com.zone", &zone(1, ""))
                        .app(&format!("database = \"{database}\""))
                        .tables(
                            "[dns.zone.\"foobar.com\"]\ndnssec = true\n\
                             dnssec_keys = \"ksk-zsk\"\nzsk_lifetime = \"6s\"",
                        )
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
    let logged = |node: &Foobar| {
        node.raw_log()
            .into_iter()
            .find(|line| line.contains("zsk rollover: key"))
    };
    wait_until("a node plans the ZSK rollover", || {
        nodes.iter().any(|node| logged(node).is_some())
    });
    let started = nodes.iter().find_map(logged).unwrap();
    let new_zsk = started
        .split("key ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    for node in &nodes {
        support::wait_until("every node publishes the new ZSK", || {
            dnskey_tags(node.dns, "foobar.com").contains(&new_zsk.to_string())
        });
    }
    let planned = nodes.iter().filter(|node| logged(node).is_some()).count();
    assert_eq!(planned, 1, "one node plans the rollover");
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

/// A zone `origin` whose TTLs are all 2 s, so that a rollover's waits take seconds.
fn short_zone(origin: &str, serial: u32, extra: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 2\n\
         @    IN SOA ns.{origin}. hostmaster.{origin}. {serial} 2 2 2 2\n\
         @    IN NS  ns\nns   IN A   127.0.0.1\nwww  IN A   8.8.8.8\n{extra}"
    )
}

/// The parent `com.`: delegations to foobar.com and zsk.com, with `ds` (zone-file lines).
fn parent_zone(serial: u32, ds: &str) -> String {
    short_zone(
        "com",
        serial,
        &format!(
            "foobar.com.  IN NS ns.foobar.com.\nns.foobar.com. IN A 127.0.0.1\n\
             zsk.com.  IN NS ns.zsk.com.\nns.zsk.com. IN A 127.0.0.1\n{ds}"
        ),
    )
}

/// The DNSKEY tags of `zone` in its transfer.
fn dnskey_tags(server: SocketAddr, zone: &str) -> Vec<String> {
    let mut tags: Vec<String> = dig(server, &["+noall", "+answer", "+multiline", zone, "DNSKEY"])
        .split("key id = ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect();
    tags.sort();
    tags
}

/// The `key N` after `what` in a log line ("... key 1234 published ...").
fn tag_after(line: &str, what: &str) -> String {
    line.split(what)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches(',')
        .to_string()
}

/// Questions for foobar.com, and their statuses.
const FOOBAR_QUESTIONS: [(&str, &str, &str); 3] = [
    ("www.foobar.com", "A", "NOERROR"),
    ("foobar.com", "DNSKEY", "NOERROR"),
    ("nothere.foobar.com", "A", "NXDOMAIN"),
];

/// A thread asking a resolver `questions` (name, type, status) over and over, while keys
/// roll: every answer must validate.
struct Validating {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Validating {
    fn start(
        resolver: SocketAddr,
        questions: Vec<(&'static str, &'static str, &'static str)>,
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut asked, mut failed) = (0, Vec::new());
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                for &(name, rtype, status) in &questions {
                    let got = resolve(resolver, name, rtype);
                    asked += 1;
                    if got.status != status || !got.ad {
                        failed.push(format!("{name} {rtype}: {} ad={}", got.status, got.ad));
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            (asked, failed)
        });
        Validating { stop, thread }
    }

    /// Stops asking; panics with the answers that did not validate. How many were asked.
    fn finish(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (asked, failed) = self.thread.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} of {asked} did not validate: {failed:?}",
            failed.len()
        );
        asked
    }
}

#[test]
fn a_zsk_and_a_csk_roll_while_a_validator_keeps_validating() {
    if tools_missing("a_zsk_and_a_csk_roll_while_a_validator_keeps_validating") {
        return;
    }
    // The parent, signed, with the children delegated (their DS comes once they have keys).
    let parent = Foobar::setup()
        .zone("com.zone", &parent_zone(1, ""))
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .tables("[dns.zone.\"com\"]\ndnssec = true\n")
        .start();
    parent.wait_for_log("zone signed");
    // A ZSK that rolls every 8 s; a CSK every 12 s, checked at the parent every second. With
    // TTLs of 2 s and a propagation delay of 1 s, each step waits 3 s.
    let zsk = Foobar::setup()
        .zone("zsk.com.zone", &short_zone("zsk.com", 1, ""))
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .tables(
            "[dns.zone.\"zsk.com\"]\ndnssec = true\ndnssec_keys = \"ksk-zsk\"\n\
             zsk_lifetime = \"8s\"\npropagation_delay = \"1s\"\n",
        )
        .start();
    let csk_settings = format!(
        "[dns.zone.\"foobar.com\"]\ndnssec = true\nksk_lifetime = \"12s\"\n\
         propagation_delay = \"1s\"\ndnssec_parent = [\"{}\"]\nparent_check_interval = \"1s\"\n",
        parent.dns
    );
    let csk = Foobar::setup()
        .zone("foobar.com.zone", &short_zone("foobar.com", 1, ""))
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .tables(&csk_settings)
        .start();
    zsk.wait_for_log("zone signed");
    csk.wait_for_log("zone signed");
    let old_csk_ds = ds_of(&csk, "foobar.com");
    let ds = |records: &[String]| records.join("\n") + "\n";
    std::fs::write(
        parent.zone_path("com.zone"),
        parent_zone(2, &(ds(&old_csk_ds) + &ds(&ds_of(&zsk, "zsk.com")))),
    )
    .unwrap();
    wait_until("the parent serves the children's DS", || {
        dig(parent.dns, &["+short", "foobar.com", "DS"]).contains(" 13 2 ")
    });

    let resolver = peers::unbound_stubs(
        &[
            ("com", parent.dns),
            ("foobar.com", csk.dns),
            ("zsk.com", zsk.dns),
        ],
        &ds_of(&parent, "com"),
    );
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
    validates(resolver.address(), "www.zsk.com", "A", "NOERROR");
    let questions = || {
        let mut questions = FOOBAR_QUESTIONS.to_vec();
        questions.extend([
            ("www.zsk.com", "A", "NOERROR"),
            ("zsk.com", "DNSKEY", "NOERROR"),
        ]);
        questions
    };
    let validating = Validating::start(resolver.address(), questions());

    // The ZSK: published beside the old one, then signing, then the old one gone.
    let started = zsk.wait_for_log("zsk rollover: key");
    let (new_zsk, old_zsk) = (
        tag_after(&started, "key "),
        tag_after(&started, "replacing key "),
    );
    // Until the new key signs (3 s), the next events are its activation and the old key's
    // retirement, in /metrics and `ctl`.
    let (_, metrics) = support::admin_get(zsk.admin(), "/metrics");
    for (tag, event) in [(&old_zsk, "retire"), (&new_zsk, "active")] {
        let line = format!(
            "foobar_dns_dnssec_key_next_event_timestamp_seconds{{zone=\"zsk.com.\",tag=\"{tag}\",event=\"{event}\"}}"
        );
        assert!(metrics.contains(&line), "{metrics}");
    }
    let ctl = output_within(Command::new(support::binary()).args([
        "ctl",
        "--admin",
        &zsk.admin().to_string(),
        "zone",
        "list",
    ]));
    let listed = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        listed.contains(&format!(
            "key {new_zsk} (algorithm 13, zsk, published, active "
        )),
        "{listed}"
    );
    let text = transfer_zone(zsk.dns, "zsk.com");
    verify_zone(&text, "zsk.com", false);
    assert_eq!(dnskey_tags(zsk.dns, "zsk.com").len(), 3, "{text}");
    zsk.wait_for_log(&format!("key {old_zsk} removed"));
    let tags = dnskey_tags(zsk.dns, "zsk.com");
    assert!(
        tags.contains(&new_zsk) && !tags.contains(&old_zsk),
        "{tags:?}"
    );
    verify_zone(&transfer_zone(zsk.dns, "zsk.com"), "zsk.com", false);

    // The CSK: published, and the server restarted in the middle; CDS names the new key once
    // caches can hold it; the parent (as a registrar reading CDS would) takes its DS; the old
    // key leaves once the parent serves it and the old DS is gone from caches.
    let started = csk.wait_for_log("csk rollover: key");
    let (new_csk, old_csk) = (
        tag_after(&started, "key "),
        tag_after(&started, "replacing key "),
    );
    verify_zone(&transfer_zone(csk.dns, "foobar.com"), "foobar.com", true);
    // The resolver asks the restarted server's new port: one validator before, one after.
    let mut asked = validating.finish();
    let csk = csk.restart();
    csk.wait_for_log("zone signed");
    assert_eq!(dnskey_tags(csk.dns, "foobar.com").len(), 2);
    let resolver = peers::unbound_stubs(
        &[
            ("com", parent.dns),
            ("foobar.com", csk.dns),
            ("zsk.com", zsk.dns),
        ],
        &ds_of(&parent, "com"),
    );
    let validating = Validating::start(resolver.address(), questions());

    let mut cds = String::new();
    wait_until("CDS names the new key", || {
        cds = dig(csk.dns, &["+short", "foobar.com", "CDS"]);
        cds.starts_with(&format!("{new_csk} "))
    });
    assert_eq!(cds.lines().count(), 1, "{cds}");
    let new_ds = format!("foobar.com. IN DS {}", cds.trim());
    std::fs::write(
        parent.zone_path("com.zone"),
        parent_zone(3, &(new_ds + "\n" + &ds(&ds_of(&zsk, "zsk.com")))),
    )
    .unwrap();
    csk.wait_for_log("the parent serves the new key's DS");
    assert!(
        csk.raw_log()
            .iter()
            .all(|line| !line.contains("csk rollover: key") || line.contains(&new_csk)),
        "the restart went on with the rollover it found, not another"
    );
    csk.wait_for_log(&format!("key {old_csk} removed"));
    let tags = dnskey_tags(csk.dns, "foobar.com");
    assert_eq!(tags, vec![new_csk.clone()]);
    verify_zone(&transfer_zone(csk.dns, "foobar.com"), "foobar.com", true);
    assert_eq!(ds_of(&csk, "foobar.com").len(), 1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    asked += validating.finish();
    assert!(asked > 50, "{asked}");
}

#[test]
fn nsec3_as_an_option() {
    if tools_missing("nsec3_as_an_option") {
        return;
    }
    let server = signed_server(&zone(1, ""), "nsec3 = true");
    let text = transfer(server.dns);
    assert!(text.contains("IN\tNSEC3PARAM 1 0 0 -"), "{text}");
    assert!(!text.contains("\tNSEC\t"), "{text}");
    verify(&text);

    let ds = ds_records(&server);
    let resolver = peers::unbound("foobar.com", server.dns, &ds);
    let resolver = resolver.address();
    // The closest encloser proof for NXDOMAIN, NSEC3 of empty non-terminals and wildcards.
    proofs_validate(resolver);
    // The new A, its NSEC3, the NSEC3 before it in hash order, and the SOA.
    an_edit_is_signed_where_it_changed(&server, resolver);
    validates(resolver, "blog.foobar.com", "AAAA", "NOERROR");
}

#[test]
fn an_algorithm_rollover_on_command_while_a_validator_keeps_validating() {
    let test = "an_algorithm_rollover_on_command_while_a_validator_keeps_validating";
    if tools_missing(test) {
        return;
    }
    let parent = Foobar::setup()
        .zone("com.zone", &parent_zone(1, ""))
        .tables("[dns.zone.\"com\"]\ndnssec = true\n")
        .start();
    parent.wait_for_log("zone signed");
    let child = Foobar::setup()
        .zone("foobar.com.zone", &short_zone("foobar.com", 1, ""))
        .dns("allow_transfer = [\"127.0.0.1\"]")
        .tables(&format!(
            "[dns.zone.\"foobar.com\"]\ndnssec = true\npropagation_delay = \"1s\"\n\
             dnssec_parent = [\"{}\"]\nparent_check_interval = \"1s\"\n",
            parent.dns
        ))
        .start();
    child.wait_for_log("zone signed");
    let old = ds_of(&child, "foobar.com");
    let old_tag = old[0].split_whitespace().nth(3).unwrap().to_string();
    std::fs::write(
        parent.zone_path("com.zone"),
        parent_zone(2, &(old.join("\n") + "\n")),
    )
    .unwrap();
    wait_until("the parent serves the DS", || {
        dig(parent.dns, &["+short", "foobar.com", "DS"]).contains(" 13 2 ")
    });
    let resolver = peers::unbound_stubs(
        &[("com", parent.dns), ("foobar.com", child.dns)],
        &ds_of(&parent, "com"),
    );
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
    let validating = Validating::start(resolver.address(), FOOBAR_QUESTIONS.to_vec());

    let ctl = |args: &[&str]| {
        let admin = child.admin().to_string();
        let output = output_within(
            Command::new(support::binary())
                .args(["ctl", "--admin", &admin, "dnssec", "algorithm"])
                .args(args),
        );
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (ok, said) = ctl(&["foobar.com", "ecdsap256sha256"]);
    assert!(!ok && said.contains("already"), "{said}");
    let (ok, said) = ctl(&["foobar.com", "ed25519"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("algorithm rollover: key ") && said.contains("(algorithm 15)"),
        "{said}"
    );
    let new_tag = tag_after(&said, "key ");
    let (ok, said) = ctl(&["foobar.com", "ed25519"]);
    assert!(!ok && said.contains("under way"), "{said}");

    // Signed by both algorithms before the new key is published; the zone verifies at every
    // step.
    wait_until("signatures of both algorithms", || {
        let text = transfer_zone(child.dns, "foobar.com");
        text.contains("\tRRSIG\tA 15 ") && text.contains("\tRRSIG\tA 13 ")
    });
    assert_eq!(dnskey_tags(child.dns, "foobar.com"), vec![old_tag.clone()]);
    verify_zone(&transfer_zone(child.dns, "foobar.com"), "foobar.com", true);
    wait_until("the new key published", || {
        dnskey_tags(child.dns, "foobar.com").contains(&new_tag)
    });
    verify_zone(&transfer_zone(child.dns, "foobar.com"), "foobar.com", true);
    let mut cds = String::new();
    wait_until("CDS names the new key", || {
        cds = dig(child.dns, &["+short", "foobar.com", "CDS"]);
        cds.starts_with(&format!("{new_tag} 15 2 "))
    });
    std::fs::write(
        parent.zone_path("com.zone"),
        parent_zone(3, &format!("foobar.com. IN DS {}\n", cds.trim())),
    )
    .unwrap();
    child.wait_for_log("the parent serves the new key's DS");
    let before = child.log_len();
    child.wait_for_log_after(before, &format!("key {old_tag} removed"));
    let text = transfer_zone(child.dns, "foobar.com");
    assert!(!text.contains("\tRRSIG\tA 13 "), "{text}");
    assert_eq!(dnskey_tags(child.dns, "foobar.com"), vec![new_tag]);
    verify_zone(&text, "foobar.com", true);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let asked = validating.finish();
    assert!(asked > 50, "{asked}");
}

#[test]
fn a_zone_whose_signatures_expired_while_stopped_is_signed_again() {
    if tools_missing("a_zone_whose_signatures_expired_while_stopped_is_signed_again") {
        return;
    }
    // Signatures valid for 12 s; the server is stopped 13 s, past their expiry: what it kept
    // (its last good copy) is signed again at start, not served expired.
    let server = signed_server(
        &zone(1, ""),
        "signature_validity = \"12s\"\nsignature_refresh = \"4s\"",
    );
    let before = transfer(server.dns);
    let server = server.restart_after(std::time::Duration::from_secs(13));
    let line = server.wait_for_log("zone signed");
    let after = transfer(server.dns);
    let count = |text: &str| {
        text.lines()
            .filter(|line| line.contains("\tRRSIG\t"))
            .count()
    };
    assert_eq!(signatures_made(&line), count(&after), "{line}");
    assert!(
        after
            .lines()
            .filter(|line| line.contains("\tRRSIG\t"))
            .all(|sig| !before.contains(sig))
    );
    verify(&after);
    let resolver = peers::unbound("foobar.com", server.dns, &ds_records(&server));
    validates(resolver.address(), "www.foobar.com", "A", "NOERROR");
}
