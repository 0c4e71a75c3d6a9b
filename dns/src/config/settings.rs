//! The `[dns]` settings for transfers turned into what serves them: the TSIG keyring, each
//! zone's transfer and NOTIFY policy, and the secondary zones. A rule or a zone that names a key
//! no `[[dns.tsig]]` defines, or a `tls:NAME` no `[[dns.tls_auth]]` does, is an error, named.

use std::{path::Path, sync::Arc};

use tokio::sync::Notify;

use crate::{
    Error,
    config::{Config, TsigKey},
    transfer::access::{Access, Peer, ZoneAccess},
    transfer::secondary::{Primary, Secondary},
    transfer::tls::TlsAuth,
    transfer::tsig::{Algorithm, Key, Keyring},
    wire::name,
};

/// The keys of `[[dns.tsig]]`; secret files are read relative to `state_dir`.
fn keyring(keys: &[TsigKey], state_dir: &Path) -> Result<Keyring, Error> {
    let mut ring = Vec::new();
    for key in keys {
        let invalid = |reason: String| Error::Config(format!("tsig key {:?}: {reason}", key.name));
        let algorithm = Algorithm::from_name(&key.algorithm).ok_or_else(|| {
            invalid(format!(
                "unknown algorithm {:?} (hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha1)",
                key.algorithm
            ))
        })?;
        let secret = match (&key.secret, &key.secret_file) {
            (Some(secret), None) => secret.clone(),
            (None, Some(file)) => {
                let path = state_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                secret_in(&text)
            }
            _ => {
                return Err(invalid(
                    "give secret or secret_file, one of them".to_string(),
                ));
            }
        };
        let bytes = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .map_err(|e| invalid(format!("the secret is not base64: {e}")))?;
        if bytes.is_empty() {
            return Err(invalid("an empty secret".to_string()));
        }
        if ring.iter().any(|k: &Key| {
            k.name()
                .eq_ignore_ascii_case(&format!("{}.", key.name.trim_end_matches('.')))
        }) {
            return Err(invalid("defined twice".to_string()));
        }
        ring.push(Key::new(&key.name, algorithm, &bytes).map_err(|e| invalid(e.to_string()))?);
    }
    Ok(Keyring::new(ring))
}

/// The secret in a key file: a BIND key file's `secret "...";`, else the whole text.
fn secret_in(text: &str) -> String {
    text.split_once("secret")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// `https_path`, which must be empty (off) or a plain path.
pub fn https_path(config: &Config) -> Result<(), Error> {
    let path = &config.https_path;
    let plain = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
    if !(path.is_empty() || path.starts_with('/') && path.chars().all(plain)) {
        return Err(Error::Config(format!(
            "https_path {path:?}: a path such as \"/dns-query\" (letters, digits, / - . _ ~)"
        )));
    }
    Ok(())
}

/// Every transfer and NOTIFY rule of `config`, checked against its keys.
pub fn access(config: &Config, state_dir: &Path) -> Result<Access, Error> {
    let keyring = keyring(&config.tsig, state_dir)?;
    let known = |name: &Option<String>, place: &str| match name {
        Some(name) if keyring.get(name).is_none() => Err(Error::Config(format!(
            "{place}: no [[dns.tsig]] key is named {name:?}"
        ))),
        _ => Ok(()),
    };
    for rule in &config.allow_transfer {
        known(&rule.key, "allow_transfer")?;
    }
    let mut zones = std::collections::HashMap::new();
    // NOTIFY goes over UDP, and the parent's DS is asked over UDP: TLS is for primaries.
    let plain = |peer: &Peer, place: &str| match &peer.tls {
        Some(_) => Err(Error::Config(format!(
            "{place}: {}: tls:NAME is for primaries (NOTIFY and DS queries go over UDP)",
            peer.address
        ))),
        None => Ok(()),
    };
    for (zone, settings) in &config.zone {
        let origin = origin(zone)?;
        for rule in &settings.allow_transfer {
            known(&rule.key, &format!("zone {zone:?} allow_transfer"))?;
        }
        for peer in &settings.notify {
            known(&peer.key, &format!("zone {zone:?} notify"))?;
            plain(peer, &format!("zone {zone:?} notify"))?;
        }
        for peer in &settings.dnssec_parent {
            plain(peer, &format!("zone {zone:?} dnssec_parent"))?;
        }
        zones.insert(
            name::key_of(&origin),
            ZoneAccess {
                transfer: settings.allow_transfer.clone(),
                notify: settings.notify.clone(),
                primaries: Vec::new(),
            },
        );
    }
    for secondary in &config.secondary {
        let origin = origin(&secondary.zone)?;
        let place = format!("secondary {:?}", secondary.zone);
        known(&secondary.key, &place)?;
        if secondary.primaries.is_empty() {
            return Err(Error::Config(format!("{place}: no primaries")));
        }
        let primaries: Vec<Peer> = secondary
            .primaries
            .iter()
            .map(|peer| Peer {
                address: peer.address,
                key: peer.key.clone().or_else(|| secondary.key.clone()),
                tls: peer.tls.clone(),
            })
            .collect();
        for peer in primaries.iter().chain(&secondary.notify) {
            known(&peer.key, &place)?;
        }
        for peer in &secondary.notify {
            plain(peer, &format!("{place} notify"))?;
        }
        for rule in &secondary.allow_transfer {
            known(&rule.key, &place)?;
        }
        let key = name::key_of(&origin);
        if zones.contains_key(&key) {
            return Err(Error::Config(format!(
                "{place}: also set in [dns.zone]; a secondary zone's settings go in its [[dns.secondary]]"
            )));
        }
        zones.insert(
            key,
            ZoneAccess {
                transfer: secondary.allow_transfer.clone(),
                notify: secondary.notify.clone(),
                primaries,
            },
        );
    }
    Ok(Access {
        keyring,
        default_transfer: config.allow_transfer.clone(),
        zones,
    })
}

/// The secondary zones of `config`, each with its primaries' keys and the place of its copy.
pub fn secondaries(
    config: &Config,
    state_dir: &Path,
    access: &Access,
) -> Result<Vec<Arc<Secondary>>, Error> {
    let mut tls_auths: Vec<Arc<TlsAuth>> = Vec::new();
    for settings in &config.tls_auth {
        let auth = TlsAuth::new(settings, state_dir)
            .map_err(|reason| Error::Config(format!("tls_auth {:?}: {reason}", settings.name)))?;
        if tls_auths.iter().any(|known| known.name() == settings.name) {
            return Err(Error::Config(format!(
                "tls_auth {:?}: defined twice",
                settings.name
            )));
        }
        tls_auths.push(Arc::new(auth));
    }
    let mut out: Vec<Arc<Secondary>> = Vec::new();
    for secondary in &config.secondary {
        let origin = origin(&secondary.zone)?;
        if out.iter().any(|s| name::eq_ignore_case(&s.origin, &origin)) {
            return Err(Error::Config(format!(
                "secondary {:?} is configured twice",
                secondary.zone
            )));
        }
        let zone = &access.zones[&name::key_of(&origin)];
        let primaries = zone
            .primaries
            .iter()
            .map(|peer| {
                let tls = match &peer.tls {
                    None => None,
                    Some(name) => Some(
                        tls_auths
                            .iter()
                            .find(|auth| auth.name() == name)
                            .cloned()
                            .ok_or_else(|| {
                                Error::Config(format!(
                                    "secondary {:?}: no [[dns.tls_auth]] is named {name:?}",
                                    secondary.zone
                                ))
                            })?,
                    ),
                };
                Ok(Primary {
                    address: peer.address,
                    key: access.key(peer.key.as_deref()),
                    tls,
                })
            })
            .collect::<Result<_, Error>>()?;
        let file = format!("{}zone", name::to_text(&origin));
        out.push(Arc::new(Secondary {
            origin,
            primaries,
            sources: sources(config),
            copy: state_dir.join("dns/secondary").join(file),
            notified: Notify::new(),
        }));
    }
    Ok(out)
}

/// The addresses this server listens on, for its own queries to come from.
pub fn sources(config: &Config) -> crate::transfer::notify::Sources {
    crate::transfer::notify::Sources(config.listen.iter().map(|a| a.ip()).collect())
}

fn origin(text: &str) -> Result<Vec<u8>, Error> {
    crate::wire::name::from_text(text)
        .map_err(|reason| Error::Config(format!("zone name {text:?}: {reason}")))
}

/// The zones signed here and how, from `[dns.zone."NAME"]` settings with `dnssec = true`.
pub fn signing(config: &Config, state_dir: &Path) -> Result<crate::dnssec::Signing, Error> {
    let mut policies = Vec::new();
    for (zone, settings) in &config.zone {
        let Some(policy) = settings.dnssec_policy() else {
            continue;
        };
        let place = format!("zone {zone:?}");
        if policy.validity.refresh >= policy.validity.lifetime {
            return Err(Error::Config(format!(
                "{place}: signature_refresh must be shorter than signature_validity"
            )));
        }
        if policy.schedule.ksk_lifetime > 0 && policy.parents.is_empty() {
            return Err(Error::Config(format!(
                "{place}: ksk_lifetime needs dnssec_parent, the parent zone's servers: the old key leaves only once they serve the new key's DS"
            )));
        }
        if policy.parent_check == 0 {
            return Err(Error::Config(format!(
                "{place}: parent_check_interval must be more than 0"
            )));
        }
        policies.push((origin(zone)?, policy));
    }
    Ok(crate::dnssec::Signing::new(state_dir, policies))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_key_file_gives_its_secret() {
        let bind =
            "key \"xfr.foobar.com\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(secret_in(bind), "c2VjcmV0");
        assert_eq!(secret_in("  c2VjcmV0\n"), "c2VjcmV0");
    }
}
