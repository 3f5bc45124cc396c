//! The connection state machine: TLS (or plaintext) ▸ opening handshake ▸
//! frames ▸ messages, plus the closing handshake, keepalive and limits. One
//! file per concern; the struct and its public API are here.

mod assemble;
mod buffers;
mod closing;
mod delivery;
mod inflate;
mod opening;
mod recv;
mod send;
mod state;
mod vectored;

pub use crate::role::Role;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::Config;
use crate::deflate::Deflate;
use crate::error::{ConfigError, Error, TimeoutKind};
use crate::handshake::{self, ClientOffer, ClientRequest, DeflateParams, HeadScanner, Request};
use crate::message::Message;
use crate::rng::{OsSeededRng, Random};
use crate::timer::{expired, Timers};
use crate::tls::{ClientTls, ServerTls, TlsInfo, TlsSession};
use crate::utf8::Utf8Validator;

use self::assemble::RxMessage;
use self::closing::CloseState;
use self::delivery::Delivery;
use self::recv::Rx;
use self::send::TxMessage;
use self::state::{Ending, Phase};

enum Transport {
    Plain,
    Tls(Box<TlsSession>),
}

/// One WebSocket connection, client or server, over TLS or plaintext, with no
/// I/O inside.
///
/// # Driving it
///
/// Feed it what the socket reads with [`handle_input`](Self::handle_input)
/// (and [`handle_eof`](Self::handle_eof) when the socket reports the end),
/// call [`handle_timeout`](Self::handle_timeout) when the deadline from
/// [`poll_timeout`](Self::poll_timeout) passes, and make calls such as
/// [`send`](Self::send), [`ping`](Self::ping) and [`close`](Self::close).
///
/// **After every one of those calls**, drain [`poll_transmit`](Self::poll_transmit)
/// into the socket, drain [`poll_event`](Self::poll_event), and read
/// [`poll_timeout`](Self::poll_timeout) again. Once
/// [`is_finished`](Self::is_finished) is true, every byte has been handed out
/// and the socket can be closed.
///
/// The connection never reads a clock: every `now` comes from the caller, and
/// randomness (masking keys, the handshake key) from its [`Random`].
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    rng: Box<dyn Random>,
    transport: Transport,
    phase: Phase,
    /// The latest `now` seen, for calls that take none.
    now: Instant,

    inbuf: BytesMut,
    head: HeadScanner,
    rx: Rx,
    rx_msg: Option<RxMessage>,
    utf8: Utf8Validator,
    /// Stream mode: the start of a character cut off at the end of the last
    /// text chunk (at most 3 bytes), completed by the next bytes.
    utf8_carry: Vec<u8>,
    /// The transport reached its end (TCP EOF or TLS close_notify).
    eof: bool,
    /// The length (header and payload) of the last data frame if its
    /// payload was large enough for `read_with` (else 0): a stream of large
    /// frames is read into `inbuf` at frame boundaries too, while the
    /// buffer is kept (it is given back as before, see `arm_shrink`).
    large_frame: usize,

    client_key: String,
    offered: Vec<String>,
    /// Client: the permessage-deflate offer sent.
    deflate_offer: Option<ClientOffer>,
    request: Option<Request>,
    /// permessage-deflate, once negotiated.
    deflate: Option<Box<Deflate>>,

    /// Plaintext bytes ready for the transport.
    out: Vec<u8>,
    /// How much of `out` `transmit_to` already wrote (plaintext).
    out_pos: usize,
    /// Set while plaintext `transmit_to` fills `out`: framing stops at a
    /// data frame the sink can take straight from the message.
    direct_to_sink: bool,
    /// Plaintext bytes of this `poll_transmit` batch that went to the TLS
    /// session directly rather than through `out`.
    direct_batch: usize,
    /// Messages queued for sending, oldest first.
    data: VecDeque<TxMessage>,
    queued_bytes: usize,
    pongs: VecDeque<Bytes>,
    ping: Option<Bytes>,
    close: CloseState,
    close_notify_sent: bool,

    /// Events for the application, and the receive bound on them.
    inbox: Delivery,
    timers: Timers,
    /// Keepalive pings sent, for their payloads.
    keepalive_seq: u64,
    /// A protocol violation found while decoding; applied once the events
    /// before it were taken, so that the application's answers to them go
    /// out before the Close.
    pending_failure: Option<Error>,
    error: Option<Error>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("tls", &matches!(self.transport, Transport::Tls(_)))
            .field("queued_bytes", &self.queued_bytes)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A client connection for `request` (a `ws://` or `wss://` URL). The
    /// upgrade request is queued at once; drain [`poll_transmit`](Self::poll_transmit).
    ///
    /// `tls` is required for `wss://` and ignored for `ws://`.
    pub fn client(
        config: Arc<Config>,
        request: &ClientRequest,
        tls: Option<&ClientTls>,
        now: Instant,
    ) -> Result<Connection, ConfigError> {
        Self::client_with_rng(config, request, tls, now, Box::new(OsSeededRng::new()))
    }

    /// As [`client`](Self::client), with the randomness injected (tests, fuzzing).
    pub fn client_with_rng(
        config: Arc<Config>,
        request: &ClientRequest,
        tls: Option<&ClientTls>,
        now: Instant,
        mut rng: Box<dyn Random>,
    ) -> Result<Connection, ConfigError> {
        let transport = if request.is_tls() {
            let tls = tls.ok_or(ConfigError::TlsRequired)?;
            Transport::Tls(Box::new(TlsSession::client(tls, request.host())?))
        } else {
            Transport::Plain
        };
        if let Some(deflate) = &config.deflate {
            deflate.validate()?;
        }
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce);
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, nonce);
        let offer = config.deflate.as_ref().map(ClientOffer::new);
        let mut out = Vec::new();
        handshake::encode_request(request, &key, offer.as_ref(), &mut out)?;
        let mut conn = Connection::new(Role::Client, config, rng, transport, now);
        conn.out = out;
        conn.client_key = key;
        conn.offered = request.subprotocols().to_vec();
        conn.deflate_offer = offer;
        Ok(conn)
    }

    /// A server connection for one accepted socket. `tls` makes it `wss`.
    pub fn server(
        config: Arc<Config>,
        tls: Option<&ServerTls>,
        now: Instant,
    ) -> Result<Connection, ConfigError> {
        Self::server_with_rng(config, tls, now, Box::new(OsSeededRng::new()))
    }

    /// As [`server`](Self::server), with the randomness injected.
    pub fn server_with_rng(
        config: Arc<Config>,
        tls: Option<&ServerTls>,
        now: Instant,
        rng: Box<dyn Random>,
    ) -> Result<Connection, ConfigError> {
        if let Some(deflate) = &config.deflate {
            deflate.validate()?;
        }
        let transport = match tls {
            Some(tls) => Transport::Tls(Box::new(TlsSession::server(tls)?)),
            None => Transport::Plain,
        };
        Ok(Connection::new(Role::Server, config, rng, transport, now))
    }

    fn new(
        role: Role,
        config: Arc<Config>,
        rng: Box<dyn Random>,
        transport: Transport,
        now: Instant,
    ) -> Connection {
        let timers = Timers {
            handshake: Some(now + config.handshake_timeout),
            ..Timers::default()
        };
        Connection {
            role,
            config,
            rng,
            transport,
            phase: Phase::Handshake,
            now,
            inbuf: BytesMut::new(),
            head: HeadScanner::default(),
            rx: Rx::Header,
            rx_msg: None,
            utf8: Utf8Validator::default(),
            utf8_carry: Vec::new(),
            eof: false,
            large_frame: 0,
            client_key: String::new(),
            offered: Vec::new(),
            deflate_offer: None,
            request: None,
            deflate: None,
            out: Vec::new(),
            out_pos: 0,
            direct_to_sink: false,
            direct_batch: 0,
            data: VecDeque::new(),
            queued_bytes: 0,
            pongs: VecDeque::new(),
            ping: None,
            close: CloseState::default(),
            close_notify_sent: false,
            inbox: Delivery::default(),
            timers,
            keepalive_seq: 0,
            pending_failure: None,
            error: None,
        }
    }

    /// Runs the timers due at `now` (call it when `poll_timeout`'s instant passes;
    /// calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if expired(&mut self.timers.shrink, now) {
            self.shrink_buffers();
        }
        if expired(&mut self.timers.linger, now) && self.phase.is_closed() {
            self.phase = Phase::Closed(Ending::Abandoned);
        }
        if self.phase.is_closed() {
            return;
        }
        if expired(&mut self.timers.handshake, now) {
            self.fail(Error::Timeout(TimeoutKind::Handshake));
            return;
        }
        if expired(&mut self.timers.close, now) {
            self.fail(Error::Timeout(TimeoutKind::Close));
            return;
        }
        if expired(&mut self.timers.failure, now) {
            // The application did not take what came before a protocol
            // violation within the close timeout: apply it anyway.
            self.apply_pending_failure();
            return;
        }
        if expired(&mut self.timers.pong, now) {
            self.fail(Error::Timeout(TimeoutKind::Pong));
            return;
        }
        if expired(&mut self.timers.keepalive, now) && self.phase == Phase::Open && !self.close.sent
        {
            self.keepalive_seq += 1;
            self.ping = Some(Bytes::copy_from_slice(&self.keepalive_seq.to_be_bytes()));
            self.timers.pong = Some(now + self.config.pong_timeout);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Client or server.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake finished and the connection has not closed.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// `Closed` was reported.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.phase.is_closed()
    }

    /// Closed, every byte handed to `poll_transmit` (or the time to flush
    /// them passed), and (client after a clean close) the server ended the
    /// transport or the linger time passed: the socket can be closed and the
    /// connection dropped.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Closed(Ending::Flush) => !self.wants_write(),
            Phase::Closed(Ending::Abandoned) => true,
            _ => false,
        }
    }

    /// After closing, the peer did not take the remaining bytes within
    /// `close_timeout`: an adapter drops what it still holds for the socket
    /// instead of waiting to write it.
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.phase == Phase::Closed(Ending::Abandoned)
    }

    /// There are bytes to transmit: register for writability.
    ///
    /// Exact in every state: `transmit_to` and `poll_transmit` write
    /// nothing when this is false, so a loop may skip them then.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        if self.out_pos < self.out.len() {
            return true;
        }
        if let Transport::Tls(tls) = &self.transport {
            if tls.wants_write() {
                return true;
            }
            if self.phase.is_closed()
                && !self.close_notify_sent
                && !matches!(self.error, Some(Error::Tls(_)))
            {
                return true;
            }
        }
        self.has_frames_to_write()
    }

    /// The connection still reads from the socket.
    #[must_use]
    ///
    /// False while the receive bound is reached (the application has not
    /// taken enough of what arrived, see
    /// [`Config::max_receive_queue`](crate::Config::max_receive_queue)):
    /// stop reading the socket then, and read again once it is true after
    /// [`poll_event`](Self::poll_event) or [`release`](Self::release).
    pub fn wants_read(&self) -> bool {
        // Once closed nothing is decoded: reading only sees the end.
        !self.eof && !self.is_finished() && (!self.inbox.paused || self.phase.is_closed())
    }

    /// Bytes of queued messages not yet framed.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The error that failed the connection, if one did (sticky).
    #[must_use]
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The permessage-deflate parameters agreed in the opening handshake
    /// (RFC 7692 §7.1), when the extension is in use.
    #[must_use]
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_deref().map(Deflate::params)
    }

    /// What the TLS handshake agreed (protocol version, cipher suite, key
    /// exchange group); `None` for plaintext and until the TLS handshake is
    /// done.
    #[must_use]
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match &self.transport {
            Transport::Tls(tls) => tls.info(),
            Transport::Plain => None,
        }
    }

    /// Takes back the messages that were queued but not completely sent (for
    /// example after a failure), oldest first, so that nothing is lost silently.
    ///
    /// While the connection can still send data, a message whose first frames
    /// are already written stays queued and is finished: the peer must not see
    /// a new message start inside an unfinished one (§5.4).
    pub fn take_unsent(&mut self) -> Vec<Message> {
        // A frame the socket took part of is finished whatever happens (its
        // rest goes into the output buffer): nothing may go inside it.
        self.finish_frame_in_progress();
        let still_sending = self.phase == Phase::Open && !self.close.sent;
        let keep = match self.data.front() {
            Some(tx) if still_sending && (tx.offset > 0 || tx.started) => self.data.pop_front(),
            _ => None,
        };
        let taken = self.data.drain(..).map(|m| m.message).collect();
        self.queued_bytes = 0;
        if let Some(tx) = keep {
            self.queued_bytes = tx.message.len() - tx.offset;
            self.data.push_back(tx);
        }
        taken
    }
}
