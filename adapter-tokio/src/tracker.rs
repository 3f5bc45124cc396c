//! The connections of one server, for its graceful shutdown: each driver
//! holds its [`Registration`] until its socket is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::watch;

use crate::shared::{CloseRequest, Shared};

/// The connections of one server, for its shutdown.
#[derive(Debug)]
pub(crate) struct Tracker {
    conns: Mutex<Conns>,
    pub(crate) shutting_down: watch::Sender<bool>,
    /// Live connections (their driver tasks have not ended).
    pub(crate) live: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct Conns {
    next_id: u64,
    by_id: HashMap<u64, Weak<Shared>>,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            conns: Mutex::new(Conns::default()),
            shutting_down: watch::Sender::new(false),
            live: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    /// Stops accepting and asks every connection to close with 1001.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.send_replace(true);
        let conns: Vec<Arc<Shared>> = self
            .lock()
            .by_id
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for shared in conns {
            shared.request_close(CloseRequest::GoingAway);
        }
    }
}

/// A connection's place in its server's list; leaving it (on drop, when
/// the driver task ends) lets the server's shutdown complete.
#[derive(Debug)]
pub(crate) struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Registration {
    pub(crate) fn new(tracker: &Arc<Tracker>) -> Registration {
        let id = {
            let mut conns = tracker.lock();
            conns.next_id += 1;
            conns.next_id
        };
        tracker.live.send_modify(|n| *n += 1);
        Registration {
            tracker: tracker.clone(),
            id,
        }
    }

    /// Lists the connection; one that arrives during a shutdown is asked to
    /// close at once.
    pub(crate) fn attach(self, shared: &Arc<Shared>) -> Registration {
        self.tracker
            .lock()
            .by_id
            .insert(self.id, Arc::downgrade(shared));
        if self.tracker.is_shutting_down() {
            shared.request_close(CloseRequest::GoingAway);
        }
        self
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tracker.lock().by_id.remove(&self.id);
        self.tracker.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}
