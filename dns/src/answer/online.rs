//! Signatures made while answering, for what a signed zone answers that is not in the signed
//! zone as it is: a health-filtered part of an RRset, the records added at run time (`overlay`:
//! ACME challenges, synthesized HTTPS records), and the denial at a name only they hold.
//!
//! Signatures are cached by the RRset's content (owner, type, TTL, records): the health filter
//! and the overlay change seldom, so nearly every answer takes them from the cache. Denial at a
//! name that only added records hold is a compact proof (RFC 9824): an NSEC at the name itself
//! whose next name is its immediate successor, listing the types it has.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use crate::{
    dnssec::{Signing, now, sign},
    wire::{
        Rtype, name, rtype,
        types::push_type_bitmap,
        write::{Full, Owner, Section, Writer},
    },
    zone::Zone,
};

/// Cached signatures beyond this many RRsets are dropped (all at once: the set changes seldom).
const MAX_CACHED: usize = 16_384;

/// Signatures of one RRset and when they are to be made again.
struct Cached {
    signatures: Arc<[Vec<u8>]>,
    refresh_at: u64,
}

/// Signs RRsets made while answering, with the keys of the zones signed here.
#[derive(Default)]
pub struct OnlineSigner {
    signing: Option<Arc<Signing>>,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
}

impl std::fmt::Debug for OnlineSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineSigner").finish_non_exhaustive()
    }
}

impl OnlineSigner {
    /// Signs with the keys of the zones `signing` signs.
    pub fn new(signing: Arc<Signing>) -> Self {
        OnlineSigner {
            signing: Some(signing),
            cache: Mutex::default(),
        }
    }

    /// The RRSIG RDATAs over `owner`/`rtype` with these records, by every key of `zone`; none
    /// if the zone is not signed here (a zone that came signed from its primary).
    pub fn signatures(
        &self,
        zone: &Zone,
        owner: &[u8],
        rtype: Rtype,
        ttl: u32,
        rdatas: &[&[u8]],
    ) -> Option<Arc<[Vec<u8>]>> {
        let signing = self.signing.as_ref()?;
        let policy = signing.policy(zone.origin_key())?;
        let mut sorted: Vec<&[u8]> = rdatas.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let now = now();
        let keys = signing.keys(zone.origin()).ok()?;
        let signers = crate::dnssec::key::zone_signing(&keys, now);
        // The signing keys are part of what is cached: a rollover makes new signatures.
        let mut key = name::key_of(owner);
        for signer in &signers {
            key.extend_from_slice(&signer.tag.to_be_bytes());
        }
        key.extend_from_slice(&rtype.0.to_be_bytes());
        key.extend_from_slice(&ttl.to_be_bytes());
        for rdata in &sorted {
            key.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            key.extend_from_slice(rdata);
        }
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|cached| cached.refresh_at > now)
        {
            return Some(cached.signatures.clone());
        }
        let inception = now.saturating_sub(sign::INCEPTION_SKEW);
        let expiration = now + u64::from(policy.validity.lifetime);
        let records: Vec<Cow<'_, [u8]>> = sorted.iter().map(|r| Cow::Borrowed(*r)).collect();
        let owner = name::lowercase(owner);
        let signatures: Arc<[Vec<u8>]> = signers
            .into_iter()
            .filter_map(|key| {
                sign::rrsig(
                    key,
                    zone.origin(),
                    &owner,
                    rtype,
                    ttl,
                    &records,
                    inception,
                    expiration,
                )
                .ok()
            })
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            key,
            Cached {
                signatures: signatures.clone(),
                refresh_at: expiration.saturating_sub(u64::from(policy.validity.refresh)),
            },
        );
        Some(signatures)
    }

    /// Writes the signatures over the RRset `owner_wire`/`rtype` (written as `owner`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sign_written(
        &self,
        zone: &Zone,
        section: Section,
        owner: Owner<'_>,
        owner_wire: &[u8],
        rtype: Rtype,
        ttl: u32,
        rdatas: &[&[u8]],
        w: &mut Writer<'_>,
    ) -> Result<(), Full> {
        let Some(signatures) = self.signatures(zone, owner_wire, rtype, ttl, rdatas) else {
            return Ok(());
        };
        for signature in signatures.iter() {
            w.record(section, owner, rtype::RRSIG, ttl, signature)?;
        }
        Ok(())
    }

    /// The compact denial (RFC 9824) at `owner`, a name that holds only `types`: its NSEC, next
    /// name `\000.owner`, signed, in the authority section.
    pub(super) fn deny_types(
        &self,
        zone: &Zone,
        owner: &[u8],
        types: &[Rtype],
        w: &mut Writer<'_>,
    ) -> Result<(), Full> {
        let mut nsec = Vec::with_capacity(owner.len() + 2 + 8);
        nsec.extend_from_slice(&[1, 0]);
        nsec.extend_from_slice(&name::lowercase(owner));
        let mut bits: Vec<u16> = types.iter().map(|t| t.0).collect();
        bits.extend([rtype::RRSIG.0, rtype::NSEC.0]);
        push_type_bitmap(&mut bits, &mut nsec);
        let ttl = zone.negative_ttl();
        w.record(
            Section::Authority,
            Owner::Wire(owner),
            rtype::NSEC,
            ttl,
            &nsec,
        )?;
        self.sign_written(
            zone,
            Section::Authority,
            Owner::Wire(owner),
            owner,
            rtype::NSEC,
            ttl,
            &[&nsec],
            w,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;
    use crate::{dnssec::Policy, wire::name::wire};

    #[test]
    fn added_records_are_signed_once_and_verify() {
        let state = tempfile::tempdir().unwrap();
        let signing = Arc::new(Signing::new(
            state.path(),
            [(wire("example.com"), Policy::default())],
        ));
        let zone = crate::zone::fixture::zone(1);
        let online = OnlineSigner::new(signing.clone());
        let owner = wire("_acme-challenge.Example.com");
        let txt: &[u8] = b"\x05token";
        let first = online
            .signatures(&zone, &owner, rtype::TXT, 60, &[txt])
            .unwrap();
        let again = online
            .signatures(&zone, &owner, rtype::TXT, 60, &[txt])
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second answer takes the cache"
        );

        let keys = signing.keys(zone.origin()).unwrap();
        let mut point = vec![4];
        point.extend_from_slice(&keys[0].dnskey[4..]);
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
        let sig = &first[0];
        let head = 18 + name::wire_len(&sig[18..]).unwrap();
        let data = sign::signed_data(&sig[..head], &owner, rtype::TXT, 60, &[Cow::Borrowed(txt)]);
        public.verify(&data, &sig[head..]).unwrap();

        // A zone not signed here gets none.
        let other = OnlineSigner::new(Arc::new(Signing::new(state.path(), [])));
        assert!(
            other
                .signatures(&zone, &owner, rtype::TXT, 60, &[txt])
                .is_none()
        );
    }
}
