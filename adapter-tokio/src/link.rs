//! One connection on one socket: the only place where bytes move between a
//! socket and a core [`Connection`], and where the core's timers run.
//!
//! A `Link` does no parsing and matches no opcode: it feeds what the socket
//! reads to `handle_input` / `handle_eof`, writes what `poll_transmit` hands
//! out, and calls `handle_timeout` when `poll_timeout`'s instant passes. Its
//! owner (a connection's driver task or the reconnecting client's task)
//! drains `poll_event` after every [`Link::poll_io`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wharf_core::Connection;

/// Bytes read from the socket per call (on the stack, so an idle connection
/// keeps no read buffer).
const READ_CHUNK: usize = 16 * 1024;

/// A write buffer larger than this is given back once it is drained.
const IDLE_WRITE_CAPACITY: usize = 64 * 1024;

/// Most `poll_transmit` / write rounds per `poll_io` call.
const WRITE_ROUNDS: usize = 16;

/// After the connection reports `Closed`, how long (beyond its close
/// timeout) the last bytes may take to leave before the socket is dropped
/// anyway.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// The time, from tokio's clock (so tests may pause it).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A connection and the socket it runs on.
pub(crate) struct Link<S> {
    pub(crate) conn: Connection,
    io: S,
    /// Bytes from `poll_transmit` not yet written.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Something was written since the last `poll_flush`.
    unflushed: bool,
    /// The timer for the earliest deadline; made when first needed.
    sleep: Option<Pin<Box<Sleep>>>,
    sleep_at: Option<Instant>,
    /// The owner's own deadline (e.g. to stop waiting for a queue to drain).
    extra_deadline: Option<Instant>,
    /// The socket reported its end (or a read error).
    read_done: bool,
    /// A write failed: nothing more can be sent; output is discarded.
    write_failed: bool,
    shutdown_done: bool,
    /// When the connection was first seen closed.
    closed_at: Option<Instant>,
    /// How long the closing phase may last at most (the close timeout).
    close_timeout: Duration,
    finished: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    pub(crate) fn new(conn: Connection, io: S, close_timeout: Duration) -> Self {
        Link {
            conn,
            io,
            wbuf: Vec::new(),
            wpos: 0,
            unflushed: false,
            sleep: None,
            sleep_at: None,
            extra_deadline: None,
            read_done: false,
            write_failed: false,
            shutdown_done: false,
            closed_at: None,
            close_timeout,
            finished: false,
        }
    }

    /// The socket is done with: the connection finished (or the closing
    /// phase overran its bound). Drop the link to close the socket.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Everything the connection produced so far has been written (there
    /// may still be bytes in the kernel's socket buffer).
    pub(crate) fn all_written(&self) -> bool {
        self.wpos >= self.wbuf.len() && !self.conn.wants_write()
    }

    /// The close timeout, which also bounds waiting to close.
    pub(crate) fn conn_close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Wakes the owner at `deadline` (if earlier than the connection's own).
    pub(crate) fn set_extra_deadline(&mut self, deadline: Option<Instant>) {
        self.extra_deadline = deadline;
    }

    /// One round of I/O: write what the connection has, read once (when
    /// `read` allows it, or always once the connection is closed), run due
    /// timers. Returns whether anything changed; the caller then drains
    /// `conn.poll_event()` and calls again until nothing does.
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>, read: bool) -> bool {
        if self.finished {
            return false;
        }
        let now = now();
        let mut progress = self.poll_write(cx, now);
        if read || self.conn.is_closed() {
            progress |= self.poll_read(cx, now);
        }
        progress |= self.poll_timers(cx, now);
        progress |= self.poll_finish(cx, now);
        progress
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        for _ in 0..WRITE_ROUNDS {
            if self.wpos >= self.wbuf.len() {
                self.wbuf.clear();
                self.wpos = 0;
                if self.conn.poll_transmit(&mut self.wbuf) == 0 {
                    if self.wbuf.capacity() > IDLE_WRITE_CAPACITY {
                        self.wbuf = Vec::new();
                    }
                    break;
                }
                progress = true;
            }
            if self.write_failed {
                // Nothing can reach the peer any more: discard.
                self.wpos = self.wbuf.len();
                continue;
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.wpos += n;
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(_) => {
                    // EPIPE, ECONNRESET or a zero-length write: the transport
                    // is gone. The core knows only "the transport ended".
                    self.write_failed = true;
                    self.read_done = true;
                    self.wpos = self.wbuf.len();
                    self.conn.handle_eof(now);
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        if self.unflushed && self.wpos >= self.wbuf.len() && !self.write_failed {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => {
                    self.unflushed = false;
                    self.write_failed = true;
                    self.read_done = true;
                    self.conn.handle_eof(now);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.read_done || !self.conn.wants_read() {
            return false;
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().is_empty() {
                    self.read_done = true;
                    self.conn.handle_eof(now);
                } else {
                    self.conn.handle_input(now, buf.filled());
                }
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(_)) => {
                // A reset: to the core, the transport ended.
                self.read_done = true;
                self.conn.handle_eof(now);
                true
            }
            Poll::Pending => false,
        }
    }

    /// The bound on the closing phase: the close timeout plus a margin, from
    /// the moment the connection reported `Closed`.
    fn drain_deadline(&mut self, now: Instant) -> Option<Instant> {
        if self.closed_at.is_none() && self.conn.is_closed() {
            self.closed_at = Some(now);
        }
        self.closed_at
            .map(|at| at + self.close_timeout + DRAIN_MARGIN)
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let drain = self.drain_deadline(now);
        let next = [self.conn.poll_timeout(), drain, self.extra_deadline]
            .into_iter()
            .flatten()
            .min();
        let Some(deadline) = next else {
            return false;
        };
        if deadline <= now {
            self.conn.handle_timeout(now);
            if self.extra_deadline.is_some_and(|d| d <= now) {
                self.extra_deadline = None;
            }
            return true;
        }
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            )))
        });
        if self.sleep_at != Some(deadline) {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            self.sleep_at = Some(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            // Fired: run what is due on the next round (with a fresh `now`).
            self.sleep_at = None;
            let now = self::now();
            self.conn.handle_timeout(now);
            if self.extra_deadline.is_some_and(|d| d <= now) {
                self.extra_deadline = None;
            }
            return true;
        }
        false
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let overran = self.drain_deadline(now).is_some_and(|d| d <= now);
        let done = self.conn.is_finished() && self.wpos >= self.wbuf.len();
        if !(done || overran) {
            return false;
        }
        if done && !overran && !self.shutdown_done && !self.write_failed {
            // Send our FIN (TLS close_notify, if any, is already out).
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Ready(_) => self.shutdown_done = true,
                Poll::Pending => return false,
            }
        }
        self.finished = true;
        true
    }
}
