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
