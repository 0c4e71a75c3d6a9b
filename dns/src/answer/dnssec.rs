//! What a signed zone adds to an answer for a client that asked for DNSSEC (DO): the RRSIGs of
//! each RRset written, and the NSEC records (RFC 4035 section 3.1) or NSEC3 records (RFC 5155
//! section 7.2) that prove a name or type absent. Lookups only: signatures are made when the
//! zone is (`crate::dnssec`).

use crate::{
    dnssec::nsec3,
    wire::{
        Rtype, bytes, name, rtype,
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

/// Writes what proves the types `node` has (its NSEC, or the NSEC3 of its name) and its
/// signatures in the authority section.
pub(super) fn nsec(zone: &Zone, node: NodeId, w: &mut Writer<'_>) -> Result<(), Full> {
    if zone.has_nsec3() {
        return nsec3(zone, zone.name(node), Nsec3Of::Matching, &mut Vec::new(), w);
    }
    written(zone, node, rtype::NSEC, w)
}

/// Writes the `rtype` (NSEC or NSEC3) RRset of `node` and its signatures in authority.
fn written(zone: &Zone, node: NodeId, rtype: Rtype, w: &mut Writer<'_>) -> Result<(), Full> {
    let Some(set) = zone.rrset(node, rtype) else {
        return Ok(());
    };
    let owner = Owner::Wire(zone.name(node));
    w.rrset(Section::Authority, owner, &set)?;
    signatures(zone, node, rtype, Section::Authority, owner, w)
}

/// Which NSEC3 of a name a proof wants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nsec3Of {
    /// The one whose owner is the name's hash: the name exists, with these types.
    Matching,
    /// The one whose span holds the name's hash: the name does not exist.
    Covering,
}

/// Writes the NSEC3 `of` `name`, unless `done` has it already.
fn nsec3(
    zone: &Zone,
    name: &[u8],
    of: Nsec3Of,
    done: &mut Vec<NodeId>,
    w: &mut Writer<'_>,
) -> Result<(), Full> {
    let node = match (zone.nsec3(&nsec3::hash(name)), of) {
        (Some(Ok(node)), Nsec3Of::Matching) | (Some(Err(node)), Nsec3Of::Covering) => node,
        _ => return Ok(()),
    };
    if done.contains(&node) {
        return Ok(());
    }
    done.push(node);
    written(zone, node, rtype::NSEC3, w)
}

/// `name` (wire) without its first `drop` labels.
fn suffix(name: &[u8], drop: usize) -> &[u8] {
    name::label_starts(name)
        .nth(drop)
        .map_or(&name[name.len() - 1..], |at| &name[at..])
}

/// The closest encloser of `name` (absent from the zone) and the next closer name: the longest
/// suffix that exists (a node or an empty non-terminal), and the one a label longer.
fn closest_encloser<'n>(zone: &Zone, name: &'n [u8]) -> (&'n [u8], &'n [u8]) {
    let labels = name::label_starts(name).count();
    let origin_labels = name::label_starts(zone.origin()).count();
    for drop in 1..=labels.saturating_sub(origin_labels) {
        let candidate = suffix(name, drop);
        if zone.exists(&name::key_of(candidate)) {
            return (candidate, suffix(name, drop - 1));
        }
    }
    (
        suffix(name, labels.saturating_sub(origin_labels)),
        suffix(name, labels.saturating_sub(origin_labels + 1)),
    )
}

/// The proof that `name` (wire; its key would be at `at`) is an empty non-terminal: no type
/// there. The NSEC before it, or the NSEC3 of its own.
pub(super) fn empty_non_terminal(
    zone: &Zone,
    at: usize,
    name: &[u8],
    w: &mut Writer<'_>,
) -> Result<(), Full> {
    if zone.has_nsec3() {
        return nsec3(zone, name, Nsec3Of::Matching, &mut Vec::new(), w);
    }
    match covering(zone, at) {
        Some(node) => nsec(zone, node, w),
        None => Ok(()),
    }
}

/// The proof that `name` (wire, key `key`) does not exist, nor the wildcard `star` (a key)
/// that could have made it: two covering NSECs (RFC 4035 section 3.1.3.2), or the closest
/// encloser proof and the NSEC3 covering the wildcard at the closest encloser (RFC 5155
/// section 7.2.2).
pub(super) fn nxdomain(
    zone: &Zone,
    (key, name): (&[u8], &[u8]),
    star: &[u8],
    w: &mut Writer<'_>,
) -> Result<(), Full> {
    if zone.has_nsec3() {
        let (encloser, next_closer) = closest_encloser(zone, name);
        let mut done = Vec::with_capacity(3);
        nsec3(zone, encloser, Nsec3Of::Matching, &mut done, w)?;
        nsec3(zone, next_closer, Nsec3Of::Covering, &mut done, w)?;
        let mut wildcard = b"\x01*".to_vec();
        wildcard.extend_from_slice(encloser);
        return nsec3(zone, &wildcard, Nsec3Of::Covering, &mut done, w);
    }
    let covered = cover(zone, key, None, w)?;
    cover(zone, star, covered, w)?;
    Ok(())
}

/// The proof that `name` (wire; its key would be at `at`), answered from the wildcard node
/// `wildcard`, does not exist itself: the NSEC covering it (RFC 4035 section 3.1.3.3), or the
/// NSEC3 covering the next closer name (RFC 5155 section 7.2.6) and, for NODATA, the NSEC3
/// matching the closest encloser (section 7.2.5).
pub(super) fn expansion(
    zone: &Zone,
    (at, name): (usize, &[u8]),
    wildcard: NodeId,
    nodata: bool,
    w: &mut Writer<'_>,
) -> Result<(), Full> {
    if zone.has_nsec3() {
        let encloser = suffix(zone.name(wildcard), 1);
        let labels = name::label_starts(name).count();
        let next_closer = suffix(
            name,
            labels - (name::label_starts(encloser).count() + 1).min(labels),
        );
        let mut done = Vec::with_capacity(2);
        if nodata {
            // The wildcard's own NSEC3 is written already.
            done.extend(
                zone.nsec3(&nsec3::hash(zone.name(wildcard)))
                    .and_then(Result::ok),
            );
            nsec3(zone, encloser, Nsec3Of::Matching, &mut done, w)?;
        }
        return nsec3(zone, next_closer, Nsec3Of::Covering, &mut done, w);
    }
    match covering(zone, at) {
        Some(node) => nsec(zone, node, w),
        None => Ok(()),
    }
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
