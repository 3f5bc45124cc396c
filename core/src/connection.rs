//! The connection state machine: TLS (or plaintext) ▸ opening handshake ▸
//! frames ▸ messages, plus the closing handshake, keepalive and limits.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{
    encode_close_body, parse_close_body, validate_close, CloseCode, MAX_CLOSE_REASON,
};
use crate::config::{Config, MessageMode};
use crate::copy;
use crate::deflate::{Deflate, CHUNK, INFLATE_TURN, RSV1, TAIL};
use crate::error::{
    ConfigError, Error, HandshakeError, ProtocolError, SendError, TimeoutKind, TlsError,
};
use crate::event::{CloseInfo, Event, Initiator, Open};
use crate::frame::{
    apply_mask, decode_header, encode_header, extend_masked, FrameHeader, OpCode, MAX_HEADER_LEN,
};
use crate::handshake::{
    self, Accept, ClientOffer, ClientRequest, DeflateParams, HeadScanner, Reject, Request,
};
use crate::message::{Chunk, Message, MessageKind, Text};
use crate::rng::{OsSeededRng, Random};
use crate::timer::{expired, Timers};
use crate::tls::{ClientTls, ServerTls, TlsInfo, TlsSession};
use crate::utf8::Utf8Validator;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the upgrade request and masks its frames (§5.3).
    Client,
    /// Answers the upgrade request; its frames are not masked.
    Server,
}

/// How many plaintext bytes one `poll_transmit` call prepares at most (soft:
/// whole frames are never split, so one frame may go past it).
const TRANSMIT_BATCH: usize = 256 * 1024;

/// Unmasked data frames at least this long go out straight from the message
/// (header and payload as separate slices) instead of through the framing
/// buffer: to the TLS session, or to the sink in `transmit_to`. One copy
/// less per byte; shorter frames are cheaper to copy than to gather.
const DIRECT_FRAME: usize = 4 * 1024;

/// At most this many frames go to the sink in one plaintext `transmit_to`
/// write (a 1 MiB message in 64 KiB frames is 16).
const MAX_DIRECT_FRAMES: usize = 32;

/// A buffer larger than this is given back to the allocator once the
/// connection has been quiet for [`BUFFER_IDLE`], so idle connections stay
/// small; busy ones keep it, so a stream of large messages reuses one buffer
/// instead of growing a new one for each.
const IDLE_INBUF_CAPACITY: usize = 64 * 1024;

/// `read_with` reads straight into the input buffer only while at least
/// this much of a data frame's payload is still to come.
const DIRECT_READ: usize = 16 * 1024;

/// The most room `read_with` reserves at once (the buffer grows further as
/// a larger frame arrives).
const DIRECT_READ_MAX: usize = 1024 * 1024;

/// How long a connection keeps a large buffer after the traffic that needed
/// it. The caller's `handle_timeout` at that point is also its cue to shrink
/// its own buffers (see [`Connection::poll_transmit`]).
const BUFFER_IDLE: Duration = Duration::from_secs(1);

/// Pongs waiting to be written. Every Ping is answered while fewer are
/// waiting; beyond that the oldest answers are dropped (§5.5.3 allows
/// answering only the most recent Ping).
const MAX_PENDING_PONGS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TLS handshake and/or HTTP upgrade in progress.
    Handshake,
    /// Server: the request was reported; waiting for `accept` / `reject`.
    AwaitDecision,
    /// Frames flow (possibly with a closing handshake under way).
    Open,
    /// `Closed` was reported. Nothing but queued bytes go out.
    Closed,
}

enum Transport {
    Plain,
    Tls(Box<TlsSession>),
}

/// The incoming message being assembled.
struct RxMessage {
    kind: MessageKind,
    fragments: usize,
    size: u64,
    /// Reassembled bytes (not used for single-frame messages, which are
    /// handed out without a copy).
    buf: BytesMut,
    /// Stream mode: no chunk reported yet.
    first_chunk: bool,
    /// RSV1 was set on its first frame: the payload is DEFLATE data (RFC 7692 §6).
    compressed: bool,
    /// Inflated bytes of a compressed message so far.
    inflated_size: usize,
}

/// Where the decoder is in the current frame.
enum Rx {
    Header,
    Payload {
        header: FrameHeader,
        /// Payload bytes of the frame not yet consumed from `inbuf`.
        remaining: u64,
        /// How many bytes at the front of `inbuf` are already unmasked and
        /// validated (all belong to this frame).
        ready: usize,
        /// Payload bytes of the frame consumed so far (the mask offset).
        consumed: u64,
    },
}

/// An outgoing data message, framed lazily as `poll_transmit` drains it.
struct TxMessage {
    message: Message,
    /// Payload bytes already framed (compressed ones: fed to the compressor).
    offset: usize,
    /// Goes out compressed (RFC 7692 §7.2.1).
    compress: bool,
    /// Its first frame was written.
    started: bool,
    /// Plaintext `transmit_to`: the end of the frame whose header the sink
    /// took but whose payload it has not taken whole (`offset..frame_end`
    /// is still to go, with no header); 0 when between frames.
    frame_end: usize,
}

/// One frame of a plaintext `transmit_to` write, taken from the message
/// (`start..end` of the payload of queued message `index`).
#[derive(Clone, Copy, Default)]
struct DirectPart {
    index: usize,
    start: usize,
    end: usize,
    /// Header bytes before the payload: 0 for the rest of a frame in progress.
    header_len: usize,
}

/// The closing handshake (§7.1).
#[derive(Default)]
struct CloseState {
    /// Our Close frame, waiting to be written: code and reason.
    pending: Option<(Option<CloseCode>, String)>,
    /// Our Close frame goes out only after the queued messages (an
    /// application close); a failure sends it at once.
    after_data: bool,
    /// Our Close frame was queued (no data frame may follow it).
    sent: bool,
    /// The code we sent.
    sent_code: Option<CloseCode>,
    sent_reason: String,
    /// The peer's Close: code (1005 when absent) and reason.
    received: Option<(CloseCode, String)>,
    /// Who started the closing handshake.
    initiator: Option<Initiator>,
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

    // ---- input ----
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

    // ---- handshake ----
    client_key: String,
    offered: Vec<String>,
    /// Client: the permessage-deflate offer sent.
    deflate_offer: Option<ClientOffer>,
    request: Option<Request>,
    /// permessage-deflate, once negotiated.
    deflate: Option<Box<Deflate>>,

    // ---- output ----
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

    // ---- reporting ----
    events: VecDeque<Event>,
    timers: Timers,
    /// Keepalive pings sent, for their payloads.
    keepalive_seq: u64,
    /// The transport may be closed once the output is drained.
    done: bool,
    /// The output will never be drained (the flush deadline passed).
    abandoned: bool,
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
            events: VecDeque::new(),
            timers,
            keepalive_seq: 0,
            done: false,
            abandoned: false,
            pending_failure: None,
            error: None,
        }
    }

    // ------------------------------------------------------------------
    // Inputs
    // ------------------------------------------------------------------

    /// Feeds bytes read from the socket. Any split is fine: a partial frame or
    /// head is kept until the rest arrives.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        if data.is_empty() || !self.takes_input() {
            return;
        }
        self.note_liveness(now);
        match &mut self.transport {
            Transport::Plain => copy::append(&mut self.inbuf, data),
            Transport::Tls(tls) => match tls.read_tls(data, &mut self.inbuf) {
                Ok(read) => {
                    if read.peer_closed {
                        self.eof = true;
                    }
                }
                Err(e) => {
                    // Keep what decrypted before the failure, then fail.
                    self.process();
                    self.fail(Error::Tls(e));
                    return;
                }
            },
        }
        self.decode_input();
    }

    /// Plaintext only: lets `read` append bytes from the socket straight to
    /// the connection's input buffer, then decodes them as
    /// [`handle_input`](Self::handle_input) would. This saves copying the
    /// payload of a large frame through a read buffer of the caller's.
    ///
    /// Returns `None`, without calling `read`, unless the connection is
    /// plaintext, still takes input, and either a data frame is arriving
    /// with at least 16 KiB of its payload still to come, or the last data
    /// frame was that large, the next has not begun and the buffer that
    /// held the last one is free again (its messages were dropped). On
    /// `None`, read into a buffer of your own and call `handle_input`.
    /// Small reads go that way so that an idle connection keeps no read
    /// buffer; between frames, only a buffer the connection kept anyway is
    /// lent.
    ///
    /// `read` gets an empty buffer whose spare capacity (at least 16 KiB:
    /// the rest of the frame, or between frames the size of the last one,
    /// bounded by 1 MiB) it may fill, for example with tokio-util's
    /// `poll_read_buf`, which reads into it without clearing it first.
    /// Whatever it appends is input; a read that appends nothing changes
    /// nothing (an end of stream is still reported with
    /// [`handle_eof`](Self::handle_eof)).
    ///
    /// ```
    /// use std::io::{self, Read};
    /// use std::time::Instant;
    /// use wharf_core::Connection;
    ///
    /// /// One read from a blocking `socket`; `Ok(0)` is its end.
    /// fn read_once(conn: &mut Connection, socket: &mut impl Read) -> io::Result<usize> {
    ///     let now = Instant::now();
    ///     // A std reader needs initialised memory: fill the room with zeros.
    ///     let direct = conn.read_with(now, |room| {
    ///         room.resize(room.capacity(), 0);
    ///         let n = socket.read(&mut room[..]);
    ///         room.truncate(*n.as_ref().unwrap_or(&0));
    ///         n
    ///     });
    ///     let n = match direct {
    ///         Some(n) => n?,
    ///         None => {
    ///             let mut buf = [0u8; 4096];
    ///             let n = socket.read(&mut buf)?;
    ///             conn.handle_input(now, &buf[..n]);
    ///             n
    ///         }
    ///     };
    ///     if n == 0 {
    ///         conn.handle_eof(now);
    ///     }
    ///     Ok(n)
    /// }
    /// ```
    pub fn read_with<R>(
        &mut self,
        now: Instant,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Option<R> {
        if !matches!(self.transport, Transport::Plain) || !self.takes_input() {
            return None;
        }
        match self.rx {
            Rx::Payload { remaining, .. } => {
                let to_come = remaining.saturating_sub(self.inbuf.len() as u64);
                if to_come < DIRECT_READ as u64 {
                    return None;
                }
                // Room for the rest of the frame (bounded), after what is
                // buffered; a buffer kept from the previous message is
                // reused in place.
                self.inbuf
                    .reserve(to_come.min(DIRECT_READ_MAX as u64) as usize);
            }
            // Between frames after a large one: room for another like it,
            // if the buffer that held it is free again (the next frame may
            // be small, so this never allocates).
            Rx::Header => {
                let room = self.large_frame.min(DIRECT_READ_MAX);
                if room == 0 || !self.inbuf.try_reclaim(room) {
                    return None;
                }
            }
        }
        let mut room = self.inbuf.split_off(self.inbuf.len());
        let result = read(&mut room);
        let appended = !room.is_empty();
        // O(1): `room` is the tail of the same allocation.
        self.inbuf.unsplit(room);
        if appended {
            self.now = now;
            self.note_liveness(now);
            self.decode_input();
        }
        Some(result)
    }

    /// Whether bytes from the socket are still decoded (not after the
    /// connection closed, the stream ended, or a failure is pending).
    fn takes_input(&self) -> bool {
        self.phase != Phase::Closed && !self.eof && self.pending_failure.is_none()
    }

    /// Decodes what the input buffer holds (after new input arrived).
    fn decode_input(&mut self) {
        // Before decoding splits messages off `inbuf`, and after it grew
        // the inflate buffer.
        self.arm_shrink(0);
        self.process();
        self.arm_shrink(0);
        if self.eof {
            self.on_eof();
        }
    }

    /// The socket reached its end (a read returned 0 bytes).
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.eof = true;
        self.on_eof();
    }

    /// Runs the timers due at `now` (call it when `poll_timeout`'s instant passes;
    /// calling it early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if expired(&mut self.timers.shrink, now) {
            self.shrink_buffers();
        }
        if expired(&mut self.timers.linger, now) {
            self.done = true;
            self.abandoned = true;
        }
        if self.phase == Phase::Closed {
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

    // ------------------------------------------------------------------
    // Application calls
    // ------------------------------------------------------------------

    /// Queues a message. It takes ownership of the payload (nothing the caller
    /// keeps is referenced afterwards) and frames it lazily, so Pongs and other
    /// control frames can go between its fragments.
    ///
    /// Fails, handing the message back, when the connection is not open or
    /// the queue holds `max_send_queue` bytes already (a message larger than
    /// the whole limit is taken when the queue is empty).
    ///
    /// With permessage-deflate negotiated, a message of at least
    /// [`DeflateConfig::min_message_size`](crate::DeflateConfig::min_message_size)
    /// bytes is compressed as its frames are written; the queue still counts
    /// uncompressed bytes.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, true)
    }

    /// As [`send`](Self::send), but the message goes out uncompressed even
    /// when permessage-deflate is in use (RFC 7692 §6: RSV1 clear), for
    /// payloads that do not compress (already compressed, encrypted, random)
    /// or that must not share a compression window with other data (a
    /// secret next to attacker-chosen text).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, false)
    }

    fn enqueue(&mut self, message: Message, may_compress: bool) -> Result<(), SendError> {
        if self.phase != Phase::Open || self.close.sent || self.close.pending.is_some() {
            return Err(SendError::NotOpen(message));
        }
        let len = message.len();
        if self.queued_bytes > 0 && self.queued_bytes + len > self.config.max_send_queue {
            return Err(SendError::Full(message));
        }
        self.queued_bytes += len;
        let compress = may_compress && self.deflate.as_deref().is_some_and(|d| d.compresses(len));
        self.data.push_back(TxMessage {
            message,
            offset: 0,
            compress,
            started: false,
            frame_end: 0,
        });
        Ok(())
    }

    /// Queues a Ping with `payload` (at most 125 bytes, §5.5). A Ping not yet
    /// sent is replaced.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), ConfigError> {
        if payload.len() > 125 {
            return Err(ConfigError::InvalidClose(
                "a ping payload is at most 125 bytes".into(),
            ));
        }
        if self.phase != Phase::Open || self.close.sent {
            return Err(ConfigError::InvalidState("the connection is not open"));
        }
        self.ping = Some(Bytes::copy_from_slice(payload));
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2): the Close frame goes out after
    /// the messages already queued, then the peer has `close_timeout` to answer.
    ///
    /// Before the connection is open, this abandons the handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), ConfigError> {
        validate_close(code, reason)?;
        match self.phase {
            Phase::Closed => Ok(()),
            Phase::Handshake | Phase::AwaitDecision => {
                self.finish(CloseInfo {
                    initiator: Initiator::Local,
                    code,
                    reason: reason.to_owned(),
                    clean: false,
                    error: None,
                });
                Ok(())
            }
            Phase::Open => {
                if self.close.sent || self.close.pending.is_some() {
                    return Ok(());
                }
                self.close.pending = Some((Some(code), reason.to_owned()));
                self.close.after_data = true;
                self.close.initiator = Some(Initiator::Local);
                self.timers.close = Some(self.now + self.config.close_timeout);
                self.timers.keepalive = None;
                self.timers.pong = None;
                Ok(())
            }
        }
    }

    /// Server: accepts the request reported by [`Event::Request`].
    pub fn accept(&mut self, accept: Accept) -> Result<(), ConfigError> {
        if self.phase != Phase::AwaitDecision {
            return Err(ConfigError::InvalidState("no upgrade request is waiting"));
        }
        let request = self
            .request
            .take()
            .ok_or(ConfigError::InvalidState("no upgrade request is waiting"))?;
        let deflate = self
            .config
            .deflate
            .as_ref()
            .and_then(|cfg| handshake::negotiate_deflate(request.headers(), cfg));
        let extensions = deflate.as_ref().map(|(answer, _)| answer.as_str());
        if let Err(e) = handshake::encode_accept(&request, &accept, extensions, &mut self.out) {
            self.request = Some(request);
            return Err(e);
        }
        self.start_deflate(deflate.map(|(_, params)| params));
        self.open(accept.subprotocol, None);
        // Frames the client sent right behind its request.
        self.process();
        Ok(())
    }

    /// Server: rejects the request reported by [`Event::Request`] with an HTTP
    /// error response; the connection then ends.
    pub fn reject(&mut self, reject: Reject) -> Result<(), ConfigError> {
        if self.phase != Phase::AwaitDecision {
            return Err(ConfigError::InvalidState("no upgrade request is waiting"));
        }
        handshake::encode_reject(&reject, &mut self.out)?;
        self.request = None;
        self.fail(Error::Handshake(HandshakeError::RejectedByApplication(
            reject.status,
        )));
        Ok(())
    }

    // ------------------------------------------------------------------
    // Outputs
    // ------------------------------------------------------------------

    /// Appends the bytes to write to the socket to `buf` and returns how many
    /// were appended (0: nothing to write now). Call until it returns 0.
    ///
    /// When `buf` is empty and the connection is plaintext, the connection's
    /// own buffer is swapped in rather than copied.
    ///
    /// Keep `buf` between calls: a buffer that grew for a large message is
    /// then reused by the next one. After a large output the connection arms
    /// a timer (about a second); when [`handle_timeout`](Self::handle_timeout)
    /// runs for it, an empty `buf` can be given back to the allocator so
    /// idle connections stay small, as the connection does with its own.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        // As in `transmit_to`: nothing unless `wants_write`.
        let idle = cfg!(debug_assertions) && !self.wants_write();
        let produced = self.poll_transmit_inner(buf);
        debug_assert!(
            !idle || produced == 0,
            "poll_transmit produced bytes on a connection that did not want to write"
        );
        produced
    }

    fn poll_transmit_inner(&mut self, buf: &mut Vec<u8>) -> usize {
        let before = buf.len();
        match &mut self.transport {
            Transport::Plain => {
                // Whatever `transmit_to` left half written goes first.
                self.out.drain(..self.out_pos);
                self.out_pos = 0;
                self.fill_out();
                if buf.is_empty() {
                    std::mem::swap(buf, &mut self.out);
                } else {
                    copy::append(buf, &self.out);
                    self.out.clear();
                }
            }
            Transport::Tls(_) => {
                self.encode_tls();
                if let Transport::Tls(tls) = &mut self.transport {
                    tls.write_tls(buf);
                }
            }
        }
        self.arm_shrink(buf.capacity());
        buf.len() - before
    }

    /// Writes what is pending straight into `sink` (a non-blocking socket,
    /// say) until nothing is left or `sink` would block; returns the bytes
    /// written. With TLS this saves copying the records into a buffer of the
    /// caller's first; plaintext needs no buffer of the caller's either, and
    /// a server's data frames of 4 KiB or more are not copied at all: their
    /// headers and the message's own bytes go to `sink` together, up to 32
    /// frames per `write_vectored` call (a socket's `writev`).
    ///
    /// A sink that would block (`WouldBlock`) ends the call with `Ok`: call
    /// again when it is writable, while [`wants_write`](Self::wants_write)
    /// is true. Any other error is returned as it is; the transport is then
    /// broken, which the caller reports with [`handle_eof`](Self::handle_eof).
    /// `poll_transmit` and `transmit_to` may be mixed.
    pub fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        // Nothing is written unless `wants_write` said so: an adapter may
        // skip the call then.
        if !self.wants_write() {
            // Debug builds (the tests, the fuzzers) write anyway, to check.
            debug_assert!(
                !matches!(self.transmit_to_inner(sink), Ok(n) if n > 0),
                "transmit_to wrote on a connection that did not want to write"
            );
            return Ok(0);
        }
        self.transmit_to_inner(sink)
    }

    fn transmit_to_inner(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        let mut written = 0;
        loop {
            match &mut self.transport {
                Transport::Plain => match self.write_plain_to(sink, &mut written) {
                    Ok(true) => {}
                    Ok(false) => return Ok(written),
                    Err(e) => return Err(e),
                },
                Transport::Tls(tls) => {
                    while tls.wants_write() {
                        match tls.write_tls_to(sink) {
                            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                            Ok(n) => written += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            // Everything encoded went out: encode more, or stop. (Nothing
            // written here means the call was not wanted: a debug build's
            // check, which then changes nothing either.)
            if !self.wants_write() {
                if written > 0 {
                    self.arm_shrink(0);
                }
                return Ok(written);
            }
            let encoded = match self.transport {
                Transport::Plain => {
                    self.direct_to_sink = true;
                    self.fill_out();
                    self.direct_to_sink = false;
                    self.out.len() + usize::from(self.direct_ready())
                }
                Transport::Tls(_) => self.encode_tls(),
            };
            self.arm_shrink(0);
            if encoded == 0 {
                return Ok(written);
            }
        }
    }

    /// Plaintext `transmit_to`: writes the rest of `out` and then, in the same
    /// call where the sink takes slices, the frames it can take straight from
    /// the queued messages (headers and payloads, no copy). Ok(true) once all
    /// of it went, Ok(false) when the sink would block.
    fn write_plain_to(
        &mut self,
        sink: &mut dyn io::Write,
        written: &mut usize,
    ) -> io::Result<bool> {
        loop {
            // Control frames waiting go at the next frame boundary.
            let control_waiting = self.control_waiting();
            let in_progress = self.frame_in_progress();
            let direct = in_progress || (!control_waiting && self.direct_ready());
            let rest_len = self.out.len() - self.out_pos;
            if rest_len == 0 && (!direct || (!in_progress && control_waiting)) {
                // Done, or control frames go next: `fill_out` puts them first.
                self.out.clear();
                self.out_pos = 0;
                return Ok(true);
            }
            let result = if direct {
                self.write_direct(sink, rest_len, control_waiting)
            } else {
                // Only what `out` holds (small frames): nothing to gather.
                let result = sink.write(&self.out[self.out_pos..]);
                if let Ok(n) = result {
                    self.out_pos += n.min(rest_len);
                }
                result
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *written += n;
                    if !direct && self.out_pos == self.out.len() {
                        // All of `out` went: the caller frames what is next.
                        self.out.clear();
                        self.out_pos = 0;
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One vectored write of the rest of `out` (`rest_len` bytes) and the
    /// frames planned straight from the messages (only the rest of a frame
    /// in progress while `control_waiting`), accounted for.
    fn write_direct(
        &mut self,
        sink: &mut dyn io::Write,
        rest_len: usize,
        control_waiting: bool,
    ) -> io::Result<usize> {
        let mut headers = [[0u8; MAX_HEADER_LEN]; MAX_DIRECT_FRAMES];
        let mut parts = [DirectPart::default(); MAX_DIRECT_FRAMES];
        let count = if control_waiting {
            self.plan_in_progress(&mut parts)
        } else {
            self.plan_direct(&mut headers, &mut parts)
        };
        let result = {
            let mut slices = [IoSlice::new(&[]); 1 + 2 * MAX_DIRECT_FRAMES];
            let mut used = 0;
            if rest_len > 0 {
                slices[0] = IoSlice::new(&self.out[self.out_pos..]);
                used = 1;
            }
            for (part, header) in parts.iter().zip(&headers).take(count) {
                if part.header_len > 0 {
                    slices[used] = IoSlice::new(&header[..part.header_len]);
                    used += 1;
                }
                let payload = self.data[part.index].message.payload();
                slices[used] = IoSlice::new(&payload[part.start..part.end]);
                used += 1;
            }
            sink.write_vectored(&slices[..used])
        };
        if let Ok(n) = result {
            let from_out = n.min(rest_len);
            self.out_pos += from_out;
            self.direct_written(n - from_out, &headers, &parts[..count]);
        }
        result
    }

    /// Control frames that `fill_out` would write before the next data frame.
    fn control_waiting(&self) -> bool {
        !self.close.sent
            && ((self.phase == Phase::Open && (!self.pongs.is_empty() || self.ping.is_some()))
                || (self.close.pending.is_some() && !self.close.after_data))
    }

    /// Whether a frame can go to the sink straight from the oldest message.
    /// The same as `plan_direct` planning anything, without planning: it
    /// is asked several times per `transmit_to`.
    fn direct_ready(&self) -> bool {
        let ready = self.direct_ready_fast();
        debug_assert_eq!(
            ready,
            self.plan_direct(&mut [[0; MAX_HEADER_LEN]], &mut [DirectPart::default()]) > 0,
            "direct_ready must agree with plan_direct"
        );
        ready
    }

    fn direct_ready_fast(&self) -> bool {
        if self.frame_in_progress() {
            // Only uncompressed frames are ever left in progress.
            return true;
        }
        let Some(tx) = self.data.front() else {
            return false;
        };
        if !self.direct_allowed() || tx.compress {
            return false;
        }
        let max = self.config.max_outgoing_frame.max(1);
        let end = (tx.offset + max).min(tx.message.len());
        end - tx.offset >= DIRECT_FRAME
    }

    /// Whether `plan_direct` plans whole frames, not only the rest of one
    /// in progress: a plaintext server's data while data may go out.
    fn direct_allowed(&self) -> bool {
        let data_allowed = !self.close.sent
            && match self.close.pending {
                None => self.phase == Phase::Open,
                Some(_) => self.close.after_data,
            };
        self.role == Role::Server && matches!(self.transport, Transport::Plain) && data_allowed
    }

    /// The frames plaintext `transmit_to` writes from the messages after
    /// what `out` holds: the rest of a frame in progress, then whole frames
    /// of unmasked, uncompressed messages in order, starting with one of at
    /// least [`DIRECT_FRAME`] bytes (`fill_out` framed what came before).
    /// Returns how many of `parts` (and `headers`) it filled.
    fn plan_direct(&self, headers: &mut [[u8; MAX_HEADER_LEN]], parts: &mut [DirectPart]) -> usize {
        if !self.direct_allowed() {
            return self.plan_in_progress(parts);
        }
        let max = self.config.max_outgoing_frame.max(1);
        let mut count = 0;
        for (index, tx) in self.data.iter().enumerate() {
            if tx.compress {
                break;
            }
            let payload = tx.message.payload();
            let mut start = tx.offset;
            if index == 0 && tx.frame_end > start {
                parts[0] = DirectPart {
                    index,
                    start,
                    end: tx.frame_end,
                    header_len: 0,
                };
                count = 1;
                start = tx.frame_end;
                if start == payload.len() {
                    continue;
                }
            }
            loop {
                if count == parts.len() {
                    return count;
                }
                let end = (start + max).min(payload.len());
                if count == 0 && end - start < DIRECT_FRAME {
                    return 0;
                }
                let header_len = encode_data_header(&tx.message, start, end, &mut headers[count]);
                parts[count] = DirectPart {
                    index,
                    start,
                    end,
                    header_len,
                };
                count += 1;
                start = end;
                if end == payload.len() {
                    break;
                }
            }
        }
        count
    }

    /// Just the rest of a frame in progress (a Close may not go before it).
    fn plan_in_progress(&self, parts: &mut [DirectPart]) -> usize {
        match self.data.front() {
            Some(tx) if tx.frame_end > tx.offset && !parts.is_empty() => {
                parts[0] = DirectPart {
                    index: 0,
                    start: tx.offset,
                    end: tx.frame_end,
                    header_len: 0,
                };
                1
            }
            _ => 0,
        }
    }

    /// Accounts for `n` bytes the sink took of the planned `parts`: finished
    /// frames and messages are done; a frame cut inside its payload stays in
    /// progress; the rest of a cut header goes into `out`.
    fn direct_written(
        &mut self,
        mut n: usize,
        headers: &[[u8; MAX_HEADER_LEN]],
        parts: &[DirectPart],
    ) {
        for (part, header) in parts.iter().zip(headers) {
            if n == 0 {
                return;
            }
            let Some(tx) = self.data.front_mut() else {
                return;
            };
            if part.header_len > 0 {
                // The frame is framed: its bytes are no longer the queue's.
                tx.started = true;
                tx.frame_end = part.end;
                self.queued_bytes -= part.end - part.start;
                if n < part.header_len {
                    // All of `out` went before it.
                    self.out.clear();
                    self.out_pos = 0;
                    self.out.extend_from_slice(&header[n..part.header_len]);
                    return;
                }
                n -= part.header_len;
            }
            let took = n.min(part.end - part.start);
            n -= took;
            tx.offset = part.start + took;
            if tx.offset == part.end {
                tx.frame_end = 0;
                if part.end == tx.message.len() {
                    self.data.pop_front();
                }
            }
        }
    }

    /// TLS: frames what is queued and hands it to the session (plus
    /// close_notify once closed); returns the plaintext bytes handed over.
    fn encode_tls(&mut self) -> usize {
        self.fill_out();
        let mut handed = self.direct_batch;
        self.direct_batch = 0;
        let tls_failed = matches!(self.error, Some(Error::Tls(_)));
        let Transport::Tls(tls) = &mut self.transport else {
            return 0;
        };
        if !self.out.is_empty() && !tls_failed {
            let mut pos = 0;
            while pos < self.out.len() {
                let n = tls.write_plaintext(&self.out[pos..]);
                pos += n;
                if n == 0 {
                    // The session can send nothing more (it failed or
                    // closed): these bytes can never go out.
                    pos = self.out.len();
                }
            }
            handed += pos;
            self.out.clear();
        }
        if self.phase == Phase::Closed && !self.close_notify_sent && !tls_failed {
            self.close_notify_sent = true;
            tls.send_close_notify();
            // The alert itself is something to write.
            handed += 1;
        }
        handed
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.resume_input();
        }
        if self.events.is_empty() {
            self.apply_pending_failure();
        }
        self.events.pop_front()
    }

    /// A protocol violation was found after events the application has not
    /// taken yet. It takes effect (Close queued, `Closed` reported) at the
    /// first [`poll_event`](Self::poll_event) after those events, so that
    /// answers to them go out first. An adapter that hands messages to
    /// another task can wait until that task took them before polling on.
    #[must_use]
    pub fn failure_pending(&self) -> bool {
        self.events.is_empty() && self.pending_failure.is_some()
    }

    /// Whether [`poll_event`](Self::poll_event) has something to report.
    #[must_use]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
            || self.pending_failure.is_some()
            || self.deflate.as_deref().is_some_and(|d| d.paused)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ------------------------------------------------------------------
    // Queries
    // ------------------------------------------------------------------

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
        self.phase == Phase::Closed
    }

    /// Closed, every byte handed to `poll_transmit` (or the time to flush
    /// them passed), and (client after a clean close) the server ended the
    /// transport or the linger time passed: the socket can be closed and the
    /// connection dropped.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed && self.done && (self.abandoned || !self.wants_write())
    }

    /// After closing, the peer did not take the remaining bytes within
    /// `close_timeout`: an adapter drops what it still holds for the socket
    /// instead of waiting to write it.
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
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
            if self.phase == Phase::Closed
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
    pub fn wants_read(&self) -> bool {
        !self.eof && !self.is_finished()
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

    // ------------------------------------------------------------------
    // Internals: input
    // ------------------------------------------------------------------

    fn note_liveness(&mut self, now: Instant) {
        if self.phase == Phase::Open && !self.close.sent {
            self.timers.pong = None;
            if let Some(interval) = self.config.ping_interval {
                self.timers.keepalive = Some(now + interval);
            }
        }
    }

    fn process(&mut self) {
        loop {
            match self.phase {
                Phase::Handshake => {
                    if !self.process_head() {
                        break;
                    }
                }
                Phase::AwaitDecision => {
                    // A client may not send frames before the 101 (§4.1);
                    // bound what it can park here.
                    if self.inbuf.len() > self.config.max_header_bytes {
                        self.fail(Error::Handshake(HandshakeError::HeadTooLarge {
                            max: self.config.max_header_bytes,
                        }));
                    }
                    break;
                }
                Phase::Open => {
                    if self.pending_failure.is_none() {
                        if let Err(e) = self.process_frames() {
                            self.inbuf.clear();
                            self.pending_failure = Some(Error::Protocol(e));
                            if self.events.is_empty() {
                                self.apply_pending_failure();
                            }
                        }
                    }
                    break;
                }
                Phase::Closed => break,
            }
        }
    }

    /// Arms the shrink timer when a buffer (ours, or the caller's output
    /// buffer of `caller_capacity`) grew past what an idle connection keeps.
    /// A closed connection is about to be dropped with its buffers.
    fn arm_shrink(&mut self, caller_capacity: usize) {
        let large = self.inbuf.capacity() > IDLE_INBUF_CAPACITY
            || self.out.capacity() > IDLE_INBUF_CAPACITY
            || caller_capacity > IDLE_INBUF_CAPACITY
            || self
                .deflate
                .as_deref()
                .is_some_and(Deflate::holds_large_buffers);
        if large && self.phase != Phase::Closed {
            self.timers.shrink = Some(self.now + BUFFER_IDLE);
        }
    }

    /// Gives back the input and output buffers if they are empty and large.
    fn shrink_buffers(&mut self) {
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

    /// Looks for a complete HTTP head; returns true when the phase changed.
    fn process_head(&mut self) -> bool {
        let max = self.config.max_header_bytes;
        let len = match self.head.scan(&self.inbuf, max) {
            Ok(Some(len)) => len,
            Ok(None) => return false,
            Err(e) => {
                if self.role == Role::Server {
                    handshake::encode_refusal(&e, &mut self.out);
                }
                self.fail(Error::Handshake(e));
                return true;
            }
        };
        let head = self.inbuf.split_to(len);
        match self.role {
            Role::Client => {
                match handshake::parse_response(
                    &head,
                    &self.client_key,
                    &self.offered,
                    self.deflate_offer.as_ref(),
                    self.config.max_headers,
                ) {
                    Ok(response) => {
                        self.start_deflate(response.deflate().copied());
                        let subprotocol = response.subprotocol.clone();
                        self.open(subprotocol, Some(Box::new(response)));
                    }
                    Err(e) => self.fail(Error::Handshake(e)),
                }
            }
            Role::Server => match handshake::parse_request(&head, self.config.max_headers) {
                Ok(request) => {
                    self.request = Some(request.clone());
                    self.phase = Phase::AwaitDecision;
                    self.events.push_back(Event::Request(Box::new(request)));
                }
                Err(e) => {
                    handshake::encode_refusal(&e, &mut self.out);
                    self.fail(Error::Handshake(e));
                }
            },
        }
        true
    }

    /// Sets up permessage-deflate once the handshake agreed on `params`.
    fn start_deflate(&mut self, params: Option<DeflateParams>) {
        if let (Some(params), Some(cfg)) = (params, self.config.deflate.as_ref()) {
            self.deflate = Some(Box::new(Deflate::new(params, cfg, self.role)));
        }
    }

    fn open(&mut self, subprotocol: Option<String>, response: Option<Box<handshake::Response>>) {
        self.phase = Phase::Open;
        self.timers.handshake = None;
        if let Some(interval) = self.config.ping_interval {
            self.timers.keepalive = Some(self.now + interval);
        }
        self.events.push_back(Event::Open(Open {
            subprotocol,
            response,
        }));
    }

    /// Decodes every complete frame (and every ready payload byte) in `inbuf`.
    fn process_frames(&mut self) -> Result<(), ProtocolError> {
        let expect_masked = self.role == Role::Server;
        // RFC 7692 §6: permessage-deflate defines RSV1.
        let allowed_rsv = if self.deflate.is_some() { RSV1 } else { 0 };
        while self.phase == Phase::Open {
            if self.input_paused() {
                return Ok(());
            }
            match &mut self.rx {
                Rx::Header => {
                    let Some((header, n)) = decode_header(&self.inbuf, expect_masked, allowed_rsv)?
                    else {
                        return Ok(());
                    };
                    self.start_frame(&header)?;
                    if !header.opcode.is_control() {
                        self.large_frame = match usize::try_from(header.payload_len) {
                            Ok(len) if len >= DIRECT_READ => len.saturating_add(n),
                            _ => 0,
                        };
                    }
                    self.inbuf.advance(n);
                    self.rx = Rx::Payload {
                        header,
                        remaining: header.payload_len,
                        ready: 0,
                        consumed: 0,
                    };
                }
                Rx::Payload { .. } => {
                    if !self.process_payload()? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks a new frame's header against the message state and limits.
    fn start_frame(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        let max_frame = self.config.max_frame_size;
        if h.payload_len > max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: h.payload_len,
                max: max_frame,
            });
        }
        // RFC 7692 §6.1: only the first frame of a data message is marked
        // compressed (decode_header admits RSV1 only once negotiated).
        let compressed = h.rsv & RSV1 != 0;
        if compressed && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(ProtocolError::MisplacedRsv1);
        }
        if h.opcode.is_control() {
            return Ok(());
        }
        if self.close.received.is_some() {
            return Err(ProtocolError::DataAfterClose);
        }
        let max_msg = self.config.max_message_size;
        match (h.opcode, &mut self.rx_msg) {
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(msg)) => {
                msg.fragments += 1;
                if msg.fragments > self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        max: self.config.max_fragments,
                    });
                }
                msg.size += h.payload_len;
                // A compressed message is held to its inflated size instead.
                if msg.size > max_msg as u64 && !msg.compressed {
                    return Err(ProtocolError::MessageTooLarge { max: max_msg });
                }
                Ok(())
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (op, None) => {
                if h.payload_len > max_msg as u64 && !compressed {
                    return Err(ProtocolError::MessageTooLarge { max: max_msg });
                }
                let kind = if op == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                self.rx_msg = Some(RxMessage {
                    kind,
                    fragments: 1,
                    size: h.payload_len,
                    buf: BytesMut::new(),
                    first_chunk: true,
                    compressed,
                    inflated_size: 0,
                });
                if let Some(d) = self.deflate.as_deref_mut() {
                    // What a failed message left behind.
                    d.rx_buf.clear();
                }
                Ok(())
            }
        }
    }

    /// Works on the current frame's payload; returns false when it needs more
    /// input.
    fn process_payload(&mut self) -> Result<bool, ProtocolError> {
        let Rx::Payload {
            header,
            mut remaining,
            mut ready,
            mut consumed,
        } = self.rx
        else {
            return Ok(true);
        };
        if header.opcode.is_control() {
            // At most 125 bytes: wait for all of it.
            let len = remaining as usize;
            if self.inbuf.len() < len {
                return Ok(false);
            }
            let mut payload = self.inbuf.split_to(len);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            self.rx = Rx::Header;
            self.handle_control(header.opcode, payload.freeze())?;
            return Ok(true);
        }
        let Some((kind, compressed)) = self.rx_msg.as_ref().map(|m| (m.kind, m.compressed)) else {
            // start_frame opens a message for every data frame.
            self.rx = Rx::Header;
            return Ok(true);
        };

        // Data frame: unmask and validate whatever arrived, as it arrives, so
        // that invalid UTF-8 fails fast (§8.1).
        let avail = (self.inbuf.len() as u64).min(remaining) as usize;
        if avail > ready {
            let fresh = &mut self.inbuf[ready..avail];
            if let Some(key) = header.mask {
                apply_mask(fresh, key, (consumed as usize).wrapping_add(ready));
            }
            if kind == MessageKind::Text && !compressed && self.utf8.feed(fresh).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            ready = avail;
        }
        if compressed {
            return self.inflate_payload(header, remaining, avail, consumed);
        }
        let frame_complete = avail as u64 == remaining;
        let single_frame = header.fin && self.rx_msg.as_ref().is_some_and(|m| m.fragments == 1);

        match self.config.message_mode {
            MessageMode::Reassemble if single_frame => {
                if !frame_complete {
                    // Keep it in place, to hand it out without a copy.
                    self.rx = Rx::Payload {
                        header,
                        remaining,
                        ready,
                        consumed,
                    };
                    return Ok(false);
                }
                let payload = self.inbuf.split_to(avail).freeze();
                self.rx = Rx::Header;
                self.finish_message(Some(payload))?;
                return Ok(true);
            }
            MessageMode::Reassemble => {
                if let Some(msg) = self.rx_msg.as_mut() {
                    copy::append(&mut msg.buf, &self.inbuf[..avail]);
                }
                self.inbuf.advance(avail);
            }
            MessageMode::Stream => {
                let last = frame_complete && header.fin;
                if last && kind == MessageKind::Text && self.utf8.pending() > 0 {
                    // The message ends inside a character (§8.1): fail before
                    // reporting the cut-off bytes as a text chunk.
                    return Err(ProtocolError::InvalidUtf8);
                }
                let taken = self.inbuf.split_to(avail).freeze();
                self.emit_chunk(taken, last);
            }
        }
        remaining -= avail as u64;
        consumed += avail as u64;
        if remaining > 0 {
            self.rx = Rx::Payload {
                header,
                remaining,
                ready: 0,
                consumed,
            };
            return Ok(false);
        }
        self.rx = Rx::Header;
        if header.fin {
            self.finish_message(None)?;
        }
        Ok(true)
    }

    /// Ends the current message; `whole` is the payload of a single-frame message.
    fn finish_message(&mut self, whole: Option<Bytes>) -> Result<(), ProtocolError> {
        let Some(msg) = self.rx_msg.take() else {
            return Ok(());
        };
        if msg.kind == MessageKind::Text && self.utf8.finish().is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        if self.config.message_mode == MessageMode::Stream {
            return Ok(());
        }
        let payload = match whole {
            Some(payload) => payload,
            None if msg.compressed => self
                .deflate
                .as_deref_mut()
                .map(|d| d.rx_buf.split().freeze())
                .unwrap_or_default(),
            None => msg.buf.freeze(),
        };
        let message = match msg.kind {
            MessageKind::Text => Message::Text(Text::from_validated(payload)),
            MessageKind::Binary => Message::Binary(payload),
        };
        self.events.push_back(Event::Message(message));
        Ok(())
    }

    /// The payload of a frame of a compressed message (RFC 7692 §7.2.2): the
    /// first `avail` bytes of `inbuf` (unmasked) are inflated, and the tail
    /// `00 00 ff ff` after the message's last frame. Returns false when it
    /// needs more input or decoding paused.
    fn inflate_payload(
        &mut self,
        header: FrameHeader,
        remaining: u64,
        avail: usize,
        consumed: u64,
    ) -> Result<bool, ProtocolError> {
        let used = self.inflate_input(avail, false)?;
        self.inbuf.advance(used);
        let remaining = remaining - used as u64;
        if used < avail || remaining > 0 {
            self.rx = Rx::Payload {
                header,
                remaining,
                ready: avail - used,
                consumed: consumed + used as u64,
            };
            return Ok(false);
        }
        self.rx = Rx::Header;
        if header.fin {
            // An empty payload is an empty message: the tail alone would
            // start a stored block it cannot finish.
            if self.rx_msg.as_ref().is_some_and(|m| m.size > 0) {
                self.inflate_input(TAIL.len(), true)?;
            }
            if self.config.message_mode == MessageMode::Stream {
                self.emit_chunk(Bytes::new(), true);
            }
            self.finish_message(None)?;
        }
        Ok(true)
    }

    /// Inflates the first `len` bytes of `inbuf`, or the tail when `tail`,
    /// validates the output and keeps it (Reassemble) or reports it (Stream).
    /// Returns how many bytes were consumed: all, unless decoding paused
    /// (Stream mode, at [`INFLATE_TURN`]).
    fn inflate_input(&mut self, len: usize, tail: bool) -> Result<usize, ProtocolError> {
        let max = self.config.max_message_size;
        let stream = self.config.message_mode == MessageMode::Stream;
        let mut used = 0;
        loop {
            let (Some(d), Some(msg)) = (self.deflate.as_deref_mut(), self.rx_msg.as_mut()) else {
                return Ok(len);
            };
            if stream && !tail && used < len && d.unread >= INFLATE_TURN && !self.events.is_empty()
            {
                d.paused = true;
                return Ok(used);
            }
            let input = if tail {
                TAIL.get(used..)
            } else {
                self.inbuf.get(used..len)
            }
            .unwrap_or_default();
            // Never inflate past one byte over the limit (a chunk in Stream
            // mode too), so which check fails first does not depend on how
            // the input was cut.
            let allowance = max.saturating_add(1).saturating_sub(msg.inflated_size);
            let limit = if stream {
                CHUNK.min(allowance).max(1)
            } else {
                max.saturating_add(1)
            };
            let mut out = std::mem::take(&mut d.rx_buf);
            let before = out.len();
            let result = d.inflate(input, &mut out, limit);
            let produced = out.len() - before;
            let full = out.len() >= limit;
            msg.inflated_size = msg.inflated_size.saturating_add(produced);
            d.unread = d.unread.saturating_add(produced);
            let bad_utf8 = msg.kind == MessageKind::Text
                && self
                    .utf8
                    .feed(out.get(before..).unwrap_or_default())
                    .is_err();
            let chunk = (stream && produced > 0).then(|| out.split().freeze());
            d.rx_buf = out;
            // In stream order: what was inflated before a corrupt block is
            // checked first, as it would be had the input come in pieces.
            if bad_utf8 {
                return Err(ProtocolError::InvalidUtf8);
            }
            if msg.inflated_size > max {
                return Err(ProtocolError::MessageTooLarge { max });
            }
            used += result?;
            if let Some(chunk) = chunk {
                self.emit_chunk(chunk, false);
            }
            if !full {
                return Ok(used);
            }
        }
    }

    /// True while decoding waits for the application to take inflated data
    /// (more than [`INFLATE_TURN`] bytes of it in the event queue).
    fn input_paused(&mut self) -> bool {
        let Some(d) = self.deflate.as_deref_mut() else {
            return false;
        };
        if !d.paused && d.unread >= INFLATE_TURN && !self.events.is_empty() {
            d.paused = true;
        }
        d.paused
    }

    /// The application took every event: decoding paused at
    /// [`INFLATE_TURN`] goes on (and a transport end seen meanwhile applies).
    fn resume_input(&mut self) {
        let Some(d) = self.deflate.as_deref_mut() else {
            return;
        };
        d.unread = 0;
        if !std::mem::take(&mut d.paused) {
            return;
        }
        self.process();
        if self.eof && !self.deflate.as_deref().is_some_and(|d| d.paused) {
            self.on_eof();
        }
    }

    /// Stream mode: reports `data` as a chunk. Text chunks end on a character
    /// boundary: a cut-off character is carried into the next chunk.
    fn emit_chunk(&mut self, mut data: Bytes, last: bool) {
        let Some(msg) = self.rx_msg.as_mut() else {
            return;
        };
        if msg.kind == MessageKind::Text {
            if !self.utf8_carry.is_empty() {
                // Complete the carried character from the front of `data`.
                let need = utf8_seq_len(self.utf8_carry[0]).saturating_sub(self.utf8_carry.len());
                let take = need.min(data.len());
                self.utf8_carry.extend_from_slice(&data[..take]);
                data.advance(take);
                if take == need {
                    let joined = Bytes::from(std::mem::take(&mut self.utf8_carry));
                    let first = std::mem::replace(&mut msg.first_chunk, false);
                    self.events.push_back(Event::Chunk(Chunk {
                        kind: msg.kind,
                        data: joined,
                        first,
                        last: last && data.is_empty(),
                    }));
                    if data.is_empty() {
                        return;
                    }
                } else if !last {
                    return;
                }
            }
            if !last {
                let cut = self.utf8.pending().min(data.len());
                if cut > 0 {
                    let tail = data.split_off(data.len() - cut);
                    self.utf8_carry.extend_from_slice(&tail);
                }
            }
        }
        if data.is_empty() && !last {
            return;
        }
        let first = std::mem::replace(&mut msg.first_chunk, false);
        self.events.push_back(Event::Chunk(Chunk {
            kind: msg.kind,
            data,
            first,
            last,
        }));
    }

    fn handle_control(&mut self, op: OpCode, payload: Bytes) -> Result<(), ProtocolError> {
        match op {
            OpCode::Ping => {
                if !self.close.sent && self.close.pending.is_none() {
                    if self.pongs.len() == MAX_PENDING_PONGS {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(payload.clone());
                }
                self.events.push_back(Event::Ping(payload));
            }
            OpCode::Pong => self.events.push_back(Event::Pong(payload)),
            OpCode::Close => {
                let (code, reason) = match parse_close_body(&payload)? {
                    Some((code, reason)) => (code, reason.to_owned()),
                    None => (CloseCode::NO_STATUS, String::new()),
                };
                self.on_close_frame(code, reason);
            }
            // decode_header never yields data opcodes here.
            OpCode::Continuation | OpCode::Text | OpCode::Binary => {}
        }
        Ok(())
    }

    fn on_close_frame(&mut self, code: CloseCode, reason: String) {
        self.close.received = Some((code, reason.clone()));
        self.events.push_back(Event::CloseReceived {
            code,
            reason: reason.clone(),
        });
        if !self.close.sent {
            if let Some((ours, our_reason)) = &self.close.pending {
                // Our own Close was still waiting behind data: send it now.
                self.close.sent_code = *ours;
                self.close.sent_reason = our_reason.clone();
            } else {
                // Echo the code (§5.5.1), at once: no more data from us.
                let echo = (code != CloseCode::NO_STATUS).then_some(code);
                self.close.pending = Some((echo, String::new()));
                self.close.initiator = Some(Initiator::Remote);
            }
            self.close.after_data = false;
        }
        let initiator = self.close.initiator.unwrap_or(Initiator::Remote);
        let (code, reason) = match initiator {
            Initiator::Remote => (code, reason),
            Initiator::Local => (
                self.close.sent_code.unwrap_or(CloseCode::NO_STATUS),
                self.close.sent_reason.clone(),
            ),
        };
        self.finish(CloseInfo {
            initiator,
            code,
            reason,
            clean: true,
            error: None,
        });
    }

    fn on_eof(&mut self) {
        // Input waiting behind inflated data is decoded first (resume_input).
        if self.phase == Phase::Open && self.deflate.as_deref().is_some_and(|d| d.paused) {
            return;
        }
        // A violation found before the end is the real reason.
        self.apply_pending_failure();
        match self.phase {
            Phase::Closed => {
                // The peer ended the transport after the closing handshake.
                self.timers.linger = None;
                self.done = true;
            }
            Phase::Handshake | Phase::AwaitDecision => {
                self.fail(Error::Handshake(HandshakeError::Eof));
            }
            Phase::Open => {
                self.error = Some(Error::TransportClosed);
                self.data_lost();
                self.finish(CloseInfo {
                    initiator: Initiator::Remote,
                    code: CloseCode::ABNORMAL,
                    reason: String::new(),
                    clean: false,
                    error: Some(Error::TransportClosed),
                });
                self.done = true;
                if self.frame_in_progress() {
                    // The rest of a frame the socket took part of still goes
                    // out (nothing may end inside a frame), while a peer that
                    // half-closed still reads; one that does not read cannot
                    // hold the connection open forever.
                    self.arm_linger();
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Internals: output
    // ------------------------------------------------------------------

    fn has_frames_to_write(&self) -> bool {
        if matches!(self.error, Some(Error::Tls(_))) {
            return false;
        }
        let data_allowed = self.phase == Phase::Open && !self.close.sent;
        self.close.pending.is_some()
            || (data_allowed
                && (!self.pongs.is_empty() || self.ping.is_some() || !self.data.is_empty()))
            // In any state: the rest of a frame the socket took part of.
            || self.frame_in_progress()
    }

    /// Bounds how long the closed connection waits for its last bytes to
    /// leave (or, for a client, for the server to end the transport): the
    /// close timeout, after which it is abandoned.
    fn arm_linger(&mut self) {
        self.timers.linger = Some(self.now + self.config.close_timeout);
    }

    /// The socket took part of a frame (plaintext `transmit_to`): its rest
    /// goes out before anything else, whatever happens.
    fn frame_in_progress(&self) -> bool {
        self.data.front().is_some_and(|tx| tx.frame_end > tx.offset)
    }

    /// Frames queued control frames and messages into `out`, up to a batch.
    fn fill_out(&mut self) {
        if matches!(self.error, Some(Error::Tls(_))) {
            return;
        }
        self.direct_batch = 0;
        if !self.finish_frame_in_progress() {
            return;
        }
        while self.out.len() + self.direct_batch < TRANSMIT_BATCH && !self.close.sent {
            if self.phase == Phase::Open {
                if let Some(payload) = self.pongs.pop_front() {
                    self.write_frame(OpCode::Pong, true, &payload);
                    continue;
                }
                if let Some(payload) = self.ping.take() {
                    self.write_frame(OpCode::Ping, true, &payload);
                    continue;
                }
            } else if self.close.pending.is_none() || !self.close.after_data {
                // Closed: only a Close frame may still go out, or the
                // messages queued before a failure and then its Close.
                if let Some((code, reason)) = self.close.pending.take() {
                    self.write_close(code, reason);
                }
                break;
            }
            let close_now =
                self.close.pending.is_some() && (!self.close.after_data || self.data.is_empty());
            if close_now {
                if let Some((code, reason)) = self.close.pending.take() {
                    self.write_close(code, reason);
                }
                break;
            }
            if !self.write_data_frame() {
                break;
            }
        }
    }

    /// A frame whose header plaintext `transmit_to` wrote must end before
    /// anything else goes out: in `transmit_to` the sink takes the rest from
    /// the message (false: frame nothing before it); otherwise the rest is
    /// copied into `out`.
    fn finish_frame_in_progress(&mut self) -> bool {
        let Some(tx) = self.data.front_mut() else {
            return true;
        };
        if tx.frame_end <= tx.offset {
            return true;
        }
        if self.direct_to_sink {
            return false;
        }
        let end = tx.frame_end;
        copy::append(&mut self.out, &tx.message.payload()[tx.offset..end]);
        tx.offset = end;
        tx.frame_end = 0;
        if end == tx.message.len() {
            self.data.pop_front();
        }
        true
    }

    /// Writes the next frame of the oldest queued message; false when none
    /// (or, in plaintext `transmit_to`, when the sink takes it straight from
    /// the message).
    fn write_data_frame(&mut self) -> bool {
        if self.data.front().is_some_and(|tx| tx.compress) {
            return self.write_compressed_frame();
        }
        let max = self.config.max_outgoing_frame.max(1);
        if self.data.is_empty() {
            return false;
        }
        let mask = self.next_mask();
        let Some(tx) = self.data.front_mut() else {
            return false;
        };
        let payload = tx.message.payload();
        let start = tx.offset;
        let mut end = (start + max).min(payload.len());
        if mask.is_none() && end < payload.len() && matches!(self.transport, Transport::Tls(_)) {
            end = start + tls_frame_payload(max);
        }
        let fin = end == payload.len();
        let chunk = &payload[start..end];
        if self.direct_to_sink && mask.is_none() && chunk.len() >= DIRECT_FRAME {
            // `plan_direct` takes it from here.
            return false;
        }
        match &mut self.transport {
            // A large unmasked frame goes to the TLS session as header +
            // payload, without first being copied into `out`; what `out`
            // already holds goes first.
            Transport::Tls(tls) if mask.is_none() && chunk.len() >= DIRECT_FRAME => {
                let mut hdr = [0u8; MAX_HEADER_LEN];
                let n = encode_data_header(&tx.message, start, end, &mut hdr);
                if !self.out.is_empty() {
                    tls.write_plaintext(&self.out);
                    self.out.clear();
                }
                tls.write_plaintext_parts(&hdr[..n], chunk);
                self.direct_batch += n + chunk.len();
            }
            _ => push_frame(
                &mut self.out,
                data_opcode(&tx.message, start),
                fin,
                0,
                mask,
                chunk,
            ),
        }
        tx.offset = end;
        self.queued_bytes -= end - start;
        if fin {
            self.data.pop_front();
        }
        true
    }

    /// Writes the next frame of the oldest queued message, compressing it as
    /// it goes (RFC 7692 §7.2.1): RSV1 on the first frame only (§6).
    fn write_compressed_frame(&mut self) -> bool {
        let max = self.config.max_outgoing_frame.max(1);
        let mask = self.next_mask();
        let (Some(tx), Some(d)) = (self.data.front_mut(), self.deflate.as_deref_mut()) else {
            return false;
        };
        let rest = tx.message.payload().get(tx.offset..).unwrap_or_default();
        let (len, used, fin) = d.next_frame(rest, max);
        let first = !tx.started;
        let opcode = match (first, tx.message.kind()) {
            (true, MessageKind::Text) => OpCode::Text,
            (true, MessageKind::Binary) => OpCode::Binary,
            (false, _) => OpCode::Continuation,
        };
        let rsv = if first { RSV1 } else { 0 };
        push_frame(&mut self.out, opcode, fin, rsv, mask, d.frame_payload(len));
        d.frame_written(len);
        tx.started = true;
        tx.offset += used;
        self.queued_bytes -= used;
        if fin {
            self.data.pop_front();
        }
        true
    }

    fn write_close(&mut self, code: Option<CloseCode>, reason: String) {
        let mut body = [0u8; 125];
        let n = match code {
            Some(code) => encode_close_body(code, &reason, &mut body),
            None => 0,
        };
        self.write_frame(OpCode::Close, true, &body[..n]);
        self.close.sent = true;
        self.close.sent_code = code;
        self.close.sent_reason = reason;
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.next_mask();
        push_frame(&mut self.out, opcode, fin, 0, mask, payload);
    }

    /// A fresh masking key for a client frame (§5.3); none for a server.
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(self.rng.mask_key()),
            Role::Server => None,
        }
    }

    // ------------------------------------------------------------------
    // Internals: ending
    // ------------------------------------------------------------------

    /// Fails the connection (§7.1.7): sends a Close with the fitting code when
    /// open, reports `Closed`, and ignores all further input.
    fn fail(&mut self, error: Error) {
        if self.phase == Phase::Closed {
            return;
        }
        self.error = Some(error.clone());
        let (code, initiator) = match &error {
            Error::Protocol(e) => (e.close_code(), Initiator::Local),
            Error::Timeout(TimeoutKind::Pong) => (CloseCode::INTERNAL_ERROR, Initiator::Local),
            Error::Timeout(TimeoutKind::Close) => (
                self.close.sent_code.unwrap_or(CloseCode::NORMAL),
                self.close.initiator.unwrap_or(Initiator::Local),
            ),
            Error::Timeout(TimeoutKind::Handshake) => (CloseCode::ABNORMAL, Initiator::Local),
            // The peer's alert ended it, or this side refused the peer.
            Error::Tls(TlsError::AlertReceived(_)) => (CloseCode::TLS_HANDSHAKE, Initiator::Remote),
            Error::Tls(_) => (CloseCode::TLS_HANDSHAKE, Initiator::Local),
            Error::Handshake(HandshakeError::RejectedByApplication(_)) => {
                (CloseCode::ABNORMAL, Initiator::Local)
            }
            Error::Handshake(_) | Error::TransportClosed => {
                (CloseCode::ABNORMAL, Initiator::Remote)
            }
        };
        let reason = match &error {
            Error::Protocol(e) => truncate_reason(&e.to_string()),
            Error::Timeout(TimeoutKind::Pong) => "keepalive timeout".to_owned(),
            _ => String::new(),
        };
        // A protocol violation: what the application queued before it still
        // goes out, then the Close. A timeout: the peer is not listening, so
        // the Close goes at once and queued messages stay for `take_unsent`.
        let after_data = matches!(error, Error::Protocol(_));
        if self.phase == Phase::Open && !self.close.sent && code.is_sendable() {
            self.close.pending = Some((Some(code), reason.clone()));
            self.close.after_data = after_data;
        }
        self.data_lost();
        let clean = false;
        let (code, reason) = match (&error, &self.close.received) {
            (Error::Timeout(TimeoutKind::Close), _) => (code, self.close.sent_reason.clone()),
            _ => (code, reason),
        };
        self.finish(CloseInfo {
            initiator,
            code,
            reason,
            clean,
            error: Some(error),
        });
        self.done = true;
        // A peer that stops reading cannot hold the connection open forever.
        self.arm_linger();
    }

    fn apply_pending_failure(&mut self) {
        if let Some(e) = self.pending_failure.take() {
            self.fail(e);
        }
    }

    /// No more data frames will go out: drop pending control frames. Queued
    /// messages stay for `take_unsent`.
    fn data_lost(&mut self) {
        self.pongs.clear();
        self.ping = None;
    }

    /// Reports `Closed` (once) and stops the timers that no longer apply.
    fn finish(&mut self, info: CloseInfo) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.timers.clear();
        self.rx_msg = None;
        self.inbuf = BytesMut::new();
        if info.clean && self.role == Role::Client && !self.eof {
            // §7.1.1: the server ends the TCP connection first; wait a while.
            self.arm_linger();
        } else {
            self.done = true;
        }
        self.events.push_back(Event::Closed(info));
    }
}

/// Encodes into `out` the header of an unmasked data frame carrying bytes
/// `start..end` of `message` (the first frame has the message's opcode, the
/// others continue it; the last one has FIN); returns its length.
fn encode_data_header(
    message: &Message,
    start: usize,
    end: usize,
    out: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    let header = FrameHeader {
        fin: end == message.len(),
        rsv: 0,
        opcode: data_opcode(message, start),
        mask: None,
        payload_len: (end - start) as u64,
    };
    encode_header(&header, out)
}

/// With TLS, the payload length of an unmasked frame that is not its
/// message's last: at most `max`, and such that header and payload fill
/// whole TLS records. rustls cuts each write into records of 16 KiB, and
/// such a frame goes to it in one write, so a 64 KiB payload with its
/// 10-byte header made four full records and a 10-byte one; 65,532 bytes
/// with a 4-byte header make four. `max` itself when no such length is
/// worth it (frames under 4 KiB are batched with others anyway).
fn tls_frame_payload(max: usize) -> usize {
    const RECORD: usize = 16 * 1024;
    // The header's length follows from the payload's (RFC 6455 §5.2): 4
    // bytes up to 65,535, then 10 (unmasked, as a server's frames are).
    for header in [4usize, 10] {
        let whole = (max + header) / RECORD * RECORD;
        let Some(payload) = whole.checked_sub(header) else {
            continue;
        };
        let header_fits = (header == 4) == (payload <= 0xFFFF);
        if header_fits && payload >= DIRECT_FRAME && payload <= max {
            return payload;
        }
    }
    max
}

/// The opcode of the data frame of `message` starting at byte `start`.
fn data_opcode(message: &Message, start: usize) -> OpCode {
    match (start, message.kind()) {
        (0, MessageKind::Text) => OpCode::Text,
        (0, MessageKind::Binary) => OpCode::Binary,
        _ => OpCode::Continuation,
    }
}

/// Appends one frame to `out`: the header, then the payload, masked with
/// `mask` when there is one (§5.2, §5.3).
fn push_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut hdr = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&header, &mut hdr);
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    match mask {
        Some(key) => extend_masked(out, payload, key, 0),
        None => copy::append(out, payload),
    }
}

fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(MAX_CLOSE_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Length of the UTF-8 sequence a lead byte starts (1 for anything else).
fn utf8_seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}
