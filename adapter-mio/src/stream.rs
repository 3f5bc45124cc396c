//! One WebSocket connection on a mio `TcpStream`.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use wharf_core::{
    BytesMut, ClientRequest, ClientTls, CloseCode, Config, ConfigError, Connection, Event, Message,
    SendError,
};

/// Bytes read from the socket in one `read` call (outside large frames,
/// which are read straight into the connection's buffer).
const READ_CHUNK: usize = 64 * 1024;

/// The read buffer, 64-byte aligned (the kernel copies into aligned buffers
/// faster).
#[repr(align(64))]
struct ReadBuf([u8; READ_CHUNK]);

thread_local! {
    /// One read buffer per thread, shared by every stream the thread drives:
    /// an idle connection holds no read buffer at all, and a read event does
    /// not clear 64 KiB first.
    static READ_BUF: RefCell<Box<ReadBuf>> = RefCell::new(Box::new(ReadBuf([0u8; READ_CHUNK])));
}

/// Reads from `socket` into the spare capacity of `room` (empty, lent by
/// `Connection::read_with`) without clearing it first: a large payload is
/// copied once, by the kernel, into the connection's buffer.
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

/// A [`Connection`] driven on a non-blocking mio `TcpStream`, registered in
/// the caller's `Poll` under the caller's `Token`.
///
/// Call [`handle_event`](Self::handle_event) for every mio event with this
/// stream's token, [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes, and drain
/// [`poll_event`](Self::poll_event) after each. The stream keeps its mio
/// interest in step with what the connection wants (always readable while it
/// reads, writable only while bytes wait for the socket).
///
/// Once [`is_finished`](Self::is_finished) is true, deregister and drop it.
pub struct WsStream {
    socket: TcpStream,
    conn: Connection,
    token: Token,
    /// The interest registered with mio (`None`: not registered).
    interest: Option<Interest>,
    /// The TCP connect finished (always true for accepted sockets).
    connected: bool,
    /// The socket failed; the connection was told the transport ended.
    io_error: Option<io::Error>,
    /// The latest `now` seen.
    now: Instant,
}

impl std::fmt::Debug for WsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("token", &self.token)
            .field("conn", &self.conn)
            .field("wants_write", &self.conn.wants_write())
            .field("io_error", &self.io_error)
            .finish_non_exhaustive()
    }
}

impl WsStream {
    /// Wraps a connected socket (e.g. from `TcpListener::accept`) and its
    /// connection. Call [`register`](Self::register) next.
    pub fn new(socket: TcpStream, conn: Connection, token: Token) -> WsStream {
        // Small frames should not wait for Nagle's algorithm; a failure here
        // only costs latency.
        let _ = socket.set_nodelay(true);
        WsStream {
            socket,
            conn,
            token,
            interest: None,
            connected: true,
            io_error: None,
            now: Instant::now(),
        }
    }

    /// Starts a non-blocking TCP connect to `addr` and a client connection
    /// for `request`. Call [`register`](Self::register) next; the upgrade
    /// request goes out once the TCP connect completes.
    pub fn connect(
        addr: SocketAddr,
        request: &ClientRequest,
        config: Arc<Config>,
        tls: Option<&ClientTls>,
        now: Instant,
        token: Token,
    ) -> Result<WsStream, ConnectError> {
        let conn = Connection::client(config, request, tls, now)?;
        let socket = TcpStream::connect(addr)?;
        let mut stream = WsStream::new(socket, conn, token);
        stream.connected = false;
        Ok(stream)
    }

    /// Registers the socket with `registry` under this stream's token.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut self.socket, self.token, interest)?;
        self.interest = Some(interest);
        Ok(())
    }

    /// Removes the socket from `registry`.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        if self.interest.take().is_some() {
            registry.deregister(&mut self.socket)?;
        }
        Ok(())
    }

    /// This stream's token.
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }

    /// The address of the peer, once connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// The core connection (for queries such as `is_open`).
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Handles a mio event for this stream's token: reads what is readable,
    /// writes what is pending.
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        self.now = now;
        if !self.connected && !self.finish_connect(event, now) {
            self.update_interest(registry);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
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
                || event.is_read_closed()
                || event.is_error();
            self.read(now, to_the_end);
        }
        self.drive(registry, now);
    }

    /// Runs the connection's timers (call when [`poll_timeout`](Self::poll_timeout) passes).
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        self.conn.handle_timeout(now);
        self.drive(registry, now);
    }

    /// Queues a message and writes what the socket takes now. On error the
    /// message is handed back inside [`SendError`].
    pub fn send(
        &mut self,
        registry: &Registry,
        now: Instant,
        message: Message,
    ) -> Result<(), SendError> {
        self.conn.send(message)?;
        self.drive(registry, now);
        Ok(())
    }

    /// Like [`send`](Self::send), but the message goes out uncompressed even
    /// where permessage-deflate was agreed: for payloads that are already
    /// compressed or random (deflate would only cost time), and for secrets
    /// sent next to data an attacker chooses (compression leaks their
    /// length). Without the extension it is the same as `send`.
    pub fn send_uncompressed(
        &mut self,
        registry: &Registry,
        now: Instant,
        message: Message,
    ) -> Result<(), SendError> {
        self.conn.send_uncompressed(message)?;
        self.drive(registry, now);
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2).
    pub fn close(
        &mut self,
        registry: &Registry,
        now: Instant,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), ConfigError> {
        self.conn.close(code, reason)?;
        self.drive(registry, now);
        Ok(())
    }

    /// Server: answers the upgrade request reported by `Event::Request`.
    pub fn accept(
        &mut self,
        registry: &Registry,
        now: Instant,
        accept: wharf_core::Accept,
    ) -> Result<(), ConfigError> {
        self.conn.accept(accept)?;
        self.drive(registry, now);
        Ok(())
    }

    /// Server: refuses the upgrade request with an HTTP error.
    pub fn reject(
        &mut self,
        registry: &Registry,
        now: Instant,
        reject: wharf_core::Reject,
    ) -> Result<(), ConfigError> {
        self.conn.reject(reject)?;
        self.drive(registry, now);
        Ok(())
    }

    /// The next connection event. Taking an event can make the connection
    /// write (a Close after a protocol violation waits until the events before
    /// it were taken), so this writes what is pending too.
    #[must_use]
    pub fn poll_event(&mut self, registry: &Registry) -> Option<Event> {
        let event = self.conn.poll_event();
        if self.conn.wants_write() {
            let now = self.now;
            self.drive(registry, now);
        }
        event
    }

    /// Whether [`poll_event`](Self::poll_event) has something to report.
    #[must_use]
    pub fn has_events(&self) -> bool {
        self.conn.has_events()
    }

    /// The latest `now` this stream was given.
    #[must_use]
    pub fn last_now(&self) -> Instant {
        self.now
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// Takes back messages queued but not sent (after a failure).
    pub fn take_unsent(&mut self) -> Vec<Message> {
        self.conn.take_unsent()
    }

    /// The socket error that ended the connection, if one did.
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io_error.as_ref()
    }

    /// The connection is over and every byte went out (or the socket failed):
    /// deregister and drop the stream.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.conn.is_finished() || (self.io_error.is_some() && self.conn.is_closed())
    }

    /// Completes a non-blocking connect; false while it is still pending or
    /// once it failed.
    fn finish_connect(&mut self, event: &mio::event::Event, now: Instant) -> bool {
        if let Ok(Some(e)) | Err(e) = self.socket.take_error() {
            self.fail_io(e, now);
            return false;
        }
        if !(event.is_writable() || event.is_readable() || event.is_error()) {
            return false;
        }
        match self.socket.peer_addr() {
            Ok(_) => {
                self.connected = true;
                let _ = self.socket.set_nodelay(true);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                if event.is_error() || event.is_write_closed() {
                    let e = io::Error::new(io::ErrorKind::ConnectionRefused, "connect failed");
                    self.fail_io(e, now);
                }
                false
            }
            Err(e) => {
                self.fail_io(e, now);
                false
            }
        }
    }

    fn read(&mut self, now: Instant, to_the_end: bool) {
        if !self.conn.wants_read() || self.io_error.is_some() {
            return;
        }
        READ_BUF.with(|buf| self.read_into(&mut buf.borrow_mut().0, now, to_the_end));
    }

    /// Reads until the socket is empty (a short read, or `WouldBlock`), or
    /// with `to_the_end` until `WouldBlock` or the end of the stream.
    fn read_into(&mut self, buf: &mut [u8; READ_CHUNK], now: Instant, to_the_end: bool) {
        loop {
            // A large frame arriving: straight into the connection's buffer;
            // anything else through the thread's read buffer.
            let socket = &self.socket;
            let mut asked = buf.len();
            let result = match self.conn.read_with(now, |room| {
                asked = room.capacity() - room.len();
                recv_spare(socket, room)
            }) {
                Some(result) => result,
                None => self.socket.read(buf).inspect(|&n| {
                    if n > 0 {
                        self.conn.handle_input(now, &buf[..n]);
                    }
                }),
            };
            match result {
                Ok(0) => {
                    self.conn.handle_eof(now);
                    return;
                }
                Ok(n) => {
                    if !self.conn.wants_read() || (n < asked && !to_the_end) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail_io(e, now);
                    return;
                }
            }
        }
    }

    /// Writes pending bytes until the socket would block, then sets the interest.
    fn drive(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        if self.connected && self.io_error.is_none() {
            self.flush(now);
        }
        self.update_interest(registry);
    }

    /// Writes what the connection has straight into the socket (no buffer
    /// of the stream's own) until it would block.
    fn flush(&mut self, now: Instant) {
        if let Err(e) = self.conn.transmit_to(&mut self.socket) {
            self.fail_io(e, now);
        }
    }

    /// The socket failed: the connection ends as if the transport closed.
    fn fail_io(&mut self, e: io::Error, now: Instant) {
        if self.io_error.is_none() {
            self.io_error = Some(e);
        }
        self.conn.handle_eof(now);
        // Nothing more can be written.
        let mut discard = Vec::new();
        while self.conn.poll_transmit(&mut discard) > 0 {
            discard.clear();
        }
    }

    fn update_interest(&mut self, registry: &Registry) {
        let Some(current) = self.interest else {
            return;
        };
        if self.io_error.is_some() || self.is_finished() {
            return;
        }
        let pending = self.conn.wants_write();
        let wanted = if !self.connected {
            Interest::READABLE | Interest::WRITABLE
        } else if pending {
            if self.conn.wants_read() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::WRITABLE
            }
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

/// Starting a client connection failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The request or TLS settings are invalid.
    Config(ConfigError),
    /// The socket could not be created or the host not resolved.
    Io(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Config(e) => write!(f, "invalid connection settings: {e}"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Config(e) => Some(e),
            ConnectError::Io(e) => Some(e),
        }
    }
}

impl From<ConfigError> for ConnectError {
    fn from(e: ConfigError) -> Self {
        ConnectError::Config(e)
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}
