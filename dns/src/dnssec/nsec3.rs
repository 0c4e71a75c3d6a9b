//! NSEC3 (RFC 5155) with the parameters RFC 9276 asks of every signer: SHA-1, no extra
//! iterations, no salt, and no opt-out. The hashed names only hide the zone's names from a
//! casual walk; what they cost is the same for every query, so none is added.

use crate::{wire::name, zone::NSEC3_HASH_LEN};

/// The NSEC3PARAM RDATA: SHA-1 (1), flags 0, 0 iterations, no salt.
pub const PARAM: [u8; 5] = [1, 0, 0, 0, 0];

/// The NSEC3 hash of `owner` (wire form): SHA-1 of its canonical form, salt empty, no extra
/// iteration.
pub fn hash(owner: &[u8]) -> [u8; NSEC3_HASH_LEN] {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &name::lowercase(owner),
    );
    let mut out = [0u8; NSEC3_HASH_LEN];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The owner of the NSEC3 record for `hash` in the zone `origin`: the hash in base32hex
/// (lowercase, as canonical order compares it), then the origin.
pub fn owner(hash: &[u8; NSEC3_HASH_LEN], origin: &[u8]) -> Vec<u8> {
    let label = data_encoding::BASE32HEX_NOPAD
        .encode(hash)
        .to_ascii_lowercase();
    let mut owner = Vec::with_capacity(1 + label.len() + origin.len());
    owner.push(label.len() as u8);
    owner.extend_from_slice(label.as_bytes());
    owner.extend_from_slice(origin);
    owner
}

/// The NSEC3 RDATA pointing at `next`, with the type bitmap of `types`.
pub fn rdata(next: &[u8; NSEC3_HASH_LEN], types: &mut Vec<u16>) -> Vec<u8> {
    let mut rdata = Vec::with_capacity(6 + NSEC3_HASH_LEN + 16);
    rdata.extend_from_slice(&PARAM[..4]);
    rdata.push(0);
    rdata.push(NSEC3_HASH_LEN as u8);
    rdata.extend_from_slice(next);
    crate::wire::types::push_type_bitmap(types, &mut rdata);
    rdata
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_ldns_does_with_no_salt_and_no_iterations() {
        // `ldns-nsec3-hash -t 0 example.` gives this hash.
        let origin = name::from_text("example.").unwrap();
        let owner = owner(&hash(&origin), &origin);
        assert_eq!(
            name::to_text(&owner),
            "3msev9usmd4br9s97v51r2tdvmr9iqo1.example."
        );
    }
}
