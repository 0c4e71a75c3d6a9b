//! DNS over QUIC (RFC 9250): one query per bidirectional stream, each message with its two-byte
//! length as over TCP, the message ID 0; connections bounded as TCP's are (in all and per
//! address, idle timeout) and in streams at once. On quinn, as the web edge's HTTP/3.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use foobar_net::{
    PerAddress,
    quic::{Frames, QuicRouting},
};
use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{MAX_MESSAGE, Serving, Shared, Transfer, unix_now};
use crate::answer::{Client, Outcome, Transport};

/// Application error codes (RFC 9250 section 4.3).
const DOQ_NO_ERROR: u32 = 0x0;
const DOQ_PROTOCOL_ERROR: u32 = 0x2;
const DOQ_REQUEST_CANCELLED: u32 = 0x3;

/// Queries open at once on one connection.
const STREAMS_PER_CONNECTION: u32 = 100;

/// The QUIC server settings for DNS over QUIC: `tls` (ALPN `doq`, TLS 1.3, no 0-RTT), the
/// token key of `routing`'s generations and the limits of `shared`.
fn server_config(
    tls: Arc<rustls::ServerConfig>,
    routing: &QuicRouting,
    shared: &Shared,
) -> Result<quinn::ServerConfig, String> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("DNS over QUIC needs TLS 1.3: {e}"))?;
    let mut server = foobar_net::quic::server_config(Arc::new(crypto), routing);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(STREAMS_PER_CONNECTION.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(quinn::IdleTimeout::try_from(shared.tcp_idle_timeout).ok());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Answers DNS over QUIC on `socket` until `shutdown`, then lets connections finish the
/// queries in hand for at most `drain`. Across an upgrade, `routing` passes each packet to the
/// process that holds its connection.
pub async fn serve_quic(
    socket: std::net::UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    routing: QuicRouting,
    live: Arc<ArcSwap<impl Serving>>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let config = match server_config(tls, &routing, live.load().shared()) {
        Ok(config) => config,
        Err(e) => {
            warn!(error = %e, "DNS over QUIC not served");
            return;
        }
    };
    let endpoint = match socket.local_addr().and_then(|addr| {
        // Named on the link by its address: the process has other QUIC sockets.
        foobar_net::quic::endpoint(config, socket, &routing, Frames::Named(addr))
    }) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            warn!(error = %e, "DNS over QUIC not served");
            return;
        }
    };
    let mut connections = JoinSet::new();
    let per_address = PerAddress::new(live.load().shared().max_tcp_connections_per_address);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let shared = live.load().shared().clone();
        per_address.set_most(shared.max_tcp_connections_per_address);
        let peer = incoming.remote_address();
        // The TCP bounds: connections in all, and from one address.
        let slot = (connections.len() < shared.max_tcp_connections)
            .then(|| per_address.take(peer.ip()))
            .flatten();
        let Some(slot) = slot else {
            debug!(%peer, "quic connection refused: too many");
            incoming.refuse();
            continue;
        };
        let stopping = shutdown.clone();
        connections.spawn(async move {
            match incoming.await {
                Ok(connection) => serve_connection(connection, shared, stopping).await,
                Err(e) => debug!(error = %e, "quic handshake"),
            }
            drop(slot);
        });
    }
    // Stopping (or handing over to a new process, which reads the same socket): connections
    // open finish what they were asked.
    foobar_net::quic::refuse_new_connections(endpoint.clone());
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    endpoint.close(DOQ_NO_ERROR.into(), b"");
}

/// Each stream of `connection` is one query. Once `stopping`, the queries in hand are answered
/// and the connection closed with DOQ_NO_ERROR, so that the client asks again on a new one
/// (which reaches the process that serves, after an upgrade).
async fn serve_connection(
    connection: quinn::Connection,
    shared: Shared,
    stopping: CancellationToken,
) {
    let peer = connection.remote_address();
    // The streams in hand, polled by this task (a task each would cost more than the answer).
    let mut streams = FuturesUnordered::new();
    loop {
        let accepted = tokio::select! {
            accepted = connection.accept_bi() => accepted,
            Some(()) = streams.next(), if !streams.is_empty() => continue,
            () = stopping.cancelled() => {
                while streams.next().await.is_some() {}
                connection.close(DOQ_NO_ERROR.into(), b"");
                break;
            }
        };
        let (send, receive) = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                debug!(error = %e, %peer, "quic connection");
                break;
            }
        };
        let (shared, connection) = (&shared, &connection);
        streams.push(async move {
            if let Err(code) = answer_stream(send, receive, peer, shared).await {
                // RFC 9250 section 4.3: a protocol error closes the connection.
                connection.close(code.into(), b"");
            }
        });
    }
    while streams.next().await.is_some() {}
}

/// Reads the query of one stream and writes its answer; a protocol error is the code to close
/// the connection with.
async fn answer_stream(
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(), u32> {
    let read =
        tokio::time::timeout(shared.tcp_io_timeout, receive.read_to_end(MAX_MESSAGE + 2)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        // Too long, cut off or too slow: this query is refused, the connection goes on.
        _ => {
            let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
            return Ok(());
        }
    };
    // The message with its two-byte length, alone on the stream, its ID 0 (sections 4.2
    // and 4.2.1).
    let query = match bytes.split_first_chunk::<2>() {
        Some((length, query))
            if usize::from(u16::from_be_bytes(*length)) == query.len()
                && query.get(..2) == Some(&[0, 0][..]) =>
        {
            query
        }
        _ => return Err(DOQ_PROTOCOL_ERROR),
    };
    let client = Client {
        transport: Transport::Doq,
        address: peer.ip(),
        now: unix_now(),
    };
    let mut out = Vec::with_capacity(512);
    let catalog = shared.catalog.load();
    match shared.responder.respond(&catalog, query, client, &mut out) {
        Outcome::Reply => {
            let mut framed = Vec::with_capacity(2 + out.len());
            framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
            framed.extend_from_slice(&out);
            let written =
                tokio::time::timeout(shared.tcp_io_timeout, send.write_all(&framed)).await;
            if !matches!(written, Ok(Ok(()))) || send.finish().is_err() {
                let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
            }
            Ok(())
        }
        // A zone transfer (XoQ, RFC 9250 section 4.2): every message of the answer on this
        // stream, each with its length.
        Outcome::Transfer(request) => {
            let made = Transfer::make(shared, &catalog, request, query, client.now).await;
            let Ok(Some(transfer)) = made else {
                let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
                return Ok(());
            };
            for message in &transfer.answer.messages {
                let framed = [&(message.len() as u16).to_be_bytes()[..], message].concat();
                let written =
                    tokio::time::timeout(shared.tcp_io_timeout, send.write_all(&framed)).await;
                if !matches!(written, Ok(Ok(()))) {
                    let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
                    return Ok(());
                }
            }
            if send.finish().is_ok() {
                transfer.log(peer, true);
            }
            Ok(())
        }
        // A message that is not a query.
        Outcome::Drop => {
            let _ = send.reset(DOQ_REQUEST_CANCELLED.into());
            Ok(())
        }
    }
}
