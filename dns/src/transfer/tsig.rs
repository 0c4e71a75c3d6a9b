//! TSIG (RFC 8945): messages signed with a shared key, to authorise zone transfers and NOTIFY
//! by key rather than by address alone.
//!
//! ```text
//! request ──▶ TsigRecord::find (the last additional record) ──▶ Keyring::verify
//!               ├─ unknown key or algorithm ─▶ NOTAUTH, TSIG error BADKEY (unsigned)
//!               ├─ wrong MAC ───────────────▶ NOTAUTH, TSIG error BADSIG (unsigned)
//!               ├─ time outside the fudge ──▶ NOTAUTH, TSIG error BADTIME (signed, our time)
//!               └─ good ─▶ answer, signed with the request's MAC; a transfer's messages each
//!                          signed with the one before (section 5.3.1)
//! ```
//!
//! Written here: the signing is a few hashes over the message bytes this crate writes itself;
//! the DNS libraries that implement it sign their own message types. The HMACs come from ring,
//! and every MAC is compared in constant time.

use std::sync::Arc;
use subtle::ConstantTimeEq;

use ring::hmac;

use crate::{
    wire::Class,
    wire::bytes,
    wire::name::{self, NameError, wire_len},
    wire::read,
    wire::rtype,
};

/// The TSIG errors of RFC 8945 section 5.2 (in the TSIG record; the header says NOTAUTH).
pub mod error {
    /// No error.
    pub const NONE: u16 = 0;
    /// The MAC does not check out.
    pub const BADSIG: u16 = 16;
    /// The key or algorithm is not known.
    pub const BADKEY: u16 = 17;
    /// Signed at a time outside the fudge.
    pub const BADTIME: u16 = 18;
    /// The MAC was truncated too far.
    pub const BADTRUNC: u16 = 22;
}

/// Seconds of clock difference allowed, as every implementation uses (RFC 8945 section 10).
pub const FUDGE: u16 = 300;

/// A TSIG algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// By the name `tsig-keygen`, `keymgr` and the configuration use (`hmac-sha256`).
    pub fn from_name(text: &str) -> Option<Algorithm> {
        match text.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha1" => Some(Algorithm::HmacSha1),
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    /// The algorithm name on the wire.
    fn wire(self) -> Vec<u8> {
        name::wire(self.text())
    }

    pub fn text(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
            Algorithm::HmacSha384 => hmac::HMAC_SHA384,
            Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    fn mac_len(self) -> usize {
        self.ring().digest_algorithm().output_len()
    }
}

/// A shared key.
pub struct Key {
    /// The key's name in wire form, lower case.
    name: Vec<u8>,
    algorithm: Algorithm,
    key: hmac::Key,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &name::to_text(&self.name))
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key named `name` (presentation form), with its secret's bytes.
    pub fn new(name: &str, algorithm: Algorithm, secret: &[u8]) -> Result<Key, NameError> {
        let name = crate::wire::name::from_text(&name.to_ascii_lowercase())?;
        Ok(Key {
            name,
            algorithm,
            key: hmac::Key::new(algorithm.ring(), secret),
        })
    }

    /// The name as text, with the final dot.
    pub fn name(&self) -> String {
        name::to_text(&self.name)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The keys a server knows, by name.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<Arc<Key>>,
}

impl Keyring {
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of this name (text, any case, with or without the final dot).
    pub fn get(&self, name: &str) -> Option<Arc<Key>> {
        let wire = crate::wire::name::from_text(&name.to_ascii_lowercase()).ok()?;
        self.keys.iter().find(|key| key.name == wire).cloned()
    }

    fn by_wire(&self, wire: &[u8]) -> Option<&Arc<Key>> {
        self.keys
            .iter()
            .find(|key| name::eq_ignore_case(&key.name, wire))
    }

    /// Checks the TSIG of a request at `now` (seconds since the epoch).
    pub fn verify(&self, message: &[u8], record: &TsigRecord, now: u64) -> Result<Signed, Failure> {
        let failure = |error: u16, key: Option<Arc<Key>>| Failure {
            error,
            key,
            key_name: record.key_name.clone(),
            algorithm_name: record.algorithm.clone(),
            request_mac: record.mac.clone(),
            original_id: record.original_id,
        };
        let Some(key) = self
            .by_wire(&record.key_name)
            .filter(|key| name::eq_ignore_case(&key.algorithm.wire(), &record.algorithm))
        else {
            return Err(failure(error::BADKEY, None));
        };
        let full = key.algorithm.mac_len();
        // Truncated MACs (section 5.2.2.1): at least half, and at least 10 bytes.
        if record.mac.len() > full || record.mac.len() < (full / 2).max(10) {
            return Err(failure(error::BADSIG, None));
        }
        let digest = Digest::new(None, message.len())
            .unsigned(message, record)
            .variables(key, record.time, record.fudge, record.error, &record.other);
        let expected = hmac::sign(&key.key, &digest);
        if !bool::from(expected.as_ref()[..record.mac.len()].ct_eq(&record.mac)) {
            return Err(failure(error::BADSIG, None));
        }
        if record.time.abs_diff(now) > u64::from(record.fudge) {
            return Err(failure(error::BADTIME, Some(key.clone())));
        }
        Ok(Signed {
            key: key.clone(),
            mac: record.mac.clone(),
        })
    }
}

/// A request whose TSIG checked out: the key, and the MAC its response is signed over.
#[derive(Debug, Clone)]
pub struct Signed {
    pub key: Arc<Key>,
    pub mac: Vec<u8>,
}

/// A request whose TSIG did not check out, and what the answer must say.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: u16,
    /// The key, when it is known (BADTIME): the answer is then signed.
    pub key: Option<Arc<Key>>,
    key_name: Vec<u8>,
    algorithm_name: Vec<u8>,
    request_mac: Vec<u8>,
    original_id: u16,
}

impl Failure {
    /// Appends the answer's TSIG record to `message` (a NOTAUTH response to the request):
    /// unsigned for BADKEY and BADSIG, signed with our time for BADTIME.
    pub fn append(&self, message: &mut Vec<u8>, now: u64) {
        match &self.key {
            Some(key) => {
                // "Other data" is our time, so the client sees the difference (section 5.2.3).
                let other = time48(now);
                sign_with(
                    message,
                    key,
                    Some(&self.request_mac),
                    now,
                    self.error,
                    &other,
                );
            }
            None => {
                let mut rdata = self.algorithm_name.clone();
                rdata.extend_from_slice(&time48(now));
                rdata.extend_from_slice(&FUDGE.to_be_bytes());
                rdata.extend_from_slice(&0u16.to_be_bytes());
                rdata.extend_from_slice(&self.original_id.to_be_bytes());
                rdata.extend_from_slice(&self.error.to_be_bytes());
                rdata.extend_from_slice(&0u16.to_be_bytes());
                push_record(message, &self.key_name, &rdata);
            }
        }
    }
}

/// A TSIG record that is malformed or not the last record of its message (a FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The TSIG record of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigRecord {
    /// Where the record starts: the message before it is what was signed.
    pub start: usize,
    /// The key's name (the record's owner), wire form.
    pub key_name: Vec<u8>,
    /// The algorithm's name, wire form.
    pub algorithm: Vec<u8>,
    /// When it was signed, seconds since the epoch (48 bits).
    pub time: u64,
    /// Seconds of clock difference allowed.
    pub fudge: u16,
    /// The MAC.
    pub mac: Vec<u8>,
    /// The message's ID before any forwarder changed it.
    pub original_id: u16,
    /// The TSIG error (`error`).
    pub error: u16,
    /// Other data: the server's time with BADTIME.
    pub other: Vec<u8>,
}

impl TsigRecord {
    /// The TSIG record of `message`: `Ok(None)` without one, `Err` if it is malformed or not
    /// the last record (a FORMERR).
    pub fn find(message: &[u8]) -> Result<Option<TsigRecord>, Malformed> {
        let Some([_, an, ns, ar]) = read::counts(message) else {
            return Err(Malformed);
        };
        if ar == 0 {
            return Ok(None);
        }
        let mut at = read::after_question(message).ok_or(Malformed)?;
        let total = u32::from(an) + u32::from(ns) + u32::from(ar);
        for i in 0..total {
            let record = read::read_record(message, at).ok_or(Malformed)?;
            if record.rtype == rtype::TSIG {
                // Section 5.1: only as the last record, and of class ANY.
                if i + 1 != total || record.class != Class::ANY {
                    return Err(Malformed);
                }
                return parse_rdata(
                    at,
                    record.owner,
                    &message[record.end - record.rdata.len()..record.end],
                )
                .map(Some)
                .ok_or(Malformed);
            }
            at = record.end;
        }
        Ok(None)
    }
}

fn parse_rdata(start: usize, key_name: Vec<u8>, rdata: &[u8]) -> Option<TsigRecord> {
    let algorithm_len = wire_len(rdata)?;
    let algorithm = rdata[..algorithm_len].to_vec();
    let rest = rdata.get(algorithm_len..)?;
    let time = bytes::u48_at(rest, 0)?;
    let fudge = bytes::u16_at(rest, 6)?;
    let mac_len = usize::from(bytes::u16_at(rest, 8)?);
    let mac = rest.get(10..10 + mac_len)?.to_vec();
    let tail = rest.get(10 + mac_len..)?;
    let original_id = bytes::u16_at(tail, 0)?;
    let error = bytes::u16_at(tail, 2)?;
    let other_len = usize::from(bytes::u16_at(tail, 4)?);
    let other = tail.get(6..6 + other_len)?.to_vec();
    if tail.len() != 6 + other_len {
        return None;
    }
    Some(TsigRecord {
        start,
        key_name,
        algorithm,
        time,
        fudge,
        mac,
        original_id,
        error,
        other,
    })
}

/// What a MAC is computed over (RFC 8945 section 4.3), built one way for every case: the MAC
/// this one follows (a response's request MAC, or a stream's previous one), the message(s),
/// then all the TSIG variables, or only the timers for a stream's later messages.
struct Digest(Vec<u8>);

impl Digest {
    fn new(prior_mac: Option<&[u8]>, message_len: usize) -> Digest {
        let mut bytes = Vec::with_capacity(message_len + 128);
        if let Some(mac) = prior_mac {
            bytes.extend_from_slice(&(mac.len() as u16).to_be_bytes());
            bytes.extend_from_slice(mac);
        }
        Digest(bytes)
    }

    fn message(mut self, message: &[u8]) -> Digest {
        self.0.extend_from_slice(message);
        self
    }

    /// A message as signed: without its TSIG record (ARCOUNT one less), with its original ID.
    fn unsigned(mut self, message: &[u8], record: &TsigRecord) -> Digest {
        let start = self.0.len();
        self.0.extend_from_slice(&message[..record.start]);
        let header = &mut self.0[start..];
        header[..2].copy_from_slice(&record.original_id.to_be_bytes());
        let arcount = bytes::u16_at(header, 10).unwrap_or(0).saturating_sub(1);
        header[10..12].copy_from_slice(&arcount.to_be_bytes());
        self
    }

    /// Every TSIG variable (section 4.3.3).
    fn variables(mut self, key: &Key, time: u64, fudge: u16, error: u16, other: &[u8]) -> Vec<u8> {
        self.0.extend_from_slice(&key.name);
        self.0.extend_from_slice(&Class::ANY.to_be_bytes());
        self.0.extend_from_slice(&0u32.to_be_bytes());
        self.0.extend_from_slice(&key.algorithm.wire());
        self = self.timers_only(time, fudge);
        self.0.extend_from_slice(&error.to_be_bytes());
        self.0
            .extend_from_slice(&(other.len() as u16).to_be_bytes());
        self.0.extend_from_slice(other);
        self.0
    }

    /// Only the timers: a stream's messages after the first (section 5.3.1).
    fn timers(self, time: u64, fudge: u16) -> Vec<u8> {
        self.timers_only(time, fudge).0
    }

    fn timers_only(mut self, time: u64, fudge: u16) -> Digest {
        self.0.extend_from_slice(&time48(time));
        self.0.extend_from_slice(&fudge.to_be_bytes());
        self
    }
}

/// A time as TSIG carries it: 48 bits, seconds since the epoch.
fn time48(time: u64) -> [u8; 6] {
    let bytes = time.to_be_bytes();
    [bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]
}

/// Appends a TSIG record signed with `key` to `message` (a request when `request_mac` is
/// `None`, else the response to the request with that MAC); returns the MAC.
pub fn sign(message: &mut Vec<u8>, key: &Key, request_mac: Option<&[u8]>, now: u64) -> Vec<u8> {
    sign_with(message, key, request_mac, now, error::NONE, &[])
}

fn sign_with(
    message: &mut Vec<u8>,
    key: &Key,
    request_mac: Option<&[u8]>,
    now: u64,
    error: u16,
    other: &[u8],
) -> Vec<u8> {
    let digest = Digest::new(request_mac, message.len())
        .message(message)
        .variables(key, now, FUDGE, error, other);
    let mac = hmac::sign(&key.key, &digest);
    let id = [message[0], message[1]];
    append(message, key, now, mac.as_ref(), id, error, other);
    mac.as_ref().to_vec()
}

/// Why a signed response (to a query of ours) cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsigError {
    #[error("malformed TSIG record")]
    Malformed,
    #[error("unsigned response")]
    Unsigned,
    #[error("signed with key {used} instead of {expected}")]
    OtherKey { used: String, expected: String },
    #[error("TSIG error {0}")]
    Error(u16),
    #[error("bad signature")]
    BadSignature,
    #[error("signed at a time outside the fudge")]
    Time,
}

/// Signs the messages of one response in turn (a zone transfer, section 5.3.1): each MAC covers
/// the previous one, the message, and the time.
#[derive(Debug)]
pub struct StreamSigner {
    key: Arc<Key>,
    previous: Vec<u8>,
    first: bool,
}

impl StreamSigner {
    pub fn new(signed: &Signed) -> StreamSigner {
        StreamSigner {
            key: signed.key.clone(),
            previous: signed.mac.clone(),
            first: true,
        }
    }

    pub fn sign(&mut self, message: &mut Vec<u8>, now: u64) {
        if self.first {
            self.first = false;
            self.previous = sign(message, &self.key, Some(&self.previous), now);
            return;
        }
        let digest = Digest::new(Some(&self.previous), message.len())
            .message(message)
            .timers(now, FUDGE);
        let mac = hmac::sign(&self.key.key, &digest);
        let id = [message[0], message[1]];
        append(message, &self.key, now, mac.as_ref(), id, error::NONE, &[]);
        self.previous = mac.as_ref().to_vec();
    }
}

/// Checks the messages of a signed response in turn, as a client (a secondary): the first
/// over the request's MAC, each next over the one before. RFC 8945 lets a server sign only
/// every few messages; unsigned ones in between are taken into the next digest.
#[derive(Debug)]
pub struct StreamVerifier {
    key: Arc<Key>,
    previous: Vec<u8>,
    first: bool,
    /// Unsigned messages since the last signed one.
    pending: Vec<u8>,
    unsigned: usize,
}

impl StreamVerifier {
    pub fn new(key: Arc<Key>, request_mac: Vec<u8>) -> StreamVerifier {
        StreamVerifier {
            key,
            previous: request_mac,
            first: true,
            pending: Vec::new(),
            unsigned: 0,
        }
    }

    /// Checks one message; `Err` says why it cannot be trusted.
    pub fn verify(&mut self, message: &[u8], now: u64) -> Result<(), TsigError> {
        let record = TsigRecord::find(message).map_err(|Malformed| TsigError::Malformed)?;
        let Some(record) = record else {
            // Section 5.3.1: the first and at least every hundredth message are signed.
            if self.first || self.unsigned >= 99 {
                return Err(TsigError::Unsigned);
            }
            self.pending.extend_from_slice(message);
            self.unsigned += 1;
            return Ok(());
        };
        if !name::eq_ignore_case(&record.key_name, &self.key.name)
            || !name::eq_ignore_case(&record.algorithm, &self.key.algorithm.wire())
        {
            return Err(TsigError::OtherKey {
                used: name::to_text(&record.key_name),
                expected: self.key.name(),
            });
        }
        if record.error != error::NONE {
            return Err(TsigError::Error(record.error));
        }
        let covered = Digest::new(Some(&self.previous), message.len() + self.pending.len())
            .message(&self.pending)
            .unsigned(message, &record);
        let digest = if self.first {
            covered.variables(
                &self.key,
                record.time,
                record.fudge,
                record.error,
                &record.other,
            )
        } else {
            covered.timers(record.time, record.fudge)
        };
        if hmac::verify(&self.key.key, &digest, &record.mac).is_err() {
            return Err(TsigError::BadSignature);
        }
        if record.time.abs_diff(now) > u64::from(record.fudge) {
            return Err(TsigError::Time);
        }
        self.first = false;
        self.previous = record.mac;
        self.pending.clear();
        self.unsigned = 0;
        Ok(())
    }
}

fn append(
    message: &mut Vec<u8>,
    key: &Key,
    now: u64,
    mac: &[u8],
    original_id: [u8; 2],
    error: u16,
    other: &[u8],
) {
    let mut rdata = key.algorithm.wire();
    rdata.extend_from_slice(&time48(now));
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&original_id);
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rdata.extend_from_slice(other);
    push_record(message, &key.name, &rdata);
}

/// Appends a TSIG record and counts it in ARCOUNT.
fn push_record(message: &mut Vec<u8>, owner: &[u8], rdata: &[u8]) {
    message.extend_from_slice(owner);
    message.extend_from_slice(&rtype::TSIG.to_be_bytes());
    message.extend_from_slice(&Class::ANY.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend_from_slice(rdata);
    let arcount = bytes::u16_at(message, 10).unwrap_or(0).wrapping_add(1);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// How many bytes a TSIG record signed with `key` takes (to leave room for it in a response).
pub fn record_len(key: &Key) -> usize {
    key.name.len() + 10 + key.algorithm.wire().len() + 16 + key.algorithm.mac_len() + 6
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn query() -> Vec<u8> {
        let mut message = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&name::wire("foobar.com"));
        message.extend_from_slice(&rtype::AXFR.to_be_bytes());
        message.extend_from_slice(&1u16.to_be_bytes());
        message
    }

    fn keyring() -> Keyring {
        Keyring::new([Key::new(
            "xfr.foobar.com.",
            Algorithm::HmacSha256,
            b"0123456789abcdef",
        )
        .unwrap()])
    }

    #[test]
    fn a_signed_request_verifies_and_every_alteration_fails() {
        let keys = keyring();
        let key = keys.get("XFR.foobar.com").unwrap();
        let mut message = query();
        sign(&mut message, &key, None, 1_800_000_000);
        let record = TsigRecord::find(&message).unwrap().unwrap();
        assert_eq!(record.mac.len(), 32);
        let signed = keys.verify(&message, &record, 1_800_000_100).unwrap();
        assert_eq!(signed.mac, record.mac);

        let late = keys
            .verify(&message, &record, 1_800_000_000 + 301)
            .unwrap_err();
        assert_eq!(late.error, error::BADTIME);
        let mut altered = message.clone();
        altered[13] ^= 0x20;
        let record = TsigRecord::find(&altered).unwrap().unwrap();
        assert_eq!(
            keys.verify(&altered, &record, 1_800_000_000)
                .unwrap_err()
                .error,
            error::BADSIG
        );
        let other = Keyring::new([Key::new("other.", Algorithm::HmacSha256, b"k").unwrap()]);
        let record = TsigRecord::find(&message).unwrap().unwrap();
        assert_eq!(
            other
                .verify(&message, &record, 1_800_000_000)
                .unwrap_err()
                .error,
            error::BADKEY
        );
        let wrong_secret =
            Keyring::new([Key::new("xfr.foobar.com.", Algorithm::HmacSha256, b"nope").unwrap()]);
        assert_eq!(
            wrong_secret
                .verify(&message, &record, 1_800_000_000)
                .unwrap_err()
                .error,
            error::BADSIG
        );
    }

    #[test]
    fn a_transfer_stream_verifies_message_by_message() {
        let keys = keyring();
        let key = keys.get("xfr.foobar.com").unwrap();
        let mut request = query();
        let request_mac = sign(&mut request, &key, None, 1_800_000_000);
        let signed = Signed {
            key: key.clone(),
            mac: request_mac.clone(),
        };
        let mut signer = StreamSigner::new(&signed);
        let mut verifier = StreamVerifier::new(key, request_mac);
        for n in 0..3u8 {
            let mut message = vec![0x12, 0x34, 0x84, n, 0, 0, 0, 0, 0, 0, 0, 0];
            signer.sign(&mut message, 1_800_000_000);
            verifier.verify(&message, 1_800_000_000).unwrap();
        }
        let mut replayed = vec![0x12, 0x34, 0x84, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        StreamSigner::new(&signed).sign(&mut replayed, 1_800_000_000);
        assert!(
            verifier.verify(&replayed, 1_800_000_000).is_err(),
            "out of sequence"
        );
    }

    #[test]
    fn a_tsig_record_must_be_last() {
        let key = keyring().get("xfr.foobar.com").unwrap();
        let mut message = query();
        sign(&mut message, &key, None, 1);
        // Another record after it.
        message.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        let arcount = bytes::u16_at(&message, 10).unwrap() + 1;
        message[10..12].copy_from_slice(&arcount.to_be_bytes());
        assert!(TsigRecord::find(&message).is_err());
    }
}
