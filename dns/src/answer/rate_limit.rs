//! Response rate limiting over UDP (as Knot's `rate-limit` and BIND's RRL): each source prefix
//! (/24, /56 by default) gets `responses_per_second`, with a burst of one second's worth. A
//! limited response is dropped, except every `slip`-th, which goes out truncated so that a real
//! client retries over TCP (or, with a client cookie, as BADCOOKIE with a fresh server cookie).
//!
//! The buckets are a fixed table of atomics indexed by a hash of the prefix: no lock and no
//! allocation per response, and a flood of spoofed prefixes cannot make it grow. Two prefixes
//! that share a slot take turns owning it, which can only let one of them through sooner.

use std::{
    hash::BuildHasher,
    net::IpAddr,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use serde::Deserialize;

/// Slots in the table (a power of two): 512 KiB.
const SLOTS: usize = 1 << 16;

/// The `[dns.rate_limit]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Responses per second to one source prefix over UDP; 0 turns rate limiting off.
    pub responses_per_second: u16,
    /// Every `slip`-th limited response is sent truncated instead of dropped; 0 drops them all.
    pub slip: u32,
    /// Length of the IPv4 prefix that shares one limit.
    #[serde(deserialize_with = "prefix::<32, _>")]
    pub ipv4_prefix: u8,
    /// Length of the IPv6 prefix that shares one limit (at most 64).
    #[serde(deserialize_with = "prefix::<64, _>")]
    pub ipv6_prefix: u8,
}

/// A prefix length of at most `MAX` bits.
fn prefix<'de, const MAX: u8, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u8, D::Error> {
    let length = u8::deserialize(deserializer)?;
    if length > MAX {
        return Err(serde::de::Error::custom(format!(
            "a prefix length of at most {MAX}, not {length}"
        )));
    }
    Ok(length)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            responses_per_second: 0,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send it truncated (TC, no records), or as BADCOOKIE to a client with a cookie.
    Slip,
}

pub struct RateLimit {
    rate: u16,
    slip: u32,
    ipv4_mask: u32,
    ipv6_mask: u64,
    /// Per slot: tag (32 bits) | second (16 bits) | tokens left (16 bits).
    slots: Box<[AtomicU64]>,
    limited: AtomicU32,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("rate", &self.rate)
            .field("slip", &self.slip)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// The limiter the configuration asks for; `None` when it is off.
    pub fn new(config: &Config) -> Option<RateLimit> {
        let Config {
            responses_per_second,
            slip,
            ipv4_prefix,
            ipv6_prefix,
        } = *config;
        if responses_per_second == 0 {
            return None;
        }
        let ipv4_mask = u32::MAX
            .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
            .unwrap_or(0);
        let ipv6_mask = u64::MAX
            .checked_shl(64 - u32::from(ipv6_prefix.min(64)))
            .unwrap_or(0);
        Some(RateLimit {
            rate: responses_per_second,
            slip,
            ipv4_mask,
            ipv6_mask,
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            limited: AtomicU32::new(0),
        })
    }

    /// Counts one response to `address` at `now` (seconds) and says what to do with it.
    pub fn check(&self, address: IpAddr, now: u32) -> Verdict {
        let prefix = match address {
            IpAddr::V4(v4) => (4u8, u64::from(u32::from(v4) & self.ipv4_mask)),
            IpAddr::V6(v6) => (6u8, (u128::from(v6) >> 64) as u64 & self.ipv6_mask),
        };
        let hash = foldhash::fast::FixedState::with_seed(0x7a7e_1117).hash_one(prefix);
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let tag = (hash >> 32) as u32;
        let second = now as u16;
        let rate = u64::from(self.rate);
        let mut current = slot.load(Ordering::Relaxed);
        let allowed = loop {
            let (old_tag, old_second, tokens) =
                (current >> 32, (current >> 16) as u16, current & 0xFFFF);
            let available = if old_tag as u32 != tag {
                rate
            } else {
                let elapsed = u64::from(second.wrapping_sub(old_second));
                (tokens + elapsed.saturating_mul(rate)).min(rate)
            };
            let left = available.saturating_sub(1);
            let next = u64::from(tag) << 32 | u64::from(second) << 16 | left;
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break available > 0,
                Err(actual) => current = actual,
            }
        };
        if allowed {
            return Verdict::Send;
        }
        let limited = self.limited.fetch_add(1, Ordering::Relaxed);
        if self.slip > 0 && limited % self.slip == self.slip - 1 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn limiter(rate: u16, slip: u32) -> RateLimit {
        let config = Config {
            responses_per_second: rate,
            slip,
            ..Config::default()
        };
        RateLimit::new(&config).unwrap()
    }

    #[test]
    fn a_prefix_gets_its_rate_per_second() {
        let limit = limiter(5, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_24: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let sent = |address, now| {
            (0..20)
                .filter(|_| limit.check(address, now) == Verdict::Send)
                .count()
        };
        assert_eq!(sent(a, 100), 5);
        assert_eq!(sent(same_24, 100), 0, "the /24 shares the limit");
        assert_eq!(sent(other, 100), 5, "another prefix has its own");
        assert_eq!(sent(a, 101), 5, "refilled a second later");
        assert_eq!(sent(a, 101), 0);
    }

    #[test]
    fn every_slip_th_limited_response_is_truncated() {
        let limit = limiter(1, 3);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..7).map(|_| limit.check(a, 7)).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Drop, Drop, Slip, Drop, Drop, Slip]);
        assert!(
            RateLimit::new(&Config::default()).is_none(),
            "off by default"
        );
    }
}
