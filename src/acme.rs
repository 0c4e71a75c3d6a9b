//! The ACME client's hands: DNS-01 records answered by this server's DNS, HTTP-01 and
//! TLS-ALPN-01 by its edge, the certificates wanted read from the edge's sites.

use std::sync::Arc;

use foobar_acme::{Check, Solver, Wanted};
use foobar_dns::Dns;
use foobar_edge::Edge;
use tokio_util::sync::CancellationToken;

struct Hands {
    dns: Dns,
    edge: Edge,
}

impl Solver for Hands {
    fn wanted(&self) -> Vec<Wanted> {
        self.edge
            .acme_certificates()
            .into_iter()
            .map(|certificate| Wanted {
                names: certificate.names,
                cert: certificate.cert,
                key: certificate.key,
                challenge: certificate.challenge,
            })
            .collect()
    }

    fn serves_dns(&self, name: &str) -> bool {
        self.dns.serves(name)
    }

    fn set_txt(&self, name: &str, values: &[String]) -> Result<(), String> {
        self.dns.set_txt(name, values)
    }

    fn txt_visible<'a>(&'a self, name: &'a str, value: &'a str, port: u16) -> Check<'a> {
        Box::pin(self.dns.txt_visible(name, value, port))
    }

    fn set_http(&self, token: &str, key_authorization: Option<String>) {
        self.edge.challenges().set_http(token, key_authorization);
    }

    fn set_tls_alpn(&self, name: &str, digest: Option<&[u8]>) -> Result<(), String> {
        self.edge
            .challenges()
            .set_tls_alpn(name, digest, &self.edge.crypto_provider())
    }
}

/// Starts ordering and renewing the certificates of the sites without certificate files, as
/// `config` says, until `stop`.
pub fn spawn(
    config: &foobar_acme::Config,
    state_dir: &std::path::Path,
    dns: &Dns,
    edge: &Edge,
    status: &Arc<foobar_acme::Status>,
    stop: &CancellationToken,
) {
    let hands = Arc::new(Hands {
        dns: dns.clone(),
        edge: edge.clone(),
    });
    tokio::spawn(foobar_acme::run(
        config.clone(),
        state_dir.to_path_buf(),
        hands,
        status.clone(),
        stop.clone(),
    ));
}

/// How often the synthesized HTTPS records are made again from the edge's settings (a reload
/// or a zone change shows within this).
const HTTPS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the HTTPS records (RFC 9460) of the site names in the zones that ask for them
/// (`https_records = true`) as the edge serves: `alpn="h3,h2"` once it listens (HTTP/3 with
/// HTTP/2 and HTTP/1.1), the port when it is not 443; none before. Until `stop`.
pub fn spawn_https_records(dns: &Dns, edge: &Edge, stop: &CancellationToken) {
    let (dns, edge, stop) = (dns.clone(), edge.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            // Nothing until the edge listens: its port is known then.
            if edge.serves_h3() {
                publish_https(&dns, &edge);
            }
            tokio::select! {
                () = tokio::time::sleep(HTTPS_EVERY) => {}
                () = stop.cancelled() => return,
            }
        }
    });
}

fn publish_https(dns: &Dns, edge: &Edge) {
    let port = edge.https_port();
    // HTTP/3 listens whenever the edge does (the QUIC endpoint is part of it).
    let alpn = vec!["h3".to_string(), "h2".to_string()];
    let https = foobar_dns::overlay::Https {
        alpn,
        port: (port != 443).then_some(port),
        ttl: 300,
    };
    dns.set_https(&edge.site_names(), &https);
}
