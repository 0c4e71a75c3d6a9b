//! Pebble, Let's Encrypt's test CA (Debian's `pebble`), started on loopback for a test: its
//! ACME endpoint under a certificate of a test CA made here, validating challenges by asking
//! the DNS server it is given and connecting to the given HTTP and TLS ports.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Request;

use super::web;

pub struct Pebble {
    dir: tempfile::TempDir,
    child: Child,
    pub acme: SocketAddr,
    pub management: SocketAddr,
    /// The test CA Pebble's own HTTPS endpoint is under (PEM).
    pub endpoint_ca: Vec<u8>,
}

/// Why Pebble cannot run here, if it cannot.
pub fn missing() -> Option<&'static str> {
    (!super::installed("pebble", &["-h"])).then_some("pebble")
}

/// Settings Pebble reads from its environment.
pub struct Options {
    /// Percentage of authorizations reused. At 0 Pebble still reuses about one in a hundred:
    /// it makes a new one only when `rand.Intn(100) > authz_reuse`.
    pub authz_reuse: u8,
}

impl Pebble {
    /// Starts Pebble resolving through `dns`, validating HTTP-01 on `http_port` and TLS-ALPN-01
    /// on `tls_port` (of whatever address a name resolves to).
    pub fn start(dns: SocketAddr, http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_with(dns, http_port, tls_port, Options { authz_reuse: 0 })
    }

    pub fn start_with(dns: SocketAddr, http_port: u16, tls_port: u16, options: Options) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble endpoint test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = dir.path().join("endpoint.crt");
        let key_path = dir.path().join("endpoint.key");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let acme: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": acme.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", options.authz_reuse.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let pebble = Pebble {
            dir,
            child,
            acme,
            management,
            endpoint_ca: cert_ca_pem(&ca),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(acme).is_err()
            || std::net::TcpStream::connect(management).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }

    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.acme)
    }

    /// The file of the CA Pebble's endpoint is under, for `[acme] ca_root`.
    pub fn endpoint_ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("endpoint-ca.pem");
        std::fs::write(&path, &self.endpoint_ca).unwrap();
        path
    }

    /// The root Pebble issues under (PEM), from its management endpoint.
    pub async fn issuing_root(&self) -> Vec<u8> {
        let stream = web::connect(
            self.management,
            "localhost",
            web::tls_config(&self.endpoint_ca, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        let request = Request::get(format!(
            "https://localhost:{}/roots/0",
            self.management.port()
        ))
        .body(Bytes::new())
        .unwrap();
        let reply = web::send_tcp(web::Proto::H1, stream, request).await;
        assert_eq!(reply.status, 200, "pebble's root");
        reply.body.to_vec()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Stops Pebble (the CA down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cert_ca_pem(ca: &rcgen::Certificate) -> Vec<u8> {
    ca.pem().into_bytes()
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
