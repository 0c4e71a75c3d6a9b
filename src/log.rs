//! Log output. Everything goes to stderr; access lines (target `access`, one per request) are
//! gathered and written in batches at least every 100 ms, as nginx does with `access_log ...
//! buffer= flush=`, so that a busy server does not pay a write per request. Other lines are
//! written at once.

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

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
/// Past this the flusher is woken early.
const SOON: usize = 64 * 1024;
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
}

fn flush_until_stopped(shared: &Shared) {
    let mut lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let stopped = lines.stopped;
        let mut out = std::mem::take(&mut lines.bytes);
        drop(lines);
        write_out(&mut out);
        if stopped {
            return;
        }
        lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
        // Reuse the allocation for the next batch.
        if lines.bytes.is_empty() {
            lines.bytes = out;
        }
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

impl Write for &Shared {
    /// Takes one formatted line (the formatter writes each event whole).
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.stopped || lines.bytes.len() >= FULL {
            write_out(&mut lines.bytes);
            std::io::stderr().lock().write_all(line)?;
            return Ok(line.len());
        }
        lines.bytes.extend_from_slice(line);
        if lines.bytes.len() >= SOON {
            self.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
