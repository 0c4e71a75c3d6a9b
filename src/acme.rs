//! The ACME client's hands: DNS-01 records answered by this server's DNS, HTTP-01 and
//! TLS-ALPN-01 by its edge, the certificates wanted read from the edge's sites.

use std::sync::Arc;

use foobar_acme::{Check, Error, Solver, Wanted, Work};
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

    fn set_txt(&self, name: &str, values: &[String]) -> Result<(), Error> {
        self.dns
            .set_txt(name, values)
            .map_err(|e| Error::Challenge(e.to_string()))
    }

    fn txt_visible<'a>(&'a self, name: &'a str, value: &'a str, port: u16) -> Check<'a> {
        Box::pin(async move {
            self.dns
                .txt_visible(name, value, port)
                .await
                .map_err(|e| Error::Challenge(e.to_string()))
        })
    }

    fn set_http(&self, token: &str, key_authorization: Option<String>) {
        self.edge.challenges().set_http(token, key_authorization);
    }

    fn installed(&self) -> Result<(), Error> {
        self.edge
            .refresh_certificates()
            .map_err(|e| Error::Challenge(e.to_string()))
    }

    fn set_tls_alpn(&self, name: &str, digest: Option<&[u8]>) -> Result<(), Error> {
        self.edge
            .challenges()
            .set_tls_alpn(name, digest)
            .map_err(|e| Error::Challenge(e.to_string()))
    }
}

/// The app's database as what the nodes share.
struct Shared(foobar_app::store::Store);

fn shared(error: foobar_app::store::StoreError) -> Error {
    Error::Shared(error.to_string())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl foobar_acme::Shared for Shared {
    fn put<'a>(&'a self, name: &'a str, value: &'a [u8]) -> Work<'a, ()> {
        Box::pin(async move {
            self.0
                .put_shared(name, value, unix_now())
                .await
                .map_err(shared)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> Work<'a, ()> {
        Box::pin(async move { self.0.delete_shared(name).await.map_err(shared) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Work<'a, Vec<(String, Vec<u8>)>> {
        Box::pin(async move {
            let rows = self.0.shared(prefix).await.map_err(shared)?;
            Ok(rows.into_iter().map(|row| (row.name, row.value)).collect())
        })
    }

    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, seconds: u64) -> Work<'a, bool> {
        Box::pin(async move {
            let now = unix_now();
            self.0
                .take_lease(name, holder, now, now + seconds as i64)
                .await
                .map_err(shared)
        })
    }

    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> Work<'a, ()> {
        Box::pin(async move { self.0.release_lease(name, holder).await.map_err(shared) })
    }
}

/// This process's name in leases: the host, the PID and the start time, so that a successor
/// after an upgrade is another holder.
pub(crate) fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host}/{}/{started}", std::process::id())
}

/// Starts ordering and renewing the certificates of the sites without certificate files, as
/// `config` says, sharing them through `store` with the other nodes, until `stop`.
pub fn spawn(
    config: &foobar_acme::Config,
    state_dir: &std::path::Path,
    (dns, edge, store): (&Dns, &Edge, &foobar_app::store::Store),
    status: &Arc<foobar_acme::Status>,
    stop: &CancellationToken,
) {
    let node = foobar_acme::Node {
        solver: Arc::new(Hands {
            dns: dns.clone(),
            edge: edge.clone(),
        }),
        shared: Arc::new(Shared(store.clone())),
        id: node_id(),
    };
    tokio::spawn(foobar_acme::run(
        config.clone(),
        state_dir.to_path_buf(),
        node,
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
    let https = foobar_dns::Https {
        alpn,
        port: (port != 443).then_some(port),
        ttl: 300,
    };
    dns.set_https(&edge.site_names(), &https);
}
