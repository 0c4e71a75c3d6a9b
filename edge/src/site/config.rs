//! The `[[site]]` tables of the configuration file and their `[[site.route]]`s, read and checked
//! whole: a table that names two actions, a proxy option on a static route or a bad upstream
//! address is refused with the line of its table, before anything is bound.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::config::Headers;

/// One `[[site]]`: a site answered for its names (TLS SNI, `Host`, `:authority`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSite")]
pub struct SiteConfig {
    /// Exact names and `*.example.com` wildcards (one label, as in certificates).
    pub names: Vec<String>,
    /// Static files, for routes that set no root of their own (and a site without routes).
    pub root: Option<PathBuf>,
    /// PEM certificate chain and key; without them, `[edge]`'s, else the self-signed one.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
    /// With `[acme]` and no certificate files: the ACME challenge to use (`dns-01`, `http-01`,
    /// `tls-alpn-01`); default: DNS-01 for names in the zones served here, else HTTP-01.
    pub acme_challenge: Option<String>,
    /// Serve files reached through symbolic links that lead outside the root (nginx's and
    /// Caddy's default; off here unless asked for).
    pub follow_symlinks: bool,
    /// Security headers; default: `[edge.headers]`.
    pub headers: Option<Headers>,
    /// `Cache-Control` of static answers by path prefix; default: `[edge.cache_control]`.
    pub cache_control: Option<BTreeMap<String, String>>,
    /// In file order; the first that matches answers.
    pub route: Vec<RouteConfig>,
}

/// A site as written; checked into a [`SiteConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    names: Vec<String>,
    #[serde(default)]
    root: Option<PathBuf>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    acme_challenge: Option<String>,
    #[serde(default)]
    follow_symlinks: bool,
    #[serde(default)]
    headers: Option<Headers>,
    #[serde(default)]
    cache_control: Option<BTreeMap<String, String>>,
    #[serde(default)]
    route: Vec<RouteConfig>,
}

/// A `[[site]]` or `[[site.route]]` that does not check out: where (the site's first name, the
/// route's path, the key) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct ConfigError {
    /// `site www.foobar.com`, `site.route "/api/"`, or with the key: `... : proxy`.
    pub at: String,
    /// What is wrong, as the key's rules say it.
    pub reason: String,
}

impl TryFrom<RawSite> for SiteConfig {
    type Error = ConfigError;

    fn try_from(raw: RawSite) -> Result<Self, ConfigError> {
        let site = SiteConfig {
            names: raw.names,
            root: raw.root,
            cert: raw.cert,
            key: raw.key,
            acme_challenge: raw.acme_challenge,
            follow_symlinks: raw.follow_symlinks,
            headers: raw.headers,
            cache_control: raw.cache_control,
            route: raw.route,
        };
        site.check()?;
        Ok(site)
    }
}

/// One `[[site.route]]`: which requests (path, methods) and what answers them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRoute")]
pub struct RouteConfig {
    /// A path prefix (`/api/` matches `/api/x`; `/api` also matches `/api` itself and `/api/x`,
    /// never `/apix`), or with `exact` the one path.
    pub path: String,
    /// Only the path itself, not what is below it.
    pub exact: bool,
    /// The methods matched; empty: all.
    pub methods: Vec<String>,
    /// What the route does.
    pub action: Action,
    /// The path prefix is taken off before the request goes on (proxy, FastCGI, files).
    pub strip_prefix: bool,
    /// Largest request body, in bytes (413 above it); default: `[edge] max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// Headers set or removed on the request before it goes on.
    pub request_headers: HeaderRules,
    /// Headers set or removed on the response.
    pub response_headers: HeaderRules,
}

/// What a route does with a request it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Static files from `root` (else the site's).
    Files(FilesConfig),
    /// The built-in app; paths it does not know fall through to the site's static files.
    App,
    Proxy(Box<ProxyConfig>),
    FastCgi(Box<FastCgiConfig>),
    /// A redirect to `to` (`{uri}` stands for the request's path and query), with `status`.
    Redirect {
        to: String,
        status: u16,
    },
    /// A fixed answer.
    Respond {
        status: u16,
        body: String,
    },
}

/// Static files: a root, index files, and names tried in order before a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    pub root: Option<PathBuf>,
    pub index: Vec<String>,
    /// Tried in order: `{path}` is the request path; the first that names a file is served,
    /// and the last is served whatever it is (`/index.html` for a single-page app).
    pub try_files: Vec<String>,
}

/// A reverse proxy to upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub upstreams: Vec<String>,
    pub policy: Policy,
    /// `Host` sent upstream: the client's (None), the upstream's own authority
    /// (`"{upstream}"`), or this value.
    pub host: Option<String>,
    pub connect_timeout: Duration,
    /// Time to the response's head; past it, 504.
    pub response_timeout: Duration,
    /// Time a body (either way) may go without a byte.
    pub read_timeout: Duration,
    /// Time a WebSocket may go without a byte either way.
    pub websocket_idle_timeout: Duration,
    /// Upstreams tried for one request, and the time all tries together may take.
    pub tries: u32,
    pub try_timeout: Duration,
    /// Connections open to one upstream at most (in use and idle).
    pub max_connections: usize,
    /// Idle connections kept per upstream, and for how long.
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// How often upstream host names are resolved again.
    pub resolve_interval: Duration,
    /// Failures within `fail_timeout` that mark an upstream down, for `fail_timeout`.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// Active health checks, when configured.
    pub health: Option<HealthConfig>,
    /// For `https://` upstreams: trust these roots (PEM) instead of the system's; the name
    /// checked and sent as SNI; whether the certificate is verified at all.
    pub ca: Option<PathBuf>,
    pub tls_name: Option<String>,
    pub tls_verify: bool,
}

/// How a proxy route picks an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    LeastConn,
    /// Sticky by the client's address (after `trusted_proxies`).
    ClientIp,
    /// Sticky by this request header's value.
    Header(http::HeaderName),
    /// Sticky by this cookie, set on the response when the client has none.
    Cookie(String),
}

/// Active health checks of a proxy route's upstreams (the probe of `[[dns.health]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Seconds,
    pub timeout: Seconds,
    /// The status expected; default: any 2xx or 3xx.
    pub status: Option<u16>,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/".to_string(),
            interval: Seconds(Duration::from_secs(5)),
            timeout: Seconds(Duration::from_secs(2)),
            status: None,
            rise: 2,
            fall: 2,
        }
    }
}

/// FastCGI (PHP-FPM), with the behaviour of Caddy's `php_fastcgi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastCgiConfig {
    /// `unix:/run/php/php8.2-fpm.sock` or `tcp:127.0.0.1:9000`.
    pub address: String,
    /// The document root (scripts and static files); else the site's.
    pub root: Option<PathBuf>,
    pub index: Vec<String>,
    pub try_files: Vec<String>,
    /// Extra CGI variables (`WORDPRESS_CONFIG`, `APP_ENV`, ...).
    pub params: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub read_timeout: Duration,
    pub max_connections: usize,
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

/// Headers set (replacing) and removed, on the way in or out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRules {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// A duration in (possibly fractional) seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds (2, 0.5)")
            }

            fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(seconds)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("not a number of seconds: {seconds}")))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Seconds, E> {
                u64::try_from(seconds)
                    .map(|s| Seconds(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("not a number of seconds: {seconds}")))
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(seconds)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A route as written; checked into a [`RouteConfig`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    methods: Vec<String>,
    // What it does: one of these (or `root` alone: static files).
    proxy: Option<Vec<String>>,
    fastcgi: Option<String>,
    app: Option<bool>,
    redirect: Option<String>,
    respond: Option<String>,
    // For several actions.
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    try_files: Option<Vec<String>>,
    status: Option<u16>,
    #[serde(default)]
    strip_prefix: bool,
    max_body_bytes: Option<u64>,
    #[serde(default)]
    request_headers: HeaderRules,
    #[serde(default)]
    response_headers: HeaderRules,
    // Proxy and FastCGI.
    connect_timeout: Option<Seconds>,
    response_timeout: Option<Seconds>,
    read_timeout: Option<Seconds>,
    max_connections: Option<usize>,
    max_idle: Option<usize>,
    idle_timeout: Option<Seconds>,
    // Proxy only.
    policy: Option<String>,
    host: Option<String>,
    websocket_idle_timeout: Option<Seconds>,
    tries: Option<u32>,
    try_timeout: Option<Seconds>,
    resolve_interval: Option<Seconds>,
    max_fails: Option<u32>,
    fail_timeout: Option<Seconds>,
    health: Option<HealthConfig>,
    ca: Option<PathBuf>,
    tls_name: Option<String>,
    tls_verify: Option<bool>,
    // FastCGI only.
    fastcgi_params: Option<BTreeMap<String, String>>,
}

fn secs(value: Option<Seconds>, default: u64) -> Duration {
    value.map_or(Duration::from_secs(default), |s| s.0)
}

impl TryFrom<RawRoute> for RouteConfig {
    type Error = ConfigError;

    fn try_from(raw: RawRoute) -> Result<Self, ConfigError> {
        let at = format!("site.route {:?}", raw.path);
        let fail = |reason: String| {
            Err(ConfigError {
                at: at.clone(),
                reason,
            })
        };
        if !raw.path.starts_with('/') {
            return fail("path starts with \"/\"".to_string());
        }
        for method in &raw.methods {
            if http::Method::from_bytes(method.as_bytes()).is_err() {
                return fail(format!("methods: not a method: {method:?}"));
            }
        }
        for (direction, rules) in [
            ("request_headers", &raw.request_headers),
            ("response_headers", &raw.response_headers),
        ] {
            for name in rules.set.keys().chain(&rules.remove) {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return fail(format!("{direction}: not a header name: {name:?}"));
                }
            }
            for value in rules.set.values() {
                if http::HeaderValue::from_str(value).is_err() {
                    return fail(format!("{direction}: not a header value: {value:?}"));
                }
            }
        }
        let chosen: Vec<&str> = [
            ("proxy", raw.proxy.is_some()),
            ("fastcgi", raw.fastcgi.is_some()),
            ("app", raw.app == Some(true)),
            ("redirect", raw.redirect.is_some()),
            ("respond", raw.respond.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            return fail(format!(
                "one of proxy, fastcgi, app, redirect, respond (or root alone for static \
                 files), not {}",
                chosen.join(" and ")
            ));
        }
        let kind = chosen.first().copied().unwrap_or("files");
        // Options that belong to other kinds of route are mistakes, not silently ignored.
        let proxy_only = [
            ("policy", raw.policy.is_some()),
            ("host", raw.host.is_some()),
            (
                "websocket_idle_timeout",
                raw.websocket_idle_timeout.is_some(),
            ),
            ("tries", raw.tries.is_some()),
            ("try_timeout", raw.try_timeout.is_some()),
            ("resolve_interval", raw.resolve_interval.is_some()),
            ("max_fails", raw.max_fails.is_some()),
            ("fail_timeout", raw.fail_timeout.is_some()),
            ("health", raw.health.is_some()),
            ("ca", raw.ca.is_some()),
            ("tls_name", raw.tls_name.is_some()),
            ("tls_verify", raw.tls_verify.is_some()),
        ];
        let upstream_only = [
            ("connect_timeout", raw.connect_timeout.is_some()),
            ("response_timeout", raw.response_timeout.is_some()),
            ("read_timeout", raw.read_timeout.is_some()),
            ("max_connections", raw.max_connections.is_some()),
            ("max_idle", raw.max_idle.is_some()),
            ("idle_timeout", raw.idle_timeout.is_some()),
        ];
        let mut misplaced: Vec<&str> = Vec::new();
        if kind != "proxy" {
            misplaced.extend(proxy_only.iter().filter(|o| o.1).map(|o| o.0));
        }
        if kind != "fastcgi" && raw.fastcgi_params.is_some() {
            misplaced.push("fastcgi_params");
        }
        if !matches!(kind, "proxy" | "fastcgi") {
            misplaced.extend(upstream_only.iter().filter(|o| o.1).map(|o| o.0));
        }
        if !matches!(kind, "files" | "fastcgi") {
            for (name, set) in [
                ("root", raw.root.is_some()),
                ("index", raw.index.is_some()),
                ("try_files", raw.try_files.is_some()),
            ] {
                if set {
                    misplaced.push(name);
                }
            }
        }
        if !matches!(kind, "redirect" | "respond") && raw.status.is_some() {
            misplaced.push("status");
        }
        if let Some(name) = misplaced.first() {
            return fail(format!("{name} does not apply to a {kind} route"));
        }
        let action = match kind {
            "proxy" => {
                let upstreams = raw.proxy.unwrap_or_default();
                if upstreams.is_empty() {
                    return fail("proxy: at least one upstream".to_string());
                }
                if upstreams.len() > crate::proxy::MAX_UPSTREAMS {
                    return fail(format!(
                        "proxy: at most {} upstreams",
                        crate::proxy::MAX_UPSTREAMS
                    ));
                }
                for upstream in &upstreams {
                    if let Err(reason) = crate::proxy::Target::parse(upstream) {
                        return fail(format!("proxy: {upstream:?}: {reason}"));
                    }
                }
                let policy = match Policy::parse(raw.policy.as_deref().unwrap_or("round_robin")) {
                    Ok(policy) => policy,
                    Err(reason) => return fail(format!("policy: {reason}")),
                };
                if let Some(health) = &raw.health {
                    if !health.path.starts_with('/') {
                        return fail("health.path starts with \"/\"".to_string());
                    }
                    if health.status.is_some_and(|s| !(100..600).contains(&s)) {
                        return fail("health.status: not an HTTP status".to_string());
                    }
                }
                if let Some(host) = &raw.host
                    && host != "{upstream}"
                    && http::HeaderValue::from_str(host).is_err()
                {
                    return fail(format!("host: not a header value: {host:?}"));
                }
                Action::Proxy(Box::new(ProxyConfig {
                    upstreams,
                    policy,
                    host: raw.host,
                    connect_timeout: secs(raw.connect_timeout, 5),
                    response_timeout: secs(raw.response_timeout, 60),
                    read_timeout: secs(raw.read_timeout, 60),
                    websocket_idle_timeout: secs(raw.websocket_idle_timeout, 600),
                    tries: raw.tries.unwrap_or(3).max(1),
                    try_timeout: secs(raw.try_timeout, 10),
                    max_connections: raw.max_connections.unwrap_or(1024).max(1),
                    max_idle: raw.max_idle.unwrap_or(32),
                    idle_timeout: secs(raw.idle_timeout, 60),
                    resolve_interval: secs(raw.resolve_interval, 60),
                    max_fails: raw.max_fails.unwrap_or(1),
                    fail_timeout: secs(raw.fail_timeout, 10),
                    health: raw.health,
                    ca: raw.ca,
                    tls_name: raw.tls_name,
                    tls_verify: raw.tls_verify.unwrap_or(true),
                }))
            }
            "fastcgi" => {
                let address = raw.fastcgi.unwrap_or_default();
                if let Err(reason) = crate::fastcgi::Address::parse(&address) {
                    return fail(format!("fastcgi: {address:?}: {reason}"));
                }
                Action::FastCgi(Box::new(FastCgiConfig {
                    address,
                    root: raw.root,
                    index: raw.index.unwrap_or_else(|| vec!["index.php".to_string()]),
                    try_files: raw.try_files.unwrap_or_else(|| {
                        ["{path}", "{path}/index.php", "/index.php"]
                            .map(String::from)
                            .to_vec()
                    }),
                    params: raw.fastcgi_params.unwrap_or_default(),
                    connect_timeout: secs(raw.connect_timeout, 5),
                    response_timeout: secs(raw.response_timeout, 60),
                    read_timeout: secs(raw.read_timeout, 60),
                    max_connections: raw.max_connections.unwrap_or(16).max(1),
                    // Each kept connection holds a PHP-FPM worker (see fastcgi::Pool): few,
                    // briefly.
                    max_idle: raw.max_idle.unwrap_or(2),
                    idle_timeout: raw.idle_timeout.map_or(Duration::from_secs(1), |s| s.0),
                }))
            }
            "app" => Action::App,
            "redirect" => {
                let status = raw.status.unwrap_or(308);
                if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                    return fail(format!("status {status} is not a redirect"));
                }
                let to = raw.redirect.unwrap_or_default();
                if http::HeaderValue::from_str(&to.replace("{uri}", "/")).is_err() {
                    return fail(format!("redirect: not a header value: {to:?}"));
                }
                Action::Redirect { to, status }
            }
            "respond" => {
                let status = raw.status.unwrap_or(200);
                if !(200..600).contains(&status) {
                    return fail(format!("status {status} is not a final HTTP status"));
                }
                Action::Respond {
                    status,
                    body: raw.respond.unwrap_or_default(),
                }
            }
            _ => {
                if raw.app == Some(false) && raw.root.is_none() {
                    return fail("app = false: say what the route does".to_string());
                }
                Action::Files(FilesConfig {
                    root: raw.root,
                    index: raw.index.unwrap_or_else(|| vec!["index.html".to_string()]),
                    try_files: raw.try_files.unwrap_or_default(),
                })
            }
        };
        Ok(RouteConfig {
            path: raw.path,
            exact: raw.exact,
            methods: raw.methods,
            action,
            strip_prefix: raw.strip_prefix,
            max_body_bytes: raw.max_body_bytes,
            request_headers: raw.request_headers,
            response_headers: raw.response_headers,
        })
    }
}

/// Why a `policy` does not read; the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0:?}: round_robin, least_conn, client_ip, header:NAME or cookie:NAME")]
    Unknown(String),
    #[error("not a header name: {0:?}")]
    Header(String),
    #[error("not a cookie name: {0:?}")]
    Cookie(String),
}

impl Policy {
    fn parse(text: &str) -> Result<Policy, PolicyError> {
        match text.split_once(':') {
            None => match text {
                "round_robin" => Ok(Policy::RoundRobin),
                "least_conn" => Ok(Policy::LeastConn),
                "client_ip" => Ok(Policy::ClientIp),
                other => Err(PolicyError::Unknown(other.to_string())),
            },
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .map(Policy::Header)
                .map_err(|_| PolicyError::Header(name.to_string())),
            Some(("cookie", name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Ok(Policy::Cookie(name.to_string()))
            }
            Some(("cookie", name)) => Err(PolicyError::Cookie(name.to_string())),
            Some(_) => Err(PolicyError::Unknown(text.to_string())),
        }
    }
}

impl SiteConfig {
    /// Checks what serde cannot: names, and that every route knows where its files are.
    pub fn check(&self) -> Result<(), ConfigError> {
        let at = format!("site {}", self.names.first().map_or("(no names)", |n| n));
        let fail = |reason: String| {
            Err(ConfigError {
                at: at.clone(),
                reason,
            })
        };
        if self.names.is_empty() {
            return Err(ConfigError {
                at: "site".to_string(),
                reason: "names: at least one name".to_string(),
            });
        }
        for name in &self.names {
            if let Err(reason) = crate::site::Name::parse(name) {
                return fail(format!("names: {name:?}: {reason}"));
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            return fail("cert and key go together; set both or neither".to_string());
        }
        if let Some(challenge) = &self.acme_challenge {
            if !matches!(challenge.as_str(), "dns-01" | "http-01" | "tls-alpn-01") {
                return fail(format!(
                    "acme_challenge: {challenge:?}: one of \"dns-01\", \"http-01\", \"tls-alpn-01\""
                ));
            }
            if challenge != "dns-01" && self.names.iter().any(|name| name.starts_with("*.")) {
                return fail(
                    "acme_challenge: a wildcard name can only be validated by \"dns-01\""
                        .to_string(),
                );
            }
        }
        if self.route.is_empty() && self.root.is_none() {
            return fail("a site needs a root (static files) or routes".to_string());
        }
        for route in &self.route {
            let needs_root = match &route.action {
                Action::Files(files) => files.root.is_none(),
                Action::FastCgi(fastcgi) => fastcgi.root.is_none(),
                _ => false,
            };
            if needs_root && self.root.is_none() {
                return fail(format!(
                    "site.route {:?}: no root, and the site has none",
                    route.path
                ));
            }
        }
        Ok(())
    }
}
