//! What an adapter drives on a socket: bytes and time in, bytes and
//! deadlines out. [`Connection`](crate::Connection) (one WebSocket) and
//! [`Client`](crate::Client) (one reconnecting client, a connection at a
//! time) both are one, so an adapter writes its socket code once.

use std::io;
use std::time::Instant;

use bytes::BytesMut;

/// The byte-and-time interface of a sans-IO endpoint. Each method is the
/// one of the same name on [`Connection`](crate::Connection), where it is
/// documented; after every call, write what it wants to write, drain its
/// events and read its deadline again.
pub trait Endpoint {
    /// Feeds bytes read from the socket.
    fn handle_input(&mut self, now: Instant, data: &[u8]);
    /// Lends the input buffer to `read` for a large frame; `None` when not.
    fn read_with<R>(&mut self, now: Instant, read: impl FnOnce(&mut BytesMut) -> R) -> Option<R>;
    /// The socket reached its end, or failed.
    fn handle_eof(&mut self, now: Instant);
    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Writes what is pending into `sink` until it would block.
    fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize>;
    /// Appends what is pending to `buf`.
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize;
    /// Read the socket (false: stop reading until it is true again).
    fn wants_read(&self) -> bool;
    /// There are bytes to write (register for writability).
    fn wants_write(&self) -> bool;
    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The socket failed (a reset, a failed write): the endpoint ends as if
    /// the transport closed, and what it still had to write is dropped,
    /// since nothing can reach the peer any more.
    fn handle_transport_error(&mut self, now: Instant) {
        self.handle_eof(now);
        let mut discard = Vec::new();
        while self.wants_write() && self.poll_transmit(&mut discard) > 0 {
            discard.clear();
        }
    }
}

impl Endpoint for crate::Connection {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        crate::Connection::handle_input(self, now, data);
    }
    fn read_with<R>(&mut self, now: Instant, read: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        crate::Connection::read_with(self, now, read)
    }
    fn handle_eof(&mut self, now: Instant) {
        crate::Connection::handle_eof(self, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        crate::Connection::handle_timeout(self, now);
    }
    fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        crate::Connection::transmit_to(self, sink)
    }
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        crate::Connection::poll_transmit(self, buf)
    }
    fn wants_read(&self) -> bool {
        crate::Connection::wants_read(self)
    }
    fn wants_write(&self) -> bool {
        crate::Connection::wants_write(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::Connection::poll_timeout(self)
    }
}
