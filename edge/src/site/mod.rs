//! Sites by name, and their routes.
//!
//! ```text
//!  Request<Body> ──▶ site by Host / :authority (else the first)      ─ 421 if HTTP/2 or HTTP/3
//!                     │                                                 came over another site's
//!                     ▼                                                 certificate
//!                    its routes in file order, first match (path prefix or exact, methods)
//!                     ├─▶ static files (root, index, try_files)
//!                     ├─▶ the built-in app ──(paths it does not know)──▶ the site's static files
//!                     ├─▶ proxy ──▶ upstreams          (crate::proxy)
//!                     ├─▶ FastCGI ──▶ PHP-FPM          (crate::fastcgi)
//!                     └─▶ redirect, or a fixed response
//!                    then the route's response headers, and the site's security headers
//! ```
//!
//! A site, its routes and its upstreams are built whole from the configuration (`Plan` at load,
//! `Sites` once serving) and replaced whole by a reload; a request in flight keeps the ones it
//! started with.

pub mod config;
mod name;
pub(crate) mod route;

use std::{
    convert::Infallible,
    net::IpAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use tower::{Service, ServiceExt};

pub use self::name::{Name, NameIndex, strip_port};
pub use self::route::{App, Fallthrough};
use self::{
    config::{Action, SiteConfig},
    route::Route,
};
use crate::{
    Config, Error,
    files::{StaticFiles, static_files},
    service::{Connection, Stamp, peer},
    tls::Source,
};

/// The sites as configured, checked and with their static roots open, waiting for what only
/// serving provides (the app, the upstream registry, the HTTPS port).
#[derive(Debug)]
pub struct Plan {
    sites: Vec<PlannedSite>,
    /// Every distinct certificate the sites use, the default site's first.
    pub certificates: Vec<(Source, Vec<Name>)>,
    trusted_proxies: Arc<Trusted>,
    /// `[edge] max_body_bytes`: for routes that set none.
    max_body_bytes: u64,
}

#[derive(Debug)]
struct PlannedSite {
    config: SiteConfig,
    /// The site's own root, opened.
    files: Option<StaticFiles>,
    /// The roots routes name, opened, in route order (`None` for routes without one).
    route_files: Vec<Option<StaticFiles>>,
    certificate: usize,
    headers: crate::config::Headers,
}

/// Networks whose `X-Forwarded-For` and `Forwarded` headers are believed.
#[derive(Debug, Default)]
pub struct Trusted(Vec<ipnet::IpNet>);

impl Trusted {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&address))
    }
}

impl Plan {
    /// Every exact name of every site (wildcards left out), in site order.
    pub fn names(&self) -> Vec<String> {
        self.sites
            .iter()
            .flat_map(|site| site.config.names.iter())
            .filter(|name| !name.starts_with("*."))
            .cloned()
            .collect()
    }

    /// Checks and opens what `sites` name. Without sites, the one default site of `[edge]`:
    /// the built-in app in front of `[edge] root`, for `default_names` (the zones' names).
    /// `cache_bytes` sizes each root's file cache (0 while only checking). With `acme`, sites
    /// without certificate files get theirs from an ACME CA (`Source::Acme`).
    pub fn new(
        edge: &Config,
        sites: &[SiteConfig],
        state_dir: &Path,
        default_names: &[String],
        cache_bytes: usize,
        acme: bool,
    ) -> Result<Plan, Error> {
        let configs: Vec<SiteConfig> = if sites.is_empty() {
            vec![default_site(edge, default_names)]
        } else {
            sites.to_vec()
        };
        let implicit = sites.is_empty();
        let mut certificates: Vec<(Source, Vec<Name>)> = Vec::new();
        let mut self_signed_names: Vec<String> = Vec::new();
        let mut planned = Vec::with_capacity(configs.len());
        for site in configs {
            site.check().map_err(|reason| Error::Config {
                key: "site".to_string(),
                reason: reason.to_string(),
            })?;
            let names: Vec<Name> = site
                .names
                .iter()
                .filter_map(|name| Name::parse(name).ok())
                .collect();
            let source = match (&site.cert, &site.key, &edge.cert, &edge.key) {
                (Some(cert), Some(key), _, _) | (None, None, Some(cert), Some(key)) => {
                    Source::Files {
                        cert: cert.clone(),
                        key: key.clone(),
                    }
                }
                (None, None, Some(path), None) | (None, None, None, Some(path)) => {
                    return Err(Error::Certificate {
                        path: path.clone(),
                        reason: "[edge] cert and key go together; set both or neither".to_string(),
                    });
                }
                _ if acme => Source::Acme {
                    folder: state_dir.join("acme/certificates"),
                    names: site.names.clone(),
                    challenge: site.acme_challenge.clone(),
                },
                _ => {
                    self_signed_names.extend(site.names.iter().cloned());
                    // Named below, once every site's names are known.
                    Source::SelfSigned {
                        folder: state_dir.join("tls"),
                        names: Vec::new(),
                    }
                }
            };
            let certificate = match certificates.iter().position(|(known, _)| *known == source) {
                Some(at) => {
                    certificates[at].1.extend(names.iter().cloned());
                    at
                }
                None => {
                    certificates.push((source, names.clone()));
                    certificates.len() - 1
                }
            };
            let cache_control = site.cache_control.as_ref().unwrap_or(&edge.cache_control);
            // Static answers are kept in memory (with a watch on the root), except under a root
            // an application runs from: PHP opens its files all the time, and every open would
            // wake the watch. There, as nginx does, files are read from disk on each request.
            let open = |root: &Path, keep: bool| -> Result<StaticFiles, Error> {
                let files = static_files(root, if keep { cache_bytes } else { 0 }, cache_control)?;
                Ok(if site.follow_symlinks {
                    files.following_symlinks()
                } else {
                    files
                })
            };
            let runs_code = |route: &config::RouteConfig| matches!(&route.action, Action::FastCgi(fastcgi) if fastcgi.root.is_none());
            let site_keeps = !site.route.iter().any(runs_code);
            let files = site
                .root
                .as_deref()
                .map(|root| open(root, site_keeps))
                .transpose()?;
            let mut route_files = Vec::with_capacity(site.route.len());
            for route in &site.route {
                let opened = match &route.action {
                    Action::Files(spec) => spec.root.as_deref().map(|root| open(root, true)),
                    Action::FastCgi(spec) => spec.root.as_deref().map(|root| open(root, false)),
                    _ => None,
                };
                route_files.push(opened.transpose()?);
            }
            let headers = site.headers.clone().unwrap_or_else(|| edge.headers.clone());
            Stamp::new(edge.https.port(), &headers)?;
            planned.push(PlannedSite {
                config: site,
                files,
                route_files,
                certificate,
                headers,
            });
        }
        // One self-signed certificate covers every name that has no certificate of its own:
        // the zones' names, localhost and the listen addresses too.
        for (source, _) in &mut certificates {
            if let Source::SelfSigned { names, .. } = source {
                let mut all = self_signed_names.clone();
                if !implicit {
                    all.extend(default_names.iter().cloned());
                }
                all.push("localhost".to_string());
                for addr in [edge.https, edge.http] {
                    if !addr.ip().is_unspecified() {
                        all.push(addr.ip().to_string());
                    }
                }
                all.sort();
                all.dedup();
                *names = all;
            }
        }
        let mut trusted = Vec::with_capacity(edge.trusted_proxies.len());
        for text in &edge.trusted_proxies {
            trusted.push(parse_network(text).ok_or_else(|| Error::Config {
                key: "trusted_proxies".to_string(),
                reason: format!("not an address or network: {text:?}"),
            })?);
        }
        Ok(Plan {
            sites: planned,
            certificates,
            trusted_proxies: Arc::new(Trusted(trusted)),
            max_body_bytes: edge.max_body_bytes as u64,
        })
    }

    /// The sites, serving: `app` answers the routes that name the built-in app (and `/readyz`
    /// on every site); upstreams come from `upstreams`, which keeps the ones a reload did not
    /// change, with what their health checks learned.
    pub fn build(
        &self,
        app: &App,
        https_port: u16,
        upstreams: &crate::proxy::Registry,
        fastcgi: &crate::fastcgi::Registry,
    ) -> Result<Sites, Error> {
        let mut sites = Vec::with_capacity(self.sites.len());
        let mut index = NameIndex::default();
        for (at, planned) in self.sites.iter().enumerate() {
            let config = &planned.config;
            for name in &config.names {
                if let Ok(name) = Name::parse(name) {
                    index.add(&name, at);
                }
            }
            let label = config.names.first().cloned().unwrap_or_default();
            let mut routes = Vec::with_capacity(config.route.len() + 1);
            let own_readyz = config
                .route
                .iter()
                .any(|route| route.exact && route.path == "/readyz");
            if !own_readyz {
                routes.push(Route::readyz(app.clone(), self.max_body_bytes));
            }
            let stamp = Stamp::new(https_port, &planned.headers)?;
            let site_files = planned.files.clone().map(|files| files.stamped(&stamp));
            for (route, files) in config.route.iter().zip(&planned.route_files) {
                let files = match files {
                    Some(files) => Some(files.clone().stamped(&stamp)),
                    None => site_files.clone(),
                };
                routes.push(Route::build(
                    &label,
                    route,
                    files,
                    app,
                    upstreams,
                    fastcgi,
                    &self.trusted_proxies,
                    https_port,
                    self.max_body_bytes,
                )?);
            }
            if config.route.is_empty() {
                routes.push(Route::files_only(site_files.clone(), self.max_body_bytes));
            }
            sites.push(Arc::new(Site {
                stamp,
                routes,
                files: site_files,
                certificate: planned.certificate,
            }));
        }
        Ok(Sites {
            sites: Arc::new(sites),
            index: Arc::new(index),
            trusted: self.trusted_proxies.clone(),
        })
    }
}

/// `[edge]` as a site: the built-in app, falling through to `root`.
fn default_site(edge: &Config, names: &[String]) -> SiteConfig {
    SiteConfig {
        names: if names.is_empty() {
            vec!["localhost".to_string()]
        } else {
            names.to_vec()
        },
        root: Some(edge.root.clone()),
        cert: None,
        key: None,
        acme_challenge: None,
        follow_symlinks: false,
        headers: None,
        cache_control: None,
        route: vec![config::RouteConfig {
            path: "/".to_string(),
            exact: false,
            methods: Vec::new(),
            action: Action::App,
            strip_prefix: false,
            max_body_bytes: None,
            request_headers: Default::default(),
            response_headers: Default::default(),
        }],
    }
}

/// An address (`192.0.2.1`) or a network (`10.0.0.0/8`).
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// One site, serving.
struct Site {
    stamp: Stamp,
    routes: Vec<Route>,
    files: Option<StaticFiles>,
    /// Which certificate its names get.
    certificate: usize,
}

/// The sites, as one service.
#[derive(Clone)]
pub struct Sites {
    sites: Arc<Vec<Arc<Site>>>,
    index: Arc<NameIndex>,
    trusted: Arc<Trusted>,
}

impl std::fmt::Debug for Sites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sites")
            .field("sites", &self.sites.len())
            .finish_non_exhaustive()
    }
}

/// The host a request names: `:authority` (HTTP/2, HTTP/3, absolute form), else `Host`.
pub(crate) fn request_host<B>(request: &Request<B>) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
    })
}

/// The client's address where it is not the peer's: when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not one. `None` where the client is the peer.
fn forwarded_client<B>(request: &Request<B>, trusted: &Trusted) -> Option<IpAddr> {
    let peer = peer(request.extensions())?.ip();
    if !trusted.contains(peer) {
        return None;
    }
    let mut client = peer;
    'values: for value in request.headers().get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else { break };
        for hop in text.rsplit(',') {
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                break 'values;
            };
            client = address;
            if !trusted.contains(address) {
                break 'values;
            }
        }
    }
    (client != peer).then_some(client)
}

impl Sites {
    fn site_for(&self, request: &Request<Body>) -> Result<&Arc<Site>, Box<Response<Body>>> {
        // One site answers every name, and no name is another site's (no 421): nothing to
        // look up.
        if let [only] = self.sites.as_slice() {
            return Ok(only);
        }
        let at = request_host(request)
            .and_then(|host| self.index.find(host))
            .unwrap_or(0);
        let site = self.sites.get(at).or_else(|| self.sites.first());
        let Some(site) = site else {
            return Err(Box::new(plain(StatusCode::NOT_FOUND, "no site\n")));
        };
        // RFC 9110 section 15.5.20: a connection may carry requests for other names only where
        // its certificate covers them; browsers reuse HTTP/2 and HTTP/3 connections so.
        if matches!(request.version(), Version::HTTP_2 | Version::HTTP_3)
            && let Some(name) = request
                .extensions()
                .get::<Connection>()
                .and_then(|c| c.tls_name.as_deref())
            && let Some(by_name) = self.index.find(name).and_then(|at| self.sites.get(at))
            && by_name.certificate != site.certificate
        {
            return Err(Box::new(plain(
                StatusCode::MISDIRECTED_REQUEST,
                "this connection is for another site; connect again for this one\n",
            )));
        }
        Ok(site)
    }
}

impl Service<Request<Body>> for Sites {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let site = match self.site_for(&request) {
            Ok(site) => site.clone(),
            Err(refused) => {
                let first = self.sites.first().cloned();
                return Box::pin(async move {
                    let mut refused = *refused;
                    if let Some(site) = first {
                        site.stamp.apply(refused.headers_mut());
                    }
                    Ok(refused)
                });
            }
        };
        // Set only behind a trusted proxy: `client_ip` reads the peer otherwise, and most
        // requests carry one extension fewer.
        if let Some(client) = forwarded_client(&request, &self.trusted) {
            request.extensions_mut().insert(ClientIp(client));
        }
        let route = site.routes.iter().position(|route| route.matches(&request));
        let files = match route.and_then(|at| site.routes.get(at)) {
            Some(route) => route.untouched_files(&request, site.files.as_ref()),
            None => site.files.as_ref(),
        };
        // A kept response carries the site's fields already (`StaticFiles::stamped`).
        if let Some(kept) = files.and_then(|files| files.kept(&request, &site.stamp)) {
            return Box::pin(std::future::ready(Ok(kept)));
        }
        Box::pin(async move {
            let route = route.and_then(|at| site.routes.get(at));
            let mut response = match route {
                Some(route) => route.handle(request, site.files.as_ref()).await,
                None => match &site.files {
                    Some(files) => files.clone().oneshot(request).await?,
                    None => plain(StatusCode::NOT_FOUND, "not found\n"),
                },
            };
            site.stamp.apply(response.headers_mut());
            Ok(response)
        })
    }
}

/// Whether `error` (reading a request body, or sending one on) comes from the route's body
/// limit: the answer is then 413.
pub(crate) fn body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The client's address as the sites see it (after `trusted_proxies`), where it is not the
/// peer's; read it with [`client_ip`].
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The client's address as the sites see it: the one a trusted proxy forwarded, else the peer.
pub fn client_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    match extensions.get::<ClientIp>() {
        Some(&ClientIp(address)) => Some(address),
        None => peer(extensions).map(|p| p.ip()),
    }
}

/// A short plain-text answer.
pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
