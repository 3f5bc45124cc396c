//! The typed async client (feature `tokio`): a [`ClientSession`] driven on
//! `wharf-tokio`'s reconnecting client.

use std::collections::{HashMap, VecDeque};
use std::future::{pending, Future};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::{oneshot, watch, Notify};
use wharf_core::{Bytes, Message};
use wharf_tokio::{
    ClientConfig, ClientEvent as WsEvent, ClientEvents, ClientRequest, ClientTls, Disconnect,
    ReconnectConfig, ReconnectingClient, SendError,
};

use crate::client::{ClientEvent, ClientSession, ClientSessionConfig};
use crate::codec::decode;
use crate::error::{RequestError, SubmitError};
use crate::wire::{self, envelope::Body, Frame};

/// What arrives on a [`Frames`] stream, per subscribed stream in sequence
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameEvent {
    /// A frame.
    Frame(Frame),
    /// Frames lost on `stream`: those numbered `missing` will never arrive
    /// (the server no longer held them, or this receiver fell behind).
    Gap {
        /// The stream.
        stream: String,
        /// The sequence numbers lost.
        missing: Range<u64>,
    },
    /// The server restarted: `stream`'s numbering starts over at 1.
    Reset {
        /// The stream.
        stream: String,
        /// The last sequence number accounted for in the old numbering.
        last_sequence: u64,
    },
}

/// The state of a [`Client`], as a snapshot ([`Client::status`]) or a
/// stream of changes ([`Client::watch_status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStatus {
    /// The current connection's registration was accepted.
    pub registered: bool,
    /// The epoch of the last accepted registration (0 before the first).
    pub server_epoch: u64,
    /// Accepted registrations so far (the first, then one per reconnect).
    pub registrations: u64,
    /// Open connections lost so far.
    pub connections_lost: u64,
    /// Sent requests that were sent again after a reconnect.
    pub requests_resent: u64,
    /// Messages from the server that could not be used (malformed,
    /// unexpected); each was skipped.
    pub protocol_errors: u64,
    /// The reason of the last refused registration, if any.
    pub refused: Option<String>,
    /// The client has stopped.
    pub stopped: bool,
}

type Reply = oneshot::Sender<Result<wire::Result, RequestError>>;

/// State shared by the handles, the registration hook and the driver task.
struct State {
    session: ClientSession,
    waiters: HashMap<u64, Reply>,
    /// Connections the registration hook has opened the session for.
    opens: u64,
    /// Messages taken from the session, waiting for room in the adapter's
    /// queue (at most one per pending request, plus one).
    backlog: VecDeque<Message>,
    stop: Option<Stop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `shutdown`: close with 1000 after what is queued.
    Graceful,
    /// The last handle went away.
    Dropped,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the driver: a new request, or a stop.
    wake: Notify,
    status: watch::Sender<ClientStatus>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&self, how: Stop) {
        self.lock().stop.get_or_insert(how);
        self.wake.notify_one();
    }
}

/// Stops the driver when the last [`Client`] handle is dropped.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop(Stop::Dropped);
    }
}

/// A typed async client: requests answered by results, frames pushed on
/// streams, over a connection that reconnects and re-registers by itself.
/// Cheap to clone; dropping the last handle closes the connection.
///
/// Built on [`wharf_tokio::ReconnectingClient`]: its registration hook puts
/// the `Register` first on every connection; requests wait for the ack.
/// After a reconnect, requests that were sent are resent or failed by
/// [`OnReconnect`](crate::OnReconnect), and streams resume where they left
/// off ([`FrameEvent::Gap`] for what the server no longer had).
///
/// ```no_run
/// use wharf_proto::{Client, ClientSessionConfig, FrameEvent};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClientSessionConfig::new("sensor-7").with_stream("commands");
/// let (client, mut frames) = Client::builder("wss://example.com/proto", config).spawn()?;
/// let result = client.request("temperature", "celsius").await?;
/// println!("{:?} {:?}", result.status(), result.payload());
/// while let Some(FrameEvent::Frame(frame)) = frames.recv().await {
///     println!("{} #{}", frame.stream, frame.sequence);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

/// The frames of a [`Client`]'s streams, with gaps and resets, in order.
/// Bounded: if it is not read, frames that do not fit are dropped and
/// reported as a [`FrameEvent::Gap`] once there is room.
#[derive(Debug)]
pub struct Frames {
    rx: mpsc::Receiver<FrameEvent>,
}

impl Frames {
    /// The next event; `None` once the client has stopped and everything
    /// was read. Cancel-safe.
    pub async fn recv(&mut self) -> Option<FrameEvent> {
        self.rx.recv().await
    }
}

/// Builds a [`Client`]; from [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    session: ClientSessionConfig,
    ws: ClientConfig,
    reconnect: ReconnectConfig,
    frame_buffer: usize,
}

impl ClientBuilder {
    /// Connection settings (the core's config, TLS, buffers); replaces any
    /// TLS set before.
    #[must_use]
    pub fn ws_config(mut self, config: ClientConfig) -> Self {
        self.ws = config;
        self
    }

    /// The TLS settings for `wss://` (trusted roots, client certificate).
    #[must_use]
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.ws = self.ws.with_tls(tls);
        self
    }

    /// The reconnect policy (default: the core's exponential backoff).
    #[must_use]
    pub fn reconnect(mut self, reconnect: ReconnectConfig) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// How many frame events wait for [`Frames::recv`] (default 1024, at
    /// least 1).
    #[must_use]
    pub fn frame_buffer(mut self, events: usize) -> Self {
        self.frame_buffer = events.max(1);
        self
    }

    /// Starts the client; it connects, registers and reconnects on its own.
    ///
    /// # Errors
    ///
    /// A bad URL or TLS settings ([`wharf_tokio::Error`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> Result<(Client, Frames), wharf_tokio::Error> {
        let queue = self.session.max_pending.saturating_add(16);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                session: ClientSession::new(self.session),
                waiters: HashMap::new(),
                opens: 0,
                backlog: VecDeque::new(),
                stop: None,
            }),
            wake: Notify::new(),
            status: watch::Sender::new(ClientStatus::default()),
        });
        let hook_inner = Arc::downgrade(&inner);
        let mut options = self.ws.client_options(ClientRequest::new(&self.url)?);
        options.reconnect = self.reconnect;
        options.max_queued_messages = queue;
        options.registration = Some(Box::new(move |_open| {
            // The registration, first on the new connection.
            let Some(inner) = hook_inner.upgrade() else {
                return Vec::new();
            };
            let mut st = inner.lock();
            if st.session.is_connected() {
                // The driver has not seen the old connection's end yet.
                let resent = st.session.disconnected();
                inner
                    .status
                    .send_modify(|s| s.requests_resent += resent as u64);
            }
            st.opens += 1;
            st.backlog.clear();
            st.session.connected();
            let out: Vec<Message> = std::iter::from_fn(|| st.session.poll_transmit()).collect();
            drop(st);
            inner.wake.notify_one();
            out
        }));
        let (ws, events) = ReconnectingClient::spawn(options)?;
        let (tx, rx) = mpsc::channel(self.frame_buffer);
        let (done_tx, done) = watch::channel(false);
        let driver = Driver {
            inner: inner.clone(),
            ws: Some(ws),
            events,
            frames: FrameSink {
                tx,
                overflow: VecDeque::new(),
            },
            seen_opens: 0,
        };
        drop(tokio::spawn(async move {
            driver.run().await;
            let _ = done_tx.send(true);
        }));
        Ok((
            Client {
                _stop: Arc::new(StopOnDrop(inner.clone())),
                inner,
                done,
            },
            Frames { rx },
        ))
    }
}

impl Client {
    /// A builder for a client of `url` (`ws://` or `wss://`).
    #[must_use]
    pub fn builder(url: &str, config: ClientSessionConfig) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            session: config,
            ws: ClientConfig::new(),
            reconnect: ReconnectConfig::default(),
            frame_buffer: 1024,
        }
    }

    /// Sends a request (once registered) and waits for its result, with the
    /// default timeout.
    ///
    /// # Errors
    ///
    /// See [`request_with_timeout`](Self::request_with_timeout).
    pub fn request(
        &self,
        kind: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<wire::Result, RequestError>> + Send + '_ {
        let timeout = self.inner.lock().session.config().request_timeout;
        self.request_with_timeout(kind, payload, timeout)
    }

    /// Sends a request (once registered) and waits for its result: the
    /// server's `Result`, whatever its status, or a [`RequestError`] —
    /// [`Timeout`](RequestError::Timeout) after `timeout`,
    /// [`ConnectionLost`](RequestError::ConnectionLost) under
    /// [`OnReconnect::Fail`](crate::OnReconnect::Fail),
    /// [`NotSubmitted`](RequestError::NotSubmitted) when the pending table
    /// is full (the request is handed back). The request is submitted when
    /// this is called; dropping the future cancels it.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn request_with_timeout(
        &self,
        kind: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = Result<wire::Result, RequestError>> + Send + '_ {
        let kind = kind.into();
        let payload = payload.into();
        let submitted = self.submit(kind, payload, timeout);
        async move {
            let (id, rx) = submitted?;
            let _forget = Forget {
                inner: &self.inner,
                id,
            };
            rx.await.unwrap_or(Err(RequestError::Closed))
        }
    }

    fn submit(
        &self,
        kind: String,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(u64, oneshot::Receiver<Result<wire::Result, RequestError>>), RequestError> {
        let mut st = self.inner.lock();
        if st.stop.is_some() {
            return Err(RequestError::NotSubmitted(SubmitError::Closed {
                kind,
                payload,
            }));
        }
        let id = st
            .session
            .request_with_timeout(now(), kind, payload, timeout)
            .map_err(RequestError::NotSubmitted)?;
        let (tx, rx) = oneshot::channel();
        st.waiters.insert(id, tx);
        drop(st);
        self.inner.wake.notify_one();
        Ok((id, rx))
    }

    /// How many requests wait for their result (sent or not).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.inner.lock().session.pending()
    }

    /// The client's state now.
    #[must_use]
    pub fn status(&self) -> ClientStatus {
        self.inner.status.borrow().clone()
    }

    /// The client's state, as it changes.
    #[must_use]
    pub fn watch_status(&self) -> watch::Receiver<ClientStatus> {
        self.inner.status.subscribe()
    }

    /// Stops the client for every handle: pending requests fail with
    /// [`RequestError::Closed`], the connection closes with 1000 after what
    /// is queued. Returns once the socket is closed.
    pub async fn shutdown(self) {
        self.inner.stop(Stop::Graceful);
        let mut done = self.done.clone();
        let _ = done.wait_for(|&d| d).await;
    }
}

/// Forgets a request whose future was dropped (no-op once it ended).
struct Forget<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        if st.waiters.remove(&self.id).is_some() {
            st.session.cancel(self.id);
        }
    }
}

/// Frame events on their way to [`Frames`], with what did not fit.
struct FrameSink {
    tx: mpsc::Sender<FrameEvent>,
    /// Events waiting for room: gaps (merged per stream) and resets.
    overflow: VecDeque<FrameEvent>,
}

/// Most events kept while the receiver is full; frames beyond it are
/// merged into gaps, so only repeated resets can reach it.
const MAX_OVERFLOW: usize = 4096;

impl FrameSink {
    fn push(&mut self, event: FrameEvent) {
        self.flush();
        if self.overflow.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(event)) => self.spill(event),
            }
        } else {
            self.spill(event);
        }
    }

    /// Keeps `event` for later; a frame becomes a gap of one.
    fn spill(&mut self, event: FrameEvent) {
        let (stream, missing) = match event {
            FrameEvent::Frame(f) => (f.stream, f.sequence..f.sequence.saturating_add(1)),
            FrameEvent::Gap { stream, missing } => (stream, missing),
            other @ FrameEvent::Reset { .. } => {
                if self.overflow.len() < MAX_OVERFLOW {
                    self.overflow.push_back(other);
                }
                return;
            }
        };
        let last_of_stream = self.overflow.iter_mut().rev().find(|e| match e {
            FrameEvent::Gap { stream: s, .. } | FrameEvent::Reset { stream: s, .. } => *s == stream,
            FrameEvent::Frame(_) => false,
        });
        if let Some(FrameEvent::Gap { missing: m, .. }) = last_of_stream {
            if m.end == missing.start {
                m.end = missing.end;
                return;
            }
        }
        if self.overflow.len() < MAX_OVERFLOW {
            self.overflow.push_back(FrameEvent::Gap { stream, missing });
        }
    }

    fn flush(&mut self) {
        while let Some(event) = self.overflow.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.overflow.push_front(event);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    return;
                }
            }
        }
    }
}

/// The client's task: moves messages between the session and the
/// reconnecting client, runs the deadlines, answers the waiting requests.
struct Driver {
    inner: Arc<Inner>,
    ws: Option<ReconnectingClient>,
    events: ClientEvents,
    frames: FrameSink,
    /// Connections whose `Connected` event was seen.
    seen_opens: u64,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => pending().await,
    }
}

impl Driver {
    async fn run(mut self) {
        let Some(ws) = self.ws.take() else {
            return;
        };
        let stop = loop {
            let (deadline, backlog) = {
                let st = self.inner.lock();
                if let Some(stop) = st.stop {
                    break stop;
                }
                (st.session.poll_timeout(), !st.backlog.is_empty())
            };
            let frames_tx = self.frames.tx.clone();
            let overflow = !self.frames.overflow.is_empty();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.on_ws_event(event),
                    None => break Stop::Dropped, // the adapter's task ended
                },
                () = sleep_until(deadline) => self.inner.lock().session.handle_timeout(now()),
                () = self.inner.wake.notified() => {}
                permit = ws.reserve(), if backlog => {
                    let Ok(permit) = permit else { break Stop::Dropped };
                    let message = self.inner.lock().backlog.pop_front();
                    if let Some(message) = message {
                        let _ = permit.send(message);
                    }
                }
                permit = frames_tx.reserve_owned(), if overflow => {
                    if let (Ok(permit), Some(event)) = (permit, self.frames.overflow.pop_front()) {
                        permit.send(event);
                    }
                }
            }
            self.pump(&ws);
        };
        self.finish(stop, ws).await;
    }

    fn on_ws_event(&mut self, event: WsEvent) {
        match event {
            WsEvent::Connected(_) => self.seen_opens += 1,
            WsEvent::Message(message) => {
                let mut st = self.inner.lock();
                // A message of a connection the hook has already replaced:
                // its results still count; its frames and acks would
                // confuse the new registration (the server replays frames).
                let stale = st.opens > self.seen_opens;
                if stale && !matches!(decode(&message), Ok(Body::Result(_))) {
                    return;
                }
                if st.session.handle_message(now(), &message).is_err() {
                    drop(st);
                    self.inner.status.send_modify(|s| s.protocol_errors += 1);
                }
            }
            WsEvent::Disconnected(d) => {
                if let Disconnect::Lost(_) = d.reason {
                    let mut st = self.inner.lock();
                    let resent = if st.opens == self.seen_opens && st.session.is_connected() {
                        st.backlog.clear();
                        st.session.disconnected()
                    } else {
                        0
                    };
                    drop(st);
                    self.inner.status.send_modify(|s| {
                        s.registered = false;
                        s.connections_lost += 1;
                        s.requests_resent += resent as u64;
                    });
                }
            }
            _ => {}
        }
    }

    /// Session → adapter, session events → waiters, frames, status.
    fn pump(&mut self, ws: &ReconnectingClient) {
        let mut st = self.inner.lock();
        while let Some(message) = st.session.poll_transmit() {
            st.backlog.push_back(message);
        }
        while let Some(message) = st.backlog.pop_front() {
            match ws.try_send(message) {
                Ok(()) => {}
                Err(SendError::Full(message)) => {
                    st.backlog.push_front(message);
                    break;
                }
                // Stopping: the driver ends on the events' end.
                Err(_) => break,
            }
        }
        while let Some(event) = st.session.poll_event() {
            match event {
                ClientEvent::Result(result) => {
                    if let Some(reply) = st.waiters.remove(&result.request_id) {
                        let _ = reply.send(Ok(result));
                    }
                }
                ClientEvent::Failed {
                    request_id, error, ..
                } => {
                    if let Some(reply) = st.waiters.remove(&request_id) {
                        let _ = reply.send(Err(error));
                    }
                }
                ClientEvent::Frame(frame) => self.frames.push(FrameEvent::Frame(frame)),
                ClientEvent::Gap { stream, missing } => {
                    self.frames.push(FrameEvent::Gap { stream, missing });
                }
                ClientEvent::StreamReset {
                    stream,
                    last_sequence,
                } => self.frames.push(FrameEvent::Reset {
                    stream,
                    last_sequence,
                }),
                ClientEvent::Registered { server_epoch, .. } => {
                    self.inner.status.send_modify(|s| {
                        s.registered = true;
                        s.server_epoch = server_epoch;
                        s.registrations += 1;
                        s.refused = None;
                    });
                }
                ClientEvent::RegistrationRefused { reason } => {
                    self.inner.status.send_modify(|s| s.refused = Some(reason));
                }
                // Dropped by the session; nothing waits for them.
                _ => {}
            }
        }
    }

    async fn finish(mut self, stop: Stop, ws: ReconnectingClient) {
        let waiters: Vec<Reply> = {
            let mut st = self.inner.lock();
            st.stop.get_or_insert(stop);
            st.waiters.drain().map(|(_, reply)| reply).collect()
        };
        for reply in waiters {
            let _ = reply.send(Err(RequestError::Closed));
        }
        self.frames.flush();
        match stop {
            Stop::Graceful => {
                let _ = ws.shutdown().await;
            }
            Stop::Dropped => drop(ws),
        }
        self.inner.status.send_modify(|s| {
            s.registered = false;
            s.stopped = true;
        });
    }
}
