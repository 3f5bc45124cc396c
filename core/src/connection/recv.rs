//! Receiving: bytes from the socket (or TLS) into the input buffer, frame
//! headers and payloads decoded and checked against the RFC 6455 rules and
//! the limits, control frames answered.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{parse_close_body, CloseCode};
use crate::config::MessageMode;
use crate::copy;
use crate::deflate::RSV1;
use crate::error::{Error, HandshakeError, ProtocolError};
use crate::event::Event;
use crate::frame::{apply_mask, decode_header, FrameHeader, OpCode};
use crate::message::MessageKind;

use super::assemble::RxMessage;
use super::state::Phase;
use super::{Connection, Role, Transport};

/// Where the decoder is in the current frame.
pub(super) enum Rx {
    Header,
    Payload {
        header: FrameHeader,
        /// Payload bytes of the frame not yet consumed from `inbuf`.
        remaining: u64,
        /// How many bytes at the front of `inbuf` are already unmasked and
        /// validated (all belong to this frame).
        ready: usize,
        /// Payload bytes of the frame consumed so far (the mask offset).
        consumed: u64,
    },
}

/// `read_with` reads straight into the input buffer only while at least
/// this much of a data frame's payload is still to come.
pub(super) const DIRECT_READ: usize = 16 * 1024;

/// The most room `read_with` reserves at once (the buffer grows further as
/// a larger frame arrives).
pub(super) const DIRECT_READ_MAX: usize = 1024 * 1024;

/// Pongs waiting to be written. Every Ping is answered while fewer are
/// waiting; beyond that the oldest answers are dropped (§5.5.3 allows
/// answering only the most recent Ping).
pub(super) const MAX_PENDING_PONGS: usize = 16;

impl Connection {
    /// Feeds bytes read from the socket. Any split is fine: a partial frame or
    /// head is kept until the rest arrives.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        if data.is_empty() || !self.takes_input() {
            return;
        }
        self.note_liveness(now);
        match &mut self.transport {
            Transport::Plain => copy::append(&mut self.inbuf, data),
            Transport::Tls(tls) => match tls.read_tls(data, &mut self.inbuf) {
                Ok(read) => {
                    if read.peer_closed {
                        self.eof = true;
                    }
                }
                Err(e) => {
                    // Keep what decrypted before the failure, then fail.
                    self.process();
                    self.fail(Error::Tls(e));
                    return;
                }
            },
        }
        self.decode_input();
    }

    /// Plaintext only: lets `read` append bytes from the socket straight to
    /// the connection's input buffer, then decodes them as
    /// [`handle_input`](Self::handle_input) would. This saves copying the
    /// payload of a large frame through a read buffer of the caller's.
    ///
    /// Returns `None`, without calling `read`, unless the connection is
    /// plaintext, still takes input, and either a data frame is arriving
    /// with at least 16 KiB of its payload still to come, or the last data
    /// frame was that large, the next has not begun and the buffer that
    /// held the last one is free again (its messages were dropped). On
    /// `None`, read into a buffer of your own and call `handle_input`.
    /// Small reads go that way so that an idle connection keeps no read
    /// buffer; between frames, only a buffer the connection kept anyway is
    /// lent.
    ///
    /// `read` gets an empty buffer whose spare capacity (at least 16 KiB:
    /// the rest of the frame, or between frames the size of the last one,
    /// bounded by 1 MiB) it may fill, for example with tokio-util's
    /// `poll_read_buf`, which reads into it without clearing it first.
    /// Whatever it appends is input; a read that appends nothing changes
    /// nothing (an end of stream is still reported with
    /// [`handle_eof`](Self::handle_eof)).
    ///
    /// ```
    /// use std::io::{self, Read};
    /// use std::time::Instant;
    /// use wharf_core::Connection;
    ///
    /// /// One read from a blocking `socket`; `Ok(0)` is its end.
    /// fn read_once(conn: &mut Connection, socket: &mut impl Read) -> io::Result<usize> {
    ///     let now = Instant::now();
    ///     // A std reader needs initialised memory: fill the room with zeros.
    ///     let direct = conn.read_with(now, |room| {
    ///         room.resize(room.capacity(), 0);
    ///         let n = socket.read(&mut room[..]);
    ///         room.truncate(*n.as_ref().unwrap_or(&0));
    ///         n
    ///     });
    ///     let n = match direct {
    ///         Some(n) => n?,
    ///         None => {
    ///             let mut buf = [0u8; 4096];
    ///             let n = socket.read(&mut buf)?;
    ///             conn.handle_input(now, &buf[..n]);
    ///             n
    ///         }
    ///     };
    ///     if n == 0 {
    ///         conn.handle_eof(now);
    ///     }
    ///     Ok(n)
    /// }
    /// ```
    pub fn read_with<R>(
        &mut self,
        now: Instant,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Option<R> {
        if !matches!(self.transport, Transport::Plain) || !self.takes_input() {
            return None;
        }
        match self.rx {
            Rx::Payload { remaining, .. } => {
                let to_come = remaining.saturating_sub(self.inbuf.len() as u64);
                if to_come < DIRECT_READ as u64 {
                    return None;
                }
                // Room for the rest of the frame (bounded), after what is
                // buffered; a buffer kept from the previous message is
                // reused in place.
                self.inbuf
                    .reserve(to_come.min(DIRECT_READ_MAX as u64) as usize);
            }
            // Between frames after a large one: room for another like it,
            // if the buffer that held it is free again (the next frame may
            // be small, so this never allocates).
            Rx::Header => {
                let room = self.large_frame.min(DIRECT_READ_MAX);
                if room == 0 || !self.inbuf.try_reclaim(room) {
                    return None;
                }
            }
        }
        let mut room = self.inbuf.split_off(self.inbuf.len());
        let result = read(&mut room);
        let appended = !room.is_empty();
        // O(1): `room` is the tail of the same allocation.
        self.inbuf.unsplit(room);
        if appended {
            self.now = now;
            self.note_liveness(now);
            self.decode_input();
        }
        Some(result)
    }

    /// Whether bytes from the socket are still decoded (not after the
    /// connection closed, the stream ended, or a failure is pending).
    pub(super) fn takes_input(&self) -> bool {
        !self.phase.is_closed() && !self.eof && self.pending_failure.is_none()
    }

    /// Decodes what the input buffer holds (after new input arrived).
    pub(super) fn decode_input(&mut self) {
        // Before decoding splits messages off `inbuf`, and after it grew
        // the inflate buffer.
        self.arm_shrink(0);
        self.process();
        self.arm_shrink(0);
        if self.eof {
            self.on_eof();
        }
    }

    /// The socket reached its end (a read returned 0 bytes).
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.eof = true;
        self.on_eof();
    }

    pub(super) fn note_liveness(&mut self, now: Instant) {
        if self.phase == Phase::Open && !self.close.sent {
            self.timers.pong = None;
            if let Some(interval) = self.config.ping_interval {
                self.timers.keepalive = Some(now + interval);
            }
        }
    }

    pub(super) fn process(&mut self) {
        loop {
            match self.phase {
                Phase::Handshake => {
                    if !self.process_head() {
                        break;
                    }
                }
                Phase::AwaitDecision => {
                    // A client may not send frames before the 101 (§4.1);
                    // bound what it can park here.
                    if self.inbuf.len() > self.config.max_header_bytes {
                        self.fail(Error::Handshake(HandshakeError::HeadTooLarge {
                            max: self.config.max_header_bytes,
                        }));
                    }
                    break;
                }
                Phase::Open => {
                    if self.pending_failure.is_none() {
                        if let Err(e) = self.process_frames() {
                            self.inbuf.clear();
                            self.pending_failure = Some(Error::Protocol(e));
                            if self.failure_ready() {
                                self.apply_pending_failure();
                            } else {
                                // Bounded: see `handle_timeout`.
                                self.timers.failure = Some(self.now + self.config.close_timeout);
                            }
                        }
                    }
                    break;
                }
                Phase::Closed(_) => break,
            }
        }
    }

    /// Decodes every complete frame (and every ready payload byte) in `inbuf`.
    pub(super) fn process_frames(&mut self) -> Result<(), ProtocolError> {
        let expect_masked = self.role == Role::Server;
        // RFC 7692 §6: permessage-deflate defines RSV1.
        let allowed_rsv = if self.deflate.is_some() { RSV1 } else { 0 };
        while self.phase == Phase::Open {
            if self.input_paused() {
                return Ok(());
            }
            match &mut self.rx {
                Rx::Header => {
                    let Some((header, n)) = decode_header(&self.inbuf, expect_masked, allowed_rsv)?
                    else {
                        return Ok(());
                    };
                    self.start_frame(&header)?;
                    if !header.opcode.is_control() {
                        self.large_frame = match usize::try_from(header.payload_len) {
                            Ok(len) if len >= DIRECT_READ => len.saturating_add(n),
                            _ => 0,
                        };
                    }
                    self.inbuf.advance(n);
                    self.rx = Rx::Payload {
                        header,
                        remaining: header.payload_len,
                        ready: 0,
                        consumed: 0,
                    };
                }
                Rx::Payload { .. } => {
                    if !self.process_payload()? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks a new frame's header against the message state and limits.
    pub(super) fn start_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let max_frame = self.config.max_frame_size;
        if h.payload_len > max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: h.payload_len,
                max: max_frame,
            });
        }
        // RFC 7692 §6.1: only the first frame of a data message is marked
        // compressed (decode_header admits RSV1 only once negotiated).
        let compressed = h.rsv & RSV1 != 0;
        if compressed && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(ProtocolError::MisplacedRsv1);
        }
        if h.opcode.is_control() {
            return Ok(());
        }
        if self.close.received.is_some() {
            return Err(ProtocolError::DataAfterClose);
        }
        let max_msg = self.config.max_message_size;
        match (h.opcode, &mut self.rx_msg) {
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(msg)) => {
                msg.fragments += 1;
                if msg.fragments > self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.config.max_fragments,
                    });
                }
                msg.size += h.payload_len;
                // A compressed message is held to its inflated size instead.
                if msg.size > max_msg as u64 && !msg.compressed {
                    return Err(ProtocolError::MessageTooLarge { max: max_msg });
                }
                Ok(())
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (op, None) => {
                if h.payload_len > max_msg as u64 && !compressed {
                    return Err(ProtocolError::MessageTooLarge { max: max_msg });
                }
                let kind = if op == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                self.rx_msg = Some(RxMessage {
                    kind,
                    fragments: 1,
                    size: h.payload_len,
                    buf: BytesMut::new(),
                    first_chunk: true,
                    compressed,
                    inflated_size: 0,
                });
                if let Some(d) = self.deflate.as_deref_mut() {
                    // What a failed message left behind.
                    d.rx_buf.clear();
                }
                Ok(())
            }
        }
    }

    /// Works on the current frame's payload; returns false when it needs more
    /// input.
    pub(super) fn process_payload(&mut self) -> Result<bool, ProtocolError> {
        let Rx::Payload {
            header,
            mut remaining,
            mut ready,
            mut consumed,
        } = self.rx
        else {
            return Ok(true);
        };
        if header.opcode.is_control() {
            // At most 125 bytes: wait for all of it.
            let len = remaining as usize;
            if self.inbuf.len() < len {
                return Ok(false);
            }
            let mut payload = self.inbuf.split_to(len);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            self.rx = Rx::Header;
            self.handle_control(header.opcode, payload.freeze())?;
            return Ok(true);
        }
        let Some((kind, compressed)) = self.rx_msg.as_ref().map(|m| (m.kind, m.compressed)) else {
            // start_frame opens a message for every data frame.
            self.rx = Rx::Header;
            return Ok(true);
        };

        // Data frame: unmask and validate whatever arrived, as it arrives, so
        // that invalid UTF-8 fails fast (§8.1).
        let avail = (self.inbuf.len() as u64).min(remaining) as usize;
        if avail > ready {
            let fresh = &mut self.inbuf[ready..avail];
            if let Some(key) = header.mask {
                apply_mask(fresh, key, (consumed as usize).wrapping_add(ready));
            }
            if kind == MessageKind::Text && !compressed && self.utf8.feed(fresh).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            ready = avail;
        }
        if compressed {
            return self.inflate_payload(header, remaining, avail, consumed);
        }
        let frame_complete = avail as u64 == remaining;
        let single_frame = header.fin && self.rx_msg.as_ref().is_some_and(|m| m.fragments == 1);

        match self.config.message_mode {
            MessageMode::Reassemble if single_frame => {
                if !frame_complete {
                    // Keep it in place, to hand it out without a copy.
                    self.rx = Rx::Payload {
                        header,
                        remaining,
                        ready,
                        consumed,
                    };
                    return Ok(false);
                }
                let payload = self.inbuf.split_to(avail).freeze();
                self.rx = Rx::Header;
                self.finish_message(Some(payload))?;
                return Ok(true);
            }
            MessageMode::Reassemble => {
                if let Some(msg) = self.rx_msg.as_mut() {
                    copy::append(&mut msg.buf, &self.inbuf[..avail]);
                }
                self.inbuf.advance(avail);
            }
            MessageMode::Stream => {
                let last = frame_complete && header.fin;
                if last && kind == MessageKind::Text && self.utf8.pending() > 0 {
                    // The message ends inside a character (§8.1): fail before
                    // reporting the cut-off bytes as a text chunk.
                    return Err(ProtocolError::InvalidUtf8);
                }
                let taken = self.inbuf.split_to(avail).freeze();
                self.emit_chunk(taken, last);
            }
        }
        remaining -= avail as u64;
        consumed += avail as u64;
        if remaining > 0 {
            self.rx = Rx::Payload {
                header,
                remaining,
                ready: 0,
                consumed,
            };
            return Ok(false);
        }
        self.rx = Rx::Header;
        if header.fin {
            self.finish_message(None)?;
        }
        Ok(true)
    }

    pub(super) fn handle_control(
        &mut self,
        op: OpCode,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        match op {
            OpCode::Ping => {
                if !self.close.sent && self.close.pending.is_none() {
                    if self.pongs.len() == MAX_PENDING_PONGS {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(payload.clone());
                }
                self.emit(Event::Ping(payload));
            }
            OpCode::Pong => self.emit(Event::Pong(payload)),
            OpCode::Close => {
                let (code, reason) = match parse_close_body(&payload)? {
                    Some((code, reason)) => (code, reason.to_owned()),
                    None => (CloseCode::NO_STATUS, String::new()),
                };
                self.on_close_frame(code, reason);
            }
            // decode_header never yields data opcodes here.
            OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
        }
        Ok(())
    }
}
