//! The two ends of `benches/ws-memory.sh`: a WebSocket echo upstream, and a client that opens
//! many WebSockets through a proxy, checks each echoes, and holds them open and idle while the
//! script measures the proxy's memory.
//!
//! ```text
//! ws_hold echo PORT                     echo server on 127.0.0.1:PORT (any path)
//! ws_hold hold URL COUNT SECONDS        COUNT WebSockets to URL (wss://, any certificate),
//!                                       "open COUNT" once all echo, then SECONDS idle
//! ```

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["echo", port, ..] => runtime.block_on(echo(port.parse().expect("a port"))),
        ["hold", url, count, seconds, ..] => runtime.block_on(hold(
            url,
            count.parse().expect("a count"),
            seconds.parse().expect("seconds"),
        )),
        // `cargo bench` runs it with --bench: nothing to do then.
        _ => eprintln!("usage: ws_hold echo PORT | ws_hold hold URL COUNT SECONDS"),
    }
}

async fn echo(port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("listening");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = socket.next().await {
                if message.is_close() || socket.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn hold(url: &str, count: usize, seconds: u64) {
    let tls = Arc::new(insecure_tls());
    let mut opening = tokio::task::JoinSet::new();
    let mut held = Vec::with_capacity(count);
    let mut failed = 0;
    for i in 0..count {
        let (url, tls) = (url.to_string(), tls.clone());
        opening.spawn(async move {
            let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
            let authority = uri.authority().ok_or("no host")?.as_str().to_string();
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|e| e.to_string())?;
            let name = rustls::pki_types::ServerName::try_from(
                uri.host().unwrap_or("localhost").to_string(),
            )
            .map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (mut socket, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(|e| e.to_string())?;
            let text = format!("hello {i}");
            socket
                .send(Message::text(text.clone()))
                .await
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
                Ok(Some(Ok(message))) if message.to_text().ok() == Some(text.as_str()) => {
                    Ok(socket)
                }
                other => Err(format!("no echo: {other:?}")),
            }
        });
        // Opened a few hundred at a time, as clients arriving.
        while opening.len() >= 256 {
            match opening.join_next().await {
                Some(Ok(Ok(socket))) => held.push(socket),
                _ => failed += 1,
            }
        }
    }
    while let Some(result) = opening.join_next().await {
        match result {
            Ok(Ok(socket)) => held.push(socket),
            _ => failed += 1,
        }
    }
    println!("open {} failed {failed}", held.len());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    drop(held);
}

/// Trusts any certificate: the proxies serve a self-signed one.
fn insecure_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(foobar_edge::probe::any_certificate(provider))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}
