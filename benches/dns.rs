//! DNS hot paths without sockets: answering (a hit, a miss, a wildcard, a referral) and zone
//! loading. Run with `cargo bench --bench dns`.

use std::{hint::black_box, net::IpAddr, path::Path, sync::Arc};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use foobar_dns::{Catalog, Client, Cookies, Responder, Transport, load_zone};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType},
};

const ZONE: &str = "$ORIGIN foobar.com.
$TTL 3600
@ SOA ns1 hostmaster 1 3600 900 1209600 300
  NS ns1
  NS ns2
  MX 10 mail
ns1 A 192.0.2.53
ns2 A 198.51.100.53
www A 8.8.8.8
    AAAA 2001:db8::80
    HTTPS 1 . alpn=\"h3,h2\"
mail A 192.0.2.25
*.wild TXT \"wildcard\"
child NS ns1.child
ns1.child A 192.0.2.100
";

fn query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 7;
    message.add_query(Query::query(
        Name::from_ascii(name).unwrap_or_default(),
        rtype,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message.to_vec().unwrap_or_default()
}

fn answers(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("foobar.com.zone");
    std::fs::write(&path, ZONE).expect("zone written");
    let zone = load_zone(&path, None).expect("zone loads").zone;
    let catalog = Catalog::new([Arc::new(zone)]);
    let responder = Responder::new(foobar_dns::Access::default(), Cookies::new([7; 16]));
    let client = Client {
        transport: Transport::Udp,
        address: IpAddr::from([127, 0, 0, 1]),
        now: 0,
    };
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("answer");
    group.throughput(Throughput::Elements(1));
    for (label, name, rtype) in [
        ("hit www A", "www.foobar.com.", RecordType::A),
        ("miss NXDOMAIN", "nope.foobar.com.", RecordType::A),
        ("wildcard TXT", "x.wild.foobar.com.", RecordType::TXT),
        ("referral", "www.child.foobar.com.", RecordType::A),
        ("hit MX + additional", "foobar.com.", RecordType::MX),
        ("refused out of zone", "example.org.", RecordType::A),
    ] {
        let packet = query(name, rtype);
        group.bench_function(label, |b| {
            b.iter(|| {
                responder.respond(&catalog, black_box(&packet), client, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn loading(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("example.com.zone");
    let mut text =
        String::from("$TTL 3600\n@ SOA ns1 h 1 3600 900 604800 300\n NS ns1\nns1 A 192.0.2.1\n");
    let hosts = 20_000;
    for i in 0..hosts {
        text.push_str(&format!("host{i} A 10.0.{}.{}\n", (i >> 8) & 255, i & 255));
    }
    std::fs::write(&path, text).expect("zone written");
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(hosts + 3));
    group.sample_size(20);
    group.bench_function("20k-record zone", |b| {
        b.iter(|| load_zone(black_box(Path::new(&path)), None).map(|l| l.zone.record_count()))
    });
    group.finish();
}

criterion_group!(benches, answers, loading);
criterion_main!(benches);
