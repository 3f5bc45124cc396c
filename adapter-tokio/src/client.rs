//! A client that stays connected: one task drives the core's sans-IO
//! [`Client`] (the policy, the queue, the registration hook, what goes back
//! to the queue) on tokio sockets. The task opens a socket when the client
//! asks, moves bytes and time, and drops the socket when the client says;
//! between attempts it waits on its own timer. Nothing keeps itself alive:
//! when the last [`ReconnectingClient`] handle is dropped (or
//! [`ReconnectingClient::shutdown`] is called) the connection is closed and
//! the task ends.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use tokio::net::TcpStream;
use tokio::sync::watch;
use wharf_core::{Client, ClientAction, ClientEvent, ClientOptions, Message};

use crate::config::check_supported;
use crate::error::{Error, SendError};
use crate::link::{now, Link, Timer};
use crate::shared::{register, wake};

/// Most rounds per poll before the task yields to others.
const ROUNDS: usize = 64;

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// The core client and the wakers of everyone who waits on it.
struct Inner {
    client: Client,
    task: Option<Waker>,
    events: Option<Waker>,
    /// Senders waiting for room in the queue.
    room: Vec<Waker>,
    handles: usize,
    events_alive: bool,
}

struct ClientShared {
    inner: Mutex<Inner>,
    /// Becomes true when the task has ended (its socket closed).
    done: watch::Sender<bool>,
}

impl ClientShared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the task after a handle changed the client.
    fn poke(&self, mut st: MutexGuard<'_, Inner>) {
        let task = st.task.take();
        drop(st);
        wake([task]);
    }
}

/// A WebSocket client that reconnects by the core's policy, with a queue
/// that survives the gaps; see the crate docs ("Staying connected").
///
/// A cheap, cloneable handle to the client's task. Messages sent while
/// disconnected wait in a bounded queue and go out in order after the
/// registration hook's messages on the next Open; messages a lost
/// connection had not sent whole go back to the front of the queue.
/// Dropping the last handle closes the connection with 1001 and ends the
/// task.
pub struct ReconnectingClient {
    shared: Arc<ClientShared>,
}

/// The events of a [`ReconnectingClient`], in order: a [`Stream`] of
/// [`ClientEvent`] that ends after [`ClientEvent::Stopped`].
///
/// Received messages count against the connection's receive bound until
/// they are taken here: a receiver that falls behind makes the connection
/// stop reading its socket (and the next attempt wait), so memory stays
/// bounded. Dropping it discards what arrives.
pub struct ClientEvents {
    shared: Arc<ClientShared>,
}

/// Room for one message in the client's queue, from
/// [`ReconnectingClient::reserve`].
pub struct ClientPermit<'a> {
    client: &'a ReconnectingClient,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shared.lock().client, f)
    }
}

impl fmt::Debug for ClientEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEvents").finish_non_exhaustive()
    }
}

impl fmt::Debug for ClientPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPermit").finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// Starts the client's task for `options`, the core's
    /// [`ClientOptions`] (the same settings as wharf-mio's client); the
    /// first attempt starts at once. Without [`ClientOptions::tls`] a
    /// `wss://` URL trusts the Mozilla root set.
    ///
    /// ```no_run
    /// use wharf_tokio::{ClientOptions, ClientRequest, Message, ReconnectingClient};
    ///
    /// # async fn run() -> Result<(), wharf_tokio::Error> {
    /// let mut options = ClientOptions::new(ClientRequest::new("wss://example.com/feed")?);
    /// options.registration = Some(Box::new(|_open| vec![Message::text("hello")]));
    /// let (client, mut events) = ReconnectingClient::spawn(options)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Settings no attempt could use ([`Error::Config`],
    /// [`Error::Unsupported`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(options: ClientOptions) -> Result<(ReconnectingClient, ClientEvents), Error> {
        check_supported(&options.config)?;
        let client = Client::new(options, now())?;
        let shared = Arc::new(ClientShared {
            inner: Mutex::new(Inner {
                client,
                task: None,
                events: None,
                room: Vec::new(),
                handles: 1,
                events_alive: true,
            }),
            done: watch::Sender::new(false),
        });
        let task = Task {
            shared: shared.clone(),
            link: None,
            connecting: None,
            timer: Timer::default(),
        };
        // Detached: the task ends by itself when the client stops.
        drop(tokio::spawn(task));
        let events = ClientEvents {
            shared: shared.clone(),
        };
        Ok((ReconnectingClient { shared }, events))
    }

    /// Queues `message`, waiting for room in the queue first. Cancel-safe:
    /// a dropped `send` has queued nothing (the message goes with it).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once the client is stopping, with the message.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let mut message = Some(message);
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            let m = message.take().expect("polled after completion");
            if st.client.is_stopping() {
                return Poll::Ready(Err(SendError::Closed(m)));
            }
            match st.client.send(m) {
                Ok(()) => {
                    self.shared.poke(st);
                    Poll::Ready(Ok(()))
                }
                Err(m) => {
                    message = Some(m);
                    st.room.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Queues `message` if there is room; hands it back otherwise. Never
    /// waits.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] or [`SendError::Closed`], with the message.
    pub fn try_send(&self, message: Message) -> Result<(), SendError> {
        let mut st = self.shared.lock();
        if st.client.is_stopping() {
            return Err(SendError::Closed(message));
        }
        match st.client.send(message) {
            Ok(()) => {
                self.shared.poke(st);
                Ok(())
            }
            Err(m) => Err(SendError::Full(m)),
        }
    }

    /// Waits until the queue has room for a message and returns a permit
    /// to send it. Cancel-safe: waiting holds no message.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the client is stopping.
    pub async fn reserve(&self) -> Result<ClientPermit<'_>, Error> {
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.client.is_stopping() {
                return Poll::Ready(Err(Error::Closed));
            }
            if st.client.has_room() {
                return Poll::Ready(Ok(()));
            }
            st.room.push(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(ClientPermit { client: self })
    }

    /// A connection is open.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared.lock().client.is_connected()
    }

    /// Messages waiting for a connection.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.shared.lock().client.queued()
    }

    /// Stops: sends what is queued (within the close timeout), closes with
    /// 1000, waits until the socket is closed and returns what could not be
    /// sent.
    pub async fn shutdown(self) -> Vec<Message> {
        {
            let mut st = self.shared.lock();
            st.client.shutdown(now());
            self.shared.poke(st);
        }
        self.closed().await;
        self.take_unsent()
    }

    /// Waits until the client has stopped and its socket is closed.
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        // The sender lives in `shared`, which we hold: this cannot fail.
        let _ = done.wait_for(|d| *d).await;
    }

    /// Takes back the messages still waiting for a connection.
    pub fn take_unsent(&self) -> Vec<Message> {
        self.shared.lock().client.take_queued()
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
        let mut st = self.shared.lock();
        st.handles -= 1;
        if st.handles == 0 {
            st.client.go_away(now());
            self.shared.poke(st);
        }
    }
}

impl ClientPermit<'_> {
    /// Queues `message` in the room reserved; hands it back if the client
    /// stopped (or another handle took the room) meanwhile.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] or [`SendError::Full`], with the message.
    pub fn send(self, message: Message) -> Result<(), SendError> {
        self.client.try_send(message)
    }
}

impl ClientEvents {
    /// The next event; `None` after [`ClientEvent::Stopped`].
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll version of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        let mut st = self.shared.lock();
        match st.client.poll_event() {
            Some(event) => {
                // Taking a message may let the connection read or write on.
                self.shared.poke(st);
                Poll::Ready(Some(event))
            }
            None if st.client.is_stopped() => Poll::Ready(None),
            None => {
                register(&mut st.events, cx.waker());
                Poll::Pending
            }
        }
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
        let mut st = self.shared.lock();
        st.events_alive = false;
        st.events = None;
        self.shared.poke(st);
    }
}

/// The client's task: a socket (or a connect under way) and a timer.
struct Task {
    shared: Arc<ClientShared>,
    link: Option<Link<TcpStream>>,
    connecting: Option<Connecting>,
    /// The client's deadline while no socket is up (a link runs its own).
    timer: Timer,
}

impl Future for Task {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        for _ in 0..ROUNDS {
            let mut guard = shared.lock();
            let st = &mut *guard;
            register(&mut st.task, cx.waker());
            let mut progress = false;
            while let Some(action) = st.client.poll_action() {
                progress = true;
                match action {
                    ClientAction::Connect { host, port, .. } => {
                        this.link = None;
                        this.connecting =
                            Some(Box::pin(
                                async move { TcpStream::connect((host, port)).await },
                            ));
                    }
                    // The socket goes (the kernel sends our FIN).
                    _ => {
                        this.link = None;
                        this.connecting = None;
                    }
                }
            }
            if let Some(connecting) = this.connecting.as_mut() {
                if let Poll::Ready(result) = connecting.as_mut().poll(cx) {
                    this.connecting = None;
                    progress = true;
                    match result {
                        Ok(stream) => {
                            // Frames are written whole; Nagle would only
                            // add latency.
                            let _ = stream.set_nodelay(true);
                            this.link = Some(Link::new(stream));
                            st.client.connected(now());
                        }
                        Err(e) => st.client.connect_failed(now(), e),
                    }
                }
            }
            match this.link.as_mut() {
                Some(link) => progress |= link.poll_io(cx, &mut st.client),
                None => {
                    if this.timer.poll(cx, st.client.poll_timeout()).is_ready() {
                        st.client.handle_timeout(now());
                        progress = true;
                    }
                }
            }
            if !st.events_alive {
                // Nobody takes them: taken here, so nothing stalls.
                while st.client.poll_event().is_some() {}
            }
            let events = if st.client.has_events() || st.client.is_stopped() {
                st.events.take()
            } else {
                None
            };
            let room = if st.client.has_room() || st.client.is_stopping() {
                std::mem::take(&mut st.room)
            } else {
                Vec::new()
            };
            let finished =
                st.client.is_stopped() && this.link.is_none() && this.connecting.is_none();
            drop(guard);
            wake([events]);
            for w in room {
                w.wake();
            }
            if finished {
                shared.done.send_replace(true);
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // Ended, or aborted by a runtime shutdown: nothing is running now.
        self.shared.done.send_replace(true);
        let events = self.shared.lock().events.take();
        wake([events]);
    }
}
