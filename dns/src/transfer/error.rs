//! Why an exchange with another server failed: a transfer in, a SOA query, a query for the
//! records a challenge set. Each names its peer where one failure among several is told.

use std::net::SocketAddr;

use super::tsig::TsigError;
use crate::{
    wire::{Rcode, Rtype},
    zone::snapshot::SnapshotError,
};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no TCP connection")]
    NoConnection,
    #[error("TCP: {0}")]
    Tcp(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("the transfer stopped: {0}")]
    Stopped(std::io::Error),
    #[error("the transfer took too long")]
    TookTooLong,
    #[error("no answer from {0}")]
    NoAnswer(SocketAddr),
    #[error("no answer over TCP")]
    NoTcpAnswer,
    #[error("an answer to another query")]
    OtherQuery,
    #[error("{0}")]
    Tsig(#[from] TsigError),
    #[error("{server} answered with RCODE {rcode}")]
    Answered { server: SocketAddr, rcode: Rcode },
    #[error("refused with RCODE {0}")]
    Refused(Rcode),
    #[error("a short answer")]
    Short,
    #[error("a malformed answer")]
    Malformed,
    #[error("a malformed record")]
    MalformedRecord,
    #[error("a malformed SOA")]
    MalformedSoa,
    #[error("no SOA in the answer (is the zone served there?)")]
    NoSoa,
    #[error("records after the end of the transfer")]
    AfterTheEnd,
    #[error("a record of another class")]
    OtherClass,
    #[error("a record outside the zone: {0}")]
    OutsideZone(String),
    #[error("malformed {rtype} RDATA at {owner}")]
    MalformedRdata { rtype: Rtype, owner: String },
    #[error("the answer does not start with the SOA")]
    NoSoaFirst,
    #[error("the transfer ended early")]
    EndedEarly,
    #[error("the primary sent its SOA alone, no new version")]
    SoaAlone,
    #[error("an incremental answer for a zone we do not have")]
    IncrementalWithoutZone,
    #[error("the differences do not start from our version")]
    NotFromOurVersion,
    #[error("a difference without its new SOA")]
    NoNewSoa,
    #[error("a difference that does not apply to our version")]
    DoesNotApply,
    #[error("{0}")]
    Zone(#[from] SnapshotError),
    /// Every primary failed, each for its own reason.
    #[error("{}", .0.iter().map(|(peer, e)| format!("{peer}: {e}")).collect::<Vec<_>>().join("; "))]
    Primaries(Vec<(SocketAddr, TransferError)>),
}

/// A new version that came by transfer, and how.
#[derive(Debug)]
pub struct Transferred {
    /// The new version.
    pub zone: crate::zone::Zone,
    /// `AXFR`, `IXFR`, or `IXFR-as-AXFR` (a full copy in answer to an IXFR).
    pub kind: &'static str,
    /// The records sent.
    pub records: usize,
}
