//! FastCGI records (the FastCGI 1.0 specification, section 3): requests written into a buffer,
//! records read out of bytes as they arrive, "need more" a normal outcome. Pure: no I/O.

use bytes::{Buf, Bytes, BytesMut};

const VERSION: u8 = 1;
const HEADER: usize = 8;
/// The most content one record carries.
const MAX_CONTENT: usize = 65_535;

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const GET_VALUES: u8 = 9;
const GET_VALUES_RESULT: u8 = 10;

/// The responder role, and "keep the connection open after this request".
const RESPONDER: u16 = 1;
const KEEP_CONN: u8 = 1;

/// What an application sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Response bytes: CGI headers, then the body.
    Stdout(Bytes),
    /// Error output (PHP's warnings), for the log.
    Stderr(Bytes),
    /// The request is over. A protocol status other than 0 means it was refused (overloaded,
    /// no multiplexing, unknown role).
    End {
        app_status: u32,
        protocol_status: u8,
    },
    /// The answer to `get_values`.
    Values(Vec<(String, String)>),
    /// A record type this client does not use (skipped).
    Other(u8),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("FastCGI version {0} (only 1 is spoken)")]
    Version(u8),
}

fn header(out: &mut Vec<u8>, kind: u8, id: u16, content: usize) -> usize {
    // Records are padded to a multiple of eight bytes, as the specification recommends.
    let padding = (8 - content % 8) % 8;
    let [id_hi, id_lo] = id.to_be_bytes();
    let [len_hi, len_lo] = (content as u16).to_be_bytes();
    out.extend_from_slice(&[
        VERSION,
        kind,
        id_hi,
        id_lo,
        len_hi,
        len_lo,
        padding as u8,
        0,
    ]);
    padding
}

fn record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    let padding = header(out, kind, id, content.len());
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
}

/// A stream of records of `kind` carrying `content`, split at the record size, and the empty
/// record that ends the stream.
fn stream(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    for chunk in content.chunks(MAX_CONTENT) {
        record(out, kind, id, chunk);
    }
    record(out, kind, id, &[]);
}

/// A name-value pair's length: one byte below 128, else four with the top bit set.
fn length(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

fn pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut content = Vec::new();
    for (name, value) in pairs {
        length(&mut content, name.len());
        length(&mut content, value.len());
        content.extend_from_slice(name);
        content.extend_from_slice(value);
    }
    content
}

/// The start of request `id`: BEGIN_REQUEST (responder, keep the connection), its parameters,
/// and the end of the parameters.
pub fn begin<'a>(
    out: &mut Vec<u8>,
    id: u16,
    params: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    let [role_hi, role_lo] = RESPONDER.to_be_bytes();
    record(
        out,
        BEGIN_REQUEST,
        id,
        &[role_hi, role_lo, KEEP_CONN, 0, 0, 0, 0, 0],
    );
    stream(out, PARAMS, id, &pairs(params));
}

/// Request body bytes (at most a record's worth per call is best; longer is split).
pub fn stdin(out: &mut Vec<u8>, id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT) {
        record(out, STDIN, id, chunk);
    }
}

/// The end of the request body.
pub fn stdin_end(out: &mut Vec<u8>, id: u16) {
    record(out, STDIN, id, &[]);
}

/// A management query for `names` (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS).
pub fn get_values(out: &mut Vec<u8>, names: &[&str]) {
    let content = pairs(names.iter().map(|n| (n.as_bytes(), &b""[..])));
    record(out, GET_VALUES, 0, &content);
}

/// Reads records out of the bytes received so far.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole record and its request id, or `None` until more bytes arrive.
    pub fn next(&mut self) -> Result<Option<(u16, Record)>, RecordError> {
        if self.buffer.len() < HEADER {
            return Ok(None);
        }
        let h = &self.buffer[..HEADER];
        if h[0] != VERSION {
            return Err(RecordError::Version(h[0]));
        }
        let kind = h[1];
        let id = u16::from_be_bytes([h[2], h[3]]);
        let content = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let padding = usize::from(h[6]);
        if self.buffer.len() < HEADER + content + padding {
            return Ok(None);
        }
        self.buffer.advance(HEADER);
        let body = self.buffer.split_to(content).freeze();
        self.buffer.advance(padding);
        let record = match kind {
            STDOUT => Record::Stdout(body),
            STDERR => Record::Stderr(body),
            END_REQUEST if body.len() >= 5 => Record::End {
                app_status: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                protocol_status: body[4],
            },
            GET_VALUES_RESULT => Record::Values(read_pairs(&body)),
            other => Record::Other(other),
        };
        Ok(Some((id, record)))
    }
}

/// Name-value pairs; a truncated one ends the list.
fn read_pairs(mut bytes: &[u8]) -> Vec<(String, String)> {
    fn length(bytes: &mut &[u8]) -> Option<usize> {
        let first = *bytes.first()?;
        if first < 128 {
            *bytes = &bytes[1..];
            return Some(usize::from(first));
        }
        let four: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        *bytes = &bytes[4..];
        Some((u32::from_be_bytes(four) & 0x7fff_ffff) as usize)
    }
    let mut out = Vec::new();
    while let (Some(name), Some(value)) = (length(&mut bytes), length(&mut bytes)) {
        let (Some(name_bytes), Some(value_bytes)) =
            (bytes.get(..name), bytes.get(name..name + value))
        else {
            break;
        };
        out.push((
            String::from_utf8_lossy(name_bytes).into_owned(),
            String::from_utf8_lossy(value_bytes).into_owned(),
        ));
        bytes = &bytes[name + value..];
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_request_is_begin_params_and_their_end_padded_to_eight() {
        let mut out = Vec::new();
        begin(&mut out, 1, [(&b"SCRIPT_NAME"[..], &b"/index.php"[..])]);
        // BEGIN_REQUEST: header and 8 bytes of body.
        assert_eq!(&out[..8], &[1, 1, 0, 1, 0, 8, 0, 0]);
        assert_eq!(&out[8..16], &[0, 1, 1, 0, 0, 0, 0, 0]);
        // PARAMS: 2 length bytes + 11 + 10 = 23 bytes, 1 of padding.
        assert_eq!(&out[16..24], &[1, 4, 0, 1, 0, 23, 1, 0]);
        assert_eq!(out[24], 11);
        assert_eq!(out[25], 10);
        assert_eq!(&out[26..37], b"SCRIPT_NAME");
        // The empty PARAMS that ends them.
        assert_eq!(&out[48..56], &[1, 4, 0, 1, 0, 0, 0, 0]);
        assert_eq!(out.len(), 56);
        assert_eq!(out.len() % 8, 0);
    }

    #[test]
    fn long_values_take_four_length_bytes_and_long_streams_several_records() {
        let value = vec![b'v'; 300];
        let content = pairs([(&b"N"[..], &value[..])]);
        assert_eq!(&content[..5], &[1, 0x80, 0, 1, 44]);
        let mut out = Vec::new();
        stdin(&mut out, 7, &vec![0u8; 70_000]);
        stdin_end(&mut out, 7);
        let mut decoder = Decoder::default();
        decoder.push(&out);
        // Not records this client reads, but they parse, whole, with their ids.
        let mut seen = 0;
        while let Some((id, record)) = decoder.next().unwrap() {
            assert_eq!(id, 7);
            assert_eq!(record, Record::Other(STDIN));
            seen += 1;
        }
        assert_eq!(seen, 3);
    }

    /// Arbitrary bytes from PHP-FPM (or whatever answers on its socket) never panic the
    /// decoder, and come out as the same records however the reads cut them.
    #[test]
    fn any_bytes_decode_the_same_whatever_the_reads() {
        let mut next = crate::test_random(0x9E37_79B9_7F4A_7C15u64);
        for _ in 0..2000 {
            let len = (next() % 600) as usize;
            let mut wire: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly well-formed headers, so that the bodies are reached.
            if let Some(first) = wire.first_mut() {
                *first = if next().is_multiple_of(8) {
                    next() as u8
                } else {
                    VERSION
                };
            }
            let decode = |step: usize| {
                let mut decoder = Decoder::default();
                let mut out = Vec::new();
                for piece in wire.chunks(step.max(1)) {
                    decoder.push(piece);
                    loop {
                        match decoder.next() {
                            Ok(Some(record)) => out.push(Ok(record)),
                            Ok(None) => break,
                            Err(e) => {
                                out.push(Err(e.to_string()));
                                return out;
                            }
                        }
                    }
                }
                out
            };
            let whole = decode(wire.len());
            let step = (next() % 17) as usize + 1;
            assert_eq!(decode(step), whole, "{wire:?} in pieces of {step}");
        }
    }

    #[test]
    fn records_come_out_whatever_the_reads() {
        let mut wire = Vec::new();
        record(&mut wire, STDOUT, 1, b"Status: 404\r\n\r\nnope");
        record(&mut wire, STDERR, 1, b"PHP Notice: x");
        record(&mut wire, END_REQUEST, 1, &[0, 0, 0, 3, 0, 0, 0, 0]);
        let mut values = Vec::new();
        record(
            &mut values,
            GET_VALUES_RESULT,
            0,
            &pairs([(&b"FCGI_MPXS_CONNS"[..], &b"0"[..])]),
        );
        wire.extend(values);
        for step in [1, 3, 8, wire.len()] {
            let mut decoder = Decoder::default();
            let mut records = Vec::new();
            for piece in wire.chunks(step) {
                decoder.push(piece);
                while let Some(next) = decoder.next().unwrap() {
                    records.push(next);
                }
            }
            assert_eq!(
                records,
                [
                    (
                        1,
                        Record::Stdout(Bytes::from_static(b"Status: 404\r\n\r\nnope"))
                    ),
                    (1, Record::Stderr(Bytes::from_static(b"PHP Notice: x"))),
                    (
                        1,
                        Record::End {
                            app_status: 3,
                            protocol_status: 0
                        }
                    ),
                    (
                        0,
                        Record::Values(vec![("FCGI_MPXS_CONNS".to_string(), "0".to_string())])
                    ),
                ],
                "reads of {step}"
            );
        }
        let mut bad = Decoder::default();
        bad.push(&[2, 6, 0, 1, 0, 0, 0, 0]);
        assert_eq!(bad.next(), Err(RecordError::Version(2)));
    }
}
