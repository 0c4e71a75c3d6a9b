//! RDATA in presentation format to wire form, for every record type a zone file may hold.
//!
//! Each type is a short list of fields (numbers, names, character-strings, hex, base64, type
//! bitmaps...) read by [`Fields`]. Written here rather than taken from a DNS library's text
//! parsers because the presentation format must be read exactly as BIND, Knot and NSD read it
//! (the corpus under `tests/zones/` holds us to that), and every error must name the field.

use std::net::{Ipv4Addr, Ipv6Addr};

use data_encoding::{BASE32HEX_NOPAD, BASE64, HEXLOWER_PERMISSIVE};

use super::{
    lexer::{Token, unescape},
    svcb,
};
use crate::wire::{
    Rtype, name,
    name::NameError,
    rtype,
    types::{Kind, kind, push_type_bitmap, type_name, type_number},
};

/// Why a record's RDATA cannot be read. The loader puts the file, line and record type before
/// it: `zones/example.com.zone:12: MX: invalid preference "x"`.
#[derive(Debug, thiserror::Error)]
pub enum RdataError {
    /// A field the type needs is not there.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field is not what its kind allows (a number, an address, a time...).
    #[error("invalid {what} \"{text}\"")]
    Invalid {
        /// The field, as the RFC names it.
        what: &'static str,
        /// The text written.
        text: String,
    },
    /// A mnemonic that is not known (a record type in a bitmap, an RRSIG's type covered).
    #[error("unknown {what} \"{text}\"")]
    Unknown {
        /// What the mnemonic should name.
        what: &'static str,
        /// The text written.
        text: String,
    },
    /// The named field is wrong as `error` says (hex or base64 that does not decode).
    #[error("{what}: {error}")]
    Field {
        /// The field.
        what: &'static str,
        /// What is wrong with it.
        error: Box<RdataError>,
    },
    /// Text after the last field.
    #[error("unexpected \"{0}\" after the last field")]
    Extra(String),
    /// A type that only exists in messages (OPT, TSIG, AXFR...).
    #[error("{0} records cannot appear in a zone file")]
    NotInZones(String),
    /// A type with no presentation format here: only RFC 3597's generic form reads it.
    #[error("{0} has no text form here; write its data as \\# LENGTH HEX (RFC 3597)")]
    NoTextForm(String),
    /// `\#` with no length.
    #[error("generic RDATA needs a length after \\#")]
    GenericLength,
    /// `\# N` followed by a different number of bytes.
    #[error("generic RDATA says {said} bytes but holds {held}")]
    GenericMismatch {
        /// The length written.
        said: usize,
        /// The bytes that follow it.
        held: usize,
    },
    /// A character-string above 255 bytes.
    #[error("a character-string holds at most 255 bytes; this one holds {0}")]
    LongString(usize),
    /// A digest whose length its type fixes, of another length.
    #[error("a digest of {kind} {number} is {want} bytes; this one is {len}")]
    DigestLength {
        /// `type` (DS) or `hash algorithm` (ZONEMD).
        kind: &'static str,
        /// The digest type or hash algorithm.
        number: u8,
        /// The length that type has.
        want: usize,
        /// The length written.
        len: usize,
    },
    /// An NID or L64 locator not written as four groups of hex.
    #[error("invalid locator \"{0}\" (want xxxx:xxxx:xxxx:xxxx)")]
    Locator(String),
    /// A CAA tag with other than letters and digits.
    #[error("invalid CAA tag \"{0}\": letters and digits only")]
    CaaTag(String),
    /// An IPSECKEY gateway type that does not exist.
    #[error("unknown gateway type {0}")]
    GatewayType(u8),
    /// A rule of one record type, said as it is.
    #[error("{0}")]
    Rule(&'static str),
    /// A name field.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The SvcParams of an SVCB or HTTPS record.
    #[error(transparent)]
    Svcb(#[from] svcb::SvcbError),
}

impl RdataError {
    fn invalid(what: &'static str, token: &Token<'_>) -> RdataError {
        RdataError::Invalid {
            what,
            text: token.show(),
        }
    }

    /// This error, said of the field `what`.
    fn in_field(self, what: &'static str) -> RdataError {
        RdataError::Field {
            what,
            error: Box::new(self),
        }
    }
}

/// A decimal number with no sign and no leading `+`.
fn number_text<T: TryFrom<u64>>(text: &[u8]) -> Option<T> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = text.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    T::try_from(value).ok()
}

/// Parses a TTL: seconds, or BIND's units (`1h30m`, `2w`). Values with the top bit set are
/// returned as they are; the caller decides (RFC 2181 section 8).
pub fn parse_ttl(text: &[u8]) -> Result<u32, RdataError> {
    let invalid = || RdataError::Invalid {
        what: "TTL",
        text: String::from_utf8_lossy(text).into_owned(),
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if let Some(seconds) = number_text::<u32>(text) {
        return Ok(seconds);
    }
    let mut total: u64 = 0;
    let mut value: Option<u64> = None;
    for &byte in text {
        if byte.is_ascii_digit() {
            let v = value.unwrap_or(0) * 10 + u64::from(byte - b'0');
            if v > u64::from(u32::MAX) {
                return Err(invalid());
            }
            value = Some(v);
            continue;
        }
        let unit = match byte.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return Err(invalid()),
        };
        total += value.take().ok_or_else(invalid)? * unit;
        if total > u64::from(u32::MAX) {
            return Err(invalid());
        }
    }
    if value.is_some() {
        // Digits after the last unit, as in `1h30`: BIND reads them as seconds.
        total += value.unwrap_or(0);
    }
    u32::try_from(total).map_err(|_| invalid())
}

/// RFC 3597 generic RDATA: `\# LENGTH HEX...`.
fn generic(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let Some(len) = tokens.get(1) else {
        return Err(RdataError::GenericLength);
    };
    let said: usize =
        number_text(len.text).ok_or_else(|| RdataError::invalid("generic RDATA length", len))?;
    let start = out.len();
    decode_hex(&tokens[2..], out)?;
    let held = out.len() - start;
    if held != said {
        return Err(RdataError::GenericMismatch { said, held });
    }
    Ok(())
}

/// Hex digits spread over any number of tokens.
fn decode_hex(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut text = Vec::new();
    for token in tokens {
        text.extend_from_slice(token.text);
    }
    let bytes = HEXLOWER_PERMISSIVE
        .decode(&text)
        .map_err(|_| RdataError::Invalid {
            what: "hex",
            text: String::from_utf8_lossy(&text).into_owned(),
        })?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Base64 spread over any number of tokens.
fn decode_base64(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut text = Vec::new();
    for token in tokens {
        text.extend_from_slice(token.text);
    }
    let bytes = BASE64.decode(&text).map_err(|_| RdataError::Invalid {
        what: "base64",
        text: String::from_utf8_lossy(&text).into_owned(),
    })?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Appends a `<character-string>`: a length byte and at most 255 bytes, escapes resolved.
pub fn push_string(text: &[u8], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let bytes = unescape(text)?;
    let len = u8::try_from(bytes.len()).map_err(|_| RdataError::LongString(bytes.len()))?;
    out.push(len);
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Reads a record's RDATA fields in order, writing wire form.
struct Fields<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    origin: &'t [u8],
    out: &'t mut Vec<u8>,
    /// The line of the last token read.
    line: &'t mut Option<u32>,
}

impl<'t, 'a> Fields<'t, 'a> {
    fn next(&mut self, what: &'static str) -> Result<Token<'a>, RdataError> {
        let token = self
            .tokens
            .get(self.at)
            .copied()
            .ok_or(RdataError::Missing(what))?;
        self.at += 1;
        *self.line = Some(token.line);
        Ok(token)
    }

    /// The tokens not read yet; reading stops here.
    fn rest(&mut self) -> &'t [Token<'a>] {
        let rest = &self.tokens[self.at.min(self.tokens.len())..];
        self.at = self.tokens.len();
        if let Some(first) = rest.first() {
            *self.line = Some(first.line);
        }
        rest
    }

    fn done(&mut self) -> Result<(), RdataError> {
        match self.tokens.get(self.at) {
            None => Ok(()),
            Some(extra) => {
                *self.line = Some(extra.line);
                Err(RdataError::Extra(extra.show()))
            }
        }
    }

    fn num<T: TryFrom<u64>>(&mut self, what: &'static str) -> Result<T, RdataError> {
        let token = self.next(what)?;
        number_text(token.text).ok_or_else(|| RdataError::invalid(what, &token))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, RdataError> {
        let value = self.num(what)?;
        self.out.push(value);
        Ok(value)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, RdataError> {
        let value: u16 = self.num(what)?;
        self.out.extend_from_slice(&value.to_be_bytes());
        Ok(value)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, RdataError> {
        let value: u32 = self.num(what)?;
        self.out.extend_from_slice(&value.to_be_bytes());
        Ok(value)
    }

    /// A time value in BIND's TTL syntax (SOA timers).
    fn period(&mut self, what: &'static str) -> Result<(), RdataError> {
        let token = self.next(what)?;
        let value = parse_ttl(token.text).map_err(|_| RdataError::invalid(what, &token))?;
        self.out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }

    /// A u8 written as a number or a DNSSEC algorithm mnemonic.
    fn algorithm(&mut self) -> Result<u8, RdataError> {
        let token = self.next("algorithm")?;
        let value = number_text(token.text)
            .or_else(|| algorithm_number(token.text))
            .ok_or_else(|| RdataError::invalid("algorithm", &token))?;
        self.out.push(value);
        Ok(value)
    }

    fn name(&mut self, what: &'static str) -> Result<(), RdataError> {
        let token = self.next(what)?;
        Ok(name::push_text(token.text, Some(self.origin), self.out)?)
    }

    fn ipv4(&mut self) -> Result<(), RdataError> {
        let token = self.next("IPv4 address")?;
        let addr: Ipv4Addr =
            parse_text(token.text).ok_or_else(|| RdataError::invalid("IPv4 address", &token))?;
        self.out.extend_from_slice(&addr.octets());
        Ok(())
    }

    fn ipv6(&mut self) -> Result<(), RdataError> {
        let token = self.next("IPv6 address")?;
        let addr: Ipv6Addr =
            parse_text(token.text).ok_or_else(|| RdataError::invalid("IPv6 address", &token))?;
        self.out.extend_from_slice(&addr.octets());
        Ok(())
    }

    fn string(&mut self, what: &'static str) -> Result<(), RdataError> {
        let token = self.next(what)?;
        push_string(token.text, self.out)
    }

    /// One or more character-strings to the end.
    fn strings(&mut self) -> Result<(), RdataError> {
        let rest = self.rest();
        if rest.is_empty() {
            return Err(RdataError::Missing("text"));
        }
        for token in rest {
            push_string(token.text, self.out)?;
        }
        Ok(())
    }

    /// Hex to the end (possibly in several chunks); at least one byte unless `empty_ok`.
    fn hex(&mut self, what: &'static str, empty_ok: bool) -> Result<usize, RdataError> {
        let start = self.out.len();
        let rest = self.rest();
        decode_hex(rest, self.out).map_err(|e| e.in_field(what))?;
        let len = self.out.len() - start;
        if len == 0 && !empty_ok {
            return Err(RdataError::Missing(what));
        }
        Ok(len)
    }

    /// Base64 to the end (possibly in several chunks); at least one byte unless `empty_ok`.
    fn base64(&mut self, what: &'static str, empty_ok: bool) -> Result<(), RdataError> {
        let start = self.out.len();
        let rest = self.rest();
        decode_base64(rest, self.out).map_err(|e| e.in_field(what))?;
        if self.out.len() == start && !empty_ok {
            return Err(RdataError::Missing(what));
        }
        Ok(())
    }

    /// A salt: hex, or `-` for none; written with its length byte.
    fn salt(&mut self) -> Result<(), RdataError> {
        let token = self.next("salt")?;
        let len_at = self.out.len();
        self.out.push(0);
        if token.text != b"-" {
            decode_hex(std::slice::from_ref(&token), self.out).map_err(|e| e.in_field("salt"))?;
        }
        let len = self.out.len() - len_at - 1;
        self.out[len_at] =
            u8::try_from(len).map_err(|_| RdataError::Rule("a salt holds at most 255 bytes"))?;
        Ok(())
    }

    /// RFC 4034 section 4.1.2 type bitmap from the remaining type mnemonics.
    fn type_bitmap(&mut self) -> Result<(), RdataError> {
        let mut types = Vec::new();
        for token in self.rest() {
            let rtype = type_number(token.text).ok_or_else(|| RdataError::Unknown {
                what: "record type",
                text: token.show(),
            })?;
            types.push(rtype.0);
        }
        push_type_bitmap(&mut types, self.out);
        Ok(())
    }

    /// An RRSIG time: `YYYYMMDDHHmmSS` (UTC) or seconds since the epoch.
    fn time(&mut self, what: &'static str) -> Result<(), RdataError> {
        let token = self.next(what)?;
        let invalid = || RdataError::invalid(what, &token);
        let value = if token.text.len() == 14 && token.text.iter().all(u8::is_ascii_digit) {
            let field = |range: std::ops::Range<usize>| -> i64 {
                token.text[range]
                    .iter()
                    .fold(0, |n, d| n * 10 + i64::from(d - b'0'))
            };
            let (year, month, day) = (field(0..4), field(4..6), field(6..8));
            let (hour, minute, second) = (field(8..10), field(10..12), field(12..14));
            if !(1..=12).contains(&month)
                || !(1..=31).contains(&day)
                || hour > 23
                || minute > 59
                || second > 60
            {
                return Err(invalid());
            }
            let seconds =
                days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
            // Serial-number arithmetic on 32 bits (RFC 4034 section 3.1.5).
            seconds.rem_euclid(1 << 32) as u32
        } else {
            number_text(token.text).ok_or_else(invalid)?
        };
        self.out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }
}

fn parse_text<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// DNSSEC algorithm mnemonics (RFC 4034 appendix A.1 and later registrations).
fn algorithm_number(text: &[u8]) -> Option<u8> {
    const ALGORITHMS: &[(&str, u8)] = &[
        ("RSAMD5", 1),
        ("DH", 2),
        ("DSA", 3),
        ("RSASHA1", 5),
        ("DSA-NSEC3-SHA1", 6),
        ("RSASHA1-NSEC3-SHA1", 7),
        ("RSASHA256", 8),
        ("RSASHA512", 10),
        ("ECC-GOST", 12),
        ("ECDSAP256SHA256", 13),
        ("ECDSAP384SHA384", 14),
        ("ED25519", 15),
        ("ED448", 16),
        ("INDIRECT", 252),
        ("PRIVATEDNS", 253),
        ("PRIVATEOID", 254),
    ];
    ALGORITHMS
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(text))
        .map(|&(_, n)| n)
}

/// Digest length of a DS digest type, where the type fixes it.
fn ds_digest_len(digest_type: u8) -> Option<usize> {
    match digest_type {
        1 => Some(20),
        2 | 3 => Some(32),
        4 => Some(48),
        _ => None,
    }
}

/// Writes the wire form of `rtype`'s RDATA from its presentation `tokens`. An error comes with
/// the line of the field at fault (records in parentheses span lines).
pub fn to_wire(
    rtype: Rtype,
    tokens: &[Token<'_>],
    origin: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), (Option<u32>, RdataError)> {
    let mut line = None;
    fields(rtype, tokens, origin, out, &mut line).map_err(|e| (line, e))
}

fn fields(
    rtype: Rtype,
    tokens: &[Token<'_>],
    origin: &[u8],
    out: &mut Vec<u8>,
    line: &mut Option<u32>,
) -> Result<(), RdataError> {
    let name = type_name(rtype);
    if tokens
        .first()
        .is_some_and(|t| !t.quoted && t.text == b"\\#")
    {
        if kind(rtype) == Kind::Meta {
            return Err(RdataError::NotInZones(name.to_string()));
        }
        return generic(tokens, out);
    }
    match kind(rtype) {
        Kind::Data => {}
        Kind::Generic => {
            return Err(RdataError::NoTextForm(name.to_string()));
        }
        Kind::Meta => return Err(RdataError::NotInZones(name.to_string())),
    }
    let mut f = Fields {
        tokens,
        at: 0,
        origin,
        out,
        line,
    };
    match rtype {
        rtype::A => f.ipv4()?,
        rtype::AAAA => f.ipv6()?,
        rtype::NS
        | rtype::CNAME
        | rtype::PTR
        | rtype::DNAME
        | rtype::MD
        | rtype::MF
        | rtype::MB
        | rtype::MG
        | rtype::MR
        | rtype::NSAP_PTR => f.name("target name")?,
        rtype::SOA => {
            f.name("primary name server (MNAME)")?;
            f.name("responsible mailbox (RNAME)")?;
            f.u32("serial")?;
            f.period("refresh")?;
            f.period("retry")?;
            f.period("expire")?;
            f.period("minimum")?;
        }
        rtype::MX | rtype::AFSDB | rtype::RT | rtype::KX => {
            f.u16("preference")?;
            f.name("exchange name")?;
        }
        rtype::LP => {
            f.u16("preference")?;
            f.name("FQDN")?;
        }
        rtype::MINFO | rtype::RP => {
            f.name("mailbox")?;
            f.name("second name")?;
        }
        rtype::PX => {
            f.u16("preference")?;
            f.name("MAP822")?;
            f.name("MAPX400")?;
        }
        rtype::TXT | rtype::SPF | rtype::AVC | rtype::RESINFO => f.strings()?,
        rtype::HINFO => {
            f.string("CPU")?;
            f.string("OS")?;
        }
        rtype::X25 => f.string("PSDN address")?,
        rtype::ISDN => {
            f.string("ISDN address")?;
            if f.at < f.tokens.len() {
                f.string("subaddress")?;
            }
        }
        rtype::GPOS => {
            f.string("longitude")?;
            f.string("latitude")?;
            f.string("altitude")?;
        }
        rtype::SRV => {
            f.u16("priority")?;
            f.u16("weight")?;
            f.u16("port")?;
            f.name("target name")?;
        }
        rtype::NAPTR => {
            f.u16("order")?;
            f.u16("preference")?;
            f.string("flags")?;
            f.string("services")?;
            f.string("regexp")?;
            f.name("replacement")?;
        }
        rtype::CERT => {
            let token = f.next("certificate type")?;
            let cert_type = number_text(token.text)
                .or_else(|| cert_type_number(token.text))
                .ok_or_else(|| RdataError::invalid("certificate type", &token))?;
            f.out.extend_from_slice(&u16::to_be_bytes(cert_type));
            f.u16("key tag")?;
            f.algorithm()?;
            f.base64("certificate", false)?;
        }
        rtype::DS | rtype::CDS | rtype::DLV | rtype::TA => {
            f.u16("key tag")?;
            let algorithm = f.algorithm()?;
            let digest_type = f.u8("digest type")?;
            let len = f.hex("digest", false)?;
            // RFC 8078 section 4: the CDS that asks for removal is `0 0 0 00`.
            let delete = rtype == rtype::CDS && algorithm == 0 && digest_type == 0;
            if let Some(want) = ds_digest_len(digest_type)
                && len != want
                && !delete
            {
                return Err(RdataError::DigestLength {
                    kind: "type",
                    number: digest_type,
                    want,
                    len,
                });
            }
        }
        rtype::SSHFP => {
            f.u8("algorithm")?;
            f.u8("fingerprint type")?;
            f.hex("fingerprint", false)?;
        }
        rtype::TLSA | rtype::SMIMEA => {
            f.u8("certificate usage")?;
            f.u8("selector")?;
            f.u8("matching type")?;
            f.hex("certificate association data", false)?;
        }
        rtype::IPSECKEY => {
            f.u8("precedence")?;
            let gateway_type = f.u8("gateway type")?;
            f.u8("algorithm")?;
            match gateway_type {
                0 => {
                    let token = f.next("gateway")?;
                    if token.text != b"." {
                        return Err(RdataError::Rule(
                            "gateway type 0 takes \".\" as its gateway",
                        ));
                    }
                }
                1 => f.ipv4()?,
                2 => f.ipv6()?,
                3 => {
                    let token = f.next("gateway")?;
                    name::push_text(token.text, Some(f.origin), f.out)?;
                }
                other => return Err(RdataError::GatewayType(other)),
            }
            f.base64("public key", true)?;
        }
        rtype::RRSIG | rtype::SIG => {
            let token = f.next("type covered")?;
            let covered = type_number(token.text).ok_or_else(|| RdataError::Unknown {
                what: "type covered",
                text: token.show(),
            })?;
            f.out.extend_from_slice(&covered.to_be_bytes());
            f.algorithm()?;
            f.u8("labels")?;
            f.u32("original TTL")?;
            f.time("signature expiration")?;
            f.time("signature inception")?;
            f.u16("key tag")?;
            f.name("signer's name")?;
            f.base64("signature", false)?;
        }
        rtype::NSEC => {
            f.name("next domain name")?;
            f.type_bitmap()?;
        }
        rtype::DNSKEY | rtype::CDNSKEY | rtype::KEY => {
            f.u16("flags")?;
            f.u8("protocol")?;
            f.algorithm()?;
            f.base64("public key", false)?;
        }
        rtype::DHCID => f.base64("identifier", false)?,
        rtype::OPENPGPKEY => f.base64("key", false)?,
        rtype::NSEC3 => {
            f.u8("hash algorithm")?;
            f.u8("flags")?;
            f.u16("iterations")?;
            f.salt()?;
            let token = f.next("next hashed owner name")?;
            let hash = BASE32HEX_NOPAD
                .decode(&token.text.to_ascii_uppercase())
                .map_err(|_| RdataError::invalid("next hashed owner name", &token))?;
            let len = u8::try_from(hash.len())
                .map_err(|_| RdataError::Rule("the next hashed owner name is too long"))?;
            f.out.push(len);
            f.out.extend_from_slice(&hash);
            f.type_bitmap()?;
        }
        rtype::NSEC3PARAM => {
            f.u8("hash algorithm")?;
            f.u8("flags")?;
            f.u16("iterations")?;
            f.salt()?;
        }
        rtype::CSYNC => {
            f.u32("SOA serial")?;
            f.u16("flags")?;
            f.type_bitmap()?;
        }
        rtype::ZONEMD => {
            f.u32("serial")?;
            f.u8("scheme")?;
            let algorithm = f.u8("hash algorithm")?;
            let len = f.hex("digest", false)?;
            let want = match algorithm {
                1 => Some(48),
                2 => Some(64),
                _ => None,
            };
            if let Some(want) = want
                && len != want
            {
                return Err(RdataError::DigestLength {
                    kind: "hash algorithm",
                    number: algorithm,
                    want,
                    len,
                });
            }
            if len < 12 {
                return Err(RdataError::Rule("a ZONEMD digest is at least 12 bytes"));
            }
        }
        rtype::SVCB | rtype::HTTPS => {
            f.u16("priority")?;
            f.name("target name")?;
            let rest = f.rest();
            svcb::params(rest, f.out)?;
        }
        rtype::NID | rtype::L64 => {
            f.u16("preference")?;
            let token = f.next("locator")?;
            f.out.extend_from_slice(
                &locator64(token.text).ok_or_else(|| RdataError::Locator(token.show()))?,
            );
        }
        rtype::L32 => {
            f.u16("preference")?;
            f.ipv4()?;
        }
        rtype::EUI48 | rtype::EUI64 => {
            let groups = if rtype == rtype::EUI48 { 6 } else { 8 };
            let token = f.next("address")?;
            let what = if rtype == rtype::EUI48 {
                "EUI48 address"
            } else {
                "EUI64 address"
            };
            let bytes = eui(token.text, groups).ok_or_else(|| RdataError::invalid(what, &token))?;
            f.out.extend_from_slice(&bytes);
        }
        rtype::URI => {
            f.u16("priority")?;
            f.u16("weight")?;
            let token = f.next("target")?;
            let target = unescape(token.text)?;
            if target.is_empty() {
                return Err(RdataError::Rule("the URI target is empty"));
            }
            f.out.extend_from_slice(&target);
        }
        rtype::CAA => {
            f.u8("flags")?;
            let tag = f.next("tag")?;
            if tag.text.is_empty()
                || tag.text.len() > 255
                || !tag.text.iter().all(u8::is_ascii_alphanumeric)
            {
                return Err(RdataError::CaaTag(tag.show()));
            }
            f.out.push(tag.text.len() as u8);
            f.out.extend_from_slice(tag.text);
            let value = f.next("value")?;
            f.out.extend_from_slice(&unescape(value.text)?);
        }
        rtype::APL => {
            for token in f.rest() {
                apl_item(token.text, f.out)
                    .ok_or_else(|| RdataError::invalid("APL item", token))?;
            }
        }
        rtype::LOC => {
            let rest = f.rest();
            let rdata = loc(rest)?;
            f.out.extend_from_slice(&rdata);
        }
        _ => {
            return Err(RdataError::NoTextForm(name.to_string()));
        }
    }
    f.done()
}

fn cert_type_number(text: &[u8]) -> Option<u16> {
    const TYPES: &[(&str, u16)] = &[
        ("PKIX", 1),
        ("SPKI", 2),
        ("PGP", 3),
        ("IPKIX", 4),
        ("ISPKI", 5),
        ("IPGP", 6),
        ("ACPKIX", 7),
        ("IACPKIX", 8),
        ("URI", 253),
        ("OID", 254),
    ];
    TYPES
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(text))
        .map(|&(_, n)| n)
}

/// `xxxx:xxxx:xxxx:xxxx` (RFC 6742 NID and L64).
fn locator64(text: &[u8]) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    let groups: Vec<&[u8]> = text.split(|&b| b == b':').collect();
    if groups.len() != 4 {
        return None;
    }
    for (i, group) in groups.iter().enumerate() {
        if group.len() != 4 {
            return None;
        }
        let value = u16::from_str_radix(std::str::from_utf8(group).ok()?, 16).ok()?;
        out[2 * i..2 * i + 2].copy_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

/// `xx-xx-xx-xx-xx-xx` (RFC 7043).
fn eui(text: &[u8], groups: usize) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = text.split(|&b| b == b'-').collect();
    if parts.len() != groups || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    parts
        .iter()
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// One APL item (RFC 3123): `[!]afi:address/prefix`.
fn apl_item(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let text = std::str::from_utf8(text).ok()?;
    let (negate, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (family, rest) = text.split_once(':')?;
    let (address, prefix) = rest.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let (family, bytes): (u16, Vec<u8>) = match family {
        "1" if prefix <= 32 => (1, address.parse::<Ipv4Addr>().ok()?.octets().to_vec()),
        "2" if prefix <= 128 => (2, address.parse::<Ipv6Addr>().ok()?.octets().to_vec()),
        _ => return None,
    };
    // Trailing zero bytes are left out (RFC 3123 section 4.1).
    let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    out.extend_from_slice(&family.to_be_bytes());
    out.push(prefix);
    out.push(len as u8 | if negate { 0x80 } else { 0 });
    out.extend_from_slice(&bytes[..len]);
    Some(())
}

/// LOC RDATA (RFC 1876 section 3):
/// `d1 [m1 [s1]] {N|S} d2 [m2 [s2]] {E|W} alt[m] [siz[m] [hp[m] [vp[m]]]]`.
fn loc(tokens: &[Token<'_>]) -> Result<Vec<u8>, RdataError> {
    let invalid = || {
        let text: Vec<String> = tokens.iter().map(Token::show).collect();
        RdataError::Invalid {
            what: "LOC data",
            text: text.join(" "),
        }
    };
    let mut at = 0;
    // Degrees, minutes and seconds up to the hemisphere letter, in thousandths of a second.
    let mut angle = |positive: u8, negative: u8, max_degrees: u32| -> Result<u32, RdataError> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let hemisphere = loop {
            let token = tokens.get(at).ok_or_else(invalid)?;
            at += 1;
            if token.text.len() == 1
                && matches!(
                    token.text[0].to_ascii_uppercase(),
                    b'N' | b'S' | b'E' | b'W'
                )
            {
                break token.text[0].to_ascii_uppercase();
            }
            parts.push(token.text);
            if parts.len() > 3 {
                return Err(invalid());
            }
        };
        if parts.is_empty() || (hemisphere != positive && hemisphere != negative) {
            return Err(invalid());
        }
        let degrees: u32 = parse_text(parts[0]).ok_or_else(invalid)?;
        let minutes: u32 = parts
            .get(1)
            .map_or(Some(0), |p| parse_text(p))
            .ok_or_else(invalid)?;
        let millis = match parts.get(2) {
            Some(p) => decimal_thousandths(p).ok_or_else(invalid)?,
            None => 0,
        };
        if degrees > max_degrees || minutes > 59 || millis > 59_999 {
            return Err(invalid());
        }
        let value = (degrees * 3600 + minutes * 60) * 1000 + millis;
        if value > max_degrees * 3_600_000 {
            return Err(invalid());
        }
        const EQUATOR: u32 = 1 << 31;
        Ok(if hemisphere == positive {
            EQUATOR + value
        } else {
            EQUATOR - value
        })
    };
    let latitude = angle(b'N', b'S', 90)?;
    let longitude = angle(b'E', b'W', 180)?;
    // Metres with an optional `m`, in centimetres.
    let metres = |token: &Token<'_>| -> Option<i64> {
        let text = token.text.strip_suffix(b"m").unwrap_or(token.text);
        let (negative, text) = match text.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
            Some(dot) => (&text[..dot], &text[dot + 1..]),
            None => (text, &b""[..]),
        };
        if whole.is_empty() || fraction.len() > 2 {
            return None;
        }
        let whole: i64 = parse_text(whole)?;
        let mut cents: i64 = if fraction.is_empty() {
            0
        } else {
            parse_text(fraction)?
        };
        if fraction.len() == 1 {
            cents *= 10;
        }
        let value = whole.checked_mul(100)?.checked_add(cents)?;
        Some(if negative { -value } else { value })
    };
    let altitude = tokens.get(at).and_then(metres).ok_or_else(invalid)?;
    at += 1;
    // Altitude is kept from 100,000 m below the WGS 84 reference.
    let altitude = altitude
        .checked_add(10_000_000)
        .and_then(|a| u32::try_from(a).ok())
        .ok_or_else(invalid)?;
    // Size and precisions as a mantissa and a power of ten of centimetres.
    let precision = |token: Option<&Token<'_>>, default: u8| -> Result<u8, RdataError> {
        let Some(token) = token else {
            return Ok(default);
        };
        let cents = metres(token).filter(|&c| c >= 0).ok_or_else(invalid)?;
        let mut exponent = 0u8;
        let mut mantissa = cents;
        while mantissa > 9 {
            if mantissa % 10 != 0 && exponent >= 9 {
                return Err(invalid());
            }
            mantissa /= 10;
            exponent += 1;
        }
        if exponent > 9 {
            return Err(invalid());
        }
        Ok(((mantissa as u8) << 4) | exponent)
    };
    let size = precision(tokens.get(at), 0x12)?;
    let horizontal = precision(tokens.get(at + 1), 0x16)?;
    let vertical = precision(tokens.get(at + 2), 0x13)?;
    if tokens.len() > at + 3 {
        return Err(invalid());
    }
    let mut out = vec![0, size, horizontal, vertical];
    out.extend_from_slice(&latitude.to_be_bytes());
    out.extend_from_slice(&longitude.to_be_bytes());
    out.extend_from_slice(&altitude.to_be_bytes());
    Ok(out)
}

/// `12.345` seconds as 12345 thousandths.
fn decimal_thousandths(text: &[u8]) -> Option<u32> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 {
        return None;
    }
    let whole: u32 = parse_text(whole)?;
    let mut thousandths: u32 = if fraction.is_empty() {
        0
    } else {
        parse_text(fraction)?
    };
    for _ in fraction.len()..3 {
        thousandths *= 10;
    }
    whole.checked_mul(1000)?.checked_add(thousandths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::name::wire;

    fn tokens(text: &str) -> Vec<Token<'_>> {
        let mut lexer = super::super::lexer::Lexer::new(text.as_bytes());
        let mut tokens = Vec::new();
        lexer.next_entry(&mut tokens).unwrap();
        tokens
    }

    fn rdata(rtype: Rtype, text: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        to_wire(rtype, &tokens(text), &wire("example.com"), &mut out)
            .map_err(|(_, e)| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn names_take_escapes_and_the_origin() {
        let mut out = Vec::new();
        name::push_text(b"Printer\\032Web\\.UI", Some(&wire("example")), &mut out).unwrap();
        assert_eq!(out, b"\x0ePrinter Web.UI\x07example\x00");
        for (text, reason) in [
            ("a..b", "empty label"),
            ("a\\256", "above \\255"),
            ("a\\25x", "three decimal digits"),
            (&"x".repeat(64), "longer than 63"),
        ] {
            let error = name::push_text(text.as_bytes(), Some(&[0]), &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        let long = ["abcdefghij"; 25].join(".");
        assert!(
            name::push_text(long.as_bytes(), Some(&wire("example")), &mut Vec::new())
                .unwrap_err()
                .to_string()
                .contains("longer than 255")
        );
    }

    #[test]
    fn strings_count_bytes_after_unescaping() {
        let text = format!("\"{}\\\"\\\"\"", "a".repeat(253));
        let out = rdata(rtype::TXT, &text).unwrap();
        assert_eq!(out[0], 255);
        let text = format!("\"{}\"", "a".repeat(256));
        assert!(
            rdata(rtype::TXT, &text)
                .unwrap_err()
                .contains("at most 255")
        );
        assert_eq!(rdata(rtype::TXT, "a\\032b \"\"").unwrap(), b"\x03a b\x00");
    }

    #[test]
    fn hex_and_base64_may_be_split() {
        let out = rdata(
            rtype::SSHFP,
            "4 2 0123456789abcdef 0123456789ABCDEF0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert_eq!(out.len(), 2 + 32);
        let out = rdata(
            rtype::DHCID,
            "( AAIBY2/AuCccgoJbsaxcQc9TUapptP69l OjxfNuVAA2kjEA= )",
        )
        .unwrap();
        assert_eq!(out.len(), 35);
    }

    #[test]
    fn ds_digests_must_match_their_type() {
        let digest = "0123456789abcdef".repeat(4);
        assert!(rdata(rtype::DS, &format!("1 13 2 {digest}")).is_ok());
        let error = rdata(rtype::DS, "1 13 2 0123456789abcdef").unwrap_err();
        assert!(
            error.contains("type 2 is 32 bytes; this one is 8"),
            "{error}"
        );
        assert!(rdata(rtype::CDS, "0 0 0 00").is_ok());
        assert!(rdata(rtype::DS, &format!("1 ECDSAP256SHA256 2 {digest}")).is_ok());
    }

    #[test]
    fn caa_tags_are_alphanumeric() {
        assert_eq!(
            rdata(rtype::CAA, "0 issue \"ca.example.net\"").unwrap(),
            b"\x00\x05issueca.example.net"
        );
        assert!(
            rdata(rtype::CAA, "0 is-sue \"x\"")
                .unwrap_err()
                .contains("CAA tag")
        );
    }

    #[test]
    fn type_bitmaps_and_signatures() {
        let out = rdata(rtype::NSEC, "host.example.com. A MX RRSIG NSEC TYPE1234").unwrap();
        let name_len = wire("host.example.com").len();
        let mut want = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend_from_slice(&[0; 26]);
        want.push(0x20);
        assert_eq!(&out[name_len..], want);
        // RFC 4034 section 3.3's example times.
        let out = rdata(
            rtype::RRSIG,
            "A 5 3 86400 20030322173103 ( 20030220173103 2642 example.com. oJB1W6WNGv+ldvQ3WDG0MQkg5IEhjRip8WTrPYGv07h108dUKGMeDPKijVCHX3DDKdfb+v6oB9wfuh3DTJXUAfI/M0zmO/zz8bW0Rznl8O3tGNazPwQKkRN20XPXV6nwwfoXmJQbsLNrLfkGJ5D6fwFm8nN+6pBzeDQfsS3Ap3o= )",
        )
        .unwrap();
        assert_eq!(
            &out[8..16],
            [0x3e, 0x7c, 0x9d, 0xd7, 0x3e, 0x55, 0x10, 0xd7]
        );
    }

    #[test]
    fn loc_follows_rfc_1876() {
        // RFC 1876 section 4's example, as BIND writes it in wire form.
        let out = rdata(rtype::LOC, "42 21 54 N 71 06 18 W -24m 30m").unwrap();
        assert_eq!(
            out,
            [
                0x00, 0x33, 0x16, 0x13, 0x89, 0x17, 0x2d, 0xd0, 0x70, 0xbe, 0x15, 0xf0, 0x00, 0x98,
                0x8d, 0x20
            ]
        );
        assert!(rdata(rtype::LOC, "91 N 0 E 0m").is_err());
        // Found by fuzzing: numbers that overflow before the range checks.
        assert!(rdata(rtype::LOC, "52 22 23.000 N 4 539999 92293990 E").is_err());
        assert!(rdata(rtype::LOC, "0 N 0 E 92233720368547758.07m").is_err());
        assert!(rdata(rtype::LOC, "0 N 0 E 0m 92233720368547758m").is_err());
    }

    #[test]
    fn types_by_name_and_number() {
        assert_eq!(type_number(b"aaaa"), Some(rtype::AAAA));
        assert_eq!(type_number(b"TYPE65280"), Some(Rtype(65280)));
        assert_eq!(type_number(b"TYPE65536"), None);
        assert_eq!(type_number(b"FOO"), None);
        assert_eq!(type_name(Rtype(65280)), "TYPE65280");
        assert!(rdata(rtype::OPT, "").unwrap_err().contains("cannot appear"));
        assert!(
            rdata(Rtype(11), "192.0.2.1 6 25")
                .unwrap_err()
                .contains("RFC 3597")
        );
        assert_eq!(rdata(Rtype(11), "\\# 2 ab cd").unwrap(), [0xab, 0xcd]);
    }

    #[test]
    fn ttls_take_units() {
        assert_eq!(parse_ttl(b"3600").unwrap(), 3600);
        assert_eq!(parse_ttl(b"1h30m").unwrap(), 5400);
        assert_eq!(parse_ttl(b"1W").unwrap(), 604_800);
        assert_eq!(parse_ttl(b"4294967295").unwrap(), u32::MAX);
        assert!(parse_ttl(b"4294967296").is_err());
        assert!(parse_ttl(b"h").is_err());
        assert!(parse_ttl(b"1x").is_err());
    }
}
