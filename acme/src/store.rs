//! What is kept in `state_dir/acme`: the account (its key and URL at the CA, one per directory
//! URL, private) and, beside the edge's certificate files, what a served certificate says of
//! itself.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use foobar_state::Access;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::Error;

/// The account file for the CA at `directory`.
pub fn account_path(state_dir: &Path, directory: &str) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    state_dir.join("acme/accounts").join(format!("{hex}.json"))
}

/// The account's credentials kept at `path`, if there are any.
pub fn read_account(path: &Path) -> Result<Option<instant_acme::AccountCredentials>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::State {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Keeps the account's credentials at `path`, readable by this user only.
pub fn write_account(
    path: &Path,
    credentials: &instant_acme::AccountCredentials,
) -> Result<(), Error> {
    let state = |reason: String| Error::State {
        path: path.to_path_buf(),
        reason,
    };
    let json = serde_json::to_vec_pretty(credentials).map_err(|e| state(e.to_string()))?;
    foobar_state::write(path, &json, Access::Private).map_err(|e| state(e.to_string()))
}

/// What the certificate in a PEM chain file says of itself.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf certificate.
    pub leaf: CertificateDer<'static>,
    /// Its DNS names, lower-case (`*.` kept).
    pub names: Vec<String>,
    /// Its issuer's name.
    pub issuer: String,
    /// When it starts to be valid.
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
}

impl Issued {
    /// The chain in `path`; `None` when there is none yet or it cannot be read as one.
    pub fn read(path: &Path) -> Option<Issued> {
        let pem = std::fs::read(path).ok()?;
        Issued::parse(&pem)
    }

    /// The first certificate of a PEM chain; `None` if there is none or it does not parse.
    pub fn parse(pem: &[u8]) -> Option<Issued> {
        let leaf = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
        let time = |t: x509_parser::time::ASN1Time| {
            u64::try_from(t.timestamp())
                .ok()
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        };
        let not_before = time(cert.validity().not_before)?;
        let not_after = time(cert.validity().not_after)?;
        let mut names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            Some(dns.to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let issuer = cert.issuer().to_string();
        Some(Issued {
            leaf: leaf.clone().into_owned(),
            names,
            issuer,
            not_before,
            not_after,
        })
    }

    /// Whether it names exactly `wanted` (in any order and case).
    pub fn names_match(&self, wanted: &[String]) -> bool {
        let mut wanted: Vec<String> = wanted.iter().map(|n| n.to_ascii_lowercase()).collect();
        wanted.sort();
        wanted.dedup();
        self.names == wanted
    }
}

/// Writes the key, then the chain: the edge loads the pair when the chain changes.
pub fn write_certificate(cert: &Path, key: &Path, chain: &str, key_pem: &str) -> Result<(), Error> {
    let state = |path: &Path, e: std::io::Error| Error::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    foobar_state::write(key, key_pem.as_bytes(), Access::Private).map_err(|e| state(key, e))?;
    foobar_state::write(cert, chain.as_bytes(), Access::Public).map_err(|e| state(cert, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_chain_tells_its_names_and_validity() {
        let mut params = rcgen::CertificateParams::new(vec![
            "WWW.foobar.com".to_string(),
            "*.foobar.com".to_string(),
        ])
        .unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 4, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let issued = Issued::parse(cert.pem().as_bytes()).unwrap();
        assert_eq!(issued.names, vec!["*.foobar.com", "www.foobar.com"]);
        assert!(issued.names_match(&["*.foobar.com".to_string(), "www.FOOBAR.com".to_string()]));
        assert!(!issued.names_match(&["www.foobar.com".to_string()]));
        let days = issued
            .not_after
            .duration_since(issued.not_before)
            .unwrap()
            .as_secs()
            / 86_400;
        assert_eq!(days, 90);
        assert!(Issued::parse(b"not a certificate").is_none());
    }

    #[test]
    fn accounts_are_kept_per_directory() {
        let dir = Path::new("/state");
        let a = account_path(dir, "https://a.example/dir");
        let b = account_path(dir, "https://b.example/dir");
        assert_ne!(a, b);
        assert!(a.starts_with("/state/acme/accounts"));
    }
}
