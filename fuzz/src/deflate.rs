//! permessage-deflate (RFC 7692) on the harness's side of a connection: the
//! peer's compressor, which turns messages into the DEFLATE data a real peer
//! would send under the negotiated parameters, and the inflater that reads
//! back what the connection under test compresses.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use wharf_core::{DeflateConfig, DeflateParams};

/// The RSV1 bit as `decode_raw_header` reports it: "Per-Message Compressed"
/// on the first frame of a message (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// The empty stored block a sync flush ends with, stripped from the end of a
/// compressed message (RFC 7692 §7.2.1) and put back by the receiver.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A [`DeflateConfig`] from one byte: bits 0-2 `max_window_bits` 9 + (v % 7);
/// bit 3 `no_context_takeover`; bit 4 `peer_no_context_takeover`; bits 5-7
/// `peer_max_window_bits` 8 + v.
pub fn deflate_config(byte: u8) -> DeflateConfig {
    let mut c = DeflateConfig::default();
    c.max_window_bits = 9 + (byte & 7) % 7;
    c.no_context_takeover = byte & 8 != 0;
    c.peer_no_context_takeover = byte & 16 != 0;
    c.peer_max_window_bits = 8 + (byte >> 5);
    c
}

/// What RFC 7692 §7.1 makes of a client's offer and a server's answer, both
/// wharf endpoints with these settings; panics unless `params` honours every
/// limit either side asked for:
///
/// - each side's own `no_context_takeover`, and what it asked of the peer
///   (the client's request is granted, the server's is always allowed);
/// - each compressor's window at most what its own side allows and at most
///   what the other side asked for, and at least 8.
pub fn check_negotiated(params: &DeflateParams, client: &DeflateConfig, server: &DeflateConfig) {
    let p = params;
    assert!(
        !client.no_context_takeover || p.client_no_context_takeover,
        "client_no_context_takeover dropped: {p:?}"
    );
    assert!(
        !client.peer_no_context_takeover || p.server_no_context_takeover,
        "server_no_context_takeover asked by the client, not granted: {p:?}"
    );
    assert!(
        !server.no_context_takeover || p.server_no_context_takeover,
        "server_no_context_takeover dropped: {p:?}"
    );
    assert!(
        !server.peer_no_context_takeover || p.client_no_context_takeover,
        "client_no_context_takeover asked by the server, not agreed: {p:?}"
    );
    assert!(
        (8..=client.peer_max_window_bits.min(server.max_window_bits))
            .contains(&p.server_max_window_bits),
        "server window {} (client asked <= {}, server allows {})",
        p.server_max_window_bits,
        client.peer_max_window_bits,
        server.max_window_bits
    );
    assert!(
        (8..=client.max_window_bits.min(server.peer_max_window_bits))
            .contains(&p.client_max_window_bits),
        "client window {} (client allows {}, server asked <= {})",
        p.client_max_window_bits,
        client.max_window_bits,
        server.peer_max_window_bits
    );
}

/// Runs `c` over all of `input` with `flush`, appending to `out`, until the
/// input is consumed and (for a flush) the compressor stopped writing.
fn deflate_into(c: &mut Compress, input: &[u8], flush: FlushCompress, out: &mut Vec<u8>) {
    let start = c.total_in();
    loop {
        let used = usize::try_from(c.total_in() - start).expect("fits: at most input.len()");
        out.reserve(256 + (input.len() - used) / 2);
        let status = c
            .compress_vec(&input[used..], out, flush)
            .expect("deflate with room for output does not fail");
        let used = usize::try_from(c.total_in() - start).expect("fits: at most input.len()");
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            FlushCompress::None => used == input.len(),
            // The compressor is done flushing once it leaves output room
            // unused; a second flush with nothing new is a BufError that
            // writes nothing.
            _ => used == input.len() && (out.len() < out.capacity() || status == Status::BufError),
        };
        if done {
            return;
        }
    }
}

/// 1 MiB of zeros, compressed from a fresh stream with a 512-byte window and
/// sync-flushed, the tail kept: copies of it can be put one after another
/// (every copy ends on a byte boundary), and it never refers to data before
/// its start, so it is valid under any negotiated window and context. About
/// 1 KiB.
pub fn zeros_chunk() -> &'static [u8] {
    static CHUNK: OnceLock<Vec<u8>> = OnceLock::new();
    CHUNK.get_or_init(|| {
        let mut c = Compress::new_with_window_bits(Compression::best(), false, 9);
        let mut out = Vec::new();
        deflate_into(
            &mut c,
            &vec![0u8; ZEROS_CHUNK_LEN],
            FlushCompress::None,
            &mut out,
        );
        deflate_into(&mut c, &[], FlushCompress::Sync, &mut out);
        assert!(
            out.ends_with(&TAIL),
            "a sync flush ends with the empty stored block"
        );
        out
    })
}

/// The inflated size of [`zeros_chunk`].
pub const ZEROS_CHUNK_LEN: usize = 1 << 20;

/// How the harness peer ends a compressed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A sync flush, its `00 00 ff ff` stripped (§7.2.1).
    Sync,
    /// A final block (BFINAL set), then one `00` byte that the receiver's
    /// appended tail turns into an empty stored block (§7.2.3.4). The next
    /// message starts a new stream.
    Final,
}

/// The peer's compressor: the DEFLATE data a peer sends under the agreed
/// window and context takeover.
pub struct PeerDeflate {
    /// The largest window the peer may compress with (8 to 15).
    window: u8,
    /// The peer must not take context over from one message to the next.
    reset: bool,
    level: u32,
    c: Option<Compress>,
}

impl PeerDeflate {
    /// The compressor of the side whose agreed window is `window` and that
    /// resets after each message when `reset`. A window of 8 bits, which the
    /// compressor cannot work with, gets stored (uncompressed) blocks only,
    /// valid under any window.
    pub fn new(window: u8, reset: bool, level: u32) -> PeerDeflate {
        let level = if window < 9 { 0 } else { level.min(9) };
        PeerDeflate {
            window: window.clamp(9, 15),
            reset,
            level,
            c: None,
        }
    }

    /// Starts a new DEFLATE context for the next message: always valid, the
    /// receiver's window is simply not referred to.
    pub fn forget(&mut self) {
        self.c = None;
    }

    /// The payload of one compressed message carrying `data` (never empty:
    /// an empty message is `00`, §7.2.3.6).
    pub fn compress(&mut self, data: &[u8], ending: Ending) -> Vec<u8> {
        let (level, window) = (self.level, self.window);
        let c = self.c.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, window)
        });
        let mut out = Vec::new();
        deflate_into(c, data, FlushCompress::None, &mut out);
        match ending {
            Ending::Sync => {
                deflate_into(c, &[], FlushCompress::Sync, &mut out);
                if out.ends_with(&TAIL) {
                    out.truncate(out.len() - TAIL.len());
                }
                if out.is_empty() {
                    out.push(0x00);
                }
                if self.reset {
                    self.c = None;
                }
            }
            Ending::Final => {
                deflate_into(c, &[], FlushCompress::Finish, &mut out);
                out.push(0x00);
                self.c = None;
            }
        }
        out
    }

    /// `reps` copies of [`zeros_chunk`] as one message's payload (`reps` MiB
    /// of zeros). The receiver's window then holds data this compressor does
    /// not know of: the next message starts a new context.
    pub fn zeros(&mut self, reps: usize) -> Vec<u8> {
        let chunk = zeros_chunk();
        let mut out = Vec::with_capacity(chunk.len() * reps);
        for _ in 0..reps {
            out.extend_from_slice(chunk);
        }
        out.truncate(out.len() - TAIL.len());
        self.c = None;
        out
    }
}

/// The harness's reader of what the connection under test compresses: the
/// agreed window of the writer and whether it may take context over.
pub struct WireInflate {
    /// `None`: the writer was held to an 8-bit window and may not compress.
    window: Option<u8>,
    reset: bool,
    d: Decompress,
}

impl WireInflate {
    /// For a writer whose agreed window is `window` (8 to 15) and which must
    /// reset its compressor after each message when `reset`.
    pub fn new(window: u8, reset: bool) -> WireInflate {
        WireInflate {
            window: (window >= 9).then_some(window),
            reset,
            d: Decompress::new_with_window_bits(false, window.clamp(9, 15)),
        }
    }

    /// Whether the writer may compress at all.
    pub fn may_compress(&self) -> bool {
        self.window.is_some()
    }

    /// Inflates one message's payload (the tail appended, §7.2.2) with the
    /// writer's window and the context of its earlier messages (none when it
    /// must reset); panics on data that is not valid DEFLATE for that
    /// window. (Data cut short inflates to less: the caller compares.)
    pub fn message(&mut self, payload: &[u8]) -> Vec<u8> {
        let window = self
            .window
            .expect("checked by the caller: compression allowed");
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(payload.len() * 4 + 64);
        let mut used = 0;
        while used < input.len() {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.len().max(4096));
            }
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let status = self
                .d
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .unwrap_or_else(|e| {
                    panic!(
                        "the connection wrote invalid DEFLATE data for a {window}-bit window: {e} \
                         ({} payload bytes)",
                        payload.len()
                    )
                });
            used += usize::try_from(self.d.total_in() - in0).expect("fits: at most input.len()");
            if status == Status::StreamEnd {
                // A final block ends the stream; the rest starts a new one.
                self.d.reset(false);
            } else if self.d.total_in() == in0 && self.d.total_out() == out0 {
                panic!("inflating the connection's message made no progress");
            }
        }
        if self.reset {
            self.d.reset(false);
        }
        out
    }
}
