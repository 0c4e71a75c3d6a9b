//! DNSSEC: the keys of the zones that are signed here (`key`), and signing (`sign`).
//!
//! A zone with `dnssec = true` in its `[dns.zone."NAME"]` settings is signed each time a version
//! of it is made to serve (its file loaded, records added at run time): the records the file
//! holds, its DNSKEYs, CDS and CDNSKEY at the apex, an NSEC chain and RRSIGs. The answers then
//! carry signatures and denial proofs to clients that ask (DO), from `answer`.

pub mod key;
pub mod sign;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

pub use self::{
    key::{Algorithm, Key, KeyError, Scheme},
    sign::{SignError, Validity},
};
use crate::{
    wire::name,
    zone::{
        Zone,
        catalog::{DnssecStatus, KeyStatus, SignFailed, Signed, Signer},
    },
};

/// How one zone is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// The algorithm of the keys made for it.
    pub algorithm: Algorithm,
    /// A CSK, or a KSK and a ZSK.
    pub scheme: Scheme,
    /// Signature lifetime and refresh.
    pub validity: Validity,
    /// The serial of a version made by re-signing.
    pub serial: SerialPolicy,
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
    keys: Mutex<HashMap<Vec<u8>, Arc<Vec<Key>>>>,
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
            keys: Mutex::default(),
        }
    }

    /// How the zone `origin_key` is signed, if it is signed here.
    pub fn policy(&self, origin_key: &[u8]) -> Option<Policy> {
        self.policies.get(origin_key).copied()
    }

    /// The keys of the zone `origin` (wire form): loaded from `state_dir`, or made and kept there
    /// the first time.
    pub fn keys(&self, origin: &[u8]) -> Result<Arc<Vec<Key>>, KeyError> {
        let origin_key = name::key_of(origin);
        let policy = self.policies.get(&origin_key).copied().unwrap_or_default();
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = keys.get(&origin_key) {
            return Ok(found.clone());
        }
        let folder = key::folder(&self.state_dir, &name::to_text(origin));
        let loaded = Arc::new(key::load_or_create(
            &folder,
            policy.algorithm,
            policy.scheme,
            now(),
        )?);
        keys.insert(origin_key, loaded.clone());
        Ok(loaded)
    }
}

impl Signer for Signing {
    fn signs(&self, origin_key: &[u8]) -> bool {
        self.policies.contains_key(origin_key)
    }

    fn sign(&self, zone: &Zone, previous: Option<&Zone>) -> Option<Result<Signed, SignFailed>> {
        let policy = *self.policies.get(zone.origin_key())?;
        Some(
            self.keys(zone.origin())
                .map_err(SignError::from)
                .and_then(|keys| sign::sign_zone(zone, &keys, policy.validity, now(), previous))
                .map_err(SignFailed::from),
        )
    }

    fn due(&self, origin_key: &[u8], expires: u64) -> Option<u64> {
        let policy = self.policies.get(origin_key)?;
        Some(expires.saturating_sub(u64::from(policy.validity.refresh)))
    }

    fn next_serial(&self, origin_key: &[u8], serial: u32, now: u64) -> u32 {
        let policy = self.policies.get(origin_key).copied().unwrap_or_default();
        policy.serial.next(serial, now)
    }

    fn expires(&self, zone: &Zone, now: u64) -> Option<u64> {
        self.policies.get(zone.origin_key())?;
        sign::earliest_expiration(zone, now)
    }

    fn status(&self, origin: &[u8], expires: u64) -> Option<DnssecStatus> {
        let next_signing = self.due(&name::key_of(origin), expires)?;
        let keys = self.keys(origin).ok()?;
        Some(DnssecStatus {
            keys: keys
                .iter()
                .map(|key| KeyStatus {
                    tag: key.tag,
                    algorithm: key.algorithm.number(),
                    role: key.role(&keys),
                    state: "active",
                    created: key.created,
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
