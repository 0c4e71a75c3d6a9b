use std::{io, path::PathBuf};

/// Errors of the web edge.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum Error {
    #[error("certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A listen address cannot be bound.
    #[error(transparent)]
    Bind(#[from] foobar_net::BindError),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("static files root {}: {reason}", path.display())]
    Root { path: PathBuf, reason: io::Error },
    #[error("[edge] {key}: {reason}")]
    Config { key: String, reason: String },
    #[error("TLS-ALPN-01 certificate for {name}: {reason}")]
    Challenge {
        name: String,
        reason: crate::challenge::ChallengeCertificateError,
    },
}
