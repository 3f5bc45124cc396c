//! Thin public wrappers around crate-private hot paths and codecs, and
//! set-up shared by the benchmarks (`core/benches`, the adapters' benches)
//! and the fuzz targets in `fuzz/` (external crates that see only the
//! public API).
//!
//! Not part of the supported API: hidden from the docs and free to change.

use crate::error::ProtocolError;
use crate::frame::{self, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::utf8::Utf8Validator;

/// A byte slice as `std::io::Read` that copies as the connection does (in
/// 2 KiB pieces, see the `copy` module): for a harness that stands in for
/// the kernel's copies.
pub struct Reader<'a>(pub &'a [u8]);

impl std::io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut inner = crate::copy::Reader(self.0);
        let n = inner.read(buf)?;
        self.0 = inner.0;
        Ok(n)
    }
}

/// A `Vec<u8>` as `std::io::Write` that appends as the connection does (in
/// 2 KiB pieces).
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl std::io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::copy::append(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Longest frame header: 2 + 8 (length) + 4 (mask key) bytes (RFC 6455 §5.2).
pub const HEADER_BUF_LEN: usize = MAX_HEADER_LEN;

/// XORs `buf` in place with `key`, byte `i` using `key[(offset + i) % 4]`
/// (RFC 6455 §5.3).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    frame::apply_mask(buf, key, offset);
}

/// Appends `src` masked with `key` from key position `offset % 4` to `dst`
/// (RFC 6455 §5.3).
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    frame::extend_masked(dst, src, key, offset);
}

/// Decodes one frame header from the front of `buf` (RFC 6455 §5.2).
///
/// Returns `Ok(None)` when more bytes are needed, else
/// `Ok(Some((payload_len, header_len)))`.
///
/// # Errors
///
/// The [`ProtocolError`] of a header that breaks a rule of §5.
pub fn decode_header(
    buf: &[u8],
    expect_masked: bool,
    allowed_rsv: u8,
) -> Result<Option<(u64, usize)>, ProtocolError> {
    Ok(frame::decode_header(buf, expect_masked, allowed_rsv)?.map(|(h, n)| (h.payload_len, n)))
}

/// Encodes a frame header with the minimal length encoding (RFC 6455 §5.2)
/// into `out`; returns its length, or `None` when `opcode` is not one that
/// RFC 6455 defines.
pub fn encode_header(
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload_len: u64,
    out: &mut [u8; HEADER_BUF_LEN],
) -> Option<usize> {
    let h = FrameHeader {
        fin,
        rsv: 0,
        opcode: OpCode::from_u8(opcode)?,
        mask,
        payload_len,
    };
    Some(frame::encode_header(&h, out))
}

/// Incremental UTF-8 validation of a text message split into chunks
/// (RFC 6455 §8.1).
#[derive(Debug, Default, Clone)]
pub struct Utf8Check(Utf8Validator);

impl Utf8Check {
    /// A validator at the start of a message.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next chunk; false as soon as the stream cannot be valid.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        self.0.feed(chunk).is_ok()
    }

    /// Ends the message; false if it ends inside a sequence. Resets the state.
    pub fn finish(&mut self) -> bool {
        self.0.finish().is_ok()
    }

    /// Bytes of an incomplete sequence held at the end of what was fed (0..=3).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.0.pending()
    }
}

/// Every field of a frame header (RFC 6455 §5.2), for the fuzz targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// FIN bit.
    pub fin: bool,
    /// RSV1..RSV3 as the low 3 bits (0b100 = RSV1).
    pub rsv: u8,
    /// The 4-bit opcode.
    pub opcode: u8,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// As [`decode_header`], returning every field of the header.
///
/// # Errors
///
/// The [`ProtocolError`] of a header that breaks a rule of §5.
pub fn decode_raw_header(
    buf: &[u8],
    expect_masked: bool,
    allowed_rsv: u8,
) -> Result<Option<(RawHeader, usize)>, ProtocolError> {
    Ok(
        frame::decode_header(buf, expect_masked, allowed_rsv)?.map(|(h, n)| {
            (
                RawHeader {
                    fin: h.fin,
                    rsv: h.rsv,
                    opcode: h.opcode.to_u8(),
                    mask: h.mask,
                    payload_len: h.payload_len,
                },
                n,
            )
        }),
    )
}

/// As [`encode_header`], with the RSV bits; `None` when the opcode is not one
/// that RFC 6455 defines.
pub fn encode_raw_header(h: &RawHeader, out: &mut [u8; HEADER_BUF_LEN]) -> Option<usize> {
    let header = FrameHeader {
        fin: h.fin,
        rsv: h.rsv,
        opcode: OpCode::from_u8(h.opcode)?,
        mask: h.mask,
        payload_len: h.payload_len,
    };
    Some(frame::encode_header(&header, out))
}

/// Appends `src` to `dst` as the connection copies payloads (avoiding
/// `rep movsb`'s slow case: see the `copy` module).
pub fn append(dst: &mut Vec<u8>, src: &[u8]) {
    crate::copy::append(dst, src);
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
#[must_use]
pub fn accept_key(key: &str) -> String {
    crate::handshake::accept_key(key)
}
