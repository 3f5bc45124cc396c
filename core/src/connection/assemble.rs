//! Reassembly: whole messages out of their frames, or chunks as they arrive
//! (stream mode), text cut on character boundaries.

use bytes::{Buf, Bytes, BytesMut};

use crate::config::MessageMode;
use crate::error::ProtocolError;
use crate::event::Event;
use crate::message::{Chunk, Message, MessageKind, Text};

use super::Connection;

/// The incoming message being assembled.
pub(super) struct RxMessage {
    pub(super) kind: MessageKind,
    pub(super) fragments: usize,
    pub(super) size: u64,
    /// Reassembled bytes (not used for single-frame messages, which are
    /// handed out without a copy).
    pub(super) buf: BytesMut,
    /// Stream mode: no chunk reported yet.
    pub(super) first_chunk: bool,
    /// RSV1 was set on its first frame: the payload is DEFLATE data (RFC 7692 §6).
    pub(super) compressed: bool,
    /// Inflated bytes of a compressed message so far.
    pub(super) inflated_size: usize,
}

impl Connection {
    /// Ends the current message; `whole` is the payload of a single-frame message.
    pub(super) fn finish_message(&mut self, whole: Option<Bytes>) -> Result<(), ProtocolError> {
        let Some(msg) = self.rx_msg.take() else {
            return Ok(());
        };
        if msg.kind == MessageKind::Text && self.utf8.finish().is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        if self.config.message_mode == MessageMode::Stream {
            return Ok(());
        }
        let payload = match whole {
            Some(payload) => payload,
            None if msg.compressed => self
                .deflate
                .as_deref_mut()
                .map(|d| d.rx_buf.split().freeze())
                .unwrap_or_default(),
            None => msg.buf.freeze(),
        };
        let message = match msg.kind {
            MessageKind::Text => Message::Text(Text::from_validated(payload)),
            MessageKind::Binary => Message::Binary(payload),
        };
        self.emit(Event::Message(message));
        Ok(())
    }

    /// Stream mode: reports `data` as a chunk. Text chunks end on a character
    /// boundary: a cut-off character is carried into the next chunk.
    pub(super) fn emit_chunk(&mut self, mut data: Bytes, last: bool) {
        let Some(mut msg) = self.rx_msg.as_mut() else {
            return;
        };
        if msg.kind == MessageKind::Text {
            if !self.utf8_carry.is_empty() {
                // Complete the carried character from the front of `data`.
                let need = utf8_seq_len(self.utf8_carry[0]).saturating_sub(self.utf8_carry.len());
                let take = need.min(data.len());
                self.utf8_carry.extend_from_slice(&data[..take]);
                data.advance(take);
                if take == need {
                    let joined = Bytes::from(std::mem::take(&mut self.utf8_carry));
                    let first = std::mem::replace(&mut msg.first_chunk, false);
                    let chunk = Chunk {
                        kind: msg.kind,
                        data: joined,
                        first,
                        last: last && data.is_empty(),
                    };
                    self.emit(Event::Chunk(chunk));
                    let Some(again) = self.rx_msg.as_mut() else {
                        return;
                    };
                    msg = again;
                    if data.is_empty() {
                        return;
                    }
                } else if !last {
                    return;
                }
            }
            if !last {
                let cut = self.utf8.pending().min(data.len());
                if cut > 0 {
                    let tail = data.split_off(data.len() - cut);
                    self.utf8_carry.extend_from_slice(&tail);
                }
            }
        }
        if data.is_empty() && !last {
            return;
        }
        let first = std::mem::replace(&mut msg.first_chunk, false);
        let chunk = Chunk {
            kind: msg.kind,
            data,
            first,
            last,
        };
        self.emit(Event::Chunk(chunk));
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for anything else).
pub(super) fn utf8_seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}
