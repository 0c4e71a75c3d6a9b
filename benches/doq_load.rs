//! DNS over QUIC load for `benches/encrypted-dns.sh` (dnsperf has no DoQ): CONNECTIONS
//! connections to ADDR, each with STREAMS queries outstanding, one per stream (RFC 9250), in turn
//! through the queries of FILE (`NAME TYPE` per line, as dnsperf reads them), for SECONDS; then
//! prints `answered N` and `per_second R`, as dnsperf's summary gives them.
//!
//!   cargo bench --bench doq_load -- ADDR CERT_PEM SERVER_NAME FILE SECONDS [CONNECTIONS] [STREAMS]

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [addr, pem, server_name, file, seconds, ..] = &args[..] else {
        eprintln!("usage: doq_load ADDR CERT_PEM SERVER_NAME FILE SECONDS [CONNECTIONS] [STREAMS]");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    let seconds: u64 = seconds.parse().unwrap_or_else(|e| panic!("{seconds}: {e}"));
    let connections: usize = args.get(5).and_then(|n| n.parse().ok()).unwrap_or(8);
    let streams: usize = args.get(6).and_then(|n| n.parse().ok()).unwrap_or(25);
    let queries = Arc::new(queries(file));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem).unwrap_or_else(|e| panic!("{pem}: {e}")) {
        roots
            .add(cert.unwrap_or_else(|e| panic!("{pem}: {e}")))
            .unwrap_or_else(|e| panic!("{pem}: {e}"));
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap_or_else(|e| panic!("TLS: {e}"))
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"doq".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .unwrap_or_else(|e| panic!("QUIC TLS: {e}"));
    let client = quinn::ClientConfig::new(Arc::new(crypto));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let (answered, took) = runtime.block_on(async {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("endpoint: {e}"));
        endpoint.set_default_client_config(client);
        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        let started = Instant::now();
        for c in 0..connections {
            let connection = endpoint
                .connect(addr, server_name)
                .unwrap_or_else(|e| panic!("connect: {e}"))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            for s in 0..streams {
                let (connection, queries, answered, stop) = (
                    connection.clone(),
                    queries.clone(),
                    answered.clone(),
                    stop.clone(),
                );
                tasks.spawn(async move {
                    let mut next = (c * streams + s) % queries.len();
                    while !stop.load(Ordering::Relaxed) {
                        if ask(&connection, &queries[next]).await {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        next = (next + 1) % queries.len();
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let took = started.elapsed();
        let count = answered.load(Ordering::Relaxed);
        tasks.abort_all();
        endpoint.close(0u32.into(), b"");
        (count, took)
    });
    println!("answered {answered}");
    println!(
        "per_second {:.0}",
        answered as f64 / took.as_secs_f64().max(0.001)
    );
}

/// One query on a stream of its own; whether an answer came.
async fn ask(connection: &quinn::Connection, framed: &[u8]) -> bool {
    let Ok((mut send, mut receive)) = connection.open_bi().await else {
        return false;
    };
    if send.write_all(framed).await.is_err() || send.finish().is_err() {
        return false;
    }
    receive
        .read_to_end(65_537)
        .await
        .is_ok_and(|answer| answer.len() > 14)
}

/// The queries of `file`, each a message with ID 0 and its two-byte length.
fn queries(file: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let queries: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = Name::from_ascii(parts.next()?).ok()?;
            let rtype = RecordType::from_str(parts.next()?).ok()?;
            let mut message = Message::query();
            message.metadata.id = 0;
            message.metadata.recursion_desired = false;
            message.add_query(Query::query(name, rtype));
            let bytes = message.to_vec().ok()?;
            Some([&(bytes.len() as u16).to_be_bytes()[..], &bytes].concat())
        })
        .collect();
    assert!(!queries.is_empty(), "{file}: no queries");
    queries
}
