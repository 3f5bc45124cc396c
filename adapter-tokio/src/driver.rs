//! The task behind a [`WebSocket`](crate::WebSocket): it owns the socket
//! and the core `Connection` (through a [`Link`]), moves messages between
//! them and the handles' bounded buffers, and ends — closing the socket —
//! when the connection is finished or when every handle is gone.
//!
//! A `send` writes from the sender's own task when it can (the driver is
//! free, the connection is simply open, the socket takes every byte): one
//! task turn per message fewer. Anything else (a full socket, a close,
//! timers to re-arm) is left to the driver task, which is woken for it.
//!
//! Backpressure on what arrives: while the reader's buffer is full, the
//! driver neither reads the socket nor takes the connection's events. The
//! connection then gets no new bytes, and with permessage-deflate it stops
//! inflating once 256 KiB of output wait in its events, so what a
//! connection holds stays bounded by the reader's buffer plus the core's
//! own bound whatever the compression ratio, and the peer's writes meet a
//! full TCP window.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use wharf_core::{CloseCode, Connection, Event};

use crate::config::Decider;
use crate::link::{now, Link};
use crate::server::Registration;
use crate::shared::{register, wake, Outgoing, Shared, State, WriteNow};
use crate::websocket::abandoned;

/// Most rounds per poll before the task yields to others.
const ROUNDS: usize = 64;

/// Where the driver is with closing.
enum Closing {
    /// Nobody asked.
    No,
    /// Asked at `since`: close once the queued messages are in the
    /// connection, or at `since + close_timeout` regardless.
    Wanted {
        code: CloseCode,
        reason: String,
        since: Instant,
    },
    /// `Connection::close` was called.
    Started,
}

/// One connection's task.
pub(crate) struct Driver<S> {
    link: Link<S>,
    shared: Arc<Shared>,
    decide: Option<Decider>,
    /// A message taken from the outgoing buffer that the connection could
    /// not take yet (its own queue was full).
    held: Option<Outgoing>,
    /// Messages taken from the outgoing buffer, ever.
    taken: u64,
    /// The last `written` count published to the writer.
    published: u64,
    closing: Closing,
    /// Server connections are tracked for a graceful shutdown.
    registration: Option<Registration>,
    done: bool,
    /// A protocol violation waits behind messages the reader has not taken,
    /// so that the application's answers go out first.
    failure_wait: FailureWait,
}

/// Where a pending protocol violation is (see `Driver::failure_waits`).
#[derive(Clone, Copy)]
enum FailureWait {
    /// None pending.
    No,
    /// Waiting, since then, for the reader to take the messages before it.
    Reader { since: Instant },
    /// The reader took them and the application had its turn: apply it.
    Answered,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Driver<S> {
    /// Spawns the task for `conn` on `io`.
    pub(crate) fn spawn(
        conn: Connection,
        io: S,
        shared: Arc<Shared>,
        close_timeout: std::time::Duration,
        decide: Option<Decider>,
        registration: Option<Registration>,
    ) {
        let driver = Driver {
            link: Link::new(conn, io, close_timeout),
            shared,
            decide,
            held: None,
            taken: 0,
            published: 0,
            closing: Closing::No,
            registration,
            done: false,
            failure_wait: FailureWait::No,
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
    /// Takes requests and outgoing messages from the handles; returns
    /// (progress, whether the socket may be read).
    /// `waker`: the driver task's, to be woken by the handles; `None` when
    /// called from a sender's task (`write_now`).
    fn exchange(&mut self, waker: Option<&Waker>) -> (bool, bool) {
        // The clock is read only when closing needs it, not per message.
        let mut clock = None;
        let mut now = move || *clock.get_or_insert_with(now);
        let close_timeout = self.link.conn_close_timeout();
        let mut progress = false;
        let mut writer = None;
        let read;
        {
            let mut st = self.shared.lock();
            if let Some(waker) = waker {
                register(&mut st.driver, waker);
            }
            if matches!(self.closing, Closing::No) {
                if let Some((code, reason)) = st.close_request.clone() {
                    self.closing = Closing::Wanted {
                        code,
                        reason,
                        since: now(),
                    };
                } else if !st.reader_alive && !st.writer_alive {
                    self.closing = Closing::Wanted {
                        code: CloseCode::GOING_AWAY,
                        reason: String::new(),
                        since: now(),
                    };
                }
            }
            // Outgoing messages into the connection, while it takes them.
            if self.link.conn.is_open() {
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
                        self.link.conn.send(message)
                    } else {
                        self.link.conn.send_uncompressed(message)
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
            if let Closing::Wanted {
                code,
                reason,
                since,
            } = &self.closing
            {
                let drained = self.held.is_none() && st.outgoing.is_empty();
                let overdue = now() >= *since + close_timeout;
                if drained || overdue || !self.link.conn.is_open() {
                    // Validated by the handle (or a constant): cannot fail.
                    let _ = self.link.conn.close(*code, reason);
                    self.closing = Closing::Started;
                    self.link.set_extra_deadline(None);
                    progress = true;
                } else {
                    self.link.set_extra_deadline(Some(*since + close_timeout));
                }
            }
            let closing = !matches!(self.closing, Closing::No);
            read = closing || !st.reader_alive || !st.incoming_full();
            if !read {
                st.read_paused = true;
            }
        }
        wake([writer]);
        (progress, read)
    }

    /// From a sender's task, right after it queued a message: takes the
    /// queued messages into the connection and writes them, so that the
    /// driver task needs no turn for it. Returns whether the task must run
    /// anyway: the socket did not take everything (only the task may wait
    /// for it to become writable), something other than plain sending is
    /// under way (a close, a held message, a failure, events to hand
    /// over), or the connection's next deadline came earlier (the task's
    /// timer must follow).
    fn write_now(&mut self) -> bool {
        let plain = |d: &Self| {
            !d.done
                && matches!(d.closing, Closing::No)
                && matches!(d.failure_wait, FailureWait::No)
                && d.held.is_none()
                && d.link.conn.is_open()
                && !d.link.conn.has_events()
        };
        if !plain(self) {
            return true;
        }
        let deadline = self.link.conn.poll_timeout();
        self.exchange(None);
        // A waker that does nothing: if the socket is full, it is
        // registered in place of the task's, and the task is woken below
        // to wait for the socket itself.
        let mut cx = Context::from_waker(Waker::noop());
        self.link.write_now(&mut cx);
        if !plain(self) || self.link.conn.wants_write() {
            return true;
        }
        self.publish_written();
        // A later deadline only wakes the task early, which is harmless.
        match (deadline, self.link.conn.poll_timeout()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(before), Some(now)) => now < before,
        }
    }

    /// Whether a pending protocol violation should wait: until the reader
    /// took the messages before it (bounded by the close timeout), then one
    /// more turn for the application's answers to reach the connection.
    fn failure_waits(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.link.conn.failure_pending() {
            self.failure_wait = FailureWait::No;
            return false;
        }
        let now = now();
        let since = match self.failure_wait {
            FailureWait::Answered => return false,
            FailureWait::Reader { since } => since,
            FailureWait::No => {
                self.failure_wait = FailureWait::Reader { since: now };
                now
            }
        };
        let deadline = since + self.link.conn_close_timeout();
        if now >= deadline {
            return false;
        }
        let mut st = self.shared.lock();
        if !st.reader_alive {
            return false;
        }
        if !st.incoming.is_empty() {
            // The reader wakes us when it takes a message.
            st.read_paused = true;
            drop(st);
            self.link.set_extra_deadline(Some(deadline));
            return true;
        }
        drop(st);
        self.failure_wait = FailureWait::Answered;
        cx.waker().wake_by_ref();
        true
    }

    /// Whether the connection's events stay in it for now because the
    /// reader's buffer is full. Not taking them is what bounds memory:
    /// `exchange` stops reading the socket meanwhile, and the core stops
    /// inflating while its events wait (taking them would let it inflate
    /// everything it has read, however much that expands). The reader
    /// wakes the driver when it takes a message.
    ///
    /// Not held when nobody reads (messages are dropped), after a local
    /// close (what does not fit is dropped, so that the closing handshake
    /// goes on), and once the connection has closed: it decodes nothing
    /// more then, so what it holds is all there is, and the reader gets it
    /// before the end.
    fn events_held(&self) -> bool {
        self.holds_events(&mut self.shared.lock())
    }

    /// [`events_held`](Self::events_held) with the lock already taken.
    fn holds_events(&self, st: &mut State) -> bool {
        if !matches!(self.closing, Closing::No)
            || self.link.conn.is_closed()
            || !self.link.conn.has_events()
        {
            return false;
        }
        let held = st.reader_alive && st.incoming_full();
        if held {
            st.read_paused = true;
        }
        held
    }

    /// Hands the connection's events to the handles, while the reader has
    /// room for them (see `events_held`).
    fn drain_events(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        // Only a message handed over fills the reader's buffer: checked
        // here, then under the lock that hands each message over.
        let mut held = self.events_held();
        while !self.failure_waits(cx) && !held {
            let Some(event) = self.link.conn.poll_event() else {
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
                        let closing = !matches!(self.closing, Closing::No);
                        // After a local close, what does not fit is dropped.
                        // Otherwise there is room (`events_held`), except
                        // for the last messages of a connection that has
                        // closed, which are already in memory.
                        if st.reader_alive && !(closing && st.incoming_full()) {
                            st.incoming_bytes += message.len();
                            st.incoming.push_back(message);
                        }
                        held = self.holds_events(&mut st);
                        st.reader.take()
                    };
                    wake([reader]);
                }
                Event::Closed(info) => {
                    let mut unsent = self.link.conn.take_unsent();
                    let wakers = {
                        let mut st = self.shared.lock();
                        unsent.extend(self.held.take().map(|o| o.message));
                        unsent.extend(st.outgoing.drain(..).map(|o| o.message));
                        st.unsent.append(&mut unsent);
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
            Ok(accept) => self.link.conn.accept(accept),
            Err(reject) => self.link.conn.reject(reject),
        };
        let mut st = self.shared.lock();
        match result {
            Ok(()) if accepted => st.request = Some(request),
            Ok(()) => {}
            Err(e) => {
                // The application's answer could not be encoded: abandon.
                st.setup_error = Some(e);
                let _ = self.link.conn.close(CloseCode::INTERNAL_ERROR, "");
            }
        }
    }

    /// Tells the writer what has reached the socket.
    fn publish_written(&mut self) {
        if self.taken == self.published || self.held.is_some() || !self.link.all_written() {
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

    /// Marks the connection finished for the handles (once).
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut unsent = self.link.conn.take_unsent();
        let wakers = {
            let mut st = self.shared.lock();
            unsent.extend(self.held.take().map(|o| o.message));
            unsent.extend(st.outgoing.drain(..).map(|o| o.message));
            st.unsent.append(&mut unsent);
            if st.closed.is_none() {
                st.closed = Some(abandoned());
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

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Driver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..ROUNDS {
            let (mut progress, read) = this.exchange(Some(cx.waker()));
            progress |= this.link.poll_io(cx, read);
            progress |= this.drain_events(cx);
            this.publish_written();
            if this.link.is_finished() {
                this.finish();
                return Poll::Ready(());
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

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        // Aborted (runtime shutdown) before finishing: tell the handles.
        if !self.done {
            self.done = true;
            let mut unsent = self.link.conn.take_unsent();
            let wakers = {
                let mut st = self.shared.lock();
                unsent.extend(self.held.take().map(|o| o.message));
                unsent.extend(st.outgoing.drain(..).map(|o| o.message));
                st.unsent.append(&mut unsent);
                if st.closed.is_none() {
                    st.closed = Some(abandoned());
                }
                st.finished = true;
                st.driver = None;
                [st.reader.take(), st.writer.take()]
            };
            wake(wakers);
        }
    }
}
