//! ACME challenges the edge answers while a certificate is ordered (the ordering itself is not
//! the edge's job): HTTP-01 (RFC 8555 section 8.3) on the plain HTTP listener, and TLS-ALPN-01
//! (RFC 8737) on the TLS listener, where a handshake that offers only `acme-tls/1` gets the
//! challenge's certificate and the connection ends after it.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 answers.
pub const HTTP_PREFIX: &str = "/.well-known/acme-challenge/";

/// The challenges being answered now.
#[derive(Debug)]
pub struct Challenges {
    /// The cryptography the TLS listener signs with, for the challenge certificates.
    provider: Arc<CryptoProvider>,
    /// Key authorizations by token (HTTP-01).
    http: ArcSwap<HashMap<String, String>>,
    /// Challenge certificates by lower-case name (TLS-ALPN-01).
    tls: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// No challenge answered yet; certificates made with `provider`.
    pub fn new(provider: Arc<CryptoProvider>) -> Challenges {
        Challenges {
            provider,
            http: ArcSwap::default(),
            tls: ArcSwap::default(),
        }
    }

    /// Answers `token` with `key_authorization` on the plain HTTP listener; `None` stops.
    pub fn set_http(&self, token: &str, key_authorization: Option<String>) {
        self.http.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &key_authorization {
                Some(value) => next.insert(token.to_string(), value.clone()),
                None => next.remove(token),
            };
            next
        });
    }

    /// The key authorization for the HTTP-01 request of `path`, if one is being answered.
    pub fn http(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP_PREFIX)?;
        self.http.load().get(token).cloned()
    }

    /// Answers TLS-ALPN-01 handshakes for `name` with the certificate RFC 8737 section 3
    /// describes, carrying `digest` (the SHA-256 of the key authorization); `None` stops.
    pub fn set_tls_alpn(&self, name: &str, digest: Option<&[u8]>) -> Result<(), crate::Error> {
        let name = name.to_ascii_lowercase();
        let key = digest
            .map(|digest| tls_alpn_certificate(&name, digest, &self.provider))
            .transpose()
            .map_err(|reason| crate::Error::Challenge {
                name: name.clone(),
                reason,
            })?;
        self.tls.rcu(|current| {
            let mut next = HashMap::clone(current);
            match &key {
                Some(key) => next.insert(name.clone(), key.clone()),
                None => next.remove(&name),
            };
            next
        });
        Ok(())
    }

    /// The TLS-ALPN-01 certificate for `name`, if one is being answered.
    pub fn tls_alpn(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let tls = self.tls.load();
        if tls.is_empty() {
            return None;
        }
        tls.get(&name.to_ascii_lowercase()).cloned()
    }
}

/// Why a TLS-ALPN-01 certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeCertificateError {
    /// The certificate or its key.
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
    /// The key, loaded for rustls.
    #[error(transparent)]
    Key(#[from] rustls::Error),
}

/// A self-signed certificate for `name` with the critical acmeIdentifier extension; why not.
fn tls_alpn_certificate(
    name: &str,
    digest: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ChallengeCertificateError> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing = provider.key_provider.load_private_key(der)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn http_answers_only_set_tokens_under_the_prefix() {
        let challenges = Challenges::new(Arc::new(rustls::crypto::ring::default_provider()));
        challenges.set_http("tok", Some("tok.thumb".to_string()));
        assert_eq!(
            challenges
                .http("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(challenges.http("/tok"), None);
        assert_eq!(challenges.http("/.well-known/acme-challenge/other"), None);
        challenges.set_http("tok", None);
        assert_eq!(challenges.http("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn tls_alpn_certificate_carries_the_critical_identifier() {
        let challenges = Challenges::new(Arc::new(rustls::crypto::ring::default_provider()));
        let digest = [7u8; 32];
        challenges
            .set_tls_alpn("Www.Example.com", Some(&digest))
            .unwrap();
        let key = challenges.tls_alpn("www.example.com").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        challenges.set_tls_alpn("www.example.com", None).unwrap();
        assert!(challenges.tls_alpn("www.example.com").is_none());
    }
}
