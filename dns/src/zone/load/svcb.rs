//! SVCB and HTTPS parameters (RFC 9460 appendix A): `key=value` in any order in the file, in
//! key order on the wire, with the checks of RFC 9460 section 8 (`mandatory`).

use std::net::{Ipv4Addr, Ipv6Addr};

use data_encoding::BASE64;

use super::lexer::{Token, unescape};
use crate::wire::name::NameError;

const MANDATORY: u16 = 0;
const ALPN: u16 = 1;
const NO_DEFAULT_ALPN: u16 = 2;
const PORT: u16 = 3;
const IPV4HINT: u16 = 4;
const ECH: u16 = 5;
const IPV6HINT: u16 = 6;
const DOHPATH: u16 = 7;
const OHTTP: u16 = 8;

const KEYS: &[(&str, u16)] = &[
    ("mandatory", MANDATORY),
    ("alpn", ALPN),
    ("no-default-alpn", NO_DEFAULT_ALPN),
    ("port", PORT),
    ("ipv4hint", IPV4HINT),
    ("ech", ECH),
    ("ipv6hint", IPV6HINT),
    ("dohpath", DOHPATH),
    ("ohttp", OHTTP),
];

fn key_number(text: &[u8]) -> Option<u16> {
    if let Some(&(_, key)) = KEYS
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(text))
    {
        return Some(key);
    }
    let digits = text.strip_prefix(b"key")?;
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn key_name(key: u16) -> String {
    KEYS.iter()
        .find(|&&(_, k)| k == key)
        .map_or_else(|| format!("key{key}"), |(name, _)| (*name).to_string())
}

/// Why the SvcParams of an SVCB or HTTPS record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SvcbError {
    /// A key that is neither registered nor `keyNNNNN`.
    #[error("unknown SvcParamKey \"{0}\"")]
    UnknownKey(String),
    /// A key's value is wrong.
    #[error("{key}: {error}")]
    Value {
        /// The key, as its mnemonic.
        key: String,
        /// What is wrong with its value.
        error: ValueError,
    },
    /// A key written twice.
    #[error("SvcParamKey {0} appears twice")]
    Twice(String),
    /// `mandatory` names a key the record does not have.
    #[error("mandatory lists {0}, which is not among the parameters")]
    MandatoryAbsent(String),
    /// A value above 65,535 bytes.
    #[error("{0} value is too long")]
    TooLong(String),
}

/// What is wrong with one SvcParam's value.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// The key takes a value and has none.
    #[error("a value is expected")]
    Needed,
    /// The key takes no value and has one.
    #[error("takes no value")]
    NoneTaken,
    /// `mandatory` lists an unknown key.
    #[error("unknown key \"{0}\"")]
    UnknownKey(String),
    /// `mandatory` lists itself.
    #[error("must not list itself")]
    ListsItself,
    /// `mandatory` lists a key twice.
    #[error("lists {0} twice")]
    ListedTwice(String),
    /// An ALPN id above 255 bytes.
    #[error("a protocol id is longer than 255 bytes")]
    LongProtocolId,
    /// An item that is not what the key holds (a port, an address).
    #[error("invalid {what} \"{text}\"")]
    Invalid {
        /// What the item should be.
        what: &'static str,
        /// The text written.
        text: String,
    },
    /// `ech` that is not base64.
    #[error("invalid base64")]
    Base64,
    /// `dohpath` that is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// `a,,b`.
    #[error("an empty item in the list")]
    EmptyItem,
    /// A bad escape.
    #[error(transparent)]
    Escape(#[from] NameError),
}

impl ValueError {
    fn invalid(what: &'static str, text: &[u8]) -> ValueError {
        ValueError::Invalid {
            what,
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }
}

/// Appends the SvcParams written as `tokens`, sorted by key.
pub fn params(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), SvcbError> {
    let mut params: Vec<(u16, Vec<u8>)> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let (key_text, value) = match token.text.iter().position(|&b| b == b'=') {
            Some(eq) => (&token.text[..eq], Some(&token.text[eq + 1..])),
            None => (token.text, None),
        };
        let key = key_number(key_text)
            .ok_or_else(|| SvcbError::UnknownKey(String::from_utf8_lossy(key_text).into_owned()))?;
        // A value may be quoted as a whole: `alpn="h2,h3"`.
        let value = value.map(|v| {
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        });
        let wire = value_to_wire(key, value).map_err(|error| SvcbError::Value {
            key: key_name(key),
            error,
        })?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(SvcbError::Twice(key_name(key)));
        }
        params.push((key, wire));
    }
    params.sort_by_key(|(key, _)| *key);
    if let Some((_, list)) = params.iter().find(|(key, _)| *key == MANDATORY) {
        for pair in list.chunks_exact(2) {
            let listed = crate::wire::bytes::u16_at(pair, 0).unwrap_or(0);
            if !params.iter().any(|(key, _)| *key == listed) {
                return Err(SvcbError::MandatoryAbsent(key_name(listed)));
            }
        }
    }
    for (key, value) in params {
        let len = u16::try_from(value.len()).map_err(|_| SvcbError::TooLong(key_name(key)))?;
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&value);
    }
    Ok(())
}

fn value_to_wire(key: u16, value: Option<&[u8]>) -> Result<Vec<u8>, ValueError> {
    let needed = || ValueError::Needed;
    let mut out = Vec::new();
    match key {
        NO_DEFAULT_ALPN | OHTTP => {
            if value.is_some() {
                return Err(ValueError::NoneTaken);
            }
        }
        MANDATORY => {
            let mut keys = Vec::new();
            for item in value_list(value.ok_or_else(needed)?)? {
                let listed = key_number(&item)
                    .ok_or_else(|| ValueError::UnknownKey(String::from_utf8_lossy(&item).into()))?;
                if listed == MANDATORY {
                    return Err(ValueError::ListsItself);
                }
                if keys.contains(&listed) {
                    return Err(ValueError::ListedTwice(key_name(listed)));
                }
                keys.push(listed);
            }
            keys.sort_unstable();
            for listed in keys {
                out.extend_from_slice(&listed.to_be_bytes());
            }
        }
        ALPN => {
            for id in value_list(value.ok_or_else(needed)?)? {
                let len = u8::try_from(id.len()).map_err(|_| ValueError::LongProtocolId)?;
                out.push(len);
                out.extend_from_slice(&id);
            }
        }
        PORT => {
            let text = unescape(value.ok_or_else(needed)?)?;
            let port: u16 = std::str::from_utf8(&text)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| ValueError::invalid("port", &text))?;
            out.extend_from_slice(&port.to_be_bytes());
        }
        IPV4HINT => {
            for item in value_list(value.ok_or_else(needed)?)? {
                let addr: Ipv4Addr =
                    parse(&item).ok_or_else(|| ValueError::invalid("IPv4 address", &item))?;
                out.extend_from_slice(&addr.octets());
            }
        }
        IPV6HINT => {
            for item in value_list(value.ok_or_else(needed)?)? {
                let addr: Ipv6Addr =
                    parse(&item).ok_or_else(|| ValueError::invalid("IPv6 address", &item))?;
                out.extend_from_slice(&addr.octets());
            }
        }
        ECH => {
            let text = unescape(value.ok_or_else(needed)?)?;
            out = BASE64
                .decode(&text)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(ValueError::Base64)?;
        }
        DOHPATH => {
            out = unescape(value.ok_or_else(needed)?)?;
            if std::str::from_utf8(&out).is_err() {
                return Err(ValueError::NotUtf8);
            }
        }
        _ => {
            if let Some(value) = value {
                out = unescape(value)?;
            }
        }
    }
    Ok(out)
}

/// A comma-separated list (RFC 9460 appendix A.1): `\,` is a comma inside an item.
fn value_list(raw: &[u8]) -> Result<Vec<Vec<u8>>, ValueError> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at <= raw.len() {
        if at == raw.len() || raw[at] == b',' {
            let item = unescape(&raw[start..at])?;
            if item.is_empty() {
                return Err(ValueError::EmptyItem);
            }
            items.push(item);
            start = at + 1;
            at += 1;
        } else if raw[at] == b'\\' {
            at = (at + 2).min(raw.len());
        } else {
            at += 1;
        }
    }
    Ok(items)
}

fn parse<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn wire(text: &str) -> Result<Vec<u8>, String> {
        let tokens: Vec<Token<'_>> = text
            .split(' ')
            .map(|t| Token {
                text: t.as_bytes(),
                quoted: false,
                line: 1,
            })
            .collect();
        let mut out = Vec::new();
        params(&tokens, &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn parameters_go_out_in_key_order() {
        assert_eq!(
            wire("port=443 alpn=h3,h2").unwrap(),
            [0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2', 0, 3, 0, 2, 1, 187]
        );
        assert_eq!(
            wire("alpn=\"h2\\,x,h3\"").unwrap(),
            [0, 1, 0, 8, 4, b'h', b'2', b',', b'x', 2, b'h', b'3']
        );
        assert_eq!(wire("key65000").unwrap(), [0xfd, 0xe8, 0, 0]);
    }

    #[test]
    fn rfc_9460_checks() {
        for (text, reason) in [
            ("alpn=h2 alpn=h3", "appears twice"),
            (
                "mandatory=port alpn=h2",
                "mandatory lists port, which is not among",
            ),
            ("mandatory=mandatory alpn=h2", "must not list itself"),
            ("mandatory=alpn,alpn alpn=h2", "lists alpn twice"),
            ("alpn=", "empty item"),
            ("no-default-alpn=x", "takes no value"),
            ("port=70000", "invalid port"),
            ("ipv4hint=::1", "invalid IPv4"),
            ("bogus=1", "unknown SvcParamKey"),
        ] {
            let error = wire(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
