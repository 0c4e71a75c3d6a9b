use std::{io, path::PathBuf};

/// Why a zone could not be loaded. Every variant names the file, and the line where there is one,
/// so that `Display` reads like `zones/foobar.com.zone:12: unknown record type "AAA"`.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum ZoneError {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Read { file: PathBuf, source: io::Error },
    /// A record or directive is wrong, at this line.
    #[error("{}:{line}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: u32,
        reason: String,
    },
    /// The zone as a whole is wrong (no SOA, a CNAME beside other data...).
    #[error("{}: {reason}", file.display())]
    Zone { file: PathBuf, reason: String },
}

/// Why a record added at run time (an ACME challenge) cannot be served, or not yet seen.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum AddedError {
    /// The name is not a domain name.
    #[error("{name:?}: {reason}")]
    Name { name: String, reason: String },
    /// The name is in no zone served here.
    #[error("{0} is in no zone served here")]
    NoZone(String),
    /// Its zone has no NS records to check the challenge at.
    #[error("the zone of {0} has no NS records")]
    NoNameservers(String),
    /// A nameserver of the zone has no address.
    #[error("nameserver {0} has no address")]
    NoAddress(String),
    /// The zone is not from a file served here (a secondary one, say).
    #[error("not a zone file served here")]
    NotAFile,
    /// The zone with the records added does not check out.
    #[error("the zone with the added records: {0}")]
    Zone(String),
}

/// What reloading one zone (`foobar ctl zone reload NAME`) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneReloaded {
    /// A secondary zone: its primaries are asked now.
    Refreshing(String),
    /// A zone file read again, and the serial it serves now.
    Loaded {
        /// The zone, as asked for.
        zone: String,
        /// The serial served now, if the zone is served.
        serial: Option<u32>,
    },
}

impl std::fmt::Display for ZoneReloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoneReloaded::Refreshing(zone) => {
                write!(
                    f,
                    "{zone}: secondary zone, refresh from its primaries started"
                )
            }
            ZoneReloaded::Loaded {
                zone,
                serial: Some(serial),
            } => write!(f, "{zone}: loaded, serial {serial}"),
            ZoneReloaded::Loaded { zone, serial: None } => write!(f, "{zone}: loaded"),
        }
    }
}

/// Why one zone could not be reloaded.
#[derive(Debug, thiserror::Error)]
pub enum ZoneReloadError {
    /// The name given is not a domain name.
    #[error("{name:?}: {error}")]
    Name {
        /// The name as given.
        name: String,
        /// Why it does not read.
        error: crate::wire::name::NameError,
    },
    /// No zone of that name is served.
    #[error("{0}: no such zone")]
    NoSuchZone(String),
    /// The file did not load; the previous version serves on.
    #[error("{0}: the file did not load (the previous version serves; the log says why)")]
    Failed(String),
}

/// Errors of the DNS service as a whole.
#[derive(Debug, thiserror::Error)]
// The fields are named for what they hold; each variant's message says how they read.
#[allow(missing_docs)]
pub enum Error {
    /// A zone file does not load.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The zones folder cannot be read.
    #[error("zones folder {}: {source}", path.display())]
    ZonesFolder { path: PathBuf, source: io::Error },
    /// Two files hold the same zone.
    #[error("two zone files define {origin}: {} and {}", first.display(), second.display())]
    DuplicateZone {
        origin: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A listen address cannot be bound.
    #[error(transparent)]
    Bind(#[from] foobar_net::BindError),
    /// The system gave no random bytes for what is named.
    #[error("no system randomness for {0}")]
    Randomness(&'static str),
    /// A setting of `[dns]` that cannot be used (a TSIG key, a rule naming an unknown key).
    #[error("[dns] {0}")]
    Config(String),
    /// A signed zone's keys cannot be read or kept.
    #[error(transparent)]
    DnssecKey(#[from] crate::dnssec::KeyError),
    /// The zones folder cannot be watched.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}
