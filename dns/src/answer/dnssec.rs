//! What a signed zone adds to an answer for a client that asked for DNSSEC (DO): the RRSIGs of
//! each RRset written, and the NSEC records that prove a name or type absent (RFC 4035 section
//! 3.1). Lookups only: signatures are made when the zone is (`crate::dnssec`).

use crate::{
    wire::{
        Rtype, bytes, rtype,
        write::{Full, Owner, Section, Writer},
    },
    zone::{NodeId, Zone},
};

/// Writes the signatures at `node` over its `covered` RRset, owned by `owner`.
pub(super) fn signatures(
    zone: &Zone,
    node: NodeId,
    covered: Rtype,
    section: Section,
    owner: Owner<'_>,
    w: &mut Writer<'_>,
) -> Result<(), Full> {
    let Some(sigs) = zone.rrset(node, rtype::RRSIG) else {
        return Ok(());
    };
    for sig in sigs.rdatas() {
        if bytes::u16_at(sig, 0) == Some(covered.0) {
            w.record(section, owner, rtype::RRSIG, sigs.ttl_of(sig), sig)?;
        }
    }
    Ok(())
}

/// Writes the NSEC record of `node` and its signatures in the authority section.
pub(super) fn nsec(zone: &Zone, node: NodeId, w: &mut Writer<'_>) -> Result<(), Full> {
    let Some(set) = zone.rrset(node, rtype::NSEC) else {
        return Ok(());
    };
    let owner = Owner::Wire(zone.name(node));
    w.rrset(Section::Authority, owner, &set)?;
    signatures(zone, node, rtype::NSEC, Section::Authority, owner, w)
}

/// The node whose NSEC covers a name that is not in the zone: the last node with an NSEC before
/// the place `at` where the name would be (only glue, below delegations, has none).
pub(super) fn covering(zone: &Zone, at: usize) -> Option<NodeId> {
    // A zone signed with NSEC3 (it came signed) has no NSEC chain: no walk through it.
    zone.apex().and_then(|apex| zone.rrset(apex, rtype::NSEC))?;
    (0..at)
        .rev()
        .find(|&node| zone.rrset(node, rtype::NSEC).is_some())
}

/// The NSEC covering `key` (not in the zone), unless it is `already` written.
pub(super) fn cover(
    zone: &Zone,
    key: &[u8],
    already: Option<NodeId>,
    w: &mut Writer<'_>,
) -> Result<Option<NodeId>, Full> {
    let at = match zone.find(key) {
        Ok(node) => return Ok(Some(node)),
        Err(at) => at,
    };
    let node = covering(zone, at);
    if let Some(node) = node
        && Some(node) != already
    {
        nsec(zone, node, w)?;
    }
    Ok(node)
}

/// Whether the zone answers DNSSEC for this client: it is signed and the client set DO.
pub(super) fn wanted(zone: &Zone, dnssec_ok: bool) -> bool {
    dnssec_ok && zone.is_signed()
}
