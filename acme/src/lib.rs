//! Certificates from an ACME CA (RFC 8555) for the sites that have no certificate files: an
//! account kept in `state_dir`, one order per certificate, renewal when the CA's renewal
//! information (RFC 9773) or two thirds of the lifetime say, retries that back off.
//!
//! This crate speaks ACME and nothing else: the challenges are answered by whoever the binary
//! hands in as a [`Solver`] (its DNS for DNS-01, its edge for HTTP-01 and TLS-ALPN-01), and the
//! certificates are written as files the edge picks up as they change.

#![warn(missing_docs)]

mod cluster;
mod metrics;
mod order;
pub mod schedule;
pub mod store;

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

pub use metrics::AcmeCollector;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// `[acme]`: where certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The CA's directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contacts for the account (`mailto:` is added to bare addresses).
    #[serde(default)]
    pub contact: Vec<String>,
    /// External account binding (for CAs that ask for it): the key id and the base64url MAC key.
    pub eab_kid: Option<String>,
    /// The EAB MAC key, base64url.
    pub eab_hmac_key: Option<String>,
    /// A PEM root the CA's HTTPS endpoint is checked against (a private or test CA); default:
    /// the web's roots.
    pub ca_root: Option<PathBuf>,
    /// The CA's certificate profile to ask for (e.g. Let's Encrypt's `shortlived`), if any.
    pub profile: Option<String>,
    /// The port the zone's nameservers are asked on before DNS-01 is validated.
    #[serde(default = "default_dns_port")]
    pub dns_check_port: u16,
}

impl Config {
    /// Checks what can be checked without asking the CA.
    pub fn check(&self) -> Result<(), Error> {
        if !(self.directory.starts_with("https://") || self.directory.starts_with("http://")) {
            return Err(Error::Config(format!(
                "directory: {:?}: not an http(s) URL",
                self.directory
            )));
        }
        if self.eab_kid.is_some() != self.eab_hmac_key.is_some() {
            return Err(Error::Config(
                "eab_kid and eab_hmac_key go together; set both or neither".to_string(),
            ));
        }
        if let Some(root) = &self.ca_root {
            let pem = std::fs::read(root).map_err(|e| Error::State {
                path: root.clone(),
                reason: format!("ca_root: {e}"),
            })?;
            use rustls_pki_types::{CertificateDer, pem::PemObject};
            if CertificateDer::pem_slice_iter(&pem).next().is_none() {
                return Err(Error::State {
                    path: root.clone(),
                    reason: "ca_root: no certificate in the file".to_string(),
                });
            }
        }
        Ok(())
    }
}

fn default_dns_port() -> u16 {
    53
}

/// Why a certificate could not be ordered or kept.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file in `state_dir` could not be read or written.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA refused, or could not be reached.
    #[error("the CA: {}", chain(.0))]
    Acme(#[from] instant_acme::Error),
    /// A challenge could not be set up or was not seen.
    #[error("{0}")]
    Challenge(String),
    /// The `[acme]` table is wrong.
    #[error("[acme]: {0}")]
    Config(String),
    /// The store the nodes share failed.
    #[error("the shared store: {0}")]
    Shared(String),
}

/// An error with its causes, as `a: b: c`: an HTTP client's error alone says "client error
/// (Connect)", its causes say why (refused, an unknown certificate issuer...).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let part = next.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = next.source();
    }
    text
}

impl Error {
    /// Whether the CA said its rate limit was reached.
    fn rate_limited(&self) -> bool {
        matches!(self, Error::Acme(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref().is_some_and(|t| t.ends_with(":rateLimited")))
    }
}

/// A certificate wanted: its names, and where its chain and key go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The DNS names, wildcards as `*.example.com`.
    pub names: Vec<String>,
    /// Where the chain goes (PEM).
    pub cert: PathBuf,
    /// Where the private key goes (PEM).
    pub key: PathBuf,
    /// `dns-01`, `http-01` or `tls-alpn-01`; default: DNS-01 where the DNS is ours, else HTTP-01.
    pub challenge: Option<String>,
}

/// Work the binary does for this crate, awaited here.
pub type Work<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;
/// Work that only says whether it succeeded.
pub type Check<'a> = Work<'a, ()>;

/// Who answers the challenges on this node, and what is wanted.
pub trait Solver: Send + Sync + 'static {
    /// The certificates wanted by the configuration served now.
    fn wanted(&self) -> Vec<Wanted>;
    /// Whether the TXT records of `name` are answered here (DNS-01 possible).
    fn serves_dns(&self, name: &str) -> bool;
    /// Answers `values` as the TXT records of `name` (none: stop).
    fn set_txt(&self, name: &str, values: &[String]) -> Result<(), Error>;
    /// Done once every nameserver of the zone of `name` answers `value` among its TXT records.
    fn txt_visible<'a>(&'a self, name: &'a str, value: &'a str, port: u16) -> Check<'a>;
    /// Answers the HTTP-01 `token` (none: stop).
    fn set_http(&self, token: &str, key_authorization: Option<String>);
    /// Answers TLS-ALPN-01 handshakes for `name` with a certificate carrying `digest` (none:
    /// stop).
    fn set_tls_alpn(&self, name: &str, digest: Option<&[u8]>) -> Result<(), Error>;
    /// Serves the certificate files just written, now.
    fn installed(&self) -> Result<(), Error>;
}

/// What the nodes of a cluster share (the database every node reads): values by name, and
/// leases so that one node orders a certificate while the others wait for it. One node alone
/// has the same, in its own database.
pub trait Shared: Send + Sync + 'static {
    /// Sets the value `name`.
    fn put<'a>(&'a self, name: &'a str, value: &'a [u8]) -> Work<'a, ()>;
    /// Removes the value `name`.
    fn delete<'a>(&'a self, name: &'a str) -> Work<'a, ()>;
    /// Every value whose name starts with `prefix`.
    fn list<'a>(&'a self, prefix: &'a str) -> Work<'a, Vec<(String, Vec<u8>)>>;
    /// Takes the lease `name` for `holder` for `seconds` if nobody else holds it; whether
    /// `holder` has it.
    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, seconds: u64) -> Work<'a, bool>;
    /// Gives up the lease `name` if `holder` has it.
    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> Work<'a, ()>;
}

/// How one certificate stands, for `ctl status` and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertificateStatus {
    /// Its DNS names.
    pub names: Vec<String>,
    /// Who issued the one in use.
    pub issuer: Option<String>,
    /// Seconds since the Unix epoch.
    pub not_after: Option<u64>,
    /// When it is renewed (seconds since the Unix epoch).
    pub renew_at: Option<u64>,
    /// `ok`, or why the last order failed.
    pub last_result: Option<String>,
    /// When the last order was tried (seconds since the Unix epoch).
    pub last_attempt: Option<u64>,
    /// Failed orders in a row.
    pub failures: u32,
    /// Orders by this node, and how many of them were issued.
    pub orders: u64,
    /// Of them, the orders that gave a certificate.
    pub issued: u64,
}

/// What the manager knows, shared with the admin endpoint.
#[derive(Debug, Default)]
pub struct Status {
    certificates: Mutex<HashMap<PathBuf, CertificateStatus>>,
    renew: Notify,
    forced: Mutex<bool>,
}

impl Status {
    /// Every certificate this node manages, as it stands now.
    pub fn certificates(&self) -> Vec<CertificateStatus> {
        let mut all: Vec<CertificateStatus> = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.names.cmp(&b.names));
        all
    }

    /// Renews every certificate now, due or not (`foobar ctl acme renew`).
    pub fn renew_all(&self) {
        *self.forced.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.renew.notify_one();
    }

    fn take_forced(&self) -> bool {
        std::mem::take(&mut *self.forced.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, cert: &Path, f: impl FnOnce(&mut CertificateStatus)) {
        let mut all = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(all.entry(cert.to_path_buf()).or_default());
    }

    fn retain(&self, wanted: &[Wanted]) {
        self.certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|path, _| wanted.iter().any(|w| &w.cert == path));
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often the wanted certificates are looked at again (a reload may name new ones).
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How often the CA's renewal information is asked again at most (unless it says sooner).
const ARI_EVERY: Duration = Duration::from_secs(6 * 3600);

/// One wanted certificate's schedule.
#[derive(Debug, Default)]
struct Plan {
    /// When to order next (`None`: now).
    next: Option<SystemTime>,
    /// Consecutive failures.
    failures: u32,
    /// When the renewal information is asked again.
    ari_next: Option<SystemTime>,
    /// The CA's suggestion, as a chosen time in its window.
    ari_at: Option<SystemTime>,
    /// The jitter of this certificate's renewal time.
    jitter: f64,
}

/// This node: who answers challenges here, what it shares with the other nodes, and its name
/// in leases (unique per process).
#[derive(Clone)]
pub struct Node {
    /// Who answers the challenges here.
    pub solver: Arc<dyn Solver>,
    /// What the nodes share: values and leases.
    pub shared: Arc<dyn Shared>,
    /// This process's name in leases.
    pub id: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Orders and renews the certificates the solver wants until `shutdown`, one node of a
/// cluster at a time per certificate; answers the challenges any node publishes.
pub async fn run(
    config: Config,
    state_dir: PathBuf,
    node: Node,
    status: Arc<Status>,
    shutdown: CancellationToken,
) {
    tokio::spawn(cluster::follow_challenges(
        node.shared.clone(),
        node.solver.clone(),
        shutdown.clone(),
    ));
    let solver = node.solver.clone();
    let mut account: Option<instant_acme::Account> = None;
    let mut plans: HashMap<PathBuf, Plan> = HashMap::new();
    let mut account_failures = 0u32;
    let mut account_retry: Option<SystemTime> = None;
    loop {
        let forced = status.take_forced();
        let wanted = solver.wanted();
        status.retain(&wanted);
        plans.retain(|path, _| wanted.iter().any(|w| &w.cert == path));
        let now = SystemTime::now();
        for want in &wanted {
            let plan = plans.entry(want.cert.clone()).or_insert_with(|| Plan {
                jitter: schedule::jitter(),
                ..Plan::default()
            });
            let mut issued = store::Issued::read(&want.cert).filter(|i| i.names_match(&want.names));
            if let Some(taken) =
                cluster::take_shared_certificate(&*node.shared, &*solver, want, issued.as_ref())
                    .await
            {
                issued = Some(taken);
                *plan = Plan {
                    jitter: schedule::jitter(),
                    ..Plan::default()
                };
            }
            let due = forced || due(plan, issued.as_ref(), now);
            status.update(&want.cert, |s| {
                s.names = want.names.clone();
                s.issuer = issued.as_ref().map(|i| i.issuer.clone());
                s.not_after = issued.as_ref().map(|i| seconds(i.not_after));
                s.renew_at = issued.as_ref().map(|i| {
                    seconds(plan.ari_at.unwrap_or_else(|| {
                        schedule::renew_at(i.not_before, i.not_after, plan.jitter)
                    }))
                });
            });
            let ask_ari = !due && issued.is_some() && plan.ari_next.is_none_or(|at| at <= now);
            if !due && !ask_ari {
                continue;
            }
            // The account, for an order or for the CA's renewal information.
            if account.is_none() {
                if !forced && account_retry.is_some_and(|at| at > now) {
                    continue;
                }
                match order::account(&config, &state_dir, &*node.shared).await {
                    Ok(acme) => {
                        account = Some(acme);
                        account_failures = 0;
                    }
                    Err(e) => {
                        account_failures += 1;
                        let wait =
                            schedule::retry_after(account_failures, false, schedule::jitter());
                        account_retry = Some(now + wait);
                        error!(error = %e, retry_in_seconds = wait.as_secs(), "ACME account: the CA cannot be reached; certificates served stay");
                        status.update(&want.cert, |s| {
                            s.last_result = Some(e.to_string());
                            s.last_attempt = Some(seconds(now));
                        });
                        continue;
                    }
                }
            }
            let Some(acme) = &account else { continue };
            if let (true, Some(issued)) = (ask_ari, &issued) {
                renewal_info(acme, issued, plan, now).await;
                continue;
            }
            let lease = cluster::lease_key(want);
            match node
                .shared
                .lease(&lease, &node.id, cluster::LEASE_SECONDS)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // Another node orders it; its certificate arrives through the shared store.
                    info!(names = ?want.names, "another node is ordering this certificate");
                    plan.next = Some(now + LOOK_EVERY * 6);
                    continue;
                }
                Err(e) => {
                    warn!(names = ?want.names, error = %e, "the shared store cannot be reached; no order now");
                    plan.next = Some(now + LOOK_EVERY * 6);
                    continue;
                }
            }
            info!(names = ?want.names, "ordering a certificate");
            let result = tokio::select! {
                result = order::issue(acme, &config, want, issued.as_ref(), &node) => result,
                () = shutdown.cancelled() => {
                    let _ = node.shared.release(&lease, &node.id).await;
                    return;
                }
            };
            let _ = node.shared.release(&lease, &node.id).await;
            let now = SystemTime::now();
            match result {
                Ok(new) => {
                    info!(names = ?want.names, issuer = %new.issuer, not_after = seconds(new.not_after), "certificate issued");
                    *plan = Plan {
                        jitter: schedule::jitter(),
                        ..Plan::default()
                    };
                    status.update(&want.cert, |s| {
                        s.last_result = Some("ok".to_string());
                        s.last_attempt = Some(seconds(now));
                        s.failures = 0;
                        s.orders += 1;
                        s.issued += 1;
                        s.issuer = Some(new.issuer.clone());
                        s.not_after = Some(seconds(new.not_after));
                    });
                }
                Err(e) => {
                    plan.failures += 1;
                    let wait =
                        schedule::retry_after(plan.failures, e.rate_limited(), schedule::jitter());
                    plan.next = Some(now + wait);
                    error!(names = ?want.names, error = %e, retry_in_seconds = wait.as_secs(), failures = plan.failures,
                        "certificate order failed; the certificate served stays");
                    status.update(&want.cert, |s| {
                        s.last_result = Some(e.to_string());
                        s.last_attempt = Some(seconds(now));
                        s.failures = plan.failures;
                        s.orders += 1;
                    });
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = status.renew.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Whether the certificate is to be ordered now.
fn due(plan: &Plan, issued: Option<&store::Issued>, now: SystemTime) -> bool {
    if plan.next.is_some_and(|at| at > now) {
        // Waiting after a failure.
        return false;
    }
    let Some(issued) = issued else {
        return true;
    };
    let at = plan
        .ari_at
        .unwrap_or_else(|| schedule::renew_at(issued.not_before, issued.not_after, plan.jitter));
    at <= now
}

/// Asks the CA when to renew `issued` (RFC 9773); CAs without it leave the plan as it is.
async fn renewal_info(
    account: &instant_acme::Account,
    issued: &store::Issued,
    plan: &mut Plan,
    now: SystemTime,
) {
    let Ok(id) = instant_acme::CertificateIdentifier::try_from(&issued.leaf) else {
        plan.ari_next = Some(now + ARI_EVERY);
        return;
    };
    match account.renewal_info(&id).await {
        Ok((info, retry)) => {
            let window = info.suggested_window;
            let at = schedule::in_window(window.start.into(), window.end.into(), plan.jitter);
            plan.ari_at = Some(at);
            plan.ari_next = Some(now + retry.clamp(Duration::from_secs(60), ARI_EVERY));
        }
        Err(instant_acme::Error::Unsupported(_)) => plan.ari_next = Some(now + ARI_EVERY * 4),
        Err(e) => {
            warn!(error = %e, "ACME renewal information not available now");
            plan.ari_next = Some(now + Duration::from_secs(3600));
        }
    }
}
