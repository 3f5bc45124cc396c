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
    /// A protocol violation waits for the application to take the messages
    /// before it until this, at most.
    pub(crate) failure: Option<Instant>,
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
        // Pairwise, without an iterator: asked several times per message.
        earlier(
            earlier(
                earlier(self.handshake, self.close),
                earlier(self.keepalive, self.pong),
            ),
            earlier(earlier(self.linger, self.shrink), self.failure),
        )
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

/// The earlier of two optional deadlines (`None`: never).
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let base = Instant::now();
        // Every subset of the seven slots, armed at distinct times.
        for armed in 0u32..128 {
            for earliest in 0..7 {
                let mut t = Timers::default();
                let mut want = None;
                let slots = [
                    &mut t.handshake,
                    &mut t.close,
                    &mut t.keepalive,
                    &mut t.pong,
                    &mut t.linger,
                    &mut t.shrink,
                    &mut t.failure,
                ];
                for (i, slot) in slots.into_iter().enumerate() {
                    if armed & (1 << i) != 0 {
                        // Slot `earliest` gets the smallest time.
                        let at = base + Duration::from_secs(((i + 7 - earliest) % 7) as u64 + 1);
                        *slot = Some(at);
                        want = Some(want.map_or(at, |w: Instant| w.min(at)));
                    }
                }
                assert_eq!(t.next(), want, "armed {armed:07b}");
            }
        }
    }
}
