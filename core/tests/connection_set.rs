//! A server's connections in one `ConnectionSet`, on a simulated clock:
//! events in turns, the connection limit, deadlines, a graceful shutdown
//! with 1001, and ids that go stale.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_core::{
    Accept, ClientRequest, CloseCode, Config, ConnId, Connection, ConnectionSet, Event, Message,
};

/// Clients in memory, each wired to one connection of the set.
struct Net {
    set: ConnectionSet,
    clients: Vec<(Connection, ConnId)>,
    now: Instant,
}

impl Net {
    fn new(max: usize) -> Net {
        Net {
            set: ConnectionSet::new(Arc::new(Config::default()), None, max),
            clients: Vec::new(),
            now: Instant::now(),
        }
    }

    /// A client and its server connection, not yet open.
    fn join(&mut self) -> usize {
        let id = self.set.insert(self.now).expect("room");
        let request = ClientRequest::new("ws://127.0.0.1/").expect("url");
        let client = Connection::client(Arc::new(Config::default()), &request, None, self.now)
            .expect("client");
        self.clients.push((client, id));
        self.clients.len() - 1
    }

    /// Moves bytes both ways until neither side has any, accepting every
    /// upgrade request; the server's events other than requests are left
    /// in the set.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for (client, id) in &mut self.clients {
                let mut buf = Vec::new();
                while client.poll_transmit(&mut buf) > 0 {}
                if let Some(conn) = self.set.get_mut(*id) {
                    if !buf.is_empty() {
                        conn.handle_input(self.now, &buf);
                        moved = true;
                    }
                    // Before Open the only event is the upgrade request.
                    if !conn.is_open() && !conn.is_closed() && conn.has_events() {
                        let event = conn.poll_event();
                        assert!(matches!(event, Some(Event::Request(_))), "{event:?}");
                        conn.accept(Accept::default()).expect("accept");
                    }
                    let mut out = Vec::new();
                    while conn.wants_write() && conn.poll_transmit(&mut out) > 0 {}
                    if !out.is_empty() {
                        client.handle_input(self.now, &out);
                        moved = true;
                    }
                }
                self.set.update(*id, false);
            }
            if !moved {
                return;
            }
        }
        panic!("the connections kept talking");
    }

    fn send(&mut self, client: usize, text: &str) {
        self.clients[client]
            .0
            .send(Message::text(text.to_owned()))
            .expect("queued");
    }

    /// Events from the set in the order of their turns: (client, text).
    fn take_messages(&mut self) -> Vec<(usize, String)> {
        let mut got = Vec::new();
        while let Some(id) = self.set.next_ready() {
            let conn = self.set.get_mut(id).expect("live");
            if let Some(Event::Message(m)) = conn.poll_event() {
                let client = self.clients.iter().position(|(_, c)| *c == id).unwrap();
                got.push((client, m.as_text().expect("text").to_owned()));
            }
            self.set.update(id, false);
        }
        got
    }
}

#[test]
fn connections_with_events_report_them_in_turns() {
    let mut net = Net::new(10);
    let (a, b) = (net.join(), net.join());
    net.pump();
    for i in 0..3 {
        net.send(a, &format!("a{i}"));
    }
    net.send(b, "b0");
    net.pump();
    let got = net.take_messages();
    let order: Vec<_> = got.iter().map(|(_, t)| t.as_str()).collect();
    // a had three waiting, b one: b's comes second, not last.
    assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    assert_eq!(got[1].0, b);
    assert!(net.set.next_ready().is_none());
}

#[test]
fn the_limit_holds_new_connections_until_one_is_gone() {
    let mut net = Net::new(2);
    let a = net.join();
    net.join();
    assert!(!net.set.has_room());
    assert!(net.set.insert(net.now).is_err());
    assert_eq!(net.set.len(), 2);
    net.pump();
    // a closes; once the closing handshake is done its slot is free.
    let id = net.clients[a].1;
    net.clients[a]
        .0
        .close(CloseCode::NORMAL, "bye")
        .expect("close");
    net.pump();
    let closed = std::iter::from_fn(|| net.set.get_mut(id).and_then(|c| c.poll_event()))
        .any(|e| matches!(e, Event::Closed(_)));
    assert!(closed);
    assert!(net.set.update(id, true), "removed");
    assert!(net.set.get(id).is_none(), "the id is stale");
    assert!(net.set.has_room());
    // The slot is reused under a new id.
    let again = net.set.insert(net.now).expect("room");
    assert_eq!(again.index(), id.index());
    assert_ne!(again, id);
}

#[test]
fn the_earliest_deadline_is_due_first_and_a_silent_peer_is_dropped() {
    let mut net = Net::new(10);
    let t0 = net.now;
    let silent = net.set.insert(t0).expect("room");
    net.now = t0 + Duration::from_secs(1);
    let later = net.set.insert(net.now).expect("room");
    // The handshake timeout (10 s) of the first comes first.
    let first = net.set.poll_timeout().expect("a deadline");
    assert_eq!(first, t0 + Config::default().handshake_timeout);
    assert!(net.set.poll_due(first - Duration::from_millis(1)).is_none());
    assert_eq!(net.set.poll_due(first), Some(silent));
    assert!(net.set.poll_due(first).is_none(), "one due at a time");
    // Its handshake timed out: once its event is taken it is removed.
    net.set.update(silent, false);
    assert_eq!(net.set.next_ready(), Some(silent));
    let event = net.set.get_mut(silent).and_then(|c| c.poll_event());
    assert!(matches!(event, Some(Event::Closed(_))), "{event:?}");
    let mut out = Vec::new();
    while let Some(conn) = net.set.get_mut(silent) {
        if !conn.wants_write() || conn.poll_transmit(&mut out) == 0 {
            break;
        }
    }
    assert!(net.set.update(silent, true));
    assert_eq!(net.set.len(), 1);
    assert_eq!(
        net.set.poll_timeout(),
        Some(net.now + Config::default().handshake_timeout)
    );
    assert!(net.set.get(later).is_some());
}

#[test]
fn shutdown_closes_every_connection_with_1001_and_admits_no_more() {
    let mut net = Net::new(10);
    let (a, b) = (net.join(), net.join());
    net.pump();
    net.set.shutdown();
    assert!(!net.set.has_room());
    assert!(net.set.insert(net.now).is_err());
    net.pump();
    for client in [a, b] {
        let conn = &mut net.clients[client].0;
        let closed = std::iter::from_fn(|| conn.poll_event()).find_map(|e| match e {
            Event::Closed(info) => Some(info),
            _ => None,
        });
        assert_eq!(
            closed.expect("closed").code,
            CloseCode::GOING_AWAY,
            "client {client}"
        );
    }
    // The server side reports its Closed; then each connection goes.
    let ids: Vec<_> = net.set.ids().collect();
    for id in ids {
        while net.set.get_mut(id).and_then(|c| c.poll_event()).is_some() {}
        assert!(net.set.update(id, true));
    }
    assert!(net.set.is_empty());
}
