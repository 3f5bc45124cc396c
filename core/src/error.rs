//! Typed errors. Peer faults ([`ProtocolError`], [`HandshakeError`], [`TlsError`])
//! are kept apart from caller misuse ([`SendError`], [`ConfigError`]).

use crate::close_code::CloseCode;
use crate::message::Message;

/// Why a connection failed. Sticky: once a connection has failed it only closes.
///
/// Carried by the final [`Closed`](crate::Event::Closed) event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455 framing rules (§5, §7).
    #[error("protocol violation by the peer: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake (§4) failed.
    #[error("opening handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The TLS session failed.
    #[error("TLS failed: {0}")]
    Tls(#[from] TlsError),
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(#[from] TimeoutKind),
    /// The transport ended (TCP EOF) before the closing handshake (§7.1.5: 1006).
    #[error("the transport ended before the closing handshake")]
    TransportClosed,
}

impl Error {
    /// True when the peer (or the network) caused the failure, false when it
    /// came from this side's timers.
    #[must_use]
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, Error::Timeout(_))
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The TLS + HTTP opening handshake did not finish in time.
    #[error("opening handshake")]
    Handshake,
    /// The peer did not answer our Close frame in time (§7.1.1).
    #[error("closing handshake")]
    Close,
    /// Nothing arrived from the peer within the pong deadline after a keepalive ping.
    #[error("keepalive pong deadline")]
    Pong,
}

/// A rule of RFC 6455 §5 / §7 that the peer broke. Each maps to the close code
/// this side sends ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.1: a client MUST mask every frame it sends.
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// §5.1: a server MUST NOT mask any frame it sends.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// §5.2: RSV1-3 MUST be 0 unless an extension defines them.
    #[error("reserved bits set without an extension: {0:#05b}")]
    ReservedBits(u8),
    /// §5.2: opcodes 3-7 and 0xB-0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.5: control frames carry at most 125 bytes.
    #[error("control frame with {0} bytes of payload (at most 125)")]
    ControlFrameTooLong(u64),
    /// §5.5: control frames MUST NOT be fragmented.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// §5.4: a continuation frame arrived with no message to continue.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// §5.4: a new data frame arrived while a fragmented message was open.
    #[error("data frame inside a fragmented message")]
    ExpectedContinuation,
    /// §5.2: the most significant bit of a 64-bit length MUST be 0.
    #[error("64-bit payload length has its top bit set")]
    LengthTopBit,
    /// §8.1: a text message is not valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// §5.5.1: a close reason is not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// §7.4: a close code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// §5.5.1: a close body, when present, starts with a 2-byte code.
    #[error("close frame body of 1 byte")]
    CloseBodyOneByte,
    /// A frame longer than the configured `max_frame_size`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// A message longer than the configured `max_message_size`.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Configured limit.
        max: usize,
    },
    /// A message split in more fragments than the configured `max_fragments`.
    #[error("message exceeds the limit of {max} fragments")]
    TooManyFragments {
        /// Configured limit.
        max: usize,
    },
    /// Data arrived after the peer's Close frame (§5.5.1).
    #[error("data after the peer's Close frame")]
    DataAfterClose,
    /// RFC 7692 §6.1: RSV1 ("compressed") set on a control frame or on a
    /// continuation frame; only the first frame of a message carries it.
    #[error("RSV1 set on a control or continuation frame")]
    MisplacedRsv1,
    /// RFC 7692 §7.2.2: a compressed message is not a valid DEFLATE stream.
    #[error("invalid compressed data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code this side sends for the violation (§7.4.1).
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. }
            | ProtocolError::MessageTooLarge { .. }
            | ProtocolError::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The opening handshake failed (§4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head is not valid HTTP/1.1.
    #[error("malformed HTTP: {0}")]
    MalformedHttp(String),
    /// The HTTP head is longer than `max_header_bytes`.
    #[error("HTTP head exceeds {max} bytes")]
    HeadTooLarge {
        /// Configured limit.
        max: usize,
    },
    /// The HTTP head has more than `max_headers` header lines.
    #[error("HTTP head has more than {max} headers")]
    TooManyHeaders {
        /// Configured limit.
        max: usize,
    },
    /// A header the handshake needs is missing or wrong.
    #[error("bad or missing header {name}: {detail}")]
    BadHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Server side: the request method is not GET (§4.2.1).
    #[error("request method is {0}, not GET")]
    NotGet(String),
    /// Server side: the request is not HTTP/1.1 or later.
    #[error("request is not HTTP/1.1")]
    NotHttp11,
    /// Server side: `Sec-WebSocket-Version` is not 13 (answered with 426, §4.4).
    #[error("unsupported WebSocket version {0:?}")]
    UnsupportedVersion(String),
    /// Client side: the server answered with a status other than 101.
    #[error("server answered {status} instead of 101 Switching Protocols")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Client side: `Sec-WebSocket-Accept` does not match the key sent (§4.1).
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    AcceptMismatch,
    /// Client side: the server chose a subprotocol that was not offered (§4.1).
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnofferedSubprotocol(String),
    /// Client side: the server named an extension that was not offered (§4.1).
    #[error("server chose extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// Client side: the server's permessage-deflate answer breaks a rule of
    /// RFC 7692 §5 and §7.1 ("the client MUST _Fail the WebSocket
    /// Connection_").
    #[error("invalid permessage-deflate response: {0}")]
    Extension(#[from] ExtensionError),
    /// Server side: the application rejected the request.
    #[error("the application rejected the request with status {0}")]
    RejectedByApplication(u16),
    /// The transport ended before the handshake finished.
    #[error("the transport ended during the opening handshake")]
    Eof,
}

/// What is wrong with a server's permessage-deflate response (RFC 7692 §5,
/// §7.1). Each one fails the connection on the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// `Sec-WebSocket-Extensions` is not a valid extension list (RFC 6455 §9.1).
    #[error("Sec-WebSocket-Extensions is not a valid extension list")]
    Malformed,
    /// permessage-deflate was accepted more than once.
    #[error("permessage-deflate named more than once")]
    DuplicateExtension,
    /// A parameter RFC 7692 does not define (§7: "not defined for use in a
    /// response").
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    /// The same parameter twice (§7).
    #[error("parameter {0:?} given more than once")]
    DuplicateParameter(String),
    /// A parameter with a value it may not have, without one it needs, or
    /// with a window size that is not 8 to 15 without leading zeroes (§7.1).
    #[error("invalid value {value:?} for {name}")]
    InvalidValue {
        /// The parameter.
        name: String,
        /// Its value (`None` when it had none).
        value: Option<String>,
    },
    /// The offer asked for `server_no_context_takeover` or
    /// `server_max_window_bits` and the response does not grant it
    /// (§7.1.1.1, §7.1.2.1).
    #[error("the response lacks {0}, which was requested")]
    MissingParameter(&'static str),
    /// `client_max_window_bits` in a response to an offer without it (§7.1.2.2).
    #[error("{0} answered but not offered")]
    UnofferedParameter(&'static str),
    /// A window size above the one the offer allowed (§7.1.2).
    #[error("{name}={answered} exceeds the offered {offered}")]
    WindowTooLarge {
        /// The parameter.
        name: &'static str,
        /// The value offered.
        offered: u8,
        /// The value answered.
        answered: u8,
    },
}

/// A TLS failure, with the reason named where rustls gives one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer's certificate chain does not lead to a trusted root (this
    /// includes self-signed certificates that are not themselves trusted).
    #[error("certificate signed by an unknown issuer")]
    UnknownIssuer,
    /// The peer's certificate has expired.
    #[error("certificate expired")]
    Expired,
    /// The peer's certificate is not valid yet.
    #[error("certificate not valid yet")]
    NotValidYet,
    /// The server's certificate is not valid for the name we connected to.
    #[error("certificate not valid for the server name")]
    WrongName,
    /// The peer's certificate is revoked.
    #[error("certificate revoked")]
    Revoked,
    /// The peer's certificate is invalid for another reason.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// Server side: the client presented no certificate but one is required.
    #[error("client certificate required but none was presented")]
    ClientCertificateRequired,
    /// The peer sent a fatal TLS alert (for example, it rejected our certificate).
    #[error("peer sent TLS alert: {0}")]
    AlertReceived(String),
    /// Any other TLS failure.
    #[error("{0}")]
    Other(String),
}

/// [`Connection::send`](crate::Connection::send) could not take the message; it is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The outgoing buffer is full (`max_send_queue`): drain `poll_transmit`
    /// and try again.
    #[error("outgoing buffer full")]
    Full(Message),
    /// The connection is not open (still handshaking, closing or closed).
    #[error("connection is not open")]
    NotOpen(Message),
}

impl SendError {
    /// Takes the message back.
    #[must_use]
    pub fn into_message(self) -> Message {
        match self {
            SendError::Full(m) | SendError::NotOpen(m) => m,
        }
    }
}

/// The caller asked for something invalid (bad URL, bad header, bad close code …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL could not be parsed or is not `ws://` / `wss://`.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A `wss://` URL was given without a TLS configuration.
    #[error("wss:// needs a TLS configuration")]
    TlsRequired,
    /// A header name or value would break the HTTP head.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// A subprotocol token is not a valid HTTP token.
    #[error("invalid subprotocol {0:?}")]
    InvalidSubprotocol(String),
    /// TLS configuration could not be built (bad PEM, bad key, no roots …).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A close code that may not be sent (§7.4), or a reason over 123 bytes.
    #[error("invalid close: {0}")]
    InvalidClose(String),
    /// The call does not fit the connection's role or state.
    #[error("not allowed now: {0}")]
    InvalidState(&'static str),
    /// A [`DeflateConfig`](crate::DeflateConfig) value is out of range.
    #[error("invalid deflate setting: {0}")]
    InvalidDeflate(String),
}
