//! One connection on one socket: the only place where bytes move between a
//! socket and a core [`Connection`], and where the core's timers run.
//!
//! A `Link` does no parsing and matches no opcode: it feeds what the socket
//! reads to `handle_input` / `handle_eof` (or, while a large frame arrives,
//! lets `read_with` read it straight into the connection's buffer), has the
//! connection write straight into the socket (`transmit_to`), and calls
//! `handle_timeout` when `poll_timeout`'s instant passes. Its owner (a
//! connection's driver task or the reconnecting client's task) drains
//! `poll_event` after every [`Link::poll_io`].

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;
use wharf_core::Connection;

/// Bytes read from the socket per call outside large frames (on the stack,
/// left uninitialised, so an idle connection keeps no read buffer and a
/// read clears nothing).
const READ_CHUNK: usize = 64 * 1024;

/// After the connection reports `Closed`, how long (beyond its close
/// timeout) the last bytes may take to leave before the socket is dropped
/// anyway.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// The earlier of two optional deadlines (asked on every turn: no iterator).
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The time, from tokio's clock (so tests may pause it).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A connection and the socket it runs on.
pub(crate) struct Link<S> {
    pub(crate) conn: Connection,
    io: S,
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
        !self.conn.wants_write()
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

    /// Writes what the connection has (as the first step of `poll_io`
    /// does), for a sender's task; `cx` should not expect to be woken.
    pub(crate) fn write_now(&mut self, cx: &mut Context<'_>) -> bool {
        if self.finished {
            return false;
        }
        self.poll_write(cx, now())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.write_failed {
            // Nothing can reach the peer any more: discard.
            let mut discard = Vec::new();
            let mut discarded = false;
            while self.conn.poll_transmit(&mut discard) > 0 {
                discard.clear();
                discarded = true;
            }
            return discarded;
        }
        let mut progress = false;
        let mut sink = SyncWrite {
            io: &mut self.io,
            cx,
        };
        match self.conn.transmit_to(&mut sink) {
            Ok(n) => {
                if n > 0 {
                    self.unflushed = true;
                    progress = true;
                }
            }
            Err(_) => {
                // EPIPE, ECONNRESET or a zero-length write: the transport
                // is gone. The core knows only "the transport ended".
                self.fail_write(now);
                return true;
            }
        }
        if self.unflushed && !self.conn.wants_write() {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => {
                    self.unflushed = false;
                    self.fail_write(now);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    fn fail_write(&mut self, now: Instant) {
        self.write_failed = true;
        self.read_done = true;
        self.conn.handle_eof(now);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.read_done || !self.conn.wants_read() {
            return false;
        }
        // A large frame arriving: straight into the connection's buffer.
        let io = &mut self.io;
        let direct = self
            .conn
            .read_with(now, |room| poll_read_buf(Pin::new(&mut *io), cx, room));
        let polled = match direct {
            Some(polled) => polled,
            None => {
                let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut buf = ReadBuf::uninit(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n > 0 {
                            self.conn.handle_input(now, buf.filled());
                        }
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            }
        };
        match polled {
            Poll::Ready(Ok(0)) => {
                self.read_done = true;
                self.conn.handle_eof(now);
                true
            }
            Poll::Ready(Ok(_)) => true,
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
        let next = earlier(
            earlier(self.conn.poll_timeout(), drain),
            self.extra_deadline,
        );
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
        let done = self.conn.is_finished();
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

/// The socket as a `std::io::Write` for one poll: `Pending` is `WouldBlock`
/// (the socket has registered the waker).
struct SyncWrite<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncWrite + Unpin> io::Write for SyncWrite<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
