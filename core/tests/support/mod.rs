//! Helpers of the core's integration tests: the `Pair` harness (shared
//! with the benches and fuzz targets, in `wharf_core::pair`) and raw frames.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub use wharf_core::pair::{closed, messages, rng, Filter, Pair};
use wharf_core::{CloseInfo, Event};

/// Builds a raw frame as a client would send it (masked with `key`).
pub fn client_frame(first_byte: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0x80);
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Builds a raw frame as a server would send it (unmasked).
pub fn server_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0);
    out.extend_from_slice(payload);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize, mask_bit: u8) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Decodes the frames in `bytes` as (first byte, unmasked payload).
pub fn parse_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let b0 = bytes[0];
        let masked = bytes[1] & 0x80 != 0;
        let mut len = (bytes[1] & 0x7F) as usize;
        let mut pos = 2;
        if len == 126 {
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
            pos = 10;
        }
        let key = if masked {
            let k: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
            pos += 4;
            Some(k)
        } else {
            None
        };
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push((b0, payload));
        bytes = &bytes[pos + len..];
    }
    assert!(bytes.is_empty(), "trailing partial frame");
    frames
}

/// Feeds `bytes` to the (open) server of `p` as if its client sent them;
/// returns the server's Closed event and the frames it wrote back, and
/// checks that the failed connection is finished once drained.
pub fn server_fails_on(mut p: Pair, bytes: &[u8]) -> (CloseInfo, Vec<(u8, Vec<u8>)>) {
    let now = p.now;
    p.server.handle_input(now, bytes);
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    let info = closed(&events)
        .unwrap_or_else(|| panic!("server did not close: {events:?}"))
        .clone();
    assert!(p.server.is_closed());
    assert!(
        p.server.is_finished(),
        "a failed connection is finished once drained"
    );
    (info, parse_frames(&out))
}
