//! The connections of one server, sans-IO: who is next to report events,
//! which deadline comes first, how many connections there may be, and what
//! a graceful shutdown does. An adapter that drives many connections in one
//! loop keeps its sockets beside the set, at [`ConnId::index`], and only
//! moves bytes between the two.
//!
//! The loop, for every connection the adapter touched (input, a timer, an
//! event taken, a send): drive its socket, then [`ConnectionSet::update`],
//! which files the connection under its next deadline and in the turn of
//! connections with events, and tells when its socket is to be dropped.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::connection::Connection;
use crate::error::ConfigError;
use crate::tls::ServerTls;

/// Identifies one connection of a [`ConnectionSet`]. Ids are not reused
/// while the set lives (a slot's generation changes), so a stale id finds
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: usize,
    generation: u64,
}

impl ConnId {
    /// The slot, below the most connections there were at once: where an
    /// adapter keeps this connection's socket (and derives its token from).
    /// A slot is reused once its connection is gone.
    #[must_use]
    pub fn index(self) -> usize {
        self.slot
    }
}

struct Slot {
    conn: Connection,
    generation: u64,
    /// The deadline filed in `deadlines` for this slot: never later than
    /// the connection's own (see [`ConnectionSet::update`]).
    deadline: Option<Instant>,
    /// The connection has events to report.
    ready: bool,
    /// An entry for this slot is in `turns`.
    queued: bool,
}

/// A server's connections and the bookkeeping between them.
///
/// - **Turns.** Connections with events report them in turns, one event at
///   a time ([`next_ready`](Self::next_ready)): a peer that sends as fast as
///   the application takes does not keep the others waiting, and what the
///   application does in answer to one event (an echo) goes out before what
///   the connection does next.
/// - **Deadlines.** One ordered index of every connection's next deadline;
///   [`poll_due`](Self::poll_due) runs the timers that are due.
/// - **Limit.** At most `max_connections` at once: beyond it
///   [`has_room`](Self::has_room) is false and new connections wait in the
///   listen backlog.
/// - **Shutdown.** [`shutdown`](Self::shutdown) stops admitting and closes
///   every connection with 1001 (going away).
pub struct ConnectionSet {
    config: Arc<Config>,
    tls: Option<ServerTls>,
    max_connections: usize,
    accepting: bool,
    /// Boxed: a `Slot` is about 1 KB, and the vector keeps the length of
    /// the busiest moment; an empty slot then costs 8 bytes.
    slots: Vec<Option<Box<Slot>>>,
    free: Vec<usize>,
    next_generation: u64,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Connections with events, in the order of their turns. An entry whose
    /// connection has none any more (or is gone) is skipped when reached.
    turns: VecDeque<ConnId>,
}

impl fmt::Debug for ConnectionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSet")
            .field("connections", &self.len())
            .field("max_connections", &self.max_connections)
            .field("accepting", &self.accepting)
            .finish_non_exhaustive()
    }
}

impl ConnectionSet {
    /// An empty set whose connections use `config` and, for `wss`, `tls`.
    #[must_use]
    pub fn new(config: Arc<Config>, tls: Option<ServerTls>, max_connections: usize) -> Self {
        ConnectionSet {
            config,
            tls,
            max_connections,
            accepting: true,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            deadlines: BTreeSet::new(),
            turns: VecDeque::new(),
        }
    }

    /// Connections in the set (any state).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// No connections.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Not shut down.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// A new connection may be added now: not shut down, and below
    /// `max_connections`.
    #[must_use]
    pub fn has_room(&self) -> bool {
        self.accepting && self.len() < self.max_connections
    }

    /// Adds a server connection for a socket just accepted.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidState`] without room (see
    /// [`has_room`](Self::has_room)); the connection's own setup errors.
    pub fn insert(&mut self, now: Instant) -> Result<ConnId, ConfigError> {
        if !self.has_room() {
            return Err(ConfigError::InvalidState("no room for another connection"));
        }
        let conn = Connection::server(self.config.clone(), self.tls.as_ref(), now)?;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.next_generation += 1;
        self.slots[slot] = Some(Box::new(Slot {
            conn,
            generation: self.next_generation,
            deadline: None,
            ready: false,
            queued: false,
        }));
        let id = ConnId {
            slot,
            generation: self.next_generation,
        };
        self.update(id, false);
        Ok(id)
    }

    /// The connection `id`, while it is in the set.
    #[must_use]
    pub fn get(&self, id: ConnId) -> Option<&Connection> {
        match self.slots.get(id.slot) {
            Some(Some(s)) if s.generation == id.generation => Some(&s.conn),
            _ => None,
        }
    }

    /// The connection `id`, to drive; call [`update`](Self::update) after.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.slot_mut(id).map(|s| &mut s.conn)
    }

    /// The connection at `index` (see [`ConnId::index`]), if there is one:
    /// for an adapter that knows a socket by its place.
    #[must_use]
    pub fn id_at(&self, index: usize) -> Option<ConnId> {
        let s = self.slots.get(index)?.as_ref()?;
        Some(ConnId {
            slot: index,
            generation: s.generation,
        })
    }

    /// Every connection in the set.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, s)| {
            s.as_ref().map(|s| ConnId {
                slot,
                generation: s.generation,
            })
        })
    }

    /// Removes `id` at once (its socket could not be set up, say).
    pub fn remove(&mut self, id: ConnId) -> Option<Connection> {
        self.slot_mut(id)?;
        let s = self.slots[id.slot].take()?;
        if let Some(d) = s.deadline {
            self.deadlines.remove(&(d, id.slot));
        }
        self.free.push(id.slot);
        Some(s.conn)
    }

    /// After `id` was driven: files it in the turns when it has events and
    /// under its deadline when that came earlier, and removes it when it is
    /// finished and every event was taken. `transport_done`: the socket
    /// failed or was closed, so a closed connection has nothing left to
    /// wait for. Returns whether the connection was removed: then drop its
    /// socket.
    pub fn update(&mut self, id: ConnId, transport_done: bool) -> bool {
        let Some(s) = self.slot_mut(id) else {
            return false;
        };
        s.ready = s.conn.has_events();
        let enqueue = s.ready && !s.queued;
        s.queued |= enqueue;
        // Only an earlier deadline is filed again. A busy connection pushes
        // its timers later on every message (keepalive, giving back large
        // buffers); re-sorting the index each time would cost two tree
        // updates per message. A deadline left too early comes up, runs the
        // connection's timers early (harmless) and files the one then due.
        let deadline = s.conn.poll_timeout();
        let old = s.deadline;
        let earlier = match (deadline, old) {
            (Some(new), Some(old)) => new < old,
            (new, old) => new.is_some() && old.is_none(),
        };
        if earlier {
            s.deadline = deadline;
        }
        let finished = !s.ready && (s.conn.is_finished() || (transport_done && s.conn.is_closed()));
        if enqueue {
            self.turns.push_back(id);
        }
        if earlier {
            if let Some(old) = old {
                self.deadlines.remove(&(old, id.slot));
            }
            self.deadlines.extend(deadline.map(|new| (new, id.slot)));
        }
        if finished {
            self.remove(id);
        }
        finished
    }

    /// The connection whose turn it is to report an event; it goes to the
    /// back of the turns. Take one event from it, drive it, and
    /// [`update`](Self::update) it.
    pub fn next_ready(&mut self) -> Option<ConnId> {
        while let Some(id) = self.turns.pop_front() {
            let Some(s) = self.slot_mut(id) else {
                continue;
            };
            if !s.ready {
                s.queued = false;
                continue;
            }
            self.turns.push_back(id);
            return Some(id);
        }
        None
    }

    /// The earliest deadline of any connection. It may come before any
    /// timer is due (see [`update`](Self::update)).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Runs the timers of the next connection whose deadline is due at
    /// `now` and returns it, to drive and [`update`](Self::update); `None`
    /// when no deadline is due.
    pub fn poll_due(&mut self, now: Instant) -> Option<ConnId> {
        while let Some(&(at, slot)) = self.deadlines.first() {
            if at > now {
                return None;
            }
            self.deadlines.pop_first();
            if let Some(Some(s)) = self.slots.get_mut(slot) {
                s.deadline = None;
                s.conn.handle_timeout(now);
                return Some(ConnId {
                    slot,
                    generation: s.generation,
                });
            }
        }
        None
    }

    /// Graceful shutdown: admits no more connections and closes every one
    /// with 1001 (going away). Drive and [`update`](Self::update) each of
    /// [`ids`](Self::ids) after; the close timeout bounds how long the set
    /// takes to empty.
    pub fn shutdown(&mut self) {
        self.accepting = false;
        for s in self.slots.iter_mut().flatten() {
            s.conn.close_going_away();
        }
    }

    fn slot_mut(&mut self, id: ConnId) -> Option<&mut Slot> {
        match self.slots.get_mut(id.slot) {
            Some(Some(s)) if s.generation == id.generation => Some(s),
            _ => None,
        }
    }
}
