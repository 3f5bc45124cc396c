//! Closing and failing: the closing handshake (§7.1), failures with their
//! close codes (§7.1.7), the end of the transport, and the one final
//! `Closed` event.

use bytes::BytesMut;

use crate::close::{validate_close, CloseCode, MAX_CLOSE_REASON};
use crate::error::{ConfigError, Error, HandshakeError, TimeoutKind, TlsError};
use crate::event::{CloseInfo, Event, Initiator};

use super::state::{Ending, Phase};
use super::{Connection, Role};

/// The closing handshake (§7.1).
#[derive(Default)]
pub(super) struct CloseState {
    /// Our Close frame, waiting to be written: code and reason.
    pub(super) pending: Option<(Option<CloseCode>, String)>,
    /// Our Close frame goes out only after the queued messages (an
    /// application close); a failure sends it at once.
    pub(super) after_data: bool,
    /// Our Close frame was queued (no data frame may follow it).
    pub(super) sent: bool,
    /// The code we sent.
    pub(super) sent_code: Option<CloseCode>,
    pub(super) sent_reason: String,
    /// The peer's Close: code (1005 when absent) and reason.
    pub(super) received: Option<(CloseCode, String)>,
    /// Who started the closing handshake.
    pub(super) initiator: Option<Initiator>,
}

impl Connection {
    /// Closes with 1001 (§7.4.1: the endpoint is going away, as a server
    /// shutting down or an application whose handles are all gone does),
    /// as [`close`](Self::close) does.
    pub fn close_going_away(&mut self) {
        // 1001 with no reason is always sendable.
        let _ = self.close(CloseCode::GOING_AWAY, "");
    }

    /// Starts the closing handshake (§7.1.2): the Close frame goes out after
    /// the messages already queued, then the peer has `close_timeout` to answer.
    ///
    /// Before the connection is open, this abandons the handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), ConfigError> {
        validate_close(code, reason)?;
        match self.phase {
            Phase::Closed(_) => Ok(()),
            Phase::Handshake | Phase::AwaitDecision => {
                self.finish(CloseInfo {
                    initiator: Initiator::Local,
                    code,
                    reason: reason.to_owned(),
                    clean: false,
                    error: None,
                });
                Ok(())
            }
            Phase::Open => {
                if self.close.sent || self.close.pending.is_some() {
                    return Ok(());
                }
                self.close.pending = Some((Some(code), reason.to_owned()));
                self.close.after_data = true;
                self.close.initiator = Some(Initiator::Local);
                self.timers.close = Some(self.now + self.config.close_timeout);
                self.timers.keepalive = None;
                self.timers.pong = None;
                // The peer's Close must be read, past the receive bound.
                self.resume_input();
                Ok(())
            }
        }
    }

    pub(super) fn on_close_frame(&mut self, code: CloseCode, reason: String) {
        self.close.received = Some((code, reason.clone()));
        self.emit(Event::CloseReceived {
            code,
            reason: reason.clone(),
        });
        if !self.close.sent {
            if let Some((ours, our_reason)) = &self.close.pending {
                // Our own Close was still waiting behind data: send it now.
                self.close.sent_code = *ours;
                self.close.sent_reason = our_reason.clone();
            } else {
                // Echo the code and the reason (§5.5.1: "typically echoes
                // the status code it received"; peers log the reason too),
                // at once: no more data from us. A Close without a code is
                // answered by one without a body.
                let echo = (code != CloseCode::NO_STATUS).then_some(code);
                let reason = if echo.is_some() {
                    reason.clone()
                } else {
                    String::new()
                };
                self.close.pending = Some((echo, reason));
                self.close.initiator = Some(Initiator::Remote);
            }
            self.close.after_data = false;
        }
        let initiator = self.close.initiator.unwrap_or(Initiator::Remote);
        let (code, reason) = match initiator {
            Initiator::Remote => (code, reason),
            Initiator::Local => (
                self.close.sent_code.unwrap_or(CloseCode::NO_STATUS),
                self.close.sent_reason.clone(),
            ),
        };
        self.finish(CloseInfo {
            initiator,
            code,
            reason,
            clean: true,
            error: None,
        });
    }

    pub(super) fn on_eof(&mut self) {
        // Input waiting behind inflated data is decoded first (resume_input).
        if self.phase == Phase::Open && self.inbox.paused {
            return;
        }
        // A violation found before the end is the real reason.
        self.apply_pending_failure();
        match self.phase {
            Phase::Closed(ending) => {
                // The peer ended the transport after the closing handshake.
                if ending == Ending::PeerEnd {
                    self.timers.linger = None;
                    self.phase = Phase::Closed(Ending::Flush);
                }
            }
            Phase::Handshake | Phase::AwaitDecision => {
                self.fail(Error::Handshake(HandshakeError::Eof));
            }
            Phase::Open => {
                self.error = Some(Error::TransportClosed);
                self.data_lost();
                self.finish(CloseInfo {
                    initiator: Initiator::Remote,
                    code: CloseCode::ABNORMAL,
                    reason: String::new(),
                    clean: false,
                    error: Some(Error::TransportClosed),
                });
                if self.frame_in_progress() {
                    // The rest of a frame the socket took part of still goes
                    // out (nothing may end inside a frame), while a peer that
                    // half-closed still reads; one that does not read cannot
                    // hold the connection open forever.
                    self.arm_linger();
                }
            }
        }
    }

    /// Bounds how long the closed connection waits for its last bytes to
    /// leave (or, for a client, for the server to end the transport): the
    /// close timeout, after which it is abandoned.
    pub(super) fn arm_linger(&mut self) {
        self.timers.linger = Some(self.now + self.config.close_timeout);
    }

    /// Fails the connection (§7.1.7): sends a Close with the fitting code when
    /// open, reports `Closed`, and ignores all further input.
    pub(super) fn fail(&mut self, error: Error) {
        if self.phase.is_closed() {
            return;
        }
        self.error = Some(error.clone());
        let (code, initiator) = match &error {
            Error::Protocol(e) => (e.close_code(), Initiator::Local),
            Error::Timeout(TimeoutKind::Pong) => (CloseCode::INTERNAL_ERROR, Initiator::Local),
            Error::Timeout(TimeoutKind::Close) => (
                self.close.sent_code.unwrap_or(CloseCode::NORMAL),
                self.close.initiator.unwrap_or(Initiator::Local),
            ),
            Error::Timeout(TimeoutKind::Handshake) => (CloseCode::ABNORMAL, Initiator::Local),
            // The peer's alert ended it, or this side refused the peer.
            Error::Tls(TlsError::AlertReceived(_)) => (CloseCode::TLS_HANDSHAKE, Initiator::Remote),
            Error::Tls(_) => (CloseCode::TLS_HANDSHAKE, Initiator::Local),
            Error::Handshake(HandshakeError::RejectedByApplication(_)) => {
                (CloseCode::ABNORMAL, Initiator::Local)
            }
            Error::Handshake(_) | Error::TransportClosed => {
                (CloseCode::ABNORMAL, Initiator::Remote)
            }
        };
        let reason = match &error {
            Error::Protocol(e) => truncate_reason(&e.to_string()),
            Error::Timeout(TimeoutKind::Pong) => "keepalive timeout".to_owned(),
            _ => String::new(),
        };
        // A protocol violation: what the application queued before it still
        // goes out, then the Close. A timeout: the peer is not listening, so
        // the Close goes at once and queued messages stay for `take_unsent`.
        let after_data = matches!(error, Error::Protocol(_));
        if self.phase == Phase::Open && !self.close.sent && code.is_sendable() {
            self.close.pending = Some((Some(code), reason.clone()));
            self.close.after_data = after_data;
        }
        self.data_lost();
        let clean = false;
        let (code, reason) = match (&error, &self.close.received) {
            (Error::Timeout(TimeoutKind::Close), _) => (code, self.close.sent_reason.clone()),
            _ => (code, reason),
        };
        self.finish(CloseInfo {
            initiator,
            code,
            reason,
            clean,
            error: Some(error),
        });
        // A peer that stops reading cannot hold the connection open forever.
        self.arm_linger();
    }

    pub(super) fn apply_pending_failure(&mut self) {
        if let Some(e) = self.pending_failure.take() {
            self.fail(e);
        }
    }

    /// No more data frames will go out: drop pending control frames. Queued
    /// messages stay for `take_unsent`.
    pub(super) fn data_lost(&mut self) {
        self.pongs.clear();
        self.ping = None;
    }

    /// Reports `Closed` (once) and stops the timers that no longer apply.
    pub(super) fn finish(&mut self, info: CloseInfo) {
        if self.phase.is_closed() {
            return;
        }
        self.timers.clear();
        self.rx_msg = None;
        self.inbuf = BytesMut::new();
        self.phase = if info.clean && self.role == Role::Client && !self.eof {
            // §7.1.1: the server ends the TCP connection first; wait a while.
            Phase::Closed(Ending::PeerEnd)
        } else {
            Phase::Closed(Ending::Flush)
        };
        // Either way bounded: a peer that stops reading (or never ends its
        // side) cannot hold the socket open.
        self.arm_linger();
        self.emit(Event::Closed(info));
    }
}

pub(super) fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(MAX_CLOSE_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
