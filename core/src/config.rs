//! Configuration. Every limit is bounded by default and can be changed.

use std::time::Duration;

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
            max_outgoing_frame: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            message_mode: MessageMode::Reassemble,
        }
    }
}
