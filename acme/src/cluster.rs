//! What the nodes share through the database: the challenges being answered (the CA may ask
//! any node: every node's DNS, HTTP and TLS listeners answer them), the certificates issued
//! (every node serves them, picked up within seconds), the account, and the lease that lets
//! one node order a certificate while the others wait.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{Error, Shared, Solver, Wanted, store};

const CHALLENGES: &str = "acme/challenge/";
/// How often every node looks for challenges to answer.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// How long an order may hold its lease before another node may take over.
pub const LEASE_SECONDS: u64 = 600;

fn challenge_key(kind: &str, key: &str) -> String {
    format!("{CHALLENGES}{kind}/{key}")
}

/// Answers `values` as the TXT records of `owner` on every node (none: stop).
pub async fn publish_txt(
    shared: &dyn Shared,
    solver: &dyn Solver,
    owner: &str,
    values: &[String],
) -> Result<(), Error> {
    let key = challenge_key("dns", owner);
    if values.is_empty() {
        shared.delete(&key).await?;
    } else {
        shared.put(&key, values.join("\n").as_bytes()).await?;
    }
    solver.set_txt(owner, values)
}

/// Answers the HTTP-01 `token` on every node (none: stop).
pub async fn publish_http(
    shared: &dyn Shared,
    solver: &dyn Solver,
    token: &str,
    key_authorization: Option<&str>,
) -> Result<(), Error> {
    let key = challenge_key("http", token);
    match key_authorization {
        Some(value) => shared.put(&key, value.as_bytes()).await,
        None => shared.delete(&key).await,
    }?;
    solver.set_http(token, key_authorization.map(str::to_string));
    Ok(())
}

/// Answers TLS-ALPN-01 for `name` on every node (none: stop).
pub async fn publish_tls_alpn(
    shared: &dyn Shared,
    solver: &dyn Solver,
    name: &str,
    digest: Option<&[u8]>,
) -> Result<(), Error> {
    let key = challenge_key("tls", name);
    match digest {
        Some(digest) => shared.put(&key, digest).await,
        None => shared.delete(&key).await,
    }?;
    solver.set_tls_alpn(name, digest)
}

/// Answers, on this node, the challenges any node publishes, until `shutdown`.
pub async fn follow_challenges(
    shared: Arc<dyn Shared>,
    solver: Arc<dyn Solver>,
    shutdown: CancellationToken,
) {
    let mut applied: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        match shared.list(CHALLENGES).await {
            Ok(rows) => {
                let now: HashMap<String, Vec<u8>> = rows.into_iter().collect();
                for (key, value) in &now {
                    if applied.get(key) != Some(value) {
                        apply(&*solver, key, Some(value));
                    }
                }
                for key in applied.keys() {
                    if !now.contains_key(key) {
                        apply(&*solver, key, None);
                    }
                }
                applied = now;
            }
            Err(e) => debug!(error = %e, "shared challenges not read now"),
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

fn apply(solver: &dyn Solver, key: &str, value: Option<&Vec<u8>>) {
    let Some((kind, name)) = key
        .strip_prefix(CHALLENGES)
        .and_then(|rest| rest.split_once('/'))
    else {
        return;
    };
    let text = value.map(|v| String::from_utf8_lossy(v).into_owned());
    let result = match kind {
        "dns" => {
            let values: Vec<String> = text
                .iter()
                .flat_map(|t| t.lines().map(str::to_string))
                .collect();
            solver.set_txt(name, &values)
        }
        "http" => {
            solver.set_http(name, text);
            Ok(())
        }
        "tls" => solver.set_tls_alpn(name, value.map(Vec::as_slice)),
        _ => Ok(()),
    };
    if let Err(e) = result {
        warn!(challenge = %key, error = %e, "a shared challenge cannot be answered here");
    }
}

/// A certificate as shared: the chain and its key, PEM.
#[derive(Debug, Serialize, Deserialize)]
struct Pair {
    chain: String,
    key: String,
}

fn certificate_key(want: &Wanted) -> String {
    let stem = want
        .cert
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("acme/certificate/{stem}")
}

/// Shares the certificate just issued for `want`.
pub async fn share_certificate(
    shared: &dyn Shared,
    want: &Wanted,
    chain: &str,
    key: &str,
) -> Result<(), Error> {
    let pair = serde_json::to_vec(&Pair {
        chain: chain.to_string(),
        key: key.to_string(),
    })
    .map_err(|e| Error::Shared(e.to_string()))?;
    shared.put(&certificate_key(want), &pair).await
}

/// Writes the shared certificate of `want` to this node's files when it is another, for the
/// same names, valid longer than the one here (another node renewed it); what is served then.
pub async fn take_shared_certificate(
    shared: &dyn Shared,
    solver: &dyn Solver,
    want: &Wanted,
    local: Option<&store::Issued>,
) -> Option<store::Issued> {
    let key = certificate_key(want);
    let rows = shared.list(&key).await.ok()?;
    let (_, value) = rows.into_iter().find(|(name, _)| *name == key)?;
    let pair: Pair = serde_json::from_slice(&value).ok()?;
    let issued = store::Issued::parse(pair.chain.as_bytes())?;
    if !issued.names_match(&want.names) {
        return None;
    }
    if local.is_some_and(|l| l.leaf == issued.leaf || l.not_after >= issued.not_after) {
        return None;
    }
    match store::write_certificate(&want.cert, &want.key, &pair.chain, &pair.key) {
        Ok(()) => {
            info!(names = ?want.names, "certificate taken from the shared store (another node ordered it)");
            if let Err(e) = solver.installed() {
                warn!(error = %e, "the certificate taken is served once its files are seen");
            }
            Some(issued)
        }
        Err(e) => {
            warn!(error = %e, "the shared certificate cannot be written here");
            None
        }
    }
}

/// The account: this node's file, else the one another node shared, else `None`.
pub async fn shared_account(
    shared: &dyn Shared,
    path: &Path,
) -> Result<Option<instant_acme::AccountCredentials>, Error> {
    if let Some(credentials) = store::read_account(path)? {
        return Ok(Some(credentials));
    }
    let key = account_key(path);
    let rows = shared.list(&key).await?;
    let Some((_, value)) = rows.into_iter().find(|(name, _)| *name == key) else {
        return Ok(None);
    };
    let credentials: instant_acme::AccountCredentials =
        serde_json::from_slice(&value).map_err(|e| Error::Shared(e.to_string()))?;
    store::write_account(path, &credentials)?;
    Ok(Some(credentials))
}

pub async fn share_account(
    shared: &dyn Shared,
    path: &Path,
    credentials: &instant_acme::AccountCredentials,
) -> Result<(), Error> {
    let json = serde_json::to_vec(credentials).map_err(|e| Error::Shared(e.to_string()))?;
    shared.put(&account_key(path), &json).await
}

fn account_key(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("acme/account/{stem}")
}

/// The lease of the order of `want`.
pub fn lease_key(want: &Wanted) -> String {
    format!(
        "acme/order/{}",
        certificate_key(want).trim_start_matches("acme/certificate/")
    )
}
