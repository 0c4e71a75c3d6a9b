//! One account and one order: challenges set up through the solver, validated, the key made and
//! the chain fetched, the challenges taken down whatever happened.

use std::{collections::HashMap, path::Path, time::Duration};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{debug, info};

use crate::{Config, Error, Node, Solver, Wanted, cluster, store};

/// How long the CA may take to validate and to issue.
const VALIDATION: Duration = Duration::from_secs(120);
/// How long the zone's nameservers may take to answer a new TXT record.
const PROPAGATION: Duration = Duration::from_secs(60);

/// The account for `config`'s CA: the one kept in `state_dir` or shared by another node, else
/// a new one (kept and shared).
pub async fn account(
    config: &Config,
    state_dir: &Path,
    shared: &dyn crate::Shared,
) -> Result<Account, Error> {
    let builder = || match &config.ca_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let path = store::account_path(state_dir, &config.directory);
    if let Some(credentials) = cluster::shared_account(shared, &path).await? {
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact: Vec<String> = config
        .contact
        .iter()
        .map(|c| {
            if c.contains(':') {
                c.clone()
            } else {
                format!("mailto:{c}")
            }
        })
        .collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match (&config.eab_kid, &config.eab_hmac_key) {
        (Some(kid), Some(key)) => {
            let key = data_encoding::BASE64URL_NOPAD
                .decode(key.trim_end_matches('=').as_bytes())
                .map_err(|e| Error::Config(format!("eab_hmac_key: {e}")))?;
            Some(ExternalAccountKey::new(kid.clone(), &key))
        }
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "eab_kid and eab_hmac_key go together".to_string(),
            ));
        }
    };
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            eab.as_ref(),
        )
        .await?;
    store::write_account(&path, &credentials)?;
    cluster::share_account(shared, &path, &credentials).await?;
    info!(account = %account.id(), "ACME account created");
    Ok(account)
}

/// A challenge being answered, to take down afterwards.
enum Set {
    Txt(String),
    Http(String),
    TlsAlpn(String),
}

/// Orders the certificate `want` names (replacing `previous`, if the CA knows renewal
/// information), writes it, and says what it is.
pub async fn issue(
    account: &Account,
    config: &Config,
    want: &Wanted,
    previous: Option<&store::Issued>,
    node: &Node,
) -> Result<store::Issued, Error> {
    let mut set = Vec::new();
    let mut txt: HashMap<String, Vec<String>> = HashMap::new();
    let result = order(account, config, want, previous, node, &mut set, &mut txt).await;
    let (shared, solver) = (&*node.shared, &*node.solver);
    for challenge in set {
        let _ = match challenge {
            Set::Txt(name) => cluster::publish_txt(shared, solver, &name, &[]).await,
            Set::Http(token) => cluster::publish_http(shared, solver, &token, None).await,
            Set::TlsAlpn(name) => cluster::publish_tls_alpn(shared, solver, &name, None).await,
        };
    }
    result
}

async fn order(
    account: &Account,
    config: &Config,
    want: &Wanted,
    previous: Option<&store::Issued>,
    node: &Node,
    set: &mut Vec<Set>,
    txt: &mut HashMap<String, Vec<String>>,
) -> Result<store::Issued, Error> {
    let (shared, solver) = (&*node.shared, &*node.solver);
    let identifiers: Vec<Identifier> = want
        .names
        .iter()
        .map(|name| Identifier::Dns(name.clone()))
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = &config.profile {
        new_order = new_order.profile(profile);
    }
    let replaces =
        previous.and_then(|p| instant_acme::CertificateIdentifier::try_from(&p.leaf).ok());
    let mut order = match replaces {
        Some(replaces) => match account.new_order(&new_order.replaces(replaces)).await {
            // A CA without renewal information (or that refuses the replacement) gets a plain
            // order.
            Ok(order) => order,
            Err(e) => {
                debug!(error = %e, "order with `replaces` refused; ordering without");
                account.new_order(&NewOrder::new(&identifiers)).await?
            }
        },
        None => account.new_order(&new_order).await?,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::Challenge(format!(
                    "authorization for {} is {other:?}",
                    authorization.identifier()
                )));
            }
        }
        let identifier = authorization.identifier();
        let Identifier::Dns(name) = identifier.identifier else {
            return Err(Error::Challenge(format!(
                "only DNS names are ordered, not {identifier}"
            )));
        };
        let name = name.clone();
        let kind = choose(want, &name, identifier.wildcard, solver);
        let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
            Error::Challenge(format!("the CA offers no {kind:?} challenge for {name}"))
        })?;
        let key_authorization = challenge.key_authorization();
        match kind {
            ChallengeType::Dns01 => {
                let owner = format!("_acme-challenge.{}", name.trim_start_matches("*."));
                let value = key_authorization.dns_value();
                let values = txt.entry(owner.clone()).or_default();
                values.push(value.clone());
                set.push(Set::Txt(owner.clone()));
                cluster::publish_txt(shared, solver, &owner, values).await?;
                tokio::time::timeout(
                    PROPAGATION,
                    solver.txt_visible(&owner, &value, config.dns_check_port),
                )
                .await
                .map_err(|_| {
                    Error::Challenge(format!(
                        "{owner} TXT not answered by every nameserver within {}s",
                        PROPAGATION.as_secs()
                    ))
                })??;
            }
            ChallengeType::Http01 => {
                set.push(Set::Http(challenge.token.clone()));
                cluster::publish_http(
                    shared,
                    solver,
                    &challenge.token,
                    Some(key_authorization.as_str()),
                )
                .await?;
            }
            ChallengeType::TlsAlpn01 => {
                set.push(Set::TlsAlpn(name.clone()));
                let digest = key_authorization.digest();
                cluster::publish_tls_alpn(shared, solver, &name, Some(digest.as_ref())).await?;
            }
            _ => {}
        }
        info!(%name, kind = kind_name(&kind), "challenge answered; asking the CA to validate");
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(Error::Challenge(format!(
            "the order is {status:?}{}",
            failure(&mut order).await
        )));
    }
    let key_pem = order.finalize().await?;
    let chain = order.poll_certificate(&retries).await?;
    let issued = store::Issued::parse(chain.as_bytes())
        .ok_or_else(|| Error::Challenge("the CA's certificate cannot be read".to_string()))?;
    store::write_certificate(&want.cert, &want.key, &chain, &key_pem)?;
    solver.installed()?;
    if let Err(e) = cluster::share_certificate(shared, want, &chain, &key_pem).await {
        // Served here; the other nodes get it once the store is back (each writes it again).
        tracing::warn!(error = %e, "the new certificate is not shared yet");
    }
    Ok(issued)
}

/// The challenge kind for `name`: DNS-01 for wildcards; else the site's choice; else DNS-01
/// where the DNS is ours, HTTP-01 elsewhere.
fn choose(want: &Wanted, name: &str, wildcard: bool, solver: &dyn Solver) -> ChallengeType {
    if wildcard {
        return ChallengeType::Dns01;
    }
    match want.challenge.as_deref() {
        Some("http-01") => ChallengeType::Http01,
        Some("tls-alpn-01") => ChallengeType::TlsAlpn01,
        Some("dns-01") => ChallengeType::Dns01,
        _ if solver.serves_dns(&format!("_acme-challenge.{name}")) => ChallengeType::Dns01,
        _ => ChallengeType::Http01,
    }
}

fn kind_name(kind: &ChallengeType) -> &'static str {
    match kind {
        ChallengeType::Dns01 => "dns-01",
        ChallengeType::Http01 => "http-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        _ => "other",
    }
}

/// Why the CA refused, from the authorizations' challenges, for the log.
async fn failure(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        for challenge in &authorization.challenges {
            if let Some(error) = &challenge.error {
                reasons.push(format!("{}: {error}", authorization.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}
