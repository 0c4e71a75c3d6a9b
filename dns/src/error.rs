use std::{io, net::SocketAddr, path::PathBuf};

/// Why a zone could not be loaded. Every variant names the file, and the line where there is one,
/// so that `Display` reads like `zones/foobar.com.zone:12: unknown record type "AAA"`.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum ZoneError {
    #[error("{}: {source}", file.display())]
    /// The file could not be read.
    Read { file: PathBuf, source: io::Error },
    #[error("{}:{line}: {reason}", file.display())]
    /// A record or directive is wrong, at this line.
    Syntax {
        file: PathBuf,
        line: u32,
        reason: String,
    },
    #[error("{}: {reason}", file.display())]
    /// The zone as a whole is wrong (no SOA, a CNAME beside other data...).
    Zone { file: PathBuf, reason: String },
}

/// Why a record added at run time (an ACME challenge) cannot be served, or not yet seen.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum AddedError {
    #[error("{name:?}: {reason}")]
    /// The name is not a domain name.
    Name { name: String, reason: String },
    #[error("{0} is in no zone served here")]
    /// The name is in no zone served here.
    NoZone(String),
    #[error("the zone of {0} has no NS records")]
    /// Its zone has no NS records to check the challenge at.
    NoNameservers(String),
    #[error("nameserver {0} has no address")]
    /// A nameserver of the zone has no address.
    NoAddress(String),
    #[error("not a zone file served here")]
    /// The zone is not from a file served here (a secondary one, say).
    NotAFile,
    #[error("the zone with the added records: {0}")]
    /// The zone with the records added does not check out.
    Zone(String),
}

/// Errors of the DNS service as a whole.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum Error {
    #[error(transparent)]
    /// A zone file does not load.
    Zone(#[from] ZoneError),
    #[error("zones folder {}: {source}", path.display())]
    /// The zones folder cannot be read.
    ZonesFolder { path: PathBuf, source: io::Error },
    #[error("two zone files define {origin}: {} and {}", first.display(), second.display())]
    /// Two files hold the same zone.
    DuplicateZone {
        origin: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot bind {proto} {addr}: {source}")]
    /// A listen address cannot be bound.
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("{0}")]
    /// The system gave no random bytes (for the cookie secret).
    Randomness(String),
    /// A setting of `[dns]` that cannot be used (a TSIG key, a rule naming an unknown key).
    #[error("[dns] {0}")]
    Config(String),
    #[error("cannot watch {}: {source}", path.display())]
    /// The zones folder cannot be watched.
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}
