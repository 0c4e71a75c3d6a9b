//! The answer path allocates nothing: every query kind the hot path takes, a health-filtered
//! name among them, answered into a reused buffer under an allocator that counts.
#![allow(clippy::unwrap_used)]

use std::{net::IpAddr, path::Path, sync::Arc};

use foobar_dns::{
    Access, Catalog, Client, Cookies, Filter, Health, Responder, Transport, internals::key_of,
    load_zone_text,
};

/// A name in wire form.
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|label| !label.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn query(name: &str, rtype: u16, edns: bool) -> Vec<u8> {
    let additional = u8::from(edns);
    let mut packet = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, additional];
    packet.extend_from_slice(&wire(name));
    packet.extend_from_slice(&rtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        // OPT: root owner, payload 1232, DO set, no options.
        packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    }
    packet
}

#[test]
fn answering_allocates_nothing_even_for_a_health_filtered_name() {
    let text = "$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 h 1 1 1 1 60\n NS ns1\nns1 A 192.0.2.53\n\
                www A 192.0.2.1\nwww A 192.0.2.2\nwww AAAA 2001:db8::1\nwww AAAA 2001:db8::2\n\
                alias CNAME www\n*.wild TXT \"w\"\nchild NS ns.child\nns.child A 192.0.2.9\n\
                @ MX 10 mail\nmail A 192.0.2.25\n";
    let zone = load_zone_text(Path::new("example.com.zone"), text.as_bytes(), None)
        .unwrap()
        .zone;
    let catalog = Catalog::new([Arc::new(zone)]);
    let health = Arc::new(Health::default());
    health.set(
        key_of(&wire("www.example.com")),
        Filter {
            down: vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()],
            ttl: 30,
        },
    );
    let responder = Responder::new(Access::default(), Cookies::new([7; 16])).with_health(health);
    let queries = [
        query("www.example.com", 1, false),
        query("www.example.com", 28, true),
        query("alias.example.com", 1, true),
        query("example.com", 15, false),
        query("nothere.example.com", 1, true),
        query("a.wild.example.com", 16, false),
        query("host.child.example.com", 1, false),
        query("www.example.net", 1, false),
    ];
    let client = Client {
        transport: Transport::Udp,
        address: IpAddr::from([127, 0, 0, 1]),
        now: 1_000_000,
    };
    let mut out = Vec::with_capacity(4096);
    let mut answer_all = || {
        for packet in &queries {
            out.clear();
            responder.respond(&catalog, packet, client, &mut out);
            assert!(out.len() > 12);
        }
    };
    // The first round may set up what lasts (metrics, thread-locals).
    answer_all();
    let counted = allocation_counter::measure(|| {
        for _ in 0..100 {
            answer_all();
        }
    });
    assert_eq!(counted.count_total, 0, "allocations while answering");
}
