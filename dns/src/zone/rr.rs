//! Records outside the arena: one record as owned bytes, as transfers, journals and snapshots
//! carry them, and SOA serial arithmetic.

use super::{NodeId, Zone};
use crate::wire::name;
use crate::wire::{Rtype, rtype};

/// One record: owner and RDATA in wire form, names uncompressed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rr {
    pub owner: Vec<u8>,
    pub rtype: Rtype,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Rr {
    pub(crate) fn bytes(&self) -> usize {
        self.owner.len() + 10 + self.rdata.len()
    }

    /// What makes two records the same record (owner names compare in any case).
    pub(crate) fn identity(&self) -> (Vec<u8>, Rtype, &[u8], u32) {
        (name::key_of(&self.owner), self.rtype, &self.rdata, self.ttl)
    }
}

/// The serial of an SOA RDATA (0 if it is too short).
pub fn soa_serial(rdata: &[u8]) -> u32 {
    super::soa_serial_minimum(rdata).map_or(0, |(serial, _)| serial)
}

/// The zone's SOA record.
pub fn soa(zone: &Zone) -> Option<Rr> {
    let apex = zone.apex()?;
    let set = zone.rrset(apex, rtype::SOA)?;
    let rdata = set.rdatas().next()?;
    Some(Rr {
        owner: zone.origin().to_vec(),
        rtype: rtype::SOA,
        ttl: set.ttl,
        rdata: rdata.to_vec(),
    })
}

/// Whether serial `a` is newer than `b` (RFC 1982 serial arithmetic).
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// The records of one node, as owned records.
pub fn node_records(zone: &Zone, node: NodeId) -> impl Iterator<Item = Rr> + '_ {
    let owner = zone.name(node);
    zone.rrsets(node).flat_map(move |set| {
        set.rdatas().map(move |rdata| Rr {
            owner: owner.to_vec(),
            rtype: set.rtype,
            ttl: set.ttl_of(rdata),
            rdata: rdata.to_vec(),
        })
    })
}
