//! Records the binary adds at run time, served from memory and never written to a zone file:
//! the TXT records of ACME DNS-01 challenges (`_acme-challenge.<name>`). They answer queries for
//! their name and type ahead of the zone (a wildcard or an existing TXT RRset at that name does
//! not mix in), with a short TTL, and go away when the binary removes them.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

/// TTL of overlay records: short, so that a retried challenge's new value is seen at once.
pub const TTL: u32 = 10;

/// TXT RDATAs by owner key.
pub(crate) type Records = HashMap<Vec<u8>, Vec<Vec<u8>>>;

/// The records added now.
#[derive(Debug, Default)]
pub struct Overlay {
    txt: ArcSwap<Records>,
}

impl Overlay {
    /// Serves `values` as the TXT RRset of the name whose key is `owner_key`; none removes it.
    /// Each value is one character-string (at most 255 bytes; longer values are cut into
    /// strings of 255, as RFC 7208 section 3.3 reads them back).
    pub fn set_txt(&self, owner_key: Vec<u8>, values: &[String]) {
        let rdatas: Vec<Vec<u8>> = values.iter().map(|value| txt_rdata(value)).collect();
        self.txt.rcu(|current| {
            let mut next = HashMap::clone(current);
            if rdatas.is_empty() {
                next.remove(&owner_key);
            } else {
                next.insert(owner_key.clone(), rdatas.clone());
            }
            next
        });
    }

    pub(crate) fn txt(&self) -> arc_swap::Guard<Arc<Records>> {
        self.txt.load()
    }

    /// Takes over what `other` serves (a reload keeps challenges in flight).
    pub(crate) fn carry_over(&self, other: &Overlay) {
        self.txt.store(other.txt.load_full());
    }
}

fn txt_rdata(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut rdata = Vec::with_capacity(bytes.len() + bytes.len() / 255 + 1);
    if bytes.is_empty() {
        rdata.push(0);
    }
    for chunk in bytes.chunks(255) {
        // A chunk is at most 255 bytes long.
        rdata.push(chunk.len() as u8);
        rdata.extend_from_slice(chunk);
    }
    rdata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_character_strings_and_an_empty_list_removes_them() {
        let overlay = Overlay::default();
        overlay.set_txt(b"key".to_vec(), &["abc".to_string(), "x".repeat(300)]);
        let txt = overlay.txt();
        let rdatas = txt
            .get(b"key".as_slice())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(rdatas.len(), 2);
        assert_eq!(rdatas[0], b"\x03abc");
        assert_eq!(rdatas[1].len(), 302);
        assert_eq!(rdatas[1][0], 255);
        assert_eq!(rdatas[1][256], 45);
        drop(txt);
        overlay.set_txt(b"key".to_vec(), &[]);
        assert!(overlay.txt().is_empty());
    }
}
