//! permessage-deflate (RFC 7692) against no compression in the same run: a
//! client sends JSON messages to a server over an in-memory wire, and the
//! bench measures payload bytes per second through send → frame → decode →
//! event. Prints the wire size of each setting once, to read the ratio next
//! to the throughput.
//!
//! Run with `cargo bench -p wharf-core --bench deflate`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use wharf_core::{Config, Connection, DeflateConfig, Message};

/// Market-data-like JSON lines: similar, never identical.
fn ticks(len: usize, seed: usize) -> String {
    let mut s = String::with_capacity(len + 100);
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"e\":\"trade\",\"s\":\"BTC-USD\",\"t\":{},\"p\":\"{}.{:02}\",\"q\":\"0.{:04}\",\"m\":{}}}\n",
            1_700_000_000_000u64 + i as u64 * 37,
            60_000 + (i * 7919) % 500,
            (i * 31) % 100,
            (i * 7) % 10_000,
            i % 3 == 0
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

/// An open client/server pair with `config`.
fn pair(config: Config) -> (Connection, Connection) {
    let config = Arc::new(config);
    wharf_core::pair::open(config.clone(), config, None, None, Instant::now())
}

/// Sends `msgs` client → server; returns the wire bytes.
fn run(
    client: &mut Connection,
    server: &mut Connection,
    msgs: &[Message],
    wire: &mut Vec<u8>,
) -> usize {
    let now = Instant::now();
    let mut bytes = 0;
    for m in msgs {
        client.send(m.clone()).expect("room");
        while client.poll_transmit(wire) > 0 {}
        bytes += wire.len();
        server.handle_input(now, wire);
        wire.clear();
        while let Some(e) = server.poll_event() {
            black_box(e);
        }
    }
    bytes
}

fn settings() -> Vec<(&'static str, Config)> {
    let mut out = vec![("off", Config::default())];
    for (name, level, bits) in [("level1", 1, 15), ("level6", 6, 15), ("level1-w12", 1, 12)] {
        let mut d = DeflateConfig::default();
        d.level = level;
        d.max_window_bits = bits;
        let mut c = Config::default();
        c.deflate = Some(d);
        out.push((name, c));
    }
    out
}

fn throughput(c: &mut Criterion) {
    for (group, len, count) in [
        ("ticks-256B", 256usize, 256usize),
        ("ticks-64KiB", 64 << 10, 4),
    ] {
        let msgs: Vec<Message> = (0..count)
            .map(|i| Message::text(ticks(len, i * 1000)))
            .collect();
        let total: usize = msgs.iter().map(Message::len).sum();
        let mut g = c.benchmark_group(format!("deflate/{group}"));
        g.throughput(Throughput::Bytes(total as u64));
        for (name, config) in settings() {
            let (mut client, mut server) = pair(config);
            let mut wire = Vec::new();
            let sent = run(&mut client, &mut server, &msgs, &mut wire);
            println!("{group} {name}: {total} payload bytes -> {sent} wire bytes");
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| run(&mut client, &mut server, &msgs, &mut wire));
            });
        }
        g.finish();
    }
}

/// Private, so the undocumented `pub fn` that `criterion_group!` generates
/// stays out of the public API lint.
mod group {
    criterion::criterion_group!(benches, super::throughput);
}

criterion_main!(group::benches);
