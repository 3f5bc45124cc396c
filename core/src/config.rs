//! Configuration. Every limit is bounded by default and can be changed.

use std::time::Duration;

use crate::error::ConfigError;

/// How incoming data messages are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageMode {
    /// Reassemble each message and deliver it whole as
    /// [`Event::Message`](crate::Event::Message), up to `max_message_size`.
    #[default]
    Reassemble,
    /// Deliver bytes as they arrive as [`Event::Chunk`](crate::Event::Chunk);
    /// nothing is buffered beyond what one read brings. `max_message_size`
    /// still bounds a message's total length.
    Stream,
}

/// Settings shared by many connections (wrap it in an `Arc`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Most bytes in the HTTP head of the opening handshake. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most header lines in the HTTP head. Default 64.
    pub max_headers: usize,
    /// Largest incoming frame payload. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest incoming message. Default 64 MiB.
    pub max_message_size: usize,
    /// Most frames per incoming message. Default 100,000.
    pub max_fragments: usize,
    /// Most bytes of outgoing messages waiting for `poll_transmit`.
    /// `send` beyond it hands the message back. Default 16 MiB.
    pub max_send_queue: usize,
    /// Most payload bytes of received messages, chunks, Pings and Pongs the
    /// application has not taken yet (inflated size with compression).
    /// Once reached, the connection decodes nothing more and
    /// [`Connection::wants_read`](crate::Connection::wants_read) is false,
    /// so the socket is not read and the peer meets TCP backpressure; it
    /// goes on once the application has taken the queue down to half. A
    /// message that completes while the bound is reached is still queued,
    /// so what waits is at most this plus one message (`max_message_size`)
    /// and one read. Default 1 MiB.
    ///
    /// After this side sent its Close, data messages that find the bound
    /// reached are dropped (counted by
    /// [`Connection::discarded_messages`](crate::Connection::discarded_messages))
    /// so that the peer's Close behind them is still read.
    pub max_receive_queue: usize,
    /// Most events (of any kind) the application has not taken yet; as
    /// `max_receive_queue`, for many small messages. Default 256.
    pub max_receive_events: usize,
    /// Outgoing messages longer than this go out as several frames, so that
    /// control frames can go between them. Default 64 KiB.
    pub max_outgoing_frame: usize,
    /// How long the TLS + HTTP opening handshake may take. Default 10 s.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's Close after sending ours (§7.1.1). Default 5 s.
    pub close_timeout: Duration,
    /// Send a Ping when nothing has arrived for this long. Default off.
    pub ping_interval: Option<Duration>,
    /// After a keepalive Ping, fail with 1011 if nothing arrives for this
    /// long. Default 20 s.
    pub pong_timeout: Duration,
    /// Whole messages or chunks as they arrive.
    pub message_mode: MessageMode,
    /// permessage-deflate compression (RFC 7692). Default off (`None`).
    ///
    /// With `Some`, a client offers it and a server accepts a client's offer;
    /// see [`DeflateConfig`] for what that costs and what the peer must agree
    /// to. `max_message_size` then bounds the *inflated* size of a message.
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 100_000,
            max_send_queue: 16 << 20,
            max_receive_queue: 1 << 20,
            max_receive_events: 256,
            max_outgoing_frame: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            message_mode: MessageMode::Reassemble,
            deflate: None,
        }
    }
}

/// permessage-deflate (RFC 7692) settings: set [`Config::deflate`] to use it.
///
/// # Off by default, and why
///
/// Compression costs memory and CPU on every connection that negotiates it,
/// and it is only worth that for traffic that compresses (text, JSON). Each
/// direction's zlib state (zlib-rs) is allocated when the first compressed
/// message goes that way and kept for the connection's life:
///
/// | state | 15-bit window (default) | 12-bit | 9-bit |
/// |---|---|---|---|
/// | compressor | 371 KiB | 259 KiB | 245 KiB |
/// | decompressor | 42 KiB | 42 KiB | 42 KiB |
///
/// so about 420 KiB per connection with the defaults once messages went both
/// ways (measured by `core/tests/deflate_memory.rs`; zlib-rs keeps a 128 KiB
/// hash table whatever the window, and a 32 KiB decompression window whatever
/// the peer agreed to). [`MessageMode::Stream`] adds a 64 KiB buffer for
/// inflated chunks. A client that only receives compressed messages pays for
/// the decompressor only.
///
/// Compressing secrets together with data an attacker chooses, in one
/// message or one shared window, can leak them (CRIME / BREACH):
/// `no_context_takeover` limits that to a single message,
/// [`Connection::send_uncompressed`](crate::Connection::send_uncompressed)
/// avoids it.
///
/// # Limits on what the peer sends
///
/// [`Config::max_message_size`] bounds each message's inflated size: a
/// compression bomb (a few KiB that inflate to gigabytes) fails with 1009 once
/// the limit is passed, having inflated at most the limit. Inflating is done
/// in bounded steps, never sized from what the peer declares, and inflated
/// data counts against [`Config::max_receive_queue`]: the inflated data a
/// connection holds stays below `max_message_size` plus that bound,
/// whatever the compression ratio.
///
/// # Negotiation (RFC 7692 §7.1)
///
/// A client offers `permessage-deflate; client_max_window_bits`, adding
/// `client_max_window_bits=N` when `max_window_bits` is below 15,
/// `server_max_window_bits=N` when `peer_max_window_bits` is below 15,
/// `client_no_context_takeover` when `no_context_takeover` is set and
/// `server_no_context_takeover` when `peer_no_context_takeover` is set. It
/// fails the handshake ([`HandshakeError::Extension`](crate::HandshakeError::Extension))
/// on an answer RFC 7692 forbids.
///
/// A server accepts the first valid offer and declines (ignores) invalid
/// ones: it honours what the client asks of it, and asks of the client what
/// this configuration says where the offer allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Compression level, 0 (store only) to 9 (smallest, slowest). Default 1
    /// (fast; `cargo bench -p wharf-core --bench deflate` sets levels 1 and
    /// 6 side by side, in throughput and in bytes on the wire).
    pub level: u32,
    /// Largest LZ77 window this side compresses with, as a power of two,
    /// 9 to 15 (zlib cannot compress with 8). Default 15.
    pub max_window_bits: u8,
    /// Largest window the peer may compress with, 8 to 15. Default 15 (no
    /// limit asked). It saves the peer memory, not this side: zlib-rs
    /// decompresses with a 32 KiB window whatever the agreed size.
    ///
    /// A client asks it with `server_max_window_bits` (a server that cannot
    /// honour it declines compression); a server answers with
    /// `client_max_window_bits` when the client's offer allows it, and
    /// otherwise decompresses with a 15-bit window.
    pub peer_max_window_bits: u8,
    /// Compress each message on its own (no context takeover, §7.1.1): worse
    /// ratio for small similar messages, but no message shares a window with
    /// another. Default false.
    pub no_context_takeover: bool,
    /// Ask the peer to compress each message on its own (client:
    /// `server_no_context_takeover`, which a server must accept or decline
    /// compression; server: `client_no_context_takeover`). Default false.
    pub peer_no_context_takeover: bool,
    /// Messages shorter than this many bytes go out uncompressed (compressing
    /// a few bytes rarely pays). Default 32.
    pub min_message_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 1,
            max_window_bits: 15,
            peer_max_window_bits: 15,
            no_context_takeover: false,
            peer_no_context_takeover: false,
            min_message_size: 32,
        }
    }
}

impl DeflateConfig {
    /// Checks the ranges: level 0-9, `max_window_bits` 9-15,
    /// `peer_max_window_bits` 8-15.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.level > 9 {
            return Err(ConfigError::InvalidDeflate(format!(
                "level {} (0 to 9)",
                self.level
            )));
        }
        if !(9..=15).contains(&self.max_window_bits) {
            return Err(ConfigError::InvalidDeflate(format!(
                "max_window_bits {} (9 to 15)",
                self.max_window_bits
            )));
        }
        if !(8..=15).contains(&self.peer_max_window_bits) {
            return Err(ConfigError::InvalidDeflate(format!(
                "peer_max_window_bits {} (8 to 15)",
                self.peer_max_window_bits
            )));
        }
        Ok(())
    }
}
