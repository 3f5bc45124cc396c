//! What the application has not taken yet: the event queue, and the bound on
//! it that makes a connection stop consuming input.
//!
//! Every event counts against [`Config::max_receive_events`], and the
//! payload bytes of messages, chunks, Pings and Pongs against
//! [`Config::max_receive_queue`], from the moment they are queued until the
//! application takes them: with [`Connection::poll_event`], or, for an
//! adapter that hands messages on to another task, with
//! [`Connection::release`] after [`Connection::poll_event_held`]. Once
//! either bound is reached the connection decodes nothing more and
//! [`Connection::wants_read`] is false, so its owner stops reading the
//! socket and the peer meets TCP backpressure; decoding resumes when the
//! application has taken the queue down to half of both bounds.
//!
//! [`Config::max_receive_events`]: crate::Config::max_receive_events
//! [`Config::max_receive_queue`]: crate::Config::max_receive_queue

use std::collections::VecDeque;

use crate::event::{Event, Initiator};

use super::Connection;

/// The event queue and what counts against the receive bound.
#[derive(Default)]
pub(super) struct Delivery {
    events: VecDeque<Event>,
    /// Events queued, plus messages and chunks handed out with
    /// `poll_event_held` and not released.
    held_events: usize,
    /// Their payload bytes.
    held_bytes: usize,
    /// Of the held events, those handed out and not released.
    lent: usize,
    /// Decoding stopped at the bound.
    pub(super) paused: bool,
    /// Data messages dropped after this side started closing, because the
    /// bound was reached.
    discarded: u64,
}

/// The payload bytes an event counts with.
fn weight(event: &Event) -> usize {
    match event {
        Event::Message(m) => m.len(),
        Event::Chunk(c) => c.data.len(),
        Event::Ping(p) | Event::Pong(p) => p.len(),
        _ => 0,
    }
}

fn is_data(event: &Event) -> bool {
    matches!(event, Event::Message(_) | Event::Chunk(_))
}

impl Connection {
    /// Queues an event for the application. After this side started the
    /// closing handshake, a data message that finds the bound reached is
    /// dropped (and counted) instead, so that the peer's Close, behind it,
    /// is still read: the application asked to close, and the bound holds.
    pub(super) fn emit(&mut self, event: Event) {
        if is_data(&event) && self.bound_reached() && self.closing_locally() {
            self.inbox.discarded += 1;
            return;
        }
        self.inbox.held_events += 1;
        self.inbox.held_bytes += weight(&event);
        self.inbox.events.push_back(event);
    }

    /// Either receive bound is reached.
    fn bound_reached(&self) -> bool {
        self.inbox.held_events >= self.config.max_receive_events.max(1)
            || self.inbox.held_bytes >= self.config.max_receive_queue.max(1)
    }

    /// This side sent (or queued) its Close.
    fn closing_locally(&self) -> bool {
        self.close.initiator == Some(Initiator::Local)
    }

    /// Whether decoding waits for the application: the bound is reached
    /// (and this side is not closing, see [`emit`](Self::emit)).
    pub(super) fn input_paused(&mut self) -> bool {
        if !self.inbox.paused && self.bound_reached() && !self.closing_locally() {
            self.inbox.paused = true;
        }
        self.inbox.paused
    }

    /// Decoding goes on once the application took the queue down to half of
    /// both bounds (or this side started closing), and a transport end seen
    /// meanwhile applies.
    pub(super) fn resume_input(&mut self) {
        if !self.inbox.paused {
            return;
        }
        let low = self.inbox.held_events <= self.config.max_receive_events / 2
            && self.inbox.held_bytes <= self.config.max_receive_queue / 2;
        if !low && !self.closing_locally() {
            return;
        }
        self.inbox.paused = false;
        self.process();
        if self.eof && !self.inbox.paused {
            self.on_eof();
        }
    }

    /// A protocol violation waits until the application took every event
    /// before it, so that its answers to them go out before the Close.
    pub(super) fn failure_ready(&self) -> bool {
        self.pending_failure.is_some() && self.inbox.events.is_empty() && self.inbox.lent == 0
    }

    fn take_event(&mut self, held: bool) -> Option<Event> {
        self.resume_input();
        if self.failure_ready() {
            self.apply_pending_failure();
        }
        let event = self.inbox.events.pop_front()?;
        if held && is_data(&event) {
            self.inbox.lent += 1;
        } else {
            self.inbox.held_events -= 1;
            self.inbox.held_bytes -= weight(&event);
        }
        Some(event)
    }

    /// The next event, if any. Taking it frees its place in the receive
    /// bound (see [`Config::max_receive_queue`](crate::Config::max_receive_queue)).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.take_event(false)
    }

    /// As [`poll_event`](Self::poll_event), for an adapter that hands
    /// messages on to another task: a [`Message`](Event::Message) or
    /// [`Chunk`](Event::Chunk) taken this way keeps counting against the
    /// receive bound until [`release`](Self::release) says the application
    /// has it. A protocol violation behind it waits for that too (bounded
    /// by the close timeout).
    #[must_use]
    pub fn poll_event_held(&mut self) -> Option<Event> {
        self.take_event(true)
    }

    /// The application took `messages` messages or chunks of `bytes` payload
    /// bytes in all, of those handed out by
    /// [`poll_event_held`](Self::poll_event_held): their place in the
    /// receive bound is free again, and decoding may resume (drain
    /// [`poll_event`](Self::poll_event) afterwards).
    pub fn release(&mut self, messages: usize, bytes: usize) {
        let messages = messages.min(self.inbox.lent);
        self.inbox.lent -= messages;
        self.inbox.held_events -= messages.min(self.inbox.held_events);
        self.inbox.held_bytes -= bytes.min(self.inbox.held_bytes);
        self.resume_input();
    }

    /// Whether the connection waits for [`release`](Self::release) to go
    /// on: decoding paused at the receive bound, or a protocol violation
    /// behind messages not yet released. An adapter that releases lazily
    /// must release (wake whatever does) when this is true.
    #[must_use]
    pub fn awaits_release(&self) -> bool {
        self.inbox.lent > 0
            && (self.inbox.paused
                || (self.pending_failure.is_some() && self.inbox.events.is_empty()))
    }

    /// Whether [`poll_event`](Self::poll_event) has something to report,
    /// or is to be called once more: decoding paused at the receive bound
    /// and the application has taken every event since, so the next call
    /// decodes on (the message taken last is then no longer counted).
    #[must_use]
    pub fn has_events(&self) -> bool {
        !self.inbox.events.is_empty()
            || self.failure_ready()
            || (self.inbox.paused && self.inbox.lent == 0)
    }

    /// Data messages dropped because they arrived, after this side had
    /// started closing, while the receive bound was reached.
    #[must_use]
    pub fn discarded_messages(&self) -> u64 {
        self.inbox.discarded
    }
}
