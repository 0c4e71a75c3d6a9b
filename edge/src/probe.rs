//! The client side of a health check: an HTTPS GET to one node, answered 2xx in time or not
//! (`[[dns.health]]`), one GET over any connection (the proxy's upstream checks), and the
//! rise/fall count both keep.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// How to reach the nodes: TLS trusting the system's roots, or trusting any certificate (for
/// nodes with self-signed certificates, where the check is about liveness, not identity).
#[derive(Debug, Clone)]
pub struct Prober {
    tls: Arc<ClientConfig>,
}

impl Prober {
    /// A prober; `verify_certificate` checks the peers' certificates against the web's roots.
    pub fn new(verify_certificate: bool) -> Result<Prober, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = if verify_certificate {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_roots() {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Prober {
            tls: Arc::new(config),
        })
    }

    /// GETs `path` from `address` with `host` as SNI and Host header; `Err` says why it is not
    /// healthy (no connection, a TLS failure, a non-2xx status, or no answer within `timeout`).
    pub async fn check(
        &self,
        address: SocketAddr,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(ProbeError::Connect)?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| ProbeError::Name(host.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(ProbeError::Tls)?;
            let status = get(tls, host, path).await?;
            if status.is_success() {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(ProbeError::Timeout(timeout)))
    }
}

/// Why a checked address does not count as healthy this round.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No TCP connection.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The name to check is not one TLS can carry.
    #[error("not a server name: {0:?}")]
    Name(String),
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(std::io::Error),
    /// No connection to an upstream.
    #[error("{0}")]
    Upstream(String),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a path that is not one).
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// An answer, but not the status asked for.
    #[error("status {0}")]
    Status(http::StatusCode),
    /// No answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// One HTTP/1.1 GET of `path` with `host` over `io`, a connection made for it: the status.
pub async fn get<I>(io: I, host: &str, path: &str) -> Result<http::StatusCode, ProbeError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "foobar-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    Ok(response.status())
}

/// What is known of one checked target: up or down, and how many results in a row disagree.
/// The first result decides (a target is not served for `fall` rounds after a start only to be
/// found dead); after that it takes `fall` failures in a row to go down and `rise` successes
/// to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    up: bool,
    streak: u32,
}

impl Tally {
    /// What a first result says.
    pub fn first(healthy: bool) -> Tally {
        Tally {
            up: healthy,
            streak: 0,
        }
    }

    /// Whether the address counts as up now.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counts a result; the new state when it changes.
    pub fn record(&mut self, healthy: bool, rise: u32, fall: u32) -> Option<bool> {
        if healthy == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = healthy;
        self.streak = 0;
        Some(healthy)
    }
}

/// The system's trusted roots (Debian's ca-certificates bundle), if it is there.
pub(crate) fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter("/etc/ssl/certs/ca-certificates.crt")
        .map(|certs| certs.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Accepts any certificate whose signature checks out (the handshake still proves the node
/// holds its key).
#[derive(Debug)]
pub(crate) struct AnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

/// A verifier that accepts any certificate whose signature checks out: for nodes, upstreams
/// and benchmarks on self-signed certificates, where what counts is liveness, not identity.
pub fn any_certificate(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCertificate(provider))
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_goes_down_after_fall_and_back_after_rise() {
        let mut tally = Tally::first(true);
        assert_eq!(tally.record(false, 2, 3), None);
        assert_eq!(
            tally.record(true, 2, 3),
            None,
            "a success resets the streak"
        );
        assert_eq!(tally.record(false, 2, 3), None);
        assert_eq!(tally.record(false, 2, 3), None);
        assert_eq!(tally.record(false, 2, 3), Some(false));
        assert!(!tally.is_up());
        assert_eq!(tally.record(true, 2, 3), None);
        assert_eq!(tally.record(true, 2, 3), Some(true));
        assert!(!Tally::first(false).is_up());
    }
}
