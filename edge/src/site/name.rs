//! Site names and the index that finds a site (or a certificate) for a TLS server name or a
//! `Host`: exact names, then `*.parent` wildcards of one label, as certificates have them.

use std::collections::HashMap;

/// A name a site answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `www.foobar.com`, an IP address, `localhost`: lower case, no final dot.
    Exact(String),
    /// `*.foobar.com`: any one label before `foobar.com` (the parent is kept).
    Wildcard(String),
}

/// Why a site name does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("an empty name")]
    Empty,
    #[error("a wildcard of an address")]
    WildcardAddress,
    #[error("labels are 1 to 63 characters")]
    LabelLength,
    #[error("letters, digits, '-' and '_' only (a wildcard is \"*.\" before the rest)")]
    Characters,
}

impl Name {
    pub fn parse(text: &str) -> Result<Name, NameError> {
        let text = text.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, text.clone()),
        };
        if rest.is_empty() {
            return Err(NameError::Empty);
        }
        if rest.parse::<std::net::IpAddr>().is_ok() {
            return if wildcard {
                Err(NameError::WildcardAddress)
            } else {
                Ok(Name::Exact(rest))
            };
        }
        for label in rest.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(NameError::LabelLength);
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(NameError::Characters);
            }
        }
        Ok(if wildcard {
            Name::Wildcard(rest)
        } else {
            Name::Exact(rest)
        })
    }
}

/// Which entry (a site, a certificate) answers for a name.
#[derive(Debug, Clone, Default)]
pub struct NameIndex {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl NameIndex {
    /// Adds `name` for entry `at`; an earlier entry with the same name keeps it.
    pub fn add(&mut self, name: &Name, at: usize) {
        match name {
            Name::Exact(name) => self.exact.entry(name.clone()).or_insert(at),
            Name::Wildcard(parent) => self.wildcard.entry(parent.clone()).or_insert(at),
        };
    }

    /// The entry for a TLS server name or a `Host` value (a port and a final dot are ignored,
    /// case does not matter); `None` for a name no entry has.
    pub fn find(&self, host: &str) -> Option<usize> {
        let host = strip_port(host).trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if let Some(&at) = self.exact.get(host) {
            return Some(at);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

/// `host` without its `:port`; an IPv6 literal without its brackets.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[(&str, usize)]) -> NameIndex {
        let mut index = NameIndex::default();
        for (name, at) in names {
            index.add(&Name::parse(name).expect("a name"), *at);
        }
        index
    }

    #[test]
    fn exact_names_win_over_wildcards_of_one_label() {
        let index = index(&[
            ("www.foobar.com", 0),
            ("*.foobar.com", 1),
            ("foobar.com", 2),
            ("127.0.0.1", 3),
        ]);
        let rows = [
            ("www.foobar.com", Some(0)),
            ("WWW.FooBar.com.", Some(0)),
            ("www.foobar.com:8443", Some(0)),
            ("api.foobar.com", Some(1)),
            ("a.b.foobar.com", None),
            ("foobar.com", Some(2)),
            ("other.org", None),
            ("127.0.0.1:8443", Some(3)),
            ("[::1]:8443", None),
        ];
        for (host, expected) in rows {
            assert_eq!(index.find(host), expected, "{host}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(Name::parse("*.foobar.com").is_ok());
        assert!(Name::parse("foo*.com").is_err());
        assert!(Name::parse("*").is_err());
        assert!(Name::parse("a..b").is_err());
        assert!(Name::parse("*.127.0.0.1").is_err());
        assert_eq!(
            Name::parse("WWW.Foobar.COM.").ok(),
            Some(Name::Exact("www.foobar.com".to_string()))
        );
    }

    #[test]
    fn ports_and_brackets_are_taken_off() {
        assert_eq!(strip_port("a.example:443"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("[2001:db8::1]"), "2001:db8::1");
    }
}
