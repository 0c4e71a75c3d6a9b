//! Table-driven answer tests: a zone fixture and rows of query -> expected RCODE, flags and
//! sections, sent as real packets over UDP and TCP to the server bound on port 0.
#![allow(clippy::unwrap_used)]

mod support;

use hickory_proto::{op::ResponseCode, rr::RecordType};
use support::{Server, query, render};

const EXAMPLE: &str = include_str!("data/example.com.zone");
const ROOT: &str = include_str!("data/root.zone");

struct Row {
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

const EXAMPLE_SOA: &str =
    "example.com. 300 SOA ns1.example.com. hostmaster.example.com. 2026010101 3600 900 604800 300";

const fn row(name: &'static str, qtype: RecordType, rcode: ResponseCode, aa: bool) -> Row {
    Row {
        name,
        qtype,
        rcode,
        aa,
        answer: &[],
        authority: &[],
        additional: &[],
    }
}

impl Row {
    const fn answer(mut self, records: &'static [&'static str]) -> Self {
        self.answer = records;
        self
    }
    const fn authority(mut self, records: &'static [&'static str]) -> Self {
        self.authority = records;
        self
    }
    const fn additional(mut self, records: &'static [&'static str]) -> Self {
        self.additional = records;
        self
    }
}

use RecordType::*;
use ResponseCode::{NXDomain, NoError, Refused, YXDomain};

fn example_rows() -> Vec<Row> {
    vec![
        // Positive answers carry AA and nothing else.
        row("www.example.com.", A, NoError, true).answer(&["www.example.com. 3600 A 192.0.2.80"]),
        row("WwW.ExAmPlE.cOm.", AAAA, NoError, true)
            .answer(&["WwW.ExAmPlE.cOm. 3600 AAAA 2001:db8::80"]),
        row("example.com.", TXT, NoError, true).answer(&["example.com. 3600 TXT apex"]),
        // CNAME chains inside the zone are followed in the answer section.
        row("alias.example.com.", A, NoError, true).answer(&[
            "alias.example.com. 3600 CNAME www.example.com.",
            "www.example.com. 3600 A 192.0.2.80",
        ]),
        row("chain.example.com.", A, NoError, true).answer(&[
            "alias.example.com. 3600 CNAME www.example.com.",
            "chain.example.com. 3600 CNAME alias.example.com.",
            "www.example.com. 3600 A 192.0.2.80",
        ]),
        row("alias.example.com.", CNAME, NoError, true)
            .answer(&["alias.example.com. 3600 CNAME www.example.com."]),
        row("outside.example.com.", A, NoError, true)
            .answer(&["outside.example.com. 3600 CNAME www.example.net."]),
        // RFC 6604: the RCODE is that of the last name in the chain.
        row("dangling.example.com.", A, NXDomain, true)
            .answer(&["dangling.example.com. 3600 CNAME nothere.example.com."])
            .authority(&[EXAMPLE_SOA]),
        // NODATA: name exists, type does not; SOA with the negative TTL min(3600, 300).
        row("www.example.com.", MX, NoError, true).authority(&[EXAMPLE_SOA]),
        // Empty non-terminals exist: NODATA, not NXDOMAIN.
        row("_tcp.example.com.", SRV, NoError, true).authority(&[EXAMPLE_SOA]),
        row("b.c.example.com.", A, NoError, true).authority(&[EXAMPLE_SOA]),
        row("c.example.com.", A, NoError, true).authority(&[EXAMPLE_SOA]),
        row("nothere.example.com.", A, NXDomain, true).authority(&[EXAMPLE_SOA]),
        row("deep.nothere.example.com.", A, NXDomain, true).authority(&[EXAMPLE_SOA]),
        // Wildcards (RFC 4592): synthesis below the closest encloser...
        row("x.wild.example.com.", TXT, NoError, true)
            .answer(&["x.wild.example.com. 3600 TXT wildcard"]),
        row("x.y.wild.example.com.", TXT, NoError, true)
            .answer(&["x.y.wild.example.com. 3600 TXT wildcard"]),
        row("x.wild.example.com.", MX, NoError, true)
            .answer(&["x.wild.example.com. 3600 MX 10 mail.example.com."])
            .additional(&[
                "mail.example.com. 3600 A 192.0.2.25",
                "mail.example.com. 3600 AAAA 2001:db8::25",
            ]),
        row("x.wild.example.com.", A, NoError, true).authority(&[EXAMPLE_SOA]),
        row("x.cname.example.com.", A, NoError, true).answer(&[
            "www.example.com. 3600 A 192.0.2.80",
            "x.cname.example.com. 3600 CNAME www.example.com.",
        ]),
        // ...but not where the name exists, nor below a name that exists.
        row("exists.wild.example.com.", TXT, NoError, true).authority(&[EXAMPLE_SOA]),
        row("sub.exists.wild.example.com.", TXT, NXDomain, true).authority(&[EXAMPLE_SOA]),
        row("wild.example.com.", TXT, NoError, true).authority(&[EXAMPLE_SOA]),
        row("*.wild.example.com.", TXT, NoError, true)
            .answer(&["*.wild.example.com. 3600 TXT wildcard"]),
        // Delegations: referral without AA, NS in authority, glue in additional.
        row("child.example.com.", A, NoError, false)
            .authority(&[
                "child.example.com. 3600 NS ns.example.net.",
                "child.example.com. 3600 NS ns1.child.example.com.",
            ])
            .additional(&["ns1.child.example.com. 3600 A 192.0.2.100"]),
        row("www.child.example.com.", AAAA, NoError, false)
            .authority(&[
                "child.example.com. 3600 NS ns.example.net.",
                "child.example.com. 3600 NS ns1.child.example.com.",
            ])
            .additional(&["ns1.child.example.com. 3600 A 192.0.2.100"]),
        row("child.example.com.", NS, NoError, false)
            .authority(&[
                "child.example.com. 3600 NS ns.example.net.",
                "child.example.com. 3600 NS ns1.child.example.com.",
            ])
            .additional(&["ns1.child.example.com. 3600 A 192.0.2.100"]),
        row("ns1.child.example.com.", A, NoError, false)
            .authority(&[
                "child.example.com. 3600 NS ns.example.net.",
                "child.example.com. 3600 NS ns1.child.example.com.",
            ])
            .additional(&["ns1.child.example.com. 3600 A 192.0.2.100"]),
        row("glueless.example.com.", A, NoError, false)
            .authority(&["glueless.example.com. 3600 NS ns.example.net."]),
        // DS at the cut is the parent's data, answered with AA.
        row("child.example.com.", DS, NoError, true).answer(&[
            "child.example.com. 3600 DS 12345 13 2 3AB4DE4F5F24C39C55E39D1A8E7A7F2F3C8C0A5B0C12F6F1C6E4C0D3E0E1F2A3",
        ]),
        row("glueless.example.com.", DS, NoError, true).authority(&[EXAMPLE_SOA]),
        // Additional-section addresses for in-zone NS, MX, SRV and HTTPS targets.
        row("example.com.", NS, NoError, true)
            .answer(&[
                "example.com. 3600 NS ns1.example.com.",
                "example.com. 3600 NS ns2.example.net.",
            ])
            .additional(&["ns1.example.com. 3600 A 192.0.2.53"]),
        row("example.com.", MX, NoError, true)
            .answer(&["example.com. 3600 MX 10 mail.example.com."])
            .additional(&[
                "mail.example.com. 3600 A 192.0.2.25",
                "mail.example.com. 3600 AAAA 2001:db8::25",
            ]),
        row("_sip._tcp.example.com.", SRV, NoError, true)
            .answer(&["_sip._tcp.example.com. 3600 SRV 0 1 5060 sip.example.com."])
            .additional(&["sip.example.com. 3600 A 192.0.2.60"]),
        row("svc.example.com.", HTTPS, NoError, true)
            .answer(&["svc.example.com. 3600 HTTPS 1 . alpn=h3,"])
            .additional(&["svc.example.com. 3600 A 192.0.2.70"]),
        // ANY: one RRset (RFC 8482), here the lowest type at the name.
        row("www.example.com.", ANY, NoError, true).answer(&["www.example.com. 3600 A 192.0.2.80"]),
        // DNAME (RFC 6672): the DNAME, a CNAME synthesized with its TTL, then the new name.
        row("www.old.example.com.", A, NoError, true).answer(&[
            "old.example.com. 3600 DNAME new.example.com.",
            "www.old.example.com. 3600 CNAME www.new.example.com.",
            "www.new.example.com. 3600 A 192.0.2.2",
        ]),
        row("x.old.example.com.", A, NXDomain, true)
            .answer(&[
                "old.example.com. 3600 DNAME new.example.com.",
                "x.old.example.com. 3600 CNAME x.new.example.com.",
            ])
            .authority(&[EXAMPLE_SOA]),
        // The DNAME applies below its owner, not to the owner itself.
        row("old.example.com.", DNAME, NoError, true)
            .answer(&["old.example.com. 3600 DNAME new.example.com."]),
        row("old.example.com.", A, NoError, true).authority(&[EXAMPLE_SOA]),
        row("old.example.com.", ANY, NoError, true)
            .answer(&["old.example.com. 3600 DNAME new.example.com."]),
        // Every type below it is redirected, DS too.
        row("a.old.example.com.", DS, NXDomain, true)
            .answer(&[
                "old.example.com. 3600 DNAME new.example.com.",
                "a.old.example.com. 3600 CNAME a.new.example.com.",
            ])
            .authority(&[EXAMPLE_SOA]),
        // A target outside the zone ends the answer with the synthesized CNAME.
        row("a.out.example.com.", A, NoError, true).answer(&[
            "out.example.com. 3600 DNAME example.net.",
            "a.out.example.com. 3600 CNAME a.example.net.",
        ]),
        // A CNAME into a DNAME, and a DNAME into a wildcard.
        row("toold.example.com.", A, NoError, true).answer(&[
            "toold.example.com. 3600 CNAME www.old.example.com.",
            "old.example.com. 3600 DNAME new.example.com.",
            "www.old.example.com. 3600 CNAME www.new.example.com.",
            "www.new.example.com. 3600 A 192.0.2.2",
        ]),
        row("x.dwild.example.com.", TXT, NoError, true).answer(&[
            "dwild.example.com. 3600 DNAME wild.example.com.",
            "x.dwild.example.com. 3600 CNAME x.wild.example.com.",
            "x.wild.example.com. 3600 TXT wildcard",
        ]),
        // A wildcard DNAME is synthesized as data but redirects nothing (as Knot and NSD).
        row("x.wdn.example.com.", DNAME, NoError, true)
            .answer(&["x.wdn.example.com. 3600 DNAME example.org."]),
        row("a.x.wdn.example.com.", A, NoError, true).authority(&[EXAMPLE_SOA]),
        // A substituted name longer than 255 bytes: YXDOMAIN with the DNAME (RFC 6672 2.2).
        row(
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.long.example.com.",
            A,
            YXDomain,
            true,
        )
        .answer(&["long.example.com. 3600 DNAME aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com."]),
        // A DNAME beside the NS of a delegation is occluded: a referral; the DS is the parent's.
        row("a.dcut.example.com.", A, NoError, false)
            .authority(&["dcut.example.com. 3600 NS ns.example.net."]),
        row("dcut.example.com.", DNAME, NoError, false)
            .authority(&["dcut.example.com. 3600 NS ns.example.net."]),
        row("dcut.example.com.", DS, NoError, true).answer(&[
            "dcut.example.com. 3600 DS 12345 13 2 3AB4DE4F5F24C39C55E39D1A8E7A7F2F3C8C0A5B0C12F6F1C6E4C0D3E0E1F2A3",
        ]),
        // Outside every zone: REFUSED without AA.
        row("example.org.", A, Refused, false),
        row("com.", SOA, Refused, false),
    ]
}

/// RFC 1034 section 6.2, as answered by a server holding the root zone of section 6.1. Where
/// the 1987 text differs from current practice the row follows the current RFCs: NODATA carries
/// the SOA (RFC 2308), ANY gets one RRset (RFC 8482), and a CNAME into a delegated zone ends in
/// a referral rather than an answer from another zone.
fn rfc1034_rows() -> Vec<Row> {
    const ROOT_SOA: &str =
        ". 86400 SOA SRI-NIC.ARPA. HOSTMASTER.SRI-NIC.ARPA. 870611 1800 300 604800 86400";
    vec![
        // 6.2.1
        row("SRI-NIC.ARPA.", A, NoError, true).answer(&[
            "SRI-NIC.ARPA. 86400 A 10.0.0.51",
            "SRI-NIC.ARPA. 86400 A 26.0.0.73",
        ]),
        // 6.2.2
        row("SRI-NIC.ARPA.", ANY, NoError, true).answer(&[
            "SRI-NIC.ARPA. 86400 A 10.0.0.51",
            "SRI-NIC.ARPA. 86400 A 26.0.0.73",
        ]),
        // 6.2.3
        row("SRI-NIC.ARPA.", MX, NoError, true)
            .answer(&["SRI-NIC.ARPA. 86400 MX 0 SRI-NIC.ARPA."])
            .additional(&[
                "SRI-NIC.ARPA. 86400 A 10.0.0.51",
                "SRI-NIC.ARPA. 86400 A 26.0.0.73",
            ]),
        // 6.2.4
        row("SRI-NIC.ARPA.", NS, NoError, true).authority(&[ROOT_SOA]),
        // 6.2.5
        row("SIR-NIC.ARPA.", A, NXDomain, true).authority(&[ROOT_SOA]),
        // 6.2.6
        row("BRL.MIL.", A, NoError, false)
            .authority(&["MIL. 86400 NS A.ISI.EDU.", "MIL. 86400 NS SRI-NIC.ARPA."])
            .additional(&[
                "A.ISI.EDU. 86400 A 26.3.0.103",
                "SRI-NIC.ARPA. 86400 A 10.0.0.51",
                "SRI-NIC.ARPA. 86400 A 26.0.0.73",
            ]),
        // 6.2.7
        row("USC-ISIC.ARPA.", A, NoError, true)
            .answer(&["USC-ISIC.ARPA. 86400 CNAME C.ISI.EDU."])
            .authority(&["EDU. 86400 NS C.ISI.EDU.", "EDU. 86400 NS SRI-NIC.ARPA."])
            .additional(&[
                "C.ISI.EDU. 86400 A 10.0.0.52",
                "SRI-NIC.ARPA. 86400 A 10.0.0.51",
                "SRI-NIC.ARPA. 86400 A 26.0.0.73",
            ]),
        // 6.2.8
        row("USC-ISIC.ARPA.", CNAME, NoError, true)
            .answer(&["USC-ISIC.ARPA. 86400 CNAME C.ISI.EDU."]),
        // Inverse lookups from the same zone (section 6.1).
        row("52.0.0.10.IN-ADDR.ARPA.", PTR, NoError, true)
            .answer(&["52.0.0.10.IN-ADDR.ARPA. 86400 PTR C.ISI.EDU."]),
    ]
}

async fn check_rows(server: &Server, rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let message = query(row.name, row.qtype);
        for (transport, reply) in [
            ("udp", server.udp(&message).await),
            ("tcp", server.tcp(&message).await),
        ] {
            let got = (
                reply.metadata.response_code,
                reply.metadata.authoritative,
                render(&reply.answers),
                render(&reply.authorities),
                render(&reply.additionals),
            );
            let sorted = |list: &[&str]| {
                let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
                v.sort();
                v
            };
            let want = (
                row.rcode,
                row.aa,
                sorted(row.answer),
                sorted(row.authority),
                sorted(row.additional),
            );
            if got != want {
                failures.push(format!(
                    "{} {:?} over {transport}:\n  got  {got:?}\n  want {want:?}",
                    row.name, row.qtype
                ));
            }
            assert_eq!(reply.metadata.id, message.metadata.id);
            assert!(!reply.metadata.truncation, "{} truncated", row.name);
            assert!(!reply.metadata.recursion_available);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn example_zone_answers() {
    let server = Server::start(&[("example.com.zone", EXAMPLE)]).await;
    check_rows(&server, &example_rows()).await;
}

#[tokio::test]
async fn rfc1034_section6_examples() {
    let server = Server::start(&[("root.zone", ROOT)]).await;
    check_rows(&server, &rfc1034_rows()).await;
}

#[tokio::test]
async fn cname_loop_ends() {
    let server = Server::start(&[("example.com.zone", EXAMPLE)]).await;
    let reply = server.udp(&query("loop1.example.com.", A)).await;
    assert_eq!(reply.metadata.response_code, NoError);
    assert!(reply.metadata.authoritative);
    let answers = render(&reply.answers);
    assert!(
        (2..=9).contains(&answers.len()),
        "a loop is cut after a few CNAMEs: {answers:?}"
    );
    assert!(answers.iter().all(|a| a.contains(" CNAME ")));
}

#[tokio::test]
async fn most_specific_zone_answers() {
    let child = "$ORIGIN child.example.com.\n$TTL 60\n@ SOA ns1 h 7 1 1 1 1\n NS ns1\nns1 A 192.0.2.100\nwww A 192.0.2.200\n";
    let server = Server::start(&[("example.com.zone", EXAMPLE), ("child.zone", child)]).await;
    let reply = server.udp(&query("www.child.example.com.", A)).await;
    assert!(reply.metadata.authoritative);
    assert_eq!(
        render(&reply.answers),
        ["www.child.example.com. 60 A 192.0.2.200"]
    );
    // The parent still answers for the DS at the cut.
    let reply = server.udp(&query("child.example.com.", DS)).await;
    assert_eq!(reply.answers.len(), 1);
}
