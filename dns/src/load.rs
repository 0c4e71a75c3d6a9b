//! Reading zone files: RFC 1035 master format into a validated [`Zone`].
//!
//! ```text
//! file ──▶ Lexer (entries: tokens + line) ──▶ directives ($ORIGIN $TTL $INCLUDE) / records
//!      ──▶ RDATA to wire (hickory-proto's type parsers) ──▶ checks ──▶ Zone::build
//! ```
//!
//! The lexer is written here rather than taken from hickory-proto because errors must name the
//! file and line (including inside `$INCLUDE`d files) and the checks after parsing must point at
//! the offending record's line; hickory's zone parser reports neither. The per-type RDATA parsers
//! are hickory's.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    str::FromStr,
    time::SystemTime,
};

pub use hickory_proto::rr::Name;
use hickory_proto::{
    rr::{RData, RecordType},
    serialize::{
        binary::{BinEncodable, BinEncoder, NameEncoding},
        txt::parse_ttl,
    },
};

use crate::{
    error::ZoneError,
    name,
    zone::{Records, Sorted, Zone, rtype},
};

/// Deepest `$INCLUDE` nesting accepted.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A zone read from its file, with the files it was read from (for reload checks).
#[derive(Debug)]
pub struct Loaded {
    pub zone: Zone,
    /// The zone file and every file it includes, stamped just before they were read.
    pub files: Vec<(PathBuf, Stamp)>,
}

/// Size and modification time of a file, to notice edits without reading it.
pub type Stamp = (Option<SystemTime>, u64);

pub fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, u64::MAX),
    }
}

/// Reads and validates the zone in `path`. The origin is `origin` where given; else a `$ORIGIN`
/// before the first record; else the file name without `.zone`.
pub fn load_zone(path: &Path, origin: Option<&Name>) -> Result<Loaded, ZoneError> {
    let origin = origin
        .map(Origin::new)
        .transpose()
        .map_err(|reason| ZoneError::Zone {
            file: path.to_path_buf(),
            reason,
        })?;
    let mut loader = Loader {
        files: Vec::new(),
        records: Records::default(),
        sources: Vec::new(),
        origin: origin.clone(),
        zone_origin: origin,
        default_ttl: None,
        last_ttl: None,
        soa_minimum: None,
        owner: None,
        rdata: Vec::new(),
        default_from_file: default_origin(path),
    };
    loader.read_file(path, 0)?;
    loader.finish(path)
}

/// The origin a zone file gets from its name: `zones/foobar.com.zone` is `foobar.com.`.
pub fn default_origin(path: &Path) -> Option<Name> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".zone").unwrap_or(file);
    let mut name = Name::from_ascii(stem).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// Where a record came from.
#[derive(Debug, Clone, Copy)]
struct Source {
    file: u16,
    line: u32,
}

/// A name used as origin, in both forms the parsers need.
#[derive(Debug, Clone)]
struct Origin {
    name: Name,
    wire: Vec<u8>,
}

impl Origin {
    fn new(name: &Name) -> Result<Origin, String> {
        let mut name = name.clone();
        name.set_fqdn(true);
        let wire = name_to_wire(&name)?;
        Ok(Origin { name, wire })
    }
}

struct Loader {
    files: Vec<(PathBuf, Stamp)>,
    records: Records,
    sources: Vec<Source>,
    /// The current origin; `None` until `$ORIGIN` or the first record fixes it.
    origin: Option<Origin>,
    /// The zone's origin once known: given, or fixed by the first `$ORIGIN`/record.
    zone_origin: Option<Origin>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    soa_minimum: Option<u32>,
    /// The last owner name, in wire form, for records that leave it blank.
    owner: Option<Vec<u8>>,
    /// Scratch space for one record's RDATA.
    rdata: Vec<u8>,
    default_from_file: Option<Name>,
}

impl Loader {
    fn read_file(&mut self, path: &Path, depth: usize) -> Result<(), ZoneError> {
        let stamp = stamp(path);
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let file = self.files.len() as u16;
        self.files.push((path.to_path_buf(), stamp));
        let mut lexer = Lexer::new(&text);
        let mut tokens = Vec::new();
        let syntax = |line, reason: String| ZoneError::Syntax {
            file: path.to_path_buf(),
            line,
            reason,
        };
        while let Some(entry) = lexer
            .next_entry(&mut tokens)
            .map_err(|(line, reason)| syntax(line, reason))?
        {
            let source = Source {
                file,
                line: entry.line,
            };
            let result = if !entry.blank_owner && tokens[0].text.starts_with('$') {
                self.directive(path, &tokens, depth)
            } else {
                self.record(&tokens, entry.blank_owner, source)
                    .map_err(Fault::Here)
            };
            match result {
                Ok(()) => {}
                Err(Fault::Here(reason)) => return Err(syntax(entry.line, reason)),
                Err(Fault::Included(error)) => return Err(error),
            }
        }
        Ok(())
    }

    /// Sets the origin from the file name if nothing set it yet.
    fn ensure_origin(&mut self) -> Result<(), String> {
        if self.origin.is_none() {
            let name = self.default_from_file.clone().ok_or_else(|| {
                "no origin: use --origin, $ORIGIN, or a file named after the zone".to_string()
            })?;
            self.set_origin(Origin::new(&name)?);
        }
        Ok(())
    }

    fn set_origin(&mut self, origin: Origin) {
        if self.zone_origin.is_none() {
            self.zone_origin = Some(origin.clone());
        }
        self.origin = Some(origin);
    }

    fn directive(&mut self, path: &Path, tokens: &[Token<'_>], depth: usize) -> Result<(), Fault> {
        let word = tokens[0].text;
        let arg = |i: usize| {
            tokens
                .get(i)
                .map(|t| t.text)
                .ok_or_else(|| format!("{word} needs an argument"))
        };
        match word.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let name = parse_name(arg(1)?, self.origin.as_ref().map(|o| &o.name))?;
                self.set_origin(Origin::new(&name)?);
                Ok(())
            }
            "$TTL" => {
                let ttl = parse_ttl_text(arg(1)?)?;
                self.default_ttl = Some(ttl);
                Ok(())
            }
            "$INCLUDE" => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}").into());
                }
                let target = unquote(arg(1)?);
                let target = Path::new(&target);
                let target = match path.parent() {
                    Some(folder) if target.is_relative() => folder.join(target),
                    _ => target.to_path_buf(),
                };
                let saved_origin = self.origin.clone();
                if let Some(origin) = tokens.get(2) {
                    let name = parse_name(origin.text, self.origin.as_ref().map(|o| &o.name))?;
                    self.set_origin(Origin::new(&name)?);
                }
                let result = self.read_file(&target, depth + 1);
                self.origin = saved_origin;
                // An error inside the included file keeps that file's name and line.
                result.map_err(Fault::Included)
            }
            _ => Err(format!("unknown directive \"{word}\"").into()),
        }
    }

    fn record(
        &mut self,
        tokens: &[Token<'_>],
        blank_owner: bool,
        source: Source,
    ) -> Result<(), String> {
        self.ensure_origin()?;
        let Loader {
            records,
            sources,
            origin: Some(origin),
            zone_origin: Some(zone_origin),
            default_ttl,
            last_ttl,
            soa_minimum,
            owner,
            rdata,
            ..
        } = self
        else {
            return Err("no origin".to_string());
        };
        let mut rest = tokens;
        if !blank_owner {
            let wire = owner.get_or_insert_with(Vec::new);
            wire.clear();
            push_name(rest[0].text, origin, wire)?;
            rest = &rest[1..];
        }
        let owner = owner
            .as_deref()
            .ok_or_else(|| "record has no owner name".to_string())?;

        let mut ttl = None;
        let mut class_seen = false;
        let record_type = loop {
            let Some(token) = rest.first() else {
                return Err("record has no type".to_string());
            };
            rest = &rest[1..];
            let text = token.text;
            if ttl.is_none() && text.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(parse_ttl_text(text)?);
                continue;
            }
            let upper = text.to_ascii_uppercase();
            if !class_seen && is_class(&upper) {
                if upper != "IN" {
                    return Err(format!("class {upper} is not served; only IN"));
                }
                class_seen = true;
                continue;
            }
            break parse_type(&upper).ok_or_else(|| format!("unknown record type \"{text}\""))?;
        };

        rdata.clear();
        rdata_to_wire(record_type, rest, origin, rdata)?;
        let rtype = u16::from(record_type);

        if rtype == rtype::SOA
            && let Some((_, minimum)) = crate::zone::soa_serial_minimum(rdata)
        {
            soa_minimum.get_or_insert(minimum);
        }
        let ttl = match ttl {
            Some(ttl) => {
                *last_ttl = Some(ttl);
                ttl
            }
            None => default_ttl
                .or(*last_ttl)
                .or(*soa_minimum)
                .ok_or_else(|| "no TTL: add $TTL or a TTL to the record".to_string())?,
        };

        if !name::is_subdomain(owner, &zone_origin.wire) {
            return Err(format!(
                "\"{}\" is outside the zone \"{}\"",
                name::to_text(owner),
                name::to_text(&zone_origin.wire)
            ));
        }
        records.push(owner, rtype, ttl, rdata);
        sources.push(source);
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<Loaded, ZoneError> {
        let Loader {
            files,
            records,
            sources,
            zone_origin,
            ..
        } = self;
        let whole = |reason: String| ZoneError::Zone {
            file: path.to_path_buf(),
            reason,
        };
        let origin = zone_origin
            .ok_or_else(|| whole("no records".to_string()))?
            .wire;
        let sorted = records.sort();
        check(&origin, &records, &sorted).map_err(|(i, reason)| match i {
            Some(i) => ZoneError::Syntax {
                file: files[usize::from(sources[i].file)].0.clone(),
                line: sources[i].line,
                reason,
            },
            None => whole(reason),
        })?;
        let zone = Zone::build(&origin, &records, &sorted);
        Ok(Loaded { zone, files })
    }
}

/// A problem on the current line, or an error already located in an included file.
enum Fault {
    Here(String),
    Included(ZoneError),
}

impl From<String> for Fault {
    fn from(reason: String) -> Self {
        Fault::Here(reason)
    }
}

/// Checks beyond syntax, as named-checkzone and kzonecheck make them, over the records in
/// canonical order. Returns the offending record's index (for its file and line; the first in
/// file order when there are several) and the reason.
fn check(origin: &[u8], records: &Records, sorted: &Sorted) -> Result<(), (Option<usize>, String)> {
    let origin_key = name::key_of(origin);
    let order: Vec<usize> = sorted.order.iter().map(|&i| i as usize).collect();
    let group_of = |key: &[u8]| {
        let start = order.partition_point(|&i| sorted.key(i) < key);
        let end = start + order[start..].partition_point(|&i| sorted.key(i) == key);
        &order[start..end]
    };
    let mut first: Option<(usize, String)> = None;
    let mut fail = |i: usize, reason: String| {
        if first.as_ref().is_none_or(|(j, _)| i < *j) {
            first = Some((i, reason));
        }
    };
    let mut apex_soa = false;
    let mut apex_ns = false;
    let mut at = 0;
    while at < order.len() {
        let key = sorted.key(order[at]);
        let group = group_of(key);
        at += group.len();
        let owner = || name::to_text(records.owner(group[0]));
        let of_type = |rtype: u16| {
            group
                .iter()
                .copied()
                .filter(move |&i| records.rtype(i) == rtype)
        };
        if key == origin_key {
            let mut soas = of_type(rtype::SOA);
            apex_soa = soas.next().is_some();
            if let Some(second) = soas.next() {
                fail(second, "a second SOA record at the apex".to_string());
            }
            apex_ns = of_type(rtype::NS).next().is_some();
        } else if let Some(soa) = of_type(rtype::SOA).next() {
            fail(soa, format!("SOA record at \"{}\", not the apex", owner()));
        }
        let cnames: Vec<usize> = of_type(rtype::CNAME).collect();
        if let Some(&cname) = cnames.first() {
            let other = group
                .iter()
                .any(|&i| !matches!(records.rtype(i), rtype::CNAME | rtype::RRSIG | rtype::NSEC));
            if other {
                fail(cname, format!("CNAME and other data at \"{}\"", owner()));
            } else if let Some(&second) = cnames
                .iter()
                .find(|&&i| records.rdata(i) != records.rdata(cname))
            {
                fail(
                    second,
                    format!("CNAME and a second CNAME at \"{}\"", owner()),
                );
            }
        }
        for ns in of_type(rtype::NS) {
            let Some(len) = name::wire_len(records.rdata(ns)) else {
                continue;
            };
            let target = &records.rdata(ns)[..len];
            if !name::is_subdomain(target, origin) {
                continue;
            }
            let has_address = group_of(&name::key_of(target))
                .iter()
                .any(|&i| matches!(records.rtype(i), rtype::A | rtype::AAAA));
            if !has_address {
                fail(
                    ns,
                    format!(
                        "name server \"{}\" is inside the zone but has no A or AAAA record (missing glue)",
                        name::to_text(target)
                    ),
                );
            }
        }
    }
    if !apex_soa {
        return Err((None, "no SOA record at the zone apex".to_string()));
    }
    if !apex_ns {
        return Err((None, "no NS records at the zone apex".to_string()));
    }
    match first {
        Some((i, reason)) => Err((Some(i), reason)),
        None => Ok(()),
    }
}

fn is_class(upper: &str) -> bool {
    matches!(upper, "IN" | "CH" | "CS" | "HS" | "NONE" | "ANY")
        || upper
            .strip_prefix("CLASS")
            .is_some_and(|n| n.parse::<u16>().is_ok())
}

fn parse_type(upper: &str) -> Option<RecordType> {
    if let Some(number) = upper.strip_prefix("TYPE") {
        return number.parse::<u16>().ok().map(RecordType::from);
    }
    match RecordType::from_str(upper) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

fn parse_ttl_text(text: &str) -> Result<u32, String> {
    let ttl = parse_ttl(text).map_err(|_| format!("invalid TTL \"{text}\""))?;
    // RFC 2181 section 8: values with the top bit set are treated as zero; refuse them instead.
    if ttl > i32::MAX as u32 {
        return Err(format!("TTL \"{text}\" is larger than 2^31-1"));
    }
    Ok(ttl)
}

fn parse_name(text: &str, origin: Option<&Name>) -> Result<Name, String> {
    let text = unquote(text);
    if text == "@" {
        return origin
            .cloned()
            .ok_or_else(|| "\"@\" used before any origin is known".to_string());
    }
    // ASCII, not IDNA: names keep the case they were written in.
    let name = Name::from_ascii(&text).map_err(|e| format!("invalid name \"{text}\": {e}"))?;
    if name.is_fqdn() {
        return Ok(name);
    }
    let origin = origin.ok_or_else(|| format!("relative name \"{text}\" with no origin"))?;
    name.append_domain(origin)
        .map_err(|e| format!("invalid name \"{text}\": {e}"))
}

/// Appends the wire form of a name as written in a zone file. Plain names (the vast majority)
/// are converted here without allocating; names with escapes go through hickory-proto.
fn push_name(text: &str, origin: &Origin, out: &mut Vec<u8>) -> Result<(), String> {
    if text == "@" {
        out.extend_from_slice(&origin.wire);
        return Ok(());
    }
    if text == "." {
        out.push(0);
        return Ok(());
    }
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'"');
    if !plain {
        let name = parse_name(text, Some(&origin.name))?;
        out.extend_from_slice(&name_to_wire(&name)?);
        return Ok(());
    }
    let start = out.len();
    let (body, absolute) = match text.strip_suffix('.') {
        Some(body) => (body, true),
        None => (text, false),
    };
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "invalid name \"{text}\": labels must be 1 to 63 bytes long"
            ));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    if absolute {
        out.push(0);
    } else {
        out.extend_from_slice(&origin.wire);
    }
    if out.len() - start > name::MAX_NAME {
        return Err(format!("invalid name \"{text}\": longer than 255 bytes"));
    }
    Ok(())
}

fn name_to_wire(name: &Name) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(name.len() + 2);
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    name.emit(&mut encoder)
        .map_err(|e| format!("name \"{name}\": {e}"))?;
    Ok(out)
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .to_string()
}

fn number<T: FromStr>(tokens: &[Token<'_>], i: usize, what: &str) -> Result<T, String> {
    let text = tokens
        .get(i)
        .map(|t| t.text)
        .ok_or_else(|| format!("missing {what}"))?;
    text.parse()
        .map_err(|_| format!("invalid {what} \"{text}\""))
}

fn expect_len(tokens: &[Token<'_>], n: usize, rtype: RecordType) -> Result<(), String> {
    if tokens.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{rtype} takes {n} field{}, found {}",
            if n == 1 { "" } else { "s" },
            tokens.len()
        ))
    }
}

/// RDATA in uncompressed wire form. The common types are read here directly (they dominate large
/// zones and need the origin for relative names); the rest go through hickory-proto's parsers.
fn rdata_to_wire(
    rtype: RecordType,
    tokens: &[Token<'_>],
    origin: &Origin,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if tokens.first().is_some_and(|t| t.text == "\\#") {
        out.extend_from_slice(&generic_rdata(tokens)?);
        return Ok(());
    }
    let name_at = |i: usize, out: &mut Vec<u8>| -> Result<(), String> {
        let text = tokens
            .get(i)
            .map(|t| t.text)
            .ok_or_else(|| format!("{rtype} is missing a name"))?;
        push_name(text, origin, out)
    };
    match rtype {
        RecordType::A => {
            expect_len(tokens, 1, rtype)?;
            let addr: Ipv4Addr = number(tokens, 0, "IPv4 address")?;
            out.extend_from_slice(&addr.octets());
        }
        RecordType::AAAA => {
            expect_len(tokens, 1, rtype)?;
            let addr: Ipv6Addr = number(tokens, 0, "IPv6 address")?;
            out.extend_from_slice(&addr.octets());
        }
        RecordType::NS | RecordType::CNAME | RecordType::PTR => {
            expect_len(tokens, 1, rtype)?;
            name_at(0, out)?;
        }
        RecordType::MX => {
            expect_len(tokens, 2, rtype)?;
            out.extend_from_slice(&number::<u16>(tokens, 0, "MX preference")?.to_be_bytes());
            name_at(1, out)?;
        }
        RecordType::SRV => {
            expect_len(tokens, 4, rtype)?;
            for (i, what) in ["priority", "weight", "port"].iter().enumerate() {
                out.extend_from_slice(&number::<u16>(tokens, i, what)?.to_be_bytes());
            }
            name_at(3, out)?;
        }
        RecordType::SOA => {
            expect_len(tokens, 7, rtype)?;
            name_at(0, out)?;
            name_at(1, out)?;
            out.extend_from_slice(&number::<u32>(tokens, 2, "SOA serial")?.to_be_bytes());
            for token in &tokens[3..7] {
                out.extend_from_slice(&parse_ttl_text(token.text)?.to_be_bytes());
            }
        }
        _ => {
            let text: Vec<&str> = tokens.iter().map(|t| t.raw).collect();
            let rdata = RData::try_from_str(rtype, &text.join(" "))
                .map_err(|e| format!("invalid {rtype} data: {e}"))?;
            let rdata = qualify(rdata, &origin.name)?;
            let mut encoder = BinEncoder::new(out);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            rdata
                .emit(&mut encoder)
                .map_err(|e| format!("invalid {rtype} data: {e}"))?;
        }
    }
    Ok(())
}

/// hickory's text parsers for these types take no origin: make their relative names absolute.
fn qualify(rdata: RData, origin: &Name) -> Result<RData, String> {
    let absolute = |name: &Name| -> Result<Name, String> {
        if name.is_fqdn() {
            Ok(name.clone())
        } else {
            name.clone()
                .append_domain(origin)
                .map_err(|e| format!("name \"{name}\": {e}"))
        }
    };
    Ok(match rdata {
        RData::SVCB(mut svcb) => {
            svcb.target_name = absolute(&svcb.target_name)?;
            RData::SVCB(svcb)
        }
        RData::HTTPS(mut https) => {
            https.0.target_name = absolute(&https.0.target_name)?;
            RData::HTTPS(https)
        }
        other => other,
    })
}

/// RFC 3597 generic RDATA: `\# LENGTH HEX...`.
fn generic_rdata(tokens: &[Token<'_>]) -> Result<Vec<u8>, String> {
    let len: usize = number(tokens, 1, "RDATA length")?;
    let hex: String = tokens[2..].iter().map(|t| t.text).collect();
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid hex in generic RDATA".to_string());
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    if bytes.len() != len {
        return Err(format!(
            "generic RDATA says {len} bytes but holds {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// One token of an entry: `text` without surrounding quotes, `raw` as written.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    raw: &'a str,
}

struct EntryStart {
    line: u32,
    blank_owner: bool,
}

/// Splits master-file text into entries: one line, or several joined by parentheses.
struct Lexer<'a> {
    src: &'a str,
    at: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            at: 0,
            line: 1,
        }
    }

    /// The next entry's tokens into `tokens`; `None` at the end of the file.
    fn next_entry(
        &mut self,
        tokens: &mut Vec<Token<'a>>,
    ) -> Result<Option<EntryStart>, (u32, String)> {
        let bytes = self.src.as_bytes();
        loop {
            tokens.clear();
            if self.at >= bytes.len() {
                return Ok(None);
            }
            let start = EntryStart {
                line: self.line,
                blank_owner: matches!(bytes[self.at], b' ' | b'\t'),
            };
            let mut depth = 0u32;
            let mut open_line = self.line;
            loop {
                let Some(&byte) = bytes.get(self.at) else {
                    if depth > 0 {
                        return Err((open_line, "unbalanced parentheses".to_string()));
                    }
                    break;
                };
                match byte {
                    b' ' | b'\t' | b'\r' => self.at += 1,
                    b';' => {
                        while self.at < bytes.len() && bytes[self.at] != b'\n' {
                            self.at += 1;
                        }
                    }
                    b'\n' => {
                        self.at += 1;
                        self.line += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b'(' => {
                        if depth == 0 {
                            open_line = self.line;
                        }
                        depth += 1;
                        self.at += 1;
                    }
                    b')' => {
                        if depth == 0 {
                            return Err((self.line, "\")\" without \"(\"".to_string()));
                        }
                        depth -= 1;
                        self.at += 1;
                    }
                    b'"' => {
                        let begin = self.at;
                        self.at += 1;
                        loop {
                            match bytes.get(self.at) {
                                None | Some(b'\n') => {
                                    return Err((self.line, "unterminated quoted string".into()));
                                }
                                Some(b'\\') => self.at += 2,
                                Some(b'"') => break,
                                Some(_) => self.at += 1,
                            }
                        }
                        self.at += 1;
                        let raw = self.slice(begin, self.at)?;
                        tokens.push(Token {
                            text: self.slice(begin + 1, self.at - 1)?,
                            raw,
                        });
                    }
                    _ => {
                        let begin = self.at;
                        while let Some(&b) = bytes.get(self.at) {
                            match b {
                                b'\\' => self.at += 2,
                                // `key="quoted value"` (SVCB parameters) stays one token.
                                b'"' => {
                                    self.at += 1;
                                    while let Some(&q) = bytes.get(self.at) {
                                        match q {
                                            b'\\' => self.at += 2,
                                            b'"' => break,
                                            b'\n' => {
                                                return Err((
                                                    self.line,
                                                    "unterminated quoted string".into(),
                                                ));
                                            }
                                            _ => self.at += 1,
                                        }
                                    }
                                    self.at += 1;
                                }
                                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' => break,
                                _ => self.at += 1,
                            }
                        }
                        self.at = self.at.min(bytes.len());
                        let text = self.slice(begin, self.at)?;
                        tokens.push(Token { text, raw: text });
                    }
                }
            }
            if !tokens.is_empty() {
                return Ok(Some(start));
            }
        }
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a str, (u32, String)> {
        self.src
            .get(from..to)
            .ok_or_else(|| (self.line, "invalid UTF-8 escape".to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HEAD: &str =
        "$TTL 300\n@ SOA ns1 hostmaster 1 3600 900 604800 300\n  NS ns1\nns1 A 192.0.2.1\n";

    /// Loads `text` as `example.com.zone` (plus extra files) and returns the error text.
    fn error_of(text: &str, extra: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in extra {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let path = dir.path().join("example.com.zone");
        std::fs::write(&path, text).unwrap();
        let error = load_zone(&path, None).expect_err("the zone is rejected");
        error
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    fn load(text: &str) -> Zone {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.zone");
        std::fs::write(&path, text).unwrap();
        load_zone(&path, None).unwrap().zone
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let cases = [
            (
                "www A 192.0.2.1\nwww AAA ::1\n",
                6,
                "unknown record type \"AAA\"",
            ),
            (
                "www A 192.0.2.300\n",
                5,
                "invalid IPv4 address \"192.0.2.300\"",
            ),
            ("www MX mail\n", 5, "MX takes 2 fields, found 1"),
            (
                "www CNAME a\nwww A 192.0.2.1\n",
                5,
                "CNAME and other data at \"www.example.com.\"",
            ),
            ("www CNAME a\nwww CNAME b\n", 6, "CNAME and a second CNAME"),
            (
                "www.example.org. A 192.0.2.1\n",
                5,
                "\"www.example.org.\" is outside the zone \"example.com.\"",
            ),
            (
                "sub NS ns.sub\n",
                5,
                "name server \"ns.sub.example.com.\" is inside the zone but has no A or AAAA",
            ),
            (
                "@ SOA ns1 h 2 1 1 1 1\n",
                5,
                "a second SOA record at the apex",
            ),
            (
                "www SOA ns1 h 2 1 1 1 1\n",
                5,
                "SOA record at \"www.example.com.\", not the apex",
            ),
            ("www CH A 192.0.2.1\n", 5, "class CH is not served; only IN"),
            ("www A ( 192.0.2.1\n", 5, "unbalanced parentheses"),
            ("www TXT \"open\n", 5, "unterminated quoted string"),
            ("$FOO bar\n", 5, "unknown directive \"$FOO\""),
            ("www 99999999999 A 192.0.2.1\n", 5, "invalid TTL"),
            ("www HTTPS 1 . alpn\n", 5, "invalid HTTPS data"),
        ];
        for (tail, line, reason) in cases {
            let error = error_of(&format!("{HEAD}{tail}"), &[]);
            let want = format!("example.com.zone:{line}: {reason}");
            assert!(
                error.starts_with(&want),
                "{tail:?}\n  got  {error}\n  want {want}"
            );
        }
    }

    #[test]
    fn whole_zone_errors_name_the_file() {
        assert_eq!(
            error_of("$TTL 1\nwww A 192.0.2.1\n", &[]),
            "example.com.zone: no SOA record at the zone apex"
        );
        assert_eq!(
            error_of("$TTL 1\n@ SOA ns1 h 1 1 1 1 1\nns1 A 192.0.2.1\n", &[]),
            "example.com.zone: no NS records at the zone apex"
        );
    }

    #[test]
    fn errors_inside_includes_name_the_included_file() {
        let error = error_of(
            &format!("{HEAD}$INCLUDE sub/hosts.inc\n"),
            &[("sub/hosts.inc", "; hosts\nok A 192.0.2.2\nbad AAA ::1\n")],
        );
        assert_eq!(error, "sub/hosts.inc:3: unknown record type \"AAA\"");
        let error = error_of(&format!("{HEAD}$INCLUDE missing.inc\n"), &[]);
        assert!(error.starts_with("missing.inc: "), "{error}");
    }

    #[test]
    fn include_paths_are_relative_to_the_including_file_and_take_an_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inc")).unwrap();
        std::fs::write(
            dir.path().join("inc/a.inc"),
            "www A 192.0.2.7\n$INCLUDE b.inc\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("inc/b.inc"), "deep A 192.0.2.8\n").unwrap();
        let path = dir.path().join("example.com.zone");
        std::fs::write(
            &path,
            format!("{HEAD}$INCLUDE inc/a.inc sub\nafter A 192.0.2.9\n"),
        )
        .unwrap();
        let loaded = load_zone(&path, None).unwrap();
        assert_eq!(loaded.files.len(), 3);
        let zone = loaded.zone;
        for name in [
            "www.sub.example.com.",
            "deep.sub.example.com.",
            "after.example.com.",
        ] {
            let wire = name_to_wire(&Name::from_ascii(name).unwrap()).unwrap();
            assert!(zone.find(&name::key_of(&wire)).is_ok(), "{name}");
        }
    }

    #[test]
    fn master_file_syntax() {
        let zone = load(
            "$ORIGIN example.com.\n\
             $TTL 1h\n\
             @ IN SOA ns1.example.com. hostmaster ( 7 ; serial\n 1h 15m 1w 5m )\n\
             \t\tNS ns1 ; comment\n\
             ns1 IN 60 A 192.0.2.1\n\
             ns1 60 IN AAAA 2001:db8::1\n\
             txt TXT \"with ; semicolon\" \"and \\\"quotes\\\"\"\n\
             esc\\.aped A 192.0.2.3\n\
             generic TYPE65280 \\# 3 abcdef\n\
             caa CAA 0 issue \"ca.example.net\"\n\
             tlsa._tcp TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             ssh SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             naptr NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .\n\
             svc SVCB 1 svc-target port=8443\n\
             ptr PTR @\n",
        );
        assert_eq!(zone.serial(), 7);
        // min(SOA TTL 3600, MINIMUM 300)
        assert_eq!(zone.negative_ttl(), 300);
        assert_eq!(zone.record_count(), 13);
        let apex = zone.apex().unwrap();
        assert_eq!(zone.rrset(apex, rtype::SOA).unwrap().ttl, 3600);
        let key =
            |text: &str| name::key_of(&name_to_wire(&Name::from_ascii(text).unwrap()).unwrap());
        let ns1 = zone.find(&key("ns1.example.com.")).unwrap();
        assert_eq!(zone.rrset(ns1, rtype::A).unwrap().ttl, 60);
        let generic = zone.find(&key("generic.example.com.")).unwrap();
        let set = zone.rrset(generic, 65280).unwrap();
        assert_eq!(set.rdatas().next().unwrap(), [0xab, 0xcd, 0xef]);
        let svc = zone.find(&key("svc.example.com.")).unwrap();
        let target = zone
            .rrset(svc, rtype::SVCB)
            .unwrap()
            .rdatas()
            .next()
            .unwrap();
        assert_eq!(
            name::to_text(&target[2..]).split(' ').next(),
            Some("svc-target.example.com.")
        );
        assert!(zone.find(&key("esc\\.aped.example.com.")).is_ok());
    }

    #[test]
    fn origin_comes_from_flag_then_origin_directive_then_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named.zone");
        std::fs::write(&path, HEAD).unwrap();
        assert_eq!(load_zone(&path, None).unwrap().zone.origin_text(), "named.");
        let flag = Name::from_ascii("flag.example.").unwrap();
        assert_eq!(
            load_zone(&path, Some(&flag)).unwrap().zone.origin_text(),
            "flag.example."
        );
        std::fs::write(&path, format!("$ORIGIN directive.example.\n{HEAD}")).unwrap();
        assert_eq!(
            load_zone(&path, None).unwrap().zone.origin_text(),
            "directive.example."
        );
    }

    #[test]
    fn duplicates_collapse_and_sets_take_the_first_ttl() {
        let zone = load(&format!(
            "{HEAD}www 60 A 192.0.2.1\nwww 120 A 192.0.2.1\nwww 90 A 192.0.2.2\n"
        ));
        let key =
            name::key_of(&name_to_wire(&Name::from_ascii("www.example.com.").unwrap()).unwrap());
        let set = zone.rrset(zone.find(&key).unwrap(), rtype::A).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.ttl, 60);
    }
}
