//! DNS over TLS (RFC 7858) from the same process, with the edge's certificate: Knot's `kdig` and
//! BIND's `dig` get the answers they get over UDP; pipelined queries come back in order on one
//! connection; the metrics count the transport.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, process::Command};

use hickory_proto::{op::Message, rr::RecordType};
use support::{Foobar, installed, output_within, query_message, shipped_zone, skip_without, web};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dot_server() -> (Foobar, SocketAddr) {
    let server = Foobar::setup()
        .zone("foobar.com.zone", &shipped_zone())
        .dns("tls_listen = [\"127.0.0.1:0\"]")
        .start();
    let dot = server.address_in("dns listening on tls");
    (server, dot)
}

/// The answer section of a `kdig` or `dig` run, records only, sorted.
fn answers(tool: &str, args: &[String]) -> Vec<String> {
    let output = output_within(Command::new(tool).args(args));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{tool} {args:?}: {text}");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with(';'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

#[test]
fn kdig_and_dig_get_over_tls_what_they_get_over_udp() {
    let test = "kdig_and_dig_get_over_tls_what_they_get_over_udp";
    for (tool, package) in [("kdig", "knot-dnsutils"), ("dig", "bind9-dnsutils")] {
        if !installed(tool, &["-v"]) {
            skip_without(test, tool, &format!("apt-get install {package}"));
            return;
        }
    }
    let (server, dot) = dot_server();
    let at = |addr: SocketAddr| {
        vec![
            format!("@{}", addr.ip()),
            "-p".into(),
            addr.port().to_string(),
        ]
    };
    for (name, rtype) in [
        ("www.foobar.com", "A"),
        ("foobar.com", "MX"),
        ("nothere.foobar.com", "A"),
    ] {
        let question = [
            name.to_string(),
            rtype.to_string(),
            "+noall".into(),
            "+answer".into(),
        ];
        let udp = answers("kdig", &[at(server.dns), question.to_vec()].concat());
        let kdig = answers(
            "kdig",
            &[at(dot), vec!["+tls".into()], question.to_vec()].concat(),
        );
        let dig = answers(
            "dig",
            &[at(dot), vec!["+tls".into()], question.to_vec()].concat(),
        );
        assert_eq!(kdig, udp, "{name} {rtype} over TLS (kdig)");
        assert_eq!(dig, udp, "{name} {rtype} over TLS (dig)");
    }
    let www = answers(
        "kdig",
        &[
            at(dot),
            vec![
                "+tls".into(),
                "www.foobar.com".into(),
                "A".into(),
                "+short".into(),
            ],
        ]
        .concat(),
    );
    assert_eq!(www, vec!["8.8.8.8".to_string()]);

    let (_, metrics) = support::admin_get(server.admin(), "/metrics");
    assert!(
        metrics.contains("transport=\"dot\",type=\"A\",rcode=\"NOERROR\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn pipelined_queries_over_tls_come_back_in_order_on_one_connection() {
    let (server, dot) = dot_server();
    let config = web::tls_config(&server.certificate_pem(), &[b"dot"]);
    let mut stream = web::connect(dot, "foobar.com", config).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    let names = [
        "www.foobar.com",
        "foobar.com",
        "mail.foobar.com",
        "nothere.foobar.com",
    ];
    let mut out = Vec::new();
    for (id, name) in names.iter().enumerate() {
        let mut query = query_message(name, RecordType::A);
        query[..2].copy_from_slice(&(id as u16).to_be_bytes());
        out.extend_from_slice(&(query.len() as u16).to_be_bytes());
        out.extend_from_slice(&query);
    }
    // All of them in one write: the server answers each, in order.
    stream.write_all(&out).await.unwrap();
    for (id, name) in names.iter().enumerate() {
        let len = stream.read_u16().await.unwrap();
        let mut answer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut answer).await.unwrap();
        let message = Message::from_vec(&answer).unwrap();
        assert_eq!(message.metadata.id, id as u16, "{name}");
        assert_eq!(
            message.queries[0].name().to_ascii().trim_end_matches('.'),
            *name
        );
    }
    // The connection stays open for more.
    let query = query_message("www.foobar.com", RecordType::A);
    stream.write_u16(query.len() as u16).await.unwrap();
    stream.write_all(&query).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    let message = Message::from_vec(&answer).unwrap();
    assert!(
        message
            .answers
            .iter()
            .any(|rr| rr.data.to_string() == "8.8.8.8")
    );
}
