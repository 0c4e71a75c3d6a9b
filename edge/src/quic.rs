//! The QUIC endpoint HTTP/3 is served on: TLS, the keys an upgrade's generations share (Retry
//! tokens, stateless resets), connection IDs that carry the generation, transport limits.

use std::sync::Arc;

use foobar_net::quic::{self, Frames, QuicRouting};

use crate::{Error, Limits};

/// The endpoint on `socket`, routing packets between the generations of an upgrade.
pub(crate) fn endpoint(
    tls: rustls::ServerConfig,
    socket: std::net::UdpSocket,
    limits: &Limits,
    routing: &QuicRouting,
) -> Result<quinn::Endpoint, Error> {
    let server = server_config(tls, limits, routing)?;
    // The web edge's socket is the first: its frames are unnamed on the link.
    quic::endpoint(server, socket, routing, Frames::Unnamed).map_err(|e| Error::Quic(e.to_string()))
}

/// QUIC's server settings: TLS, the address-validation token key, and transport limits.
pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    limits: &Limits,
    routing: &QuicRouting,
) -> Result<quinn::ServerConfig, Error> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::Quic(e.to_string()))?;
    let mut server = quic::server_config(Arc::new(crypto), routing);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams.into())
        // HTTP/3 needs three unidirectional streams per side (control, QPACK encoder, decoder).
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok());
    server.transport_config(Arc::new(transport));
    Ok(server)
}
