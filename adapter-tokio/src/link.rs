//! One socket: the only place where bytes move between a socket and a core
//! [`Endpoint`] (a `Connection`, or the reconnecting `Client`), and where
//! its timers run.
//!
//! A `Link` does no parsing and matches no opcode: it feeds what the socket
//! reads to `handle_input` / `handle_eof` (or, while a large frame arrives,
//! lets `read_with` read it straight into the connection's buffer), has the
//! endpoint write straight into the socket (`transmit_to`), and calls
//! `handle_timeout` when `poll_timeout`'s instant passes. Its owner drains
//! the endpoint's events after every [`Link::poll_io`], and decides when
//! the socket is done with (the core says so).

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;
use wharf_core::Endpoint;

/// Bytes read from the socket per call outside large frames (on the stack,
/// left uninitialised, so an idle connection keeps no read buffer and a
/// read clears nothing).
const READ_CHUNK: usize = 64 * 1024;

/// The time, from tokio's clock (so tests may pause it).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A timer for an endpoint's next deadline; the sleep is made when first
/// needed and reset only when the deadline moves.
#[derive(Default)]
pub(crate) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    at: Option<Instant>,
}

impl Timer {
    /// Ready once `deadline` has passed (`None`: never).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<()> {
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline,
            )))
        });
        if self.at != Some(deadline) {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            self.at = Some(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            self.at = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// A socket driven for one endpoint.
pub(crate) struct Link<S> {
    io: S,
    /// Something was written since the last `poll_flush`.
    unflushed: bool,
    timer: Timer,
    /// The socket reported its end (or a read error).
    read_done: bool,
    /// A write failed: nothing more can be sent; output is discarded.
    write_failed: bool,
    shutdown_done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    pub(crate) fn new(io: S) -> Self {
        Link {
            io,
            unflushed: false,
            timer: Timer::default(),
            read_done: false,
            write_failed: false,
            shutdown_done: false,
        }
    }

    /// One round of I/O: write what the endpoint has, read once (while it
    /// wants input), run due timers. Returns whether anything changed; the
    /// caller then drains the endpoint's events and calls again until
    /// nothing does.
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>, ep: &mut impl Endpoint) -> bool {
        let now = now();
        let mut progress = self.poll_write(cx, ep, now);
        progress |= self.poll_read(cx, ep, now);
        if self.timer.poll(cx, ep.poll_timeout()).is_ready() {
            // Fired: with a fresh `now`, then the owner polls again.
            ep.handle_timeout(self::now());
            progress = true;
        }
        progress
    }

    /// Writes what the endpoint has (as the first step of `poll_io`), for
    /// a sender's task; `cx` should not expect to be woken.
    pub(crate) fn write_now(&mut self, cx: &mut Context<'_>, ep: &mut impl Endpoint) -> bool {
        self.poll_write(cx, ep, now())
    }

    /// Sends our FIN once the endpoint is done with the socket (TLS
    /// close_notify, if any, went out before); ready when it went or
    /// cannot go.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown_done || self.write_failed {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(_) => {
                self.shutdown_done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, ep: &mut impl Endpoint, now: Instant) -> bool {
        if self.write_failed {
            // Nothing can reach the peer any more: dropped by the core.
            let pending = ep.wants_write();
            if pending {
                ep.handle_transport_error(now);
            }
            return pending;
        }
        if !ep.wants_write() && !self.unflushed {
            return false;
        }
        let mut progress = false;
        let mut sink = SyncWrite {
            io: &mut self.io,
            cx,
        };
        match ep.transmit_to(&mut sink) {
            Ok(n) => {
                if n > 0 {
                    self.unflushed = true;
                    progress = true;
                }
            }
            Err(_) => {
                // EPIPE, ECONNRESET or a zero-length write: the transport
                // is gone. The core knows only "the transport ended".
                self.fail_write(ep, now);
                return true;
            }
        }
        if self.unflushed && !ep.wants_write() {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => {
                    self.unflushed = false;
                    self.fail_write(ep, now);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    fn fail_write(&mut self, ep: &mut impl Endpoint, now: Instant) {
        self.write_failed = true;
        self.read_done = true;
        ep.handle_transport_error(now);
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, ep: &mut impl Endpoint, now: Instant) -> bool {
        if self.read_done || !ep.wants_read() {
            return false;
        }
        // A large frame arriving: straight into the connection's buffer.
        let io = &mut self.io;
        let direct = ep.read_with(now, |room| poll_read_buf(Pin::new(&mut *io), cx, room));
        let polled = match direct {
            Some(polled) => polled,
            None => {
                let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut buf = ReadBuf::uninit(&mut chunk);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n > 0 {
                            ep.handle_input(now, buf.filled());
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
                ep.handle_eof(now);
                true
            }
            Poll::Ready(Ok(_)) => true,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(_)) => {
                // A reset: to the core, the transport ended.
                self.read_done = true;
                ep.handle_eof(now);
                true
            }
            Poll::Pending => false,
        }
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
