//! Log output. Everything goes to stderr; access lines (target `access`, one per request) are
//! gathered and written in batches at least every 100 ms, as nginx does with `access_log ...
//! buffer= flush=`, so that a busy server does not pay a write per request. Other lines are
//! written at once.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use foobar_edge::access::Entry;
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, fmt::writer::MakeWriterExt};

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// "text" (a line for a person) or "json" (one JSON object per line, for log tools).
    pub format: Format,
    /// Log one DNS query in this many (0: none), as `dns_query` lines.
    pub dns_queries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            format: Format::Text,
            dns_queries: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// How long an access line may wait in memory.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Past this the flusher is woken early. Each wake is a switch to the flusher's thread and back,
/// on the core the requests are served on: 64 KiB woke it every 3 ms at 80,000 requests a
/// second, and with a wake asked of the kernel for every line until it ran, the wakes cost more
/// than writing the lines.
const SOON: usize = 512 * 1024;
/// Past this the request's own thread writes (stderr is not keeping up).
const FULL: usize = 4 * 1024 * 1024;

/// Starts logging in `format` with the `RUST_LOG` filter (default `info`). Keep the guard:
/// dropping it writes what is still gathered.
pub fn init(format: Format) -> Flusher {
    let batch = Batch::default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = batch
        .clone()
        .with_filter(|meta| matches!(meta.target(), "access" | "dns_query"))
        .or_else(std::io::stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One object per line: timestamp, level, target and every field at the top level.
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    // The filter is fixed from here on: the edge asks it once, here, not per request.
    if tracing::enabled!(target: "access", tracing::Level::INFO) {
        foobar_edge::access::set_writer(AccessLines {
            shared: batch.0.clone(),
            format,
        });
    } else {
        foobar_edge::access::set_off();
    }
    let shared = batch.0.clone();
    let thread = std::thread::Builder::new()
        .name("log-flush".to_string())
        .spawn(move || flush_until_stopped(&shared))
        .ok();
    Flusher { batch, thread }
}

/// Writes what is gathered when dropped.
#[derive(Debug)]
pub struct Flusher {
    batch: Batch,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let shared = &self.batch.0;
        shared
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped = true;
        shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Without a flusher thread (it could not start) or after it stopped.
        write_out(
            &mut shared
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .bytes,
        );
    }
}

#[derive(Debug, Clone, Default)]
struct Batch(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    lines: Mutex<Lines>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Lines {
    bytes: Vec<u8>,
    stopped: bool,
    /// The flusher was woken for this batch (it is not woken again before it takes it).
    woken: bool,
}

fn flush_until_stopped(shared: &Shared) {
    // Two buffers take turns: the one just written out, emptied but with its room kept, is
    // where the next batch gathers, so lines are not copied again as a batch grows.
    let mut out = Vec::new();
    let mut lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let stopped = lines.stopped;
        std::mem::swap(&mut lines.bytes, &mut out);
        lines.woken = false;
        drop(lines);
        write_out(&mut out);
        // A burst's room is not kept for ever.
        out.shrink_to(4 * SOON);
        if stopped {
            return;
        }
        lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.bytes.len() < SOON && !lines.stopped {
            lines = shared
                .wake
                .wait_timeout(lines, FLUSH_EVERY)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn write_out(bytes: &mut Vec<u8>) {
    if !bytes.is_empty() {
        let _ = std::io::stderr().lock().write_all(bytes);
        bytes.clear();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batch {
    type Writer = &'a Shared;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

impl Shared {
    /// Gathers one whole line.
    fn push(&self, line: &[u8]) -> std::io::Result<()> {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.stopped || lines.bytes.len() >= FULL {
            write_out(&mut lines.bytes);
            return std::io::stderr().lock().write_all(line);
        }
        lines.bytes.extend_from_slice(line);
        if lines.bytes.len() >= SOON && !lines.woken {
            lines.woken = true;
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl Write for &Shared {
    /// Takes one formatted line (the formatter writes each event whole).
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.push(line)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Access lines, formatted here rather than by `tracing_subscriber`: the same text and JSON
/// as its formatters write (a `tracing` event's line, target `access`), made with no
/// `fmt::Arguments` on the common path, in a buffer each thread keeps.
struct AccessLines {
    shared: Arc<Shared>,
    format: Format,
}

impl foobar_edge::access::Writer for AccessLines {
    fn write(&self, entry: &Entry<'_>) {
        thread_local! {
            static LINE: std::cell::RefCell<(Vec<u8>, Clock)> =
                std::cell::RefCell::new((Vec::with_capacity(512), Clock::default()));
        }
        LINE.with_borrow_mut(|(line, clock)| {
            line.clear();
            match self.format {
                Format::Text => access_text(line, clock, entry),
                Format::Json => access_json(line, clock, entry),
            }
            let _ = self.shared.push(line);
        });
    }
}

/// `2026-12-05T10:56:57.978485Z  INFO access: method=GET path=/ ... request_id=...`, as
/// `tracing_subscriber`'s text format writes it (without colours).
fn access_text(line: &mut Vec<u8>, clock: &mut Clock, entry: &Entry<'_>) {
    clock.now(line);
    line.extend_from_slice(b"  INFO access: method=");
    line.extend_from_slice(entry.method.as_str().as_bytes());
    line.extend_from_slice(b" path=");
    line.extend_from_slice(entry.path.as_bytes());
    line.extend_from_slice(b" status=");
    number(line, entry.status);
    line.extend_from_slice(b" bytes=");
    number(line, entry.bytes);
    line.extend_from_slice(b" us=");
    number(line, entry.micros);
    line.extend_from_slice(b" protocol=");
    line.extend_from_slice(entry.protocol().as_bytes());
    if let Some(peer) = entry.peer {
        line.extend_from_slice(b" peer=");
        address(line, peer);
    }
    for (name, value) in [
        (&b" host="[..], entry.host),
        (b" user_agent=", entry.user_agent),
        (b" referer=", entry.referer),
    ] {
        if let Some(value) = value {
            line.extend_from_slice(name);
            quoted(line, value);
        }
    }
    line.extend_from_slice(b" request_id=");
    hex16(line, entry.request_id);
    line.push(b'\n');
}

/// One JSON object, as `tracing_subscriber`'s JSON format with flattened fields writes it.
fn access_json(line: &mut Vec<u8>, clock: &mut Clock, entry: &Entry<'_>) {
    line.extend_from_slice(b"{\"timestamp\":\"");
    clock.now(line);
    line.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
    json_string(line, entry.method.as_str());
    line.extend_from_slice(b",\"path\":");
    json_string(line, entry.path);
    line.extend_from_slice(b",\"status\":");
    number(line, entry.status);
    line.extend_from_slice(b",\"bytes\":");
    number(line, entry.bytes);
    line.extend_from_slice(b",\"us\":");
    number(line, entry.micros);
    line.extend_from_slice(b",\"protocol\":\"");
    line.extend_from_slice(entry.protocol().as_bytes());
    line.push(b'"');
    if let Some(peer) = entry.peer {
        line.extend_from_slice(b",\"peer\":\"");
        address(line, peer);
        line.push(b'"');
    }
    for (name, value) in [
        (&b",\"host\":"[..], entry.host),
        (b",\"user_agent\":", entry.user_agent),
        (b",\"referer\":", entry.referer),
    ] {
        if let Some(value) = value {
            line.extend_from_slice(name);
            json_string(line, &String::from_utf8_lossy(value));
        }
    }
    line.extend_from_slice(b",\"request_id\":\"");
    hex16(line, entry.request_id);
    line.extend_from_slice(b"\",\"target\":\"access\"}\n");
}

fn number(line: &mut Vec<u8>, n: impl itoa::Integer) {
    line.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn hex16(line: &mut Vec<u8>, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[((n >> ((15 - i) * 4)) & 0xf) as usize];
    }
    line.extend_from_slice(&text);
}

fn address(line: &mut Vec<u8>, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            foobar_edge::access::ipv4_text(*v4.ip(), |b| line.push(b));
            line.push(b':');
            number(line, v4.port());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
}

/// A header value as `{:?}` writes it as a string: quoted, with its quotes, backslashes and
/// anything not plain printable ASCII escaped (and what is not UTF-8 replaced).
fn quoted(line: &mut Vec<u8>, value: &[u8]) {
    // Every byte tested, with no early exit, so that the test runs many bytes at a time (an
    // early exit went byte by byte: 9 instructions a byte).
    let plain = value.iter().fold(true, |plain, &b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        line.push(b'"');
        line.extend_from_slice(value);
        line.push(b'"');
    } else {
        let _ = write!(line, "{:?}", String::from_utf8_lossy(value));
    }
}

fn json_string(line: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *line, value);
}

/// The time as `tracing_subscriber` writes it (RFC 3339, microseconds, UTC), with the part down
/// to the second made once a second.
#[derive(Default)]
struct Clock {
    second: u64,
    /// `2026-12-05T10:56:57.`
    prefix: Vec<u8>,
}

impl Clock {
    fn now(&mut self, line: &mut Vec<u8>) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if self.prefix.is_empty() || since.as_secs() != self.second {
            self.second = since.as_secs();
            self.prefix.clear();
            let at = i64::try_from(self.second)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let _ = write!(
                self.prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
        }
        line.extend_from_slice(&self.prefix);
        let micros = since.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut buffer = itoa::Buffer::new();
        let formatted = buffer.format(micros).as_bytes();
        digits[6 - formatted.len()..].copy_from_slice(formatted);
        line.extend_from_slice(&digits);
        line.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Captures what a `tracing_subscriber` formatter writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entries() -> Vec<Entry<'static>> {
        let get = Box::leak(Box::new(http::Method::GET));
        let base = Entry {
            method: get,
            path: "/posts/1",
            status: 200,
            bytes: 2048,
            micros: 913,
            version: http::Version::HTTP_2,
            peer: Some("192.0.2.7:51234".parse().unwrap()),
            host: Some(b"www.foobar.com"),
            user_agent: Some(b"curl/8.5.0"),
            referer: None,
            request_id: 0x00c2_64e7_a341_e8a0,
        };
        vec![
            base,
            Entry {
                peer: Some("[2001:db8::1]:443".parse().unwrap()),
                host: None,
                user_agent: Some("a \"quoted\" \\ agent \u{7f} é".as_bytes()),
                referer: Some(b"https://example.org/from"),
                version: http::Version::HTTP_11,
                status: 404,
                ..base
            },
            Entry {
                peer: None,
                version: http::Version::HTTP_3,
                ..base
            },
            // Header values need not be UTF-8 (obs-text); such bytes are replaced.
            Entry {
                host: Some(b"caf\xe9.example"),
                user_agent: Some(b"agent \xff\xfe/1"),
                referer: Some(b"https://example.org/\x80"),
                ..base
            },
        ]
    }

    /// What `tracing_subscriber` writes for the same entry, without its timestamp.
    fn by_tracing(entry: &Entry<'_>, format: Format) -> String {
        let capture = Capture::default();
        let out = capture.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false);
        let dispatch = match format {
            Format::Text => tracing::Dispatch::new(builder.without_time().finish()),
            Format::Json => tracing::Dispatch::new(
                builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .finish(),
            ),
        };
        tracing::dispatcher::with_default(&dispatch, || foobar_edge::access::event(entry));
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn access_lines_are_what_tracing_subscriber_would_write() {
        for entry in entries() {
            let mut line = Vec::new();
            access_text(&mut line, &mut Clock::default(), &entry);
            let line = String::from_utf8(line).unwrap();
            // `2026-12-05T10:56:57.978485Z`, a space, then what tracing writes after it.
            let (time, rest) = line.split_at(27);
            let rest = rest.strip_prefix(' ').unwrap();
            assert!(time.ends_with('Z'), "{line}");
            assert!(
                time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                    .is_ok(),
                "{time}"
            );
            assert_eq!(rest, by_tracing(&entry, Format::Text));

            let mut line = Vec::new();
            access_json(&mut line, &mut Clock::default(), &entry);
            let mut ours: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let mut theirs: serde_json::Value =
                serde_json::from_str(&by_tracing(&entry, Format::Json)).unwrap();
            assert!(ours["timestamp"].as_str().unwrap().ends_with('Z'));
            ours["timestamp"] = serde_json::Value::Null;
            theirs["timestamp"] = serde_json::Value::Null;
            assert_eq!(ours, theirs);
        }
    }
}
