//! Writes the committed seed corpora under `seeds/<target>/`:
//! `cargo run --example make_seeds` (from `fuzz/`). The seeds are valid
//! handshakes, the RFC 6455 §5.7 and RFC 7692 §7.2.3 example frames, short
//! API sequences and valid protobuf envelopes of every kind, in each
//! target's input layout (see `src/lib.rs`).

use std::fs;
use std::path::Path;

use prost::Message as _;
use wharf_core::Bytes;
use wharf_fuzz::{made_body, raw_frame, Op, PeerDeflate, ProtoOp};
use wharf_proto::{Body, Envelope, RequestResult, Status, PROTOCOL_VERSION};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// RFC 6455 §1.3 / §4.1 example request.
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n";

const RESPONSE_CHAT: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create the seed directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ops(config: [u8; 2], ops: &[Op]) -> Vec<u8> {
    let mut out = config.to_vec();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A `PeerMessage` op.
#[allow(clippy::too_many_arguments)]
fn peer(source: u8, len: u16, scale: u8, data: &[u8], flags: u8, split: u8, chunk: u8) -> Op {
    Op::PeerMessage {
        source,
        len,
        scale,
        data: data.to_vec(),
        flags,
        split,
        key: KEY,
        chunk,
    }
}

fn proto_ops(mode_and_config: [u8; 4], ops: &[ProtoOp]) -> Vec<u8> {
    let mut out = mode_and_config.to_vec();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// An envelope of `version` around `body`, as bytes.
fn envelope(version: u32, body: Option<Body>) -> Vec<u8> {
    Envelope { version, body }.encode_to_vec()
}

/// An `Op::Writer`.
fn writer(mode: u8, limit: u8, block: u8, interrupt: u8, fail: u8) -> Op {
    Op::Writer {
        mode,
        limit,
        block,
        interrupt,
        fail,
    }
}

/// `Op::Writer` limits: `n` (1..=13) bytes per call; entry `i` of
/// `SINK_MEDIUM`; a new size each call, up to `2 << v`.
fn tiny(n: u8) -> u8 {
    1 | (n - 1) << 2
}

fn medium(i: u8) -> u8 {
    2 | i << 2
}

fn varying(v: u8) -> u8 {
    3 | v << 2
}

fn send(kind: u8, len: u16, scale: u8) -> Op {
    Op::Send { kind, len, scale }
}

fn frame(b0: u8, payload: &[u8], extra: u16, chunk: u8) -> Op {
    Op::Frame {
        b0,
        flags: 0,
        key: KEY,
        payload: payload.to_vec(),
        extra,
        chunk,
    }
}

fn main() {
    // §5.7 examples.
    let hello_unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let hello_masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let frag = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let ping_unmasked = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let pong_masked = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let bin256 = raw_frame(0x82, None, &[0xAB; 256], 0);
    let bin64k_head = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
    let close_masked = raw_frame(0x88, Some(KEY), &[0x03, 0xe8, b'b', b'y', b'e'], 0);
    let frag_masked = cat(&[
        &raw_frame(0x01, Some(KEY), "κό".as_bytes(), 0),
        &raw_frame(0x89, Some(KEY), b"", 0),
        &raw_frame(0x80, Some(KEY), "σμε".as_bytes(), 0),
    ]);
    let splits2 = |a: u16, b: u16| {
        let mut v = vec![2u8];
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&b.to_le_bytes());
        v
    };
    let t = "frame_decode";
    // Flags: bit 0 client decoder (unmasked frames), bit 1 stream, bit 2 small limits.
    write(
        t,
        "rfc_hello_unmasked",
        &cat(&[&[1], &splits2(1, 4), &hello_unmasked]),
    );
    write(
        t,
        "rfc_hello_masked",
        &cat(&[&[0], &splits2(3, 7), &hello_masked]),
    );
    write(t, "rfc_fragmented", &cat(&[&[1], &splits2(2, 6), &frag]));
    write(
        t,
        "rfc_fragmented_stream",
        &cat(&[&[3], &splits2(4, 8), &frag]),
    );
    write(t, "rfc_ping", &cat(&[&[1], &[0], &ping_unmasked]));
    write(
        t,
        "rfc_pong_masked",
        &cat(&[&[0], &splits2(1, 9), &pong_masked]),
    );
    write(
        t,
        "rfc_binary_256",
        &cat(&[&[1], &splits2(3, 100), &bin256]),
    );
    write(t, "rfc_binary_64k_head", &cat(&[&[1], &[0], &bin64k_head]));
    write(
        t,
        "close_masked",
        &cat(&[&[0], &splits2(2, 8), &close_masked]),
    );
    write(
        t,
        "utf8_fragments_stream",
        &cat(&[&[2], &splits2(8, 13), &frag_masked]),
    );
    write(
        t,
        "utf8_fragments_small",
        &cat(&[&[4], &splits2(7, 9), &frag_masked]),
    );
    // Large frames whose payload arrives through `read_with` (the split
    // connection reads straight into its buffer once 16 KiB are to come).
    write(
        t,
        "direct_read_binary_40k_masked",
        &cat(&[
            &[0],
            &splits2(1000, 30_000),
            &raw_frame(0x82, Some(KEY), &[0x5A; 40_000], 0),
        ]),
    );
    write(
        t,
        "direct_read_text_40k_unmasked_stream",
        &cat(&[
            &[3],
            &splits2(200, 17_000),
            &raw_frame(0x81, None, "é".repeat(20_000).as_bytes(), 0),
        ]),
    );
    // Large frames one after another, cut where frames end: the split
    // connection (its events taken after every piece) is lent its buffer
    // between frames, too.
    write(
        t,
        "direct_read_between_frames_masked",
        &cat(&[
            &[0],
            &splits2(20_008, 50_016),
            &raw_frame(0x82, Some(KEY), &[0x5A; 20_000], 0),
            &raw_frame(0x82, Some(KEY), &[0xA5; 30_000], 0),
            &raw_frame(0x81, Some(KEY), b"tail", 0),
        ]),
    );
    let mut bad_text = "é".repeat(20_000).into_bytes();
    bad_text[25_001] = 0xFF;
    write(
        t,
        "direct_read_text_40k_invalid_utf8_masked",
        &cat(&[
            &[0],
            &splits2(100, 24_000),
            &raw_frame(0x81, Some(KEY), &bad_text, 0),
        ]),
    );
    // RFC 7692 §7.2.3 examples with permessage-deflate negotiated (flag 8):
    // unmasked to a client decoder, masked to a server one.
    for (name, frames) in rfc7692_frames() {
        let unmasked: Vec<u8> = frames
            .iter()
            .flat_map(|(b0, p)| raw_frame(*b0, None, p, 0))
            .collect();
        let masked: Vec<u8> = frames
            .iter()
            .flat_map(|(b0, p)| raw_frame(*b0, Some(KEY), p, 0))
            .collect();
        write(
            t,
            &format!("deflate_{name}"),
            &cat(&[&[9], &splits2(3, 8), &unmasked]),
        );
        write(
            t,
            &format!("deflate_{name}_masked_stream"),
            &cat(&[&[10], &splits2(5, 11), &masked]),
        );
    }

    // Found by frame_decode: a compressed text message (stream mode) whose
    // inflated bytes turn invalid UTF-8 before its DEFLATE data does, cut
    // between the two; whole and cut it must end alike.
    write(
        t,
        "deflate_utf8_error_before_bad_data_stream",
        &[
            0x0a, 0x02, 0x05, 0x00, 0x0b, 0x00, 0xc1, 0x8d, 0x37, 0x21, 0x3d, 0xc5, 0x3d, 0xfd,
            0x33, 0xe8, 0x2a, 0x37,
        ],
    );

    let t = "handshake_request";
    // Flags: bits 0-1 decision, 2-3 max_header_bytes (3: 16 KiB), 4-5
    // max_headers (2: 64), bit 6 pick a subprotocol.
    write(t, "rfc_request", &cat(&[&[0x2C], &[0], REQUEST]));
    write(t, "rfc_request_bytewise", &cat(&[&[0x2C], &[1], REQUEST]));
    write(t, "rfc_request_chat", &cat(&[&[0x6C], &[7], REQUEST]));
    write(t, "rfc_request_reject", &cat(&[&[0x2D], &[0], REQUEST]));
    write(
        t,
        "rfc_request_delayed_frames",
        &cat(&[&[0x2E], &[30], REQUEST, &hello_masked]),
    );
    write(
        t,
        "rfc_request_undecided",
        &cat(&[&[0x2F], &[0], REQUEST, &hello_masked]),
    );
    write(t, "small_limits", &cat(&[&[0x04], &[5], REQUEST]));
    write(
        t,
        "version_8",
        &cat(&[
            &[0x2C],
            &[0],
            &wharf_fuzz::replace(REQUEST, b"Version: 13", b"Version: 8"),
        ]),
    );
    write(
        t,
        "post",
        &cat(&[
            &[0x2C],
            &[0],
            &wharf_fuzz::replace(REQUEST, b"GET", b"POST"),
        ]),
    );

    // Bit 7: the server takes permessage-deflate offers.
    let with_ext = |head: &[u8], value: &str| {
        wharf_fuzz::replace(
            head,
            b"Upgrade: websocket\r\n",
            format!("Upgrade: websocket\r\nSec-WebSocket-Extensions: {value}\r\n").as_bytes(),
        )
    };
    write(
        t,
        "deflate_offer",
        &cat(&[
            &[0xAC],
            &[0],
            &with_ext(REQUEST, "permessage-deflate; client_max_window_bits"),
        ]),
    );
    write(
        t,
        "deflate_offers",
        &cat(&[
            &[0xAC],
            &[3],
            &with_ext(
                REQUEST,
                "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, \
                 permessage-deflate; server_no_context_takeover; client_max_window_bits=\"9\"",
            ),
        ]),
    );

    let t = "handshake_response";
    // Flags: bits 2-5 header limits, bit 6 offer chat/superchat.
    write(t, "response_101", &cat(&[&[0x2C], &[0], RESPONSE]));
    write(t, "response_101_bytewise", &cat(&[&[0x2C], &[1], RESPONSE]));
    write(
        t,
        "response_101_chat",
        &cat(&[&[0x6C], &[9], RESPONSE_CHAT]),
    );
    write(
        t,
        "response_101_then_frames",
        &cat(&[&[0x2C], &[0], RESPONSE, &hello_unmasked, &ping_unmasked]),
    );
    // Bit 7: the client offers permessage-deflate, asking for no server
    // context takeover and a window of at most 12 bits.
    let granted = with_ext(
        RESPONSE,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
    );
    write(t, "deflate_granted", &cat(&[&[0xAC], &[0], &granted]));
    write(
        t,
        "deflate_granted_then_compressed",
        &cat(&[
            &[0xAC],
            &[11],
            &granted,
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        ]),
    );
    write(
        t,
        "deflate_window_too_large",
        &cat(&[
            &[0xAC],
            &[0],
            &with_ext(
                RESPONSE,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
            ),
        ]),
    );
    write(
        t,
        "deflate_not_granted",
        &cat(&[&[0xAC], &[0], &with_ext(RESPONSE, "permessage-deflate")]),
    );
    write(t, "deflate_unoffered", &cat(&[&[0x2C], &[0], &granted]));
    write(
        t,
        "response_403",
        &cat(&[
            &[0x2C],
            &[0],
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
        ]),
    );
    write(
        t,
        "response_bad_accept",
        &cat(&[
            &[0x2C],
            &[0],
            &wharf_fuzz::replace(RESPONSE, b"{ACCEPT}", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]),
    );

    for (t, peer_b0_mask) in [("connection_server", true), ("connection_client", false)] {
        write(t, "rfc_hello", &ops([0, 0], &[frame(0x81, b"Hello", 0, 0)]));
        write(
            t,
            "fragments_and_ping",
            &ops(
                [0, 0],
                &[
                    frame(0x01, b"Hel", 0, 2),
                    frame(0x89, b"Hello", 0, 0),
                    frame(0x80, b"lo", 0, 1),
                ],
            ),
        );
        write(
            t,
            "stream_utf8",
            &ops(
                [1, 0],
                &[
                    frame(0x01, "κό".as_bytes(), 0, 1),
                    frame(0x80, "σμε".as_bytes(), 0, 3),
                ],
            ),
        );
        write(
            t,
            "send_echo_close",
            &ops(
                [0, 2],
                &[
                    Op::Send {
                        kind: 0,
                        len: 20,
                        scale: 0,
                    },
                    Op::Send {
                        kind: 1,
                        len: 30,
                        scale: 0,
                    },
                    Op::Send {
                        kind: 2,
                        len: 300,
                        scale: 1,
                    },
                    Op::Ping { len: 4 },
                    frame(0x82, &[1, 2, 3], 300, 0),
                    Op::Close {
                        code: 1000,
                        reason: 3,
                    },
                    frame(0x88, &[0x03, 0xe8], 0, 0),
                ],
            ),
        );
        write(
            t,
            "peer_close_first",
            &ops(
                [0, 0],
                &[
                    frame(0x88, &[0x03, 0xe9, b'x'], 0, 0),
                    Op::Send {
                        kind: 0,
                        len: 3,
                        scale: 0,
                    },
                ],
            ),
        );
        write(
            t,
            "keepalive_timeout",
            &ops(
                [2, 0],
                &[
                    Op::Advance { ms: 1500 },
                    Op::Advance { ms: 3000 },
                    Op::Advance { ms: 9000 },
                ],
            ),
        );
        write(
            t,
            "lazy_large_take_unsent",
            &ops(
                [4, 1],
                &[
                    Op::Send {
                        kind: 2,
                        len: 60000,
                        scale: 1,
                    },
                    Op::Send {
                        kind: 0,
                        len: 10,
                        scale: 0,
                    },
                    Op::TakeUnsent,
                    Op::Send {
                        kind: 0,
                        len: 10,
                        scale: 0,
                    },
                    Op::Drain,
                ],
            ),
        );
        write(
            t,
            "limits_queue",
            &ops(
                [0x68, 3],
                &[
                    Op::Send {
                        kind: 0,
                        len: 90,
                        scale: 0,
                    },
                    Op::Send {
                        kind: 0,
                        len: 90,
                        scale: 0,
                    },
                    frame(0x81, b"x", 300, 0),
                ],
            ),
        );
        write(
            t,
            "close_timeout_eof",
            &ops(
                [0, 0],
                &[
                    Op::Close {
                        code: 1001,
                        reason: 0,
                    },
                    Op::Advance { ms: 6000 },
                    Op::Eof,
                ],
            ),
        );
        // Found by connection_server: a streamed text message ending inside
        // a character (core/tests/fuzz_regressions.rs).
        write(
            t,
            "stream_cut_off_char",
            &ops(
                [1, 0],
                &[
                    frame(0x01, "κό".as_bytes(), 0, 1),
                    frame(0x80, b"\xcf\x83\xce\xbc\xe1\xb5", 0, 3),
                ],
            ),
        );
        write(
            t,
            "raw_garbage",
            &ops(
                [0, 0],
                &[
                    Op::Raw {
                        bytes: b"\x81\x85\x37\xfa".to_vec(),
                        chunk: 1,
                    },
                    Op::Raw {
                        bytes: b"\x21\x3d\x7f\x9f\x4d\x51\x58".to_vec(),
                        chunk: 0,
                    },
                ],
            ),
        );
        connection_writer_seeds(t);
        connection_deflate_seeds(t, peer_b0_mask);
    }

    let t = "utf8";
    let cuts = |c: &[u16]| {
        let mut v = vec![c.len() as u8];
        for x in c {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    };
    write(t, "ascii", &cat(&[&cuts(&[]), b"Hello"]));
    write(
        t,
        "greek_cut_mid_char",
        &cat(&[&cuts(&[1, 3, 5]), "κόσμε".as_bytes()]),
    );
    write(
        t,
        "four_byte",
        &cat(&[&cuts(&[1, 2, 3]), "😀€é".as_bytes()]),
    );
    write(t, "surrogate", &cat(&[&cuts(&[1]), b"\xed\xa0\x80"]));
    write(t, "overlong", &cat(&[&cuts(&[1]), b"\xc0\xaf\xe0\x80\xaf"]));
    write(t, "above_max", &cat(&[&cuts(&[2]), b"\xf4\x90\x80\x80"]));
    write(t, "truncated", &cat(&[&cuts(&[2]), b"ab\xe2\x82"]));

    let t = "mask";
    write(
        t,
        "rfc_hello",
        &cat(&[&KEY, &[0; 8], &[0, 2, 0, 0], b"Hello"]),
    );
    write(
        t,
        "offset_3_long",
        &cat(&[
            &KEY,
            &[3, 0, 0, 0, 0, 0, 0, 0],
            &[1, 17, 0, 5],
            &[0x55; 100],
        ]),
    );
    proto_envelope_seeds();
    println!("seeds written");
}

/// Frames as (first byte, payload).
type Frames = Vec<(u8, Vec<u8>)>;

/// The RFC 7692 §7.2.3 examples as frames.
fn rfc7692_frames() -> Vec<(&'static str, Frames)> {
    let hello = vec![0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    vec![
        // §7.2.3.1: "Hello" in one compressed frame.
        ("rfc7692_hello", vec![(0xc1, hello.clone())]),
        // §7.2.3.1: the same split across two frames, RSV1 on the first.
        (
            "rfc7692_hello_fragments",
            vec![
                (0x41, vec![0xf2, 0x48, 0xcd]),
                (0x80, vec![0xc9, 0xc9, 0x07, 0x00]),
            ],
        ),
        // §7.2.3.2: a second "Hello" with the window shared.
        (
            "rfc7692_shared_context",
            vec![(0xc1, hello), (0xc1, vec![0xf2, 0x00, 0x11, 0x00, 0x00])],
        ),
        // §7.2.3.3: a stored (no compression) block.
        (
            "rfc7692_stored",
            vec![(
                0xc1,
                vec![
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            )],
        ),
        // §7.2.3.4: a block with BFINAL set.
        (
            "rfc7692_bfinal",
            vec![(0xc1, vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00])],
        ),
        // §7.2.3.5: two DEFLATE blocks in one message.
        (
            "rfc7692_two_blocks",
            vec![(
                0xc1,
                vec![
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
            )],
        ),
        // §7.2.3.6: an empty message.
        ("rfc7692_empty", vec![(0xc1, vec![0x00])]),
        // RSV1 where §6.1 forbids it: on a control frame, on a continuation.
        ("rsv1_on_ping", vec![(0xc9, b"Hello".to_vec())]),
        (
            "rsv1_on_continuation",
            vec![
                (0x41, vec![0xf2, 0x48, 0xcd]),
                (0xc0, vec![0xc9, 0xc9, 0x07, 0x00]),
            ],
        ),
    ]
}

/// `connection_*` seeds that write with `transmit_to` into a throttled sink
/// (`Op::Writer`), with messages of 4 KiB and more in several frames: a
/// server writes those frames straight from the message.
fn connection_writer_seeds(t: &str) {
    const ALWAYS: u8 = 0xFF;
    // 4 KiB frames, one to seven bytes per write.
    write(
        t,
        "writer_tiny_4k_frames",
        &ops(
            [0, 5],
            &[
                writer(ALWAYS, tiny(7), 0, 0, 0),
                send(2, 12_000, 0),
                send(1, 5000, 0),
                Op::Ping { len: 4 },
                frame(0x89, b"ping", 0, 0),
                send(0, 100, 0),
                writer(ALWAYS, tiny(1), 0, 0, 0),
                send(2, 4500, 0),
                Op::Close {
                    code: 1000,
                    reason: 2,
                },
                frame(0x88, &[0x03, 0xe8], 0, 0),
            ],
        ),
    );
    // 64 KiB frames of a 320 000-byte message, a sink that takes about a
    // frame header and 4 KiB per call, would block now and then and is
    // interrupted every third call.
    write(
        t,
        "writer_blocking_64k_frames",
        &ops(
            [0, 0],
            &[
                writer(ALWAYS, medium(7), 0x24, 2, 0),
                send(2, 40_000, 1),
                send(0, 10, 0),
                frame(0x89, b"ping", 0, 0),
                Op::Advance { ms: 10 },
                send(1, 6000, 0),
                Op::TakeUnsent,
                send(2, 5000, 0),
                Op::Drain,
                send(2, 65_000, 0),
                writer(ALWAYS, medium(13), 0x01, 0, 0),
                send(0, 9000, 1),
                Op::Advance { ms: 1500 },
            ],
        ),
    );
    // Every other step `poll_transmit`, the rest `transmit_to` into a sink
    // of varying sizes that blocks now and then: leftovers of one go out
    // through the other.
    write(
        t,
        "writer_mixed",
        &ops(
            [0, 0],
            &[
                writer(0xAA, varying(15), 0x11, 0, 0),
                send(2, 8750, 1),
                send(1, 4100, 0),
                peer(0, 300, 0, b"", 0, 0, 0),
                send(2, 20_000, 1),
                Op::TakeUnsent,
                send(0, 5000, 0),
                Op::Close {
                    code: 1001,
                    reason: 0,
                },
                Op::Eof,
            ],
        ),
    );
    // The sink breaks on its 8th call, inside the first message.
    write(
        t,
        "writer_broken_pipe",
        &ops(
            [0, 5],
            &[
                writer(ALWAYS, medium(5), 0, 0, 0xE2),
                send(2, 30_000, 0),
                send(0, 5000, 0),
                send(1, 100, 0),
                Op::TakeUnsent,
                send(0, 10, 0),
            ],
        ),
    );
    // Lazy transmit: one `poll_transmit` batch per step, `transmit_to` the
    // other half of the time.
    write(
        t,
        "writer_lazy",
        &ops(
            [4, 0],
            &[
                writer(0x55, 0, 0x02, 0, 0),
                send(2, 40_000, 1),
                send(2, 40_000, 1),
                frame(0x89, b"", 0, 0),
                send(0, 4096, 0),
                Op::TakeUnsent,
                Op::Drain,
            ],
        ),
    );
    // A protocol violation while the sink holds back a large message and a
    // Pong: the message is still flushed, then the Close.
    write(
        t,
        "writer_blocked_then_failure",
        &ops(
            [0, 0],
            &[
                writer(ALWAYS, tiny(13), 0xFE, 0, 0),
                send(2, 20_000, 0),
                frame(0x89, b"ping", 0, 0),
                frame(0x83, b"", 0, 0),
                Op::Advance { ms: 100 },
                writer(ALWAYS, 0, 0, 0, 0),
                Op::Advance { ms: 100 },
            ],
        ),
    );
}

/// `connection_*` seeds with permessage-deflate: config bit 7, then the
/// client's and the server's deflate byte and the level byte.
fn connection_deflate_seeds(t: &str, peer_masks: bool) {
    // Windows of 15 bits, context takeover: the defaults.
    const DEFAULTS: u8 = 0x06 | 0xe0;
    // 9-bit own window, no context takeover either way, the peer held to 8.
    const SMALL: u8 = 0x18;
    let cfg = |a: u8, b: u8, c: u8, d: u8, e: u8| [a, b, c, d, e];
    let dops = |config: [u8; 5], ops: &[Op]| {
        let mut out = config.to_vec();
        for op in ops {
            op.encode(&mut out);
        }
        out
    };
    let plain = cfg(0x80, 0, DEFAULTS, DEFAULTS, 0x01);
    for (name, frames) in rfc7692_frames() {
        let ops: Vec<Op> = frames.iter().map(|(b0, p)| frame(*b0, p, 0, 0)).collect();
        write(t, name, &dops(plain, &ops));
    }
    write(
        t,
        "deflate_peer_messages",
        &dops(
            plain,
            &[
                peer(0, 200, 0, b"", 0, 0, 0),
                peer(0, 200, 0, b"", 0, 50, 7),
                peer(1, 3000, 1, b"", 8, 100, 0),
                peer(2, 5000, 0, b"", 2 | 16, 0, 0),
                peer(4, 0, 0, b"Hello", 4, 0, 0),
                peer(0, 40, 0, b"", 1, 0, 0),
                peer(3, 0, 0, b"\x00\xff\x10", 0, 1, 1),
            ],
        ),
    );
    write(
        t,
        "deflate_send_mixed",
        &dops(
            cfg(0x80, 4, DEFAULTS, DEFAULTS, 0x01),
            &[
                Op::Send {
                    kind: 0,
                    len: 100,
                    scale: 0,
                },
                Op::Send {
                    kind: 1,
                    len: 100,
                    scale: 2,
                },
                Op::Send {
                    kind: 2,
                    len: 4000,
                    scale: 1,
                },
                Op::Send {
                    kind: 0,
                    len: 5,
                    scale: 0,
                },
                Op::Send {
                    kind: 0,
                    len: 100,
                    scale: 0,
                },
            ],
        ),
    );
    write(
        t,
        "deflate_small_windows",
        &dops(
            cfg(0x80, 3, SMALL, SMALL, 0x19 | 0x80),
            &[
                Op::Send {
                    kind: 1,
                    len: 3000,
                    scale: 0,
                },
                peer(0, 3000, 0, b"", 0, 9, 0),
                peer(1, 3000, 0, b"", 0, 0, 0),
                Op::Send {
                    kind: 1,
                    len: 3000,
                    scale: 0,
                },
            ],
        ),
    );
    write(
        t,
        "deflate_stream_mode",
        &dops(
            cfg(0x81, 5, DEFAULTS, DEFAULTS, 0x21),
            &[
                peer(1, 60000, 1, b"", 0, 0, 0),
                peer(0, 100, 0, b"", 8, 3, 2),
            ],
        ),
    );
    // A compression bomb (16 MiB of zeros in about 16 KiB) against a
    // 100 000-byte and a 1 MiB limit, reassembled and streamed; and against
    // 4 KiB messages in 1 KiB frames, cut into frames of up to 200 bytes.
    write(
        t,
        "deflate_bomb_small_limit",
        &dops(
            cfg(0x98, 0, DEFAULTS, DEFAULTS, 0x01),
            &[peer(5, 15, 0, b"", 0, 0, 0)],
        ),
    );
    write(
        t,
        "deflate_bomb_4k_fragments",
        &dops(
            cfg(0x88, 0, DEFAULTS, DEFAULTS, 0x01),
            &[peer(5, 15, 0, b"", 0, 200, 0)],
        ),
    );
    write(
        t,
        "deflate_bomb_stream",
        &dops(
            cfg(0x81, 0, DEFAULTS, DEFAULTS, 0x01),
            &[peer(5, 15, 1, b"", 0, 0, 0)],
        ),
    );
    // The same kind of bomb as literal bytes (4 MiB of zeros, about 4 KiB),
    // for the mutator to work on: one frame, in pieces of 255 bytes.
    // Compressed and uncompressed large messages through a sink that takes
    // 4097 bytes per call and would block now and then.
    write(
        t,
        "deflate_writer",
        &dops(
            cfg(0x80, 0, DEFAULTS, DEFAULTS, 0x01),
            &[
                writer(0xFF, medium(6), 0x44, 0, 0),
                send(2, 7500, 1),
                send(2, 40_000, 3),
                peer(1, 3000, 0, b"", 0, 0, 0),
                send(1, 5000, 2),
                send(0, 6000, 0),
            ],
        ),
    );
    let payload = PeerDeflate::new(15, false, 9).zeros(4);
    let bytes = raw_frame(0xc2, peer_masks.then_some(KEY), &payload, 0);
    let ops: Vec<Op> = bytes
        .chunks(255)
        .map(|c| Op::Raw {
            bytes: c.to_vec(),
            chunk: 0,
        })
        .collect();
    write(t, "deflate_bomb_literal", &dops(plain, &ops));
}

/// `proto_envelope` seeds: envelopes of every kind for the codec (mode 0),
/// and sessions (mode 1) that register, resume, time out, get refused,
/// replaced and fed bad messages.
fn proto_envelope_seeds() {
    let t = "proto_envelope";
    let codec = |name: &str, text: bool, bytes: &[u8]| {
        write(t, name, &cat(&[&[if text { 2 } else { 0 }], bytes]));
    };
    // made_body(kind, a, b, c, epoch): Register, RegisterAck, Request,
    // Result, Frame (see its docs).
    let bodies = [
        ("register", made_body(0, 0, 5, 0x13, 7)),
        ("register_ack", made_body(1, 1 | 4, 3, 0x03, 7)),
        ("register_refused", made_body(1, 2, 0, 0, 7)),
        ("request", made_body(2, 0, 1, 5, 7)),
        (
            "result_ok",
            Body::Result(RequestResult::ok(1, Bytes::from_static(b"answer"))),
        ),
        (
            "result_error",
            Body::Result(RequestResult::error(2, Status::ApplicationError, "no")),
        ),
        ("frame", made_body(4, 0, 1, 9, 7)),
    ];
    for (name, body) in &bodies {
        codec(name, false, &envelope(PROTOCOL_VERSION, Some(body.clone())));
    }
    codec("version_2", false, &envelope(2, Some(bodies[3].1.clone())));
    codec("no_body", false, &envelope(PROTOCOL_VERSION, None));
    codec(
        "request_id_0",
        false,
        &envelope(1, Some(made_body(2, 0, 0, 0, 7))),
    );
    codec(
        "result_status_0",
        false,
        &envelope(1, Some(made_body(3, 7, 4, 1, 7))),
    );
    codec(
        "truncated",
        false,
        &envelope(1, Some(bodies[0].1.clone()))[..6],
    );
    codec("text", true, &envelope(1, Some(bodies[3].1.clone())));

    use ProtoOp as P;
    // Client bits: max_pending 1024, subscribe to ticks; server: every
    // limit at its most; epoch 1.
    let base = [1, 0x0b, 0xff, 0x01];
    let register_and_ack = [
        P::Connect { flags: 0 },
        P::ToServer { n: 0 },
        P::Accept { sel: 0 },
        P::ToClient { n: 0 },
    ];
    let round_trip = [
        P::Request {
            kind: 0,
            len: 5,
            timeout: 0,
        },
        P::ToServer { n: 0 },
        P::Respond { sel: 0, status: 0 },
        P::ToClient { n: 0 },
    ];
    let session = |name: &str, config: [u8; 4], parts: &[&[ProtoOp]]| {
        write(t, name, &proto_ops(config, &parts.concat()));
    };
    session(
        "session_round_trip",
        base,
        &[&register_and_ack, &round_trip],
    );
    let publish = [
        P::Publish { stream: 0, len: 3 },
        P::Publish { stream: 0, len: 4 },
        P::ToClient { n: 0 },
    ];
    let resume = [
        P::Disconnect { flags: 1 },
        P::Publish { stream: 0, len: 5 },
        P::Publish { stream: 0, len: 6 },
        P::Request {
            kind: 0,
            len: 1,
            timeout: 0,
        },
    ];
    session(
        "session_resume_history",
        base,
        &[
            &register_and_ack,
            &publish,
            &resume,
            &register_and_ack,
            &round_trip,
        ],
    );
    // History 0: the frames missed are a gap.
    session(
        "session_resume_gap",
        [1, 0x0b, 0xf3, 0x01],
        &[&register_and_ack, &publish, &resume, &register_and_ack],
    );
    // OnReconnect::Fail: a sent request is lost with the connection.
    session(
        "session_fail_policy",
        [1, 0x0f, 0xff, 0x01],
        &[
            &register_and_ack,
            &[
                P::Request {
                    kind: 0,
                    len: 2,
                    timeout: 0,
                },
                P::Disconnect { flags: 0 },
            ],
            &register_and_ack,
        ],
    );
    session(
        "session_refused",
        base,
        &[&[
            P::Request {
                kind: 2,
                len: 1,
                timeout: 500,
            },
            P::Connect { flags: 0 },
            P::ToServer { n: 0 },
            P::Refuse { sel: 0, reason: 3 },
            P::ToClient { n: 0 },
            P::Advance { ms: 1000 },
        ]],
    );
    // The same client on a second connection replaces the first.
    session(
        "session_replaced",
        base,
        &[&register_and_ack, &round_trip, &register_and_ack, &publish],
    );
    // max_in_flight 1, max_pending 4: the second request is turned away.
    session(
        "session_busy",
        [1, 0x0a, 0xfc, 0x01],
        &[
            &register_and_ack,
            &[
                P::Request {
                    kind: 0,
                    len: 1,
                    timeout: 0,
                },
                P::Request {
                    kind: 0,
                    len: 2,
                    timeout: 0,
                },
                P::Request {
                    kind: 1,
                    len: 2,
                    timeout: 0,
                },
                P::ToServer { n: 0 },
                P::ToClient { n: 0 },
                P::Respond { sel: 0, status: 4 },
                P::ToClient { n: 0 },
            ],
        ],
    );
    // Made and arbitrary messages both ways.
    session(
        "session_bad_messages",
        base,
        &[
            &[
                P::Connect { flags: 0 },
                P::Body {
                    dest: 1,
                    kind: 2,
                    a: 0,
                    b: 9,
                    c: 0,
                    version: 0,
                },
                P::Body {
                    dest: 1,
                    kind: 0,
                    a: 2,
                    b: 0,
                    c: 0,
                    version: 0,
                },
                P::ServerBytes {
                    sel: 0,
                    text: 0,
                    bytes: b"\x22\x04\x08\x07\x12\x00".to_vec(),
                },
            ],
            &register_and_ack,
            &[
                P::Body {
                    dest: 0,
                    kind: 4,
                    a: 0,
                    b: 3,
                    c: 1,
                    version: 0,
                },
                P::Body {
                    dest: 0,
                    kind: 4,
                    a: 0,
                    b: 1,
                    c: 1,
                    version: 0,
                },
                P::Body {
                    dest: 0,
                    kind: 3,
                    a: 0,
                    b: 77,
                    c: 1,
                    version: 0,
                },
                P::Body {
                    dest: 0,
                    kind: 1,
                    a: 1 | 12,
                    b: 2,
                    c: 1,
                    version: 0,
                },
                P::ClientBytes {
                    text: 1,
                    bytes: b"hello".to_vec(),
                },
                P::ToClient { n: 0x81 },
            ],
        ],
    );
}
