//! The task behind a [`WebSocket`](crate::WebSocket): it owns the socket
//! and the core `Connection`, moves bytes between them (through a
//! [`Link`]) and messages between the connection and the handles, and
//! ends — closing the socket — when the connection is finished.
//!
//! A `send` writes from the sender's own task when it can (the driver is
//! free, the connection is simply open, the socket takes every byte): one
//! task turn per message fewer. Anything else (a full socket, a close,
//! timers to re-arm) is left to the driver task, which is woken for it.
//!
//! What arrives is bounded by the core: messages handed to the reader are
//! taken with `poll_event_held` and keep counting against the connection's
//! receive bound until the reader has them; while the bound is reached the
//! connection wants no input, so the socket is not read and the peer meets
//! a full TCP window.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite};
use wharf_core::{CloseInfo, Connection, Event};

use crate::config::{check_supported, Decider, ServerConfig};
use crate::error::Error;
use crate::link::{now, Link};
use crate::shared::{register, wake, CloseRequest, Outgoing, Shared, State, WriteNow};
use crate::tracker::Registration;
use crate::websocket::WebSocket;

/// Most rounds per poll before the task yields to others.
const ROUNDS: usize = 64;

/// One connection's task.
pub(crate) struct Driver<S> {
    link: Link<S>,
    conn: Connection,
    shared: Arc<Shared>,
    decide: Option<Decider>,
    /// A message taken from the outgoing buffer that the connection could
    /// not take yet (its own queue was full).
    held: Option<Outgoing>,
    /// Messages taken from the outgoing buffer, ever.
    taken: u64,
    /// The last `written` count published to the writer.
    published: u64,
    /// `Connection::close` was called for a request of the handles.
    close_started: bool,
    /// Server connections are tracked for a graceful shutdown.
    registration: Option<Registration>,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Driver<S> {
    /// Spawns the task for `conn` on `io`.
    pub(crate) fn spawn(
        conn: Connection,
        io: S,
        shared: Arc<Shared>,
        decide: Option<Decider>,
        registration: Option<Registration>,
    ) {
        let driver = Driver {
            link: Link::new(io),
            conn,
            shared,
            decide,
            held: None,
            taken: 0,
            published: 0,
            close_started: false,
            registration,
            done: false,
        };
        let driver = Arc::new(Mutex::new(driver));
        let weak: Weak<Mutex<Driver<S>>> = Arc::downgrade(&driver);
        let weak: Weak<dyn WriteNow> = weak;
        driver_lock(&driver).shared.set_writer(weak);
        // Detached: the task ends by itself (see `poll`). It holds the only
        // strong reference: the driver (and the socket) go with it.
        drop(tokio::spawn(DriverTask { driver }));
    }
}

/// Spawns a server connection's driver and returns its (not yet open)
/// handles.
pub(crate) fn start_server<S>(
    stream: S,
    config: &ServerConfig,
    registration: Option<Registration>,
) -> Result<WebSocket, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    check_supported(&config.core)?;
    let conn = Connection::server(config.core.clone(), config.tls.as_ref(), now())?;
    let shared = Arc::new(Shared::new(config.outgoing));
    let registration = registration.map(|r| r.attach(&shared));
    Driver::spawn(
        conn,
        stream,
        shared.clone(),
        config.decide.clone(),
        registration,
    );
    Ok(WebSocket::new(shared))
}

/// Locks a driver. A panic elsewhere while the lock was held leaves plain
/// data behind, so a poisoned lock is used as it is.
fn driver_lock<S>(driver: &Mutex<Driver<S>>) -> MutexGuard<'_, Driver<S>> {
    driver.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task that runs a driver. The sender's task may write through the
/// same driver between its turns ([`WriteNow`]), hence the mutex; it is
/// never contended on a current-thread runtime.
struct DriverTask<S> {
    driver: Arc<Mutex<Driver<S>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for DriverTask<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut driver = driver_lock(&self.driver);
        Pin::new(&mut *driver).poll(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WriteNow for Mutex<Driver<S>> {
    fn write_now(&self) -> bool {
        match self.try_lock() {
            Ok(mut driver) => driver.write_now(),
            // Busy (another thread runs it) or poisoned: the task's turn.
            Err(_) => true,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// Takes what the handles left for the connection: releases, a close
    /// request, outgoing messages. `waker`: the driver task's, to be woken
    /// by the handles; `None` when called from a sender's task.
    fn exchange(&mut self, waker: Option<&Waker>) -> bool {
        let mut progress = false;
        let mut writer = None;
        {
            let mut st = self.shared.lock();
            if let Some(waker) = waker {
                register(&mut st.driver, waker);
            }
            let (messages, bytes) = std::mem::take(&mut st.taken);
            if messages > 0 {
                self.conn.release(messages, bytes);
                progress = true;
            }
            // Outgoing messages into the connection, while it takes them.
            if self.conn.is_open() {
                let before = st.outgoing.len();
                loop {
                    let Outgoing { message, compress } = match self.held.take() {
                        Some(m) => m,
                        None => match st.outgoing.pop_front() {
                            Some(m) => {
                                self.taken += 1;
                                m
                            }
                            None => break,
                        },
                    };
                    let sent = if compress {
                        self.conn.send(message)
                    } else {
                        self.conn.send_uncompressed(message)
                    };
                    if let Err(e) = sent {
                        self.held = Some(Outgoing {
                            message: e.into_message(),
                            compress,
                        });
                        break;
                    }
                    progress = true;
                }
                if st.outgoing.len() < before {
                    writer = st.writer.take();
                }
            }
            // A close goes after what the connection took; what it could
            // not take comes back through `take_unsent`.
            if !self.close_started {
                let request = match &st.close_request {
                    Some(request) => Some(request.clone()),
                    None if !st.reader_alive && !st.writer_alive => Some(CloseRequest::GoingAway),
                    None => None,
                };
                if let Some(request) = request {
                    match request {
                        // Validated by the handle: cannot fail.
                        CloseRequest::Close(code, reason) => {
                            let _ = self.conn.close(code, &reason);
                        }
                        CloseRequest::GoingAway => self.conn.close_going_away(),
                    }
                    self.close_started = true;
                    progress = true;
                }
            }
        }
        wake([writer]);
        progress
    }

    /// From a sender's task, right after it queued a message: takes the
    /// queued messages into the connection and writes them, so that the
    /// driver task needs no turn for it. Returns whether the task must run
    /// anyway: the socket did not take everything (only the task may wait
    /// for it to become writable), something other than plain sending is
    /// under way (a close, a held message, events to hand over), or the
    /// connection's next deadline came earlier (the task's timer must
    /// follow).
    fn write_now(&mut self) -> bool {
        let plain = |d: &Self| {
            !d.done
                && !d.close_started
                && d.held.is_none()
                && d.conn.is_open()
                && !d.conn.has_events()
        };
        if !plain(self) {
            return true;
        }
        let deadline = self.conn.poll_timeout();
        self.exchange(None);
        // A waker that does nothing: if the socket is full, it is
        // registered in place of the task's, and the task is woken below
        // to wait for the socket itself.
        let mut cx = Context::from_waker(Waker::noop());
        self.link.write_now(&mut cx, &mut self.conn);
        if !plain(self) || self.conn.wants_write() {
            return true;
        }
        self.publish_written();
        // A later deadline only wakes the task early, which is harmless.
        match (deadline, self.conn.poll_timeout()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(before), Some(now)) => now < before,
        }
    }

    /// Hands the connection's events to the handles.
    fn drain_events(&mut self) -> bool {
        let mut progress = false;
        loop {
            let reader_alive = self.shared.lock().reader_alive;
            // Held until the reader has them; dropped (and so released)
            // when nobody reads.
            let event = if reader_alive {
                self.conn.poll_event_held()
            } else {
                self.conn.poll_event()
            };
            let Some(event) = event else {
                break;
            };
            progress = true;
            match event {
                Event::Request(request) => self.decide_request(*request),
                Event::Open(open) => {
                    let reader = {
                        let mut st = self.shared.lock();
                        st.open = Some(open);
                        st.opened = true;
                        st.reader.take()
                    };
                    wake([reader]);
                }
                Event::Message(message) => {
                    let reader = {
                        let mut st = self.shared.lock();
                        if st.reader_alive {
                            st.incoming.push_back(message);
                        } else {
                            // The reader went away meanwhile.
                            self.conn.release(1, message.len());
                        }
                        st.reader.take()
                    };
                    wake([reader]);
                }
                Event::Closed(info) => {
                    let wakers = {
                        let mut st = self.shared.lock();
                        Self::collect_unsent(&mut self.conn, &mut self.held, &mut st);
                        st.closed = Some(info);
                        [st.reader.take(), st.writer.take()]
                    };
                    wake(wakers);
                }
                // Pings are answered and Close frames echoed by the core;
                // chunks are not produced (Stream mode is refused up front).
                _ => {}
            }
        }
        self.shared.lock().wake_on_take = self.conn.awaits_release();
        progress
    }

    /// Server: the application decides on the upgrade request.
    fn decide_request(&mut self, request: wharf_core::Request) {
        let decision = match &self.decide {
            Some(decide) => decide(&request),
            None => Ok(wharf_core::Accept::default()),
        };
        let accepted = decision.is_ok();
        let result = match decision {
            Ok(accept) => self.conn.accept(accept),
            Err(reject) => self.conn.reject(reject),
        };
        let mut st = self.shared.lock();
        match result {
            Ok(()) if accepted => st.request = Some(request),
            Ok(()) => {}
            Err(e) => {
                // The application's answer could not be encoded: the
                // handshake is abandoned (before Open no Close is sent).
                st.setup_error = Some(e);
                self.conn.close_going_away();
            }
        }
    }

    /// Tells the writer what has reached the socket.
    fn publish_written(&mut self) {
        if self.taken == self.published || self.held.is_some() || self.conn.wants_write() {
            return;
        }
        let writer = {
            let mut st = self.shared.lock();
            if !st.outgoing.is_empty() {
                return;
            }
            st.written = self.taken;
            st.writer.take()
        };
        self.published = self.taken;
        wake([writer]);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..ROUNDS {
            let mut progress = this.exchange(Some(cx.waker()));
            progress |= this.link.poll_io(cx, &mut this.conn);
            progress |= this.drain_events();
            this.publish_written();
            if this.conn.is_finished() {
                if this.conn.is_abandoned() || this.link.poll_shutdown(cx).is_ready() {
                    this.finish();
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S> Driver<S> {
    /// Everything queued that never went out, for `take_unsent`.
    fn collect_unsent(conn: &mut Connection, held: &mut Option<Outgoing>, st: &mut State) {
        let mut unsent = conn.take_unsent();
        unsent.extend(held.take().map(|o| o.message));
        unsent.extend(st.outgoing.drain(..).map(|o| o.message));
        st.unsent.append(&mut unsent);
    }

    /// Marks the connection finished for the handles (once).
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let wakers = {
            let mut st = self.shared.lock();
            Self::collect_unsent(&mut self.conn, &mut self.held, &mut st);
            if st.closed.is_none() {
                st.closed = Some(CloseInfo::abandoned());
            }
            st.finished = true;
            st.driver = None;
            [st.reader.take(), st.writer.take()]
        };
        wake(wakers);
        // Leave the server's list only now, so its shutdown waits for us.
        self.registration = None;
    }
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        // Aborted (runtime shutdown) before finishing: tell the handles.
        self.finish();
    }
}
