//! Buffer sizing: buffers that grew for large messages are kept while
//! traffic flows and given back after a quiet second.

use std::time::Duration;

use bytes::BytesMut;

use crate::deflate::Deflate;

use super::Connection;

/// A buffer larger than this is given back to the allocator once the
/// connection has been quiet for [`BUFFER_IDLE`], so idle connections stay
/// small; busy ones keep it, so a stream of large messages reuses one buffer
/// instead of growing a new one for each.
pub(super) const IDLE_INBUF_CAPACITY: usize = 64 * 1024;

/// How long a connection keeps a large buffer after the traffic that needed
/// it. The caller's `handle_timeout` at that point is also its cue to shrink
/// its own buffers (see [`Connection::poll_transmit`]).
pub(super) const BUFFER_IDLE: Duration = Duration::from_secs(1);

impl Connection {
    /// Arms the shrink timer when a buffer (ours, or the caller's output
    /// buffer of `caller_capacity`) grew past what an idle connection keeps.
    /// A closed connection is about to be dropped with its buffers.
    pub(super) fn arm_shrink(&mut self, caller_capacity: usize) {
        let large = self.inbuf.capacity() > IDLE_INBUF_CAPACITY
            || self.out.capacity() > IDLE_INBUF_CAPACITY
            || caller_capacity > IDLE_INBUF_CAPACITY
            || self
                .deflate
                .as_deref()
                .is_some_and(Deflate::holds_large_buffers);
        if large && !self.phase.is_closed() {
            self.timers.shrink = Some(self.now + BUFFER_IDLE);
        }
    }

    /// Gives back the input and output buffers if they are empty and large.
    pub(super) fn shrink_buffers(&mut self) {
        if let Some(d) = self.deflate.as_deref_mut() {
            d.shrink_buffers();
        }
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
        if self.out.is_empty() && self.out.capacity() > IDLE_INBUF_CAPACITY {
            self.out = Vec::new();
        }
    }
}
