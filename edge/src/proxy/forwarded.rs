//! The headers a proxy changes on the way through: hop-by-hop fields removed both ways (RFC 9110
//! section 7.6.1, and whatever `Connection` names), and who the client is told upstream
//! (`X-Forwarded-For`, `-Proto`, `-Host`, RFC 7239 `Forwarded`, `Via`), believed from the peer
//! only when it is a trusted proxy. Pure functions over header maps.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Fields that describe one connection, never the message: not passed on by a proxy.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop fields, and those `Connection` names. With `keep_te_trailers`, a
/// `TE: trailers` stays (gRPC needs it to reach the upstream).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    // Most messages carry none of them: one pass over the names present tells, where a removal
    // of each of the nine cost a lookup apiece, both ways, on every proxied request.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the proxy knows of the request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The address the request came from.
    pub peer: IpAddr,
    /// Whether `peer` is a trusted proxy, whose forwarding headers are kept and added to.
    pub trusted: bool,
    /// The host the client asked for.
    pub host: Option<&'a HeaderValue>,
    /// The protocol version it came over, as `Via` writes it: "1.1", "2", "3".
    pub version: &'static str,
}

/// Sets the forwarding headers on a request going upstream: from an untrusted peer, whatever it
/// sent is replaced (a client cannot choose the address the upstream sees); from a trusted one,
/// its values are kept and the peer added.
pub fn forward(headers: &mut HeaderMap, hop: Hop<'_>) {
    use std::fmt::Write;
    // What an untrusted peer sent is replaced, so it is read only from a trusted one.
    let earlier = |headers: &HeaderMap, name: &HeaderName| -> Option<String> {
        let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let mut list = values.next()?.to_string();
        for value in values {
            list.push_str(", ");
            list.push_str(value);
        }
        Some(list)
    };
    let trusted_list = |headers: &HeaderMap, name: &HeaderName| match hop.trusted {
        true => earlier(headers, name),
        false => None,
    };
    // Room for the (up to) five fields below at once, not a growth of the map for each.
    headers.reserve(5);
    let mut peer = String::with_capacity(48);
    let _ = write!(peer, "{}", hop.peer);
    let mut for_list = trusted_list(headers, &X_FORWARDED_FOR).unwrap_or_default();
    if !for_list.is_empty() {
        for_list.push_str(", ");
    }
    for_list.push_str(&peer);
    set(headers, X_FORWARDED_FOR, &for_list);
    if !(hop.trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if !(hop.trusted && headers.contains_key(X_FORWARDED_HOST))
        && let Some(host) = hop.host
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    let mut forwarded = trusted_list(headers, &header::FORWARDED).unwrap_or_default();
    if !forwarded.is_empty() {
        forwarded.push_str(", ");
    }
    // RFC 7239: a node is quoted when it is an IPv6 address (or has a port).
    match hop.peer {
        IpAddr::V6(_) => {
            forwarded.push_str("for=\"[");
            forwarded.push_str(&peer);
            forwarded.push_str("]\"");
        }
        IpAddr::V4(_) => {
            forwarded.push_str("for=");
            forwarded.push_str(&peer);
        }
    }
    forwarded.push_str(";proto=https");
    let host = hop.host.and_then(|h| h.to_str().ok());
    if let Some(host) = host.filter(|h| is_token(h)) {
        forwarded.push_str(";host=");
        forwarded.push_str(host);
    } else if let Some(host) = host {
        // A quoted string, without the two characters that would need escapes.
        forwarded.push_str(";host=\"");
        for piece in host.split(['"', '\\']) {
            forwarded.push_str(piece);
        }
        forwarded.push('"');
    }
    set(headers, header::FORWARDED, &forwarded);
    match earlier(headers, &header::VIA) {
        Some(list) => set(
            headers,
            header::VIA,
            &format!("{list}, {} foobar", hop.version),
        ),
        None => {
            let via = match hop.version {
                "2" => "2 foobar",
                "3" => "3 foobar",
                "1.0" => "1.0 foobar",
                _ => "1.1 foobar",
            };
            headers.insert(header::VIA, HeaderValue::from_static(via));
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// Whether `text` is an RFC 7230 token (written unquoted in `Forwarded`).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The `Via` protocol name of a request's version.
pub fn via_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn get<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
        map.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers, gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 1, "{map:?}");
        assert_eq!(get(&map, "accept"), Some("*/*"));

        let mut grpc = headers(&[("te", "trailers"), ("content-type", "application/grpc")]);
        remove_hop_by_hop(&mut grpc, true);
        assert_eq!(get(&grpc, "te"), Some("trailers"));
    }

    #[test]
    fn an_untrusted_client_cannot_choose_its_forwarded_address() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        forward(
            &mut map,
            Hop {
                peer: "192.0.2.7".parse().unwrap(),
                trusted: false,
                host: Some(&HeaderValue::from_static("www.foobar.com")),
                version: "2",
            },
        );
        assert_eq!(get(&map, "x-forwarded-for"), Some("192.0.2.7"));
        assert_eq!(get(&map, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&map, "x-forwarded-host"), Some("www.foobar.com"));
        assert_eq!(
            get(&map, "forwarded"),
            Some("for=192.0.2.7;proto=https;host=www.foobar.com")
        );
        assert_eq!(get(&map, "via"), Some("2 foobar"));
    }

    #[test]
    fn a_trusted_proxy_is_added_to_what_it_says() {
        let mut map = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.1"),
            ("via", "1.1 lb"),
        ]);
        forward(
            &mut map,
            Hop {
                peer: "2001:db8::1".parse().unwrap(),
                trusted: true,
                host: Some(&HeaderValue::from_static("www.foobar.com:8443")),
                version: "1.1",
            },
        );
        assert_eq!(
            get(&map, "x-forwarded-for"),
            Some("198.51.100.1, 198.51.100.2, 2001:db8::1")
        );
        assert_eq!(
            get(&map, "forwarded"),
            Some(
                "for=198.51.100.1, for=\"[2001:db8::1]\";proto=https;host=\"www.foobar.com:8443\""
            )
        );
        assert_eq!(get(&map, "via"), Some("1.1 lb, 1.1 foobar"));
    }

    #[test]
    fn a_host_that_is_not_a_token_is_quoted_without_quotes_or_backslashes() {
        let mut map = HeaderMap::new();
        forward(
            &mut map,
            Hop {
                peer: "192.0.2.7".parse().unwrap(),
                trusted: false,
                host: Some(&HeaderValue::from_static("odd\"host\\:1")),
                version: "3",
            },
        );
        assert_eq!(
            get(&map, "forwarded"),
            Some("for=192.0.2.7;proto=https;host=\"oddhost:1\"")
        );
        assert_eq!(get(&map, "x-forwarded-host"), Some("odd\"host\\:1"));
        assert_eq!(get(&map, "via"), Some("3 foobar"));
    }
}
