//! Who may do what with a zone beyond querying it: transfer it out (by address and/or TSIG
//! key), be told of its changes (NOTIFY targets), and tell us of them (a secondary zone's
//! primaries).
//!
//! Rules are written as the configuration writes them: `"192.0.2.2"`, `"2001:db8::/64"`,
//! `"key:xfr.foobar.com."`, or an address and a key together (`"192.0.2.0/24 key:xfr."`, both
//! needed); `tls` added to a rule asks that the transfer come encrypted: over TLS (XoT, RFC
//! 9103) or QUIC (XoQ, RFC 9250). A NOTIFY target or a primary is `"192.0.2.2:53"`, with an
//! optional key; a primary reached over TLS names how its certificate is checked
//! (`"192.0.2.2:853 tls:NAME"`).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use ipnet::IpNet;

use crate::transfer::tsig::{Key, Keyring};

/// One way to be allowed: from these addresses, with this key, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub network: Option<IpNet>,
    /// The key's name, as configured.
    pub key: Option<String>,
    /// Only over TLS (DNS over TLS, which is TLS 1.3 here as RFC 9103 asks of transfers) or
    /// QUIC.
    pub tls: bool,
}

impl Rule {
    /// Whether a request from `address`, signed with `key` (verified), is allowed by this rule;
    /// `over_tls` if it came over TLS or QUIC.
    pub fn allows(&self, address: IpAddr, key: Option<&Key>, over_tls: bool) -> bool {
        let address_ok = self.network.is_none_or(|net| net.contains(&address));
        let key_ok = match (&self.key, key) {
            (None, _) => true,
            (Some(wanted), Some(key)) => same_key_name(wanted, &key.name()),
            (Some(_), None) => false,
        };
        address_ok && key_ok && (over_tls || !self.tls)
    }
}

/// Why an `allow_transfer`/`allow_notify` rule or a primary's address cannot be read. Each
/// variant holds the text as written.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A rule with two `key:` parts, or an empty one.
    #[error("{0:?}: one key: name per rule")]
    OneKey(String),
    /// A part that is neither an address, a network, `key:NAME` nor `tls`.
    #[error("{rule:?}: {part:?} is not an address, network, key:NAME or tls")]
    Part {
        /// The whole rule.
        rule: String,
        /// The part at fault.
        part: String,
    },
    /// A rule with two addresses or networks.
    #[error("{0:?}: one address or network per rule")]
    OneNetwork(String),
    /// A rule with neither an address nor a key.
    #[error("{0:?}: an address, a network or a key:NAME is needed")]
    EmptyRule(String),
    /// A primary given as nothing.
    #[error("an empty address")]
    EmptyAddress,
    /// A primary whose address does not read.
    #[error("{peer:?}: {address:?} is not an address (192.0.2.1:53)")]
    Address {
        /// The whole entry.
        peer: String,
        /// The address part.
        address: String,
    },
    /// Something other than `key:NAME` or `tls:NAME` after a primary's address.
    #[error("{0:?}: after the address, only key:NAME and tls:NAME")]
    PeerKey(String),
    /// Two keys, or two TLS names.
    #[error("{0:?}: an address, at most one key:NAME and at most one tls:NAME")]
    PeerExtra(String),
}

impl FromStr for Rule {
    type Err = AccessError;

    fn from_str(text: &str) -> Result<Rule, AccessError> {
        let mut rule = Rule {
            network: None,
            key: None,
            tls: false,
        };
        for part in text.split_whitespace() {
            if part == "tls" {
                rule.tls = true;
            } else if let Some(key) = part.strip_prefix("key:") {
                if key.is_empty() || rule.key.replace(key.to_string()).is_some() {
                    return Err(AccessError::OneKey(text.to_string()));
                }
            } else {
                let network = IpNet::from_str(part)
                    .or_else(|_| IpAddr::from_str(part).map(IpNet::from))
                    .map_err(|_| AccessError::Part {
                        rule: text.to_string(),
                        part: part.to_string(),
                    })?;
                if rule.network.replace(network).is_some() {
                    return Err(AccessError::OneNetwork(text.to_string()));
                }
            }
        }
        if rule.network.is_none() && rule.key.is_none() {
            return Err(AccessError::EmptyRule(text.to_string()));
        }
        Ok(rule)
    }
}

/// A server to send NOTIFY to, or to transfer from: an address and port, and optionally the key
/// that signs what goes there and (a primary) the `[[dns.tls_auth]]` it is reached over TLS
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: SocketAddr,
    pub key: Option<String>,
    pub tls: Option<String>,
}

impl FromStr for Peer {
    type Err = AccessError;

    fn from_str(text: &str) -> Result<Peer, AccessError> {
        let mut parts = text.split_whitespace();
        let address = parts.next().ok_or(AccessError::EmptyAddress)?;
        let address = SocketAddr::from_str(address)
            .or_else(|_| IpAddr::from_str(address).map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| AccessError::Address {
                peer: text.to_string(),
                address: address.to_string(),
            })?;
        let (mut key, mut tls) = (None, None);
        for part in parts {
            let (slot, name) = match part.split_once(':') {
                Some(("key", name)) => (&mut key, name),
                Some(("tls", name)) => (&mut tls, name),
                _ => return Err(AccessError::PeerKey(text.to_string())),
            };
            if name.is_empty() {
                return Err(AccessError::PeerKey(text.to_string()));
            }
            if slot.replace(name.to_string()).is_some() {
                return Err(AccessError::PeerExtra(text.to_string()));
            }
        }
        Ok(Peer { address, key, tls })
    }
}

fn same_key_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The policy of one zone.
#[derive(Debug, Clone, Default)]
pub struct ZoneAccess {
    /// Who may transfer it.
    pub transfer: Vec<Rule>,
    /// Where its changes are announced.
    pub notify: Vec<Peer>,
    /// For a secondary zone: its primaries, whose NOTIFY (signed with their key where one is
    /// set) starts a refresh.
    pub primaries: Vec<Peer>,
}

/// Transfer and NOTIFY policy for every zone, with the keys.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The TSIG keys known, by name.
    pub keyring: Keyring,
    /// For zones with no rules of their own.
    pub default_transfer: Vec<Rule>,
    /// By origin key (see `crate::wire::name`).
    pub zones: HashMap<Vec<u8>, ZoneAccess>,
}

impl Access {
    /// Whether a transfer of the zone at `origin_key` is allowed to `address` with `key`,
    /// asked over TLS or not.
    pub fn may_transfer(
        &self,
        origin_key: &[u8],
        address: IpAddr,
        key: Option<&Key>,
        over_tls: bool,
    ) -> bool {
        let rules = self
            .zones
            .get(origin_key)
            .filter(|zone| !zone.transfer.is_empty())
            .map_or(&self.default_transfer, |zone| &zone.transfer);
        rules.iter().any(|rule| rule.allows(address, key, over_tls))
    }

    /// Whether a NOTIFY for the zone at `origin_key` comes from one of its primaries (with the
    /// primary's key when it has one).
    pub fn notify_from_primary(
        &self,
        origin_key: &[u8],
        address: IpAddr,
        key: Option<&Key>,
    ) -> bool {
        let Some(zone) = self.zones.get(origin_key) else {
            return false;
        };
        zone.primaries.iter().any(|primary| {
            primary.address.ip() == address
                && match (&primary.key, key) {
                    (None, _) => true,
                    (Some(wanted), Some(key)) => same_key_name(wanted, &key.name()),
                    (Some(_), None) => false,
                }
        })
    }

    /// The key configured under `name`, if any.
    pub fn key(&self, name: Option<&str>) -> Option<Arc<Key>> {
        name.and_then(|name| self.keyring.get(name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::transfer::tsig::Algorithm;

    #[test]
    fn rules_allow_by_address_key_or_both() {
        let key = Key::new("xfr.foobar.com.", Algorithm::HmacSha256, b"s").unwrap();
        let other = Key::new("other.", Algorithm::HmacSha256, b"s").unwrap();
        let inside: IpAddr = "192.0.2.7".parse().unwrap();
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        let by_net: Rule = "192.0.2.0/24".parse().unwrap();
        let by_key: Rule = "key:XFR.foobar.com".parse().unwrap();
        let both: Rule = "192.0.2.0/24 key:xfr.foobar.com.".parse().unwrap();
        let over_tls: Rule = "192.0.2.0/24 tls".parse().unwrap();
        assert!(by_net.allows(inside, None, false) && !by_net.allows(outside, Some(&key), false));
        assert!(by_key.allows(outside, Some(&key), false) && !by_key.allows(inside, None, true));
        assert!(!by_key.allows(inside, Some(&other), false));
        assert!(both.allows(inside, Some(&key), false));
        assert!(!both.allows(outside, Some(&key), false) && !both.allows(inside, None, false));
        assert!(over_tls.allows(inside, None, true) && !over_tls.allows(inside, None, false));
        assert!(!over_tls.allows(outside, None, true) && by_net.allows(inside, None, true));
        for bad in [
            "",
            "key:",
            "bogus",
            "192.0.2.1 192.0.2.2",
            "key:a key:b",
            "tls",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn peers_take_a_port_and_a_key() {
        let peer: Peer = "192.0.2.2:5300 key:xfr.".parse().unwrap();
        assert_eq!(peer.address, "192.0.2.2:5300".parse().unwrap());
        assert_eq!(peer.key.as_deref(), Some("xfr."));
        let plain: Peer = "2001:db8::1".parse().unwrap();
        assert_eq!(plain.address.port(), 53);
        let over_tls: Peer = "192.0.2.2:853 tls:primary key:xfr.".parse().unwrap();
        assert_eq!(over_tls.tls.as_deref(), Some("primary"));
        assert_eq!(over_tls.key.as_deref(), Some("xfr."));
        for bad in [
            "192.0.2.2:53 xfr",
            "192.0.2.2 tls",
            "192.0.2.2 tls:",
            "192.0.2.2 tls:a tls:b",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }
}
