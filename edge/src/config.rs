use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// The `[edge]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Plain HTTP/1.1, answered with a 308 redirect to HTTPS.
    pub http: SocketAddr,
    /// HTTPS: TLS 1.2/1.3 with HTTP/2 and HTTP/1.1 on TCP, HTTP/3 on UDP, same port.
    pub https: SocketAddr,
    /// Folder of static files.
    pub root: PathBuf,
    /// Bytes of small static files' responses kept in memory (0: none). Any change under
    /// `root` empties it.
    pub file_cache_bytes: usize,
    /// PEM certificate chain; without `cert` and `key` a self-signed certificate is used.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// Most connections open at once, per listener (TCP, QUIC, plain HTTP).
    pub max_connections: usize,
    /// Most connections open at once from one client address, over every listener.
    pub max_connections_per_address: usize,
    /// Most concurrent requests (streams) on one HTTP/2 or HTTP/3 connection.
    pub max_streams: u32,
    /// Largest request header section, in bytes.
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Seconds to complete the TLS handshake and send a request's headers (slow-loris bound).
    pub header_timeout: u64,
    /// Seconds an idle connection is kept open.
    pub idle_timeout: u64,
    /// Seconds a response may make no progress because the client stopped reading.
    pub send_timeout: u64,
    /// Seconds between `/readyz` turning 503 and the listeners closing, when stopping: time
    /// for the other nodes' health checks to withdraw this one from DNS (their interval ×
    /// fall, and a little more). 0 for a single node.
    pub shutdown_delay: u64,
    /// Seconds in-flight requests get to finish at shutdown.
    pub shutdown_timeout: u64,
    /// QUIC handshakes in progress beyond which a new client must first answer a Retry
    /// (RFC 9000 section 8.1), proving its address; 0 asks it of every client.
    pub quic_retry_after_handshakes: usize,
    /// `Cache-Control` of static files by path prefix (`[edge.cache_control]`); the longest
    /// prefix that matches wins. Default: `"/" = "no-cache"` (revalidate with the ETag).
    pub cache_control: BTreeMap<String, String>,
    /// Security headers on every HTTPS response (`[edge.headers]`); a site may set its own.
    pub headers: Headers,
    /// Addresses and networks of proxies in front of the edge (a load balancer, a CDN) whose
    /// `X-Forwarded-For` and `Forwarded` are believed; from anyone else they are replaced.
    pub trusted_proxies: Vec<String>,
}

/// The `[edge.headers]` table: security headers stamped on every HTTPS response the site does
/// not set itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Headers {
    /// `Strict-Transport-Security` max-age in seconds; 0 sends no HSTS header.
    pub hsts_max_age: u64,
    pub hsts_include_subdomains: bool,
    pub hsts_preload: bool,
    /// `Content-Security-Policy`, sent when set.
    pub content_security_policy: Option<String>,
    /// Who may frame the site (`'none'`, `'self'`, or origins): a CSP `frame-ancestors`
    /// directive, and the matching `X-Frame-Options` for older browsers.
    pub frame_ancestors: Option<String>,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            hsts_max_age: 63_072_000,
            hsts_include_subdomains: false,
            hsts_preload: false,
            content_security_policy: None,
            frame_ancestors: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: SocketAddr::from(([127, 0, 0, 1], 8443)),
            root: PathBuf::from("public"),
            file_cache_bytes: 64 * 1024 * 1024,
            cert: None,
            key: None,
            max_connections: 10_000,
            max_connections_per_address: 100,
            max_streams: 100,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: 10,
            idle_timeout: 60,
            send_timeout: 60,
            shutdown_delay: 0,
            shutdown_timeout: 10,
            quic_retry_after_handshakes: 64,
            cache_control: BTreeMap::from([("/".to_string(), "no-cache".to_string())]),
            headers: Headers::default(),
            trusted_proxies: Vec::new(),
        }
    }
}
