//! DNS Cookies, server side (RFC 7873), with the interoperable server cookie of RFC 9018:
//!
//! ```text
//! server cookie = version 1 | reserved 0 0 0 | timestamp (u32) |
//!                 SipHash-2-4(client cookie | version | reserved | timestamp | client IP, secret)
//! ```
//!
//! Every node that shares the secret (`[dns] cookie_secret`) accepts the others' cookies. A
//! cookie is valid for an hour after its timestamp (and up to five minutes before, for clocks
//! that differ), as RFC 9018 section 4.3 recommends.

use std::{hash::Hasher, net::IpAddr};
use subtle::ConstantTimeEq;

use siphasher::sip::SipHasher24;

/// How long a server cookie stays valid, in seconds.
const LIFETIME: u32 = 3600;
/// How far in the future a timestamp may be, in seconds.
const FUTURE: u32 = 300;

/// The server's secret, and what it computes.
#[derive(Clone)]
pub struct Cookies {
    secret: [u8; 16],
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookies { secret: .. }")
    }
}

/// What a query's COOKIE option holds, as RFC 7873 section 5.2 sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// A client cookie alone, or with a server cookie that did not verify.
    ClientOnly,
    /// A client cookie with a server cookie this server (or one sharing its secret) made.
    Valid,
}

impl Cookies {
    /// Cookies made and checked with `secret` (every node of a cluster can share one).
    pub fn new(secret: [u8; 16]) -> Self {
        Cookies { secret }
    }

    /// A secret from the system's randomness.
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        let mut secret = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)?;
        Ok(Cookies { secret })
    }

    /// The 16-byte server cookie for this client at `now` (seconds since the epoch, modulo 2^32).
    pub fn server_cookie(&self, client: &[u8; 8], address: IpAddr, now: u32) -> [u8; 16] {
        let mut cookie = [0u8; 16];
        cookie[0] = 1;
        cookie[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = self.hash(client, &cookie[..8], address);
        cookie[8..].copy_from_slice(&hash);
        cookie
    }

    /// Whether `server` is a valid server cookie for this client and address at `now`.
    pub fn verify(&self, client: &[u8; 8], server: &[u8], address: IpAddr, now: u32) -> Presented {
        let valid = server.len() == 16 && server[0] == 1 && {
            let stamp = crate::wire::bytes::u32_at(server, 4).unwrap_or(0);
            // Serial arithmetic: the age may wrap around 2^32.
            let age = now.wrapping_sub(stamp);
            let fresh = age <= LIFETIME || stamp.wrapping_sub(now) <= FUTURE;
            fresh && bool::from(self.hash(client, &server[..8], address).ct_eq(&server[8..]))
        };
        if valid {
            Presented::Valid
        } else {
            Presented::ClientOnly
        }
    }

    fn hash(&self, client: &[u8; 8], head: &[u8], address: IpAddr) -> [u8; 8] {
        let mut hasher = SipHasher24::new_with_key(&self.secret);
        hasher.write(client);
        hasher.write(head);
        match address {
            IpAddr::V4(v4) => hasher.write(&v4.octets()),
            IpAddr::V6(v6) => hasher.write(&v6.octets()),
        }
        hasher.finish().to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn cookies() -> Cookies {
        Cookies::new(hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap())
    }

    #[test]
    fn rfc_9018_appendix_a_vectors() {
        let cases = [
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1_559_731_985,
                "010000005cf79f111f8130c3eee29480",
            ),
            (
                "2464c4abcf10c957",
                "198.51.100.100",
                1_559_734_385,
                "010000005cf7a871d4a564a1442aca77",
            ),
            (
                "fc93fc62807ddb86",
                "203.0.113.203",
                1_559_734_700,
                "010000005cf7a9acf73a7810aca2381e",
            ),
        ];
        for (client, address, now, want) in cases {
            let client: [u8; 8] = hex(client).try_into().unwrap();
            let address: IpAddr = address.parse().unwrap();
            let made = cookies().server_cookie(&client, address, now);
            assert_eq!(made.to_vec(), hex(want));
            assert_eq!(
                cookies().verify(&client, &made, address, now + 60),
                Presented::Valid
            );
        }
    }

    #[test]
    fn cookies_expire_and_belong_to_one_client() {
        let client = [1u8; 8];
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let made = cookies().server_cookie(&client, address, 1_000_000);
        let at = |now| cookies().verify(&client, &made, address, now);
        assert_eq!(at(1_000_000 + 3600), Presented::Valid);
        assert_eq!(at(1_000_000 - 300), Presented::Valid);
        assert_eq!(at(1_000_000 + 3601), Presented::ClientOnly);
        assert_eq!(at(1_000_000 - 301), Presented::ClientOnly);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            cookies().verify(&client, &made, other, 1_000_000),
            Presented::ClientOnly
        );
        assert_eq!(
            cookies().verify(&[2u8; 8], &made, address, 1_000_000),
            Presented::ClientOnly
        );
        let random = Cookies::random().unwrap();
        assert_eq!(
            random.verify(&client, &made, address, 1_000_000),
            Presented::ClientOnly
        );
    }
}
