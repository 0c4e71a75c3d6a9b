//! The client side of a health check: an HTTPS GET to one node, answered 2xx in time or not.

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
    ) -> Result<(), String> {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("http: {e}"))?;
            tokio::spawn(connection);
            let request = http::Request::get(path)
                .header(http::header::HOST, host)
                .header(http::header::USER_AGENT, "foobar-health-check")
                .body(Empty::<bytes::Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("http: {e}"))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("status {}", response.status()))
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
    }
}

/// The system's trusted roots (Debian's ca-certificates bundle), if it is there.
fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter("/etc/ssl/certs/ca-certificates.crt")
        .map(|certs| certs.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Accepts any certificate whose signature checks out (the handshake still proves the node
/// holds its key).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

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
