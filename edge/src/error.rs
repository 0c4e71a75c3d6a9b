use std::{io, net::SocketAddr, path::PathBuf};

/// Errors of the web edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("static files root {}: {source}", path.display())]
    Root { path: PathBuf, source: io::Error },
    #[error("[edge] {key}: {reason}")]
    Config { key: String, reason: String },
}
