//! A raw HTTP/2 client: frames written by hand, so that tests can send what no well-behaved
//! client would, and read exactly what the server answers (RFC 9113).
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

use super::web;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const HAS_PRIORITY: u8 = 0x20;
}

/// Error codes.
pub mod code {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const STREAM_CLOSED: u32 = 0x5;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const COMPRESSION_ERROR: u32 = 0x9;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// What the server did after a test's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// GOAWAY with this error code.
    GoAway(u32),
    /// RST_STREAM on this stream with this error code.
    Reset(u32, u32),
    /// The connection ended without a GOAWAY.
    Closed,
    /// Nothing of the kind within the wait.
    Nothing,
}

pub struct RawH2 {
    io: TlsStream<TcpStream>,
    buffer: Vec<u8>,
    /// Frames read while looking for something else.
    pub seen: Vec<Frame>,
}

impl RawH2 {
    /// A TLS connection with ALPN h2, nothing sent yet.
    pub async fn open(addr: SocketAddr, pem: &[u8]) -> RawH2 {
        let io = web::connect(addr, "www.foobar.com", web::tls_config(pem, &[b"h2"]))
            .await
            .expect("TLS with ALPN h2");
        RawH2 {
            io,
            buffer: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The preface and an empty SETTINGS, the server's SETTINGS read and acknowledged.
    pub async fn connect(addr: SocketAddr, pem: &[u8]) -> RawH2 {
        let mut h2 = RawH2::open(addr, pem).await;
        h2.write(PREFACE).await;
        h2.send(kind::SETTINGS, 0, 0, &[]).await;
        loop {
            let frame = h2
                .read(Duration::from_secs(5))
                .await
                .expect("server SETTINGS");
            if frame.kind == kind::SETTINGS && frame.flags & flag::ACK == 0 {
                h2.send(kind::SETTINGS, flag::ACK, 0, &[]).await;
                return h2;
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.write(&frame(kind, flags, stream, payload)).await;
    }

    /// The next frame, or `None` at the end of the connection or after `wait`.
    pub async fn read(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buffer.len() >= 9 {
                let len = usize::from(self.buffer[0]) << 16
                    | usize::from(self.buffer[1]) << 8
                    | usize::from(self.buffer[2]);
                if self.buffer.len() >= 9 + len {
                    let head: Vec<u8> = self.buffer.drain(..9 + len).collect();
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7FFF_FFFF;
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream,
                        payload: head[9..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffer.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until a GOAWAY, a RST_STREAM, or the end of the connection (at most `wait`).
    pub async fn outcome(&mut self, wait: Duration) -> Seen {
        self.outcome_for(None, wait).await
    }

    /// As `outcome`, passing over resets of other streams than `stream`.
    pub async fn outcome_on(&mut self, stream: u32, wait: Duration) -> Seen {
        self.outcome_for(Some(stream), wait).await
    }

    async fn outcome_for(&mut self, only: Option<u32>, wait: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.read(left).await else {
                return if tokio::time::Instant::now() >= deadline {
                    Seen::Nothing
                } else {
                    Seen::Closed
                };
            };
            match frame.kind {
                kind::GOAWAY if frame.payload.len() >= 8 => {
                    let code = u32::from_be_bytes([
                        frame.payload[4],
                        frame.payload[5],
                        frame.payload[6],
                        frame.payload[7],
                    ]);
                    return Seen::GoAway(code);
                }
                kind::RST_STREAM if frame.payload.len() == 4 => {
                    let code = u32::from_be_bytes([
                        frame.payload[0],
                        frame.payload[1],
                        frame.payload[2],
                        frame.payload[3],
                    ]);
                    if only.is_none_or(|stream| stream == frame.stream) {
                        return Seen::Reset(frame.stream, code);
                    }
                    self.seen.push(frame);
                }
                _ => self.seen.push(frame),
            }
        }
    }

    /// Reads until the server ends the connection (at most `wait`): any frames before the end
    /// are fine but a GOAWAY with an error code, which is returned, as is `Seen::Nothing` when
    /// the connection stayed open.
    pub async fn closes(&mut self, wait: Duration) -> Result<(), Seen> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(frame) = self.read(left).await else {
                return if tokio::time::Instant::now() >= deadline {
                    Err(Seen::Nothing)
                } else {
                    Ok(())
                };
            };
            if frame.kind == kind::GOAWAY && frame.payload.len() >= 8 {
                let code = u32::from_be_bytes([
                    frame.payload[4],
                    frame.payload[5],
                    frame.payload[6],
                    frame.payload[7],
                ]);
                if code != 0 {
                    return Err(Seen::GoAway(code));
                }
            }
            self.seen.push(frame);
        }
    }

    /// Sends a PING and waits for its ACK: the server is alive and ignored what came before.
    /// Returns what was seen instead when no ACK came.
    pub async fn alive(&mut self) -> Result<(), Seen> {
        let payload = *b"h2-alive";
        self.send(kind::PING, 0, 0, &payload).await;
        loop {
            let Some(frame) = self.read(Duration::from_secs(3)).await else {
                return Err(Seen::Closed);
            };
            if frame.kind == kind::PING && frame.flags & flag::ACK != 0 && frame.payload == payload
            {
                return Ok(());
            }
            if matches!(frame.kind, kind::GOAWAY | kind::RST_STREAM) {
                self.seen.push(frame.clone());
                return Err(Seen::GoAway(0xFFFF_FFFF));
            }
            self.seen.push(frame);
        }
    }

    /// Reads until the response HEADERS on `stream`; `false` if none came.
    pub async fn response(&mut self, stream: u32) -> bool {
        loop {
            let Some(frame) = self.read(Duration::from_secs(3)).await else {
                return false;
            };
            if frame.kind == kind::HEADERS && frame.stream == stream {
                return true;
            }
            self.seen.push(frame);
        }
    }
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix, the prefix's upper bits set to `first`.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of literal fields without indexing (RFC 7541 section 6.2.2), in order.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The fields of a GET of `path` on www.foobar.com.
pub fn get_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".to_string()),
        (":scheme", "https".to_string()),
        (":path", path.to_string()),
        (":authority", "www.foobar.com".to_string()),
    ]
}

/// The header block of a GET of `path`.
pub fn get(path: &str) -> Vec<u8> {
    let fields = get_fields(path);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    block(&fields)
}

/// The header block of a POST to `path`, with extra fields.
pub fn post(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "www.foobar.com"),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}
