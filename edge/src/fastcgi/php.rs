//! Which file answers a request on a PHP site, and the CGI/1.1 variables PHP gets: the behaviour
//! of Caddy's `php_fastcgi`. Pure: the file system is asked through `is_file`.
//!
//! 1. A folder holding an index (`/wp-admin` with `index.php`) asked for without its final
//!    slash is redirected to it, so that relative links in its pages resolve.
//! 2. `try_files` in order (`{path}`, `{path}/index.php`, `/index.php` by default): a candidate
//!    is taken when its script part (the path up to the first `.php` that ends a segment) is a
//!    file; the last is taken whatever it is (the front controller of pretty permalinks).
//! 3. What was taken is a PHP script if it ends (before any path info) in `.php`: the part up to
//!    `.php` is `SCRIPT_NAME`, the rest `PATH_INFO`. Anything else is a static file. So only
//!    files that exist and end in `.php` ever reach PHP: an uploaded `image.jpg/x.php` is not a
//!    file, and falls through to the front controller.

use std::net::IpAddr;

use http::{HeaderMap, Method, Version};

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A redirect to this path (and the request's query).
    Slash(String),
    /// A static file under the root, by its request path.
    File(String),
    Script(Script),
}

/// A PHP script to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `/index.php`: the script, as a path under the root.
    pub name: String,
    /// What followed the script in the path (`/2024/hello` of `/index.php/2024/hello`).
    pub path_info: String,
}

/// Where `path` (percent-decoded) splits into a script ending in `.php` and path info: the
/// first `.php` (any case) that ends a path segment.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let lower = path.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(".php") {
        let end = from + at + 4;
        if end == path.len() || path.as_bytes()[end] == b'/' {
            return Some((&path[..end], &path[end..]));
        }
        from = end;
    }
    None
}

/// Resolves the (decoded) request `path` as `php_fastcgi` does; `is_file` and `is_dir` answer
/// for paths under the root.
pub fn resolve(
    path: &str,
    index: &[String],
    try_files: &[String],
    is_file: impl Fn(&str) -> bool,
    is_dir: impl Fn(&str) -> bool,
) -> Option<Resolved> {
    if !path.ends_with('/')
        && is_dir(path)
        && index.iter().any(|name| is_file(&format!("{path}/{name}")))
    {
        return Some(Resolved::Slash(format!("{path}/")));
    }
    let mut taken = None;
    for (i, pattern) in try_files.iter().enumerate() {
        let candidate = pattern.replace("{path}", path);
        let candidate = candidate.replace("//", "/");
        let script_part = split(&candidate).map_or(candidate.as_str(), |(script, _)| script);
        let last = i + 1 == try_files.len();
        if is_file(script_part) {
            taken = Some(candidate);
            break;
        }
        // A folder with an index: its index.
        if candidate.ends_with('/')
            && let Some(name) = index
                .iter()
                .find(|name| is_file(&format!("{candidate}{name}")))
        {
            taken = Some(format!("{candidate}{name}"));
            break;
        }
        if last {
            taken = Some(candidate);
        }
    }
    let taken = taken?;
    match split(&taken) {
        Some((script, info)) if is_file(script) => Some(Resolved::Script(Script {
            name: script.to_string(),
            path_info: info.to_string(),
        })),
        // `.php` that is not a file: not found, never handed to PHP.
        Some(_) => None,
        None if is_file(&taken) => Some(Resolved::File(taken)),
        None => None,
    }
}

/// What the CGI variables are made from.
#[derive(Debug)]
pub struct Cgi<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The path and query as the client sent them.
    pub request_uri: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The host the client asked for, with any port.
    pub host: &'a str,
    pub https_port: u16,
    pub client: IpAddr,
    pub client_port: u16,
    /// The document root, as PHP sees files.
    pub root: &'a str,
    pub script: &'a Script,
    pub content_length: Option<u64>,
    pub extra: &'a [(String, String)],
}

/// The CGI/1.1 variables (RFC 3875, and what PHP and nginx add: `REQUEST_URI`,
/// `DOCUMENT_ROOT`, `HTTPS`...), then `HTTP_*` for each header.
pub fn variables(cgi: &Cgi<'_>) -> Vec<(String, String)> {
    let server_name = crate::site::strip_port(cgi.host).to_string();
    let protocol = match cgi.version {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let script_filename = format!("{}{}", cgi.root.trim_end_matches('/'), cgi.script.name);
    let mut vars: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("foobar/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("SERVER_PROTOCOL".into(), protocol.into()),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), cgi.https_port.to_string()),
        ("REQUEST_METHOD".into(), cgi.method.as_str().into()),
        ("REQUEST_URI".into(), cgi.request_uri.into()),
        ("QUERY_STRING".into(), cgi.query.into()),
        ("REQUEST_SCHEME".into(), "https".into()),
        ("HTTPS".into(), "on".into()),
        ("REMOTE_ADDR".into(), cgi.client.to_string()),
        ("REMOTE_PORT".into(), cgi.client_port.to_string()),
        (
            "DOCUMENT_ROOT".into(),
            cgi.root.trim_end_matches('/').into(),
        ),
        (
            "DOCUMENT_URI".into(),
            format!("{}{}", cgi.script.name, cgi.script.path_info),
        ),
        ("SCRIPT_NAME".into(), cgi.script.name.clone()),
        ("SCRIPT_FILENAME".into(), script_filename),
        ("PATH_INFO".into(), cgi.script.path_info.clone()),
    ];
    if !cgi.script.path_info.is_empty() {
        vars.push((
            "PATH_TRANSLATED".into(),
            format!("{}{}", cgi.root.trim_end_matches('/'), cgi.script.path_info),
        ));
    }
    if let Some(length) = cgi.content_length {
        vars.push(("CONTENT_LENGTH".into(), length.to_string()));
    }
    if let Some(kind) = cgi
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        vars.push(("CONTENT_TYPE".into(), kind.into()));
    }
    let mut host_seen = false;
    for name in cgi.headers.keys() {
        if *name == http::header::CONTENT_TYPE || *name == http::header::CONTENT_LENGTH {
            continue;
        }
        // httpoxy (CVE-2016-5385): a client's `Proxy:` header must not become HTTP_PROXY,
        // which PHP libraries read as their outgoing proxy.
        if name.as_str() == "proxy" {
            continue;
        }
        let separator = if *name == http::header::COOKIE {
            "; "
        } else {
            ", "
        };
        let value: Vec<String> = cgi
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        host_seen |= key == "HTTP_HOST";
        vars.push((key, value.join(separator)));
    }
    // HTTP/2 and HTTP/3 carry the host as :authority.
    if !host_seen {
        vars.push(("HTTP_HOST".into(), cgi.host.into()));
    }
    for (name, value) in cgi.extra {
        vars.retain(|(known, _)| known != name);
        vars.push((name.clone(), value.clone()));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WordPress root: files and folders.
    const FILES: [&str; 6] = [
        "/index.php",
        "/wp-login.php",
        "/wp-admin/index.php",
        "/wp-includes/css/a.css",
        "/wp-content/uploads/image.jpg",
        "/readme.html",
    ];
    const DIRS: [&str; 4] = ["/", "/wp-admin", "/wp-includes", "/wp-content/uploads"];

    fn php(path: &str) -> Option<Resolved> {
        let index = vec!["index.php".to_string()];
        let try_files = ["{path}", "{path}/index.php", "/index.php"].map(String::from);
        resolve(
            path,
            &index,
            &try_files,
            |p| FILES.contains(&p),
            |p| DIRS.contains(&p.trim_end_matches('/')) || p == "/",
        )
    }

    fn script(name: &str, info: &str) -> Option<Resolved> {
        Some(Resolved::Script(Script {
            name: name.to_string(),
            path_info: info.to_string(),
        }))
    }

    #[test]
    fn requests_resolve_as_php_fastcgi_does() {
        let rows = [
            ("/", script("/index.php", "")),
            ("/wp-login.php", script("/wp-login.php", "")),
            ("/wp-admin", Some(Resolved::Slash("/wp-admin/".to_string()))),
            ("/wp-admin/", script("/wp-admin/index.php", "")),
            ("/2024/12/hello-world/", script("/index.php", "")),
            ("/index.php/2024/hello", script("/index.php", "/2024/hello")),
            (
                "/wp-includes/css/a.css",
                Some(Resolved::File("/wp-includes/css/a.css".to_string())),
            ),
            (
                "/readme.html",
                Some(Resolved::File("/readme.html".to_string())),
            ),
            // An upload is never run as PHP: the front controller answers.
            (
                "/wp-content/uploads/image.jpg/x.php",
                script("/index.php", ""),
            ),
            ("/nothing.php", script("/index.php", "")),
            ("/WP-LOGIN.PHP", script("/index.php", "")),
        ];
        for (path, expected) in rows {
            assert_eq!(php(path), expected, "{path}");
        }
    }

    #[test]
    fn without_a_front_controller_a_missing_script_is_not_found() {
        let index = vec!["index.php".to_string()];
        let try_files = ["{path}"].map(String::from);
        let found = resolve(
            "/x.php",
            &index,
            &try_files,
            |p| p == "/index.php",
            |_| false,
        );
        assert_eq!(found, None);
    }

    #[test]
    fn splits_at_a_php_that_ends_a_segment() {
        assert_eq!(split("/a.php/b"), Some(("/a.php", "/b")));
        assert_eq!(split("/a.phpx/b.php"), Some(("/a.phpx/b.php", "")));
        assert_eq!(split("/a.PHP"), Some(("/a.PHP", "")));
        assert_eq!(split("/a.html"), None);
    }

    #[test]
    fn variables_name_the_script_the_client_and_every_header() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1".parse().expect("value"));
        headers.append("cookie", "b=2".parse().expect("value"));
        headers.insert("content-type", "text/plain".parse().expect("value"));
        headers.insert("proxy", "http://evil".parse().expect("value"));
        headers.insert("x-thing", "y".parse().expect("value"));
        let script = Script {
            name: "/index.php".to_string(),
            path_info: "/a/b".to_string(),
        };
        let extra = [("WORDPRESS_CONFIG".to_string(), "test".to_string())];
        let vars = variables(&Cgi {
            method: &Method::POST,
            version: Version::HTTP_2,
            request_uri: "/index.php/a/b?x=1",
            query: "x=1",
            headers: &headers,
            host: "www.foobar.com:8443",
            https_port: 8443,
            client: "192.0.2.9".parse().expect("address"),
            client_port: 40000,
            root: "/srv/wp/",
            script: &script,
            content_length: Some(12),
            extra: &extra,
        });
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SCRIPT_FILENAME"), Some("/srv/wp/index.php"));
        assert_eq!(get("SCRIPT_NAME"), Some("/index.php"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("PATH_TRANSLATED"), Some("/srv/wp/a/b"));
        assert_eq!(get("REQUEST_URI"), Some("/index.php/a/b?x=1"));
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("SERVER_NAME"), Some("www.foobar.com"));
        assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/2.0"));
        assert_eq!(get("HTTPS"), Some("on"));
        assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.9"));
        assert_eq!(get("CONTENT_LENGTH"), Some("12"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(get("HTTP_X_THING"), Some("y"));
        assert_eq!(get("HTTP_HOST"), Some("www.foobar.com:8443"));
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(get("WORDPRESS_CONFIG"), Some("test"));
    }
}
