//! The headers a proxy changes on the way through: hop-by-hop fields removed both ways (RFC 9110
//! section 7.6.1, and whatever `Connection` names), and who the client is told upstream
//! (`X-Forwarded-For`, `-Proto`, `-Host`, RFC 7239 `Forwarded`, `Via`), believed from the peer
//! only when it is a trusted proxy. Pure functions over header maps.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Fields that describe one connection, never the message: not passed on by a proxy. In the
/// order of the `match` in [`hop_by_hop_at`]. A `static`, not a `const`: each use of a
/// `const` array makes (and drops) a copy of it.
static HOP_BY_HOP: [HeaderName; 9] = [
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
    // One pass over the names present tells which of the nine are there (most messages carry
    // none, or only `Connection`, as nginx's responses): only those are looked up to be
    // removed, where a removal of each cost a lookup apiece, both ways, on every request.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(at) = hop_by_hop_at(name.as_str()) {
            present |= 1 << at;
        }
    }
    if present == 0 {
        return;
    }
    // What `Connection` names, read from its values' own copies (sharing their bytes; most
    // messages have one value, kept without a vector): the names are removed as text, with no
    // `HeaderName` made for each.
    let (first, rest): (Option<HeaderValue>, Vec<HeaderValue>) = match present & 1 {
        0 => (None, Vec::new()),
        _ => {
            let mut values = headers.get_all(header::CONNECTION).iter();
            (values.next().cloned(), values.cloned().collect())
        }
    };
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for value in first.iter().chain(&rest) {
        for name in value.to_str().unwrap_or_default().split(',') {
            let name = name.trim();
            // One of the nine (most often `keep-alive`, as nginx sends it): removed below if it
            // is there, with no lookup to make its name.
            if hop_by_hop_at(name).is_some() {
                continue;
            }
            // Not a field name (empty, or with a character no name has): nothing to remove.
            headers.remove(name);
        }
    }
    for (at, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << at) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Where `name` (lower case, as field names are kept) is in [`HOP_BY_HOP`]. By text: a `match`
/// on it tells the nine apart at once, where comparing names one by one cost more than the rest
/// of [`remove_hop_by_hop`].
fn hop_by_hop_at(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authenticate" => 7,
        "proxy-authorization" => 8,
        _ => return None,
    })
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
    // The values already there, each followed by ", ".
    let earlier = |headers: &HeaderMap, name: &HeaderName, list: &mut String| {
        for value in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
            list.push_str(value);
            list.push_str(", ");
        }
    };
    // Room for the (up to) five fields below at once, not a growth of the map for each.
    headers.reserve(5);
    // What an untrusted peer sent is replaced, so it is read only from a trusted one.
    let mut for_list = String::with_capacity(48);
    if hop.trusted {
        earlier(headers, &X_FORWARDED_FOR, &mut for_list);
    }
    push_address(&mut for_list, hop.peer);
    set(headers, X_FORWARDED_FOR, for_list);
    if !(hop.trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if !(hop.trusted && headers.contains_key(X_FORWARDED_HOST))
        && let Some(host) = hop.host
    {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    let mut forwarded = String::with_capacity(96);
    if hop.trusted {
        earlier(headers, &header::FORWARDED, &mut forwarded);
    }
    // RFC 7239: a node is quoted when it is an IPv6 address (or has a port).
    match hop.peer {
        IpAddr::V6(_) => {
            forwarded.push_str("for=\"[");
            push_address(&mut forwarded, hop.peer);
            forwarded.push_str("]\"");
        }
        IpAddr::V4(_) => {
            forwarded.push_str("for=");
            push_address(&mut forwarded, hop.peer);
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
    set(headers, header::FORWARDED, forwarded);
    let mut via = String::new();
    earlier(headers, &header::VIA, &mut via);
    if via.is_empty() {
        let via = match hop.version {
            "2" => "2 foobar",
            "3" => "3 foobar",
            "1.0" => "1.0 foobar",
            _ => "1.1 foobar",
        };
        headers.insert(header::VIA, HeaderValue::from_static(via));
    } else {
        via.push_str(hop.version);
        via.push_str(" foobar");
        set(headers, header::VIA, via);
    }
}

/// An address as `Display` writes it.
fn push_address(out: &mut String, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => crate::access::ipv4_text(v4, |b| out.push(char::from(b))),
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `value` as the field `name`, its buffer moved into the field rather than copied.
fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
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

        // Names in `Connection` in any case, and the hop-by-hop ones among them.
        let mut map = headers(&[
            ("connection", "Keep-Alive, UPGRADE, x-a , X-B"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 1, "{map:?}");

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
    fn each_hop_by_hop_field_alone_goes() {
        for name in &HOP_BY_HOP {
            let mut map = headers(&[(name.as_str(), "x"), ("accept", "*/*")]);
            remove_hop_by_hop(&mut map, false);
            assert_eq!(map.len(), 1, "{name}: {map:?}");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in ["192.0.2.7", "2001:db8::1", "::ffff:192.0.2.1"] {
            let address: IpAddr = text.parse().unwrap();
            let mut out = String::new();
            push_address(&mut out, address);
            assert_eq!(out, address.to_string());
        }
    }

    #[test]
    fn via_is_added_to_whoever_sent_it() {
        let mut map = headers(&[("via", "1.1 lb")]);
        forward(
            &mut map,
            Hop {
                peer: "192.0.2.7".parse().unwrap(),
                trusted: false,
                host: None,
                version: "2",
            },
        );
        assert_eq!(get(&map, "via"), Some("1.1 lb, 2 foobar"));
        assert_eq!(get(&map, "forwarded"), Some("for=192.0.2.7;proto=https"));
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
