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
