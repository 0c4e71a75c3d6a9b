//! Answers that follow the edges' health: the A/AAAA records of a name whose addresses are the
//! site's nodes leave out the addresses found down (the binary probes them; this crate knows
//! nothing of HTTP), and carry a short TTL so that resolvers follow quickly. Never an empty
//! answer: with every address down, all are served.
//!
//! The filter is applied in one place, where the answer's RRset is written (`answer::lookup`):
//! signing (DNSSEC) would have to happen after it, once per health state, not per query.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::{
    wire::{Rtype, rtype},
    zone::RRset,
};

/// `[[dns.health]]`: a name whose A/AAAA records are checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The owner name, e.g. `www.foobar.com`.
    pub name: String,
    /// The path asked for (HTTPS GET, with this name as SNI and Host); 2xx means healthy.
    #[serde(default = "default_path")]
    pub path: String,
    /// The port probed on each address; default: this server's `[edge] https` port.
    pub port: Option<u16>,
    /// Seconds between probes of each address.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Seconds a probe may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Successes in a row that bring an address back.
    #[serde(default = "default_count")]
    pub rise: u32,
    /// Failures in a row that take an address out.
    #[serde(default = "default_count")]
    pub fall: u32,
    /// TTL of the answers for this name (seconds), at most.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Whether the probe checks the node's certificate (off for nodes with self-signed ones).
    #[serde(default = "default_verify")]
    pub verify_certificate: bool,
}

fn default_path() -> String {
    "/readyz".to_string()
}
fn default_interval() -> u64 {
    2
}
fn default_timeout() -> u64 {
    1
}
fn default_count() -> u32 {
    2
}
fn default_ttl() -> u32 {
    30
}
fn default_verify() -> bool {
    true
}

/// What the answers for one name leave out, and their TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The addresses found down.
    pub down: Vec<IpAddr>,
    /// The TTL the name's A and AAAA answers get at most, so that a change is seen soon.
    pub ttl: u32,
}

/// The filters in force, by owner key.
#[derive(Debug, Default)]
pub struct Health {
    filters: ArcSwap<HashMap<Vec<u8>, Filter>>,
}

impl Health {
    /// Sets the filter of the name whose key is `owner_key`.
    pub fn set(&self, owner_key: Vec<u8>, filter: Filter) {
        self.filters.rcu(|filters| {
            let mut next = HashMap::clone(filters);
            next.insert(owner_key.clone(), filter.clone());
            next
        });
    }

    pub(crate) fn filters(&self) -> arc_swap::Guard<Arc<HashMap<Vec<u8>, Filter>>> {
        self.filters.load()
    }

    /// Takes over what `other` filters for the names `checked` still names (a reload: the
    /// answers keep leaving out what is down until the new checks have their own results; a
    /// name no longer checked is no longer filtered).
    pub(crate) fn carry_over(&self, other: &Health, checked: &[Vec<u8>]) {
        let kept: HashMap<Vec<u8>, Filter> = other
            .filters
            .load()
            .iter()
            .filter(|(name, _)| checked.contains(name))
            .map(|(name, filter)| (name.clone(), filter.clone()))
            .collect();
        self.filters.store(Arc::new(kept));
    }
}

/// The RDATAs of `set` to answer with and their TTL, when `set` is an A or AAAA RRset of a
/// filtered name: those not down (all of them when every one is down), the TTL capped. Lazy,
/// so that the answer path allocates nothing: the RRset is walked once to see whether any
/// address is up, then again as the answer is written.
pub(crate) fn filtered<'a, 'z>(
    filter: &'a Filter,
    set: RRset<'z>,
) -> Option<(impl Iterator<Item = &'z [u8]> + Clone + 'a, u32)>
where
    'z: 'a,
{
    if !matches!(set.rtype, rtype::A | rtype::AAAA) {
        return None;
    }
    let up =
        move |rdata: &[u8]| address(set.rtype, rdata).is_none_or(|a| !filter.down.contains(&a));
    let all_down = !set.rdatas().any(up);
    let rdatas = set.rdatas().filter(move |rdata| all_down || up(rdata));
    Some((rdatas, set.ttl.min(filter.ttl)))
}

/// The address an A or AAAA RDATA holds.
fn address(rtype: Rtype, rdata: &[u8]) -> Option<IpAddr> {
    match rtype {
        rtype::A => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?))),
        rtype::AAAA => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(rdata).ok()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;
    use crate::{
        answer::cookie::Cookies,
        answer::{Client, Outcome, Responder, Transport},
        transfer::access::Access,
        wire::name,
        zone::catalog::Catalog,
        zone::load::load_zone_text,
    };

    fn answer(responder: &Responder, catalog: &Catalog) -> Vec<(String, u32)> {
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&name::wire("www.example.com"));
        packet.extend_from_slice(&rtype::A.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        let client = Client {
            transport: Transport::Udp,
            address: IpAddr::from([127, 0, 0, 1]),
            now: 0,
        };
        let mut out = Vec::new();
        assert_eq!(
            responder.respond(catalog, &packet, client, &mut out),
            Outcome::Reply
        );
        let [_, answers, ..] = crate::wire::read::counts(&out).unwrap();
        let mut at = crate::wire::read::after_question(&out).unwrap();
        let mut found = Vec::new();
        for _ in 0..answers {
            let record = crate::wire::read::read_record(&out, at).unwrap();
            found.push((format!("{:?}", record.rdata), record.ttl));
            at = record.end;
        }
        found
    }

    #[test]
    fn answers_leave_out_what_is_down_but_never_everything() {
        let text = "$ORIGIN example.com.\n$TTL 3600\n@ SOA ns1 h 1 1 1 1 60\n NS ns1\nns1 A 192.0.2.53\n\
                    www A 192.0.2.1\nwww A 192.0.2.2\nwww A 192.0.2.3\n";
        let zone = load_zone_text(Path::new("example.com.zone"), text.as_bytes(), None)
            .unwrap()
            .zone;
        let catalog = Catalog::new([Arc::new(zone)]);
        let health = Arc::new(Health::default());
        let responder =
            Responder::new(Access::default(), Cookies::new([1; 16])).with_health(health.clone());
        assert_eq!(
            answer(&responder, &catalog).len(),
            3,
            "no filter: as the zone says"
        );
        let key = name::key_of(&name::wire("www.example.com"));
        let down = |addresses: &[&str]| Filter {
            down: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            ttl: 30,
        };
        health.set(key.clone(), down(&["192.0.2.2"]));
        let found = answer(&responder, &catalog);
        assert_eq!(
            found,
            [
                ("[192, 0, 2, 1]".to_string(), 30),
                ("[192, 0, 2, 3]".to_string(), 30)
            ]
        );
        health.set(key.clone(), down(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]));
        assert_eq!(
            answer(&responder, &catalog).len(),
            3,
            "all down: all served"
        );
        health.set(key, down(&[]));
        assert!(
            answer(&responder, &catalog)
                .iter()
                .all(|(_, ttl)| *ttl == 30)
        );
    }
}
