//! HTTP/2 conformance (RFC 9113, RFC 7541) through a raw frame client: the cases of h2spec,
//! by its section numbers, each on a fresh connection to the real binary. A stream error may
//! be answered as a RST_STREAM or, as h2spec also accepts, a GOAWAY with the same code; a
//! connection error as a GOAWAY with the right code or a closed connection. Nothing, or
//! NO_ERROR, where an error is due fails the case.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use support::{
    Foobar,
    h2raw::{self, RawH2, Seen, block, code::*, flag::*, frame, get, kind::*, post},
};

/// What a case sends: bytes, or a wait for the response on a stream to end.
enum Step {
    Send(Vec<u8>),
    /// Read until the server ends the response on this stream (END_STREAM).
    Finished(u32),
}

/// What the server must do.
enum Expect {
    /// A connection error with one of these codes (GOAWAY, or the connection closed).
    Conn(&'static [u32]),
    /// A GOAWAY with one of these codes, nothing less.
    GoAway(&'static [u32]),
    /// A stream error on this stream with one of these codes (RST_STREAM, or as a
    /// connection error).
    Stream(u32, &'static [u32]),
    /// Nothing wrong: the connection answers a PING.
    Alive,
    /// The server ends the connection (after a GOAWAY NO_ERROR or none), as h2spec's
    /// `VerifyConnectionClose` wants.
    Closed,
    /// A response on this stream.
    Response(u32),
    /// A DATA frame of this length on this stream.
    Data(u32, usize),
    /// A SETTINGS frame with ACK.
    SettingsAck,
}

struct Case {
    id: &'static str,
    /// Whether the preface and SETTINGS exchange comes first.
    preface: bool,
    steps: Vec<Step>,
    expect: Expect,
}

fn case(id: &'static str, steps: Vec<Step>, expect: Expect) -> Case {
    Case {
        id,
        preface: true,
        steps,
        expect,
    }
}

fn send(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Step {
    Step::Send(frame(kind, flags, stream, payload))
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(id, value)| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&value.to_be_bytes());
            p
        })
        .collect()
}

/// A complete GET of `/` on `stream`, ending the stream.
fn get_request(stream: u32) -> Step {
    send(HEADERS, END_HEADERS | END_STREAM, stream, &get("/"))
}

/// POST headers on `stream` that leave it open for a body.
/// A POST whose body stays open. Its route reads the whole body before it answers (a JSON
/// comment), so the stream is still open when the case's next frames arrive; a route that
/// answered at once would end the stream first (RST_STREAM NO_ERROR) and race the case.
fn post_open(stream: u32) -> Step {
    send(
        HEADERS,
        END_HEADERS,
        stream,
        &post(
            "/api/posts/1/comments",
            &[("content-type", "application/json")],
        ),
    )
}

fn cases() -> Vec<Case> {
    let big_header = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        (":authority", "www.foobar.com"),
        ("x-fill", &"a".repeat(16_400)),
    ]);
    let fields_with = |extra: &[(&str, &str)]| {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "www.foobar.com"),
        ];
        fields.extend_from_slice(extra);
        block(&fields)
    };
    let with_extra = |extra: &[(&str, &str)]| fields_with(extra);
    let request_without = |missing: &str| {
        let all = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "www.foobar.com"),
        ];
        let fields: Vec<(&str, &str)> = all.into_iter().filter(|(n, _)| *n != missing).collect();
        block(&fields)
    };
    let (get_block, half) = {
        let block = get("/");
        let half = block.len() / 2;
        (block, half)
    };
    // GETs of a large file stay open: the default connection window (64 KiB) lets only the
    // first response start, and this client never reads or raises it.
    let mut concurrency = Vec::new();
    for i in 0..101u32 {
        concurrency.push(send(
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * i,
            &get("/large.bin"),
        ));
    }
    let uppercase = with_extra(&[("X-UPPER", "1")]);
    let unknown_pseudo = with_extra(&[(":unknown", "1")]);
    let status_pseudo = with_extra(&[(":status", "200")]);
    let pseudo_after = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        ("x-regular", "1"),
        (":path", "/"),
        (":authority", "www.foobar.com"),
    ]);
    let connection_header = with_extra(&[("connection", "keep-alive")]);
    let te = with_extra(&[("te", "gzip")]);
    let empty_path = block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", ""),
        (":authority", "www.foobar.com"),
    ]);
    let duplicate = |name: &'static str, value: &'static str| {
        block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "www.foobar.com"),
            (name, value),
        ])
    };
    let mut padded_data = vec![10u8];
    padded_data.extend_from_slice(b"abcd");
    let mut padded_headers = vec![200u8];
    padded_headers.extend_from_slice(&get("/"));
    let mut self_dependent = vec![0, 0, 0, 1, 16];
    self_dependent.extend_from_slice(&get("/"));

    vec![
        case("3.5/1", vec![], Expect::Alive),
        Case {
            id: "3.5/2",
            preface: false,
            steps: vec![Step::Send(b"INVALID CONNECTION PREFACE\r\n\r\n".to_vec())],
            expect: Expect::GoAway(&[PROTOCOL_ERROR]),
        },
        case("4.1/1", vec![send(0x16, 0, 0, b"unknown")], Expect::Alive),
        case(
            "4.1/2",
            vec![send(PING, 0x16, 0, b"flagged!")],
            Expect::Alive,
        ),
        case(
            "4.1/3",
            vec![Step::Send({
                let mut f = frame(PING, 0, 0, b"reserved");
                f[5] |= 0x80;
                f
            })],
            Expect::Alive,
        ),
        case(
            "4.2/1",
            vec![post_open(1), send(DATA, END_STREAM, 1, &[b'x'; 16384])],
            Expect::Response(1),
        ),
        case(
            "4.2/2",
            vec![post_open(1), send(DATA, END_STREAM, 1, &[b'x'; 16385])],
            Expect::Stream(1, &[FRAME_SIZE_ERROR]),
        ),
        case(
            "4.2/3",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &big_header)],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "4.3/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &[0x80])],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "4.3/2",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16]),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "4.3/3",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(HEADERS, END_STREAM | END_HEADERS, 3, &get_block),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1/1",
            vec![send(DATA, 0, 1, b"test")],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1/2",
            vec![send(RST_STREAM, 0, 1, &[0, 0, 0, 8])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1/3",
            vec![send(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 100])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1/4",
            vec![send(CONTINUATION, END_HEADERS, 1, &get_block)],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1/5",
            vec![get_request(1), send(DATA, 0, 1, b"test")],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/6",
            vec![get_request(1), send(HEADERS, END_HEADERS, 1, &get_block)],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/7",
            vec![
                get_request(1),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Stream(1, &[STREAM_CLOSED, PROTOCOL_ERROR]),
        ),
        case(
            "5.1/8",
            vec![
                post_open(1),
                send(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                send(DATA, 0, 1, b"test"),
            ],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/9",
            vec![
                post_open(1),
                send(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                send(HEADERS, END_HEADERS, 1, &get_block),
            ],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/10",
            vec![
                post_open(1),
                send(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Stream(1, &[STREAM_CLOSED, PROTOCOL_ERROR]),
        ),
        case(
            "5.1/11",
            vec![get_request(1), Step::Finished(1), send(DATA, 0, 1, b"test")],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/12",
            vec![
                get_request(1),
                Step::Finished(1),
                send(HEADERS, END_HEADERS, 1, &get_block),
            ],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "5.1/13",
            vec![
                get_request(1),
                Step::Finished(1),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Stream(1, &[STREAM_CLOSED, PROTOCOL_ERROR]),
        ),
        case(
            "5.1.1/1",
            vec![get_request(2)],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1.1/2",
            vec![get_request(5), get_request(3)],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "5.1.2/1",
            concurrency,
            Expect::Stream(201, &[PROTOCOL_ERROR, REFUSED_STREAM]),
        ),
        case(
            "5.3.1/1",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM | HAS_PRIORITY,
                1,
                &self_dependent,
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "5.3.1/2",
            vec![send(PRIORITY, 0, 1, &[0, 0, 0, 1, 16])],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "5.4.1/1",
            vec![send(PING, 0, 0, &[0; 6])],
            Expect::GoAway(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "5.4.1/2",
            vec![send(PING, 0, 3, &[0; 8])],
            Expect::GoAway(&[PROTOCOL_ERROR]),
        ),
        case("5.5/1", vec![send(0x16, 0, 0, b"ext")], Expect::Alive),
        case(
            "5.5/2",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(0x16, 0, 1, b"ext"),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.1/1",
            vec![send(DATA, 0, 0, b"test")],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.1/2",
            vec![get_request(1), send(DATA, END_STREAM, 1, b"test")],
            Expect::Stream(1, &[STREAM_CLOSED]),
        ),
        case(
            "6.1/3",
            vec![post_open(1), send(DATA, PADDED, 1, &padded_data)],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.2/1",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16]),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.2/2",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(HEADERS, END_STREAM | END_HEADERS, 3, &get_block),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.2/3",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 0, &get_block)],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.2/4",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM | PADDED,
                1,
                &padded_headers,
            )],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.3/1",
            vec![send(PRIORITY, 0, 0, &[0, 0, 0, 1, 16])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.3/2",
            vec![post_open(1), send(PRIORITY, 0, 1, &[0, 0, 0, 3])],
            Expect::Stream(1, &[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.4/1",
            vec![send(RST_STREAM, 0, 0, &[0, 0, 0, 8])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.4/2",
            vec![send(RST_STREAM, 0, 1, &[0, 0, 0, 8])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.4/3",
            vec![post_open(1), send(RST_STREAM, 0, 1, &[0, 0, 0])],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.5/1",
            vec![send(SETTINGS, ACK, 0, &settings(&[(1, 4096)]))],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.5/2",
            vec![send(SETTINGS, 0, 1, &settings(&[(1, 4096)]))],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.5/3",
            vec![send(SETTINGS, 0, 0, &[0, 3, 0, 0, 0])],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.5.2/1",
            vec![send(SETTINGS, 0, 0, &settings(&[(2, 2)]))],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.5.2/2",
            vec![send(SETTINGS, 0, 0, &settings(&[(4, 1 << 31)]))],
            Expect::Conn(&[FLOW_CONTROL_ERROR]),
        ),
        case(
            "6.5.2/3",
            vec![send(SETTINGS, 0, 0, &settings(&[(5, 16383)]))],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.5.2/4",
            vec![send(SETTINGS, 0, 0, &settings(&[(5, 1 << 24)]))],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.5.2/5",
            vec![send(SETTINGS, 0, 0, &settings(&[(0xff, 1)]))],
            Expect::SettingsAck,
        ),
        case(
            "6.5.3/1",
            vec![
                send(SETTINGS, 0, 0, &settings(&[(4, 100), (4, 1)])),
                get_request(1),
            ],
            Expect::Data(1, 1),
        ),
        case(
            "6.5.3/2",
            vec![send(SETTINGS, 0, 0, &[])],
            Expect::SettingsAck,
        ),
        case("6.7/1", vec![], Expect::Alive),
        case(
            "6.7/2",
            vec![send(PING, ACK, 0, b"unsolici")],
            Expect::Alive,
        ),
        case(
            "6.7/3",
            vec![send(PING, 0, 1, &[0; 8])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.7/4",
            vec![send(PING, 0, 0, &[0; 6])],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.8/1",
            vec![send(GOAWAY, 0, 1, &[0, 0, 0, 0, 0, 0, 0, 0])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.9/1",
            vec![send(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.9/2",
            vec![post_open(1), send(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0])],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "6.9/3",
            vec![send(WINDOW_UPDATE, 0, 0, &[0, 0, 1])],
            Expect::Conn(&[FRAME_SIZE_ERROR]),
        ),
        case(
            "6.9.1/1",
            vec![send(SETTINGS, 0, 0, &settings(&[(4, 1)])), get_request(1)],
            Expect::Data(1, 1),
        ),
        case(
            "6.9.1/2",
            vec![
                send(WINDOW_UPDATE, 0, 0, &0x7FFF_FFFFu32.to_be_bytes()),
                send(WINDOW_UPDATE, 0, 0, &0x7FFF_FFFFu32.to_be_bytes()),
            ],
            Expect::Conn(&[FLOW_CONTROL_ERROR]),
        ),
        case(
            "6.9.1/3",
            vec![
                post_open(1),
                send(WINDOW_UPDATE, 0, 1, &0x7FFF_FFFFu32.to_be_bytes()),
                send(WINDOW_UPDATE, 0, 1, &0x7FFF_FFFFu32.to_be_bytes()),
            ],
            Expect::Stream(1, &[FLOW_CONTROL_ERROR]),
        ),
        case(
            "6.9.2/1",
            vec![
                send(SETTINGS, 0, 0, &settings(&[(4, 0)])),
                get_request(1),
                send(SETTINGS, 0, 0, &settings(&[(4, 1)])),
            ],
            Expect::Data(1, 1),
        ),
        case(
            "6.9.2/3",
            vec![send(SETTINGS, 0, 0, &settings(&[(4, 1 << 31)]))],
            Expect::Conn(&[FLOW_CONTROL_ERROR]),
        ),
        case(
            "6.10/1",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(CONTINUATION, 0, 1, &[]),
                send(CONTINUATION, END_HEADERS, 1, &get_block[half..]),
            ],
            Expect::Response(1),
        ),
        case(
            "6.10/2",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(CONTINUATION, 0, 1, &[]),
                send(DATA, 0, 1, b"test"),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.10/3",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(CONTINUATION, END_HEADERS, 0, &get_block[half..]),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "6.10/4",
            vec![
                send(HEADERS, END_STREAM | END_HEADERS, 1, &get_block),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Conn(&[PROTOCOL_ERROR, STREAM_CLOSED]),
        ),
        case(
            "6.10/5",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(CONTINUATION, END_HEADERS, 1, &get_block[half..]),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Conn(&[PROTOCOL_ERROR, STREAM_CLOSED]),
        ),
        case(
            "6.10/6",
            vec![
                post_open(1),
                send(DATA, 0, 1, b"test"),
                send(CONTINUATION, END_HEADERS, 1, &get_block),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        case(
            "7/1",
            vec![send(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0xff])],
            Expect::Alive,
        ),
        case(
            "7/2",
            vec![post_open(1), send(RST_STREAM, 0, 1, &[0, 0, 0, 0xff])],
            Expect::Alive,
        ),
        case(
            "8.1/1",
            vec![
                post_open(1),
                send(DATA, 0, 1, b"test"),
                send(HEADERS, END_HEADERS, 1, &block(&[("x-trailer", "1")])),
            ],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &uppercase)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.1/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &unknown_pseudo)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.1/2",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &status_pseudo)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.1/3",
            vec![
                post_open(1),
                send(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1,
                    &block(&[(":method", "GET")]),
                ),
            ],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.1/4",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &pseudo_after)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.2/1",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &connection_header,
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.2/2",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &te)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &empty_path)],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/2",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &request_without(":method"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/3",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &request_without(":scheme"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/4",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &request_without(":path"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/5",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &duplicate(":method", "GET"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/6",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &duplicate(":scheme", "https"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.3/7",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &duplicate(":path", "/"),
            )],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.6/1",
            vec![
                send(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &post("/", &[("content-length", "1")]),
                ),
                send(DATA, END_STREAM, 1, b"test"),
            ],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case(
            "8.1.2.6/2",
            vec![
                send(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &post("/", &[("content-length", "1")]),
                ),
                send(DATA, 0, 1, b"te"),
                send(DATA, END_STREAM, 1, b"st"),
            ],
            Expect::Stream(1, &[PROTOCOL_ERROR]),
        ),
        case("8.1.3/1", vec![get_request(1)], Expect::Response(1)),
        case(
            "8.1.3/2",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[
                    (":method", "HEAD"),
                    (":scheme", "https"),
                    (":path", "/"),
                    (":authority", "www.foobar.com"),
                ]),
            )],
            Expect::Response(1),
        ),
        case(
            "8.1.3/3",
            vec![post_open(1), send(DATA, END_STREAM, 1, b"test")],
            Expect::Response(1),
        ),
        case(
            "8.1.3/4",
            vec![
                post_open(1),
                send(DATA, 0, 1, b"test"),
                send(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1,
                    &block(&[("x-trailer", "1")]),
                ),
            ],
            Expect::Response(1),
        ),
        case(
            "8.2/1",
            vec![
                get_request(1),
                send(PUSH_PROMISE, END_HEADERS, 1, &{
                    let mut p = vec![0, 0, 0, 2];
                    p.extend_from_slice(&get("/"));
                    p
                }),
            ],
            Expect::Conn(&[PROTOCOL_ERROR]),
        ),
        // h2spec's "generic" cases: what a server must accept.
        case("generic/1/1", vec![], Expect::Alive),
        case(
            "generic/2/1",
            vec![send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16])],
            Expect::Alive,
        ),
        case(
            "generic/2/2",
            vec![get_request(1), send(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 100])],
            Expect::Alive,
        ),
        case(
            "generic/2/3",
            vec![get_request(1), send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16])],
            Expect::Alive,
        ),
        case(
            "generic/2/4",
            vec![get_request(1), send(RST_STREAM, 0, 1, &[0, 0, 0, 8])],
            Expect::Alive,
        ),
        case(
            "generic/2/5",
            vec![
                get_request(1),
                Step::Finished(1),
                send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16]),
            ],
            Expect::Alive,
        ),
        case(
            "generic/3.1/1",
            vec![post_open(1), send(DATA, END_STREAM, 1, b"test")],
            Expect::Response(1),
        ),
        case(
            "generic/3.1/2",
            vec![
                post_open(1),
                send(DATA, 0, 1, b"te"),
                send(DATA, END_STREAM, 1, b"st"),
            ],
            Expect::Response(1),
        ),
        case(
            "generic/3.1/3",
            vec![
                post_open(1),
                send(
                    DATA,
                    END_STREAM | PADDED,
                    1,
                    &[4, b't', b'e', b's', b't', 0, 0, 0, 0],
                ),
            ],
            Expect::Response(1),
        ),
        case("generic/3.2/1", vec![get_request(1)], Expect::Response(1)),
        case(
            "generic/3.2/2",
            vec![send(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, &{
                let mut p = vec![4u8];
                p.extend_from_slice(&get("/"));
                p.extend_from_slice(&[0; 4]);
                p
            })],
            Expect::Response(1),
        ),
        case(
            "generic/3.2/3",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM | HAS_PRIORITY,
                1,
                &{
                    let mut p = vec![0, 0, 0, 0, 255];
                    p.extend_from_slice(&get("/"));
                    p
                },
            )],
            Expect::Response(1),
        ),
        case(
            "generic/3.3/1",
            vec![send(PRIORITY, 0, 1, &[0, 0, 0, 0, 0])],
            Expect::Alive,
        ),
        case(
            "generic/3.3/2",
            vec![send(PRIORITY, 0, 1, &[0, 0, 0, 0, 255])],
            Expect::Alive,
        ),
        case(
            "generic/3.3/3",
            vec![send(PRIORITY, 0, 3, &[0, 0, 0, 1, 16])],
            Expect::Alive,
        ),
        case(
            "generic/3.3/4",
            vec![send(PRIORITY, 0, 3, &[0x80, 0, 0, 1, 16])],
            Expect::Alive,
        ),
        case(
            "generic/3.4/1",
            vec![post_open(1), send(RST_STREAM, 0, 1, &[0, 0, 0, 8])],
            Expect::Alive,
        ),
        case(
            "generic/3.5/1",
            vec![send(SETTINGS, 0, 0, &settings(&[(1, 4096)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.5/2",
            vec![send(SETTINGS, 0, 0, &settings(&[(2, 0)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.5/3",
            vec![send(SETTINGS, 0, 0, &settings(&[(3, 100)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.5/4",
            vec![send(SETTINGS, 0, 0, &settings(&[(4, 65535)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.5/5",
            vec![send(SETTINGS, 0, 0, &settings(&[(5, 16384)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.5/6",
            vec![send(SETTINGS, 0, 0, &settings(&[(6, 65535)]))],
            Expect::SettingsAck,
        ),
        case(
            "generic/3.7/1",
            vec![send(PING, 0, 0, b"pingping")],
            Expect::Alive,
        ),
        case(
            "generic/3.8/1",
            vec![send(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0])],
            Expect::Closed,
        ),
        case(
            "generic/3.9/1",
            vec![send(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1])],
            Expect::Alive,
        ),
        case(
            "generic/3.9/2",
            vec![post_open(1), send(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 1])],
            Expect::Alive,
        ),
        case(
            "generic/3.10/1",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..half]),
                send(CONTINUATION, END_HEADERS, 1, &get_block[half..]),
            ],
            Expect::Response(1),
        ),
        case(
            "generic/3.10/2",
            vec![
                send(HEADERS, END_STREAM, 1, &get_block[..1]),
                send(CONTINUATION, 0, 1, &get_block[1..half]),
                send(CONTINUATION, END_HEADERS, 1, &get_block[half..]),
            ],
            Expect::Response(1),
        ),
        // HPACK representations a server must decode (RFC 7541 section 6).
        case(
            "generic/5/1",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &hpack_request(&[0x01, 14]),
            )],
            Expect::Response(1),
        ),
        case(
            "generic/5/2",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &hpack_request(&[0x41, 14]),
            )],
            Expect::Response(1),
        ),
        case(
            "generic/5/3",
            vec![send(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &hpack_request(&[0x11, 14]),
            )],
            Expect::Response(1),
        ),
        case(
            "generic/5/4",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // Literal with incremental indexing, new name; then the entry used by index.
                let mut p = vec![0x82, 0x87, 0x84, 0x40, 10];
                p.extend_from_slice(b":authority");
                p.push(14);
                p.extend_from_slice(b"www.foobar.com");
                p
            })],
            Expect::Response(1),
        ),
        case(
            "generic/5/5",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // Literal never indexed, new name.
                let mut p = vec![0x82, 0x87, 0x84, 0x10, 10];
                p.extend_from_slice(b":authority");
                p.push(14);
                p.extend_from_slice(b"www.foobar.com");
                p
            })],
            Expect::Response(1),
        ),
        case(
            "generic/5/6",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // A dynamic table size update first, then the fields.
                let mut p = vec![0x20];
                p.extend_from_slice(&hpack_request(&[0x01, 14]));
                p
            })],
            Expect::Response(1),
        ),
        case(
            "generic/5/7",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // RFC 7541 C.4.1: "www.example.com" Huffman-coded.
                let mut p = vec![0x82, 0x87, 0x84, 0x41, 0x8c];
                p.extend_from_slice(&[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ]);
                p
            })],
            Expect::Response(1),
        ),
        // HPACK (RFC 7541).
        case(
            "hpack/2.3.3/2",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                let mut p = get("/");
                p.extend_from_slice(&[0x7e, 1, b'x']);
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/5.2/2",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // A Huffman-coded name holding EOS (30 1-bits).
                let mut p = get("/");
                p.extend_from_slice(&[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, b'x']);
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/5.2/3",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // "a" (00011) padded with zeros, not with the most significant bits of EOS.
                let mut p = get("/");
                p.extend_from_slice(&[0x00, 0x81, 0x18, 0x01, b'x']);
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/2.3.3/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &[0xbe])],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/4.2/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // A dynamic table size update to 2^20, above SETTINGS_HEADER_TABLE_SIZE.
                let mut p = vec![0x3f, 0xe1, 0xff, 0x3f];
                p.extend_from_slice(&get("/"));
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/5.2/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // A Huffman-coded name of one octet, all padding: eight 1-bits (RFC 7541
                // section 5.2 allows at most seven).
                let mut p = get("/");
                p.extend_from_slice(&[0x00, 0x81, 0xff, 0x01, b'x']);
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
        case(
            "hpack/6.3/1",
            vec![send(HEADERS, END_HEADERS | END_STREAM, 1, &{
                // A dynamic table size update after a header field.
                let mut p = get("/");
                p.push(0x20);
                p
            })],
            Expect::Conn(&[COMPRESSION_ERROR]),
        ),
    ]
}

/// A GET of `/` whose `:method`, `:scheme` and `:path` are indexed from the static table and
/// whose `:authority` (www.foobar.com) is written with the representation prefix given: 0x01
/// without indexing, 0x41 with incremental indexing, 0x11 never indexed (name index 1).
fn hpack_request(prefix: &[u8]) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84];
    block.extend_from_slice(prefix);
    block.extend_from_slice(b"www.foobar.com");
    block
}

/// Runs one case on a fresh connection; `Err` says what the server did instead.
async fn run(addr: SocketAddr, pem: &[u8], case: Case) -> Result<(), String> {
    let mut h2 = if case.preface {
        RawH2::connect(addr, pem).await
    } else {
        RawH2::open(addr, pem).await
    };
    for step in case.steps {
        match step {
            Step::Send(bytes) => h2.write(&bytes).await,
            Step::Finished(stream) => loop {
                let frame = h2
                    .read(Duration::from_secs(3))
                    .await
                    .ok_or("the response never ended")?;
                if frame.stream == stream && frame.flags & END_STREAM != 0 {
                    break;
                }
            },
        }
    }
    let wait = Duration::from_secs(2);
    match case.expect {
        Expect::Conn(codes) => match h2.outcome(wait).await {
            Seen::GoAway(code) if codes.contains(&code) => Ok(()),
            Seen::Closed => Ok(()),
            other => Err(format!("want a connection error {codes:?}, got {other:?}")),
        },
        Expect::GoAway(codes) => match h2.outcome(wait).await {
            Seen::GoAway(code) if codes.contains(&code) => Ok(()),
            other => Err(format!("want GOAWAY {codes:?}, got {other:?}")),
        },
        Expect::Stream(stream, codes) => match h2.outcome_on(stream, wait).await {
            Seen::Reset(on, code) if on == stream && codes.contains(&code) => Ok(()),
            Seen::GoAway(code) if codes.contains(&code) => Ok(()),
            Seen::Closed => Ok(()),
            other => Err(format!(
                "want a stream error {codes:?} on {stream}, got {other:?}"
            )),
        },
        Expect::Alive => h2.alive().await.map_err(|seen| {
            format!(
                "the connection did not answer a PING: {seen:?} after {:?}",
                h2.seen
            )
        }),
        Expect::Closed => h2
            .closes(wait)
            .await
            .map_err(|seen| format!("the connection did not close: {seen:?} after {:?}", h2.seen)),
        Expect::Response(stream) => match h2.response(stream).await {
            true => Ok(()),
            false => Err(format!("no response on {stream}; saw {:?}", h2.seen)),
        },
        Expect::Data(stream, len) => loop {
            let frame = h2
                .read(Duration::from_secs(3))
                .await
                .ok_or("no DATA frame")?;
            if frame.kind == DATA && frame.stream == stream {
                return if frame.payload.len() == len {
                    Ok(())
                } else {
                    Err(format!(
                        "a DATA frame of {} bytes, want {len}",
                        frame.payload.len()
                    ))
                };
            }
        },
        Expect::SettingsAck => loop {
            let frame = h2
                .read(Duration::from_secs(3))
                .await
                .ok_or("no SETTINGS ACK")?;
            if frame.kind == SETTINGS && frame.flags & ACK != 0 {
                return Ok(());
            }
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_conformance_cases() {
    let server = Foobar::setup()
        .shipped_site()
        .file("large.bin", vec![0u8; 1 << 20])
        .start();
    let pem = server.certificate_pem();
    let cases = cases();
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let id = case.id;
        if let Err(reason) = run(server.https, &pem, case).await {
            failures.push(format!("{id}: {reason}"));
        }
    }
    eprintln!(
        "HTTP/2 conformance: {}/{total} cases pass",
        total - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A client's GOAWAY lets the requests it already sent finish, then the server closes: the
/// responses the connection holds back to write together (`edge::coalesce`) go out before the
/// close. Run hundreds of times beside a steady HTTP/2 load, because what it guards against is
/// a race between the held writes and the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_goaway_ends_the_connection_after_its_requests_under_load() {
    let server = Foobar::setup().shipped_site().start();
    let pem = server.certificate_pem();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (addr, pem, stop) = (server.https, pem.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            // One connection, 16 streams at a time: the load whose responses are held and
            // written together.
            let stream = support::web::connect(
                addr,
                "www.foobar.com",
                support::web::tls_config(&pem, &[b"h2"]),
            )
            .await
            .unwrap();
            let (sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            tokio::spawn(connection);
            let mut served = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut batch = tokio::task::JoinSet::new();
                for _ in 0..16 {
                    let mut sender = sender.clone();
                    let request = support::web::get("/", &[]).map(http_body_util::Full::new);
                    batch.spawn(async move {
                        use http_body_util::BodyExt;
                        let response = sender.send_request(request).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        Ok::<_, hyper::Error>(status)
                    });
                }
                while let Some(status) = batch.join_next().await {
                    let status = status.unwrap().expect("a response under load");
                    assert_eq!(status, 200);
                    served += 1;
                }
            }
            served
        }));
    }
    let goaway = frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
    let mut failures = Vec::new();
    let rounds = 300;
    for round in 0..rounds {
        let alone = case(
            "goaway alone",
            vec![Step::Send(goaway.clone())],
            Expect::Closed,
        );
        let mut request_then_goaway = frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/"));
        request_then_goaway.extend_from_slice(&goaway);
        let after_request = case(
            "goaway after a request",
            vec![Step::Send(request_then_goaway), Step::Finished(1)],
            Expect::Closed,
        );
        for case in [alone, after_request] {
            let id = case.id;
            if let Err(reason) = run(server.https, &pem, case).await {
                failures.push(format!("round {round}, {id}: {reason}"));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for task in load {
        served += task.await.unwrap();
    }
    eprintln!("{rounds} rounds beside {served} loaded requests");
    assert!(served > 0, "the load ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_raw_client_writes_frames_as_rfc_9113_says() {
    assert_eq!(
        h2raw::frame(PING, ACK, 0, b"12345678"),
        [
            0, 0, 8, 6, 1, 0, 0, 0, 0, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8'
        ]
    );
    // RFC 7541 C.2.2: a literal field without indexing, new name.
    assert_eq!(block(&[("a", "b")]), [0x00, 1, b'a', 1, b'b']);
}
