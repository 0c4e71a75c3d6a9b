//! Access lines, one per request. The edge hands each as a typed [`Entry`] to the writer the
//! binary installs ([`set_writer`]), which formats it straight into bytes: a busy server writes
//! one per request, and going through `tracing`'s fields (each a `fmt::Arguments`, then the
//! formatter's own pass) cost a sixth of an HTTP/2 request. Without a writer installed, the
//! line is a `tracing` event with the same fields (target `access`). Whether lines are written
//! at all is still `tracing`'s filter (`RUST_LOG=info,access=off`), asked by [`enabled`].

use std::{net::SocketAddr, sync::OnceLock};

use http::{Method, Version};

/// One request, as its access line shows it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// Its path and query.
    pub path: &'a str,
    /// The response's status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// From the request's arrival to the end of its response.
    pub micros: u64,
    /// The HTTP version it came over.
    pub version: Version,
    /// The client's address (from a trusted proxy's header where configured).
    pub peer: Option<SocketAddr>,
    /// The `Host` (or `:authority`).
    pub host: Option<&'a str>,
    /// The `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// The `Referer`.
    pub referer: Option<&'a str>,
    /// Written as 16 hex digits.
    pub request_id: u64,
}

impl Entry<'_> {
    /// The protocol as `http::Version` prints it ("HTTP/2.0").
    pub fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_11 => "HTTP/1.1",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/?",
        }
    }
}

/// Where access lines go.
pub trait Writer: Send + Sync + 'static {
    /// Writes one line, soon (lines may be batched).
    fn write(&self, entry: &Entry<'_>);
}

static WRITER: OnceLock<Box<dyn Writer>> = OnceLock::new();

/// Installs the process's access line writer; `false` if one was installed already.
pub fn set_writer(writer: impl Writer) -> bool {
    WRITER.set(Box::new(writer)).is_ok()
}

/// Whether access lines are written (the `tracing` filter lets target `access` through).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

pub(crate) fn write(entry: &Entry<'_>) {
    match WRITER.get() {
        Some(writer) => writer.write(entry),
        None => event(entry),
    }
}

/// The line as a `tracing` event: what is written when no writer is installed, and what a
/// writer's format is checked against.
pub fn event(entry: &Entry<'_>) {
    tracing::info!(
        target: "access",
        method = %entry.method,
        path = %entry.path,
        status = entry.status,
        bytes = entry.bytes,
        us = entry.micros,
        protocol = %entry.protocol(),
        peer = entry.peer.map(tracing::field::display),
        host = entry.host,
        user_agent = entry.user_agent,
        referer = entry.referer,
        request_id = %format_args!("{:016x}", entry.request_id),
    );
}
