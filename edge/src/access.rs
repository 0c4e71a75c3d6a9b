//! Access lines, one per request. The edge hands each as a typed [`Entry`] to the writer the
//! binary installs ([`set_writer`]), which formats it straight into bytes: a busy server writes
//! one per request, and going through `tracing`'s fields (each a `fmt::Arguments`, then the
//! formatter's own pass) cost a sixth of an HTTP/2 request. Without a writer installed, the
//! line is a `tracing` event with the same fields (target `access`). Whether lines are written
//! at all is `tracing`'s filter (`RUST_LOG=info,access=off`): asked once by the binary when it
//! installs its writer ([`set_writer`] or [`set_off`]), as the filter does not change while the
//! process runs (asking it per request cost 220 instructions of a 34,000-instruction HTTP/1.1
//! request), and asked per request when neither was called.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::OnceLock,
};

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
    /// The `Host` (or `:authority`). This and the next two are the bytes the client sent, which
    /// need not be text: a writer escapes them (and replaces what is not UTF-8).
    pub host: Option<&'a [u8]>,
    /// The `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// The `Referer`.
    pub referer: Option<&'a [u8]>,
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

/// An IPv4 address as `Display` writes it, a byte at a time to `push`, without the formatting
/// machinery: every access line writes its client's address, and every proxied request its
/// client's twice (`X-Forwarded-For`, `Forwarded`).
pub fn ipv4_text(address: Ipv4Addr, mut push: impl FnMut(u8)) {
    for (i, octet) in address.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
}

/// Where access lines go.
pub trait Writer: Send + Sync + 'static {
    /// Writes one line, soon (lines may be batched).
    fn write(&self, entry: &Entry<'_>);
}

/// The process's writer, or `None` when access lines are off; unset, `tracing` decides.
static WRITER: OnceLock<Option<Box<dyn Writer>>> = OnceLock::new();

/// Installs the process's access line writer; `false` if one was installed (or lines were
/// switched off) already.
pub fn set_writer(writer: impl Writer) -> bool {
    WRITER.set(Some(Box::new(writer))).is_ok()
}

/// Switches access lines off for the life of the process; `false` if a writer was installed
/// (or lines were switched off) already.
pub fn set_off() -> bool {
    WRITER.set(None).is_ok()
}

/// Whether access lines are written: decided by [`set_writer`] or [`set_off`], else by the
/// `tracing` filter (lets target `access` through).
pub(crate) fn enabled() -> bool {
    match WRITER.get() {
        Some(writer) => writer.is_some(),
        None => tracing::enabled!(target: "access", tracing::Level::INFO),
    }
}

pub(crate) fn write(entry: &Entry<'_>) {
    match WRITER.get() {
        Some(Some(writer)) => writer.write(entry),
        Some(None) => {}
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
        host = entry.host.map(String::from_utf8_lossy).as_deref(),
        user_agent = entry.user_agent.map(String::from_utf8_lossy).as_deref(),
        referer = entry.referer.map(String::from_utf8_lossy).as_deref(),
        request_id = %format_args!("{:016x}", entry.request_id),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        for text in ["0.0.0.0", "9.10.99.100", "192.0.2.7", "255.255.255.255"] {
            let address: Ipv4Addr = text.parse().unwrap();
            let mut out = Vec::new();
            ipv4_text(address, |b| out.push(b));
            assert_eq!(out, text.as_bytes());
        }
    }
}
