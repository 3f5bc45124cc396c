//! Sending: messages queued and framed lazily (control frames between
//! fragments), into the output buffer or the TLS session.

use bytes::Bytes;

use crate::close::{encode_close_body, CloseCode};
use crate::copy;
use crate::deflate::RSV1;
use crate::error::{ConfigError, Error, SendError};
use crate::frame::{encode_header, extend_masked, FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::{Message, MessageKind};

use super::state::Phase;
use super::{Connection, Role, Transport};

/// How many plaintext bytes one `poll_transmit` call prepares at most (soft:
/// whole frames are never split, so one frame may go past it).
pub(super) const TRANSMIT_BATCH: usize = 256 * 1024;

/// Unmasked data frames at least this long go out straight from the message
/// (header and payload as separate slices) instead of through the framing
/// buffer: to the TLS session, or to the sink in `transmit_to`. One copy
/// less per byte; shorter frames are cheaper to copy than to gather.
pub(super) const DIRECT_FRAME: usize = 4 * 1024;

/// An outgoing data message, framed lazily as `poll_transmit` drains it.
pub(super) struct TxMessage {
    pub(super) message: Message,
    /// Payload bytes already framed (compressed ones: fed to the compressor).
    pub(super) offset: usize,
    /// Goes out compressed (RFC 7692 §7.2.1).
    pub(super) compress: bool,
    /// Its first frame was written.
    pub(super) started: bool,
    /// Plaintext `transmit_to`: the end of the frame whose header the sink
    /// took but whose payload it has not taken whole (`offset..frame_end`
    /// is still to go, with no header); 0 when between frames.
    pub(super) frame_end: usize,
}

impl Connection {
    /// Queues a message. It takes ownership of the payload (nothing the caller
    /// keeps is referenced afterwards) and frames it lazily, so Pongs and other
    /// control frames can go between its fragments.
    ///
    /// Fails, handing the message back, when the connection is not open or
    /// the queue holds `max_send_queue` bytes already (a message larger than
    /// the whole limit is taken when the queue is empty).
    ///
    /// With permessage-deflate negotiated, a message of at least
    /// [`DeflateConfig::min_message_size`](crate::DeflateConfig::min_message_size)
    /// bytes is compressed as its frames are written; the queue still counts
    /// uncompressed bytes.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, true)
    }

    /// As [`send`](Self::send), but the message goes out uncompressed even
    /// when permessage-deflate is in use (RFC 7692 §6: RSV1 clear), for
    /// payloads that do not compress (already compressed, encrypted, random)
    /// or that must not share a compression window with other data (a
    /// secret next to attacker-chosen text).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, false)
    }

    pub(super) fn enqueue(
        &mut self,
        message: Message,
        may_compress: bool,
    ) -> Result<(), SendError> {
        if self.phase != Phase::Open || self.close.sent || self.close.pending.is_some() {
            return Err(SendError::NotOpen(message));
        }
        let len = message.len();
        if self.queued_bytes > 0 && self.queued_bytes + len > self.config.max_send_queue {
            return Err(SendError::Full(message));
        }
        self.queued_bytes += len;
        let compress = may_compress && self.deflate.as_deref().is_some_and(|d| d.compresses(len));
        self.data.push_back(TxMessage {
            message,
            offset: 0,
            compress,
            started: false,
            frame_end: 0,
        });
        Ok(())
    }

    /// Queues a Ping with `payload` (at most 125 bytes, §5.5). A Ping not yet
    /// sent is replaced.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), ConfigError> {
        if payload.len() > 125 {
            return Err(ConfigError::InvalidClose(
                "a ping payload is at most 125 bytes".into(),
            ));
        }
        if self.phase != Phase::Open || self.close.sent {
            return Err(ConfigError::InvalidState("the connection is not open"));
        }
        self.ping = Some(Bytes::copy_from_slice(payload));
        Ok(())
    }

    /// Appends the bytes to write to the socket to `buf` and returns how many
    /// were appended (0: nothing to write now). Call until it returns 0.
    ///
    /// When `buf` is empty and the connection is plaintext, the connection's
    /// own buffer is swapped in rather than copied.
    ///
    /// Keep `buf` between calls: a buffer that grew for a large message is
    /// then reused by the next one. After a large output the connection arms
    /// a timer (about a second); when [`handle_timeout`](Self::handle_timeout)
    /// runs for it, an empty `buf` can be given back to the allocator so
    /// idle connections stay small, as the connection does with its own.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        // As in `transmit_to`: nothing unless `wants_write`.
        let idle = cfg!(debug_assertions) && !self.wants_write();
        let produced = self.poll_transmit_inner(buf);
        debug_assert!(
            !idle || produced == 0,
            "poll_transmit produced bytes on a connection that did not want to write"
        );
        produced
    }

    pub(super) fn poll_transmit_inner(&mut self, buf: &mut Vec<u8>) -> usize {
        let before = buf.len();
        match &mut self.transport {
            Transport::Plain => {
                // Whatever `transmit_to` left half written goes first.
                self.out.drain(..self.out_pos);
                self.out_pos = 0;
                self.fill_out();
                if buf.is_empty() {
                    std::mem::swap(buf, &mut self.out);
                } else {
                    copy::append(buf, &self.out);
                    self.out.clear();
                }
            }
            Transport::Tls(_) => {
                self.encode_tls();
                if let Transport::Tls(tls) = &mut self.transport {
                    tls.write_tls(buf);
                }
            }
        }
        self.arm_shrink(buf.capacity());
        buf.len() - before
    }

    /// Control frames that `fill_out` would write before the next data frame.
    pub(super) fn control_waiting(&self) -> bool {
        !self.close.sent
            && ((self.phase == Phase::Open && (!self.pongs.is_empty() || self.ping.is_some()))
                || (self.close.pending.is_some() && !self.close.after_data))
    }

    /// TLS: frames what is queued and hands it to the session (plus
    /// close_notify once closed); returns the plaintext bytes handed over.
    pub(super) fn encode_tls(&mut self) -> usize {
        self.fill_out();
        let mut handed = self.direct_batch;
        self.direct_batch = 0;
        let tls_failed = matches!(self.error, Some(Error::Tls(_)));
        let Transport::Tls(tls) = &mut self.transport else {
            return 0;
        };
        if !self.out.is_empty() && !tls_failed {
            let mut pos = 0;
            while pos < self.out.len() {
                let n = tls.write_plaintext(&self.out[pos..]);
                pos += n;
                if n == 0 {
                    // The session can send nothing more (it failed or
                    // closed): these bytes can never go out.
                    pos = self.out.len();
                }
            }
            handed += pos;
            self.out.clear();
        }
        if self.phase.is_closed() && !self.close_notify_sent && !tls_failed {
            self.close_notify_sent = true;
            tls.send_close_notify();
            // The alert itself is something to write.
            handed += 1;
        }
        handed
    }

    pub(super) fn has_frames_to_write(&self) -> bool {
        if matches!(self.error, Some(Error::Tls(_))) {
            return false;
        }
        let data_allowed = self.phase == Phase::Open && !self.close.sent;
        self.close.pending.is_some()
            || (data_allowed
                && (!self.pongs.is_empty() || self.ping.is_some() || !self.data.is_empty()))
            // In any state: the rest of a frame the socket took part of.
            || self.frame_in_progress()
    }

    /// The socket took part of a frame (plaintext `transmit_to`): its rest
    /// goes out before anything else, whatever happens.
    pub(super) fn frame_in_progress(&self) -> bool {
        self.data.front().is_some_and(|tx| tx.frame_end > tx.offset)
    }

    /// Frames queued control frames and messages into `out`, up to a batch.
    pub(super) fn fill_out(&mut self) {
        if matches!(self.error, Some(Error::Tls(_))) {
            return;
        }
        self.direct_batch = 0;
        if !self.finish_frame_in_progress() {
            return;
        }
        while self.out.len() + self.direct_batch < TRANSMIT_BATCH && !self.close.sent {
            if self.phase == Phase::Open {
                if let Some(payload) = self.pongs.pop_front() {
                    self.write_frame(OpCode::Pong, true, &payload);
                    continue;
                }
                if let Some(payload) = self.ping.take() {
                    self.write_frame(OpCode::Ping, true, &payload);
                    continue;
                }
            } else if self.close.pending.is_none() || !self.close.after_data {
                // Closed: only a Close frame may still go out, or the
                // messages queued before a failure and then its Close.
                if let Some((code, reason)) = self.close.pending.take() {
                    self.write_close(code, reason);
                }
                break;
            }
            let close_now =
                self.close.pending.is_some() && (!self.close.after_data || self.data.is_empty());
            if close_now {
                if let Some((code, reason)) = self.close.pending.take() {
                    self.write_close(code, reason);
                }
                break;
            }
            if !self.write_data_frame() {
                break;
            }
        }
    }

    /// A frame whose header plaintext `transmit_to` wrote must end before
    /// anything else goes out: in `transmit_to` the sink takes the rest from
    /// the message (false: frame nothing before it); otherwise the rest is
    /// copied into `out`.
    pub(super) fn finish_frame_in_progress(&mut self) -> bool {
        let Some(tx) = self.data.front_mut() else {
            return true;
        };
        if tx.frame_end <= tx.offset {
            return true;
        }
        if self.direct_to_sink {
            return false;
        }
        let end = tx.frame_end;
        copy::append(&mut self.out, &tx.message.payload()[tx.offset..end]);
        tx.offset = end;
        tx.frame_end = 0;
        if end == tx.message.len() {
            self.data.pop_front();
        }
        true
    }

    /// Writes the next frame of the oldest queued message; false when none
    /// (or, in plaintext `transmit_to`, when the sink takes it straight from
    /// the message).
    pub(super) fn write_data_frame(&mut self) -> bool {
        if self.data.front().is_some_and(|tx| tx.compress) {
            return self.write_compressed_frame();
        }
        let max = self.config.max_outgoing_frame.max(1);
        if self.data.is_empty() {
            return false;
        }
        let mask = self.next_mask();
        let Some(tx) = self.data.front_mut() else {
            return false;
        };
        let payload = tx.message.payload();
        let start = tx.offset;
        let mut end = (start + max).min(payload.len());
        if mask.is_none() && end < payload.len() && matches!(self.transport, Transport::Tls(_)) {
            end = start + tls_frame_payload(max);
        }
        let fin = end == payload.len();
        let chunk = &payload[start..end];
        if self.direct_to_sink && mask.is_none() && chunk.len() >= DIRECT_FRAME {
            // `plan_direct` takes it from here.
            return false;
        }
        match &mut self.transport {
            // A large unmasked frame goes to the TLS session as header +
            // payload, without first being copied into `out`; what `out`
            // already holds goes first.
            Transport::Tls(tls) if mask.is_none() && chunk.len() >= DIRECT_FRAME => {
                let mut hdr = [0u8; MAX_HEADER_LEN];
                let n = encode_data_header(&tx.message, start, end, &mut hdr);
                if !self.out.is_empty() {
                    tls.write_plaintext(&self.out);
                    self.out.clear();
                }
                tls.write_plaintext_parts(&hdr[..n], chunk);
                self.direct_batch += n + chunk.len();
            }
            _ => push_frame(
                &mut self.out,
                data_opcode(&tx.message, start),
                fin,
                0,
                mask,
                chunk,
            ),
        }
        tx.offset = end;
        self.queued_bytes -= end - start;
        if fin {
            self.data.pop_front();
        }
        true
    }

    /// Writes the next frame of the oldest queued message, compressing it as
    /// it goes (RFC 7692 §7.2.1): RSV1 on the first frame only (§6).
    pub(super) fn write_compressed_frame(&mut self) -> bool {
        let max = self.config.max_outgoing_frame.max(1);
        let mask = self.next_mask();
        let (Some(tx), Some(d)) = (self.data.front_mut(), self.deflate.as_deref_mut()) else {
            return false;
        };
        let rest = tx.message.payload().get(tx.offset..).unwrap_or_default();
        let (len, used, fin) = d.next_frame(rest, max);
        let first = !tx.started;
        let opcode = match (first, tx.message.kind()) {
            (true, MessageKind::Text) => OpCode::Text,
            (true, MessageKind::Binary) => OpCode::Binary,
            (false, _) => OpCode::Continuation,
        };
        let rsv = if first { RSV1 } else { 0 };
        push_frame(&mut self.out, opcode, fin, rsv, mask, d.frame_payload(len));
        d.frame_written(len);
        tx.started = true;
        tx.offset += used;
        self.queued_bytes -= used;
        if fin {
            self.data.pop_front();
        }
        true
    }

    pub(super) fn write_close(&mut self, code: Option<CloseCode>, reason: String) {
        let mut body = [0u8; 125];
        let n = match code {
            Some(code) => encode_close_body(code, &reason, &mut body),
            None => 0,
        };
        self.write_frame(OpCode::Close, true, &body[..n]);
        self.close.sent = true;
        self.close.sent_code = code;
        self.close.sent_reason = reason;
    }

    pub(super) fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.next_mask();
        push_frame(&mut self.out, opcode, fin, 0, mask, payload);
    }

    /// A fresh masking key for a client frame (§5.3); none for a server.
    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(self.rng.mask_key()),
            Role::Server => None,
        }
    }
}

/// Encodes into `out` the header of an unmasked data frame carrying bytes
/// `start..end` of `message` (the first frame has the message's opcode, the
/// others continue it; the last one has FIN); returns its length.
pub(super) fn encode_data_header(
    message: &Message,
    start: usize,
    end: usize,
    out: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    let header = FrameHeader {
        fin: end == message.len(),
        rsv: 0,
        opcode: data_opcode(message, start),
        mask: None,
        payload_len: (end - start) as u64,
    };
    encode_header(&header, out)
}

/// With TLS, the payload length of an unmasked frame that is not its
/// message's last: at most `max`, and such that header and payload fill
/// whole TLS records. rustls cuts each write into records of 16 KiB, and
/// such a frame goes to it in one write, so a 64 KiB payload with its
/// 10-byte header made four full records and a 10-byte one; 65,532 bytes
/// with a 4-byte header make four. `max` itself when no such length is
/// worth it (frames under 4 KiB are batched with others anyway).
pub(super) fn tls_frame_payload(max: usize) -> usize {
    const RECORD: usize = 16 * 1024;
    // The header's length follows from the payload's (RFC 6455 §5.2): 4
    // bytes up to 65,535, then 10 (unmasked, as a server's frames are).
    for header in [4usize, 10] {
        let whole = (max + header) / RECORD * RECORD;
        let Some(payload) = whole.checked_sub(header) else {
            continue;
        };
        let header_fits = (header == 4) == (payload <= 0xFFFF);
        if header_fits && payload >= DIRECT_FRAME && payload <= max {
            return payload;
        }
    }
    max
}

/// The opcode of the data frame of `message` starting at byte `start`.
pub(super) fn data_opcode(message: &Message, start: usize) -> OpCode {
    match (start, message.kind()) {
        (0, MessageKind::Text) => OpCode::Text,
        (0, MessageKind::Binary) => OpCode::Binary,
        _ => OpCode::Continuation,
    }
}

/// Appends one frame to `out`: the header, then the payload, masked with
/// `mask` when there is one (§5.2, §5.3).
pub(super) fn push_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&header, &mut hdr);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    match mask {
        Some(key) => extend_masked(out, payload, key, 0),
        None => copy::append(out, payload),
    }
}
