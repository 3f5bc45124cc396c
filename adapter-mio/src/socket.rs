//! One mio `TcpStream` driven for a core [`Endpoint`]: the only place where
//! bytes move between a socket and the core, and where the socket's mio
//! interest follows what the endpoint wants. It parses nothing.

use std::cell::RefCell;
use std::io::{self, Read};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use wharf_core::{BytesMut, Connection, Endpoint, Event};

/// Bytes read from the socket in one `read` call (outside large frames,
/// which are read straight into the connection's buffer).
const READ_CHUNK: usize = 64 * 1024;

/// The read buffer, 64-byte aligned (the kernel copies into aligned buffers
/// faster).
#[repr(align(64))]
struct ReadBuf([u8; READ_CHUNK]);

thread_local! {
    /// One read buffer per thread, shared by every socket the thread drives:
    /// an idle connection holds no read buffer at all, and a read event does
    /// not clear 64 KiB first.
    static READ_BUF: RefCell<Box<ReadBuf>> = RefCell::new(Box::new(ReadBuf([0u8; READ_CHUNK])));
}

/// Reads from `socket` into the spare capacity of `room` (empty, lent by
/// `read_with`) without clearing it first: a large payload is copied once,
/// by the kernel, into the connection's buffer.
///
/// Through `try_io`, as mio's own reads are: a backend that re-arms the
/// socket only after a read said `WouldBlock` (mio's poll(2) backend,
/// Windows) must see that answer, or it reports nothing more.
#[allow(unsafe_code)]
fn recv_spare(socket: &TcpStream, room: &mut BytesMut) -> io::Result<usize> {
    let spare = room.spare_capacity_mut();
    let room_len = spare.len();
    let n = socket
        .try_io(|| socket2::SockRef::from(socket).recv(spare))?
        .min(room_len);
    // SAFETY: `recv` wrote (initialised) the first `n` bytes of the spare
    // capacity, which starts at `room.len()`; `n` is within that capacity.
    unsafe { room.set_len(room.len() + n) };
    Ok(n)
}

/// A non-blocking socket under the caller's `Token`.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) socket: TcpStream,
    pub(crate) token: Token,
    /// The interest registered with mio (`None`: not registered).
    interest: Option<Interest>,
    /// The TCP connect finished (always true for accepted sockets).
    pub(crate) connected: bool,
    /// The socket failed; the endpoint was told the transport ended.
    pub(crate) io_error: Option<io::Error>,
    /// A read stopped because the endpoint wanted no more input (its
    /// receive bound): read again once it does, without waiting for an
    /// edge that will not come.
    read_paused: bool,
}

/// What a mio event said, for the connect check.
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) error: bool,
    pub(crate) read_closed: bool,
    pub(crate) write_closed: bool,
}

impl Readiness {
    pub(crate) fn of(event: &mio::event::Event) -> Readiness {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            error: event.is_error(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
        }
    }
}

impl Socket {
    pub(crate) fn new(socket: TcpStream, token: Token, connected: bool) -> Socket {
        // Small frames should not wait for Nagle's algorithm; a failure here
        // only costs latency.
        let _ = socket.set_nodelay(true);
        Socket {
            socket,
            token,
            interest: None,
            connected,
            io_error: None,
            read_paused: false,
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut self.socket, self.token, interest)?;
        self.interest = Some(interest);
        Ok(())
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        if self.interest.take().is_some() {
            registry.deregister(&mut self.socket)?;
        }
        Ok(())
    }

    /// For a connecting socket: whether the connect finished (`Ok(true)`),
    /// is still under way (`Ok(false)`) or failed.
    pub(crate) fn finish_connect(&mut self, event: &Readiness) -> io::Result<bool> {
        if let Ok(Some(e)) | Err(e) = self.socket.take_error() {
            return Err(e);
        }
        if !(event.writable || event.readable || event.error) {
            return Ok(false);
        }
        match self.socket.peer_addr() {
            Ok(_) => {
                self.connected = true;
                let _ = self.socket.set_nodelay(true);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                if event.error || event.write_closed {
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connect failed",
                    ))
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// After a mio event for a connected socket: reads what is readable.
    pub(crate) fn on_event(&mut self, ep: &mut impl Endpoint, event: &Readiness, now: Instant) {
        if event.readable || event.read_closed || event.error {
            // Without a hang-up or an error in the event, a read shorter than
            // asked for has emptied the socket: data arriving after it raises
            // a new edge (epoll(7); kqueue likewise), so the read that would
            // only say `WouldBlock` is skipped, one system call per message
            // saved. With one, read on to the end of the stream: no later
            // edge would report it. mio's Windows backend (and its forced
            // poll(2) one) re-arms only after `WouldBlock`: read on there
            // (tokio makes the same exceptions).
            let to_the_end = cfg!(windows)
                || cfg!(mio_unsupported_force_poll_poll)
                || event.read_closed
                || event.error;
            self.read(ep, now, to_the_end);
        }
    }

    /// The connection's next event. Taking one can let a connection held
    /// at its receive bound read on, and make it write (a Close after a
    /// protocol violation waits until the events before it were taken), so
    /// this reads and writes what is due too.
    pub(crate) fn poll_event(
        &mut self,
        conn: &mut Connection,
        registry: &Registry,
        now: Instant,
    ) -> Option<Event> {
        let mut event = conn.poll_event();
        if self.resume(conn, now) && event.is_none() {
            event = conn.poll_event();
        }
        if conn.wants_write() || event.is_none() {
            self.drive(conn, registry, now);
        }
        event
    }

    /// Reads on if a read stopped at the receive bound and the endpoint
    /// wants input again (after the application took events).
    pub(crate) fn resume(&mut self, ep: &mut impl Endpoint, now: Instant) -> bool {
        if self.read_paused && ep.wants_read() {
            self.read_paused = false;
            // Whatever waits in the socket raised its edge already.
            self.read(ep, now, true);
            return true;
        }
        false
    }

    fn read(&mut self, ep: &mut impl Endpoint, now: Instant, to_the_end: bool) {
        if self.io_error.is_some() {
            return;
        }
        if !ep.wants_read() {
            self.read_paused = true;
            return;
        }
        READ_BUF.with(|buf| self.read_into(ep, &mut buf.borrow_mut().0, now, to_the_end));
    }

    /// Reads until the socket is empty (a short read, or `WouldBlock`), or
    /// with `to_the_end` until `WouldBlock` or the end of the stream; stops
    /// early when the endpoint wants no more input.
    fn read_into(
        &mut self,
        ep: &mut impl Endpoint,
        buf: &mut [u8; READ_CHUNK],
        now: Instant,
        to_the_end: bool,
    ) {
        loop {
            // A large frame arriving: straight into the connection's buffer;
            // anything else through the thread's read buffer.
            let socket = &self.socket;
            let mut asked = buf.len();
            let result = match ep.read_with(now, |room| {
                asked = room.capacity() - room.len();
                recv_spare(socket, room)
            }) {
                Some(result) => result,
                None => self.socket.read(buf).inspect(|&n| {
                    if n > 0 {
                        ep.handle_input(now, &buf[..n]);
                    }
                }),
            };
            match result {
                Ok(0) => {
                    ep.handle_eof(now);
                    return;
                }
                Ok(n) => {
                    if !ep.wants_read() {
                        self.read_paused = true;
                        return;
                    }
                    if n < asked && !to_the_end {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ep, e, now);
                    return;
                }
            }
        }
    }

    /// Writes what the endpoint has straight into the socket until it would
    /// block, then sets the interest.
    pub(crate) fn drive(&mut self, ep: &mut impl Endpoint, registry: &Registry, now: Instant) {
        if self.connected && self.io_error.is_none() && ep.wants_write() {
            if let Err(e) = ep.transmit_to(&mut self.socket) {
                self.fail(ep, e, now);
            }
        }
        self.update_interest(ep, registry);
    }

    /// The socket failed: the endpoint ends as if the transport closed.
    pub(crate) fn fail(&mut self, ep: &mut impl Endpoint, e: io::Error, now: Instant) {
        if self.io_error.is_none() {
            self.io_error = Some(e);
        }
        ep.handle_transport_error(now);
    }

    fn update_interest(&mut self, ep: &impl Endpoint, registry: &Registry) {
        let Some(current) = self.interest else {
            return;
        };
        if self.io_error.is_some() {
            return;
        }
        let wanted = if !self.connected || (ep.wants_write() && ep.wants_read()) {
            Interest::READABLE | Interest::WRITABLE
        } else if ep.wants_write() {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if wanted != current
            && registry
                .reregister(&mut self.socket, self.token, wanted)
                .is_ok()
        {
            self.interest = Some(wanted);
        }
    }
}
