//! Signing a zone: DNSKEY, CDS and CDNSKEY at the apex, an NSEC chain over the authoritative
//! names (or an NSEC3 chain over their hashes, with NSEC3PARAM), and an RRSIG over every
//! authoritative RRset (RFC 4034, RFC 4035 section 2, RFC 5155 section 7.1).
//!
//! Written here rather than taken from hickory-proto's or `domain`'s signers: the zone is
//! already wire records in canonical order (the arena's key order is RFC 4034's), so the
//! signer is the canonical form of an RRset, the NSEC chain along the nodes in order, and a
//! `ring` signature each; converting every record to another library's types and back would
//! cost more code and memory than it saves.

use std::{borrow::Cow, hash::BuildHasher};

use super::{key::Key, nsec3};
use crate::{
    wire::{Rtype, name, rtype, types::push_type_bitmap},
    zone::{NSEC3_HASH_LEN, NodeId, Records, Zone, catalog::Signed, snapshot::SnapshotError},
};

/// How long signatures are good for, and when they are made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Seconds from signing to expiration (BIND's default policy: 14 days).
    pub lifetime: u32,
    /// Signatures are made again this long before they expire (BIND's default: 5 days).
    pub refresh: u32,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            lifetime: 14 * 86_400,
            refresh: 5 * 86_400,
        }
    }
}

impl Validity {
    /// How far expirations are spread, so that a zone's signatures do not all expire in the
    /// same second (BIND's `signatures-jitter`, 12 hours by default): an eighth of the time
    /// between signing and refresh, at most 12 hours.
    pub fn jitter(&self) -> u32 {
        (self.lifetime.saturating_sub(self.refresh) / 8).min(12 * 3600)
    }

    /// The expiration of a signature made at `now` over `owner`/`rtype`: the lifetime less a
    /// part of the jitter that depends on the RRset alone.
    fn expiration(&self, now: u64, owner: &[u8], rtype: Rtype) -> u64 {
        let jitter = u64::from(self.jitter());
        let spread = if jitter == 0 {
            0
        } else {
            let hash = foldhash::fast::FixedState::with_seed(0x0d15_5ec0)
                .hash_one((name::lowercase(owner), rtype.0));
            hash % jitter
        };
        now + u64::from(self.lifetime) - spread
    }
}

/// How the zone proves names and types absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denial {
    /// An NSEC chain over the zone's names (RFC 4034), the default, as Knot's and BIND's.
    #[default]
    Nsec,
    /// An NSEC3 chain over their hashes (RFC 5155), with RFC 9276's parameters.
    Nsec3,
}

/// Inception is set this far in the past, for validators whose clocks run behind.
pub(crate) const INCEPTION_SKEW: u64 = 3600;

/// Why a zone could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The zone has no SOA to take TTLs from.
    #[error("the zone has no SOA")]
    NoSoa,
    /// A key failed to sign.
    #[error(transparent)]
    Key(#[from] super::key::KeyError),
    /// The signed zone does not build.
    #[error("the signed zone: {0}")]
    Build(#[from] SnapshotError),
}

/// The types that a signer replaces: what the zone file holds of them is left out.
fn made_here(rtype: Rtype) -> bool {
    matches!(
        rtype,
        rtype::RRSIG
            | rtype::NSEC
            | rtype::NSEC3
            | rtype::NSEC3PARAM
            | rtype::DNSKEY
            | rtype::CDS
            | rtype::CDNSKEY
    )
}

/// What a node is to the signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Authoritative data: every RRset signed.
    Authoritative,
    /// A delegation point: only DS and NSEC are signed (RFC 4035 section 2.2).
    Delegation,
    /// Below a delegation (glue): neither signed nor in the NSEC chain.
    Occluded,
}

fn place(zone: &Zone, node: NodeId) -> Place {
    match zone.cut_above(zone.key(node)) {
        None => Place::Authoritative,
        Some(cut) if cut == node => Place::Delegation,
        Some(_) => Place::Occluded,
    }
}

/// Signs `zone` with `keys` at `now` (seconds since the epoch), each key as its timeline has it
/// at `now`: the published ones are the DNSKEY set, which the published KSKs or CSKs sign; the
/// active ZSKs (else CSKs) sign the rest; CDS and CDNSKEY name the active KSKs or CSKs. DNSSEC
/// records in the zone as loaded are replaced. Where `previous` (the version
/// served before, signed) has the same RRset with a signature by the same key that is not yet
/// due for refresh, that signature is kept: an edit re-signs only what it changed and the NSEC
/// records next to it, and the journal carries only those.
pub fn sign_zone(
    zone: &Zone,
    keys: &[Key],
    (validity, denial): (Validity, Denial),
    now: u64,
    previous: Option<&Zone>,
) -> Result<Signed, SignError> {
    let soa = crate::zone::soa(zone).ok_or(SignError::NoSoa)?;
    let origin = zone.origin();
    let nsec_ttl = zone.negative_ttl();
    let inception = now.saturating_sub(INCEPTION_SKEW);
    let latest = now + u64::from(validity.lifetime);

    // The nodes of the NSEC chain, in canonical order; or those the NSEC3 chain hashes.
    let chain: Vec<NodeId> = zone
        .nodes()
        .filter(|&node| {
            place(zone, node) != Place::Occluded
                && zone.rrsets(node).any(|set| !made_here(set.rtype))
        })
        .collect();
    // For NSEC3: each hashed name with its types (empty non-terminals have none).
    let mut hashed: Vec<([u8; NSEC3_HASH_LEN], Vec<u16>)> = Vec::new();

    // Records go straight into the compact form a zone is built from: a signed zone has about
    // twice the records of its file, and owned records for each would be the peak of memory.
    let mut out = Records::default();
    let mut signatures = 0usize;
    let mut earliest = latest;
    // Signatures that expire within the refresh and the jitter are made again together: a
    // refresh is one pass over the zone, not one per spread-out expiration.
    let refresh_before = now + u64::from(validity.refresh) + u64::from(validity.jitter());
    // The DNSKEY set (and CDS, CDNSKEY) is signed by the keys the parent may point at, the rest
    // by the zone-signing keys: the ZSKs where there are, else the CSKs.
    let published: Vec<&Key> = keys.iter().filter(|key| key.times.published(now)).collect();
    let sep: Vec<&Key> = keys
        .iter()
        .filter(|key| key.is_sep() && key.times.signs_keys(now))
        .collect();
    let entry_points = super::key::entry_points(keys, now);
    let zone_signing = super::key::zone_signing(keys, now);
    let mut sign =
        |owner: &[u8], rtype: Rtype, ttl: u32, rdatas: &[Cow<'_, [u8]>], out: &mut Records| {
            let signers = if matches!(rtype, rtype::DNSKEY | rtype::CDS | rtype::CDNSKEY) {
                &sep
            } else {
                &zone_signing
            };
            for &key in signers {
                if let Some(kept) = previous
                    .and_then(|previous| {
                        kept_signature(previous, owner, rtype, ttl, rdatas, key.tag)
                    })
                    .filter(|sig| signature_expiration(sig, now) > refresh_before)
                {
                    earliest = earliest.min(signature_expiration(&kept, now));
                    out.push(owner, rtype::RRSIG, ttl, &kept);
                    continue;
                }
                let expiration = validity.expiration(now, owner, rtype);
                earliest = earliest.min(expiration);
                let rdata = rrsig(
                    key, origin, owner, rtype, ttl, rdatas, inception, expiration,
                )?;
                out.push(owner, rtype::RRSIG, ttl, &rdata);
                signatures += 1;
            }
            Ok::<(), SignError>(())
        };

    for node in zone.nodes() {
        let owner = zone.name(node);
        let at = place(zone, node);
        let mut types: Vec<u16> = Vec::new();
        for set in zone.rrsets(node).filter(|set| !made_here(set.rtype)) {
            types.push(set.rtype.0);
            let rdatas: Vec<Cow<'_, [u8]>> = set.rdatas().map(Cow::Borrowed).collect();
            for rdata in &rdatas {
                out.push(owner, set.rtype, set.ttl, rdata);
            }
            let signed = match at {
                Place::Authoritative => true,
                Place::Delegation => set.rtype == rtype::DS,
                Place::Occluded => false,
            };
            if signed {
                sign(owner, set.rtype, set.ttl, &rdatas, &mut out)?;
            }
        }
        if node == zone.apex().unwrap_or(usize::MAX) {
            // The keys, and the same for the parent to take (RFC 7344, RFC 8078).
            let dnskeys: Vec<Cow<'_, [u8]>> = published
                .iter()
                .map(|key| Cow::Borrowed(&key.dnskey[..]))
                .collect();
            let cdnskeys: Vec<Cow<'_, [u8]>> = entry_points
                .iter()
                .map(|key| Cow::Borrowed(&key.dnskey[..]))
                .collect();
            let cds: Vec<Cow<'_, [u8]>> = entry_points
                .iter()
                .map(|key| Cow::Owned(key.ds(origin)))
                .collect();
            let nsec3param = vec![Cow::Borrowed(&nsec3::PARAM[..])];
            for (rtype, rdatas) in [
                (rtype::DNSKEY, &dnskeys),
                (rtype::CDNSKEY, &cdnskeys),
                (rtype::CDS, &cds),
            ]
            .into_iter()
            .chain((denial == Denial::Nsec3).then_some((rtype::NSEC3PARAM, &nsec3param)))
            {
                types.push(rtype.0);
                for rdata in rdatas {
                    out.push(owner, rtype, soa.ttl, rdata);
                }
                sign(owner, rtype, soa.ttl, rdatas, &mut out)?;
            }
        }
        if at == Place::Occluded {
            continue;
        }
        let Ok(position) = chain.binary_search(&node) else {
            continue;
        };
        if denial == Denial::Nsec3 {
            if at == Place::Authoritative || zone.rrset(node, rtype::DS).is_some() {
                types.push(rtype::RRSIG.0);
            }
            hashed.push((nsec3::hash(owner), types));
            continue;
        }
        let next = chain[(position + 1) % chain.len()];
        types.push(rtype::RRSIG.0);
        types.push(rtype::NSEC.0);
        let mut nsec = zone.name(next).to_vec();
        push_type_bitmap(&mut types, &mut nsec);
        let rdatas = [Cow::Borrowed(&nsec[..])];
        sign(owner, rtype::NSEC, nsec_ttl, &rdatas, &mut out)?;
        out.push(owner, rtype::NSEC, nsec_ttl, &nsec);
    }
    if denial == Denial::Nsec3 {
        hashed.extend(
            empty_non_terminals(zone, &chain)
                .iter()
                .map(|name| (nsec3::hash(name), Vec::new())),
        );
        hashed.sort_unstable_by_key(|(hash, _)| *hash);
        hashed.dedup_by(|a, b| a.0 == b.0);
        for at in 0..hashed.len() {
            let next = hashed[(at + 1) % hashed.len()].0;
            let (hash, types) = &mut hashed[at];
            let owner = nsec3::owner(hash, origin);
            let rdata = nsec3::rdata(&next, types);
            let rdatas = [Cow::Borrowed(&rdata[..])];
            out.push(&owner, rtype::NSEC3, nsec_ttl, &rdata);
            sign(&owner, rtype::NSEC3, nsec_ttl, &rdatas, &mut out)?;
        }
    }
    let zone = crate::zone::snapshot::build_checked(origin, &out)?;
    Ok(Signed {
        zone,
        signatures,
        expires: earliest,
    })
}

/// The empty non-terminals above the names of `chain` (RFC 5155 section 7.1: each gets an NSEC3
/// of its own, without types), in wire form.
fn empty_non_terminals(zone: &Zone, chain: &[NodeId]) -> Vec<Vec<u8>> {
    let origin_len = zone.origin().len();
    let mut found: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for &node in chain {
        let mut owner = zone.name(node);
        while owner.len() > origin_len {
            let parent = &owner[1 + usize::from(owner[0])..];
            if parent.len() <= origin_len
                || zone.find(&name::key_of(parent)).is_ok()
                || !found.insert(name::lowercase(parent))
            {
                break;
            }
            owner = parent;
        }
    }
    found.into_iter().collect()
}

/// The signature by key `tag` over `owner`/`rtype` in `previous`, if that version had the same
/// RRset (same TTL, same records).
fn kept_signature(
    previous: &Zone,
    owner: &[u8],
    rtype: Rtype,
    ttl: u32,
    rdatas: &[Cow<'_, [u8]>],
    tag: u16,
) -> Option<Vec<u8>> {
    let node = previous.find(&name::key_of(owner)).ok()?;
    let set = previous.rrset(node, rtype)?;
    let mut before: Vec<&[u8]> = set.rdatas().collect();
    let mut now: Vec<&[u8]> = rdatas.iter().map(|r| &r[..]).collect();
    before.sort_unstable();
    now.sort_unstable();
    now.dedup();
    if set.ttl != ttl || before != now {
        return None;
    }
    previous
        .rrset(node, rtype::RRSIG)?
        .rdatas()
        .find(|sig| {
            sig.get(..2) == Some(&rtype.0.to_be_bytes()[..])
                && sig.get(16..18) == Some(&tag.to_be_bytes()[..])
                && sig.get(4..8) == Some(&ttl.to_be_bytes()[..])
        })
        .map(<[u8]>::to_vec)
}

/// When the first signature of `zone` expires (seconds since the epoch), if it has any.
pub fn earliest_expiration(zone: &Zone, now: u64) -> Option<u64> {
    zone.nodes()
        .filter_map(|node| zone.rrset(node, rtype::RRSIG))
        .flat_map(|set| set.rdatas())
        .map(|sig| signature_expiration(sig, now))
        .min()
}

/// A signature's expiration in seconds since the epoch: the 32-bit field read as the time
/// nearest `now` (RFC 4034 section 3.1.5).
fn signature_expiration(rrsig: &[u8], now: u64) -> u64 {
    let field = crate::wire::bytes::u32_at(rrsig, 8).unwrap_or(0);
    let delta = field.wrapping_sub(now as u32) as i32;
    now.saturating_add_signed(i64::from(delta))
}

/// The RRSIG RDATA of `key` over the RRset `owner`/`rtype` (RFC 4034 sections 3.1 and 3.1.8.1).
#[allow(clippy::too_many_arguments)]
pub fn rrsig(
    key: &Key,
    signer: &[u8],
    owner: &[u8],
    rtype: Rtype,
    ttl: u32,
    rdatas: &[Cow<'_, [u8]>],
    inception: u64,
    expiration: u64,
) -> Result<Vec<u8>, SignError> {
    let mut rdata = Vec::with_capacity(18 + signer.len() + 64);
    rdata.extend_from_slice(&rtype.0.to_be_bytes());
    rdata.push(key.algorithm.number());
    rdata.push(labels(owner));
    rdata.extend_from_slice(&ttl.to_be_bytes());
    // Serial-number arithmetic on 32 bits (RFC 4034 section 3.1.5).
    rdata.extend_from_slice(&(expiration as u32).to_be_bytes());
    rdata.extend_from_slice(&(inception as u32).to_be_bytes());
    rdata.extend_from_slice(&key.tag.to_be_bytes());
    rdata.extend_from_slice(&name::lowercase(signer));
    let data = signed_data(&rdata, owner, rtype, ttl, rdatas);
    let signature = key.sign(&data)?;
    rdata.extend_from_slice(&signature);
    Ok(rdata)
}

/// What an RRSIG signs: its own RDATA before the signature, then the RRset in canonical form
/// and order (RFC 4034 section 3.1.8.1), duplicates removed.
pub fn signed_data(
    rrsig_head: &[u8],
    owner: &[u8],
    rtype: Rtype,
    ttl: u32,
    rdatas: &[Cow<'_, [u8]>],
) -> Vec<u8> {
    let owner = name::lowercase(owner);
    let mut canonical: Vec<Cow<'_, [u8]>> = rdatas
        .iter()
        .map(|rdata| canonical_rdata(rtype, rdata))
        .collect();
    canonical.sort_unstable();
    canonical.dedup();
    let mut data = Vec::with_capacity(
        rrsig_head.len()
            + canonical
                .iter()
                .map(|r| owner.len() + 10 + r.len())
                .sum::<usize>(),
    );
    data.extend_from_slice(rrsig_head);
    for rdata in canonical {
        data.extend_from_slice(&owner);
        data.extend_from_slice(&rtype.0.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&ttl.to_be_bytes());
        data.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        data.extend_from_slice(&rdata);
    }
    data
}

/// The number of labels of `owner` an RRSIG states: the root and a leading `*` not counted.
pub fn labels(owner: &[u8]) -> u8 {
    let count = name::label_starts(owner).count();
    let wildcard = owner.starts_with(b"\x01*");
    (count - usize::from(wildcard)) as u8
}

/// RDATA with the domain names that RFC 4034 section 6.2 (as RFC 6840 section 5.1 amends it)
/// lower-cases for signing.
fn canonical_rdata<'r>(rtype: Rtype, rdata: &'r [u8]) -> Cow<'r, [u8]> {
    // (where the first name starts, how many names follow one another)
    let names = match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => Some((0, 1)),
        // MD, MF, MB, MG, MR
        Rtype(3 | 4 | 7 | 8 | 9) => Some((0, 1)),
        rtype::SOA | rtype::MINFO | rtype::RP => Some((0, 2)),
        rtype::MX | rtype::AFSDB | rtype::RT | rtype::KX => Some((2, 1)),
        rtype::PX => Some((2, 2)),
        rtype::SRV => Some((6, 1)),
        rtype::NAPTR => naptr_replacement(rdata).map(|at| (at, 1)),
        _ => None,
    };
    let Some((mut at, count)) = names else {
        return Cow::Borrowed(rdata);
    };
    let mut out = rdata.to_vec();
    for _ in 0..count {
        let Some(len) = out.get(at..).and_then(name::wire_len) else {
            break;
        };
        out[at..at + len].make_ascii_lowercase();
        at += len;
    }
    Cow::Owned(out)
}

/// Where NAPTR's replacement name starts: after order, preference and three strings.
fn naptr_replacement(rdata: &[u8]) -> Option<usize> {
    let mut at = 4;
    for _ in 0..3 {
        at += 1 + usize::from(*rdata.get(at)?);
    }
    (at < rdata.len()).then_some(at)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;
    use crate::{
        dnssec::key::{Algorithm, CSK_FLAGS},
        wire::name::wire,
    };

    #[test]
    fn labels_leave_out_the_root_and_a_wildcard() {
        assert_eq!(labels(&wire("www.example.com")), 3);
        assert_eq!(labels(&wire("*.example.com")), 2);
        assert_eq!(labels(&[0]), 0);
    }

    #[test]
    fn names_in_rdata_are_lowercased_for_signing() {
        let mut mx = vec![0, 10];
        mx.extend_from_slice(&wire("Mail.Example.COM"));
        let mut want = vec![0, 10];
        want.extend_from_slice(&wire("mail.example.com"));
        assert_eq!(canonical_rdata(rtype::MX, &mx).as_ref(), &want[..]);
        assert_eq!(canonical_rdata(rtype::TXT, b"\x02AB").as_ref(), b"\x02AB");
    }

    #[test]
    fn every_rrset_is_signed_and_the_signatures_verify() {
        let zone = crate::zone::fixture::zone(3);
        let key = Key::generate(Algorithm::Ecdsap256sha256, CSK_FLAGS, 1).unwrap();
        let signed = sign_zone(
            &zone,
            std::slice::from_ref(&key),
            (Validity::default(), Denial::Nsec),
            1_800_000_000,
            None,
        )
        .unwrap();
        let zone = signed.zone;
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, {
            let mut point = vec![4];
            point.extend_from_slice(&key.dnskey[4..]);
            point
        });
        let mut checked = 0;
        for node in zone.nodes() {
            let owner = zone.name(node);
            let sigs = zone
                .rrset(node, rtype::RRSIG)
                .expect("signatures at every node");
            for set in zone.rrsets(node).filter(|s| s.rtype != rtype::RRSIG) {
                let sig = sigs
                    .rdatas()
                    .find(|sig| u16::from_be_bytes([sig[0], sig[1]]) == set.rtype.0)
                    .expect("a signature for every RRset");
                let head_len = 18 + name::wire_len(&sig[18..]).unwrap();
                let rdatas: Vec<Cow<'_, [u8]>> = set.rdatas().map(Cow::Borrowed).collect();
                let data = signed_data(&sig[..head_len], owner, set.rtype, set.ttl, &rdatas);
                public.verify(&data, &sig[head_len..]).unwrap();
                checked += 1;
            }
        }
        // SOA, NS, DNSKEY, CDNSKEY, CDS and NSEC at the apex; A and NSEC at four hosts.
        assert_eq!(checked, 6 + 4 * 2);
        assert_eq!(signed.signatures, checked);
    }

    #[test]
    fn the_nsec_chain_goes_round_in_canonical_order() {
        let zone = crate::zone::fixture::zone(2);
        let key = Key::generate(Algorithm::Ed25519, CSK_FLAGS, 1).unwrap();
        let zone = sign_zone(
            &zone,
            &[key],
            (Validity::default(), Denial::Nsec),
            1_800_000_000,
            None,
        )
        .unwrap()
        .zone;
        let next: Vec<String> = zone
            .nodes()
            .map(|node| {
                let nsec = zone.rrset(node, rtype::NSEC).unwrap();
                let rdata = nsec.rdatas().next().unwrap();
                name::to_text(&rdata[..name::wire_len(rdata).unwrap()])
            })
            .collect();
        assert_eq!(
            next,
            [
                "host0.example.com.",
                "host1.example.com.",
                "ns1.example.com.",
                "example.com."
            ]
        );
    }

    #[test]
    fn an_edit_keeps_the_signatures_of_what_it_did_not_change() {
        let key = Key::generate(Algorithm::Ecdsap256sha256, CSK_FLAGS, 1).unwrap();
        let keys = std::slice::from_ref(&key);
        let now = 1_800_000_000;
        let before = sign_zone(
            &crate::zone::fixture::zone(3),
            keys,
            (Validity::default(), Denial::Nsec),
            now,
            None,
        )
        .unwrap();
        let after = sign_zone(
            &crate::zone::fixture::zone(4),
            keys,
            (Validity::default(), Denial::Nsec),
            now + 60,
            Some(&before.zone),
        )
        .unwrap();
        let sigs = |zone: &Zone| -> std::collections::HashSet<Vec<u8>> {
            zone.nodes()
                .filter_map(|node| zone.rrset(node, rtype::RRSIG))
                .flat_map(|set| set.rdatas().map(<[u8]>::to_vec))
                .collect()
        };
        let made = sigs(&after.zone).difference(&sigs(&before.zone)).count();
        // host3 is new: its A and NSEC; host2's NSEC now points at it.
        assert_eq!(made, 3);
        // Past the refresh point, everything is signed again.
        let later =
            now + 60 + u64::from(Validity::default().lifetime - Validity::default().refresh) + 1;
        let refreshed = sign_zone(
            &crate::zone::fixture::zone(4),
            keys,
            (Validity::default(), Denial::Nsec),
            later,
            Some(&after.zone),
        )
        .unwrap();
        assert!(sigs(&refreshed.zone).is_disjoint(&sigs(&after.zone)));
    }

    #[test]
    fn expirations_are_spread_over_the_jitter_and_the_earliest_is_reported() {
        let key = Key::generate(Algorithm::Ecdsap256sha256, CSK_FLAGS, 1).unwrap();
        let validity = Validity::default();
        assert_eq!(validity.jitter(), 12 * 3600);
        let now = 1_800_000_000;
        let signed = sign_zone(
            &crate::zone::fixture::zone(20),
            std::slice::from_ref(&key),
            (validity, Denial::Nsec),
            now,
            None,
        )
        .unwrap();
        let expirations: std::collections::BTreeSet<u64> = signed
            .zone
            .nodes()
            .filter_map(|node| signed.zone.rrset(node, rtype::RRSIG))
            .flat_map(|set| set.rdatas().map(|sig| signature_expiration(sig, now)))
            .collect();
        let latest = now + u64::from(validity.lifetime);
        assert!(expirations.len() > 10, "{expirations:?}");
        assert!(
            expirations
                .iter()
                .all(|&at| at <= latest && at > latest - 12 * 3600)
        );
        assert_eq!(signed.expires, *expirations.first().unwrap());
    }
}
