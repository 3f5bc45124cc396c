//! Writes the committed seed corpora under `seeds/<target>/`:
//! `cargo run --example make_seeds` (from `fuzz/`). The seeds are valid
//! handshakes, the RFC 6455 §5.7 example frames and short API sequences, in
//! each target's input layout (see `src/lib.rs`).

use std::fs;
use std::path::Path;

use wharf_fuzz::{raw_frame, Op};

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
        let _ = peer_b0_mask;
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
    println!("seeds written");
}
