//! A burst of QUIC clients arriving at once, for `benches/quic-burst.sh`: opens CLIENTS
//! connections (handshake and one HTTP/3 GET each) to ADDR, all at the same moment, from
//! several client sockets with large buffers (so that any datagram dropped is dropped by the
//! server's socket), and prints how many succeeded.
//!
//!   cargo bench --bench quic_burst -- ADDR CERT_PEM [CLIENTS] [SOCKETS]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rustls_pki_types::{CertificateDer, pem::PemObject};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(addr), Some(pem)) = (args.first(), args.get(1)) else {
        eprintln!("usage: quic_burst ADDR CERT_PEM [CLIENTS] [SOCKETS]");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    let pem = std::fs::read(pem).unwrap_or_else(|e| panic!("{pem}: {e}"));
    let clients: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let sockets: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(burst(addr, &pem, clients, sockets));
}

async fn burst(addr: SocketAddr, pem: &[u8], clients: usize, sockets: usize) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap_or_else(|e| panic!("tls: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .unwrap_or_else(|e| panic!("quic tls: {e}"));
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let endpoints: Vec<quinn::Endpoint> = (0..sockets)
        .map(|_| {
            let socket =
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
            let socket2 = socket2::SockRef::from(&socket);
            let _ = socket2.set_recv_buffer_size(8 << 20);
            let _ = socket2.set_send_buffer_size(8 << 20);
            let runtime = quinn::default_runtime().unwrap_or_else(|| panic!("no runtime"));
            let mut endpoint =
                quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
                    .unwrap_or_else(|e| panic!("endpoint: {e}"));
            endpoint.set_default_client_config(config.clone());
            endpoint
        })
        .collect();
    let ok = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let endpoint = endpoints[i % sockets].clone();
        let ok = ok.clone();
        tasks.spawn(async move {
            let attempt = async {
                let connection = endpoint.connect(addr, "www.foobar.com").ok()?.await.ok()?;
                let (mut driver, mut sender) =
                    h3::client::new(h3_quinn::Connection::new(connection.clone()))
                        .await
                        .ok()?;
                let drive = tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                let request = http::Request::get("https://www.foobar.com/")
                    .body(())
                    .ok()?;
                let mut stream = sender.send_request(request).await.ok()?;
                stream.finish().await.ok()?;
                let response = stream.recv_response().await.ok()?;
                while stream.recv_data().await.ok()?.is_some() {}
                drive.abort();
                connection.close(0u32.into(), b"done");
                response.status().is_success().then_some(())
            };
            if tokio::time::timeout(Duration::from_secs(30), attempt)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                ok.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "{clients} clients: {ok} answered, {} failed, in {:.2} s",
        clients - ok,
        start.elapsed().as_secs_f64()
    );
}
