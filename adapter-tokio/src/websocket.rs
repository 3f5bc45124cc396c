//! The application's side of a connection: [`WebSocket`], its halves
//! [`WsReader`] and [`WsWriter`], and the [`Permit`] that `reserve` gives.
//!
//! The connection itself (the core `Connection`, the socket, the timers) is
//! owned by its driver task; the handles only exchange whole messages with
//! it through bounded buffers, so no handle future can leave a frame half
//! written, and each is cancel-safe (see the notes on each method).

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use wharf_core::{CloseCode, CloseInfo, Message, Open, Request, Response};

use crate::error::{from_close, Error, SendError};
use crate::shared::{register, wake, CloseRequest, Outgoing, Shared};

/// What the opening handshake settled.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) open: Option<Open>,
    pub(crate) request: Option<Request>,
}

/// An open WebSocket connection on tokio: receive with [`recv`](Self::recv)
/// (or as a [`Stream`]), send with [`send`](Self::send), [`try_send`](Self::try_send)
/// or [`reserve`](Self::reserve) (or as a [`Sink`]), and [`split`](Self::split)
/// it into halves owned by different tasks. With permessage-deflate
/// negotiated, [`send_uncompressed`](Self::send_uncompressed) sends a
/// message as it is.
///
/// A driver task owns the socket and the protocol state and runs the
/// core's timers (keepalive, pong deadline, close timeout) on its own.
/// Dropping the `WebSocket` (both halves) closes the connection with 1001
/// (going away) after the messages already queued.
///
/// ```no_run
/// use wharf_tokio::{connect, ClientConfig, CloseCode, Message};
///
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let mut ws = connect("ws://127.0.0.1:9001/", &ClientConfig::new()).await?;
/// ws.send(Message::text("hello")).await?;
/// if let Some(reply) = ws.recv().await {
///     println!("{:?}", reply?);
/// }
/// let info = ws.close(CloseCode::NORMAL, "bye").await?;
/// assert!(info.clean);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WebSocket {
    reader: WsReader,
    writer: WsWriter,
}

/// The receiving half of a [`WebSocket`]: a [`Stream`] of messages.
///
/// The stream ends (`None`) after the connection closed; if it failed
/// (protocol error, timeout, TLS, the transport ended), one `Err` comes
/// first. [`close_info`](Self::close_info) then tells how it ended.
pub struct WsReader {
    shared: Arc<Shared>,
    session: Arc<Session>,
}

/// The sending half of a [`WebSocket`]: a [`Sink`] of messages.
pub struct WsWriter {
    shared: Arc<Shared>,
    session: Arc<Session>,
}

/// Room for one message in the outgoing buffer, from
/// [`WsWriter::reserve`]. Sending through it never waits.
#[derive(Debug)]
pub struct Permit<'a> {
    writer: &'a mut WsWriter,
}

impl fmt::Debug for WsReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader")
            .field("subprotocol", &self.subprotocol())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWriter")
            .field("subprotocol", &self.subprotocol())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    pub(crate) fn new(shared: Arc<Shared>) -> WebSocket {
        let session = Arc::new(Session::default());
        WebSocket {
            reader: WsReader {
                shared: shared.clone(),
                session: session.clone(),
            },
            writer: WsWriter { shared, session },
        }
    }

    /// Waits for the opening handshake; the `WebSocket` is handed out only
    /// once it is open. Dropping this future drops the handles, which
    /// abandons the handshake.
    pub(crate) async fn opened(mut self) -> Result<WebSocket, Error> {
        let session = poll_fn(|cx| {
            let mut st = self.reader.shared.lock();
            if let Some(e) = st.setup_error.take() {
                return Poll::Ready(Err(Error::Config(e)));
            }
            if st.opened {
                return Poll::Ready(Ok(Session {
                    open: st.open.take(),
                    request: st.request.take(),
                }));
            }
            if let Some(info) = &st.closed {
                return Poll::Ready(Err(from_close(info)));
            }
            register(&mut st.reader, cx.waker());
            Poll::Pending
        })
        .await?;
        let session = Arc::new(session);
        self.reader.session = session.clone();
        self.writer.session = session;
        Ok(self)
    }

    /// Receives the next message (see [`WsReader::recv`]). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader.recv().await
    }

    /// Queues `message` at once and waits while the outgoing buffer is over
    /// its bound (see [`WsWriter::send`]). Cancel-safe: dropping the future
    /// never drops the message.
    pub fn send(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.writer.send(message)
    }

    /// Queues `message` if the outgoing buffer has room, else hands it back
    /// (see [`WsWriter::try_send`]).
    pub fn try_send(&mut self, message: Message) -> Result<(), SendError> {
        self.writer.try_send(message)
    }

    /// As [`send`](Self::send), but the message is never compressed (see
    /// [`WsWriter::send_uncompressed`]). Cancel-safe like `send`.
    pub fn send_uncompressed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.writer.send_uncompressed(message)
    }

    /// As [`try_send`](Self::try_send), but the message is never compressed
    /// (see [`WsWriter::send_uncompressed`]).
    pub fn try_send_uncompressed(&mut self, message: Message) -> Result<(), SendError> {
        self.writer.try_send_uncompressed(message)
    }

    /// Waits for room for one message (see [`WsWriter::reserve`]). Cancel-safe.
    pub async fn reserve(&mut self) -> Result<Permit<'_>, Error> {
        self.writer.reserve().await
    }

    /// Waits until every message queued so far was written to the socket
    /// (see [`WsWriter::flush`]). Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.writer.flush().await
    }

    /// Closes the connection (see [`WsWriter::close`]).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseInfo, Error> {
        self.writer.close(code, reason).await
    }

    /// Splits into a reading and a writing half, to be owned by different
    /// tasks. The connection lives until both are dropped (or it closes).
    #[must_use]
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    /// How the connection ended, once it has.
    #[must_use]
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.reader.close_info()
    }

    /// Whether the connection has closed (or is closing on our side).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.writer.is_closed()
    }

    /// The negotiated subprotocol, if any.
    #[must_use]
    pub fn subprotocol(&self) -> Option<&str> {
        self.reader.subprotocol()
    }

    /// Client side: the server's `101` response.
    #[must_use]
    pub fn response(&self) -> Option<&Response> {
        self.reader.response()
    }

    /// Server side: the upgrade request that was accepted.
    #[must_use]
    pub fn request(&self) -> Option<&Request> {
        self.reader.request()
    }

    /// Takes back the messages that were queued but never sent because the
    /// connection ended (see [`WsWriter::take_unsent`]).
    pub fn take_unsent(&mut self) -> Vec<Message> {
        self.writer.take_unsent()
    }
}

impl WsReader {
    /// Receives the next message: `Some(Ok(message))`, then at the end one
    /// `Some(Err(_))` if the connection failed, then `None`.
    ///
    /// Cancel-safe: a message is taken out of the buffer only when this
    /// future completes, so dropping it (e.g. in `tokio::select!`) loses
    /// nothing, and messages are always whole.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll version of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let mut driver = None;
        let result = {
            let mut st = self.shared.lock();
            if let Some(message) = st.incoming.pop_front() {
                // Its place in the connection's receive bound is free; the
                // driver releases it on its next turn, at once when the
                // connection waits for it.
                st.taken.0 += 1;
                st.taken.1 += message.len();
                if st.wake_on_take {
                    st.wake_on_take = false;
                    driver = st.take_driver();
                }
                Poll::Ready(Some(Ok(message)))
            } else if let Some(info) = &st.closed {
                if info.error.is_some() && !st.error_reported {
                    let err = from_close(info);
                    st.error_reported = true;
                    Poll::Ready(Some(Err(err)))
                } else {
                    Poll::Ready(None)
                }
            } else {
                register(&mut st.reader, cx.waker());
                Poll::Pending
            }
        };
        wake([driver]);
        result
    }

    /// How the connection ended, once it has.
    #[must_use]
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.shared.lock().closed.clone()
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// The negotiated subprotocol, if any.
    #[must_use]
    pub fn subprotocol(&self) -> Option<&str> {
        self.session.open.as_ref()?.subprotocol.as_deref()
    }

    /// Client side: the server's `101` response.
    #[must_use]
    pub fn response(&self) -> Option<&Response> {
        self.session.open.as_ref()?.response.as_deref()
    }

    /// Server side: the upgrade request that was accepted.
    #[must_use]
    pub fn request(&self) -> Option<&Request> {
        self.session.request.as_ref()
    }
}

impl Stream for WsReader {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for WsReader {
    fn drop(&mut self) {
        let driver = {
            let mut st = self.shared.lock();
            st.reader_alive = false;
            st.reader = None;
            // Nobody will read these: released with the rest.
            let dropped = std::mem::take(&mut st.incoming);
            st.taken.0 += dropped.len();
            st.taken.1 += dropped.iter().map(Message::len).sum::<usize>();
            st.take_driver()
        };
        wake([driver]);
    }
}

impl WsWriter {
    /// Queues `message`, then waits while the outgoing buffer is over its
    /// bound (backpressure).
    ///
    /// The message is queued **when `send` is called**, not when the future
    /// is first polled: the future only waits for room. So dropping it (in
    /// `tokio::select!`, or by a timeout) never drops the message; it goes
    /// out in order. A `send` made while the buffer is still over its bound
    /// because an earlier wait was cancelled resolves at once to
    /// [`SendError::Full`] with the message handed back (so in `select!`,
    /// put such a branch first, with `biased;`).
    ///
    /// Note that `tokio::select!` evaluates every branch's expression when
    /// it is entered, even for a branch that loses or is disabled: a
    /// `ws.send(m)` branch queues `m` on every entry. In a `select!` loop,
    /// wait with [`reserve`](Self::reserve) and build the message once the
    /// permit is there.
    ///
    /// `Ok` means queued. If the connection ends before the message went
    /// out, [`take_unsent`](Self::take_unsent) hands it back.
    ///
    /// With permessage-deflate negotiated (RFC 7692, [`Config::deflate`](wharf_core::Config::deflate)),
    /// messages of at least
    /// [`DeflateConfig::min_message_size`](wharf_core::DeflateConfig::min_message_size)
    /// bytes are compressed; see [`send_uncompressed`](Self::send_uncompressed)
    /// for those that should not be.
    pub fn send(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.send_as(message, true)
    }

    /// Queues `message` if the outgoing buffer has room; otherwise hands it
    /// back in [`SendError::Full`] (or [`SendError::Closed`]). Never waits.
    pub fn try_send(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, 0, true)
    }

    /// As [`send`](Self::send) (queued at once, cancel-safe, in order with
    /// every other message), but the message goes out uncompressed even
    /// when permessage-deflate is in use: its frames have RSV1 clear (RFC
    /// 7692 §6). Without compression negotiated it is the same as `send`.
    ///
    /// Use it for payloads that compressing would only make slower (already
    /// compressed: images, video, archives; encrypted or random bytes), for
    /// messages too small for compression to pay (below
    /// [`DeflateConfig::min_message_size`](wharf_core::DeflateConfig::min_message_size)
    /// they are sent uncompressed anyway), and for secrets that must not
    /// share a compression window with data an attacker chooses (the
    /// CRIME / BREACH attacks learn secrets from compressed sizes).
    ///
    /// ```no_run
    /// use wharf_tokio::{connect, ClientConfig, Config, DeflateConfig, Message};
    ///
    /// # async fn run(jpeg: Vec<u8>) -> Result<(), wharf_tokio::Error> {
    /// let mut core = Config::default();
    /// core.deflate = Some(DeflateConfig::default());
    /// let config = ClientConfig::new().with_config(core);
    /// let mut ws = connect("ws://127.0.0.1:9001/", &config).await?;
    /// ws.send(Message::text(r#"{"kind":"photo","size":1024}"#)).await?; // compressed
    /// ws.send_uncompressed(Message::binary(jpeg)).await?; // already compressed
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_uncompressed(
        &mut self,
        message: Message,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.send_as(message, false)
    }

    /// As [`try_send`](Self::try_send), but the message is never compressed
    /// (see [`send_uncompressed`](Self::send_uncompressed)).
    pub fn try_send_uncompressed(&mut self, message: Message) -> Result<(), SendError> {
        self.enqueue(message, 0, false)
    }

    /// `send` and `send_uncompressed`: queue now, then wait for the bound.
    fn send_as(
        &mut self,
        message: Message,
        compress: bool,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        let queued = self.enqueue(message, 1, compress);
        async move {
            queued?;
            poll_fn(|cx| self.poll_back_within_bound(cx)).await;
            Ok(())
        }
    }

    /// Waits until the outgoing buffer has room for one message and returns
    /// a [`Permit`] to send it without waiting.
    ///
    /// Cancel-safe: waiting holds no message, so in a `select!` loop build
    /// the message only once the permit is there:
    ///
    /// ```no_run
    /// # async fn run(mut ws: wharf_tokio::WebSocket) -> Result<(), wharf_tokio::Error> {
    /// # let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    /// let mut n = 0u64;
    /// loop {
    ///     tokio::select! {
    ///         permit = ws.reserve() => {
    ///             n += 1;
    ///             permit?.send(wharf_tokio::Message::text(n.to_string()))?;
    ///         }
    ///         _ = ticks.tick() => println!("sent {n} so far"),
    ///     }
    /// #   if n > 3 { break; }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve(&mut self) -> Result<Permit<'_>, Error> {
        poll_fn(|cx| self.poll_ready(cx)).await?;
        Ok(Permit { writer: self })
    }

    /// Ready when the outgoing buffer has room for one message; an error
    /// once the connection is closed or closing.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut st = self.shared.lock();
        if st.send_closed() {
            return Poll::Ready(Err(Error::Closed));
        }
        if st.outgoing.len() < st.outgoing_bound {
            return Poll::Ready(Ok(()));
        }
        register(&mut st.writer, cx.waker());
        Poll::Pending
    }

    /// Waits until every message queued so far has been written to the
    /// socket (encrypted, for `wss`). Fails with [`Error::Closed`] if the
    /// connection ended first. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Poll version of [`flush`](Self::flush).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut st = self.shared.lock();
        if st.written >= st.submitted {
            return Poll::Ready(Ok(()));
        }
        if st.closed.is_some() || st.finished {
            return Poll::Ready(Err(Error::Closed));
        }
        register(&mut st.writer, cx.waker());
        Poll::Pending
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2) after the messages
    /// already queued, and waits until the connection has ended and its
    /// socket is closed; returns how it ended. Bounded by the core's close
    /// timeout. Messages that arrive meanwhile stay readable as long as the
    /// incoming buffer has room; beyond that they are dropped.
    ///
    /// Fails at once with [`Error::Config`] for a code that may not be sent
    /// (§7.4) or a reason over 123 bytes. Closing again returns the same
    /// outcome. Cancel-safe: the close goes ahead even if this future is
    /// dropped.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<CloseInfo, Error> {
        check_close(code, reason)?;
        self.request_close(code, reason);
        Ok(poll_fn(|cx| self.poll_finished(cx)).await)
    }

    /// Takes back the messages that were queued but never sent (complete)
    /// because the connection ended, oldest first.
    pub fn take_unsent(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.shared.lock().unsent)
    }

    /// Whether the connection has closed, or a close was requested.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.lock().send_closed()
    }

    /// The negotiated subprotocol, if any.
    #[must_use]
    pub fn subprotocol(&self) -> Option<&str> {
        self.session.open.as_ref()?.subprotocol.as_deref()
    }

    /// Queues `message` if fewer than `bound + slack` messages wait;
    /// `compress` tells whether permessage-deflate may compress it.
    fn enqueue(&mut self, message: Message, slack: usize, compress: bool) -> Result<(), SendError> {
        {
            let mut st = self.shared.lock();
            if st.send_closed() {
                return Err(SendError::Closed(message));
            }
            if st.outgoing.len() >= st.outgoing_bound + slack {
                return Err(SendError::Full(message));
            }
            st.outgoing.push_back(Outgoing { message, compress });
            st.submitted += 1;
        };
        self.shared.write_now();
        Ok(())
    }

    /// Ready once the outgoing buffer is within its bound again (or the
    /// connection is closed).
    fn poll_back_within_bound(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.shared.lock();
        if st.outgoing.len() <= st.outgoing_bound || st.send_closed() {
            return Poll::Ready(());
        }
        register(&mut st.writer, cx.waker());
        Poll::Pending
    }

    fn request_close(&mut self, code: CloseCode, reason: &str) {
        self.shared
            .request_close(CloseRequest::Close(code, reason.to_owned()));
    }

    fn poll_finished(&mut self, cx: &mut Context<'_>) -> Poll<CloseInfo> {
        let mut st = self.shared.lock();
        if st.finished {
            return Poll::Ready(st.closed.clone().unwrap_or_else(CloseInfo::abandoned));
        }
        register(&mut st.writer, cx.waker());
        Poll::Pending
    }
}

impl Sink<Message> for WsWriter {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WsWriter::poll_ready(self.get_mut(), cx)
    }

    /// Queues the message. If the connection closed since `poll_ready`, the
    /// message is kept for [`WsWriter::take_unsent`] and `Error::Closed`
    /// is returned.
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        let this = self.get_mut();
        this.enqueue(item, 1, true).map_err(|e| {
            this.shared.lock().unsent.push(e.into_message());
            Error::Closed
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WsWriter::poll_flush(self.get_mut(), cx)
    }

    /// Closes with 1000 (normal) after the queued messages and waits until
    /// the socket is closed.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.request_close(CloseCode::NORMAL, "");
        this.poll_finished(cx).map(|_| Ok(()))
    }
}

impl Drop for WsWriter {
    fn drop(&mut self) {
        let driver = {
            let mut st = self.shared.lock();
            st.writer_alive = false;
            st.writer = None;
            st.take_driver()
        };
        wake([driver]);
    }
}

impl Permit<'_> {
    /// Queues `message` in the room reserved. Fails only if the connection
    /// closed meanwhile, handing the message back.
    pub fn send(self, message: Message) -> Result<(), SendError> {
        self.writer.enqueue(message, 1, true)
    }

    /// As [`send`](Self::send), but the message is never compressed (see
    /// [`WsWriter::send_uncompressed`]).
    pub fn send_uncompressed(self, message: Message) -> Result<(), SendError> {
        self.writer.enqueue(message, 1, false)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().reader.poll_recv(cx)
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.get_mut().writer).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}

/// The core's checks for a close, made here so that the caller gets the
/// error rather than the driver task.
pub(crate) fn check_close(code: CloseCode, reason: &str) -> Result<(), Error> {
    Ok(wharf_core::validate_close(code, reason)?)
}
