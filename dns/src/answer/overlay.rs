//! Records the binary adds at run time, served from memory and never written to a zone file:
//! the TXT records of ACME DNS-01 challenges (`_acme-challenge.<name>`), answered ahead of the
//! zone, and HTTPS records (RFC 9460) made from the web edge's configuration, answered where
//! the zone has no HTTPS RRset of its own at the name.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

/// TTL of challenge records: short, so that a retried challenge's new value is seen at once.
pub const TXT_TTL: u32 = 10;

/// What the edge serves a name with, for its HTTPS record: the ALPN protocols (`h3` only
/// while HTTP/3 listens) and the port when it is not 443. The address hints are the name's
/// A/AAAA records as answered (the health filter applied), added at answer time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Https {
    /// The ALPN protocols offered (`h3`, `h2`).
    pub alpn: Vec<String>,
    /// The HTTPS port, when it is not 443.
    pub port: Option<u16>,
    /// The records' TTL.
    pub ttl: u32,
}

/// What is added at one name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Added {
    /// TXT RDATAs.
    pub txt: Vec<Vec<u8>>,
    pub https: Option<Https>,
}

/// Added records by owner key.
pub(crate) type Records = HashMap<Vec<u8>, Added>;

/// The records added now.
#[derive(Debug, Default)]
pub struct Overlay {
    added: ArcSwap<Records>,
}

impl Overlay {
    /// Serves `values` as the TXT RRset of the name whose key is `owner_key`; none removes it.
    /// Each value is one character-string (at most 255 bytes; longer values are cut into
    /// strings of 255, as RFC 7208 section 3.3 reads them back).
    pub fn set_txt(&self, owner_key: Vec<u8>, values: &[String]) {
        let rdatas: Vec<Vec<u8>> = values.iter().map(|value| txt_rdata(value)).collect();
        self.added.rcu(|current| {
            let mut next = Records::clone(current);
            let added = next.entry(owner_key.clone()).or_default();
            added.txt = rdatas.clone();
            if added.txt.is_empty() && added.https.is_none() {
                next.remove(&owner_key);
            }
            next
        });
    }

    /// Replaces every synthesized HTTPS record with `all` (by owner key).
    pub fn replace_https(&self, all: &[(Vec<u8>, Https)]) {
        self.added.rcu(|current| {
            let mut next = Records::clone(current);
            for added in next.values_mut() {
                added.https = None;
            }
            for (key, https) in all {
                next.entry(key.clone()).or_default().https = Some(https.clone());
            }
            next.retain(|_, added| !added.txt.is_empty() || added.https.is_some());
            next
        });
    }

    pub(crate) fn added(&self) -> arc_swap::Guard<Arc<Records>> {
        self.added.load()
    }

    /// Takes over what `other` serves (a reload keeps challenges in flight).
    pub(crate) fn carry_over(&self, other: &Overlay) {
        self.added.store(other.added.load_full());
    }
}

pub(crate) fn txt_rdata(value: &str) -> Vec<u8> {
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

/// The RDATA of an HTTPS record (RFC 9460 section 2.2) in service mode for the owner itself
/// (priority 1, target "."), with `https`'s parameters and `v4`/`v6` as address hints; keys
/// in increasing order, as section 2.2 requires.
pub(crate) fn https_rdata(https: &Https, v4: &[&[u8]], v6: &[&[u8]]) -> Vec<u8> {
    let mut rdata = vec![0, 1, 0];
    let mut param = |key: u16, value: &[u8]| {
        rdata.extend_from_slice(&key.to_be_bytes());
        // Values here are far below 64 KiB: a few ALPN ids and addresses.
        rdata.extend_from_slice(&(value.len() as u16).to_be_bytes());
        rdata.extend_from_slice(value);
    };
    let mut alpn = Vec::new();
    for id in &https.alpn {
        alpn.push(id.len() as u8);
        alpn.extend_from_slice(id.as_bytes());
    }
    if !alpn.is_empty() {
        param(1, &alpn);
    }
    if let Some(port) = https.port {
        param(3, &port.to_be_bytes());
    }
    if !v4.is_empty() {
        param(4, &v4.concat());
    }
    if !v6.is_empty() {
        param(6, &v6.concat());
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
        let added = overlay.added();
        let rdatas = &added
            .get(b"key".as_slice())
            .map(|a| a.txt.clone())
            .unwrap_or_default();
        assert_eq!(rdatas.len(), 2);
        assert_eq!(rdatas[0], b"\x03abc");
        assert_eq!(rdatas[1].len(), 302);
        assert_eq!(rdatas[1][0], 255);
        assert_eq!(rdatas[1][256], 45);
        drop(added);
        overlay.set_txt(b"key".to_vec(), &[]);
        assert!(overlay.added().is_empty());
    }

    #[test]
    fn https_rdata_is_service_mode_with_sorted_keys() {
        let https = Https {
            alpn: vec!["h3".to_string(), "h2".to_string()],
            port: Some(8443),
            ttl: 300,
        };
        let rdata = https_rdata(&https, &[&[192, 0, 2, 1]], &[]);
        assert_eq!(
            rdata,
            [
                0, 1, 0, // priority 1, target "."
                0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2', // alpn="h3,h2"
                0, 3, 0, 2, 0x20, 0xFB, // port=8443
                0, 4, 0, 4, 192, 0, 2, 1, // ipv4hint=192.0.2.1
            ]
        );
        let plain = https_rdata(
            &Https {
                alpn: vec!["h2".to_string()],
                port: None,
                ttl: 300,
            },
            &[],
            &[],
        );
        assert_eq!(plain, [0, 1, 0, 0, 1, 0, 3, 2, b'h', b'2']);
    }
}
