//! The plaintext `transmit_to` path: frames of 4 KiB and more go to the
//! sink straight from the message (headers and payloads gathered in one
//! vectored write), a frame the sink took part of finished before anything
//! else.

use std::io::{self, IoSlice};

use crate::frame::MAX_HEADER_LEN;

use super::send::{encode_data_header, DIRECT_FRAME};
use super::state::Phase;
use super::{Connection, Role, Transport};

/// At most this many frames go to the sink in one plaintext `transmit_to`
/// write (a 1 MiB message in 64 KiB frames is 16).
pub(super) const MAX_DIRECT_FRAMES: usize = 32;

/// One frame of a plaintext `transmit_to` write, taken from the message
/// (`start..end` of the payload of queued message `index`).
#[derive(Clone, Copy, Default)]
pub(super) struct DirectPart {
    pub(super) index: usize,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Header bytes before the payload: 0 for the rest of a frame in progress.
    pub(super) header_len: usize,
}

impl Connection {
    /// Writes what is pending straight into `sink` (a non-blocking socket,
    /// say) until nothing is left or `sink` would block; returns the bytes
    /// written. With TLS this saves copying the records into a buffer of the
    /// caller's first; plaintext needs no buffer of the caller's either, and
    /// a server's data frames of 4 KiB or more are not copied at all: their
    /// headers and the message's own bytes go to `sink` together, up to 32
    /// frames per `write_vectored` call (a socket's `writev`).
    ///
    /// A sink that would block (`WouldBlock`) ends the call with `Ok`: call
    /// again when it is writable, while [`wants_write`](Self::wants_write)
    /// is true. Any other error is returned as it is; the transport is then
    /// broken, which the caller reports with [`handle_eof`](Self::handle_eof).
    /// `poll_transmit` and `transmit_to` may be mixed.
    pub fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        // Nothing is written unless `wants_write` said so: an adapter may
        // skip the call then.
        if !self.wants_write() {
            // Debug builds (the tests, the fuzzers) write anyway, to check.
            debug_assert!(
                !matches!(self.transmit_to_inner(sink), Ok(n) if n > 0),
                "transmit_to wrote on a connection that did not want to write"
            );
            return Ok(0);
        }
        self.transmit_to_inner(sink)
    }

    pub(super) fn transmit_to_inner(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        let mut written = 0;
        loop {
            match &mut self.transport {
                Transport::Plain => match self.write_plain_to(sink, &mut written) {
                    Ok(true) => {}
                    Ok(false) => return Ok(written),
                    Err(e) => return Err(e),
                },
                Transport::Tls(tls) => {
                    while tls.wants_write() {
                        match tls.write_tls_to(sink) {
                            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                            Ok(n) => written += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            // Everything encoded went out: encode more, or stop. (Nothing
            // written here means the call was not wanted: a debug build's
            // check, which then changes nothing either.)
            if !self.wants_write() {
                if written > 0 {
                    self.arm_shrink(0);
                }
                return Ok(written);
            }
            let encoded = match self.transport {
                Transport::Plain => {
                    self.direct_to_sink = true;
                    self.fill_out();
                    self.direct_to_sink = false;
                    self.out.len() + usize::from(self.direct_ready())
                }
                Transport::Tls(_) => self.encode_tls(),
            };
            self.arm_shrink(0);
            if encoded == 0 {
                return Ok(written);
            }
        }
    }

    /// Plaintext `transmit_to`: writes the rest of `out` and then, in the same
    /// call where the sink takes slices, the frames it can take straight from
    /// the queued messages (headers and payloads, no copy). Ok(true) once all
    /// of it went, Ok(false) when the sink would block.
    pub(super) fn write_plain_to(
        &mut self,
        sink: &mut dyn io::Write,
        written: &mut usize,
    ) -> io::Result<bool> {
        loop {
            // Control frames waiting go at the next frame boundary.
            let control_waiting = self.control_waiting();
            let in_progress = self.frame_in_progress();
            let direct = in_progress || (!control_waiting && self.direct_ready());
            let rest_len = self.out.len() - self.out_pos;
            if rest_len == 0 && (!direct || (!in_progress && control_waiting)) {
                // Done, or control frames go next: `fill_out` puts them first.
                self.out.clear();
                self.out_pos = 0;
                return Ok(true);
            }
            let result = if direct {
                self.write_direct(sink, rest_len, control_waiting)
            } else {
                // Only what `out` holds (small frames): nothing to gather.
                let result = sink.write(&self.out[self.out_pos..]);
                if let Ok(n) = result {
                    self.out_pos += n.min(rest_len);
                }
                result
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *written += n;
                    if !direct && self.out_pos == self.out.len() {
                        // All of `out` went: the caller frames what is next.
                        self.out.clear();
                        self.out_pos = 0;
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One vectored write of the rest of `out` (`rest_len` bytes) and the
    /// frames planned straight from the messages (only the rest of a frame
    /// in progress while `control_waiting`), accounted for.
    pub(super) fn write_direct(
        &mut self,
        sink: &mut dyn io::Write,
        rest_len: usize,
        control_waiting: bool,
    ) -> io::Result<usize> {
        let mut headers = [[0u8; MAX_HEADER_LEN]; MAX_DIRECT_FRAMES];
        let mut parts = [DirectPart::default(); MAX_DIRECT_FRAMES];
        let count = if control_waiting {
            self.plan_in_progress(&mut parts)
        } else {
            self.plan_direct(&mut headers, &mut parts)
        };
        let result = {
            let mut slices = [IoSlice::new(&[]); 1 + 2 * MAX_DIRECT_FRAMES];
            let mut used = 0;
            if rest_len > 0 {
                slices[0] = IoSlice::new(&self.out[self.out_pos..]);
                used = 1;
            }
            for (part, header) in parts.iter().zip(&headers).take(count) {
                if part.header_len > 0 {
                    slices[used] = IoSlice::new(&header[..part.header_len]);
                    used += 1;
                }
                let payload = self.data[part.index].message.payload();
                slices[used] = IoSlice::new(&payload[part.start..part.end]);
                used += 1;
            }
            sink.write_vectored(&slices[..used])
        };
        if let Ok(n) = result {
            let from_out = n.min(rest_len);
            self.out_pos += from_out;
            self.direct_written(n - from_out, &headers, &parts[..count]);
        }
        result
    }

    /// Whether a frame can go to the sink straight from the oldest message.
    /// The same as `plan_direct` planning anything, without planning: it
    /// is asked several times per `transmit_to`.
    pub(super) fn direct_ready(&self) -> bool {
        let ready = self.direct_ready_fast();
        debug_assert_eq!(
            ready,
            self.plan_direct(&mut [[0; MAX_HEADER_LEN]], &mut [DirectPart::default()]) > 0,
            "direct_ready must agree with plan_direct"
        );
        ready
    }

    pub(super) fn direct_ready_fast(&self) -> bool {
        if self.frame_in_progress() {
            // Only uncompressed frames are ever left in progress.
            return true;
        }
        let Some(tx) = self.data.front() else {
            return false;
        };
        if !self.direct_allowed() || tx.compress {
            return false;
        }
        let max = self.config.max_outgoing_frame.max(1);
        let end = (tx.offset + max).min(tx.message.len());
        end - tx.offset >= DIRECT_FRAME
    }

    /// Whether `plan_direct` plans whole frames, not only the rest of one
    /// in progress: a plaintext server's data while data may go out.
    pub(super) fn direct_allowed(&self) -> bool {
        let data_allowed = !self.close.sent
            && match self.close.pending {
                None => self.phase == Phase::Open,
                Some(_) => self.close.after_data,
            };
        self.role == Role::Server && matches!(self.transport, Transport::Plain) && data_allowed
    }

    /// The frames plaintext `transmit_to` writes from the messages after
    /// what `out` holds: the rest of a frame in progress, then whole frames
    /// of unmasked, uncompressed messages in order, starting with one of at
    /// least [`DIRECT_FRAME`] bytes (`fill_out` framed what came before).
    /// Returns how many of `parts` (and `headers`) it filled.
    pub(super) fn plan_direct(
        &self,
        headers: &mut [[u8; MAX_HEADER_LEN]],
        parts: &mut [DirectPart],
    ) -> usize {
        if !self.direct_allowed() {
            return self.plan_in_progress(parts);
        }
        let max = self.config.max_outgoing_frame.max(1);
        let mut count = 0;
        for (index, tx) in self.data.iter().enumerate() {
            if tx.compress {
                break;
            }
            let payload = tx.message.payload();
            let mut start = tx.offset;
            if index == 0 && tx.frame_end > start {
                parts[0] = DirectPart {
                    index,
                    start,
                    end: tx.frame_end,
                    header_len: 0,
                };
                count = 1;
                start = tx.frame_end;
                if start == payload.len() {
                    continue;
                }
            }
            loop {
                if count == parts.len() {
                    return count;
                }
                let end = (start + max).min(payload.len());
                if count == 0 && end - start < DIRECT_FRAME {
                    return 0;
                }
                let header_len = encode_data_header(&tx.message, start, end, &mut headers[count]);
                parts[count] = DirectPart {
                    index,
                    start,
                    end,
                    header_len,
                };
                count += 1;
                start = end;
                if end == payload.len() {
                    break;
                }
            }
        }
        count
    }

    /// Just the rest of a frame in progress (a Close may not go before it).
    pub(super) fn plan_in_progress(&self, parts: &mut [DirectPart]) -> usize {
        match self.data.front() {
            Some(tx) if tx.frame_end > tx.offset && !parts.is_empty() => {
                parts[0] = DirectPart {
                    index: 0,
                    start: tx.offset,
                    end: tx.frame_end,
                    header_len: 0,
                };
                1
            }
            _ => 0,
        }
    }

    /// Accounts for `n` bytes the sink took of the planned `parts`: finished
    /// frames and messages are done; a frame cut inside its payload stays in
    /// progress; the rest of a cut header goes into `out`.
    pub(super) fn direct_written(
        &mut self,
        mut n: usize,
        headers: &[[u8; MAX_HEADER_LEN]],
        parts: &[DirectPart],
    ) {
        for (part, header) in parts.iter().zip(headers) {
            if n == 0 {
                return;
            }
            let Some(tx) = self.data.front_mut() else {
                return;
            };
            if part.header_len > 0 {
                // The frame is framed: its bytes are no longer the queue's.
                tx.started = true;
                tx.frame_end = part.end;
                self.queued_bytes -= part.end - part.start;
                if n < part.header_len {
                    // All of `out` went before it.
                    self.out.clear();
                    self.out_pos = 0;
                    self.out.extend_from_slice(&header[n..part.header_len]);
                    return;
                }
                n -= part.header_len;
            }
            let took = n.min(part.end - part.start);
            n -= took;
            tx.offset = part.start + took;
            if tx.offset == part.end {
                tx.frame_end = 0;
                if part.end == tx.message.len() {
                    self.data.pop_front();
                }
            }
        }
    }
}
