//! permessage-deflate on the receiving side: compressed payloads inflated in
//! bounded steps, and decoding paused while inflated data waits in the
//! event queue.

use bytes::{Buf, Bytes};

use crate::config::MessageMode;
use crate::deflate::{CHUNK, TAIL};
use crate::error::ProtocolError;
use crate::frame::FrameHeader;
use crate::message::MessageKind;

use super::recv::Rx;
use super::Connection;

impl Connection {
    /// The payload of a frame of a compressed message (RFC 7692 §7.2.2): the
    /// first `avail` bytes of `inbuf` (unmasked) are inflated, and the tail
    /// `00 00 ff ff` after the message's last frame. Returns false when it
    /// needs more input or decoding paused.
    pub(super) fn inflate_payload(
        &mut self,
        header: FrameHeader,
        remaining: u64,
        avail: usize,
        consumed: u64,
    ) -> Result<bool, ProtocolError> {
        let used = self.inflate_input(avail, false)?;
        self.inbuf.advance(used);
        let remaining = remaining - used as u64;
        if used < avail || remaining > 0 {
            self.rx = Rx::Payload {
                header,
                remaining,
                ready: avail - used,
                consumed: consumed + used as u64,
            };
            return Ok(false);
        }
        self.rx = Rx::Header;
        if header.fin {
            // An empty payload is an empty message: the tail alone would
            // start a stored block it cannot finish.
            if self.rx_msg.as_ref().is_some_and(|m| m.size > 0) {
                self.inflate_input(TAIL.len(), true)?;
            }
            if self.config.message_mode == MessageMode::Stream {
                self.emit_chunk(Bytes::new(), true);
            }
            self.finish_message(None)?;
        }
        Ok(true)
    }

    /// Inflates the first `len` bytes of `inbuf`, or the tail when `tail`,
    /// validates the output and keeps it (Reassemble) or reports it (Stream).
    /// Returns how many bytes were consumed: all, unless decoding paused
    /// (Stream mode, at the receive bound: chunks are queued as they are
    /// inflated).
    pub(super) fn inflate_input(&mut self, len: usize, tail: bool) -> Result<usize, ProtocolError> {
        let max = self.config.max_message_size;
        let stream = self.config.message_mode == MessageMode::Stream;
        let mut used = 0;
        loop {
            if stream && !tail && used < len && self.input_paused() {
                return Ok(used);
            }
            let (Some(d), Some(msg)) = (self.deflate.as_deref_mut(), self.rx_msg.as_mut()) else {
                return Ok(len);
            };
            let input = if tail {
                TAIL.get(used..)
            } else {
                self.inbuf.get(used..len)
            }
            .unwrap_or_default();
            // Never inflate past one byte over the limit (a chunk in Stream
            // mode too), so which check fails first does not depend on how
            // the input was cut.
            let allowance = max.saturating_add(1).saturating_sub(msg.inflated_size);
            let limit = if stream {
                CHUNK.min(allowance).max(1)
            } else {
                max.saturating_add(1)
            };
            let mut out = std::mem::take(&mut d.rx_buf);
            let before = out.len();
            let result = d.inflate(input, &mut out, limit);
            let produced = out.len() - before;
            let full = out.len() >= limit;
            msg.inflated_size = msg.inflated_size.saturating_add(produced);
            let bad_utf8 = msg.kind == MessageKind::Text
                && self
                    .utf8
                    .feed(out.get(before..).unwrap_or_default())
                    .is_err();
            let chunk = (stream && produced > 0).then(|| out.split().freeze());
            d.rx_buf = out;
            // In stream order: what was inflated before a corrupt block is
            // checked first, as it would be had the input come in pieces.
            if bad_utf8 {
                return Err(ProtocolError::InvalidUtf8);
            }
            if msg.inflated_size > max {
                return Err(ProtocolError::MessageTooLarge { max });
            }
            used += result?;
            if let Some(chunk) = chunk {
                self.emit_chunk(chunk, false);
            }
            if !full {
                return Ok(used);
            }
        }
    }
}
