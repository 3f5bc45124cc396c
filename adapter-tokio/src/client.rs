//! A client that stays connected: one task drives the core's [`Reconnect`]
//! policy, one connection at a time, with a bounded queue of messages that
//! survives the gaps and a registration hook that runs on every Open.
//!
//! Reconnecting drops the old connection and socket and builds new ones;
//! between attempts the task waits on its own timer. Nothing keeps itself
//! alive: when the last [`ReconnectingClient`] handle is dropped (or
//! [`ReconnectingClient::shutdown`] is called) the task closes the
//! connection and ends.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore, SemaphorePermit, TryAcquireError};
use wharf_core::{
    ClientRequest, ClientTls, CloseCode, CloseInfo, Connection, Event, Initiator, Message, Open,
    Reconnect, ReconnectConfig, TimeoutKind,
};

use crate::config::{check_supported, ClientConfig};
use crate::error::{from_close, Error, SendError};
use crate::link::{now, Link};
use crate::shared::{register, wake};
use crate::websocket::abandoned;

/// Most rounds per poll before the task yields to others.
const ROUNDS: usize = 64;

/// The registration hook: the messages to send first on every Open.
type Hook = Arc<dyn Fn(&Open) -> Vec<Message> + Send + Sync>;

/// What the [`ReconnectingClient`] reports, in order, on [`ClientEvents`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection reached Open. The registration hook's messages are
    /// queued on it ahead of everything waiting in the queue.
    Connected(Open),
    /// A message arrived.
    Message(Message),
    /// A connection ended, or an attempt failed.
    Disconnected(Disconnected),
}

/// A lost connection or a failed attempt.
#[derive(Debug)]
#[non_exhaustive]
pub struct Disconnected {
    /// What happened.
    pub reason: DisconnectReason,
    /// When the next attempt starts; `None` when there is none (the client
    /// gave up after `max_attempts`, or is shutting down).
    pub retry_in: Option<Duration>,
    /// Messages that were in the connection but not sent whole, put back at
    /// the front of the queue to go out on the next connection.
    pub requeued: usize,
}

/// Why a [`Disconnected`] was reported.
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// An open connection ended; how (who closed, code, reason, error).
    Lost(CloseInfo),
    /// An attempt failed before Open: TCP, TLS, the handshake or its timeout.
    ConnectFailed(Error),
}

/// State shared by the task and its handles.
struct ClientShared {
    state: Mutex<ClientState>,
    /// Room in the queue: one permit per message that may still be queued.
    /// A message keeps its permit until it has left for good (framed on a
    /// connection, or handed back), so the queue plus what a connection
    /// holds never exceeds the capacity, even after messages come back.
    room: Semaphore,
    /// Becomes true when the task has ended (its socket closed).
    done: watch::Sender<bool>,
}

struct ClientState {
    queue: VecDeque<Message>,
    events: VecDeque<ClientEvent>,
    /// Unread `Message` events and their payload bytes, and their bounds.
    event_messages: usize,
    event_bytes: usize,
    events_cap: usize,
    event_bytes_max: usize,
    events_alive: bool,
    events_waker: Option<Waker>,
    task_waker: Option<Waker>,
    /// The task waits for room in the events buffer (to read, or to make
    /// its next attempt).
    read_paused: bool,
    handles: usize,
    /// Stop requested, with the close code to use (1000 on shutdown, 1001
    /// when the last handle went away).
    stop: Option<CloseCode>,
    connected: bool,
    /// What was left in the queue when the task ended.
    leftover: Vec<Message>,
    finished: bool,
}

impl ClientShared {
    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientState {
    /// The events buffer is full (the task then stops reading).
    fn events_full(&self) -> bool {
        self.events_alive
            && (self.event_messages >= self.events_cap || self.event_bytes >= self.event_bytes_max)
    }
}

/// Builds a [`ReconnectingClient`]; made by [`ReconnectingClient::builder`].
pub struct ClientBuilder {
    request: ClientRequest,
    config: ClientConfig,
    reconnect: ReconnectConfig,
    queue_capacity: usize,
    hook: Option<Hook>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.request.url().as_str())
            .field("config", &self.config)
            .field("reconnect", &self.reconnect)
            .field("queue_capacity", &self.queue_capacity)
            .field("on_open", &self.hook.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for `request` (URL, subprotocols, headers).
    #[must_use]
    pub fn new(request: ClientRequest) -> ClientBuilder {
        ClientBuilder {
            request,
            config: ClientConfig::default(),
            reconnect: ReconnectConfig::default(),
            queue_capacity: 1024,
            hook: None,
        }
    }

    /// Connection settings: the core's config, TLS, and buffers (the
    /// incoming bound also bounds the unread [`ClientEvents`]).
    #[must_use]
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The reconnect policy (default: gRPC-style exponential backoff from
    /// 1 s, ×1.6, ±20 %, capped at 120 s, retrying forever).
    #[must_use]
    pub fn reconnect(mut self, reconnect: ReconnectConfig) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// How many messages may wait to be sent, counting those a connection
    /// holds but has not sent whole yet (default 1024, at least 1).
    #[must_use]
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// The registration hook: runs on every Open, and the messages it
    /// returns go out before anything queued. They are not counted in the
    /// queue; those a connection could not send are dropped, since the hook
    /// runs again on the next Open.
    ///
    /// It runs on the client's task: keep it short and non-blocking, and do
    /// not let it own a [`ReconnectingClient`] handle (that handle would
    /// keep the client alive after the application dropped its own).
    #[must_use]
    pub fn on_open(mut self, hook: impl Fn(&Open) -> Vec<Message> + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Starts the client's task; the first attempt starts at once.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the TLS settings for a `wss://` URL cannot be
    /// built, [`Error::Unsupported`] for `MessageMode::Stream`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> Result<(ReconnectingClient, ClientEvents), Error> {
        check_supported(&self.config.core)?;
        let tls = if self.request.is_tls() {
            Some(self.config.tls_or_default()?)
        } else {
            None
        };
        let buffers = self.config.buffers;
        let shared = Arc::new(ClientShared {
            state: Mutex::new(ClientState {
                queue: VecDeque::new(),
                events: VecDeque::new(),
                event_bytes: 0,
                event_messages: 0,
                events_cap: buffers.incoming_messages,
                event_bytes_max: buffers.incoming_bytes,
                events_alive: true,
                events_waker: None,
                task_waker: None,
                read_paused: false,
                handles: 1,
                stop: None,
                connected: false,
                leftover: Vec::new(),
                finished: false,
            }),
            room: Semaphore::new(self.queue_capacity),
            done: watch::Sender::new(false),
        });
        let task = Task {
            shared: shared.clone(),
            request: self.request,
            config: self.config,
            tls,
            policy: Reconnect::new(self.reconnect),
            hook: self.hook,
        };
        // Detached: the task ends by itself when stopped.
        drop(tokio::spawn(run(task)));
        Ok((
            ReconnectingClient {
                shared: shared.clone(),
            },
            ClientEvents { shared },
        ))
    }
}

/// A WebSocket client that reconnects by the core's policy; a cheap,
/// cloneable handle to send through it.
///
/// Messages sent while disconnected wait in a bounded queue and go out in
/// order once the next connection is open and the registration hook's
/// messages have gone first. Messages a failed connection had not sent
/// whole are put back at the front of the queue. When the queue is full,
/// [`send`](Self::send) waits and [`try_send`](Self::try_send) hands the
/// message back.
///
/// Dropping the last handle closes the connection with 1001 (going away)
/// and ends the client's task; [`shutdown`](Self::shutdown) closes with
/// 1000 after the queued messages and returns what could not be sent.
///
/// ```no_run
/// use std::time::Duration;
/// use wharf_tokio::{ClientEvent, Message, ReconnectConfig, ReconnectingClient};
///
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let (client, mut events) = ReconnectingClient::builder("ws://127.0.0.1:9001/feed")?
///     .reconnect(ReconnectConfig::fixed(Duration::from_secs(2)))
///     .on_open(|_open| vec![Message::text(r#"{"subscribe":"prices"}"#)])
///     .spawn()?;
/// client.send(Message::text("hello")).await?; // queued until connected
/// while let Some(event) = events.recv().await {
///     match event {
///         ClientEvent::Connected(_) => println!("connected"),
///         ClientEvent::Message(m) => println!("{m:?}"),
///         ClientEvent::Disconnected(d) => println!("lost: {:?}, retry in {:?}", d.reason, d.retry_in),
///         _ => {}
///     }
/// #   break;
/// }
/// let unsent = client.shutdown().await;
/// # let _ = unsent;
/// # Ok(())
/// # }
/// ```
pub struct ReconnectingClient {
    shared: Arc<ClientShared>,
}

/// The events of a [`ReconnectingClient`], in order: a [`Stream`] of
/// [`ClientEvent`]. Ends when the client's task has ended.
///
/// It is bounded: while it is full, the client stops reading its socket
/// and makes no new attempt. Dropping it discards all further events.
pub struct ClientEvents {
    shared: Arc<ClientShared>,
}

/// Room for one message in the queue, from [`ReconnectingClient::reserve`].
pub struct ClientPermit<'a> {
    client: &'a ReconnectingClient,
    permit: SemaphorePermit<'a>,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("ReconnectingClient")
            .field("connected", &st.connected)
            .field("queued", &st.queue.len())
            .field("stopped", &st.stop.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEvents")
            .field("pending", &self.shared.lock().events.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPermit").finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// A builder for `url` (`ws://` or `wss://`); see [`ClientBuilder`]
    /// for a request with subprotocols or headers.
    pub fn builder(url: &str) -> Result<ClientBuilder, Error> {
        Ok(ClientBuilder::new(ClientRequest::new(url)?))
    }

    /// Queues `message`, waiting while the queue is full.
    ///
    /// Fails with [`SendError::Closed`] (message handed back) once the
    /// client is stopping. If this future is dropped while it waits, the
    /// message was not queued and is dropped with it; to wait for room
    /// without giving up a message, use [`reserve`](Self::reserve).
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self.shared.room.acquire().await {
            Ok(permit) => self.push(permit, message),
            Err(_) => Err(SendError::Closed(message)),
        }
    }

    /// Queues `message` if there is room, else hands it back
    /// ([`SendError::Full`], or [`SendError::Closed`] once stopping).
    pub fn try_send(&self, message: Message) -> Result<(), SendError> {
        match self.shared.room.try_acquire() {
            Ok(permit) => self.push(permit, message),
            Err(TryAcquireError::NoPermits) => Err(SendError::Full(message)),
            Err(TryAcquireError::Closed) => Err(SendError::Closed(message)),
        }
    }

    /// Waits for room in the queue. Cancel-safe (fair: waiters are served in
    /// order). Fails with [`Error::Closed`] once the client is stopping.
    pub async fn reserve(&self) -> Result<ClientPermit<'_>, Error> {
        let permit = self
            .shared
            .room
            .acquire()
            .await
            .map_err(|_| Error::Closed)?;
        Ok(ClientPermit {
            client: self,
            permit,
        })
    }

    /// Whether a connection is open now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// How many messages wait in the queue (not counting those a connection
    /// holds).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Stops the client for every handle: sends what is queued if a
    /// connection is open (bounded by the close timeout), closes it with
    /// 1000, ends the task and returns the messages that were not sent,
    /// oldest first.
    pub async fn shutdown(self) -> Vec<Message> {
        self.stop(CloseCode::NORMAL);
        self.closed().await;
        self.take_unsent()
    }

    /// Waits until the client's task has ended (shut down, or given up after
    /// `max_attempts`) and its socket is closed.
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        // The sender lives in the shared state, which we hold.
        let _ = done.wait_for(|&d| d).await;
    }

    /// The messages left unsent when the task ended (empty before).
    pub fn take_unsent(&self) -> Vec<Message> {
        std::mem::take(&mut self.shared.lock().leftover)
    }

    fn push(&self, permit: SemaphorePermit<'_>, message: Message) -> Result<(), SendError> {
        let task = {
            let mut st = self.shared.lock();
            if st.stop.is_some() || st.finished {
                return Err(SendError::Closed(message));
            }
            // The permit now belongs to the message (released by the task).
            permit.forget();
            st.queue.push_back(message);
            st.task_waker.take()
        };
        wake([task]);
        Ok(())
    }

    fn stop(&self, code: CloseCode) {
        let task = {
            let mut st = self.shared.lock();
            if st.stop.is_none() {
                st.stop = Some(code);
            }
            st.task_waker.take()
        };
        // Senders waiting for room fail instead of waiting forever.
        self.shared.room.close();
        wake([task]);
    }
}

impl Clone for ReconnectingClient {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        ReconnectingClient {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for ReconnectingClient {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.handles = st.handles.saturating_sub(1);
            st.handles == 0
        };
        if last {
            self.stop(CloseCode::GOING_AWAY);
        }
    }
}

impl ClientPermit<'_> {
    /// Queues `message` in the room reserved; fails only if the client
    /// started stopping meanwhile, handing the message back.
    pub fn send(self, message: Message) -> Result<(), SendError> {
        self.client.push(self.permit, message)
    }
}

impl ClientEvents {
    /// The next event; `None` once the client's task has ended and every
    /// event was taken. Cancel-safe.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll version of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        let mut task = None;
        let result = {
            let mut st = self.shared.lock();
            if let Some(event) = st.events.pop_front() {
                if let ClientEvent::Message(m) = &event {
                    st.event_messages = st.event_messages.saturating_sub(1);
                    st.event_bytes = st.event_bytes.saturating_sub(m.len());
                }
                if st.read_paused {
                    // The task re-checks, and pauses again if still full.
                    st.read_paused = false;
                    task = st.task_waker.take();
                }
                Poll::Ready(Some(event))
            } else if st.finished {
                Poll::Ready(None)
            } else {
                register(&mut st.events_waker, cx.waker());
                Poll::Pending
            }
        };
        wake([task]);
        result
    }
}

impl Stream for ClientEvents {
    type Item = ClientEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for ClientEvents {
    fn drop(&mut self) {
        let task = {
            let mut st = self.shared.lock();
            st.events_alive = false;
            st.events = VecDeque::new();
            st.event_bytes = 0;
            st.event_messages = 0;
            st.events_waker = None;
            st.task_waker.take()
        };
        wake([task]);
    }
}

/// The client's task state.
struct Task {
    shared: Arc<ClientShared>,
    request: ClientRequest,
    config: ClientConfig,
    tls: Option<ClientTls>,
    policy: Reconnect,
    hook: Option<Hook>,
}

/// How one attempt ended.
enum Outcome {
    /// The client was told to stop.
    Stopped,
    /// The attempt failed before Open.
    Failed(Error),
    /// An open connection ended.
    Lost { info: CloseInfo, requeued: usize },
}

/// Where one connection is with closing.
enum Closing {
    No,
    Wanted { code: CloseCode, since: Instant },
    Started,
}

/// One connection's bookkeeping.
struct Session {
    opened: bool,
    /// The hook's messages not yet taken by the connection.
    registration: VecDeque<Message>,
    /// Queue messages the connection took and has not sent whole yet (each
    /// still holds its permit).
    in_core: usize,
    closing: Closing,
    closed: Option<CloseInfo>,
    requeued: usize,
}

/// Marks the task ended (also when it is aborted), after everything else
/// it owned was dropped.
struct FinishGuard(Arc<ClientShared>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let events = {
            let mut st = self.0.lock();
            let rest: Vec<Message> = st.queue.drain(..).collect();
            st.leftover.extend(rest);
            st.finished = true;
            st.connected = false;
            st.task_waker = None;
            st.events_waker.take()
        };
        self.0.room.close();
        self.0.done.send_replace(true);
        wake([events]);
    }
}

/// The task: wait, attempt, repeat, until stopped or out of attempts.
async fn run(mut task: Task) {
    // Declared first, so dropped last: after the socket.
    let _finish = FinishGuard(task.shared.clone());
    let mut next_attempt = now();
    loop {
        if !task.wait_until(next_attempt).await {
            break;
        }
        let outcome = task.attempt().await;
        let now = now();
        match outcome {
            Outcome::Stopped => break,
            Outcome::Failed(error) => {
                let retry = task.policy.attempt_failed(now);
                task.emit(ClientEvent::Disconnected(Disconnected {
                    reason: DisconnectReason::ConnectFailed(error),
                    retry_in: retry.map(|at| at.saturating_duration_since(now)),
                    requeued: 0,
                }));
                match retry {
                    Some(at) => next_attempt = at,
                    None => break,
                }
            }
            Outcome::Lost { info, requeued } => {
                let at = task.policy.lost(now, peer_code(&info));
                task.emit(ClientEvent::Disconnected(Disconnected {
                    reason: DisconnectReason::Lost(info),
                    retry_in: Some(at.saturating_duration_since(now)),
                    requeued,
                }));
                next_attempt = at;
            }
        }
    }
}

/// The peer's close code, for the policy (1012 / 1013 matter).
fn peer_code(info: &CloseInfo) -> Option<CloseCode> {
    let sent_by_peer = info.initiator == Initiator::Remote
        && info.code != CloseCode::NO_STATUS
        && info.code != CloseCode::ABNORMAL;
    sent_by_peer.then_some(info.code)
}

impl Task {
    /// Reports an event (status events are never dropped while someone
    /// listens; the task waits for room before its next attempt instead).
    fn emit(&self, event: ClientEvent) {
        let waker = {
            let mut st = self.shared.lock();
            if !st.events_alive {
                return;
            }
            if let ClientEvent::Message(m) = &event {
                st.event_messages += 1;
                st.event_bytes += m.len();
            }
            st.events.push_back(event);
            st.events_waker.take()
        };
        wake([waker]);
    }

    /// Waits until `at` (and until the events buffer has room); false when
    /// told to stop.
    async fn wait_until(&mut self, at: Instant) -> bool {
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(at));
        tokio::pin!(sleep);
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.stop.is_some() {
                return Poll::Ready(false);
            }
            register(&mut st.task_waker, cx.waker());
            if st.events_alive && st.events.len() >= st.events_cap {
                st.read_paused = true;
                return Poll::Pending;
            }
            drop(st);
            sleep.as_mut().poll(cx).map(|()| true)
        })
        .await
    }

    /// Ready once a stop was requested.
    async fn stopped(shared: &ClientShared) {
        poll_fn(|cx| {
            let mut st = shared.lock();
            if st.stop.is_some() {
                return Poll::Ready(());
            }
            register(&mut st.task_waker, cx.waker());
            Poll::Pending
        })
        .await;
    }

    /// One connection: connect, open, exchange until it ends.
    async fn attempt(&mut self) -> Outcome {
        let limit = self.config.core.handshake_timeout;
        let host = self.request.host().to_owned();
        let port = self.request.port();
        let connect = tokio::time::timeout(limit, TcpStream::connect((host.as_str(), port)));
        let shared = self.shared.clone();
        let stream = tokio::select! {
            biased;
            () = Task::stopped(&shared) => return Outcome::Stopped,
            connected = connect => match connected {
                Err(_) => {
                    return Outcome::Failed(Error::Connection(wharf_core::Error::Timeout(
                        TimeoutKind::Handshake,
                    )))
                }
                Ok(Err(e)) => return Outcome::Failed(Error::Io(e)),
                Ok(Ok(stream)) => stream,
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = match Connection::client(
            self.config.core.clone(),
            &self.request,
            self.tls.as_ref(),
            now(),
        ) {
            Ok(conn) => conn,
            Err(e) => return Outcome::Failed(Error::Config(e)),
        };
        let mut link = Link::new(conn, stream, self.config.core.close_timeout);
        let mut session = Session {
            opened: false,
            registration: VecDeque::new(),
            in_core: 0,
            closing: Closing::No,
            closed: None,
            requeued: 0,
        };
        let outcome = poll_fn(|cx| self.poll_connected(cx, &mut link, &mut session)).await;
        // The socket closes here, before anything else happens.
        drop(link);
        outcome
    }

    /// Drives one connection until its socket is done with.
    fn poll_connected(
        &mut self,
        cx: &mut Context<'_>,
        link: &mut Link<TcpStream>,
        session: &mut Session,
    ) -> Poll<Outcome> {
        let close_timeout = self.config.core.close_timeout;
        for _ in 0..ROUNDS {
            let now = now();
            let mut progress = false;
            let mut released = 0usize;
            let read = {
                let mut st = self.shared.lock();
                register(&mut st.task_waker, cx.waker());
                if matches!(session.closing, Closing::No) {
                    if let Some(code) = st.stop {
                        session.closing = Closing::Wanted { code, since: now };
                    }
                }
                if link.conn.is_open() && session.opened {
                    // The hook's messages first, then the queue, in order.
                    while let Some(message) = session.registration.pop_front() {
                        if let Err(e) = link.conn.send(message) {
                            session.registration.push_front(e.into_message());
                            break;
                        }
                        progress = true;
                    }
                    if session.registration.is_empty() {
                        while let Some(message) = st.queue.pop_front() {
                            if let Err(e) = link.conn.send(message) {
                                st.queue.push_front(e.into_message());
                                break;
                            }
                            session.in_core += 1;
                            progress = true;
                        }
                    }
                }
                if let Closing::Wanted { code, since } = session.closing {
                    let drained = st.queue.is_empty() && session.registration.is_empty();
                    let overdue = now >= since + close_timeout;
                    if drained || overdue || !link.conn.is_open() {
                        // 1000 / 1001 are sendable: cannot fail.
                        let _ = link.conn.close(code, "");
                        session.closing = Closing::Started;
                        link.set_extra_deadline(None);
                        progress = true;
                    } else {
                        link.set_extra_deadline(Some(since + close_timeout));
                    }
                }
                let read = !matches!(session.closing, Closing::No) || !st.events_full();
                if !read {
                    st.read_paused = true;
                }
                read
            };

            progress |= link.poll_io(cx, read);

            // Everything the connection took has been written to the socket:
            // those messages have left for good, and their room is free
            // again. (While open, no bytes pending means no message is.)
            if session.in_core > 0 && link.conn.is_open() && link.all_written() {
                released += session.in_core;
                session.in_core = 0;
            }

            loop {
                // While the events buffer is full, further messages stay in
                // the connection, which then decodes (and inflates) no more
                // frames; the socket is not read meanwhile either. A local
                // close goes on regardless, and a closed connection decodes
                // nothing more: what it holds is handed over.
                if matches!(session.closing, Closing::No)
                    && !link.conn.is_closed()
                    && link.conn.has_events()
                {
                    let mut st = self.shared.lock();
                    if st.events_full() {
                        st.read_paused = true;
                        break;
                    }
                }
                let Some(event) = link.conn.poll_event() else {
                    break;
                };
                progress = true;
                match event {
                    Event::Open(open) => {
                        self.policy.opened();
                        session.opened = true;
                        if let Some(hook) = &self.hook {
                            session.registration = hook(&open).into();
                        }
                        self.shared.lock().connected = true;
                        self.emit(ClientEvent::Connected(open));
                    }
                    Event::Message(message) => self.emit(ClientEvent::Message(message)),
                    Event::Closed(info) => {
                        // Messages not sent whole go back to the front of the
                        // queue. The connection took the hook's messages
                        // before any queued one, so the queued ones are the
                        // last `in_core` of what it hands back.
                        let unsent = link.conn.take_unsent();
                        let ours = unsent.len().min(session.in_core);
                        released += session.in_core - ours;
                        session.in_core = 0;
                        session.requeued = ours;
                        let skip = unsent.len() - ours;
                        let mut st = self.shared.lock();
                        for message in unsent.into_iter().skip(skip).rev() {
                            st.queue.push_front(message);
                        }
                        st.connected = false;
                        session.closed = Some(info);
                    }
                    // Pings are answered and Close frames echoed by the core.
                    _ => {}
                }
            }
            if released > 0 {
                self.shared.room.add_permits(released);
            }

            if link.is_finished() {
                let info = session.closed.take().unwrap_or_else(abandoned);
                let stopping = {
                    let mut st = self.shared.lock();
                    st.connected = false;
                    st.stop.is_some()
                };
                if stopping {
                    if session.opened {
                        self.emit(ClientEvent::Disconnected(Disconnected {
                            reason: DisconnectReason::Lost(info),
                            retry_in: None,
                            requeued: session.requeued,
                        }));
                    }
                    return Poll::Ready(Outcome::Stopped);
                }
                return Poll::Ready(if session.opened {
                    Outcome::Lost {
                        info,
                        requeued: session.requeued,
                    }
                } else {
                    Outcome::Failed(from_close(&info))
                });
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
