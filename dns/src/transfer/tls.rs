//! Primaries reached over TLS (XoT, RFC 9103): TLS 1.3, ALPN `dot`, the primary's certificate
//! checked as its `[[dns.tls_auth]]` says — issued by a CA file for a name (RFC 8310's strict
//! profile), or carrying a pinned public key (RFC 7858's SPKI pin), or both.
//!
//! The pin is checked here by hand: rustls checks certificates against roots, not keys against
//! pins, and a pin is how Knot and kdig name a primary's key.

use std::{net::SocketAddr, path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::config::TlsAuth as Settings;

/// How one `[[dns.tls_auth]]` reaches a primary.
#[derive(Clone)]
pub struct TlsAuth {
    name: String,
    connector: TlsConnector,
    /// The name sent and checked; none: the primary's address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAuth").field("name", &self.name).finish()
    }
}

/// A stream to a primary: TCP, or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl TlsAuth {
    /// From its settings; files are read relative to `state_dir`. The error says what is wrong.
    pub fn new(settings: &Settings, state_dir: &Path) -> Result<TlsAuth, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &settings.ca_file {
            None => None,
            Some(file) => {
                let path = state_dir.join(file);
                let bad = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", path.display());
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(&path).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&"no certificate in it"));
                }
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| bad(&e))?,
                )
            }
        };
        let pin = match &settings.pin {
            None => None,
            Some(text) => {
                let bytes = data_encoding::BASE64
                    .decode(text.trim().as_bytes())
                    .map_err(|e| format!("pin {text:?}: not base64: {e}"))?;
                Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    format!("pin {text:?}: 32 bytes in base64 (the SHA-256 of the public key)")
                })?)
            }
        };
        if roots.is_none() && pin.is_none() {
            return Err("give ca_file, pin or both: an unchecked primary is not trusted".into());
        }
        let server_name = match &settings.server_name {
            None => None,
            Some(name) => Some(
                ServerName::try_from(name.trim_end_matches('.').to_string())
                    .map_err(|e| format!("server_name {name:?}: {e}"))?,
            ),
        };
        let verifier = Arc::new(Verifier {
            roots,
            pin,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"dot".to_vec()];
        Ok(TlsAuth {
            name: settings.name.clone(),
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Its name, as `tls:NAME` gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TLS over `tcp`, a connection to `to`.
    pub async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
        to: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(to.ip().into()));
        self.connector.connect(name, tcp).await
    }
}

/// Checks the primary's certificate against the CA file, the pin, or both.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            })?;
            let spki = cert.subject_public_key_info();
            let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
            if digest.as_ref() != pin {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
                ));
            }
        }
        match &self.roots {
            Some(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the public key is not the one pinned")]
struct PinMismatch;

/// A connection to `to` from `sources`, over TLS with `tls` when there is one.
pub async fn open(
    sources: &super::notify::Sources,
    to: SocketAddr,
    tls: Option<&TlsAuth>,
) -> Result<Box<dyn Stream>, super::TransferError> {
    use super::TransferError;
    let tcp = sources.connect(to).await.map_err(TransferError::Tcp)?;
    tcp.set_nodelay(true).map_err(TransferError::Tcp)?;
    Ok(match tls {
        None => Box::new(tcp),
        Some(tls) => Box::new(
            tls.connect(tcp, to)
                .await
                .map_err(|e| TransferError::Tls(plainly(e)))?,
        ),
    })
}

/// A failed handshake's reason, said plainly: rustls shows a certificate error of the
/// verifier's own making (the pin) as debug output.
fn plainly(e: std::io::Error) -> std::io::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            std::io::Error::other(format!("invalid peer certificate: {other}"))
        }
        _ => e,
    }
}
