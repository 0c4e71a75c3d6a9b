use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The `[dns]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to answer on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Folder whose `*.zone` files are served.
    pub zones: PathBuf,
    /// Addresses or networks allowed to transfer zones (AXFR); none by default.
    #[serde(deserialize_with = "networks")]
    pub allow_transfer: Vec<IpNet>,
    /// Most TCP connections served at once.
    pub max_tcp_connections: usize,
    /// Seconds a TCP connection may sit idle between queries.
    pub tcp_idle_timeout: u64,
    /// Seconds a TCP client gets to send the rest of a query once it started one, and to take
    /// each response; also how long stopping waits for TCP clients.
    pub tcp_io_timeout: u64,
    /// Most TCP connections from one address at once.
    pub max_tcp_connections_per_address: usize,
    /// Sent to clients that ask for it (RFC 5001 NSID); none by default.
    pub nsid: Option<String>,
    /// The answer to `id.server` and `hostname.bind` CH TXT; refused by default.
    pub identity: Option<String>,
    /// The answer to `version.bind` and `version.server` CH TXT; refused by default.
    pub version: Option<String>,
    /// 32 hex digits: the secret of server cookies (RFC 9018), shared by every server of a
    /// zone so that each accepts the others' cookies. Default: random at each start.
    #[serde(deserialize_with = "cookie_secret")]
    pub cookie_secret: Option<[u8; 16]>,
    /// Response rate limiting over UDP (`[dns.rate_limit]`); off by default.
    pub rate_limit: crate::rate_limit::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            zones: PathBuf::from("zones"),
            allow_transfer: Vec::new(),
            max_tcp_connections: 1024,
            tcp_idle_timeout: 10,
            tcp_io_timeout: 5,
            max_tcp_connections_per_address: 16,
            nsid: None,
            identity: None,
            version: None,
            cookie_secret: None,
            rate_limit: crate::rate_limit::Config::default(),
        }
    }
}

/// Accepts `192.0.2.1` as well as `192.0.2.0/24`.
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            IpNet::from_str(text)
                .or_else(|_| std::net::IpAddr::from_str(text).map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("not an address or network: {text}")))
        })
        .collect()
}

/// 32 hex digits into 16 bytes.
fn cookie_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<[u8; 16]>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let digits = text.as_bytes();
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if digits.len() != 32 {
        return Err(serde::de::Error::custom("want 32 hex digits (16 bytes)"));
    }
    let mut secret = [0u8; 16];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err(serde::de::Error::custom("want 32 hex digits (16 bytes)"));
        };
        secret[i] = high << 4 | low;
    }
    Ok(Some(secret))
}
