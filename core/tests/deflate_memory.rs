//! What permessage-deflate costs a connection in heap, measured with a
//! counting allocator, against the figures `DeflateConfig`'s docs state. One
//! test in this file, so nothing else allocates meanwhile.
//!
//! `cargo test -p wharf-core --test deflate_memory -- --nocapture` prints
//! the figures.

mod support;

use std::alloc::System;

use cap::Cap;
use std::sync::Arc;
use support::Pair;

use wharf_core::{ClientRequest, Config, Connection, DeflateConfig, Message};

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const KIB: usize = 1024;

/// The heap a connection holds: what dropping it frees.
fn client_heap(p: &mut Pair) -> usize {
    let request = ClientRequest::new("ws://localhost/").unwrap();
    let placeholder =
        Connection::client(Arc::new(Config::default()), &request, None, p.now).unwrap();
    let old = std::mem::replace(&mut p.client, placeholder);
    let before = HEAP.allocated();
    drop(old);
    before - HEAP.allocated()
}

/// The client connection's heap once open (`phase` 0), after sending one
/// compressed message (1), and after also receiving one (2).
fn footprint(deflate: Option<DeflateConfig>, phase: u8) -> usize {
    let mut config = Config::default();
    config.deflate = deflate;
    let msg = Message::text("0123456789abcdef".repeat(256));
    let mut p = Pair::plain(config);
    p.open();
    // Both sides' buffers settle with a first uncompressed exchange.
    p.client.send_uncompressed(msg.clone()).unwrap();
    p.server.send_uncompressed(msg.clone()).unwrap();
    p.drive();
    if phase >= 1 {
        p.client.send(msg.clone()).unwrap();
        p.drive();
    }
    if phase >= 2 {
        p.server.send(msg).unwrap();
        p.drive();
    }
    p.client_events.clear();
    client_heap(&mut p)
}

#[test]
fn memory_per_connection() {
    let plain = footprint(None, 2);
    println!("no deflate: {plain} bytes per client connection");
    let mut figures = Vec::new();
    for bits in [15u8, 12, 9] {
        let mut d = DeflateConfig::default();
        d.max_window_bits = bits;
        d.peer_max_window_bits = bits;
        let [idle, sent, both] = [0, 1, 2].map(|phase| footprint(Some(d.clone()), phase));
        println!(
            "deflate, {bits}-bit windows: open {idle} B, +compressor {} KiB, +decompressor {} KiB, \
             total {} KiB",
            (sent - idle) / KIB,
            (both - sent) / KIB,
            both / KIB
        );
        figures.push((bits, idle, sent, both));
    }
    for (bits, idle, _, both) in figures {
        // Nothing is allocated before the first compressed message.
        assert!(idle < plain + 1024, "{idle} vs {plain}");
        // The figures DeflateConfig's docs state.
        let limit = match bits {
            15 => 440,
            12 => 330,
            _ => 320,
        };
        assert!(both - plain < limit * KIB, "{bits} bits: {}", both - plain);
    }
}
