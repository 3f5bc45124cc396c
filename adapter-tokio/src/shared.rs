//! The state a connection's driver task shares with its handles (one reader,
//! one writer), behind one mutex. Every wait is a stored `Waker`, so every
//! handle future is cancel-safe: it changes nothing until it completes.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;

use wharf_core::{CloseCode, CloseInfo, ConfigError, Message, Open, Request};

/// Shared between a driver and its [`WsReader`](crate::WsReader) and
/// [`WsWriter`](crate::WsWriter).
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The driver, for writing a queued message from the sender's task
    /// (see [`Shared::write_now`]); set once it is spawned.
    writer: OnceLock<Weak<dyn WriteNow>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A driver that can write what was queued from another task.
pub(crate) trait WriteNow: Send + Sync {
    /// Takes the queued messages into the connection and writes them to the
    /// socket, if the driver is free and nothing else needs it; returns
    /// whether the driver task must still run (it is then woken).
    fn write_now(&self) -> bool;
}

impl Shared {
    pub(crate) fn new(outgoing_bound: usize) -> Shared {
        Shared {
            state: Mutex::new(State {
                outgoing_bound,
                outgoing: VecDeque::new(),
                submitted: 0,
                written: 0,
                close_request: None,
                reader_alive: true,
                writer_alive: true,
                incoming: VecDeque::new(),
                taken: (0, 0),
                wake_on_take: false,
                open: None,
                opened: false,
                request: None,
                setup_error: None,
                closed: None,
                error_reported: false,
                unsent: Vec::new(),
                finished: false,
                driver: None,
                reader: None,
                writer: None,
            }),
            writer: OnceLock::new(),
        }
    }

    /// Lets the handles write through `driver` (once, when it is spawned).
    pub(crate) fn set_writer(&self, driver: Weak<dyn WriteNow>) {
        let _ = self.writer.set(driver);
    }

    /// After a message was queued: writes it from the caller's task when
    /// the driver allows (saving the driver task a turn), else wakes it.
    pub(crate) fn write_now(&self) {
        let needs_driver = match self.writer.get().and_then(Weak::upgrade) {
            Some(driver) => driver.write_now(),
            None => true,
        };
        if needs_driver {
            let driver = self.lock().take_driver();
            wake([driver]);
        }
    }

    /// Asks the driver to close (once: a later request, or one after the
    /// connection closed, changes nothing) and wakes it.
    pub(crate) fn request_close(&self, request: CloseRequest) {
        let driver = {
            let mut st = self.lock();
            if st.close_request.is_none() && st.closed.is_none() {
                st.close_request = Some(request);
            }
            st.take_driver()
        };
        wake([driver]);
    }

    /// Locks the state. A panic elsewhere while the lock was held leaves
    /// plain data behind, so a poisoned lock is used as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct State {
    /// Most messages waiting in `outgoing`.
    pub(crate) outgoing_bound: usize,
    /// Messages for the driver, oldest first. At most `outgoing_bound`,
    /// plus one from a `send` whose wait was cancelled.
    pub(crate) outgoing: VecDeque<Outgoing>,
    /// Messages the writer has queued, ever.
    pub(crate) submitted: u64,
    /// The first `written` of them have been written to the socket.
    pub(crate) written: u64,
    /// The writer (or a server shutdown) asked for a close.
    pub(crate) close_request: Option<CloseRequest>,
    pub(crate) reader_alive: bool,
    pub(crate) writer_alive: bool,

    /// Messages for the reader. They still count against the connection's
    /// receive bound (the core's `poll_event_held`) until the driver
    /// releases what the reader took.
    pub(crate) incoming: VecDeque<Message>,
    /// Messages and bytes the reader took since the driver last released.
    pub(crate) taken: (usize, usize),
    /// The connection waits for the release (`awaits_release`): the reader
    /// wakes the driver when it takes a message.
    pub(crate) wake_on_take: bool,
    /// The opening handshake's outcome, until `connect` / `accept` takes it.
    pub(crate) open: Option<Open>,
    pub(crate) opened: bool,
    /// Server: the upgrade request that was accepted.
    pub(crate) request: Option<Request>,
    /// The application's `Accept` / `Reject` could not be encoded.
    pub(crate) setup_error: Option<ConfigError>,
    /// How the connection ended (set once, by the driver).
    pub(crate) closed: Option<CloseInfo>,
    /// The reader has yielded the failure (once).
    pub(crate) error_reported: bool,
    /// Messages that were queued but never went out, oldest first.
    pub(crate) unsent: Vec<Message>,
    /// The driver has ended: the socket is closed.
    pub(crate) finished: bool,

    pub(crate) driver: Option<Waker>,
    pub(crate) reader: Option<Waker>,
    pub(crate) writer: Option<Waker>,
}

/// A close asked of the driver.
#[derive(Debug, Clone)]
pub(crate) enum CloseRequest {
    /// By the application, with its code and reason (already validated).
    Close(CloseCode, String),
    /// This side is going away (a server shutdown).
    GoingAway,
}

/// A message queued by the writer for the driver.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) message: Message,
    /// Whether permessage-deflate, when in use, may compress it (`false`
    /// from `send_uncompressed`).
    pub(crate) compress: bool,
}

impl State {
    /// No more messages are taken from the writer.
    pub(crate) fn send_closed(&self) -> bool {
        self.closed.is_some() || self.close_request.is_some() || self.finished
    }

    /// Takes the driver's waker, to wake it once the lock is released.
    pub(crate) fn take_driver(&mut self) -> Option<Waker> {
        self.driver.take()
    }
}

/// Stores `cx`'s waker in `slot` (no clone when it is the same one).
pub(crate) fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// Wakes what was taken out of the state (after the lock is released).
// A plain loop, not `flatten()`: this runs for every message, mostly with
// nothing to wake, and the `Flatten` adapter's drop costs more than the
// rest of the function (callgrind counts of the echo:
// `adapter-tokio/benches/peers/profile.sh`).
#[allow(clippy::manual_flatten)]
pub(crate) fn wake<const N: usize>(wakers: [Option<Waker>; N]) {
    for w in wakers {
        if let Some(w) = w {
            w.wake();
        }
    }
}
