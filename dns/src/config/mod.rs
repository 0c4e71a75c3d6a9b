use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, str::FromStr};

pub(crate) mod settings;

use serde::{Deserialize, Deserializer};

use crate::transfer::access::{Peer, Rule};

/// The `[dns]` table of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to answer on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Addresses to answer DNS over TLS on (RFC 7858; port 853 is its own), with the web edge's
    /// certificates, ALPN `dot` and TLS 1.3; zone transfers too (XoT, RFC 9103) where
    /// `allow_transfer` allows them. None by default.
    pub tls_listen: Vec<SocketAddr>,
    /// Addresses to answer DNS over QUIC on (RFC 9250; UDP port 853 is its own), with the web
    /// edge's certificates and ALPN `doq`; zone transfers too (XoQ) where `allow_transfer`
    /// allows them. None by default.
    pub quic_listen: Vec<SocketAddr>,
    /// Network interfaces whose UDP queries to the port of the first `listen` address are
    /// answered in XDP mode (AF_XDP, as Knot's `xdp` listen): taken off the card before the
    /// kernel's IP and UDP stack, for less CPU per query. Needs CAP_NET_ADMIN,
    /// CAP_BPF and CAP_NET_RAW (or root) and a kernel with XDP sockets; where it cannot attach,
    /// the sockets answer as without it. IPv4 without options and IPv6 without extension
    /// headers; anything else on the interface (ARP, TCP, other ports) goes to the kernel as
    /// before. None by default.
    pub xdp: Vec<String>,
    /// The path DNS over HTTPS (RFC 8484) is answered at on the web edge (`"/dns-query"`),
    /// wherever a site's routes send it to the built-in app (the default site's do). Off
    /// (`""`) by default.
    pub https_path: String,
    /// Folder whose `*.zone` files are served.
    pub zones: PathBuf,
    /// Who may transfer zones (AXFR, IXFR) that have no rules of their own: addresses,
    /// networks, `key:NAME` (a TSIG key), or an address and a key together. None by default.
    #[serde(deserialize_with = "parsed")]
    pub allow_transfer: Vec<Rule>,
    /// TSIG keys (`[[dns.tsig]]`), as `tsig-keygen` and `keymgr` print them.
    pub tsig: Vec<TsigKey>,
    /// How primaries reached over TLS are recognized (`[[dns.tls_auth]]`), named by their
    /// `tls:NAME`.
    pub tls_auth: Vec<TlsAuth>,
    /// Settings of zones from the zones folder (`[dns.zone."foobar.com"]`).
    pub zone: BTreeMap<String, ZoneSettings>,
    /// Zones followed from primaries instead of read from files (`[[dns.secondary]]`).
    pub secondary: Vec<Secondary>,
    /// Names whose A/AAAA answers follow the health of the addresses (`[[dns.health]]`).
    pub health: Vec<crate::answer::health::Check>,
    /// Bytes of differences kept per zone for IXFR (RFC 1995), in memory and in
    /// `state_dir/dns/journal`; older ones are dropped first, and a client further behind
    /// gets the whole zone.
    pub journal_max_bytes: usize,
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
    pub rate_limit: crate::answer::rate_limit::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            tls_listen: Vec::new(),
            quic_listen: Vec::new(),
            xdp: Vec::new(),
            https_path: String::new(),
            zones: PathBuf::from("zones"),
            allow_transfer: Vec::new(),
            tsig: Vec::new(),
            tls_auth: Vec::new(),
            zone: BTreeMap::new(),
            secondary: Vec::new(),
            health: Vec::new(),
            journal_max_bytes: 16 * 1024 * 1024,
            max_tcp_connections: 1024,
            tcp_idle_timeout: 10,
            tcp_io_timeout: 5,
            max_tcp_connections_per_address: 16,
            nsid: None,
            identity: None,
            version: None,
            cookie_secret: None,
            rate_limit: crate::answer::rate_limit::Config::default(),
        }
    }
}

/// A TSIG key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    /// As the peers know it, e.g. `xfr.foobar.com.`.
    pub name: String,
    /// `hmac-sha256` (the default), `hmac-sha512`, `hmac-sha384` or `hmac-sha1`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The secret in base64.
    pub secret: Option<String>,
    /// Or a file holding it (relative paths from `state_dir`): the base64 secret alone, or a
    /// BIND key file (`secret "...";`).
    pub secret_file: Option<PathBuf>,
}

/// `[[dns.tls_auth]]`: how a primary reached over TLS (XoT, RFC 9103) proves itself: a
/// certificate for `server_name` issued by `ca_file`, or a public key with the pin `pin`, or
/// both. NSD's `tls-auth`, BIND's `tls`, Knot's `cert-key`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsAuth {
    /// As the primaries' `tls:NAME` name it.
    pub name: String,
    /// The name the certificate must be for (RFC 8310's authentication domain name), also sent
    /// as SNI. Default: the primary's address, which the certificate must then carry.
    pub server_name: Option<String>,
    /// PEM certificates trusted to issue it: a CA's, or the primary's own (relative paths from
    /// `state_dir`).
    pub ca_file: Option<PathBuf>,
    /// Base64 of the SHA-256 of its public key (SubjectPublicKeyInfo, RFC 7858's SPKI pin, as
    /// `kdig +tls-pin` and Knot's `cert-key` take it).
    pub pin: Option<String>,
}

fn default_algorithm() -> String {
    "hmac-sha256".to_string()
}

/// `[dns.zone."NAME"]`: a zone of the zones folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneSettings {
    /// Who may transfer this zone, instead of `[dns] allow_transfer`.
    #[serde(deserialize_with = "parsed")]
    pub allow_transfer: Vec<Rule>,
    /// Secondaries told of every new serial (RFC 1996): `"192.0.2.2:53"`, optionally with
    /// `key:NAME` to sign the NOTIFY.
    #[serde(deserialize_with = "parsed")]
    pub notify: Vec<Peer>,
    /// Answer HTTPS queries (RFC 9460) for the names the web edge serves in this zone with a
    /// record made from the edge's configuration (`Dns::set_https`), unless the zone file has
    /// its own HTTPS RRset at the name.
    pub https_records: bool,
    /// Sign the zone (DNSSEC): a key made on first start and kept in `state_dir`, DNSKEY, CDS
    /// and CDNSKEY at the apex, an NSEC chain and RRSIGs, kept signed through every edit.
    pub dnssec: bool,
    /// The algorithm of the key made: `"ecdsap256sha256"` (13, the default) or `"ed25519"` (15).
    pub dnssec_algorithm: crate::dnssec::Algorithm,
    /// The keys made: `"csk"` (one key signs everything, the default) or `"ksk-zsk"` (a KSK
    /// signs the DNSKEY set, a ZSK the rest).
    pub dnssec_keys: crate::dnssec::Scheme,
    /// How long a signature is valid for, in the zone file's TTL syntax (`"14d"`, as BIND's
    /// default policy).
    #[serde(deserialize_with = "period")]
    pub signature_validity: Option<u32>,
    /// How long before expiry a signature is made again (`"5d"`).
    #[serde(deserialize_with = "period")]
    pub signature_refresh: Option<u32>,
    /// The serial of a version made by re-signing: `"increment"` (the default) or
    /// `"unixtime"` (seconds since the epoch, or the next serial if that is not newer).
    pub serial_policy: crate::dnssec::SerialPolicy,
    /// Prove names absent with NSEC3 (RFC 5155, with RFC 9276's parameters: no salt, no extra
    /// iterations, no opt-out) rather than NSEC.
    pub nsec3: bool,
    /// How long a ZSK signs before a new one replaces it (`"30d"`, Knot's default; `"0"`:
    /// never). Only with `dnssec_keys = "ksk-zsk"`.
    #[serde(deserialize_with = "period")]
    pub zsk_lifetime: Option<u32>,
    /// How long a KSK or CSK serves before a new one replaces it (`"0"`, the default: never,
    /// as Knot's and BIND's default). Needs `dnssec_parent`: the old key leaves only once the
    /// parent serves the new one's DS.
    #[serde(deserialize_with = "period")]
    pub ksk_lifetime: Option<u32>,
    /// How long a change takes to reach every secondary, waited out with each TTL during a
    /// rollover (`"1h"`).
    #[serde(deserialize_with = "period")]
    pub propagation_delay: Option<u32>,
    /// The parent zone's servers (`"192.0.2.1:53"`), asked for the new KSK's or CSK's DS during
    /// a rollover; all of them must serve it before the old key leaves.
    #[serde(deserialize_with = "parsed")]
    pub dnssec_parent: Vec<Peer>,
    /// How often they are asked (`"1h"`, as Knot's `check-interval`).
    #[serde(deserialize_with = "period")]
    pub parent_check_interval: Option<u32>,
}

/// A period in the zone file's TTL syntax: `"14d"`, `"1h30m"`, `"3600"`.
fn period<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::zone::load::rdata::parse_ttl(text.as_bytes())
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!("{text:?}: a period such as \"14d\" or \"12h\""))
        })
}

impl ZoneSettings {
    /// How the zone is signed, if it is.
    pub fn dnssec_policy(&self) -> Option<crate::dnssec::Policy> {
        let default = crate::dnssec::Validity::default();
        let schedule = crate::dnssec::Schedule::default();
        self.dnssec.then(|| crate::dnssec::Policy {
            algorithm: self.dnssec_algorithm,
            scheme: self.dnssec_keys,
            validity: crate::dnssec::Validity {
                lifetime: self.signature_validity.unwrap_or(default.lifetime),
                refresh: self.signature_refresh.unwrap_or(default.refresh),
            },
            serial: self.serial_policy,
            denial: if self.nsec3 {
                crate::dnssec::Denial::Nsec3
            } else {
                crate::dnssec::Denial::Nsec
            },
            schedule: crate::dnssec::Schedule {
                zsk_lifetime: self.zsk_lifetime.unwrap_or(schedule.zsk_lifetime),
                ksk_lifetime: self.ksk_lifetime.unwrap_or(schedule.ksk_lifetime),
                propagation_delay: self.propagation_delay.unwrap_or(schedule.propagation_delay),
            },
            parents: self.dnssec_parent.iter().map(|peer| peer.address).collect(),
            parent_check: self.parent_check_interval.unwrap_or(3600),
        })
    }
}

/// `[[dns.secondary]]`: a zone transferred from its primaries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secondary {
    pub zone: String,
    /// Tried in order: `"192.0.2.1:53"`, or over TLS `"192.0.2.1:853 tls:NAME"` with a
    /// `[[dns.tls_auth]]` of that name (SOA queries and transfers then go over TLS).
    #[serde(deserialize_with = "parsed")]
    pub primaries: Vec<Peer>,
    /// The TSIG key that signs requests to the primaries and their NOTIFY.
    pub key: Option<String>,
    /// Who may transfer it from us in turn, instead of `[dns] allow_transfer`.
    #[serde(default, deserialize_with = "parsed")]
    pub allow_transfer: Vec<Rule>,
    /// Our own secondaries, told of each new serial.
    #[serde(default, deserialize_with = "parsed")]
    pub notify: Vec<Peer>,
}

/// A list of strings, each parsed (rules, peers).
fn parsed<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err: std::fmt::Display>,
{
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| text.parse().map_err(serde::de::Error::custom))
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
