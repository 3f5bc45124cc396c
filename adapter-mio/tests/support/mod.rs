//! A loop on real sockets over 127.0.0.1 for the mio adapter's tests.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use wharf_core::{Accept, Event, Message};
use wharf_mio::{ClientEvent, ConnId, ReconnectingClient, WsServer};

/// One `Poll` with an optional echo server and any number of reconnecting clients.
pub struct Looper {
    pub poll: Poll,
    pub server: Option<WsServer>,
    pub clients: Vec<ReconnectingClient>,
    /// Everything the server reported.
    pub server_events: Vec<(ConnId, Event)>,
    /// Everything each client reported.
    pub client_events: Vec<Vec<ClientEvent>>,
    /// Server: echo messages back.
    pub echo: bool,
    events: Events,
}

impl Looper {
    pub fn new() -> Looper {
        Looper {
            poll: Poll::new().expect("poll"),
            server: None,
            clients: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            echo: true,
            events: Events::with_capacity(1024),
        }
    }

    pub fn set_server(&mut self, mut server: WsServer) {
        server
            .register(self.poll.registry())
            .expect("register server");
        self.server = Some(server);
    }

    pub fn add_client(&mut self, mut client: ReconnectingClient) -> usize {
        client.start(self.poll.registry(), Instant::now());
        self.clients.push(client);
        self.client_events.push(Vec::new());
        self.clients.len() - 1
    }

    /// One turn of the loop: poll (at most until the earliest deadline or
    /// 50 ms), dispatch, run timers, collect events.
    pub fn turn(&mut self) {
        let now = Instant::now();
        let mut deadline = self.server.as_ref().and_then(|s| s.poll_timeout());
        for c in &self.clients {
            deadline = [deadline, c.poll_timeout()].into_iter().flatten().min();
        }
        let wait = deadline
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .min(Duration::from_millis(50));
        self.poll.poll(&mut self.events, Some(wait)).expect("poll");
        let now = Instant::now();
        let registry = self.poll.registry();
        for event in self.events.iter() {
            if let Some(server) = self.server.as_mut() {
                if server.owns(event.token()) {
                    server.handle_event(registry, event, now);
                    continue;
                }
            }
            if let Some(c) = self.clients.iter_mut().find(|c| c.token() == event.token()) {
                c.handle_event(registry, event, now);
            }
        }
        if let Some(server) = self.server.as_mut() {
            server.handle_timeout(registry, now);
            while let Some((id, event)) = server.poll_event(registry) {
                match &event {
                    Event::Request(_) => {
                        server
                            .accept(registry, now, id, Accept::default())
                            .expect("accept");
                    }
                    Event::Message(m) if self.echo => {
                        server.send(registry, now, id, m.clone()).expect("echo");
                    }
                    _ => {}
                }
                self.server_events.push((id, event));
            }
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            c.handle_timeout(registry, now);
            while let Some(e) = c.poll_event(registry) {
                self.client_events[i].push(e);
            }
        }
    }

    /// Turns until `done` holds; panics after `limit`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Looper) -> bool) {
        let give_up = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < give_up,
                "condition not reached within {limit:?}"
            );
            self.turn();
        }
    }

    pub fn send(&mut self, client: usize, m: Message) {
        let now = Instant::now();
        self.clients[client]
            .send(self.poll.registry(), now, m)
            .expect("queue has room");
    }

    /// Messages client `i` received.
    pub fn received(&self, i: usize) -> Vec<Message> {
        self.client_events[i]
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn connects(&self, i: usize) -> usize {
        self.client_events[i]
            .iter()
            .filter(|e| matches!(e, ClientEvent::Connected { .. }))
            .count()
    }

    /// Messages the server received, in order.
    pub fn server_messages(&self) -> Vec<Message> {
        self.server_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Drops the server: its listener and every socket close at once.
    pub fn drop_server(&mut self) {
        self.server = None;
    }

    pub fn token(i: usize) -> Token {
        Token(i)
    }
}
