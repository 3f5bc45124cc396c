//! Compression bombs: a compressed message that would inflate far beyond
//! `max_message_size` fails with 1009 having inflated at most the limit, and
//! many messages that each fit do not pile up inflated in the event queue.
//! (RFC 7692 leaves the limits to the implementation; §8 warns of the cost.)
//!
//! The heap is capped while the bomb goes off: an allocation beyond the cap
//! aborts this test process. One test in this file, so nothing else
//! allocates meanwhile.

mod support;

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use flate2::{Compress, Compression, FlushCompress};
use support::{parse_frames, server_frame, Pair};
use wharf_core::{CloseCode, Config, DeflateConfig, Error, Event, ProtocolError};

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const MIB: usize = 1 << 20;

/// Raw DEFLATE of 1 MiB of zeros, sync-flushed: a stretch that can be
/// repeated any number of times within one stream (it starts a new block,
/// ends byte-aligned, and refers back at most to the zeros before it).
fn mib_of_zeros() -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(64 * 1024);
    c.compress_vec(&vec![0u8; MIB], &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out
}

fn client_config() -> Config {
    let mut c = Config::default();
    c.deflate = Some(DeflateConfig::default());
    c.max_message_size = MIB;
    c
}

/// Runs `f` with the heap allowed to grow by at most `budget` bytes beyond
/// what is allocated now; returns how much it had grown by at the end.
fn capped<T>(budget: usize, f: impl FnOnce() -> T) -> (T, usize) {
    let base = HEAP.allocated();
    HEAP.set_limit(base + budget).expect("limit above use");
    let out = f();
    let grown = HEAP.allocated().saturating_sub(base);
    HEAP.set_limit(usize::MAX).expect("no limit");
    (out, grown)
}

#[test]
fn compression_bombs_end_in_1009_with_bounded_memory() {
    let mut p = Pair::plain(client_config());
    p.open();
    assert!(p.client.deflate().is_some());

    // 1. One message: 2 GiB of zeros in about 2 MB of payload (DEFLATE
    //    cannot do better than about 1:1030), one frame, delivered whole.
    let stretch = mib_of_zeros();
    let mut payload = stretch.repeat(2048);
    payload.truncate(payload.len() - 4); // the tail, as a sender strips it
    let frame = server_frame(0xC2, &payload);
    drop(payload);
    let now = p.now;
    let started = Instant::now();
    let ((), grown) = capped(frame.len() + 8 * MIB, || {
        p.client.handle_input(now, &frame);
    });
    let took = started.elapsed();
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    let info = support::closed(&events).expect("the client failed");
    assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(
        info.error,
        Some(Error::Protocol(ProtocolError::MessageTooLarge { max: MIB }))
    );
    let mut out = Vec::new();
    while p.client.poll_transmit(&mut out) > 0 {}
    let close = parse_frames_masked(&out);
    assert_eq!(close, Some(1009));
    assert!(
        grown < 4 * MIB,
        "the connection kept {grown} bytes after failing"
    );
    assert!(
        took < Duration::from_secs(20),
        "inflating stopped at the limit, not at 2 GiB ({took:?})"
    );
    drop(frame);

    // 2. The same bomb in 16 KiB reads: it fails as soon as the limit is
    //    passed, long before the end of the input.
    let mut p = Pair::plain(client_config());
    p.open();
    let mut payload = stretch.repeat(2048);
    payload.truncate(payload.len() - 4);
    let frame = server_frame(0xC2, &payload);
    drop(payload);
    let now = p.now;
    let (fed, _) = capped(8 * MIB, || {
        let mut fed = 0;
        for piece in frame.chunks(16 * 1024) {
            p.client.handle_input(now, piece);
            fed += piece.len();
            if fails(&mut p) {
                break;
            }
        }
        fed
    });
    assert!(p.client.is_closed());
    assert!(fed < 64 * 1024, "failed after {fed} bytes of input");
    drop(frame);

    // 3. Many messages that each fit, in one read: 256 messages of 512 KiB
    //    of zeros (128 MiB inflated) from about 130 KB of input. Decoding
    //    pauses while inflated data waits, so the queue never holds more
    //    than about one message beyond 256 KiB.
    let mut p = Pair::plain(client_config());
    p.open();
    let half = {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(64 * 1024);
        c.compress_vec(&vec![0u8; MIB / 2], &mut out, FlushCompress::Sync)
            .expect("deflate");
        out.truncate(out.len() - 4);
        out
    };
    let wire: Vec<u8> = (0..256).flat_map(|_| server_frame(0xC2, &half)).collect();
    let now = p.now;
    let mut delivered = 0usize;
    let mut peak = 0usize;
    let ((), _) = capped(wire.len() + 16 * MIB, || {
        let base = HEAP.allocated();
        p.client.handle_input(now, &wire);
        peak = peak.max(HEAP.allocated() - base);
        while let Some(e) = p.client.poll_event() {
            peak = peak.max(HEAP.allocated() - base);
            if let Event::Message(m) = e {
                assert_eq!(m.len(), MIB / 2);
                delivered += 1;
            }
        }
    });
    assert_eq!(delivered, 256);
    assert!(p.client.is_open());
    // The input copy, one message waiting, one being inflated, some slack.
    assert!(
        peak < wire.len() + 3 * MIB,
        "peak {peak} for {} bytes of input",
        wire.len()
    );
}

/// Takes the events; true once `Closed` came.
fn fails(p: &mut Pair) -> bool {
    let mut closed = false;
    while let Some(e) = p.client.poll_event() {
        if let Event::Closed(info) = e {
            assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG);
            closed = true;
        }
    }
    closed
}

/// The close code in the client's (masked) Close frame.
fn parse_frames_masked(out: &[u8]) -> Option<u16> {
    let frames = parse_frames(out);
    let close = frames.iter().find(|f| f.0 == 0x88)?;
    Some(u16::from_be_bytes([close.1[0], close.1[1]]))
}
