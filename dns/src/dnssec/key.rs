//! A zone's signing keys: made on first use, kept in `state_dir`, and their DNSKEY, key tag and
//! DS (RFC 4034 sections 2, 5 and appendix B).
//!
//! The crypto is `ring`'s. The key file is this server's own small TOML (algorithm, flags,
//! creation time, PKCS#8 in base64) rather than BIND's `K*.private` format: the keys are the
//! server's to keep, and the DS is printed for the registrar by `foobar dnssec ds`.

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use serde::{Deserialize, Serialize};

use crate::wire::name;

/// DNSKEY flags of a key the parent's DS points at (a KSK, or a CSK that signs the whole
/// zone): Zone Key and Secure Entry Point.
pub const CSK_FLAGS: u16 = 257;
/// DNSKEY flags of a key that signs the zone's data (a ZSK): Zone Key only.
pub const ZSK_FLAGS: u16 = 256;

/// Which keys a zone has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum Scheme {
    /// One key signs everything (a CSK), as BIND's default policy has it.
    #[default]
    #[serde(rename = "csk")]
    Csk,
    /// A KSK signs the DNSKEY set (the parent's DS points at it), a ZSK the rest.
    #[serde(rename = "ksk-zsk")]
    KskZsk,
}

/// The DNSSEC algorithms keys are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, algorithm 13 (RFC 6605): the default, as Knot's and BIND's.
    #[default]
    Ecdsap256sha256,
    /// Ed25519, algorithm 15 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    /// The number in DNSKEY, RRSIG and DS records.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::Ecdsap256sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    fn from_number(number: u8) -> Option<Algorithm> {
        match number {
            13 => Some(Algorithm::Ecdsap256sha256),
            15 => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

/// Why a key could not be made, read or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file or its folder.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// A key file that does not read as one.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system's randomness or the key generation failed.
    #[error("making a key: {0}")]
    Generate(ring::error::Unspecified),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(ring::error::Unspecified),
}

/// The private half, as `ring` signs with it.
enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One signing key of a zone.
#[derive(Clone)]
pub struct Key {
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Its DNSKEY flags.
    pub flags: u16,
    /// When it was made, in seconds since the epoch.
    pub created: u64,
    /// Its timeline (RFC 7583): when it is published, signs, stops and goes.
    pub times: Times,
    /// The DNSKEY RDATA.
    pub dnskey: Vec<u8>,
    /// Its key tag.
    pub tag: u16,
    pair: std::sync::Arc<Pair>,
    /// The private key as it is kept (ring gives no way back to it from the pair).
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// A key's timeline, in seconds since the epoch (RFC 7583's terms): what [`super::roll`]
/// plans and signing follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Times {
    /// Its DNSKEY is in the zone from then.
    pub publish: u64,
    /// It signs the zone's data (a ZSK, a CSK) from then.
    pub active: u64,
    /// For a key the parent points at: CDS and CDNSKEY name it from then, once its DNSKEY is in
    /// every cache (absent: from `active`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<u64>,
    /// It signs until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<u64>,
    /// Its DNSKEY leaves the zone then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<u64>,
    /// When the parent's servers were all seen serving its DS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_seen: Option<u64>,
}

impl Times {
    /// A key published and signing from `at` on.
    pub fn from(at: u64) -> Times {
        Times {
            publish: at,
            active: at,
            ..Times::default()
        }
    }

    /// Whether its DNSKEY is in the zone at `now`.
    pub fn published(&self, now: u64) -> bool {
        self.publish <= now && self.remove.is_none_or(|remove| now < remove)
    }

    /// Whether it signs the zone's data at `now`: between `active` and `retire`, published or
    /// not (an algorithm rollover signs with the new keys before they are published, and with
    /// the old ones after they are gone, RFC 6781 section 4.1.4).
    pub fn signs(&self, now: u64) -> bool {
        self.active <= now && self.retire.is_none_or(|retire| now < retire)
    }

    /// Whether it signs the DNSKEY set (a KSK or CSK) at `now`: from when it is published or
    /// signs, whichever comes first, to when it neither is nor does.
    pub fn signs_keys(&self, now: u64) -> bool {
        self.publish.min(self.active) <= now && (self.published(now) || self.signs(now))
    }

    /// When CDS and CDNSKEY may name it.
    pub fn ready_at(&self) -> u64 {
        self.ready.unwrap_or(self.active)
    }

    /// When it has left the zone altogether (no DNSKEY, no signature), if that is planned.
    pub fn gone_at(&self) -> Option<u64> {
        self.remove
            .map(|remove| remove.max(self.retire.unwrap_or(remove)))
    }

    /// Its events, as (what, when).
    pub fn events(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("publish", Some(self.publish)),
            ("active", Some(self.active)),
            ("ready", self.ready),
            ("retire", self.retire),
            ("remove", self.remove),
        ]
        .into_iter()
        .filter_map(|(what, at)| Some((what, at?)))
    }
}

/// The key file's contents.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    algorithm: u8,
    flags: u16,
    created: u64,
    /// Absent in files made before keys rolled: published and active since `created`.
    #[serde(default)]
    times: Option<Times>,
    /// The private key, PKCS#8 DER in base64.
    pkcs8: String,
}

impl Key {
    /// A new key, not yet kept anywhere.
    pub fn generate(algorithm: Algorithm, flags: u16, created: u64) -> Result<Key, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            Algorithm::Ecdsap256sha256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(KeyError::Generate)?;
        Key::from_pkcs8(
            algorithm,
            flags,
            created,
            Times::from(created),
            pkcs8.as_ref(),
        )
        .map_err(|_| KeyError::Generate(ring::error::Unspecified))
    }

    fn from_pkcs8(
        algorithm: Algorithm,
        flags: u16,
        created: u64,
        times: Times,
        pkcs8: &[u8],
    ) -> Result<Key, ring::error::KeyRejected> {
        let rng = SystemRandom::new();
        let (pair, public) = match algorithm {
            Algorithm::Ecdsap256sha256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)?;
                // RFC 6605 section 4: the point without its leading 0x04.
                let public = pair.public_key().as_ref()[1..].to_vec();
                (Pair::Ecdsa(pair), public)
            }
            Algorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8)?;
                let public = pair.public_key().as_ref().to_vec();
                (Pair::Ed25519(pair), public)
            }
        };
        let mut dnskey = Vec::with_capacity(4 + public.len());
        dnskey.extend_from_slice(&flags.to_be_bytes());
        dnskey.push(3);
        dnskey.push(algorithm.number());
        dnskey.extend_from_slice(&public);
        Ok(Key {
            algorithm,
            flags,
            created,
            times,
            tag: key_tag(&dnskey),
            dnskey,
            pair: std::sync::Arc::new(pair),
            pkcs8: pkcs8.to_vec(),
            rng,
        })
    }

    /// Whether the parent's DS points at it (the SEP flag: a KSK or a CSK).
    pub fn is_sep(&self) -> bool {
        self.flags & 1 == 1
    }

    /// What it signs: `csk` (everything) when it is the zone's only kind of key, else `ksk`
    /// (the DNSKEY set) or `zsk` (the rest).
    pub fn role(&self, keys: &[Key]) -> &'static str {
        let split = keys.iter().any(|key| !key.is_sep());
        match (self.is_sep(), split) {
            (true, false) => "csk",
            (true, true) => "ksk",
            (false, _) => "zsk",
        }
    }

    /// Signs `data`: the signature as RRSIG carries it (`r || s` for ECDSA, RFC 6605).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &*self.pair {
            Pair::Ecdsa(pair) => pair
                .sign(&self.rng, data)
                .map(|s| s.as_ref().to_vec())
                .map_err(KeyError::Sign),
            Pair::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }

    /// The DS RDATA for this key at `owner` (wire form), SHA-256 (digest type 2).
    pub fn ds(&self, owner: &[u8]) -> Vec<u8> {
        self.ds_with(owner, 2).unwrap_or_default()
    }

    /// The DS RDATA for this key at `owner` with digest type `digest`: 2 (SHA-256) or 4
    /// (SHA-384); `None` for another.
    pub fn ds_with(&self, owner: &[u8], digest: u8) -> Option<Vec<u8>> {
        let algorithm = match digest {
            2 => &ring::digest::SHA256,
            4 => &ring::digest::SHA384,
            _ => return None,
        };
        let mut data = name::lowercase(owner);
        data.extend_from_slice(&self.dnskey);
        let hash = ring::digest::digest(algorithm, &data);
        let mut ds = Vec::with_capacity(4 + hash.as_ref().len());
        ds.extend_from_slice(&self.tag.to_be_bytes());
        ds.push(self.algorithm.number());
        ds.push(digest);
        ds.extend_from_slice(hash.as_ref());
        Some(ds)
    }

    /// The DS in presentation format, as a registrar takes it: `TAG ALG 2 HEX`.
    pub fn ds_text(&self, owner: &[u8]) -> String {
        let ds = self.ds(owner);
        format!(
            "{} {} 2 {}",
            self.tag,
            self.algorithm.number(),
            data_encoding::HEXUPPER.encode(&ds[4..])
        )
    }
}

/// The keys that sign a zone's data (all but its DNSKEY set) at `now`: its active ZSKs, else
/// (a zone with no ZSK) its active CSKs. Never none while the zone has a key: the newest of the
/// kind signs if none is active by its timeline.
pub fn zone_signing(keys: &[Key], now: u64) -> Vec<&Key> {
    let split = keys.iter().any(|key| !key.is_sep());
    let kind = || keys.iter().filter(move |key| key.is_sep() != split);
    let signing: Vec<&Key> = kind().filter(|key| key.times.signs(now)).collect();
    if signing.is_empty() {
        kind()
            .max_by_key(|key| key.times.active)
            .into_iter()
            .collect()
    } else {
        signing
    }
}

/// The KSKs or CSKs the parent is to point at, at `now` (what CDS and CDNSKEY name): of those
/// published and ready, the newest (a rollover's new key replaces the old one there), else the
/// newest of all.
pub fn entry_points(keys: &[Key], now: u64) -> Vec<&Key> {
    let sep = || keys.iter().filter(|key| key.is_sep());
    let ready = || {
        sep().filter(|key| {
            let times = &key.times;
            times.published(now)
                && times.ready_at() <= now
                && times.retire.is_none_or(|retire| now < retire)
        })
    };
    match ready().map(|key| key.times.ready_at()).max() {
        Some(newest) => ready()
            .filter(|key| key.times.ready_at() == newest)
            .collect(),
        None => sep()
            .max_by_key(|key| key.times.ready_at())
            .into_iter()
            .collect(),
    }
}

/// RFC 4034 appendix B: the key tag of a DNSKEY RDATA.
pub fn key_tag(dnskey: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, byte) in dnskey.iter().enumerate() {
        sum += if i % 2 == 0 {
            u32::from(*byte) << 8
        } else {
            u32::from(*byte)
        };
    }
    sum += (sum >> 16) & 0xFFFF;
    (sum & 0xFFFF) as u16
}

/// The folder of a zone's keys: `<state_dir>/dns/keys/<zone>` (the zone without its final dot).
pub fn folder(state_dir: &Path, zone: &str) -> PathBuf {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    state_dir
        .join("dns/keys")
        .join(if zone.is_empty() { "." } else { &zone })
}

/// The zone's keys in `folder`, oldest first; a CSK of `algorithm` is made and kept when there
/// is none.
pub fn load_or_create(
    folder: &Path,
    algorithm: Algorithm,
    scheme: Scheme,
    now: u64,
) -> Result<Vec<Key>, KeyError> {
    let mut keys = load(folder)?;
    let mut wanted = Vec::new();
    if !keys.iter().any(Key::is_sep) {
        wanted.push(CSK_FLAGS);
    }
    if scheme == Scheme::KskZsk && !keys.iter().any(|key| !key.is_sep()) {
        wanted.push(ZSK_FLAGS);
    }
    for flags in wanted {
        let key = Key::generate(algorithm, flags, now)?;
        store(folder, &key)?;
        keys.push(key);
    }
    Ok(keys)
}

/// `keys` as their files are kept (name, bytes): what the nodes of a cluster share.
pub fn files(keys: &[Key]) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    keys.iter()
        .map(|key| kept_form(key).map(|(name, text)| (name, text.into_bytes())))
        .collect()
}

/// Makes `folder` hold exactly the key files `files` (as [`files`] gives them): the keys the
/// nodes of a cluster share. Each is checked to read as a key before anything is written.
pub fn replace_files(folder: &Path, files: &[(String, Vec<u8>)]) -> Result<(), KeyError> {
    let mut keys = Vec::new();
    for (name, bytes) in files {
        let path = folder.join(name);
        let malformed = |reason: String| KeyError::Malformed {
            path: path.clone(),
            reason,
        };
        if !name.ends_with(".key") || name.contains('/') {
            return Err(malformed("not a key file name".to_string()));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| malformed(e.to_string()))?;
        keys.push(parse(&path, text)?);
    }
    let wanted: Vec<String> = keys
        .iter()
        .map(|key| kept_form(key).map(|(name, _)| name))
        .collect::<Result<_, _>>()?;
    for key in &keys {
        store(folder, key)?;
    }
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".key") && !wanted.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// The keys kept in `folder` (none if it does not exist), oldest first.
pub fn load(folder: &Path) -> Result<Vec<Key>, KeyError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(KeyError::Io {
                path: folder.to_path_buf(),
                error,
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "key") {
            keys.push(read(&path)?);
        }
    }
    keys.sort_by_key(|key| (key.created, key.tag));
    Ok(keys)
}

fn read(path: &Path) -> Result<Key, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    parse(path, &text)
}

/// A key file's text (`path` for messages).
fn parse(path: &Path, text: &str) -> Result<Key, KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let stored: Stored = toml::from_str(text).map_err(|e| malformed(e.to_string()))?;
    let algorithm = Algorithm::from_number(stored.algorithm).ok_or_else(|| {
        malformed(format!(
            "algorithm {} is not one made here",
            stored.algorithm
        ))
    })?;
    let pkcs8 = BASE64
        .decode(stored.pkcs8.as_bytes())
        .map_err(|e| malformed(format!("pkcs8: {e}")))?;
    let times = stored.times.unwrap_or(Times::from(stored.created));
    Key::from_pkcs8(algorithm, stored.flags, stored.created, times, &pkcs8)
        .map_err(|e| malformed(format!("pkcs8: {e}")))
}

/// A key's file name and text, as it is kept.
fn kept_form(key: &Key) -> Result<(String, String), KeyError> {
    let name = format!("{}-{}.key", key.tag, key.algorithm.number());
    let stored = Stored {
        algorithm: key.algorithm.number(),
        flags: key.flags,
        created: key.created,
        times: Some(key.times),
        pkcs8: BASE64.encode(&key.pkcs8),
    };
    let text = toml::to_string(&stored).map_err(|e| KeyError::Malformed {
        path: PathBuf::from(&name),
        reason: e.to_string(),
    })?;
    Ok((name, text))
}

fn store(folder: &Path, key: &Key) -> Result<(), KeyError> {
    let (name, text) = kept_form(key)?;
    let path = folder.join(name);
    foobar_state::write(&path, text.as_bytes(), foobar_state::Access::Private)
        .map_err(|error| KeyError::Io { path, error })
}
