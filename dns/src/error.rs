use std::{io, net::SocketAddr, path::PathBuf};

/// Why a zone could not be loaded. Every variant names the file, and the line where there is one,
/// so that `Display` reads like `zones/foobar.com.zone:12: unknown record type "AAA"`.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("{}: {source}", file.display())]
    Read { file: PathBuf, source: io::Error },
    #[error("{}:{line}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: u32,
        reason: String,
    },
    #[error("{}: {reason}", file.display())]
    Zone { file: PathBuf, reason: String },
}

/// Why a record added at run time (an ACME challenge) cannot be served, or not yet seen.
#[derive(Debug, thiserror::Error)]
pub enum AddedError {
    #[error("{name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("{0} is in no zone served here")]
    NoZone(String),
    #[error("the zone of {0} has no NS records")]
    NoNameservers(String),
    #[error("nameserver {0} has no address")]
    NoAddress(String),
    #[error("not a zone file served here")]
    NotAFile,
    #[error("the zone with the added records: {0}")]
    Zone(String),
}

/// Errors of the DNS service as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("zones folder {}: {source}", path.display())]
    ZonesFolder { path: PathBuf, source: io::Error },
    #[error("two zone files define {origin}: {} and {}", first.display(), second.display())]
    DuplicateZone {
        origin: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("{0}")]
    Randomness(String),
    /// A setting of `[dns]` that cannot be used (a TSIG key, a rule naming an unknown key).
    #[error("[dns] {0}")]
    Config(String),
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}
