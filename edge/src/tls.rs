//! Certificates: loaded from PEM files, or a self-signed one created once and kept; each served
//! by a resolver whose certificate can be replaced (SIGHUP, or the files changed:
//! `crate::renewal`) without touching open connections, and picked per handshake by the site
//! the TLS server name belongs to (`Certificates`).

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use foobar_state::Access;
use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tracing::info;

use crate::error::Error;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// PEM files named in the configuration.
    Files {
        /// The chain.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// A self-signed certificate for `names`, created once in `folder` and reused.
    SelfSigned {
        /// Where it is kept.
        folder: PathBuf,
        /// The names it covers.
        names: Vec<String>,
    },
    /// A certificate for `names` from an ACME CA, which the binary writes into `folder` (see
    /// [`Source::acme`]); until there is one, a self-signed one for the same names.
    Acme {
        /// Where the binary writes it.
        folder: PathBuf,
        /// The names it covers.
        names: Vec<String>,
        /// The challenge the site asks for (`http-01`, `tls-alpn-01`, `dns-01`), if any.
        challenge: Option<String>,
    },
}

/// A certificate the binary orders from an ACME CA for the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCertificate {
    /// The DNS names.
    pub names: Vec<String>,
    /// Where the binary writes the chain and the key (atomically; the edge picks them up).
    pub cert: PathBuf,
    /// Where the private key goes.
    pub key: PathBuf,
    /// The challenge the site asks for, if any.
    pub challenge: Option<String>,
}

impl Source {
    /// The files of an ACME certificate and what to order, for `Source::Acme`.
    pub fn acme(&self) -> Option<AcmeCertificate> {
        let Source::Acme {
            folder,
            names,
            challenge,
        } = self
        else {
            return None;
        };
        let stem = names.first().map_or_else(
            || "default".to_string(),
            |name| name.replace('*', "_wildcard"),
        );
        Some(AcmeCertificate {
            names: names.clone(),
            cert: folder.join(format!("{stem}.crt")),
            key: folder.join(format!("{stem}.key")),
            challenge: challenge.clone(),
        })
    }

    /// Whether this is the self-signed certificate, served on an address other machines reach:
    /// their browsers refuse it.
    pub fn self_signed_for_others(&self, listen: SocketAddr) -> bool {
        matches!(self, Source::SelfSigned { .. }) && !listen.ip().is_loopback()
    }
}

/// A loaded certificate with what the resolver needs to pick it.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The end-entity certificate, to check SNI names against.
    leaf: CertificateDer<'static>,
    /// The certificate and key files' bytes as read, to tell whether they changed since.
    files: Files,
    /// The end of the certificate's validity.
    not_after: Option<SystemTime>,
}

/// Picks the certificate for a TLS handshake: the default one without SNI (a client that
/// connects by IP address), the same one for any name it is valid for, none (a TLS alert) for
/// names it does not cover.
pub struct Resolver {
    current: ArcSwap<Loaded>,
    /// Where it comes from (a reload that names another source gets another resolver).
    source: Arc<Source>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current.load();
        match hello.server_name() {
            None => Some(loaded.key.clone()),
            Some(name) => covers(&loaded.leaf, name).then(|| loaded.key.clone()),
        }
    }
}

/// Every site's certificate, picked by the TLS server name: the certificate of the site whose
/// names include it; else the first that covers it (the zones' apex in the self-signed one, an
/// address); else none (a TLS alert). Without a name (a client that connects by address), the
/// default site's.
pub struct Certificates {
    table: ArcSwap<Table>,
    provider: Arc<CryptoProvider>,
    /// TLS-ALPN-01 challenges, answered ahead of any site's certificate.
    challenges: Arc<crate::challenge::Challenges>,
}

struct Table {
    /// The default site's first, each with what stops the watch on its files.
    resolvers: Vec<(Arc<Resolver>, tokio_util::sync::CancellationToken)>,
    names: crate::site::NameIndex,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == crate::challenge::ACME_TLS_ALPN))
        {
            // RFC 8737 section 3: the challenge's certificate, or none.
            return hello
                .server_name()
                .and_then(|name| self.challenges.tls_alpn(name));
        }
        let table = self.table.load();
        let Some(name) = hello.server_name() else {
            let (first, _) = table.resolvers.first()?;
            return Some(first.current.load().key.clone());
        };
        if let Some((resolver, _)) = table
            .names
            .find(name)
            .and_then(|at| table.resolvers.get(at))
        {
            return Some(resolver.current.load().key.clone());
        }
        table.resolvers.iter().find_map(|(resolver, _)| {
            let loaded = resolver.current.load();
            covers(&loaded.leaf, name).then(|| loaded.key.clone())
        })
    }
}

impl Certificates {
    /// A TLS server configuration answering with these certificates, for `alpn`; TLS 1.2 too
    /// where `with_tls12` (TCP), never 0-RTT.
    pub(crate) fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        with_tls12: bool,
    ) -> Result<rustls::ServerConfig, Error> {
        let resolver: Arc<dyn rustls::server::ResolvesServerCert> = self.clone();
        let versions: &[&rustls::SupportedProtocolVersion] = if with_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider().clone())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // No 0-RTT: early data is replayable and this edge does not limit it to safe methods.
        config.max_early_data_size = 0;
        Ok(config)
    }

    /// Loads every certificate of `sources` (each with the site names it serves); the first is
    /// the default.
    pub fn new(
        sources: &[(Source, Vec<crate::site::Name>)],
        provider: Arc<CryptoProvider>,
    ) -> Result<Certificates, Error> {
        let table = Table::load(sources, &provider, &[])?;
        Ok(Certificates {
            table: ArcSwap::from_pointee(table),
            challenges: Arc::new(crate::challenge::Challenges::new(provider.clone())),
            provider,
        })
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    pub fn challenges(&self) -> &Arc<crate::challenge::Challenges> {
        &self.challenges
    }

    /// The sources in use, the default first.
    pub fn sources(&self) -> Vec<Arc<Source>> {
        self.table
            .load()
            .resolvers
            .iter()
            .map(|(r, _)| r.source())
            .collect()
    }

    /// Serves the certificates of `sources` from now on, if every one loads; else nothing
    /// changes. Certificates already served from the same source are kept (and read again).
    pub fn replace(&self, sources: &[(Source, Vec<crate::site::Name>)]) -> Result<(), Error> {
        let current = self.table.load_full();
        let table = Table::load(sources, &self.provider, &current.resolvers)?;
        for (resolver, stop) in &current.resolvers {
            if !table
                .resolvers
                .iter()
                .any(|(kept, _)| Arc::ptr_eq(kept, resolver))
            {
                stop.cancel();
            }
        }
        table.report();
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Serves the certificates whose files changed, now (rather than when the watch on their
    /// folders tells); on an error the one served stays.
    pub fn refresh(&self) -> Result<(), Error> {
        for (resolver, _) in &self.table.load().resolvers {
            resolver.refresh()?;
        }
        Ok(())
    }

    /// Reads every certificate again (SIGHUP); on an error the ones served stay.
    pub fn reload(&self) -> Result<(), Error> {
        for (resolver, _) in &self.table.load().resolvers {
            resolver.reload()?;
        }
        Ok(())
    }

    /// Keeps every certificate current (`crate::renewal`) until `shutdown`, including those a
    /// reload adds.
    pub async fn keep_current(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut watched: Vec<Arc<Resolver>> = Vec::new();
        loop {
            let table = self.table.load_full();
            for (resolver, stop) in &table.resolvers {
                if !watched.iter().any(|w| Arc::ptr_eq(w, resolver)) {
                    watched.push(resolver.clone());
                    tokio::spawn(crate::renewal::keep_current(
                        resolver.clone(),
                        stop.child_token(),
                    ));
                }
            }
            watched.retain(|w| table.resolvers.iter().any(|(r, _)| Arc::ptr_eq(r, w)));
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => {
                    for (_, stop) in &table.resolvers {
                        stop.cancel();
                    }
                    return;
                }
            }
        }
    }
}

impl Table {
    fn load(
        sources: &[(Source, Vec<crate::site::Name>)],
        provider: &Arc<CryptoProvider>,
        reuse: &[(Arc<Resolver>, tokio_util::sync::CancellationToken)],
    ) -> Result<Table, Error> {
        let mut resolvers = Vec::with_capacity(sources.len());
        let mut names = crate::site::NameIndex::default();
        for (at, (source, site_names)) in sources.iter().enumerate() {
            let known = reuse
                .iter()
                .find(|(resolver, _)| *resolver.source() == *source);
            let entry = match known {
                Some((resolver, stop)) => {
                    resolver.reload()?;
                    (resolver.clone(), stop.clone())
                }
                None => (
                    Arc::new(Resolver::new(source.clone(), provider.clone())?),
                    tokio_util::sync::CancellationToken::new(),
                ),
            };
            resolvers.push(entry);
            for name in site_names {
                names.add(name, at);
            }
        }
        if resolvers.is_empty() {
            return Err(Error::Config {
                key: "site".to_string(),
                reason: "no certificate".to_string(),
            });
        }
        Ok(Table { resolvers, names })
    }

    fn report(&self) {
        let files: Vec<String> = self
            .resolvers
            .iter()
            .map(|(resolver, _)| resolver.current.load().files.cert.0.display().to_string())
            .collect();
        crate::metrics::metrics().certificates_in_use(&files);
    }
}

/// Whether the certificate is valid for the DNS name or IP address `name`.
fn covers(leaf: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

impl Resolver {
    pub fn new(source: Source, provider: Arc<CryptoProvider>) -> Result<Resolver, Error> {
        Ok(Resolver {
            current: ArcSwap::from_pointee(load(&source, &provider)?),
            source: Arc::new(source),
            provider,
        })
    }

    pub fn source(&self) -> Arc<Source> {
        self.source.clone()
    }

    /// Loads the certificate again; on error the current one stays.
    pub fn reload(&self) -> Result<(), Error> {
        self.current
            .store(Arc::new(load(&self.source, &self.provider)?));
        Ok(())
    }

    /// Loads the certificate again if its files changed since it was loaded; true if it did.
    /// On error the current one stays.
    pub fn refresh(&self) -> Result<bool, Error> {
        let files = read(&self.source)?;
        let before = self.current.load_full();
        if files == before.files {
            return Ok(false);
        }
        let loaded = parse(files, &self.provider)?;
        if loaded.files.cert.0 != before.files.cert.0 {
            crate::metrics::metrics().certificate_moved(
                &before.files.cert.0.display().to_string(),
                &loaded.files.cert.0.display().to_string(),
            );
        }
        self.current.store(Arc::new(loaded));
        Ok(true)
    }

    /// When the served certificate stops being valid.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.current.load().not_after
    }
}

/// The certificate and key files: paths and bytes.
#[derive(PartialEq, Eq)]
struct Files {
    cert: (PathBuf, Vec<u8>),
    key: (PathBuf, Vec<u8>),
}

/// The certificate and key files of `source`, read.
fn read(source: &Source) -> Result<Files, Error> {
    let (cert, key) = match source {
        Source::Files { cert, key } => (cert.clone(), key.clone()),
        Source::SelfSigned { folder, names } => self_signed(folder, names)?,
        Source::Acme { .. } => acme_or_self_signed(source)?,
    };
    let read = |path: PathBuf| match std::fs::read(&path) {
        Ok(bytes) => Ok((path, bytes)),
        Err(e) => Err(Error::Certificate {
            path,
            reason: e.to_string(),
        }),
    };
    Ok(Files {
        cert: read(cert)?,
        key: read(key)?,
    })
}

/// Checks that `source` loads, writing nothing: a self-signed certificate that does not exist
/// yet (or no longer covers every name) would be created, which is not an error.
pub fn check(source: &Source, provider: &CryptoProvider) -> Result<(), Error> {
    if let Source::SelfSigned { folder, names } = source
        && !self_signed_current(folder, names)
    {
        return Ok(());
    }
    if let Some(acme) = source.acme()
        && !(acme.cert.exists() && acme.key.exists())
    {
        return Ok(());
    }
    load(source, provider).map(|_| ())
}

fn load(source: &Source, provider: &CryptoProvider) -> Result<Loaded, Error> {
    parse(read(source)?, provider)
}

/// The certificate chain and key in PEM `files`.
fn parse(files: Files, provider: &CryptoProvider) -> Result<Loaded, Error> {
    let (cert_path, cert_pem) = &files.cert;
    let (key_path, key_pem) = &files.key;
    let tls = |reason: String| Error::Certificate {
        path: cert_path.clone(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls(e.to_string()))?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or_else(|| tls("no certificate in the file".to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Certificate {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| Error::Certificate {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match()
        .map_err(|e| tls(format!("certificate and key do not match: {e}")))?;
    info!(
        cert = %cert_path.display(),
        spki_sha256 = %spki_sha256(&leaf).unwrap_or_default(),
        "certificate loaded"
    );
    let parsed = x509_parser::parse_x509_certificate(&leaf).ok();
    let not_after = parsed
        .as_ref()
        .and_then(|(_, cert)| u64::try_from(cert.validity().not_after.timestamp()).ok())
        .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
    if let (Some((_, cert)), Some(expiry)) = (&parsed, not_after) {
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let seconds = expiry
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        crate::metrics::metrics().certificate(cert_path.display().to_string(), names, seconds);
    }
    Ok(Loaded {
        key: Arc::new(key),
        leaf,
        files,
        not_after,
    })
}

/// The base64 SHA-256 of the certificate's public key, as browsers pin it
/// (`--ignore-certificate-errors-spki-list`, HPKP-style pins).
pub fn spki_sha256(leaf: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let spki = cert.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Some(data_encoding::BASE64.encode(digest.as_ref()))
}

/// The ACME certificate's files once issued, else a self-signed certificate for its names
/// (kept beside them, apart from the one of sites without a certificate).
fn acme_or_self_signed(source: &Source) -> Result<(PathBuf, PathBuf), Error> {
    let (Source::Acme { folder, names, .. }, Some(acme)) = (source, source.acme()) else {
        return Err(Error::Config {
            key: "acme".to_string(),
            reason: "not an ACME certificate".to_string(),
        });
    };
    if acme.cert.exists() && acme.key.exists() {
        return Ok((acme.cert, acme.key));
    }
    let stem = acme
        .cert
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut all = names.clone();
    all.push("localhost".to_string());
    self_signed(&folder.join("self-signed").join(stem), &all)
}

fn self_signed_paths(folder: &Path) -> (PathBuf, PathBuf) {
    (
        folder.join("self-signed.crt"),
        folder.join("self-signed.key"),
    )
}

/// Whether the self-signed certificate in `folder` exists, with its key, and covers `names`.
fn self_signed_current(folder: &Path, names: &[String]) -> bool {
    let (cert_path, key_path) = self_signed_paths(folder);
    let current = std::fs::read(&cert_path).ok().and_then(|pem| {
        CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(Result::ok)
    });
    // A wildcard is covered when a name it stands for is.
    let covered = |leaf: &CertificateDer<'_>, name: &String| match name.strip_prefix("*.") {
        Some(parent) => covers(leaf, &format!("wildcard-test.{parent}")),
        None => covers(leaf, name),
    };
    current.is_some_and(|leaf| names.iter().all(|name| covered(&leaf, name))) && key_path.exists()
}

/// The self-signed certificate in `folder`, created when missing or when it no longer covers
/// every name (a zone was added). Kept across restarts so a browser exception stays valid.
fn self_signed(folder: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), Error> {
    let (cert_path, key_path) = self_signed_paths(folder);
    if self_signed_current(folder, names) {
        return Ok((cert_path, key_path));
    }
    let write = |path: &Path, reason: std::io::Error| Error::Certificate {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let generated =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| Error::Certificate {
            path: cert_path.clone(),
            reason: format!("cannot create a self-signed certificate: {e}"),
        })?;
    let key_pem = generated.signing_key.serialize_pem();
    foobar_state::write(&key_path, key_pem.as_bytes(), Access::Private)
        .map_err(|e| write(&key_path, e))?;
    foobar_state::write(&cert_path, generated.cert.pem().as_bytes(), Access::Public)
        .map_err(|e| write(&cert_path, e))?;
    info!(cert = %cert_path.display(), names = ?names, "created a self-signed certificate");
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn self_signed_is_created_once_and_renewed_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let source = |list: &[&str]| Source::SelfSigned {
            folder: dir.path().join("tls"),
            names: names(list),
        };
        let first = load(
            &source(&["foobar.com", "www.foobar.com", "127.0.0.1"]),
            &provider,
        )
        .unwrap();
        let again = load(
            &source(&["foobar.com", "www.foobar.com", "127.0.0.1"]),
            &provider,
        )
        .unwrap();
        assert_eq!(first.leaf, again.leaf, "reused across restarts");
        for name in ["foobar.com", "www.foobar.com", "127.0.0.1"] {
            assert!(covers(&first.leaf, name), "{name}");
        }
        assert!(!covers(&first.leaf, "example.org"));
        let renewed = load(
            &source(&["foobar.com", "www.foobar.com", "example.org"]),
            &provider,
        )
        .unwrap();
        assert_ne!(
            first.leaf, renewed.leaf,
            "a new zone's name needs a new certificate"
        );
        assert!(covers(&renewed.leaf, "example.org"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/self-signed.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
    }

    #[test]
    fn only_the_self_signed_certificate_on_a_reachable_address_is_flagged() {
        let self_signed = Source::SelfSigned {
            folder: PathBuf::from("tls"),
            names: names(&["foobar.com"]),
        };
        let files = Source::Files {
            cert: PathBuf::from("cert.pem"),
            key: PathBuf::from("key.pem"),
        };
        for (addr, flagged) in [
            ("127.0.0.1:443", false),
            ("127.0.0.5:443", false),
            ("[::1]:443", false),
            ("0.0.0.0:443", true),
            ("[::]:443", true),
            ("192.0.2.1:443", true),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(self_signed.self_signed_for_others(addr), flagged, "{addr}");
            assert!(!files.self_signed_for_others(addr), "{addr}");
        }
    }

    #[test]
    fn mismatched_files_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(names(&["a.example"])).unwrap();
        let b = rcgen::generate_simple_self_signed(names(&["b.example"])).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let error = load(&Source::Files { cert, key }, &provider).err().unwrap();
        assert!(error.to_string().contains("do not match"), "{error}");
    }
}
