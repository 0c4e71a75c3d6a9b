//! Domain names in wire form, and the lookup key that orders them canonically.
//!
//! Names are kept as uncompressed wire bytes (`3www6foobar3com0`). Lookups use a *key*: the labels
//! from the root down, lower-cased, each followed by the terminator `00 00` (a zero byte inside a
//! label is escaped as `00 FF`). Comparing keys byte by byte gives the RFC 4034 canonical order, so
//! a name's descendants sort right after it and share its key as a prefix: one binary search
//! answers "does this name exist", "is it an empty non-terminal" and "what is below it".

/// Longest wire-form name (RFC 1035 section 2.3.4).
pub const MAX_NAME: usize = 255;
/// Room for the longest key: every byte may be escaped, plus two terminator bytes per label.
pub const MAX_KEY: usize = 2 * MAX_NAME + 2 * 128;

/// Positions of the length bytes of every label of a well-formed wire name, root excluded.
pub fn label_starts(wire: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            return None;
        }
        let here = at;
        at += 1 + len;
        Some(here)
    })
}

/// Writes the lookup key of a well-formed wire name into `out` and returns its length.
pub fn write_key(wire: &[u8], out: &mut [u8; MAX_KEY]) -> usize {
    let mut starts = [0u8; 128];
    let mut count = 0;
    for start in label_starts(wire).take(starts.len()) {
        // A wire name of at most 255 bytes has at most 127 labels and every start fits in a byte.
        starts[count] = start as u8;
        count += 1;
    }
    let mut len = 0;
    for &start in starts[..count].iter().rev() {
        let start = usize::from(start);
        let label_len = usize::from(wire[start]);
        for &byte in &wire[start + 1..start + 1 + label_len] {
            if byte == 0 {
                out[len..len + 2].copy_from_slice(&[0, 0xFF]);
                len += 2;
            } else {
                out[len] = byte.to_ascii_lowercase();
                len += 1;
            }
        }
        out[len..len + 2].copy_from_slice(&[0, 0]);
        len += 2;
    }
    len
}

/// Appends the lookup key of a well-formed wire name to `out`.
pub fn push_key(wire: &[u8], out: &mut Vec<u8>) {
    let mut key = [0u8; MAX_KEY];
    let len = write_key(wire, &mut key);
    out.extend_from_slice(&key[..len]);
}

/// The lookup key of a well-formed wire name.
pub fn key_of(wire: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(wire.len() + 8);
    push_key(wire, &mut key);
    key
}

/// Lengths of the keys of every ancestor of `key` (and of `key` itself), shortest first. The
/// root's key is empty and is not listed.
pub fn key_prefixes(key: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        while at + 1 < key.len() {
            if key[at] == 0 {
                at += 2;
                if key[at - 1] == 0 {
                    return Some(at);
                }
            } else {
                at += 1;
            }
        }
        None
    })
}

/// A wire name in lower case, as RFC 4034 section 6.2 puts names in canonical form. (Label
/// lengths are at most 63, below every upper-case letter, so the whole name can be mapped.)
pub fn lowercase(wire: &[u8]) -> Vec<u8> {
    wire.to_ascii_lowercase()
}

/// Lower-cased wire name, for comparisons that ignore case.
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether wire name `name` is `ancestor` or below it.
pub fn is_subdomain(name: &[u8], ancestor: &[u8]) -> bool {
    if ancestor.len() > name.len() {
        return false;
    }
    let offset = name.len() - ancestor.len();
    if ancestor.len() == 1 {
        return true;
    }
    // The suffix must start on a label boundary of `name`.
    let on_boundary = offset == 0 || label_starts(name).any(|start| start == offset);
    on_boundary && eq_ignore_case(&name[offset..], ancestor)
}

/// The wire name written as presentation text (`www.foobar.com.`), with RFC 1035 escapes.
pub fn to_text(wire: &[u8]) -> String {
    let mut text = String::with_capacity(wire.len() + 1);
    for start in label_starts(wire) {
        let len = usize::from(wire[start]);
        for &byte in &wire[start + 1..start + 1 + len] {
            match byte {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    text.push('\\');
                    text.push(char::from(byte));
                }
                0x21..=0x7E => text.push(char::from(byte)),
                _ => text.push_str(&format!("\\{byte:03}")),
            }
        }
        text.push('.');
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// Reads the wire length of the name at the start of `wire` if it is well formed and
/// uncompressed; `None` otherwise.
pub fn wire_len(wire: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            return (at < MAX_NAME).then_some(at + 1);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if at >= MAX_NAME {
            return None;
        }
    }
}

/// Wire form of a plain dotted name with no escapes (an algorithm name, a test's name); names
/// from users go through [`from_text`].
pub(crate) fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Why text is not a domain name. The messages are what zone-file errors say after
/// `file:line:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a backslash ends the text")]
    BackslashAtEnd,
    #[error("\"{0}\" is not a \\DDD escape (three decimal digits)")]
    NotDecimalEscape(String),
    #[error("escape \\{0} is above \\255")]
    EscapeAbove255(u32),
    #[error("\"@\" used before any origin is known")]
    NoOriginForAt,
    #[error("invalid name \"{name}\": {reason}")]
    Invalid { name: String, reason: Invalid },
    #[error("\"{0}\" is relative; write it with a final dot")]
    Relative(String),
}

/// What is wrong with a name written as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("empty")]
    Empty,
    #[error("empty label")]
    EmptyLabel,
    #[error("{0}")]
    Escape(Box<NameError>),
    #[error("a label is longer than 63 bytes")]
    LongLabel,
    #[error("relative, and no origin is known")]
    Relative,
    #[error("longer than 255 bytes")]
    Long,
}

/// What a backslash escape at the start of `text` stands for: the byte and how many input
/// bytes it took. `\DDD` is a decimal octet (at most 255); `\X` is X itself.
pub fn unescape_at(text: &[u8]) -> Result<(u8, usize), NameError> {
    debug_assert_eq!(text.first(), Some(&b'\\'));
    match text.get(1) {
        None => Err(NameError::BackslashAtEnd),
        Some(d) if d.is_ascii_digit() => {
            let digits = text.get(1..4).filter(|d| d.iter().all(u8::is_ascii_digit));
            let Some(digits) = digits else {
                return Err(NameError::NotDecimalEscape(
                    String::from_utf8_lossy(&text[..text.len().min(4)]).into_owned(),
                ));
            };
            let value = digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            let byte = u8::try_from(value).map_err(|_| NameError::EscapeAbove255(value))?;
            Ok((byte, 4))
        }
        Some(&other) => Ok((other, 2)),
    }
}

/// Appends the wire form of a domain name written in a zone file: `@` is the origin, a name
/// without a final dot is relative to it. Escapes `\X` and `\DDD` give any octet in a label.
pub fn push_text(text: &[u8], origin: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), NameError> {
    let invalid = |reason: Invalid| NameError::Invalid {
        name: String::from_utf8_lossy(text).into_owned(),
        reason,
    };
    if text == b"@" {
        let origin = origin.ok_or(NameError::NoOriginForAt)?;
        out.extend_from_slice(origin);
        return Ok(());
    }
    if text == b"." {
        out.push(0);
        return Ok(());
    }
    if text.is_empty() {
        return Err(invalid(Invalid::Empty));
    }
    let start = out.len();
    let mut label_at = out.len();
    out.push(0);
    let mut at = 0;
    let mut absolute = false;
    while at < text.len() {
        match text[at] {
            b'.' => {
                let len = out.len() - label_at - 1;
                if len == 0 {
                    out.truncate(start);
                    return Err(invalid(Invalid::EmptyLabel));
                }
                out[label_at] = len as u8;
                label_at = out.len();
                out.push(0);
                at += 1;
                absolute = at == text.len();
            }
            b'\\' => {
                let (byte, used) = unescape_at(&text[at..]).map_err(|e| {
                    out.truncate(start);
                    invalid(Invalid::Escape(Box::new(e)))
                })?;
                out.push(byte);
                at += used;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
        if out.len() - label_at - 1 > 63 {
            out.truncate(start);
            return Err(invalid(Invalid::LongLabel));
        }
    }
    if !absolute {
        out[label_at] = (out.len() - label_at - 1) as u8;
        let Some(origin) = origin else {
            out.truncate(start);
            return Err(invalid(Invalid::Relative));
        };
        out.extend_from_slice(origin);
    }
    if out.len() - start > MAX_NAME {
        out.truncate(start);
        return Err(invalid(Invalid::Long));
    }
    Ok(())
}

/// The wire form of an absolute name; relative names are refused.
pub fn absolute_from_text(text: &[u8]) -> Result<Vec<u8>, NameError> {
    let mut out = Vec::new();
    push_text(text, None, &mut out).map_err(|e| match e {
        NameError::Invalid {
            reason: Invalid::Relative,
            ..
        } => NameError::Relative(String::from_utf8_lossy(text).into_owned()),
        other => other,
    })?;
    Ok(out)
}

/// The wire form of a name given as text (`foobar.com` or `foobar.com.`: always
/// absolute).
pub fn from_text(text: &str) -> Result<Vec<u8>, NameError> {
    let mut out = Vec::new();
    push_text(text.as_bytes(), Some(&[0]), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_canonical_order() {
        // RFC 4034 section 6.1 example, in canonical order.
        let label = |first: &[u8], rest: &str| {
            let mut w = vec![first.len() as u8];
            w.extend_from_slice(first);
            w.extend_from_slice(&wire(rest));
            w
        };
        let names = [
            wire("example"),
            wire("a.example"),
            wire("yljkjljk.a.example"),
            wire("Z.a.example"),
            wire("zABC.a.EXAMPLE"),
            wire("z.example"),
            label(&[1], "z.example"),
            wire("*.z.example"),
            label(&[200], "z.example"),
        ];
        let keys: Vec<Vec<u8>> = names.iter().map(|n| key_of(n)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn zero_bytes_keep_order_and_descendant_prefix() {
        let mut plain = wire("a.example");
        let a_zero = {
            let mut w = vec![2, b'a', 0];
            w.extend_from_slice(&wire("example"));
            w
        };
        assert!(key_of(&plain) < key_of(&a_zero));
        let child = {
            let mut w = vec![1, b'x'];
            w.append(&mut plain);
            w
        };
        assert!(key_of(&child).starts_with(&key_of(&wire("a.example"))));
        assert!(!key_of(&a_zero).starts_with(&key_of(&wire("a.example"))));
    }

    #[test]
    fn prefixes_are_ancestors() {
        let key = key_of(&wire("www.foobar.com"));
        let lens: Vec<usize> = key_prefixes(&key).collect();
        assert_eq!(
            lens.iter().map(|&l| key[..l].to_vec()).collect::<Vec<_>>(),
            vec![
                key_of(&wire("com")),
                key_of(&wire("foobar.com")),
                key_of(&wire("www.foobar.com"))
            ]
        );
    }

    #[test]
    fn subdomain_checks_label_boundaries() {
        assert!(is_subdomain(&wire("www.foobar.com"), &wire("FOOBAR.com")));
        assert!(is_subdomain(&wire("foobar.com"), &wire("foobar.com")));
        assert!(!is_subdomain(&wire("xfoobar.com"), &wire("foobar.com")));
        assert!(is_subdomain(&wire("x.com"), &wire("")));
    }

    #[test]
    fn text_escapes() {
        assert_eq!(to_text(&wire("www.foobar.com")), "www.foobar.com.");
        assert_eq!(to_text(&[0]), ".");
        assert_eq!(to_text(&[3, b'a', b'.', 7, 0]), "a\\.\\007.");
    }
}
