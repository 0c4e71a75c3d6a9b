//! Reading zone files: RFC 1035 master format into a validated [`Zone`].
//!
//! ```text
//! file bytes ──▶ lexer (entries: tokens + line) ──▶ directives ($ORIGIN $TTL $INCLUDE) / records
//!            ──▶ rdata (presentation to wire, per type) ──▶ check ──▶ Zone::build
//! ```
//!
//! All of it is written here rather than taken from a DNS library: errors must name the file and
//! line (inside `$INCLUDE`d files too), the checks must point at the record responsible, and the
//! text must be read as BIND, Knot and NSD read it, which `tests/zones/` checks against them.

pub(crate) mod check;
mod lexer;
pub(crate) mod rdata;
mod svcb;

use std::{
    fmt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{
    error::ZoneError,
    wire::name,
    wire::{
        rtype,
        types::{type_name, type_number},
    },
    zone::{Records, Zone},
};

/// Deepest `$INCLUDE` nesting accepted.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Largest RDATA (its length is a 16-bit field).
const MAX_RDATA: usize = 65_535;
/// Zone data is addressed with 32-bit offsets; stop well before they would overflow.
const MAX_ZONE_BYTES: usize = u32::MAX as usize - 2 * MAX_RDATA;

/// A zone read from its file, with the files it was read from (for reload checks).
#[derive(Debug)]
pub struct Loaded {
    pub zone: Zone,
    /// The zone file and every file it includes, stamped just before they were read.
    pub files: Vec<(PathBuf, Stamp)>,
    /// What was accepted but deserves a look, as `file:line: reason`.
    pub warnings: Vec<Warning>,
}

/// Something a zone file does that is accepted (as BIND, Knot and NSD accept it) but is likely
/// a mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// Size and modification time of a file, to notice edits without reading it.
pub type Stamp = (Option<SystemTime>, u64);

pub fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, u64::MAX),
    }
}

/// Reads and validates the zone in `path`. The origin is `origin` (wire form) where given; else
/// a `$ORIGIN` before the first record; else the file name without `.zone`.
pub fn load_zone(path: &Path, origin: Option<&[u8]>) -> Result<Loaded, ZoneError> {
    let mut loader = Loader::new(path, origin, true);
    loader.read_file(path, 0)?;
    loader.finish(path)
}

/// Reads and validates a zone from `text`, named `name` in messages, without touching the file
/// system: `$INCLUDE` is refused. For tests and fuzzing.
pub fn load_zone_text(
    name: &Path,
    text: &[u8],
    origin: Option<&[u8]>,
) -> Result<Loaded, ZoneError> {
    let mut loader = Loader::new(name, origin, false);
    loader
        .files
        .push((name.to_path_buf(), (None, text.len() as u64)));
    loader.read_text(name, 0, text, 0)?;
    loader.finish(name)
}

impl Loader {
    fn new(path: &Path, origin: Option<&[u8]>, includes: bool) -> Loader {
        Loader {
            files: Vec::new(),
            records: Records::default(),
            lines: Vec::new(),
            origin: origin.map(<[u8]>::to_vec),
            zone_origin: origin.map(<[u8]>::to_vec),
            default_ttl: None,
            last_ttl: None,
            soa_minimum: None,
            owner: None,
            rdata: Vec::new(),
            default_from_file: default_origin(path),
            warnings: Vec::new(),
            includes,
        }
    }
}

/// The origin a zone file gets from its name: `zones/foobar.com.zone` is `foobar.com.`.
pub fn default_origin(path: &Path) -> Option<Vec<u8>> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".zone").unwrap_or(file);
    name::from_text(stem).ok()
}

/// Where a record came from: the index of its file and its line.
#[derive(Debug, Clone, Copy)]
struct Source {
    file: u16,
    line: u32,
}

struct Loader {
    files: Vec<(PathBuf, Stamp)>,
    records: Records,
    /// Where each record of `records` was written.
    lines: Vec<Source>,
    /// The current origin; `None` until `$ORIGIN` or the first record fixes it.
    origin: Option<Vec<u8>>,
    /// The zone's origin once known: given, or fixed by the first `$ORIGIN`/record.
    zone_origin: Option<Vec<u8>>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    soa_minimum: Option<u32>,
    /// The last owner name, in wire form, for records that leave it blank.
    owner: Option<Vec<u8>>,
    /// Scratch space for one record's RDATA.
    rdata: Vec<u8>,
    default_from_file: Option<Vec<u8>>,
    warnings: Vec<Warning>,
    /// Whether `$INCLUDE` may read files.
    includes: bool,
}

/// A problem on the current line, on a later line of the same entry, or an error already
/// located (in an included file).
enum Fault {
    Here(String),
    Line(u32, String),
    Located(ZoneError),
}

impl From<String> for Fault {
    fn from(reason: String) -> Self {
        Fault::Here(reason)
    }
}

impl From<rdata::RdataError> for Fault {
    fn from(error: rdata::RdataError) -> Self {
        Fault::Here(error.to_string())
    }
}

impl From<name::NameError> for Fault {
    fn from(error: name::NameError) -> Self {
        Fault::Here(error.to_string())
    }
}

impl Loader {
    fn read_file(&mut self, path: &Path, depth: usize) -> Result<(), ZoneError> {
        let stamp = stamp(path);
        let text = std::fs::read(path).map_err(|source| ZoneError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let file = u16::try_from(self.files.len()).map_err(|_| ZoneError::Zone {
            file: path.to_path_buf(),
            reason: "more than 65,535 included files".to_string(),
        })?;
        self.files.push((path.to_path_buf(), stamp));
        self.read_text(path, file, &text, depth)
    }

    /// Reads the entries of `text`, the contents of `path`, the `file`-th source.
    fn read_text(
        &mut self,
        path: &Path,
        file: u16,
        text: &[u8],
        depth: usize,
    ) -> Result<(), ZoneError> {
        let mut lexer = lexer::Lexer::new(text);
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
            let result = if !entry.blank_owner && tokens[0].text.starts_with(b"$") {
                self.directive(path, &tokens, source, depth)
            } else {
                self.record(&tokens, entry.blank_owner, source)
            };
            match result {
                Ok(()) => {}
                Err(Fault::Here(reason)) => return Err(syntax(entry.line, reason)),
                Err(Fault::Line(line, reason)) => return Err(syntax(line, reason)),
                Err(Fault::Located(error)) => return Err(error),
            }
        }
        Ok(())
    }

    fn warn(&mut self, source: Source, reason: String) {
        let file = self.files[usize::from(source.file)].0.clone();
        self.warnings.push(Warning {
            file,
            line: source.line,
            reason,
        });
    }

    /// A TTL; one with the top bit set is read as 0 with a warning, as BIND does and RFC 2181
    /// section 8 asks.
    fn ttl(&mut self, text: &[u8], source: Source) -> Result<u32, rdata::RdataError> {
        let ttl = rdata::parse_ttl(text)?;
        if ttl > i32::MAX as u32 {
            self.warn(
                source,
                format!("TTL {ttl} is above 2^31-1 (RFC 2181 section 8); it is read as 0"),
            );
            return Ok(0);
        }
        Ok(ttl)
    }

    fn set_origin(&mut self, origin: Vec<u8>) {
        if self.zone_origin.is_none() {
            self.zone_origin = Some(origin.clone());
        }
        self.origin = Some(origin);
    }

    fn directive(
        &mut self,
        path: &Path,
        tokens: &[lexer::Token<'_>],
        source: Source,
        depth: usize,
    ) -> Result<(), Fault> {
        let word = tokens[0].show();
        let arg = |i: usize| {
            tokens
                .get(i)
                .ok_or_else(|| Fault::Here(format!("{word} needs an argument")))
        };
        let too_many = |n: usize| -> Result<(), Fault> {
            match tokens.get(n) {
                Some(extra) => Err(Fault::Here(format!(
                    "{word}: unexpected \"{}\"",
                    extra.show()
                ))),
                None => Ok(()),
            }
        };
        match word.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                too_many(2)?;
                // Knot and NSD refuse a relative $ORIGIN; BIND would append the current one.
                let origin =
                    name::absolute_from_text(arg(1)?.text).map_err(|e| format!("$ORIGIN: {e}"))?;
                self.set_origin(origin);
                Ok(())
            }
            "$TTL" => {
                too_many(2)?;
                let ttl = self.ttl(arg(1)?.text, source)?;
                self.default_ttl = Some(ttl);
                Ok(())
            }
            "$INCLUDE" => {
                too_many(3)?;
                if !self.includes {
                    return Err("$INCLUDE is not available here".to_string().into());
                }
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}").into());
                }
                let target = lexer::unescape(arg(1)?.text)?;
                let target = PathBuf::from(String::from_utf8_lossy(&target).into_owned());
                let target = match path.parent() {
                    Some(folder) if target.is_relative() => folder.join(target),
                    _ => target,
                };
                let origin = match tokens.get(2) {
                    Some(origin) => Some(
                        name::absolute_from_text(origin.text)
                            .map_err(|e| format!("$INCLUDE origin: {e}"))?,
                    ),
                    None => None,
                };
                if let Err(e) = std::fs::metadata(&target) {
                    return Err(format!("cannot read {}: {e}", target.display()).into());
                }
                let saved_origin = self.origin.clone();
                if let Some(origin) = origin {
                    self.set_origin(origin);
                }
                let result = self.read_file(&target, depth + 1);
                self.origin = saved_origin;
                result.map_err(|error| match error {
                    // The file vanished between the check and the read: still this line's fault.
                    ZoneError::Read { source, .. } => {
                        Fault::Here(format!("cannot read {}: {source}", target.display()))
                    }
                    other => Fault::Located(other),
                })
            }
            _ => Err(format!("unknown directive \"{word}\"").into()),
        }
    }

    fn record(
        &mut self,
        tokens: &[lexer::Token<'_>],
        blank_owner: bool,
        source: Source,
    ) -> Result<(), Fault> {
        if self.origin.is_none() {
            let origin = self.default_from_file.clone().ok_or_else(|| {
                "no origin: use --origin, $ORIGIN, or a file named after the zone".to_string()
            })?;
            self.set_origin(origin);
        }
        let mut rest = tokens;
        if !blank_owner {
            let mut owner = self.owner.take().unwrap_or_default();
            owner.clear();
            let pushed = name::push_text(rest[0].text, self.origin.as_deref(), &mut owner);
            self.owner = Some(owner);
            pushed?;
            rest = &rest[1..];
        }
        if self.owner.is_none() {
            return Err("record has no owner name".to_string().into());
        }

        let mut ttl = None;
        let mut class_seen = false;
        let record_type = loop {
            let Some(token) = rest.first() else {
                return Err("record has no type".to_string().into());
            };
            rest = &rest[1..];
            if ttl.is_none() && token.text.first().is_some_and(u8::is_ascii_digit) {
                ttl = Some(self.ttl(token.text, source)?);
                continue;
            }
            if !class_seen && let Some(class) = class_name(token.text) {
                if class != "IN" {
                    let written = token.show().to_ascii_uppercase();
                    return Err(format!("class {written} is not served; only IN").into());
                }
                class_seen = true;
                continue;
            }
            break type_number(token.text)
                .ok_or_else(|| format!("unknown record type \"{}\"", token.show()))?;
        };

        let (Some(origin), Some(zone_origin), Some(owner)) =
            (&self.origin, &self.zone_origin, &self.owner)
        else {
            return Err("no origin".to_string().into());
        };
        self.rdata.clear();
        rdata::to_wire(record_type, rest, origin, &mut self.rdata).map_err(|(line, e)| {
            let reason = format!("{}: {e}", type_name(record_type));
            match line {
                Some(line) => Fault::Line(line, reason),
                None => Fault::Here(reason),
            }
        })?;
        if self.rdata.len() > MAX_RDATA {
            return Err(Fault::Here(format!(
                "{} data is {} bytes; RDATA holds at most 65,535",
                type_name(record_type),
                self.rdata.len()
            )));
        }
        if record_type == rtype::SOA
            && let Some((_, minimum)) = crate::zone::soa_serial_minimum(&self.rdata)
        {
            self.soa_minimum.get_or_insert(minimum);
        }
        let ttl = match ttl {
            Some(ttl) => {
                self.last_ttl = Some(ttl);
                ttl
            }
            None => self
                .default_ttl
                .or(self.last_ttl)
                .or(self.soa_minimum)
                .ok_or_else(|| "no TTL: add $TTL or a TTL to the record".to_string())?,
        };

        if !name::is_subdomain(owner, zone_origin) {
            // BIND and Knot skip such records with a warning (NSD refuses the zone).
            let reason = format!(
                "\"{}\" is outside the zone \"{}\"; the record is ignored",
                name::to_text(owner),
                name::to_text(zone_origin)
            );
            self.warn(source, reason);
            return Ok(());
        }
        if self.records.byte_len() > MAX_ZONE_BYTES {
            return Err("the zone is larger than 4 GiB".to_string().into());
        }
        self.records.push(owner, record_type, ttl, &self.rdata);
        self.lines.push(source);
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<Loaded, ZoneError> {
        let Loader {
            files,
            records,
            lines,
            zone_origin,
            mut warnings,
            ..
        } = self;
        let whole = |reason: String| ZoneError::Zone {
            file: path.to_path_buf(),
            reason,
        };
        let origin = zone_origin.ok_or_else(|| whole("no records".to_string()))?;
        if records.is_empty() {
            let mut reason = format!("no records inside the zone \"{}\"", name::to_text(&origin));
            if let Some(first) = warnings
                .iter()
                .find(|w| w.reason.contains("outside the zone"))
            {
                let at = format!("{}:{}", first.file.display(), first.line);
                reason.push_str(&format!(
                    " (records outside it were ignored, the first at {at})"
                ));
            }
            return Err(whole(reason));
        }
        let sorted = records.sort();
        let findings = check::check(&origin, &records, &sorted);
        let at = |i: usize| {
            let source = lines[i];
            (files[usize::from(source.file)].0.clone(), source.line)
        };
        if let Some((i, reason)) = findings.error {
            let (file, line) = at(i);
            return Err(ZoneError::Syntax { file, line, reason });
        }
        for (i, reason) in findings.warnings {
            let (file, line) = at(i);
            warnings.push(Warning { file, line, reason });
        }
        warnings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let zone = Zone::build(&origin, &records, &sorted);
        Ok(Loaded {
            zone,
            files,
            warnings,
        })
    }
}

/// The class a token names (`IN`, `CH`, `CLASS3`...): `IN` or the other class's name.
fn class_name(text: &[u8]) -> Option<&'static str> {
    const CLASSES: &[(&str, u16)] = &[
        ("IN", 1),
        ("CH", 3),
        ("CS", 2),
        ("HS", 4),
        ("NONE", 254),
        ("ANY", 255),
    ];
    let number = if text.len() > 5 && text[..5].eq_ignore_ascii_case(b"CLASS") {
        let digits = &text[5..];
        if !digits.iter().all(u8::is_ascii_digit) || digits.len() > 5 {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        Some(u16::try_from(value).ok()?)
    } else {
        None
    };
    match number {
        Some(1) => Some("IN"),
        Some(_) => Some("other"),
        None => CLASSES
            .iter()
            .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(text))
            .map(|(name, _)| *name),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HEAD: &str =
        "$TTL 300\n@ SOA ns1 hostmaster 1 3600 900 604800 300\n  NS ns1\nns1 A 192.0.2.1\n";

    fn write(dir: &Path, extra: &[(&str, &str)]) {
        for (name, body) in extra {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
    }

    /// Loads `text` as `example.com.zone` (plus extra files) and returns the error text.
    fn error_of(text: &str, extra: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), extra);
        let path = dir.path().join("example.com.zone");
        std::fs::write(&path, text).unwrap();
        let error = load_zone(&path, None).expect_err("the zone is rejected");
        error
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    fn loaded(text: &str) -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.zone");
        std::fs::write(&path, text).unwrap();
        load_zone(&path, None).unwrap()
    }

    fn load(text: &str) -> Zone {
        loaded(text).zone
    }

    fn key(text: &str) -> Vec<u8> {
        name::key_of(&name::from_text(text).unwrap())
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
                "A: invalid IPv4 address \"192.0.2.300\"",
            ),
            ("www MX 10\n", 5, "MX: missing exchange name"),
            (
                "www MX 10 a b\n",
                5,
                "MX: unexpected \"b\" after the last field",
            ),
            (
                "www CNAME a\nwww A 192.0.2.1\n",
                6,
                "CNAME and other data at \"www.example.com.\"",
            ),
            ("www CNAME a\nwww CNAME b\n", 6, "CNAME and a second CNAME"),
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
            (
                "www CLASS3 A 192.0.2.1\n",
                5,
                "class CLASS3 is not served; only IN",
            ),
            ("www A ( 192.0.2.1\n", 5, "unbalanced parentheses"),
            ("www TXT \"open\n", 5, "unterminated quoted string"),
            ("$FOO bar\n", 5, "unknown directive \"$FOO\""),
            ("www 99999999999 A 192.0.2.1\n", 5, "invalid TTL"),
            (
                "www HTTPS 1 . alpn\n",
                5,
                "HTTPS: alpn: a value is expected",
            ),
            ("$ORIGIN sub\n", 5, "$ORIGIN: \"sub\" is relative"),
            (
                "a\\256 A 192.0.2.1\n",
                5,
                "invalid name \"a\\256\": escape \\256 is above \\255",
            ),
            (
                "old DNAME new\nx.old A 192.0.2.1\n",
                6,
                "\"x.old.example.com.\" is below a DNAME",
            ),
            ("old DNAME a.\nold DNAME b.\n", 6, "a second DNAME"),
            // A field on a later line of a record in parentheses is named by its own line.
            (
                "w SOA ( ns1 h\n 1 2 3\n x 5 )\n",
                7,
                "SOA: invalid expire \"x\"",
            ),
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
    fn whole_zone_errors_point_at_the_apex() {
        assert_eq!(
            error_of("$TTL 1\nwww A 192.0.2.1\n@ TXT x\n", &[]),
            "example.com.zone:3: no SOA record at the zone apex"
        );
        assert_eq!(
            error_of("$TTL 1\nwww A 192.0.2.1\n", &[]),
            "example.com.zone:2: no SOA record at the zone apex"
        );
        assert_eq!(
            error_of("$TTL 1\n@ SOA ns1 h 1 1 1 1 1\nns1 A 192.0.2.1\n", &[]),
            "example.com.zone:2: no NS records at the zone apex"
        );
        assert_eq!(
            error_of("$TTL 1\n@ SOA ns1 h 1 1 1 1 1\n NS ns1\n", &[]),
            "example.com.zone:3: name server \"ns1.example.com.\" is inside the zone but has no A or AAAA record (missing glue)"
        );
        assert_eq!(error_of("; nothing\n", &[]), "example.com.zone: no records");
        assert_eq!(
            error_of("$TTL 1\nwww.example.org. A 192.0.2.1\n", &[]),
            "example.com.zone: no records inside the zone \"example.com.\" (records outside it were ignored, the first at example.com.zone:2)"
        );
    }

    #[test]
    fn accepted_oddities_are_warnings() {
        let loaded = loaded(&format!(
            "{HEAD}www.example.org. A 192.0.2.1\nw 2147483648 A 192.0.2.2\nsub NS ns.sub\nt 60 A 192.0.2.1\nt 120 A 192.0.2.2\n"
        ));
        let warnings: Vec<String> = loaded
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.line, w.reason))
            .collect();
        assert_eq!(
            warnings,
            [
                "5: \"www.example.org.\" is outside the zone \"example.com.\"; the record is ignored",
                "6: TTL 2147483648 is above 2^31-1 (RFC 2181 section 8); it is read as 0",
                "7: name server \"ns.sub.example.com.\" is inside the zone but has no A or AAAA record (missing glue)",
                "9: TTL 120 differs from the A set's TTL 60, which is used",
            ]
        );
        let zone = loaded.zone;
        let w = zone.find(&key("w.example.com.")).unwrap();
        assert_eq!(zone.rrset(w, rtype::A).unwrap().ttl, 0);
        assert!(zone.find(&key("www.example.org.")).is_err());
    }

    #[test]
    fn oversized_data_is_an_error_with_its_line() {
        let big = format!("\"{}\" ", "x".repeat(255)).repeat(260);
        let error = error_of(&format!("{HEAD}t TXT {big}\n"), &[]);
        assert!(
            error.starts_with("example.com.zone:5: TXT data is 66560 bytes"),
            "{error}"
        );
        let strings = format!("\"{}\" ", "x".repeat(255)).repeat(128);
        let error = error_of(
            &format!("{HEAD}t TXT {strings}\nt TXT {strings} \"b\"\nt TXT \"c\"\n"),
            &[],
        );
        assert!(
            error.starts_with(
                "example.com.zone:6: the TXT set at \"t.example.com.\" no longer fits"
            ),
            "{error}"
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
        assert!(
            error.starts_with("example.com.zone:5: cannot read missing.inc: "),
            "{error}"
        );
        let error = error_of(&format!("{HEAD}$INCLUDE a.inc sub\n"), &[("a.inc", "")]);
        assert!(
            error.starts_with("example.com.zone:5: $INCLUDE origin: \"sub\" is relative"),
            "{error}"
        );
    }

    #[test]
    fn include_paths_are_relative_to_the_including_file_and_take_an_origin() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("inc/a.inc", "www A 192.0.2.7\n$INCLUDE b.inc\n"),
                ("inc/b.inc", "deep A 192.0.2.8\n"),
            ],
        );
        let path = dir.path().join("example.com.zone");
        std::fs::write(
            &path,
            format!("{HEAD}$INCLUDE inc/a.inc sub.example.com.\nafter A 192.0.2.9\n"),
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
            assert!(zone.find(&key(name)).is_ok(), "{name}");
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
             Printer\\032Web._http._tcp PTR printer\n\
             generic TYPE65280 \\# 3 abcdef\n\
             caa CAA 0 issue \"ca.example.net\"\n\
             tlsa._tcp TLSA 3 1 1 0123456789abcdef0123456789abcdef 0123456789abcdef0123456789abcdef\n\
             ssh SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             naptr NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .\n\
             svc SVCB 1 svc-target port=8443 alpn=h2\n\
             old DNAME new.example.net.\n\
             ptr PTR @\n",
        );
        assert_eq!(zone.serial(), 7);
        // min(SOA TTL 3600, MINIMUM 300)
        assert_eq!(zone.negative_ttl(), 300);
        assert_eq!(zone.record_count(), 15);
        let apex = zone.apex().unwrap();
        assert_eq!(zone.rrset(apex, rtype::SOA).unwrap().ttl, 3600);
        let ns1 = zone.find(&key("ns1.example.com.")).unwrap();
        assert_eq!(zone.rrset(ns1, rtype::A).unwrap().ttl, 60);
        let generic = zone.find(&key("generic.example.com.")).unwrap();
        let set = zone.rrset(generic, crate::wire::Rtype(65280)).unwrap();
        assert_eq!(set.rdatas().next().unwrap(), [0xab, 0xcd, 0xef]);
        let svc = zone.find(&key("svc.example.com.")).unwrap();
        let target = zone
            .rrset(svc, rtype::SVCB)
            .unwrap()
            .rdatas()
            .next()
            .unwrap();
        let target_len = name::wire_len(&target[2..]).unwrap();
        assert_eq!(
            name::to_text(&target[2..2 + target_len]),
            "svc-target.example.com."
        );
        // Parameters in key order: alpn (1) before port (3).
        assert_eq!(target[2 + target_len..][..2], [0, 1]);
        assert!(zone.find(&key("esc\\.aped.example.com.")).is_ok());
        assert!(
            zone.find(&key("Printer\\032Web._http._tcp.example.com."))
                .is_ok()
        );
    }

    #[test]
    fn origin_comes_from_flag_then_origin_directive_then_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named.zone");
        std::fs::write(&path, HEAD).unwrap();
        assert_eq!(load_zone(&path, None).unwrap().zone.origin_text(), "named.");
        let flag = name::from_text("flag.example").unwrap();
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
        let set = zone
            .rrset(zone.find(&key("www.example.com.")).unwrap(), rtype::A)
            .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.ttl, 60);
    }
}
