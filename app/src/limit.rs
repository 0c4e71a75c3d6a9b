//! What anyone may do without a token is limited per client address: posting comments.
//! Token buckets per address come from `governor` (GCRA, one atomic per address).

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota,
    clock::{Clock, DefaultClock},
};

/// The client's address. The app knows nothing of sockets: whoever serves it sets this request
/// extension (the binary does, from the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// Addresses remembered beyond which those whose bucket has refilled are forgotten.
const FORGET_ABOVE: usize = 10_000;

/// Comments per client address: `burst` at once, then `per_minute`.
#[derive(Debug)]
pub struct CommentLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl CommentLimit {
    /// `per_minute` 0 turns the limit off.
    pub fn new(per_minute: u32, burst: u32) -> CommentLimit {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            DefaultKeyedRateLimiter::dashmap(Quota::per_minute(rate).allow_burst(burst))
        });
        CommentLimit {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one comment from `address`'s allowance: `Err` with how long until the next is
    /// allowed when it is spent.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023
            && limiter.len() > FORGET_ABOVE
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&key(address))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The key of an address: IPv4 as is (also when mapped into IPv6); IPv6 by its /64, the
/// smallest prefix one subscriber is usually given, so that a client cannot step around the
/// limit by changing the host half of its address.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address_and_per_ipv6_64() {
        let limit = CommentLimit::new(6, 3);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.check(one).is_ok());
        }
        let wait = limit.check(one).unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(
            limit.check(other).is_ok(),
            "another address has its own allowance"
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limit.check(mapped).is_err(), "the same IPv4 client");

        let host_a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let host_b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        let next_net: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.check(host_a).is_ok());
        }
        assert!(limit.check(host_b).is_err(), "the same /64");
        assert!(limit.check(next_net).is_ok());
    }

    #[test]
    fn zero_per_minute_is_no_limit() {
        let limit = CommentLimit::new(0, 0);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(limit.check(one).is_ok());
        }
    }
}
