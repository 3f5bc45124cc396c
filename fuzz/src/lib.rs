//! The wharf fuzz targets' shared code: how each target reads its input and
//! which properties it asserts. The files in `fuzz_targets/` are one-line
//! wrappers around the `run_*` functions here, so that a crash can be replayed
//! on stable without libFuzzer (`cargo run --example replay`).
//!
//! Inputs are read with [`arbitrary::Unstructured`] in a fixed, documented
//! layout (one byte per small field, little-endian `u16`s, length-prefixed
//! byte strings) rather than with `#[derive(Arbitrary)]`, so that the seed
//! corpora can be written by `examples/make_seeds.rs` from readable values.
//! Every property is a `panic!`/`assert!`: libFuzzer reports it as a crash.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use wharf_core::bench_api::{self, RawHeader, Utf8Check, HEADER_BUF_LEN};
use wharf_core::{
    Accept, Bytes, ClientRequest, CloseCode, CloseInfo, Config, Connection, DeflateConfig, Error,
    Event, Message, MessageKind, MessageMode, OsSeededRng, ProtocolError, Random, Reject, Role,
    SendError,
};

mod deflate;
mod proto;

pub use deflate::{
    check_negotiated, deflate_config, zeros_chunk, Ending, PeerDeflate, WireInflate, RSV1, TAIL,
    ZEROS_CHUNK_LEN,
};
pub use proto::{check_decode, made_body, run_proto_envelope, ProtoOp};

// ---------------------------------------------------------------------------
// Input primitives
// ---------------------------------------------------------------------------

/// One byte, or `None` at the end of the input.
pub fn take_u8(u: &mut Unstructured<'_>) -> Option<u8> {
    u.bytes(1).ok().map(|b| b[0])
}

/// A little-endian `u16`, or `None` when fewer than 2 bytes are left.
pub fn take_u16(u: &mut Unstructured<'_>) -> Option<u16> {
    let b = u.bytes(2).ok()?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Up to `n` bytes (fewer at the end of the input).
pub fn take_bytes<'a>(u: &mut Unstructured<'a>, n: usize) -> &'a [u8] {
    let n = n.min(u.len());
    u.bytes(n).unwrap_or_default()
}

/// Cuts `data` into pieces. `spec` 0: one piece; otherwise pieces of
/// 1..=`spec` bytes whose sizes come from a small PRNG seeded with `spec`
/// (so `spec` 1 is byte by byte).
pub fn pieces(data: &[u8], spec: u8) -> Vec<&[u8]> {
    if spec == 0 {
        return vec![data];
    }
    let mut state = u32::from(spec).wrapping_mul(0x9E37_79B9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % usize::from(spec)) + 1;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// A deterministic generator for masks and keys.
pub fn rng(seed: u8) -> Box<dyn Random> {
    Box::new(OsSeededRng::from_seed([seed; 32]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const CRLFCRLF: &[u8] = b"\r\n\r\n";

/// Drains `poll_transmit` completely.
pub fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.poll_transmit(&mut out) > 0 {}
    out
}

/// Drains `poll_event`.
pub fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// A plaintext client and server past the opening handshake, both having
/// reported `Open`; the same `config` and `now` give the same pair.
pub fn open_pair(config: Config, now: Instant) -> (Connection, Connection) {
    open_pair_with(config.clone(), config, now)
}

/// As [`open_pair`], each side with its own settings. When both have
/// [`Config::deflate`] set, the client offers permessage-deflate and the
/// server accepts: both report the same parameters, which honour what
/// either side asked for ([`check_negotiated`]).
pub fn open_pair_with(
    client_config: Config,
    server_config: Config,
    now: Instant,
) -> (Connection, Connection) {
    let deflate = client_config
        .deflate
        .clone()
        .zip(server_config.deflate.clone());
    let (client, server) = wharf_core::pair::open(
        Arc::new(client_config),
        Arc::new(server_config),
        None,
        None,
        now,
    );
    assert!(client.is_open() && server.is_open());
    match &deflate {
        Some((c, s)) => {
            let params = server
                .deflate()
                .copied()
                .expect("a server with deflate settings accepts a wharf client's offer");
            assert_eq!(client.deflate(), Some(&params), "the two sides disagree");
            check_negotiated(&params, c, s);
        }
        None => assert!(client.deflate().is_none() && server.deflate().is_none()),
    }
    (client, server)
}

// ---------------------------------------------------------------------------
// Checking what a connection writes
// ---------------------------------------------------------------------------

/// Decodes everything a connection writes with the rules of the opposite
/// role and panics on the first violation:
///
/// - every frame decodes (`decode_raw_header` with the peer's expectations:
///   a client's frames masked, a server's not; no RSV bit but RSV1 when
///   permessage-deflate is in use; defined opcodes; control frames
///   unfragmented and at most 125 bytes);
/// - data frames form messages (no continuation outside a message, no new
///   message inside one), text messages are valid UTF-8;
/// - with permessage-deflate (RFC 7692): RSV1 only on the first frame of a
///   data message (§6.1), never when the writer was held to an 8-bit window;
///   a compressed message inflates ([`WireInflate`]) with the writer's
///   agreed window and, when it may not take context over, without the
///   earlier messages;
/// - a Close frame carries nothing, or a sendable code and a UTF-8 reason;
/// - no frame follows a Close frame, and once the connection is closed it
///   writes no Ping or Pong, only the rest of the data it had queued (see
///   `run_connection`) and the Close frame;
/// - a plaintext `poll_transmit` hands out whole frames (or the rest of one
///   a sink took part of, then whole frames).
///
/// A frame counts as written before or after `Closed` by the call that
/// wrote its first byte.
pub struct WireChecker {
    /// The writer is a client: frames must be masked.
    masked: bool,
    /// permessage-deflate is in use: how to read compressed messages.
    inflate: Option<WireInflate>,
    buf: Vec<u8>,
    /// The frame `buf` starts was begun after the connection had closed.
    buf_closed: bool,
    /// The message being reassembled.
    msg: Option<Partial>,
    close_seen: bool,
    /// Completed data messages not yet taken.
    pub messages: VecDeque<WireMessage>,
    /// Frames seen.
    pub frames: usize,
}

/// A data message the writer has partly written.
struct Partial {
    text: bool,
    /// RSV1 was set on its first frame.
    compressed: bool,
    data: Vec<u8>,
}

/// A data message as it went over the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WireMessage {
    /// The message, inflated when it was compressed.
    pub message: Message,
    /// Its first frame had RSV1 set.
    pub compressed: bool,
}

impl WireChecker {
    /// A checker for what a `writer_is_client` connection writes.
    pub fn new(writer_is_client: bool) -> WireChecker {
        WireChecker::with_deflate(writer_is_client, None)
    }

    /// A checker for a writer that negotiated permessage-deflate: `inflate`
    /// reads what it compresses.
    pub fn with_deflate(writer_is_client: bool, inflate: Option<WireInflate>) -> WireChecker {
        WireChecker {
            masked: writer_is_client,
            inflate,
            buf: Vec::new(),
            buf_closed: false,
            msg: None,
            close_seen: false,
            messages: VecDeque::new(),
            frames: 0,
        }
    }

    /// A Close frame was written.
    pub fn close_seen(&self) -> bool {
        self.close_seen
    }

    /// A data message is partly written.
    pub fn in_message(&self) -> bool {
        self.msg.is_some()
    }

    /// Checks the bytes of one `poll_transmit` call; `closed`: the connection
    /// had reported `Closed` (or was closed) before the call.
    pub fn push(&mut self, bytes: &[u8], closed: bool) {
        self.push_part(bytes, closed);
        assert!(
            self.buf.is_empty(),
            "poll_transmit left the output inside a frame: {:02x?}",
            self.buf
        );
    }

    /// Checks bytes that may end inside a frame (what a sink took in one
    /// `transmit_to` call); `closed` as for [`push`](Self::push), applied to
    /// the frames these bytes begin.
    pub fn push_part(&mut self, bytes: &[u8], closed: bool) {
        let carried = !self.buf.is_empty();
        self.buf.extend_from_slice(bytes);
        let allowed_rsv = if self.inflate.is_some() { RSV1 } else { 0 };
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let (h, n) = match bench_api::decode_raw_header(rest, self.masked, allowed_rsv) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    panic!("the connection wrote an invalid frame header: {e:?} in {rest:02x?}")
                }
            };
            let len = usize::try_from(h.payload_len).expect("payload fits in memory");
            if rest.len() < n + len {
                break;
            }
            let mut payload = rest[n..n + len].to_vec();
            if let Some(key) = h.mask {
                naive_mask(&mut payload, key, 0);
            }
            let begun_closed = if pos == 0 && carried {
                self.buf_closed
            } else {
                closed
            };
            pos += n + len;
            self.frame(h, payload, begun_closed);
        }
        self.buf.drain(..pos);
        if pos > 0 || !carried {
            self.buf_closed = closed;
        }
    }

    fn frame(&mut self, h: RawHeader, payload: Vec<u8>, closed: bool) {
        self.frames += 1;
        assert!(
            !self.close_seen,
            "a frame (opcode {:#x}) follows the Close frame",
            h.opcode
        );
        // After `Closed` the connection only finishes: the messages the
        // application queued before a protocol failure may still go out (the
        // harness checks they are exactly those), then the Close frame; no
        // Ping or Pong.
        assert!(
            !closed || matches!(h.opcode, 0x0 | 0x1 | 0x2 | 0x8),
            "after Closed the connection wrote a frame with opcode {:#x}",
            h.opcode
        );
        let rsv1 = h.rsv & RSV1 != 0;
        assert!(
            !rsv1 || matches!(h.opcode, 0x1 | 0x2),
            "RSV1 on a frame with opcode {:#x} (RFC 7692 §6.1)",
            h.opcode
        );
        match h.opcode {
            0x0 => {
                let Some(msg) = self.msg.as_mut() else {
                    panic!("continuation frame outside a message");
                };
                msg.data.extend_from_slice(&payload);
                if h.fin {
                    self.complete();
                }
            }
            0x1 | 0x2 => {
                assert!(
                    self.msg.is_none(),
                    "a new data frame (opcode {:#x}) inside an unfinished message",
                    h.opcode
                );
                if rsv1 {
                    assert!(
                        self.inflate.as_ref().is_some_and(WireInflate::may_compress),
                        "a compressed message from a writer held to an 8-bit window"
                    );
                }
                self.msg = Some(Partial {
                    text: h.opcode == 0x1,
                    compressed: rsv1,
                    data: payload,
                });
                if h.fin {
                    self.complete();
                }
            }
            0x8 => {
                self.close_seen = true;
                match payload.len() {
                    0 => {}
                    1 => panic!("Close frame with a 1-byte body"),
                    _ => {
                        let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                        assert!(code.is_sendable(), "Close frame with code {code}");
                        assert!(
                            std::str::from_utf8(&payload[2..]).is_ok(),
                            "Close reason is not UTF-8"
                        );
                    }
                }
            }
            0x9 | 0xA => assert!(payload.len() <= 125),
            op => panic!("decode_raw_header let opcode {op:#x} through"),
        }
    }

    fn complete(&mut self) {
        let Some(msg) = self.msg.take() else {
            return;
        };
        let data = match (&mut self.inflate, msg.compressed) {
            (Some(inflate), true) => inflate.message(&msg.data),
            _ => msg.data,
        };
        let message = if msg.text {
            let s = String::from_utf8(data)
                .expect("the connection wrote a text message that is not UTF-8");
            Message::text(s)
        } else {
            Message::binary(data)
        };
        self.messages.push_back(WireMessage {
            message,
            compressed: msg.compressed,
        });
    }
}

/// Byte-by-byte masking, the reference for §5.3.
pub fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[offset.wrapping_add(i) % 4];
    }
}

// ---------------------------------------------------------------------------
// Building peer frames
// ---------------------------------------------------------------------------

/// Encodes a frame as raw bytes, allowing anything: reserved opcodes and RSV
/// bits (in `b0`), either masking, non-minimal lengths (`len_code` 126 or 127
/// forces that encoding).
pub fn raw_frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8], len_code: u8) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 && len_code < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF && len_code != 127 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let start = out.len();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        out.extend_from_slice(payload);
        naive_mask(&mut out[start + 4..], key, 0);
    } else {
        out.extend_from_slice(payload);
    }
    out
}

// ---------------------------------------------------------------------------
// frame_decode
// ---------------------------------------------------------------------------

/// Config byte of `frame_decode`: bit 0 the decoder is the client (frames
/// unmasked) else the server; bit 1 stream mode; bit 2 small limits; bit 3
/// permessage-deflate negotiated (default [`DeflateConfig`] on both sides),
/// so that RSV1 frames are inflated.
fn frame_decode_config(flags: u8) -> Config {
    let mut config = Config::default();
    if flags & 2 != 0 {
        config.message_mode = MessageMode::Stream;
    }
    if flags & 4 != 0 {
        config.max_frame_size = 1000;
        config.max_message_size = 2000;
        config.max_fragments = 8;
    }
    if flags & 8 != 0 {
        config.deflate = Some(DeflateConfig::default());
    }
    config
}

/// Feeds `piece` as the tokio adapter reads: straight into the connection's
/// buffer while `read_with` lends it (a large frame arriving), else through
/// `handle_input`.
fn feed_direct(conn: &mut Connection, now: Instant, mut piece: &[u8]) {
    while !piece.is_empty() {
        let lent = conn.read_with(now, |room| {
            assert!(room.is_empty(), "read_with lends an empty buffer");
            assert!(
                room.capacity() >= 16 * 1024,
                "too little room: {}",
                room.capacity()
            );
            let n = piece.len().min(room.capacity());
            room.extend_from_slice(&piece[..n]);
            n
        });
        match lent {
            Some(n) => piece = &piece[n..],
            None => {
                conn.handle_input(now, piece);
                return;
            }
        }
    }
}

/// `event` with its message or ping / pong payload copied into a new
/// allocation (chunks are left as they are).
fn detach(event: Event) -> Event {
    match event {
        Event::Message(Message::Text(t)) => Event::Message(Message::text(t.as_str().to_owned())),
        Event::Message(Message::Binary(b)) => Event::Message(Message::binary(b.to_vec())),
        Event::Ping(p) => Event::Ping(Bytes::from(p.to_vec())),
        Event::Pong(p) => Event::Pong(Bytes::from(p.to_vec())),
        other => other,
    }
}

/// `frame_decode`. Input: flags (see [`frame_decode_config`]), a split count
/// (0..=15), that many `u16` split points, then the frame bytes.
///
/// 1. Header codec: walking the frames of the input, every header that
///    decodes decodes to "need more" on each shorter prefix, re-encodes to at
///    most as many bytes, to the very same bytes when its length encoding was
///    minimal, and decodes back to the same header; a header that fails fails
///    with one error on every prefix that is long enough to decide it. With
///    permessage-deflate the codec admits RSV1 and no other RSV bit.
/// 2. Incremental decoding: an open connection fed the bytes whole and a
///    second, identical one fed them cut at the split points (straight into
///    its buffer while `read_with` lends it) report the same
///    events (stream mode: the same data, chunk boundaries aside) and write
///    the same bytes; with permessage-deflate, wherever the cuts fall in the
///    compressed data.
pub fn run_frame_decode(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Some(flags) = take_u8(&mut u) else { return };
    let nsplits = take_u8(&mut u).unwrap_or(0) % 16;
    let mut splits: Vec<usize> = (0..nsplits)
        .filter_map(|_| take_u16(&mut u).map(usize::from))
        .collect();
    let bytes = take_bytes(&mut u, usize::MAX);
    let client = flags & 1 != 0;
    let expect_masked = !client;
    let allowed_rsv = if flags & 8 != 0 { RSV1 } else { 0 };

    check_headers(bytes, expect_masked, allowed_rsv);

    let config = frame_decode_config(flags);
    let now = Instant::now();
    let pick = |pair: (Connection, Connection)| if client { pair.0 } else { pair.1 };
    let mut whole = pick(open_pair(config.clone(), now));
    let mut split = pick(open_pair(config.clone(), now));

    whole.handle_input(now, bytes);
    let whole_events = events(&mut whole);
    let whole_out = drain(&mut whole);

    for s in &mut splits {
        *s %= bytes.len() + 1;
    }
    splits.sort_unstable();
    // The split side's events are taken after every piece, their payloads
    // copied out and the originals dropped, as an application that keeps
    // up would: the connection's buffer is then free again between frames,
    // where `read_with` lends it after a large frame.
    let mut split_events = Vec::new();
    let mut start = 0;
    for &end in splits.iter().chain(std::iter::once(&bytes.len())) {
        feed_direct(&mut split, now, &bytes[start..end]);
        split_events.extend(events(&mut split).into_iter().map(detach));
        start = end;
    }
    split_events.extend(events(&mut split));
    let split_out = drain(&mut split);

    match config.message_mode {
        MessageMode::Reassemble => {
            assert_eq!(
                whole_events, split_events,
                "events differ with splits {splits:?}"
            );
        }
        MessageMode::Stream => compare_streamed(&whole_events, &split_events),
    }
    assert_eq!(
        whole_out, split_out,
        "output differs with splits {splits:?}"
    );
    assert_eq!(whole.is_closed(), split.is_closed());
}

fn check_headers(bytes: &[u8], expect_masked: bool, allowed_rsv: u8) {
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        match bench_api::decode_raw_header(rest, expect_masked, allowed_rsv) {
            Ok(None) => {
                assert!(
                    rest.len() < HEADER_BUF_LEN,
                    "a {}-byte header is incomplete",
                    rest.len()
                );
                return;
            }
            Err(e) => {
                // Fail fast, and consistently: once a prefix decides the
                // error, every longer prefix reports the same one.
                let mut decided = false;
                for k in 0..=rest.len().min(HEADER_BUF_LEN) {
                    match bench_api::decode_raw_header(&rest[..k], expect_masked, allowed_rsv) {
                        Ok(None) => assert!(!decided, "error at {k} bytes undone by more bytes"),
                        Ok(Some(h)) => {
                            panic!("prefix of {k} bytes decodes to {h:?}, whole fails with {e:?}")
                        }
                        Err(e2) => {
                            assert_eq!(e2, e, "prefix of {k} bytes");
                            decided = true;
                        }
                    }
                }
                assert!(decided);
                return;
            }
            Ok(Some((h, n))) => {
                for k in 0..n {
                    assert_eq!(
                        bench_api::decode_raw_header(&rest[..k], expect_masked, allowed_rsv),
                        Ok(None),
                        "prefix of {k} bytes of a {n}-byte header"
                    );
                }
                assert_eq!(h.mask.is_some(), expect_masked);
                let mut out = [0u8; HEADER_BUF_LEN];
                let m = bench_api::encode_raw_header(&h, &mut out)
                    .expect("a decoded opcode is a defined one");
                assert!(m <= n, "re-encoding grew the header: {m} > {n}");
                if m == n {
                    assert_eq!(
                        &out[..m],
                        &rest[..n],
                        "minimal header re-encodes differently"
                    );
                }
                assert_eq!(
                    bench_api::decode_raw_header(&out[..m], expect_masked, allowed_rsv),
                    Ok(Some((h, m))),
                    "re-encoded header decodes differently"
                );
                let Some(next) = usize::try_from(h.payload_len)
                    .ok()
                    .and_then(|l| l.checked_add(n))
                else {
                    return;
                };
                pos = pos.saturating_add(next);
            }
        }
    }
}

/// Consecutive chunks merged: (text?, data, first, last).
#[derive(Debug, PartialEq)]
enum Norm {
    Chunks(MessageKind, Vec<u8>, bool, bool),
    Other(Event),
}

fn normalize(events: &[Event]) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::new();
    for e in events {
        if let Event::Chunk(c) = e {
            if let Some(Norm::Chunks(kind, data, _, last)) = out.last_mut() {
                if !*last && !c.first {
                    assert_eq!(*kind, c.kind, "chunk kind changed inside a message");
                    data.extend_from_slice(&c.data);
                    *last = c.last;
                    continue;
                }
            }
            out.push(Norm::Chunks(c.kind, c.data.to_vec(), c.first, c.last));
        } else {
            out.push(Norm::Other(e.clone()));
        }
    }
    out
}

/// Stream mode: the same data, except that when the connection fails the
/// split run may have reported more of the failing message (the whole run
/// saw the bad byte before reporting any of it).
fn compare_streamed(whole: &[Event], split: &[Event]) {
    let w = normalize(whole);
    let s = normalize(split);
    if w == s {
        return;
    }
    let failed = matches!(whole.last(), Some(Event::Closed(info)) if info.error.is_some());
    assert!(
        failed,
        "streamed events differ:\n whole {w:?}\n split {s:?}"
    );
    assert_eq!(w.last(), s.last(), "different endings");
    // Drop an unfinished chunk run right before the final Closed in each.
    let strip = |mut v: Vec<Norm>| -> (Vec<Norm>, Vec<u8>) {
        let last = v.pop();
        let data = match v.last() {
            Some(Norm::Chunks(_, _, _, false)) => match v.pop() {
                Some(Norm::Chunks(_, d, _, _)) => d,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        v.extend(last);
        (v, data)
    };
    let (w, wd) = strip(w);
    let (s, sd) = strip(s);
    assert_eq!(w, s, "streamed events differ before the failure");
    assert!(
        sd.starts_with(&wd),
        "the whole run reported data the split run did not"
    );
}

// ---------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------

/// Header limits from a flags byte: bits 2-3 `max_header_bytes`, bits 4-5
/// `max_headers`; bit 7 permessage-deflate ([`handshake_deflate`]).
fn handshake_config(flags: u8) -> Config {
    let mut config = Config::default();
    config.max_header_bytes = [64, 256, 1024, 16 * 1024][usize::from(flags >> 2 & 3)];
    config.max_headers = [2, 8, 64, 100][usize::from(flags >> 4 & 3)];
    if flags & 0x80 != 0 {
        config.deflate = Some(handshake_deflate());
    }
    config
}

/// The permessage-deflate settings of the handshake targets: the peer is
/// asked for no context takeover and a window of at most 12 bits.
pub fn handshake_deflate() -> DeflateConfig {
    let mut d = DeflateConfig::default();
    d.peer_no_context_takeover = true;
    d.peer_max_window_bits = 12;
    d
}

/// Whether an HTTP head (lines) has a `Sec-WebSocket-Extensions` header
/// naming permessage-deflate.
fn names_deflate<'a>(mut headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> bool {
    headers.any(|(name, value)| {
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            && String::from_utf8_lossy(value)
                .to_ascii_lowercase()
                .contains("permessage-deflate")
    })
}

/// Checks an HTTP error response that a server wrote: complete head,
/// status 4xx/5xx, and a body of exactly `Content-Length` bytes.
fn check_http_error(out: &[u8]) {
    let Some(end) = find(out, CRLFCRLF) else {
        panic!(
            "incomplete HTTP error response: {:?}",
            String::from_utf8_lossy(out)
        );
    };
    let head = std::str::from_utf8(&out[..end]).expect("the server's head is ASCII");
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    assert!(
        (400..=599).contains(&status),
        "refusal with status {status}"
    );
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("an error response has a Content-Length");
    assert_eq!(
        out.len() - end - 4,
        length,
        "body length differs from Content-Length"
    );
}

/// `handshake_request`: arbitrary bytes to a plaintext server.
///
/// Input: flags (bits 0-1 the decision: accept, reject, accept after all
/// input, never decide; bits 2-5 header limits; bit 6 accept the first
/// offered subprotocol; bit 7 permessage-deflate), a piece-size byte (see
/// [`pieces`]), then the bytes.
///
/// - no panic; `Closed` comes once, last, and before a decision it carries a
///   typed [`Error::Handshake`];
/// - a refused request is answered with a complete 4xx/5xx response and
///   nothing else; an accepted one with `101` and the right
///   `Sec-WebSocket-Accept`, then only valid server frames;
/// - permessage-deflate is agreed only when set and offered, the `101` then
///   answers with `Sec-WebSocket-Extensions: permessage-deflate…` (and
///   otherwise names no extension), and the agreed parameters include the
///   client's no context takeover the server asks for;
/// - memory: as long as the server neither reported the request nor closed,
///   it has seen at most `max_header_bytes` bytes and no `\r\n\r\n`; waiting
///   for the decision it holds at most `max_header_bytes` bytes after the
///   head; the request has at most `max_headers` headers;
/// - the handshake timeout closes an undecided connection.
pub fn run_handshake_request(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Some(flags) = take_u8(&mut u) else { return };
    let spec = take_u8(&mut u).unwrap_or(0);
    let input = take_bytes(&mut u, usize::MAX);
    let config = handshake_config(flags);
    let max = config.max_header_bytes;
    let max_headers = config.max_headers;
    let decision = flags & 3;
    let now = Instant::now();
    let mut server = Connection::server_with_rng(Arc::new(config), None, now, rng(2))
        .expect("plaintext server needs no TLS");

    let mut fed = 0usize;
    let mut head_len: Option<usize> = None; // set once the request was reported
    let mut decided = false;
    let mut accepted = false;
    let mut closed = false;
    let mut refusal: Vec<u8> = Vec::new();
    let mut wire = WireChecker::new(false);
    let mut head_done = false;
    let mut out_acc: Vec<u8> = Vec::new();

    let decide = |server: &mut Connection, accepted: &mut bool, req: &wharf_core::Request| {
        if decision == 1 {
            let reject = Reject {
                status: 403,
                headers: Vec::new(),
                body: b"no".to_vec(),
            };
            server.reject(reject).expect("a valid rejection");
        } else {
            let mut accept = Accept::default();
            if flags & 0x40 != 0 {
                accept.subprotocol = req.subprotocols().first().cloned();
            }
            server
                .accept(accept)
                .expect("accepting an offered subprotocol");
            *accepted = true;
        }
    };

    let all = input;
    let mut parts = pieces(input, spec);
    parts.push(&[]); // a final round to act on a delayed decision
    let mut pending_req: Option<wharf_core::Request> = None;
    let mut offered_deflate = false;
    for (i, piece) in parts.iter().enumerate() {
        let last_round = i + 1 == parts.len();
        let was_closed = server.is_closed();
        if last_round {
            if let (Some(req), 2) = (pending_req.take(), decision) {
                if !closed {
                    decide(&mut server, &mut accepted, &req);
                    decided = true;
                }
            }
        } else {
            fed += piece.len();
            server.handle_input(now, piece);
        }
        let out = drain(&mut server);
        if accepted {
            out_acc.extend_from_slice(&out);
            if !head_done {
                if let Some(end) = find(&out_acc, CRLFCRLF) {
                    let head = String::from_utf8_lossy(&out_acc[..end]).into_owned();
                    assert!(
                        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
                        "accepted with {head:?}"
                    );
                    head_done = true;
                    let answered = names_deflate(
                        head.lines()
                            .filter_map(|l| l.split_once(": ").map(|(n, v)| (n, v.as_bytes()))),
                    );
                    let agreed = server.deflate().copied();
                    assert_eq!(answered, agreed.is_some(), "the 101 and deflate() disagree");
                    assert!(
                        !head
                            .to_ascii_lowercase()
                            .contains("sec-websocket-extensions")
                            || answered,
                        "the 101 names an extension other than permessage-deflate: {head:?}"
                    );
                    if let Some(p) = agreed {
                        assert!(
                            flags & 0x80 != 0 && offered_deflate,
                            "deflate agreed unasked"
                        );
                        assert!(p.client_no_context_takeover, "{p:?}");
                    }
                    let rest = out_acc[end + 4..].to_vec();
                    wire.push(&rest, was_closed);
                }
            } else {
                wire.push(&out, was_closed);
            }
        } else {
            refusal.extend_from_slice(&out);
        }
        for event in events(&mut server) {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                Event::Request(req) => {
                    assert!(head_len.is_none(), "second Request");
                    let end = find(&all[..fed], CRLFCRLF)
                        .expect("a request was reported without a complete head")
                        + 4;
                    assert!(
                        end <= max,
                        "a head of {end} bytes passed a {max}-byte limit"
                    );
                    head_len = Some(end);
                    assert!(req.headers().len() <= max_headers);
                    assert!(!req.key().is_empty());
                    offered_deflate = names_deflate(
                        req.headers()
                            .iter()
                            .map(|(n, v)| (n.as_str(), v.as_slice())),
                    );
                    match decision {
                        0 | 1 => {
                            decide(&mut server, &mut accepted, &req);
                            decided = true;
                            // The decision's own output and events: next round.
                        }
                        2 => pending_req = Some(*req),
                        _ => {}
                    }
                }
                Event::Open(_) => assert!(accepted, "Open without accept"),
                Event::Closed(info) => {
                    closed = true;
                    if !accepted {
                        assert!(
                            matches!(info.error, Some(Error::Handshake(_))),
                            "handshake ended without a typed handshake error: {info:?}"
                        );
                    }
                }
                _ => assert!(accepted, "frame event before the handshake: {event:?}"),
            }
        }
        // Events raised by accept/reject inside the loop above.
        for event in events(&mut server) {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                Event::Open(_) => assert!(accepted),
                Event::Closed(info) => {
                    closed = true;
                    if !accepted {
                        assert!(matches!(info.error, Some(Error::Handshake(_))), "{info:?}");
                    }
                }
                Event::Request(_) => panic!("second Request"),
                _ => assert!(accepted),
            }
        }
        assert_eq!(server.is_closed(), closed);
        // Memory bounds, derived from behaviour.
        if !closed {
            match head_len {
                None => {
                    assert!(fed <= max, "{fed} bytes held without a head (limit {max})");
                    assert!(
                        find(&all[..fed], CRLFCRLF).is_none(),
                        "a complete head went unreported"
                    );
                }
                Some(h) if !decided => {
                    assert!(
                        fed - h <= max,
                        "{} bytes held after the head (limit {max})",
                        fed - h
                    );
                }
                Some(_) => {}
            }
        }
    }
    // A late decision's output.
    let out = drain(&mut server);
    if accepted {
        wire.push(&out, true);
    } else {
        refusal.extend_from_slice(&out);
    }
    if !accepted && !refusal.is_empty() {
        check_http_error(&refusal);
    }
    if !accepted {
        assert!(!wire.close_seen());
    }
    // Timeouts bound an undecided handshake.
    server.handle_timeout(now + Duration::from_secs(11));
    let evs = events(&mut server);
    if closed {
        assert!(evs.is_empty(), "events after Closed: {evs:?}");
    } else if !accepted {
        assert!(
            server.is_closed(),
            "the handshake timeout did not close the connection"
        );
    }
    let out = drain(&mut server);
    if !accepted {
        assert!(
            out.is_empty() || !closed,
            "output after a refusal: {out:02x?}"
        );
    }
}

/// `handshake_response`: arbitrary bytes to a plaintext client after its
/// request. In the input, `{ACCEPT}` is replaced with the right
/// `Sec-WebSocket-Accept` value so that the fuzzer gets past the key check.
///
/// Input: flags (bits 2-5 header limits; bit 6 offer subprotocols `chat` and
/// `superchat`; bit 7 offer permessage-deflate, [`handshake_deflate`]), a
/// piece-size byte, then the bytes.
///
/// - no panic; `Closed` once and last; before `Open` it carries a typed
///   [`Error::Handshake`] (a non-101 answer is `Rejected`);
/// - `Open` only after a complete head, with status 101 and an offered (or
///   no) subprotocol; with permessage-deflate agreed only when offered, and
///   then granting what the client asked (no server context takeover, a
///   window of at most 12 bits);
/// - memory: while neither open nor closed the client has seen at most
///   `max_header_bytes` bytes and no `\r\n\r\n`;
/// - the client writes nothing after its request until open, then only
///   valid masked frames, and after `Closed` at most a Close frame.
pub fn run_handshake_response(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Some(flags) = take_u8(&mut u) else { return };
    let spec = take_u8(&mut u).unwrap_or(0);
    let raw = take_bytes(&mut u, usize::MAX);
    let config = handshake_config(flags);
    let max = config.max_header_bytes;
    let now = Instant::now();
    let mut request = ClientRequest::new("ws://localhost/chat").expect("a constant, valid URL");
    let offered = flags & 0x40 != 0;
    if offered {
        request = request.subprotocol("chat").subprotocol("superchat");
    }
    let mut client = Connection::client_with_rng(Arc::new(config), &request, None, now, rng(1))
        .expect("plaintext client needs no TLS");
    let head = drain(&mut client);
    let head_str = std::str::from_utf8(&head).expect("the request is ASCII");
    let key = head_str
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("the request carries a key");
    let accept = bench_api::accept_key(key);
    let input = replace(raw, b"{ACCEPT}", accept.as_bytes());

    let mut fed = 0usize;
    let mut open = false;
    let mut closed = false;
    let mut wire = WireChecker::new(true);
    for piece in pieces(&input, spec) {
        let was_closed = client.is_closed();
        fed += piece.len();
        client.handle_input(now, piece);
        let out = drain(&mut client);
        if !open && !client.is_open() && !client.is_closed() {
            assert!(out.is_empty(), "client wrote before open: {out:02x?}");
        }
        wire.push(&out, was_closed);
        for event in events(&mut client) {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                Event::Open(o) => {
                    assert!(!open, "second Open");
                    open = true;
                    let end = find(&input[..fed], CRLFCRLF).expect("Open without a complete head");
                    assert!(
                        end + 4 <= max,
                        "a head of {} bytes passed a {max}-byte limit",
                        end + 4
                    );
                    let response = o.response.expect("the client's Open carries the response");
                    assert_eq!(response.status, 101);
                    assert_eq!(client.deflate(), response.deflate());
                    if let Some(p) = response.deflate() {
                        assert!(flags & 0x80 != 0, "deflate agreed without an offer");
                        assert!(
                            p.server_no_context_takeover && p.server_max_window_bits <= 12,
                            "the server's answer did not grant the offer: {p:?}"
                        );
                    }
                    if let Some(p) = &o.subprotocol {
                        assert!(
                            offered && (p == "chat" || p == "superchat"),
                            "unoffered {p:?}"
                        );
                    }
                }
                Event::Closed(info) => {
                    closed = true;
                    if !open {
                        assert!(
                            matches!(info.error, Some(Error::Handshake(_))),
                            "handshake ended without a typed handshake error: {info:?}"
                        );
                    }
                }
                Event::Request(_) => panic!("a client reported a Request"),
                other => assert!(open, "frame event before Open: {other:?}"),
            }
        }
        assert_eq!(client.is_closed(), closed);
        if !open && !closed {
            assert!(fed <= max, "{fed} bytes held without a head (limit {max})");
            assert!(
                find(&input[..fed], CRLFCRLF).is_none(),
                "a complete head went unreported"
            );
        }
    }
    // A client that is open can still close properly.
    if open && !closed {
        client
            .close(CloseCode::NORMAL, "bye")
            .expect("a valid close");
        let out = drain(&mut client);
        wire.push(&out, false);
        assert!(wire.close_seen(), "close() wrote no Close frame");
    }
    client.handle_timeout(now + Duration::from_secs(11));
    let evs = events(&mut client);
    if closed {
        assert!(evs.is_empty(), "events after Closed: {evs:?}");
    } else if !open {
        assert!(
            client.is_closed(),
            "the handshake timeout did not close the connection"
        );
    }
    let was_closed = client.is_closed();
    let out = drain(&mut client);
    wire.push(&out, was_closed);
}

/// `haystack` with every `needle` replaced.
pub fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(i) = find(rest, needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

/// One step of the `connection_*` targets. The byte layout (tag byte
/// `% 11`, then the fields in order; `u16` little-endian; byte strings with a
/// length byte) is [`Op::parse`] / [`Op::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A frame from the peer, delivered in pieces (`chunk`, see [`pieces`]).
    /// `b0`: FIN, RSV and opcode as sent. `flags`: bit 0 wrong masking for
    /// the role; bit 1 16-bit length, bit 2 64-bit length (non-minimal);
    /// bit 3 pad with 0x80 bytes instead of `a`; bit 4 deliver only the
    /// first half. The payload is `payload` then `extra` padding bytes.
    Frame {
        b0: u8,
        flags: u8,
        key: [u8; 4],
        payload: Vec<u8>,
        extra: u16,
        chunk: u8,
    },
    /// Raw bytes from the peer, in pieces.
    Raw { bytes: Vec<u8>, chunk: u8 },
    /// `send` a message: `kind` % 3 = ASCII text, multi-byte text, binary;
    /// `len` bytes, times 8 when bit 0 of `scale` is set; bit 1 of `scale`:
    /// `send_uncompressed` instead.
    Send { kind: u8, len: u16, scale: u8 },
    /// `ping` with `len` bytes (over 125 must be refused).
    Ping { len: u8 },
    /// `close` with `code` and a reason of `reason` bytes.
    Close { code: u16, reason: u8 },
    /// Advance the clock by `ms` milliseconds and run the timers.
    Advance { ms: u16 },
    /// The transport ended.
    Eof,
    /// Drain `poll_transmit` completely (matters in lazy mode, and when the
    /// sink of `transmit_to` would block).
    Drain,
    /// `take_unsent`.
    TakeUnsent,
    /// A whole, well-formed data message from the peer, framed by the
    /// harness and, when permessage-deflate is in use, compressed by it as a
    /// peer must ([`PeerDeflate`]: the agreed window and context takeover),
    /// so that the harness knows what the connection must make of it.
    ///
    /// `source % 6`: 0-2 [`make_message`]`(source, len, 0)` (up to 64 KiB);
    /// 3 `data` as binary; 4 `data` as text (not always UTF-8); 5 zeros,
    /// binary (text when `scale` is odd): `len % 64 + 1` MiB of them
    /// compressed (a compression bomb), or that many KiB when the message
    /// goes uncompressed.
    ///
    /// `flags`: bit 0 send it uncompressed (RSV1 clear); bit 1 start a new
    /// DEFLATE context first; bit 2 end the DEFLATE data with a final block
    /// (§7.2.3.4) rather than a sync flush; bit 3 a Ping after the first
    /// frame; bit 4 an empty last frame.
    ///
    /// The (compressed) payload is cut into frames by [`pieces`]`(_, split)`,
    /// masked with `key` when the peer is a client, and the frames are
    /// delivered in pieces (`chunk`).
    PeerMessage {
        source: u8,
        len: u16,
        scale: u8,
        data: Vec<u8>,
        flags: u8,
        split: u8,
        key: [u8; 4],
        chunk: u8,
    },
    /// How the following transmit steps of the run loop write (until the
    /// next `Writer`; before the first, `poll_transmit` only), and a fresh
    /// [`Sink`] for `transmit_to`, its calls counted from 0:
    ///
    /// - `mode`: transmit step `k` (counted from this op) uses
    ///   `transmit_to` into the sink when bit `k % 8` is set, else
    ///   `poll_transmit` (once in lazy mode, else until it returns 0);
    /// - `limit`: the most the sink takes per call, by bits 0-1: 0 no limit;
    ///   1 tiny, `1 + (limit >> 2) % 13` bytes; 2 medium, entry
    ///   `(limit >> 2) % 16` of [`SINK_MEDIUM`] (sizes around frame headers,
    ///   4 KiB and 64 KiB frames); 3 a new size
    ///   each call, 1 to `2 << ((limit >> 2) % 18)` bytes (a PRNG seeded with
    ///   `limit`);
    /// - `block`: sink call `n` returns `WouldBlock` when bit `n % 8` is set;
    /// - `interrupt`: `p = interrupt % 8`; when not 0, every `p + 1`-th call
    ///   returns `Interrupted` (never two in a row);
    /// - `fail`: when its top three bits are all set, sink call
    ///   `4 * (fail & 0x1F)` fails for good: `BrokenPipe` (`fail` even) or
    ///   `ConnectionReset` (odd). The harness then does what an adapter
    ///   does: `handle_eof`, and whatever the connection still has is
    ///   thrown away.
    ///
    /// Errors take nothing. A call is the hard error when its number says
    /// so, else `Interrupted`, else `WouldBlock`, else it takes bytes. After
    /// [`SINK_CALLS`] calls that took bytes in a run, the limit is lifted.
    Writer {
        mode: u8,
        limit: u8,
        block: u8,
        interrupt: u8,
        fail: u8,
    },
}

fn take_key(u: &mut Unstructured<'_>) -> [u8; 4] {
    let k = take_bytes(u, 4);
    let mut key = [0u8; 4];
    key[..k.len()].copy_from_slice(k);
    key
}

impl Op {
    /// Reads one op; `None` at the end of the input.
    pub fn parse(u: &mut Unstructured<'_>) -> Option<Op> {
        let tag = take_u8(u)? % 11;
        Some(match tag {
            0 => {
                let b0 = take_u8(u)?;
                let flags = take_u8(u)?;
                let key = take_key(u);
                let n = take_u8(u).unwrap_or(0);
                let payload = take_bytes(u, usize::from(n)).to_vec();
                let extra = take_u16(u).unwrap_or(0);
                let chunk = take_u8(u).unwrap_or(0);
                Op::Frame {
                    b0,
                    flags,
                    key,
                    payload,
                    extra,
                    chunk,
                }
            }
            1 => {
                let n = take_u8(u)?;
                let bytes = take_bytes(u, usize::from(n)).to_vec();
                let chunk = take_u8(u).unwrap_or(0);
                Op::Raw { bytes, chunk }
            }
            2 => Op::Send {
                kind: take_u8(u)?,
                len: take_u16(u)?,
                scale: take_u8(u).unwrap_or(0),
            },
            3 => Op::Ping { len: take_u8(u)? },
            4 => Op::Close {
                code: take_u16(u)?,
                reason: take_u8(u).unwrap_or(0),
            },
            5 => Op::Advance { ms: take_u16(u)? },
            6 => Op::Eof,
            7 => Op::Drain,
            8 => Op::TakeUnsent,
            9 => {
                let source = take_u8(u)?;
                let len = take_u16(u).unwrap_or(0);
                let scale = take_u8(u).unwrap_or(0);
                let n = take_u8(u).unwrap_or(0);
                let data = take_bytes(u, usize::from(n)).to_vec();
                let flags = take_u8(u).unwrap_or(0);
                let split = take_u8(u).unwrap_or(0);
                let key = take_key(u);
                let chunk = take_u8(u).unwrap_or(0);
                Op::PeerMessage {
                    source,
                    len,
                    scale,
                    data,
                    flags,
                    split,
                    key,
                    chunk,
                }
            }
            _ => Op::Writer {
                mode: take_u8(u)?,
                limit: take_u8(u).unwrap_or(0),
                block: take_u8(u).unwrap_or(0),
                interrupt: take_u8(u).unwrap_or(0),
                fail: take_u8(u).unwrap_or(0),
            },
        })
    }

    /// The bytes [`parse`](Self::parse) reads back as this op (payloads
    /// longer than 255 bytes are cut).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Frame {
                b0,
                flags,
                key,
                payload,
                extra,
                chunk,
            } => {
                out.extend_from_slice(&[0, *b0, *flags]);
                out.extend_from_slice(key);
                let n = payload.len().min(255);
                out.push(n as u8);
                out.extend_from_slice(&payload[..n]);
                out.extend_from_slice(&extra.to_le_bytes());
                out.push(*chunk);
            }
            Op::Raw { bytes, chunk } => {
                let n = bytes.len().min(255);
                out.extend_from_slice(&[1, n as u8]);
                out.extend_from_slice(&bytes[..n]);
                out.push(*chunk);
            }
            Op::Send { kind, len, scale } => {
                out.extend_from_slice(&[2, *kind]);
                out.extend_from_slice(&len.to_le_bytes());
                out.push(*scale);
            }
            Op::Ping { len } => out.extend_from_slice(&[3, *len]),
            Op::Close { code, reason } => {
                out.push(4);
                out.extend_from_slice(&code.to_le_bytes());
                out.push(*reason);
            }
            Op::Advance { ms } => {
                out.push(5);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Op::Eof => out.push(6),
            Op::Drain => out.push(7),
            Op::TakeUnsent => out.push(8),
            Op::PeerMessage {
                source,
                len,
                scale,
                data,
                flags,
                split,
                key,
                chunk,
            } => {
                out.extend_from_slice(&[9, *source]);
                out.extend_from_slice(&len.to_le_bytes());
                out.push(*scale);
                let n = data.len().min(255);
                out.push(n as u8);
                out.extend_from_slice(&data[..n]);
                out.extend_from_slice(&[*flags, *split]);
                out.extend_from_slice(key);
                out.push(*chunk);
            }
            Op::Writer {
                mode,
                limit,
                block,
                interrupt,
                fail,
            } => out.extend_from_slice(&[10, *mode, *limit, *block, *interrupt, *fail]),
        }
    }
}

/// Two config bytes of the `connection_*` targets. `a`: bit 0 stream mode;
/// bit 1 keepalive (ping every 1 s, pong deadline 2 s); bit 2 lazy transmit
/// (one `poll_transmit` call per step instead of draining); bits 3-4 the
/// incoming limits; bits 5-6 the send queue; bit 7 permessage-deflate (see
/// [`connection_deflate`]). `b`: the outgoing frame size.
pub fn connection_config(a: u8, b: u8) -> (Config, bool) {
    let mut c = Config::default();
    if a & 1 != 0 {
        c.message_mode = MessageMode::Stream;
    }
    if a & 2 != 0 {
        c.ping_interval = Some(Duration::from_secs(1));
        c.pong_timeout = Duration::from_secs(2);
    }
    let lazy = a & 4 != 0;
    let i = usize::from(a >> 3 & 3);
    c.max_frame_size = [16 << 20, 1024, 125, 65536][i];
    c.max_message_size = [64 << 20, 4096, 200, 100_000][i];
    c.max_fragments = [100_000, 4, 2, 16][i];
    c.max_send_queue = [16 << 20, 1000, 100, 300_000][usize::from(a >> 5 & 3)];
    c.max_outgoing_frame = [64 * 1024, 1, 7, 100, 1000, 4096][usize::from(b % 6)];
    (c, lazy)
}

/// The permessage-deflate settings of the `connection_*` targets (config
/// bit 7), from three more bytes: `c` the client's and `d` the server's
/// [`DeflateConfig`] ([`deflate_config`]: windows, context takeover, what
/// each asks of the other); `e` bits 0-3 the compression level of the side
/// under test (`% 10`), bits 4-5 its `min_message_size` (32, 0, 1, 100),
/// bits 6-7 the harness peer's level (1, 6, 9, 0). The incoming message
/// limit is held to 1 MiB at most, so that compression bombs stay cheap.
/// Returns the client's and the server's [`Config`] and the peer's level.
pub fn connection_deflate(
    mut config: Config,
    server: bool,
    c: u8,
    d: u8,
    e: u8,
) -> (Config, Config, u32) {
    config.max_message_size = config.max_message_size.min(1 << 20);
    let mut client = config.clone();
    let mut srv = config;
    let mut own = [deflate_config(c), deflate_config(d)];
    let tested = usize::from(server);
    own[tested].level = u32::from(e & 15) % 10;
    own[tested].min_message_size = [32, 0, 1, 100][usize::from(e >> 4 & 3)];
    let [oc, os] = own;
    client.deflate = Some(oc);
    srv.deflate = Some(os);
    (client, srv, [1, 6, 9, 0][usize::from(e >> 6)])
}

/// The message a `Send` op sends.
pub fn make_message(kind: u8, len: u16, scale: u8) -> Message {
    let len = usize::from(len) * if scale & 1 != 0 { 8 } else { 1 };
    match kind % 3 {
        0 => Message::text("a".repeat(len)),
        1 => {
            let mut s = String::with_capacity(len + 4);
            for c in ['é', '€', '😀', 'x'].iter().cycle() {
                if s.len() >= len {
                    break;
                }
                s.push(*c);
            }
            Message::text(s)
        }
        _ => Message::binary((0..len).map(|i| i as u8).collect::<Vec<u8>>()),
    }
}

/// Why a well-formed message from the peer may fail the connection, given
/// the limits (RFC 6455 §7.4.1: 1009 for size, 1007 for bad UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    FrameTooLarge,
    TooManyFragments,
    MessageTooLarge,
    InvalidUtf8,
}

impl Fault {
    fn of(error: &ProtocolError) -> Option<Fault> {
        Some(match error {
            ProtocolError::FrameTooLarge { .. } => Fault::FrameTooLarge,
            ProtocolError::TooManyFragments { .. } => Fault::TooManyFragments,
            ProtocolError::MessageTooLarge { .. } => Fault::MessageTooLarge,
            ProtocolError::InvalidUtf8 => Fault::InvalidUtf8,
            _ => return None,
        })
    }

    fn code(self) -> CloseCode {
        match self {
            Fault::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::MESSAGE_TOO_BIG,
        }
    }
}

/// Per-call limits of a medium [`Sink`]: around a 2-, 4- and 10-byte frame
/// header, the 4 KiB from which the core writes unmasked data frames
/// straight from the message, and 64 KiB frames.
pub const SINK_MEDIUM: [usize; 16] = [
    2, 14, 125, 1000, 4095, 4096, 4097, 4100, 4101, 8192, 16_384, 65_535, 65_536, 65_546, 100_000,
    262_144,
];

/// What one call of the [`Sink`] does.
enum SinkCall {
    /// Take at most this many bytes.
    Take(usize),
    Fail(io::ErrorKind),
}

/// The transport `transmit_to` writes into, throttled as [`Op::Writer`]
/// describes. It gathers across slices like `writev`. What it takes is
/// collected in `taken` until the harness checks it.
struct Sink {
    limit: u8,
    block: u8,
    interrupt: u8,
    /// The call that fails for good, and how.
    fail: Option<(u32, io::ErrorKind)>,
    /// Calls so far.
    calls: u32,
    /// Calls left in this run before the limit is lifted.
    budget: u32,
    /// State of the PRNG of varying limits.
    rng: u32,
    /// Bytes taken and not yet checked.
    taken: Vec<u8>,
    /// It returned `WouldBlock` since `blocked` was last reset.
    blocked: bool,
    /// The hard error it returned.
    failed: Option<io::ErrorKind>,
}

impl Sink {
    /// A sink as [`Op::Writer`] describes, with `budget` limited calls left
    /// in the run.
    fn new(limit: u8, block: u8, interrupt: u8, fail: u8, budget: u32) -> Sink {
        let fail = (fail & 0xE0 == 0xE0).then(|| {
            let kind = if fail & 1 == 0 {
                io::ErrorKind::BrokenPipe
            } else {
                io::ErrorKind::ConnectionReset
            };
            (4 * u32::from(fail & 0x1F), kind)
        });
        Sink {
            limit,
            block,
            interrupt: interrupt % 8,
            fail,
            calls: 0,
            budget,
            rng: u32::from(limit).wrapping_mul(0x9E37_79B9) | 1,
            taken: Vec::new(),
            blocked: false,
            failed: None,
        }
    }

    fn next_call(&mut self) -> SinkCall {
        let n = self.calls;
        self.calls += 1;
        if let Some((at, kind)) = self.fail {
            if n == at {
                self.fail = None;
                self.failed = Some(kind);
                return SinkCall::Fail(kind);
            }
        }
        let p = u32::from(self.interrupt);
        if p != 0 && n % (p + 1) == p {
            return SinkCall::Fail(io::ErrorKind::Interrupted);
        }
        if self.block >> (n % 8) & 1 != 0 {
            self.blocked = true;
            return SinkCall::Fail(io::ErrorKind::WouldBlock);
        }
        if self.budget == 0 {
            return SinkCall::Take(usize::MAX);
        }
        self.budget -= 1;
        let v = usize::from(self.limit >> 2);
        SinkCall::Take(match self.limit & 3 {
            0 => usize::MAX,
            1 => 1 + v % 13,
            2 => SINK_MEDIUM[v % SINK_MEDIUM.len()],
            _ => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 17;
                self.rng ^= self.rng << 5;
                1 + self.rng as usize % (2 << (v % 18))
            }
        })
    }
}

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut room = match self.next_call() {
            SinkCall::Take(n) => n,
            SinkCall::Fail(kind) => return Err(kind.into()),
        };
        let before = self.taken.len();
        for b in bufs {
            let n = b.len().min(room);
            self.taken.extend_from_slice(&b[..n]);
            room -= n;
            if room == 0 {
                break;
            }
        }
        Ok(self.taken.len() - before)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the run loop's transmit steps write, as the last [`Op::Writer`] set.
struct Writer {
    /// Bit `step % 8` set: that step uses `transmit_to`.
    mode: u8,
    /// Transmit steps since the `Writer` op.
    step: u32,
    sink: Sink,
}

impl Writer {
    /// Whether the next transmit step uses `transmit_to`.
    fn next_uses_sink(&mut self) -> bool {
        let k = self.step % 8;
        self.step += 1;
        self.mode >> k & 1 != 0
    }
}

/// Everything the `connection_*` targets track about the connection under test.
struct Harness {
    conn: Connection,
    config: Config,
    lazy: bool,
    now: Instant,
    wire: WireChecker,
    /// Messages `send` accepted and not yet seen complete on the wire, and
    /// whether each must go out compressed.
    expected: VecDeque<(Message, bool)>,
    /// The side under test compresses messages of at least this many bytes
    /// (permessage-deflate in use and a window it can compress with).
    tx_min: Option<usize>,
    /// The peer's compressor, when permessage-deflate is in use.
    peer: Option<PeerDeflate>,
    /// Only `PeerMessage`s came in so far and `close` was not called: the
    /// harness knows the decoder's state (between messages, the DEFLATE
    /// context what the peer sent).
    in_sync: bool,
    /// While in sync: messages the peer sent that must still be delivered.
    incoming: VecDeque<Message>,
    /// While in sync, stream mode: the data of the message being streamed.
    chunk_data: Vec<u8>,
    closed: bool,
    /// What `Closed` reported.
    closed_info: Option<CloseInfo>,
    /// Stream mode: inside a message (a chunk without `last` was reported).
    in_chunked: Option<(MessageKind, usize)>,
    /// `handle_input` calls left before pieces are merged (keeps a run fast).
    input_calls: usize,
    /// Message bytes `send` may still be offered in this run.
    send_bytes: usize,
    /// Message bytes `PeerMessage` may still make in this run.
    peer_bytes: usize,
    writer: Writer,
    /// A `transmit_to` call ended because the sink would block: the
    /// connection may hold bytes it framed that the wire has not carried.
    unwritten: bool,
    /// Some of those may have been framed before the connection closed
    /// (and may be Pings or Pongs).
    framed_open: bool,
    /// The sink failed for good: the transport is gone.
    gone: bool,
}

/// Per run: at most this many `handle_input` calls cut pieces; the rest of
/// the input goes in whole.
const INPUT_CALLS: usize = 4096;
/// Per run: at most this many sink calls take bytes under a limit; after
/// them the sink takes whatever it is given (keeps a run fast).
const SINK_CALLS: u32 = 1 << 16;
/// Per run: at most this many bytes of messages are offered to `send`.
const SEND_BYTES: usize = 2 << 20;
/// Per run: at most this many bytes of peer messages (for a compression
/// bomb, the most the connection may inflate of it).
const PEER_BYTES: usize = 4 << 20;

impl Harness {
    /// The run loop after every call: transmit, events, timeout.
    fn after_call(&mut self) {
        self.transmit();
        self.check_events();
        if let Some(t) = self.conn.poll_timeout() {
            assert!(!self.closed || self.conn.is_closed());
            let _ = t;
        }
    }

    /// For the wire checker: whether frames begun now count as written
    /// after `Closed`. Not while bytes framed before it may still be
    /// waiting for the sink.
    fn closed_for_wire(&self) -> bool {
        self.conn.is_closed() && !self.framed_open
    }

    /// One transmit step, as the writer says: `poll_transmit` (once in lazy
    /// mode, else until it returns 0) or one `transmit_to` into the sink.
    ///
    /// `transmit_to` returns how many bytes the sink took; when the sink
    /// did not block, nothing is left to write (`wants_write` is false); a
    /// hard error comes back as the sink returned it. Once the transport is
    /// gone, what the connection still has is thrown away.
    fn transmit(&mut self) {
        if self.gone {
            self.discard();
            return;
        }
        let closed = self.closed_for_wire();
        if !self.writer.next_uses_sink() {
            let mut out = Vec::new();
            if self.lazy {
                let _ = self.conn.poll_transmit(&mut out);
            } else {
                while self.conn.poll_transmit(&mut out) > 0 {}
            }
            self.written_all();
            self.check_output(&out, closed, true);
            return;
        }
        let was_closed = self.conn.is_closed();
        self.writer.sink.blocked = false;
        let result = self.conn.transmit_to(&mut self.writer.sink);
        let taken = std::mem::take(&mut self.writer.sink.taken);
        self.check_output(&taken, closed, false);
        match result {
            Ok(n) => {
                assert_eq!(
                    n,
                    taken.len(),
                    "transmit_to counted other than what the sink took"
                );
                if self.writer.sink.blocked {
                    self.unwritten = true;
                    self.framed_open |= !was_closed;
                } else {
                    assert!(
                        !self.conn.wants_write(),
                        "transmit_to returned with bytes to write, the sink not blocking"
                    );
                    self.written_all();
                }
            }
            Err(e) => {
                assert_eq!(
                    Some(e.kind()),
                    self.writer.sink.failed,
                    "transmit_to failed with an error the sink did not return: {e}"
                );
                self.gone = true;
                self.conn.handle_eof(self.now);
                self.discard();
            }
        }
    }

    /// Nothing the connection framed waits for the transport.
    fn written_all(&mut self) {
        self.unwritten = false;
        self.framed_open = false;
    }

    /// The transport is gone: what the connection still has goes nowhere.
    fn discard(&mut self) {
        let mut out = Vec::new();
        while self.conn.poll_transmit(&mut out) > 0 {
            out.clear();
        }
    }

    /// Checks what the wire carried: `whole`, the bytes of `poll_transmit`
    /// calls, else what a sink took.
    fn check_output(&mut self, out: &[u8], closed: bool, whole: bool) {
        if std::env::var_os("WHARF_FUZZ_TRACE").is_some() && !out.is_empty() {
            let head = &out[..out.len().min(16)];
            let via = if whole {
                "poll_transmit"
            } else {
                "transmit_to"
            };
            eprintln!(
                "  wrote {} bytes via {via} (closed {closed}): {head:02x?}",
                out.len()
            );
        }
        if whole {
            self.wire.push(out, closed);
        } else {
            self.wire.push_part(out, closed);
        }
        while let Some(m) = self.wire.messages.pop_front() {
            let (want, compress) = self.expected.pop_front().unwrap_or_else(|| {
                panic!(
                    "the connection wrote a message nobody sent: {:?}",
                    m.message
                )
            });
            assert!(want == m.message, "wrote {:?}, sent {want:?}", m.message);
            assert_eq!(
                m.compressed,
                compress,
                "a message of {} bytes went out {}compressed",
                want.len(),
                if m.compressed { "" } else { "un" }
            );
        }
    }

    /// A message delivered while in sync must be the next one the peer sent.
    fn delivered(&mut self, m: &Message) {
        if !self.in_sync {
            return;
        }
        let want = self
            .incoming
            .pop_front()
            .unwrap_or_else(|| panic!("delivered a message the peer did not send: {m:?}"));
        assert!(&want == m, "delivered {m:?}, the peer sent {want:?}");
    }

    fn check_events(&mut self) {
        let max_msg = self.config.max_message_size;
        for event in events(&mut self.conn) {
            assert!(!self.closed, "event after Closed: {event:?}");
            match event {
                Event::Message(m) => {
                    assert!(m.len() <= max_msg, "message of {} > {max_msg}", m.len());
                    if let Message::Text(t) = &m {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "non-UTF-8 text");
                    }
                    self.delivered(&m);
                }
                Event::Chunk(c) => {
                    assert_eq!(self.config.message_mode, MessageMode::Stream);
                    if c.kind == MessageKind::Text {
                        assert!(
                            std::str::from_utf8(&c.data).is_ok(),
                            "a text chunk is not UTF-8 on its own: {:02x?}",
                            &c.data[..]
                        );
                    }
                    let total = match self.in_chunked.take() {
                        None => {
                            assert!(c.first, "chunk without `first` starts a message");
                            c.data.len()
                        }
                        Some((kind, size)) => {
                            assert!(!c.first, "`first` inside a message");
                            assert_eq!(kind, c.kind);
                            size + c.data.len()
                        }
                    };
                    assert!(total <= max_msg, "streamed message of {total} > {max_msg}");
                    if self.in_sync {
                        self.chunk_data.extend_from_slice(&c.data);
                    }
                    if c.last {
                        let data = std::mem::take(&mut self.chunk_data);
                        let m = match c.kind {
                            MessageKind::Text => Message::text(
                                String::from_utf8(data).expect("text chunks are UTF-8"),
                            ),
                            MessageKind::Binary => Message::binary(data),
                        };
                        self.delivered(&m);
                    } else {
                        self.in_chunked = Some((c.kind, total));
                    }
                }
                Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
                Event::CloseReceived { .. } => {}
                Event::Closed(info) => {
                    self.closed = true;
                    if info.error.is_none() && info.clean {
                        assert!(self.conn.error().is_none());
                    }
                    self.closed_info = Some(info);
                }
                other => panic!("unexpected event on an open connection: {other:?}"),
            }
        }
        assert_eq!(
            self.conn.is_closed(),
            self.closed,
            "is_closed() and Closed disagree"
        );
        if self.closed {
            assert!(!self.conn.is_open());
        }
    }

    fn feed(&mut self, bytes: &[u8], chunk: u8) {
        let mut rest = bytes;
        for piece in pieces(bytes, chunk) {
            if self.input_calls == 0 {
                break;
            }
            self.input_calls -= 1;
            self.conn.handle_input(self.now, piece);
            self.after_call();
            rest = &rest[piece.len()..];
        }
        if !rest.is_empty() {
            self.conn.handle_input(self.now, rest);
            self.after_call();
        }
    }

    /// The faults a well-formed message may trigger, from its frame payload
    /// sizes, its (inflated) length and whether it is text that is not
    /// UTF-8; none: it must be delivered.
    fn faults(&self, frames: &[usize], compressed: bool, len: usize, bad_text: bool) -> Vec<Fault> {
        let c = &self.config;
        let mut faults = Vec::new();
        if frames.iter().any(|&n| n > c.max_frame_size) {
            faults.push(Fault::FrameTooLarge);
        }
        if frames.len() > c.max_fragments {
            faults.push(Fault::TooManyFragments);
        }
        let size = if compressed { len } else { frames.iter().sum() };
        if size > c.max_message_size {
            faults.push(Fault::MessageTooLarge);
        }
        if bad_text {
            faults.push(Fault::InvalidUtf8);
        }
        faults
    }

    #[allow(clippy::too_many_arguments)]
    fn peer_message(
        &mut self,
        source: u8,
        len: u16,
        scale: u8,
        data: &[u8],
        flags: u8,
        split: u8,
        key: [u8; 4],
        chunk: u8,
        peer_masks: bool,
    ) {
        let compress = self.peer.is_some() && flags & 1 == 0;
        let max_msg = self.config.max_message_size;
        let reps = usize::from(len % 64) + 1;
        // The content: its kind, and its bytes (for zeros, only their count;
        // the bytes are made when they can be delivered or must be framed).
        let (kind, body, zeros) = match source % 6 {
            0..=2 => {
                let m = make_message(source, len, 0);
                (m.kind(), m.payload().to_vec(), None)
            }
            3 => (MessageKind::Binary, data.to_vec(), None),
            4 => (MessageKind::Text, data.to_vec(), None),
            _ => {
                let kind = if scale & 1 != 0 {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                (
                    kind,
                    Vec::new(),
                    Some(if compress { reps << 20 } else { reps << 10 }),
                )
            }
        };
        let content_len = zeros.unwrap_or(body.len());
        // A bomb costs what the connection may inflate of it.
        let cost = if compress && zeros.is_some() {
            content_len.min(max_msg + 1)
        } else {
            content_len
        };
        if cost > self.peer_bytes {
            return;
        }
        self.peer_bytes -= cost;
        let predict = self.in_sync && self.conn.is_open() && !self.closed;
        let bad_text = kind == MessageKind::Text && std::str::from_utf8(&body).is_err();

        let payload = match self.peer.as_mut() {
            Some(peer) if compress => {
                if flags & 2 != 0 {
                    peer.forget();
                }
                if zeros.is_some() {
                    peer.zeros(reps)
                } else {
                    let ending = if flags & 4 != 0 {
                        Ending::Final
                    } else {
                        Ending::Sync
                    };
                    peer.compress(&body, ending)
                }
            }
            _ => match zeros {
                Some(n) => vec![0; n],
                None => body.clone(),
            },
        };
        let mut frames: Vec<&[u8]> = if payload.is_empty() {
            vec![&payload[..]]
        } else {
            pieces(&payload, split)
        };
        if flags & 16 != 0 {
            frames.push(&[]);
        }
        let mask = peer_masks.then_some(key);
        let opcode = match kind {
            MessageKind::Text => 0x1,
            MessageKind::Binary => 0x2,
        };
        let mut bytes = Vec::with_capacity(payload.len() + frames.len() * 14 + 16);
        for (i, f) in frames.iter().enumerate() {
            let fin = if i + 1 == frames.len() { 0x80 } else { 0 };
            let b0 = match (i, compress) {
                (0, true) => opcode | 0x40,
                (0, false) => opcode,
                _ => 0,
            };
            bytes.extend_from_slice(&raw_frame(fin | b0, mask, f, 0));
            if i == 0 && flags & 8 != 0 && frames.len() > 1 {
                bytes.extend_from_slice(&raw_frame(0x89, mask, b"ping", 0));
            }
        }
        let sizes: Vec<usize> = frames.iter().map(|f| f.len()).collect();
        let faults = if predict {
            self.faults(&sizes, compress, content_len, bad_text)
        } else {
            Vec::new()
        };
        if predict && std::env::var_os("WHARF_FUZZ_TRACE").is_some() {
            eprintln!(
                "  {content_len} bytes in {} frames, faults {faults:?}",
                sizes.len()
            );
        }
        if predict && faults.is_empty() {
            let body = match zeros {
                Some(n) => vec![0; n],
                None => body,
            };
            let message = match kind {
                MessageKind::Text => {
                    Message::text(String::from_utf8(body).expect("checked: no InvalidUtf8"))
                }
                MessageKind::Binary => Message::binary(body),
            };
            self.incoming.push_back(message);
        }
        self.feed(&bytes, chunk);
        if !predict {
            return;
        }
        if self.gone {
            // The sink failed while the message was being fed (a Pong went
            // out between its frames): the transport ended first, so the
            // rest of it never reached the connection.
            self.incoming.clear();
            return;
        }
        if faults.is_empty() {
            assert!(
                self.incoming.is_empty(),
                "a well-formed message of {content_len} bytes ({} frames, compressed {compress}) \
                 was not delivered; closed: {:?}",
                sizes.len(),
                self.closed_info
            );
            return;
        }
        let Some(info) = &self.closed_info else {
            panic!(
                "a message that breaks a limit ({faults:?}) did not close the connection \
                 ({content_len} bytes, {} frames, compressed {compress})",
                sizes.len()
            );
        };
        let fault = match &info.error {
            Some(Error::Protocol(e)) => Fault::of(e),
            _ => None,
        };
        let Some(fault) = fault.filter(|f| faults.contains(f)) else {
            panic!("closed with {info:?}, expected one of {faults:?}");
        };
        assert_eq!(info.code, fault.code(), "close code for {fault:?}");
    }

    fn step(&mut self, op: Op, peer_masks: bool) {
        match op {
            Op::Frame {
                b0,
                flags,
                key,
                mut payload,
                extra,
                chunk,
            } => {
                self.in_sync = false;
                let pad = if flags & 8 != 0 { 0x80 } else { b'a' };
                payload.resize(payload.len() + usize::from(extra), pad);
                let masked = peer_masks ^ (flags & 1 != 0);
                let len_code = match flags >> 1 & 3 {
                    1 => 126,
                    2 | 3 => 127,
                    _ => 0,
                };
                let mut bytes = raw_frame(b0, masked.then_some(key), &payload, len_code);
                if flags & 16 != 0 {
                    bytes.truncate(bytes.len() / 2);
                }
                self.feed(&bytes, chunk);
            }
            Op::Raw { bytes, chunk } => {
                self.in_sync = false;
                self.feed(&bytes, chunk);
            }
            Op::Send { kind, len, scale } => {
                // Tiny outgoing frames cost a frame per byte: keep those
                // messages small (still enough to fill a transmit batch).
                let scale = if self.config.max_outgoing_frame < 100 {
                    scale & !1
                } else {
                    scale
                };
                let message = make_message(kind, len, scale);
                if message.len() > self.send_bytes {
                    return;
                }
                self.send_bytes -= message.len();
                let uncompressed = scale & 2 != 0;
                let result = if uncompressed {
                    self.conn.send_uncompressed(message.clone())
                } else {
                    self.conn.send(message.clone())
                };
                match result {
                    Ok(()) => {
                        assert!(!self.closed, "send accepted after Closed");
                        let compress =
                            !uncompressed && self.tx_min.is_some_and(|min| message.len() >= min);
                        self.expected.push_back((message, compress));
                    }
                    Err(SendError::Full(m)) => {
                        assert!(m == message, "Full handed back another message");
                        assert!(!self.closed, "Full rather than NotOpen after Closed");
                    }
                    Err(SendError::NotOpen(m)) => assert!(m == message),
                    Err(e) => panic!("unknown send error {e:?}"),
                }
                self.after_call();
            }
            Op::Ping { len } => {
                let r = self.conn.ping(&vec![b'p'; usize::from(len)]);
                if len > 125 || self.closed {
                    assert!(
                        r.is_err(),
                        "ping accepted (len {len}, closed {})",
                        self.closed
                    );
                }
                self.after_call();
            }
            Op::Close { code, reason } => {
                let code = CloseCode(code);
                let r = self.conn.close(code, &"r".repeat(usize::from(reason)));
                if !code.is_sendable() || usize::from(reason) > wharf_core::MAX_CLOSE_REASON {
                    assert!(r.is_err(), "close({code}, {reason} bytes) accepted");
                }
                if r.is_ok() {
                    // The connection may still deliver what comes in, or
                    // not, until the peer's Close: no longer predicted.
                    self.in_sync = false;
                }
                self.after_call();
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.conn.handle_timeout(self.now);
                self.after_call();
            }
            Op::Eof => {
                self.conn.handle_eof(self.now);
                self.after_call();
            }
            Op::Drain => {
                if self.gone {
                    self.discard();
                } else {
                    let closed = self.closed_for_wire();
                    let out = drain(&mut self.conn);
                    self.written_all();
                    self.check_output(&out, closed, true);
                }
                self.check_events();
            }
            Op::TakeUnsent if self.unwritten || self.gone => {
                // What the connection framed and the wire did not carry is
                // not known here: the messages come back from the end.
                let queued = self.conn.queued_bytes();
                let taken = self.conn.take_unsent();
                let left = self.conn.queued_bytes();
                self.took_tail(&taken);
                let taken_bytes: usize = taken.iter().map(Message::len).sum();
                assert!(
                    taken_bytes + left >= queued,
                    "take_unsent lost unframed bytes: {queued} queued, {taken_bytes} taken, \
                     {left} left"
                );
                assert!(
                    left == 0 || self.conn.is_open(),
                    "{left} bytes still queued after take_unsent on a connection not open"
                );
                self.after_call();
            }
            Op::TakeUnsent => {
                // A message partly on the wire stays queued (and is finished)
                // while the connection can still send data.
                let keep = self.wire.in_message() && self.conn.is_open() && !self.wire.close_seen();
                let taken = self.conn.take_unsent();
                assert_eq!(
                    self.conn.queued_bytes() == 0,
                    !keep,
                    "queued bytes after take_unsent"
                );
                // Whatever else was accepted and not yet written whole comes
                // back, in order.
                let skip = usize::from(keep).min(self.expected.len());
                let expected: Vec<Message> = self.expected.drain(skip..).map(|(m, _)| m).collect();
                assert!(
                    taken == expected,
                    "take_unsent gave {} messages, {} were unsent",
                    taken.len(),
                    expected.len()
                );
                self.after_call();
            }
            Op::PeerMessage {
                source,
                len,
                scale,
                data,
                flags,
                split,
                key,
                chunk,
            } => self.peer_message(
                source, len, scale, &data, flags, split, key, chunk, peer_masks,
            ),
            Op::Writer {
                mode,
                limit,
                block,
                interrupt,
                fail,
            } => {
                let budget = self.writer.sink.budget;
                self.writer = Writer {
                    mode,
                    step: 0,
                    sink: Sink::new(limit, block, interrupt, fail, budget),
                };
            }
        }
    }

    /// `taken` came back from `take_unsent`: they must be the last of the
    /// messages not yet written whole, in order; they are no longer expected.
    fn took_tail(&mut self, taken: &[Message]) {
        let n = self.expected.len();
        assert!(
            taken.len() <= n,
            "take_unsent gave {} messages, {n} were not written whole",
            taken.len()
        );
        let rest = self.expected.split_off(n - taken.len());
        assert!(
            rest.iter().map(|(m, _)| m).eq(taken.iter()),
            "take_unsent gave other messages than the last {} not written whole",
            taken.len()
        );
    }
}

/// `connection_server` / `connection_client`: a plaintext connection past
/// the handshake fed peer frames (well-formed or not) in arbitrary pieces and
/// raw bytes, interleaved with `send`, `ping`, `close`, time passing, EOF and
/// `take_unsent`; the run loop (transmit, events, timeout) after every call.
/// Optionally with permessage-deflate (RFC 7692) negotiated, the parameters
/// chosen by the input. Each transmit step writes with `poll_transmit` or
/// with `transmit_to` into a sink that takes a few bytes per call, would
/// block, is interrupted or breaks, as [`Op::Writer`] says; the wire is
/// everything `poll_transmit` returned and the sink took, in order.
///
/// Input: two config bytes ([`connection_config`]), three more when bit 7
/// of the first is set ([`connection_deflate`]), then [`Op`]s.
///
/// - the handshake agrees on deflate parameters that honour both sides'
///   settings ([`open_pair_with`]);
/// - everything written decodes as valid frames of this role
///   ([`WireChecker`]), and the data messages on the wire, inflated with the
///   agreed window and context takeover, are exactly the messages `send`
///   accepted, in order, whole; those of at least `min_message_size` bytes
///   compressed (RSV1) when the agreed window allows it, `send_uncompressed`
///   ones and the rest not;
/// - `transmit_to` returns the number of bytes the sink took; when the sink
///   did not block, nothing is left to write (`wants_write`); any other
///   error comes back as the sink returned it, and then the harness calls
///   `handle_eof` and throws away what the connection still has, as an
///   adapter does (what the sink took before is on the wire);
/// - `send` hands a refused message back unchanged; `take_unsent` returns
///   exactly the accepted messages not yet written. While bytes the
///   connection framed may still wait for the sink (or were thrown away),
///   it returns the last of the messages not written whole, in order, and
///   no byte that was not framed goes missing (`queued_bytes` before is at
///   most what it returned plus what stays queued); at the end, everything
///   framed having gone out, exactly the messages not written whole;
/// - events: `Closed` once and last; incoming messages (inflated ones too)
///   within the limits, text valid UTF-8, stream chunks of text each valid
///   UTF-8, `first`/`last` consistent;
/// - as long as only `PeerMessage`s came in (and `close` was not called):
///   each well-formed message the peer sends is delivered, exactly as sent
///   (inflated, reassembled from chunks in stream mode), before the next
///   call; one that breaks a limit fails the connection with the fitting
///   error and code (a compression bomb: `MessageTooLarge`, 1009, having
///   delivered nothing beyond `max_message_size`);
/// - after `Closed` the connection only finishes: no event; nothing
///   written but the rest of the messages `send` accepted before (a protocol
///   failure still flushes them) and at most one Close frame, never a Ping or
///   Pong (but for frames it framed before and the sink had not taken yet);
///   `send` returns `NotOpen`, `ping` fails;
/// - finally, the connection ends: after EOF and the timers it is closed.
pub fn run_connection(data: &[u8], server: bool) {
    let mut u = Unstructured::new(data);
    let Some(a) = take_u8(&mut u) else { return };
    let b = take_u8(&mut u).unwrap_or(0);
    let (config, lazy) = connection_config(a, b);
    let now = Instant::now();
    let (client_config, server_config, peer_level) = if a & 0x80 != 0 {
        let c = take_u8(&mut u).unwrap_or(0);
        let d = take_u8(&mut u).unwrap_or(0);
        let e = take_u8(&mut u).unwrap_or(0);
        connection_deflate(config, server, c, d, e)
    } else {
        (config.clone(), config, 0)
    };
    let config = if server {
        server_config.clone()
    } else {
        client_config.clone()
    };
    let min_message_size = config.deflate.as_ref().map_or(0, |d| d.min_message_size);
    let (client, srv) = open_pair_with(client_config, server_config, now);
    let conn = if server { srv } else { client };
    // What each direction's compressor may do: ours (read back by the wire
    // checker) and the peer's (the harness compresses as the peer).
    let (wire, tx_min, peer) = match conn.deflate().copied() {
        Some(p) => {
            let (own, peer) = match conn.role() {
                Role::Server => (
                    (p.server_max_window_bits, p.server_no_context_takeover),
                    (p.client_max_window_bits, p.client_no_context_takeover),
                ),
                Role::Client => (
                    (p.client_max_window_bits, p.client_no_context_takeover),
                    (p.server_max_window_bits, p.server_no_context_takeover),
                ),
            };
            (
                WireChecker::with_deflate(!server, Some(WireInflate::new(own.0, own.1))),
                (own.0 >= 9).then_some(min_message_size),
                Some(PeerDeflate::new(peer.0, peer.1, peer_level)),
            )
        }
        None => (WireChecker::new(!server), None, None),
    };
    let mut h = Harness {
        conn,
        config,
        lazy,
        now,
        wire,
        expected: VecDeque::new(),
        tx_min,
        peer,
        in_sync: true,
        incoming: VecDeque::new(),
        chunk_data: Vec::new(),
        closed: false,
        closed_info: None,
        in_chunked: None,
        input_calls: INPUT_CALLS,
        send_bytes: SEND_BYTES,
        peer_bytes: PEER_BYTES,
        writer: Writer {
            mode: 0,
            step: 0,
            sink: Sink::new(0, 0, 0, 0, SINK_CALLS),
        },
        unwritten: false,
        framed_open: false,
        gone: false,
    };
    // A server's peer masks its frames.
    let peer_masks = server;
    let mut steps = 0;
    let trace = std::env::var_os("WHARF_FUZZ_TRACE").is_some();
    if trace {
        eprintln!(
            "config {:?}, lazy {lazy}, deflate {:?}",
            h.config,
            h.conn.deflate()
        );
    }
    while let Some(op) = Op::parse(&mut u) {
        if trace {
            eprintln!("op {op:?}");
        }
        h.step(op, peer_masks);
        steps += 1;
        if steps > 2000 {
            break;
        }
    }
    // The end: drain, EOF, every timer; the connection must be closed.
    h.step(Op::Drain, peer_masks);
    h.step(Op::Eof, peer_masks);
    for _ in 0..4 {
        h.step(Op::Advance { ms: 60_000 }, peer_masks);
    }
    h.step(Op::Drain, peer_masks);
    assert!(h.closed, "not closed after EOF");
    assert!(
        h.conn.is_finished(),
        "not finished after EOF and all timers"
    );
    // Everything framed has gone out (or, the transport gone, nowhere):
    // what was accepted and not written whole comes back.
    let taken = h.conn.take_unsent();
    if h.gone {
        h.took_tail(&taken);
    } else {
        let unsent: Vec<Message> = h.expected.drain(..).map(|(m, _)| m).collect();
        assert!(
            taken == unsent,
            "at the end take_unsent gave {} messages, {} were not written whole",
            taken.len(),
            unsent.len()
        );
    }
    let message = Message::text("late");
    match h.conn.send(message.clone()) {
        Err(SendError::NotOpen(m)) => assert!(m == message),
        other => panic!("send after Closed gave {other:?}"),
    }
    assert!(h.conn.ping(b"x").is_err());
}

// ---------------------------------------------------------------------------
// utf8 and mask
// ---------------------------------------------------------------------------

/// What an incremental validator must say after `prefix`: `Some(pending)`
/// while it can still become valid UTF-8, `None` once it cannot.
fn utf8_oracle(prefix: &[u8]) -> Option<usize> {
    match std::str::from_utf8(prefix) {
        Ok(_) => Some(0),
        Err(e) if e.error_len().is_none() => Some(prefix.len() - e.valid_up_to()),
        Err(_) => None,
    }
}

/// `utf8`: the incremental validator agrees with `std::str::from_utf8` for
/// any split. Input: a cut count (0..=15), that many `u16` cut points, then
/// the bytes. After each piece `feed` succeeds exactly when the prefix can
/// still become valid UTF-8, with `pending` the length of its incomplete
/// tail; `finish` succeeds exactly when the whole is valid; after `finish`
/// the validator starts afresh.
pub fn run_utf8(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let n = take_u8(&mut u).unwrap_or(0) % 16;
    let mut cuts: Vec<usize> = (0..n)
        .filter_map(|_| take_u16(&mut u).map(usize::from))
        .collect();
    let input = take_bytes(&mut u, usize::MAX);
    for c in &mut cuts {
        *c %= input.len() + 1;
    }
    cuts.sort_unstable();
    let mut v = Utf8Check::new();
    let mut start = 0;
    let mut failed = false;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let ok = v.feed(&input[start..end]);
        match utf8_oracle(&input[..end]) {
            Some(p) => {
                assert!(
                    ok,
                    "rejected a possible prefix: {:02x?} cut at {cuts:?}",
                    &input[..end]
                );
                assert_eq!(v.pending(), p, "pending for {:02x?}", &input[..end]);
            }
            None => {
                assert!(
                    !ok,
                    "accepted an impossible prefix: {:02x?} cut at {cuts:?}",
                    &input[..end]
                );
                failed = true;
                break;
            }
        }
        start = end;
    }
    let whole_ok = std::str::from_utf8(input).is_ok();
    if !failed {
        assert_eq!(v.finish(), whole_ok, "finish for {input:02x?}");
    } else {
        assert!(!whole_ok);
        let _ = v.finish();
    }
    // Reset: the same validator now sees the input whole.
    assert_eq!(
        v.feed(input) && v.finish(),
        whole_ok,
        "after finish, whole {input:02x?}"
    );
}

/// Input of `mask` (derived with `arbitrary`).
#[derive(Debug, arbitrary::Arbitrary)]
pub struct MaskInput {
    /// The masking key.
    pub key: [u8; 4],
    /// Position of the first byte within the payload.
    pub offset: u64,
    /// Bytes skipped at the front (varies alignment).
    pub start: u8,
    /// Where to cut for a two-call masking.
    pub split: u16,
    /// Bytes already in the destination of `extend_masked`.
    pub prefix: u8,
    /// The payload.
    pub data: Vec<u8>,
}

/// `mask`: `apply_mask` and `extend_masked` equal a byte-by-byte XOR for any
/// length, offset, alignment and key; masking in two calls (the second at
/// offset + first length) equals masking once; masking twice restores.
pub fn run_mask(input: MaskInput) {
    let offset = input.offset as usize;
    let start = usize::from(input.start).min(input.data.len());
    let data = &input.data[start..];
    let mut want = data.to_vec();
    naive_mask(&mut want, input.key, offset);

    let mut got = data.to_vec();
    bench_api::apply_mask(&mut got, input.key, offset);
    assert_eq!(got, want, "apply_mask, len {}, offset {offset}", data.len());

    // In place on a sub-slice of the original buffer (a different alignment).
    let mut buf = input.data.clone();
    bench_api::apply_mask(&mut buf[start..], input.key, offset);
    assert_eq!(&buf[start..], &want[..]);

    let cut = usize::from(input.split) % (data.len() + 1);
    let mut two = data.to_vec();
    let (a, b) = two.split_at_mut(cut);
    bench_api::apply_mask(a, input.key, offset);
    bench_api::apply_mask(b, input.key, offset.wrapping_add(cut));
    assert_eq!(two, want, "two calls cut at {cut}");

    let mut dst = vec![0xEE; usize::from(input.prefix)];
    bench_api::extend_masked(&mut dst, data, input.key, offset);
    assert!(dst[..usize::from(input.prefix)].iter().all(|&b| b == 0xEE));
    assert_eq!(
        &dst[usize::from(input.prefix)..],
        &want[..],
        "extend_masked"
    );

    bench_api::apply_mask(&mut got, input.key, offset);
    assert_eq!(got, data, "masking twice does not restore");
}
