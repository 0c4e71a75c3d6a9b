use std::{io, net::SocketAddr, path::PathBuf};

/// Errors of the web edge.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum Error {
    #[error("certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    // The I/O error is part of the message, not a source: printed as a chain (`{:#}`), it
    // would say the same twice.
    #[error("cannot bind {proto} {addr}: {reason}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        reason: io::Error,
    },
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("static files root {}: {reason}", path.display())]
    Root { path: PathBuf, reason: io::Error },
    #[error("[edge] {key}: {reason}")]
    Config { key: String, reason: String },
    #[error("TLS-ALPN-01 certificate for {name}: {reason}")]
    Challenge { name: String, reason: String },
}
