//! The deadlines a connection keeps. Time only comes in through the caller's `now`.

use std::time::Instant;

/// Every deadline a connection may be waiting for; `None` when not armed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Timers {
    /// The opening handshake must finish before this.
    pub(crate) handshake: Option<Instant>,
    /// Our Close frame must be answered before this (§7.1.1).
    pub(crate) close: Option<Instant>,
    /// Send a keepalive Ping at this point if nothing arrived before.
    pub(crate) keepalive: Option<Instant>,
    /// Something must arrive before this after a keepalive Ping.
    pub(crate) pong: Option<Instant>,
    /// Client after a clean close: wait this long for the server to end the
    /// transport (§7.1.1: the server closes TCP first).
    pub(crate) linger: Option<Instant>,
    /// Give back buffers that grew for a large message, if the traffic
    /// that needed them has stopped by then.
    pub(crate) shrink: Option<Instant>,
}

impl Timers {
    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        [
            self.handshake,
            self.close,
            self.keepalive,
            self.pong,
            self.linger,
            self.shrink,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Disarms everything.
    pub(crate) fn clear(&mut self) {
        *self = Timers::default();
    }
}

/// Takes a deadline out of `slot` if it has passed at `now`.
pub(crate) fn expired(slot: &mut Option<Instant>, now: Instant) -> bool {
    match *slot {
        Some(t) if t <= now => {
            *slot = None;
            true
        }
        _ => false,
    }
}
