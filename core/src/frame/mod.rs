//! Frames (RFC 6455 §5.2): header codec and masking.

mod header;
mod mask;

pub(crate) use header::{decode_header, encode_header, FrameHeader, OpCode, MAX_HEADER_LEN};
pub(crate) use mask::{apply_mask, extend_masked};
