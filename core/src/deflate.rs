//! permessage-deflate's data path (RFC 7692 §6, §7.2): the compressor and
//! decompressor one connection keeps once the extension is negotiated.
//!
//! Outgoing messages are compressed lazily, a frame at a time, when
//! `poll_transmit` frames them ([`Deflate::next_frame`]): a message is never
//! held twice, `queued_bytes` keeps counting uncompressed bytes, and a
//! message taken back with `take_unsent` never touched the shared window.
//! Incoming compressed payload is inflated as it arrives
//! ([`Deflate::inflate`]) into bounded output: the caller gives the most the
//! output may grow to, so a compression bomb stops at the message limit.
//!
//! zlib state is allocated on first use: a connection that negotiated the
//! extension but never sends (or never receives) a compressed message does
//! not pay for that direction.

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::config::DeflateConfig;
use crate::error::ProtocolError;
use crate::handshake::DeflateParams;
use crate::role::Role;

/// The RSV1 bit in [`FrameHeader::rsv`](crate::frame::FrameHeader): "Per-Message
/// Compressed" on the first frame of a message (RFC 7692 §6).
pub(crate) const RSV1: u8 = 0b100;

/// The empty stored block a sync flush ends with: stripped from the end of a
/// compressed message (§7.2.1) and put back before inflating it (§7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Stream mode: largest chunk of inflated bytes reported at once.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Capacity of the compressor's output buffer kept between messages.
const IDLE_PENDING: usize = 4 * 1024;

/// Most output room given to the compressor at once.
const PENDING_STEP: usize = 64 * 1024;

/// Smallest step by which an inflate buffer grows.
const MIN_GROW: usize = 256;

/// Smallest window of the inflate buffer zeroed and inflated into at once.
const MIN_WINDOW: usize = 4 * 1024;

/// The per-connection state of a negotiated permessage-deflate.
pub(crate) struct Deflate {
    params: DeflateParams,
    level: u32,
    min_size: usize,
    /// Window of our compressor; `None` when held to 8 bits, which zlib
    /// cannot produce: every message then goes out uncompressed.
    tx_window: Option<u8>,
    /// Reset the compressor after each message (our no context takeover).
    tx_reset: bool,
    /// Window for inflating: the most the peer may use, at least 9 (a larger
    /// window inflates any smaller one).
    rx_window: u8,
    tx: Option<Deflater>,
    rx: Option<Decompress>,
    /// Inflated bytes of the current message (Reassemble) or chunk
    /// (Stream), handed out with `split().freeze()`: the buffer is reused
    /// by the next message once the application dropped the earlier ones.
    pub(crate) rx_buf: BytesMut,
}

/// The compressor and the compressed bytes not yet framed.
struct Deflater {
    c: Compress,
    /// Compressed output of the current message not yet framed.
    pending: Vec<u8>,
    /// The current message's input is all compressed and flushed, its tail
    /// stripped: `pending` holds the rest of it.
    flushed: bool,
}

impl Deflate {
    /// The state for `role` once `params` were agreed.
    pub(crate) fn new(params: DeflateParams, cfg: &DeflateConfig, role: Role) -> Deflate {
        let (own_window, own_reset, peer_window) = match role {
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
            ),
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
            ),
        };
        Deflate {
            params,
            level: cfg.level.min(9),
            min_size: cfg.min_message_size,
            tx_window: (own_window >= 9).then_some(own_window.min(15)),
            tx_reset: own_reset,
            rx_window: peer_window.clamp(9, 15),
            tx: None,
            rx: None,
            rx_buf: BytesMut::new(),
        }
    }

    /// The agreed parameters.
    pub(crate) fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a message of `len` bytes goes out compressed.
    pub(crate) fn compresses(&self, len: usize) -> bool {
        self.tx_window.is_some() && len >= self.min_size
    }

    /// Inflates `input` (payload bytes of a compressed message, or [`TAIL`]
    /// at its end) into the spare room of `out`, growing `out` while its
    /// length is below `limit` and never beyond `limit` (unless it already
    /// had the capacity). Returns how many input bytes were consumed: all of
    /// them unless `out` reached `limit`.
    ///
    /// A block with BFINAL set ends zlib's stream; whatever follows starts a
    /// new one (§7.2.3.3).
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<usize, ProtocolError> {
        let window = self.rx_window;
        let d = self
            .rx
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, window));
        let mut used = 0;
        loop {
            if out.len() >= limit {
                return Ok(used);
            }
            if out.len() == out.capacity() {
                let grow = out.len().max(MIN_GROW).min(limit - out.len());
                reserve_exact(out, grow);
            }
            // Inflate into a zeroed window of the spare room, at most as
            // large as what is there already (so zeroing costs at most about
            // the message's size, however large the reused buffer is).
            let len = out.len();
            let window = (out.capacity() - len)
                .min(len.max(MIN_WINDOW))
                .min(limit - len);
            out.resize(len + window, 0);
            let (in0, out0) = (d.total_in(), d.total_out());
            let rest = input.get(used..).unwrap_or_default();
            let status = d.decompress(rest, &mut out[len..], FlushDecompress::None);
            let produced = usize::try_from(d.total_out() - out0).unwrap_or(usize::MAX);
            out.truncate(len + produced.min(window));
            let status = status.map_err(|_| ProtocolError::InvalidCompressedData)?;
            // Bounded by `rest.len()` and by the spare capacity.
            let consumed = usize::try_from(d.total_in() - in0).unwrap_or(usize::MAX);
            used = used.saturating_add(consumed).min(input.len());
            if status == Status::StreamEnd {
                d.reset(false);
            }
            if consumed == 0 && produced == 0 {
                return Ok(used);
            }
        }
    }

    /// Compresses more of the message whose unsent rest is `input`, until a
    /// frame of at most `max` payload bytes is ready. Returns the frame's
    /// payload length (the bytes are [`frame_payload`](Self::frame_payload)),
    /// how much of `input` was consumed, and whether it is the message's last
    /// frame. The compressor must be fed the same message until then.
    pub(crate) fn next_frame(&mut self, input: &[u8], max: usize) -> (usize, usize, bool) {
        let max = max.max(1);
        let (level, window) = (self.level, self.tx_window.unwrap_or(15));
        let tx = self.tx.get_or_insert_with(|| Deflater {
            c: Compress::new_with_window_bits(Compression::new(level), false, window),
            pending: Vec::new(),
            flushed: false,
        });
        let mut used = 0;
        loop {
            if tx.flushed {
                if tx.pending.len() > max {
                    return (max, used, false);
                }
                tx.flushed = false;
                if self.tx_reset {
                    tx.c.reset();
                }
                return (tx.pending.len(), used, true);
            }
            // Hold the last bytes back until the end: they may be the tail.
            if tx.pending.len() >= max.saturating_add(TAIL.len()) {
                return (max, used, false);
            }
            if used == input.len() {
                tx.sync_flush();
                continue;
            }
            if tx.pending.capacity() - tx.pending.len() < 64 {
                // Room for a frame and the tail held back, but no more than
                // the rest of the message needs (deflate expands by a few
                // bytes per 16 KiB at worst), in steps of at most PENDING_STEP.
                let want = max
                    .saturating_add(TAIL.len())
                    .min(PENDING_STEP)
                    .min(input.len() - used + input.len() / 1024)
                    + 64;
                tx.pending
                    .reserve(want.saturating_sub(tx.pending.len()).max(64));
            }
            let in0 = tx.c.total_in();
            let rest = input.get(used..).unwrap_or_default();
            // Only misuse of the stream (not data) makes deflate fail.
            tx.c.compress_vec(rest, &mut tx.pending, FlushCompress::None)
                .expect("deflate with input and output room does not fail");
            let consumed = usize::try_from(tx.c.total_in() - in0).unwrap_or(usize::MAX);
            used = used.saturating_add(consumed).min(input.len());
        }
    }

    /// The payload of the frame [`next_frame`](Self::next_frame) made ready.
    pub(crate) fn frame_payload(&self, len: usize) -> &[u8] {
        self.tx
            .as_ref()
            .and_then(|tx| tx.pending.get(..len))
            .unwrap_or_default()
    }

    /// The frame of `len` bytes was written.
    pub(crate) fn frame_written(&mut self, len: usize) {
        if let Some(tx) = self.tx.as_mut() {
            tx.pending.drain(..len.min(tx.pending.len()));
        }
    }

    /// Whether a buffer grew past what an idle connection keeps.
    pub(crate) fn holds_large_buffers(&self) -> bool {
        self.rx_buf.capacity() > IDLE_PENDING
            || self
                .tx
                .as_ref()
                .is_some_and(|tx| tx.pending.capacity() > IDLE_PENDING)
    }

    /// Gives back the buffers that are empty (the connection went quiet).
    pub(crate) fn shrink_buffers(&mut self) {
        if self.rx_buf.is_empty() {
            self.rx_buf = BytesMut::new();
        }
        if let Some(tx) = self.tx.as_mut().filter(|tx| tx.pending.is_empty()) {
            tx.pending = Vec::new();
        }
    }
}

/// Makes room for `additional` more bytes in `buf`, reusing its allocation
/// when the bytes handed out of it were dropped, else allocating exactly
/// what is needed (never the doubling a plain reserve may do, so the
/// buffer stays within the inflate limit).
fn reserve_exact(buf: &mut BytesMut, additional: usize) {
    if buf.capacity() - buf.len() >= additional || buf.try_reclaim(additional) {
        return;
    }
    let mut bigger = BytesMut::with_capacity(buf.len() + additional);
    bigger.extend_from_slice(buf);
    *buf = bigger;
}

impl Deflater {
    /// Ends the message's deflate data on a byte boundary (a sync flush,
    /// §7.2.1) and strips the `00 00 ff ff` it ends with.
    fn sync_flush(&mut self) {
        loop {
            if self.pending.capacity() - self.pending.len() < 64 {
                self.pending.reserve(256);
            }
            self.c
                .compress_vec(&[], &mut self.pending, FlushCompress::Sync)
                .expect("deflate with output room does not fail");
            // zlib is done flushing once it leaves output room unused.
            if self.pending.len() < self.pending.capacity() {
                break;
            }
        }
        if self.pending.ends_with(&TAIL) {
            self.pending.truncate(self.pending.len() - TAIL.len());
        }
        if self.pending.is_empty() {
            // An empty message right after another flush: zlib refuses a
            // second flush with no input and writes nothing. Send the header
            // byte of an empty stored block, which the receiver's tail
            // completes (§7.2.3.6: an empty message is `0x00`). Any other
            // flush writes at least that byte and the tail.
            self.pending.push(0x00);
        }
        self.flushed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sbits: u8, cbits: u8, snct: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: false,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    fn state(p: DeflateParams, role: Role) -> Deflate {
        Deflate::new(p, &DeflateConfig::default(), role)
    }

    fn state_at(level: u32, p: DeflateParams, role: Role) -> Deflate {
        let cfg = DeflateConfig {
            level,
            ..DeflateConfig::default()
        };
        Deflate::new(p, &cfg, role)
    }

    /// Compresses `msg` whole into frames of at most `max` bytes.
    fn compress(d: &mut Deflate, msg: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut off = 0;
        loop {
            let (len, used, fin) = d.next_frame(&msg[off..], max);
            assert!(len <= max);
            frames.push(d.frame_payload(len).to_vec());
            d.frame_written(len);
            off += used;
            if fin {
                assert_eq!(off, msg.len());
                return frames;
            }
        }
    }

    fn inflate_message(d: &mut Deflate, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        assert_eq!(d.inflate(payload, &mut out, usize::MAX), Ok(payload.len()));
        assert_eq!(d.inflate(&TAIL, &mut out, usize::MAX), Ok(4));
        out.to_vec()
    }

    #[test]
    fn rfc7692_hello() {
        for level in 1..=9 {
            let mut tx = state_at(level, params(15, 15, false), Role::Server);
            let mut rx = state(params(15, 15, false), Role::Client);
            // §7.2.3.1: "Hello" in one message, the tail stripped.
            let first = compress(&mut tx, b"Hello", 1000).concat();
            assert_eq!(
                first,
                [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                "level {level}"
            );
            assert_eq!(inflate_message(&mut rx, &first), b"Hello");
            // §7.2.3.2: the same again with the window shared is a match
            // into the previous message (zlib writes `f2 00 11 00 00`;
            // zlib-rs's fast levels pick an equally valid encoding).
            let second = compress(&mut tx, b"Hello", 1000).concat();
            assert!(second.len() <= 5, "level {level}: {second:02x?}");
            if level >= 2 {
                assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00], "level {level}");
            }
            assert_eq!(inflate_message(&mut rx, &second), b"Hello");
            // §7.2.3.6: an empty message right after a flush is `00`.
            let empty = compress(&mut tx, b"", 1000).concat();
            assert_eq!(empty, [0x00]);
            assert_eq!(inflate_message(&mut rx, &empty), b"");
            assert_eq!(inflate_message(&mut rx, &first), b"Hello");
        }
    }

    #[test]
    fn rfc7692_examples_inflate() {
        let mut d = state(params(15, 15, false), Role::Client);
        assert_eq!(
            inflate_message(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_message(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );
        // §7.2.3.3: a stored (no compression) block.
        let mut d = state(params(15, 15, false), Role::Client);
        assert_eq!(
            inflate_message(
                &mut d,
                &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
            ),
            b"Hello"
        );
        // §7.2.3.4: a block with BFINAL set, then the empty byte.
        assert_eq!(
            inflate_message(&mut d, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
            b"Hello"
        );
        // §7.2.3.5: two DEFLATE blocks in one message.
        assert_eq!(
            inflate_message(
                &mut d,
                &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00]
            ),
            b"Hello"
        );
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"seq\":{i},\"px\":{}}}", i % 97).into_bytes())
            .collect();
        for reset in [false, true] {
            let mut tx = state(params(15, 15, reset), Role::Server);
            let mut rx = state(params(15, 15, reset), Role::Client);
            let mut sizes = Vec::new();
            for msg in [
                &text[..100],
                &text[..100],
                &text[..],
                &b""[..],
                &text[5..9000],
            ] {
                let frames = compress(&mut tx, msg, 4096);
                sizes.push(frames.iter().map(Vec::len).sum::<usize>());
                assert!(frames.iter().all(|f| f.len() <= 4096));
                let joined: Vec<u8> = frames.concat();
                assert_eq!(inflate_message(&mut rx, &joined), msg);
            }
            // A repeated message costs a few bytes only with the shared window.
            assert_eq!(sizes[1] < 10, !reset, "{sizes:?}");
        }
    }

    #[test]
    fn small_windows_and_frame_sizes() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i * 7 % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        for bits in 9..=15u8 {
            for max in [1, 5, 1000, 1 << 20] {
                let mut tx = state(params(bits, bits, false), Role::Client);
                let mut rx = state(params(bits, bits, false), Role::Server);
                assert_eq!(rx.rx_window, bits);
                let frames = compress(&mut tx, &data[..50_000], max);
                assert!(frames.iter().all(|f| f.len() <= max));
                assert_eq!(inflate_message(&mut rx, &frames.concat()), &data[..50_000]);
            }
        }
    }

    #[test]
    fn held_to_eight_bits_means_no_compression() {
        let d = state(params(8, 15, false), Role::Server);
        assert!(!d.compresses(1000));
        assert_eq!(d.rx_window, 15);
        let d = state(params(8, 15, false), Role::Client);
        assert!(d.compresses(1000));
        assert_eq!(d.rx_window, 9);
        assert!(!d.compresses(31), "below min_message_size");
    }

    #[test]
    fn inflate_stops_at_the_limit() {
        // 10 MB of zeros compress to about 10 KB.
        let zeros = vec![0u8; 10 << 20];
        let mut tx = state_at(9, params(15, 15, false), Role::Server);
        let payload = compress(&mut tx, &zeros, usize::MAX).concat();
        assert!(payload.len() < 20_000, "{}", payload.len());
        let mut rx = state(params(15, 15, false), Role::Client);
        let mut out = BytesMut::new();
        let used = rx.inflate(&payload, &mut out, 1 << 20).expect("valid");
        assert!(used < payload.len());
        assert_eq!(out.len(), 1 << 20);
        assert!(out.capacity() <= 1 << 20, "{}", out.capacity());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut rx = state(params(15, 15, false), Role::Client);
        let mut out = BytesMut::new();
        // BTYPE 11 is reserved.
        assert_eq!(
            rx.inflate(&[0xff, 0xff, 0xff], &mut out, 1000),
            Err(ProtocolError::InvalidCompressedData)
        );
        // A distance before the start of the stream.
        let mut rx = state(params(15, 15, false), Role::Client);
        let mut tx = state(params(15, 15, false), Role::Server);
        compress(&mut tx, b"Hello", 100);
        let second = compress(&mut tx, b"Hello", 100).concat();
        assert_eq!(
            rx.inflate(&second, &mut out, 1000),
            Err(ProtocolError::InvalidCompressedData)
        );
    }
}
