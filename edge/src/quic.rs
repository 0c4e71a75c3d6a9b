//! The QUIC endpoint HTTP/3 is served on: TLS, the keys an upgrade's generations share (Retry
//! tokens, stateless resets), connection IDs that carry the generation, transport limits.

use std::sync::Arc;

use crate::{
    Error, Limits,
    quic_routing::{self, QuicRouting},
};

/// The endpoint on `socket`, routing packets between the generations of an upgrade.
pub(crate) fn endpoint(
    tls: rustls::ServerConfig,
    socket: std::net::UdpSocket,
    limits: &Limits,
    routing: &QuicRouting,
) -> Result<quinn::Endpoint, Error> {
    let quic_error = |e: &dyn std::fmt::Display| Error::Quic(e.to_string());
    let server = server_config(tls, limits, routing)?;
    let reset_key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &derive(b"reset", &routing.generation().key),
    );
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(reset_key));
    let generation = routing.generation().clone();
    endpoint.cid_generator(move || Box::new(quic_routing::Cids::new(generation.clone())));
    let runtime = quinn::default_runtime()
        .ok_or_else(|| Error::Quic("no async runtime for QUIC".to_string()))?;
    let socket = runtime
        .wrap_udp_socket(socket)
        .map_err(|e| quic_error(&e))?;
    let socket = Arc::new(quic_routing::RoutingSocket::new(socket, routing.clone()));
    quinn::Endpoint::new_with_abstract_socket(endpoint, Some(server), socket, runtime)
        .map_err(|e| quic_error(&e))
}

/// A key for `purpose` from the key the generations of an upgrade share: a Retry token or a
/// stateless reset from one process is good in the next.
fn derive(purpose: &[u8], key: &[u8; 16]) -> Vec<u8> {
    [purpose, &key[..]].concat()
}

/// QUIC's server settings: TLS, the address-validation token key, and transport limits.
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    limits: &Limits,
    routing: &QuicRouting,
) -> Result<quinn::ServerConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::Quic(e.to_string()))?;
    let token_key = ring::hkdf::Prk::new_less_safe(
        ring::hkdf::HKDF_SHA256,
        &derive(b"token", &routing.generation().key),
    );
    let mut server = quinn::ServerConfig::new(Arc::new(crypto), Arc::new(token_key));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams.into())
        // HTTP/3 needs three unidirectional streams per side (control, QPACK encoder, decoder).
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok());
    server.transport_config(Arc::new(transport));
    Ok(server)
}
