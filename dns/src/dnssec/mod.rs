//! DNSSEC: the keys of the zones that are signed here (`key`), their rollovers (`roll`), and
//! signing (`sign`).
//!
//! A zone with `dnssec = true` in its `[dns.zone."NAME"]` settings is signed each time a version
//! of it is made to serve (its file loaded, records added at run time): the records the file
//! holds, its DNSKEYs, CDS and CDNSKEY at the apex, an NSEC chain and RRSIGs. The answers then
//! carry signatures and denial proofs to clients that ask (DO), from `answer`.

pub mod key;
pub mod nsec3;
pub mod roll;
pub mod sign;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::info;

pub use self::{
    key::{Algorithm, Key, KeyError, Scheme},
    roll::{Schedule, Ttls},
    sign::{Denial, SignError, Validity},
};
use crate::{
    wire::name,
    zone::{
        Zone,
        catalog::{DnssecStatus, KeyStatus, SignFailed, Signed, Signer},
    },
};

/// How one zone is signed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// The algorithm of the keys made for it.
    pub algorithm: Algorithm,
    /// A CSK, or a KSK and a ZSK.
    pub scheme: Scheme,
    /// Signature lifetime and refresh.
    pub validity: Validity,
    /// The serial of a version made by re-signing.
    pub serial: SerialPolicy,
    /// NSEC or NSEC3.
    pub denial: Denial,
    /// When keys roll.
    pub schedule: Schedule,
    /// The parent zone's servers, asked for the DS of a new KSK or CSK before the old one
    /// leaves.
    pub parents: Vec<SocketAddr>,
    /// How often they are asked, in seconds.
    pub parent_check: u32,
}

/// How the serial moves when the zone is signed again with no edit (signatures refreshed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialPolicy {
    /// The next serial.
    #[default]
    Increment,
    /// The time in seconds since the epoch, or the next serial where that is not newer.
    Unixtime,
}

impl SerialPolicy {
    /// The serial after `serial` at `now`.
    pub fn next(self, serial: u32, now: u64) -> u32 {
        let next = serial.wrapping_add(1);
        match self {
            SerialPolicy::Increment => next,
            SerialPolicy::Unixtime => {
                let time = now as u32;
                if crate::zone::serial_newer(time, serial) {
                    time
                } else {
                    next
                }
            }
        }
    }
}

/// The zones signed here, by origin key, with their keys once loaded.
#[derive(Debug)]
pub struct Signing {
    state_dir: PathBuf,
    policies: HashMap<Vec<u8>, Policy>,
    zones: Mutex<HashMap<Vec<u8>, ZoneKeys>>,
    /// Whether this node moves the keys on (makes successors, removes keys, records the
    /// parent's DS). In a cluster only the node holding the keys' lease does; the others take
    /// its keys from the database.
    plans: AtomicBool,
    /// Told each time this node changes key files (the planner shares them at once).
    changed: Arc<tokio::sync::Notify>,
}

/// One signed zone's keys and what its signing last saw.
#[derive(Debug)]
struct ZoneKeys {
    /// The zone, wire form.
    origin: Vec<u8>,
    keys: Arc<Vec<Key>>,
    /// When it was last signed.
    signed_at: u64,
    /// Its TTLs then.
    ttls: Ttls,
    /// When its parent's servers were last asked for a DS.
    parent_checked: u64,
}

/// A new KSK or CSK whose DS the parent's servers are to be asked for.
#[derive(Debug, Clone)]
pub struct DsCheck {
    /// The zone, wire form.
    pub origin: Vec<u8>,
    /// The key's tag.
    pub tag: u16,
    /// The DS RDATA that point at it (SHA-256 and SHA-384).
    pub wanted: Vec<Vec<u8>>,
    /// The parent's servers: all must serve one of them.
    pub parents: Vec<SocketAddr>,
}

impl Signing {
    /// Signing for the zones of `policies` (origins in wire form), with keys under `state_dir`.
    pub fn new(state_dir: &Path, policies: impl IntoIterator<Item = (Vec<u8>, Policy)>) -> Self {
        Signing {
            state_dir: state_dir.to_path_buf(),
            policies: policies
                .into_iter()
                .map(|(origin, policy)| (name::key_of(&origin), policy))
                .collect(),
            zones: Mutex::default(),
            plans: AtomicBool::new(true),
            changed: Arc::default(),
        }
    }

    /// How the zone `origin_key` is signed, if it is signed here.
    pub fn policy(&self, origin_key: &[u8]) -> Option<&Policy> {
        self.policies.get(origin_key)
    }

    /// Whether this node moves the keys on; a node that does not only signs with the keys it
    /// is given (see [`Signing::reload_keys`]).
    pub fn set_planning(&self, plans: bool) {
        self.plans.store(plans, Ordering::Relaxed);
    }

    /// Told each time this node changes the key files of a zone (a rollover's step).
    pub fn changes(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    /// Whether this node moves the keys on.
    pub fn planning(&self) -> bool {
        self.plans.load(Ordering::Relaxed)
    }

    fn folder(&self, origin: &[u8]) -> PathBuf {
        key::folder(&self.state_dir, &name::to_text(origin))
    }

    /// The zones' entries, locked, with the one of `origin` loaded (its keys read from
    /// `state_dir`, or made and kept there the first time).
    fn entry<'a>(
        &self,
        zones: &'a mut HashMap<Vec<u8>, ZoneKeys>,
        origin: &[u8],
    ) -> Result<&'a mut ZoneKeys, KeyError> {
        let origin_key = name::key_of(origin);
        if !zones.contains_key(&origin_key) {
            let policy = self.policies.get(&origin_key).cloned().unwrap_or_default();
            let keys =
                key::load_or_create(&self.folder(origin), policy.algorithm, policy.scheme, now())?;
            zones.insert(
                origin_key.clone(),
                ZoneKeys {
                    origin: origin.to_vec(),
                    keys: Arc::new(keys),
                    signed_at: 0,
                    ttls: Ttls::default(),
                    parent_checked: 0,
                },
            );
        }
        zones
            .get_mut(&origin_key)
            .ok_or_else(|| KeyError::Malformed {
                path: self.folder(origin),
                reason: "the zone's keys were not kept".to_string(),
            })
    }

    /// The keys of the zone `origin` (wire form): loaded from `state_dir`, or made and kept there
    /// the first time.
    pub fn keys(&self, origin: &[u8]) -> Result<Arc<Vec<Key>>, KeyError> {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(self.entry(&mut zones, origin)?.keys.clone())
    }

    /// Reads the keys of `origin` again from `state_dir` (another node's, taken from the
    /// database): the zone is due to be signed with them.
    pub fn reload_keys(&self, origin: &[u8]) -> Result<(), KeyError> {
        let keys = key::load(&self.folder(origin))?;
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = zones.get_mut(&name::key_of(origin)) {
            entry.keys = Arc::new(keys);
            entry.signed_at = 0;
        }
        Ok(())
    }

    /// The keys of `origin` moved on to `now` (when this node plans), kept in `state_dir`.
    fn planned_keys(
        &self,
        origin: &[u8],
        policy: &Policy,
        ttls: Ttls,
        now: u64,
    ) -> Result<Arc<Vec<Key>>, KeyError> {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = self.entry(&mut zones, origin)?;
        if !self.plans.load(Ordering::Relaxed) {
            return Ok(entry.keys.clone());
        }
        let mut keys = entry.keys.to_vec();
        let steps = roll::plan(&mut keys, &policy.schedule, ttls, now)?;
        if !steps.is_empty() {
            key::replace_files(&self.folder(origin), &key::files(&keys)?)?;
            for step in &steps {
                info!(zone = %name::to_text(origin), "DNSSEC {step}");
            }
            entry.keys = Arc::new(keys);
            self.changed.notify_one();
        }
        Ok(entry.keys.clone())
    }

    /// Starts an algorithm rollover of the zone `origin` to `algorithm` at `now`; what it did,
    /// for the log and the operator. Only the node that plans the keys can.
    pub fn start_algorithm_rollover(
        &self,
        origin: &[u8],
        algorithm: Algorithm,
        now: u64,
    ) -> Result<Vec<String>, roll::RolloverError> {
        let policy = self
            .policies
            .get(&name::key_of(origin))
            .ok_or(roll::RolloverError::NotSigned)?;
        if !self.planning() {
            return Err(roll::RolloverError::NotPlanner);
        }
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = self.entry(&mut zones, origin)?;
        let mut keys = entry.keys.to_vec();
        let steps = roll::start_algorithm(&mut keys, algorithm, &policy.schedule, entry.ttls, now)?;
        key::replace_files(&self.folder(origin), &key::files(&keys)?)?;
        let said: Vec<String> = steps.iter().map(ToString::to_string).collect();
        for step in &said {
            info!(zone = %name::to_text(origin), "DNSSEC {step}");
        }
        entry.keys = Arc::new(keys);
        entry.signed_at = 0;
        self.changed.notify_one();
        Ok(said)
    }

    /// The KSK or CSK rollovers waiting for the parent's DS whose parent servers are due to be
    /// asked at `now` (each zone at most once per its `parent_check`).
    pub fn ds_checks(&self, now: u64) -> Vec<DsCheck> {
        if !self.plans.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let mut checks = Vec::new();
        for (origin_key, entry) in zones.iter_mut() {
            let Some(policy) = self.policies.get(origin_key) else {
                continue;
            };
            if policy.parents.is_empty()
                || entry.parent_checked + u64::from(policy.parent_check) > now
            {
                continue;
            }
            let Some(new) = roll::awaiting_ds(&entry.keys, now) else {
                continue;
            };
            let origin = entry.origin.clone();
            entry.parent_checked = now;
            checks.push(DsCheck {
                wanted: [2, 4]
                    .into_iter()
                    .filter_map(|digest| new.ds_with(&origin, digest))
                    .collect(),
                origin,
                tag: new.tag,
                parents: policy.parents.clone(),
            });
        }
        checks
    }

    /// When the next [`Signing::ds_checks`] is due, if a rollover waits for the parent.
    pub fn next_ds_check(&self, now: u64) -> Option<u64> {
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones
            .iter()
            .filter_map(|(origin_key, entry)| {
                let policy = self.policies.get(origin_key)?;
                (!policy.parents.is_empty() && roll::awaiting_ds(&entry.keys, now).is_some())
                    .then(|| entry.parent_checked + u64::from(policy.parent_check))
            })
            .min()
    }

    /// Records that the parent's servers all serve the DS of key `tag` of `origin`, with TTL
    /// `ds_ttl`, at `now`: the key it replaces is scheduled to leave.
    pub fn ds_seen(&self, origin: &[u8], tag: u16, ds_ttl: u32, now: u64) -> Result<(), KeyError> {
        let Some(policy) = self.policies.get(&name::key_of(origin)) else {
            return Ok(());
        };
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = self.entry(&mut zones, origin)?;
        let mut keys = entry.keys.to_vec();
        if roll::ds_seen(&mut keys, tag, now, ds_ttl, entry.ttls, &policy.schedule) {
            key::replace_files(&self.folder(origin), &key::files(&keys)?)?;
            for key in keys.iter().filter(|key| key.tag != tag && key.is_sep()) {
                if let Some(remove) = key.times.remove {
                    info!(zone = %name::to_text(origin), new = tag, old = key.tag, remove, "DNSSEC: the parent serves the new key's DS; the old key leaves once the old DS is gone from caches");
                }
            }
            entry.keys = Arc::new(keys);
            self.changed.notify_one();
        }
        Ok(())
    }
}

/// What a rollover waits on in `zone`: the DNSKEY set's TTL (the SOA's, as signing gives it)
/// and the largest TTL of its records.
fn zone_ttls(zone: &Zone) -> Ttls {
    let dnskey = crate::zone::soa(zone).map_or(0, |soa| soa.ttl);
    let max = zone
        .nodes()
        .flat_map(|node| zone.rrsets(node).map(|set| set.ttl))
        .chain([zone.negative_ttl(), dnskey])
        .max()
        .unwrap_or(0);
    Ttls { dnskey, max }
}

impl Signer for Signing {
    fn signs(&self, origin_key: &[u8]) -> bool {
        self.policies.contains_key(origin_key)
    }

    fn sign(&self, zone: &Zone, previous: Option<&Zone>) -> Option<Result<Signed, SignFailed>> {
        let policy = self.policies.get(zone.origin_key())?;
        let now = now();
        let ttls = zone_ttls(zone);
        let signed = self
            .planned_keys(zone.origin(), policy, ttls, now)
            .map_err(SignError::from)
            .and_then(|keys| {
                let how = (policy.validity, policy.denial);
                sign::sign_zone(zone, &keys, how, now, previous)
            });
        if signed.is_ok() {
            let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = zones.get_mut(zone.origin_key()) {
                entry.signed_at = now;
                entry.ttls = ttls;
            }
        }
        Some(signed.map_err(SignFailed::from))
    }

    fn due(&self, origin_key: &[u8], expires: u64) -> Option<u64> {
        let policy = self.policies.get(origin_key)?;
        let refresh = expires.saturating_sub(u64::from(policy.validity.refresh));
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let key_event = zones
            .get(origin_key)
            .and_then(|entry| roll::next_event(&entry.keys, &policy.schedule, entry.signed_at));
        Some(key_event.map_or(refresh, |event| event.min(refresh)))
    }

    fn next_serial(&self, origin_key: &[u8], serial: u32, now: u64) -> u32 {
        let policy = self.policies.get(origin_key).cloned().unwrap_or_default();
        policy.serial.next(serial, now)
    }

    fn expires(&self, zone: &Zone, now: u64) -> Option<u64> {
        self.policies.get(zone.origin_key())?;
        sign::earliest_expiration(zone, now)
    }

    fn status(&self, origin: &[u8], expires: u64) -> Option<DnssecStatus> {
        let next_signing = self.due(&name::key_of(origin), expires)?;
        let keys = self.keys(origin).ok()?;
        let now = now();
        Some(DnssecStatus {
            keys: keys
                .iter()
                .map(|key| {
                    let next = roll::key_next_event(key, now);
                    KeyStatus {
                        tag: key.tag,
                        algorithm: key.algorithm.number(),
                        role: key.role(&keys),
                        state: roll::state(key, &keys, now),
                        created: key.created,
                        next_event: next.map(|(what, _)| what),
                        next_event_at: next.map(|(_, at)| at),
                    }
                })
                .collect(),
            signatures_expire: expires,
            next_signing,
        })
    }
}

/// The key files of `zone` (text, as `foobar.com`) kept in `state_dir`, as (name, bytes): what
/// the nodes of a cluster share. A key of `algorithm` is made first if there is none.
pub fn key_files(
    state_dir: &Path,
    zone: &str,
    algorithm: Algorithm,
    scheme: Scheme,
) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let folder = key::folder(state_dir, zone);
    key::files(&key::load_or_create(&folder, algorithm, scheme, now())?)
}

/// The key files of `zone` kept in `state_dir`, as [`key_files`] gives them, none made.
pub fn kept_key_files(state_dir: &Path, zone: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    key::files(&key::load(&key::folder(state_dir, zone))?)
}

/// Makes the keys of `zone` in `state_dir` exactly `files` (from [`key_files`] on another node).
pub fn replace_key_files(
    state_dir: &Path,
    zone: &str,
    files: &[(String, Vec<u8>)],
) -> Result<(), KeyError> {
    key::replace_files(&key::folder(state_dir, zone), files)
}

/// The DS records of the signed zone `zone` (text, as `foobar.com`), in zone-file form, for
/// the parent zone (a registrar): one per key kept in `state_dir`. Keys are only read here; the
/// server makes them at its first start with the zone signed.
pub fn ds_records(state_dir: &Path, zone: &str) -> Result<Vec<String>, DsError> {
    let origin = name::from_text(zone).map_err(|error| DsError::Name {
        zone: zone.to_string(),
        error,
    })?;
    let folder = key::folder(state_dir, zone);
    let keys = key::load(&folder)?;
    if keys.is_empty() {
        return Err(DsError::NoKeys(folder));
    }
    let owner = name::to_text(&origin);
    Ok(keys
        .iter()
        .filter(|key| key.is_sep())
        .map(|key| format!("{owner} IN DS {}", key.ds_text(&origin)))
        .collect())
}

/// Why the DS of a zone cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum DsError {
    /// The zone's name does not read.
    #[error("{zone:?}: {error}")]
    Name {
        /// As given.
        zone: String,
        /// Why.
        error: name::NameError,
    },
    /// A key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No key was made yet.
    #[error(
        "no key in {}: the server makes it when it first starts with the zone signed (dnssec = true)",
        .0.display()
    )]
    NoKeys(PathBuf),
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
