//! Frame header codec (RFC 6455 §5.2). SKELETON: to be implemented.

use crate::error::ProtocolError;

/// Longest possible header: 2 + 8 (length) + 4 (mask key).
pub(crate) const MAX_HEADER_LEN: usize = 14;

/// Frame opcodes that RFC 6455 defines (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Close, Ping and Pong (§5.5).
    pub(crate) fn is_control(self) -> bool {
        todo!()
    }
    /// The 4-bit wire value.
    pub(crate) fn to_u8(self) -> u8 {
        todo!()
    }
}

/// A decoded or to-be-encoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    /// RSV1..RSV3 as the low 3 bits: 0b100 = RSV1, 0b010 = RSV2, 0b001 = RSV3.
    pub(crate) rsv: u8,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) payload_len: u64,
}

/// Decodes one header from the front of `buf`.
pub(crate) fn decode_header(
    buf: &[u8],
    expect_masked: bool,
    allowed_rsv: u8,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let _ = (buf, expect_masked, allowed_rsv);
    todo!()
}

/// Encodes `h` with the minimal length encoding; returns the header length.
pub(crate) fn encode_header(h: &FrameHeader, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let _ = (h, out);
    todo!()
}
