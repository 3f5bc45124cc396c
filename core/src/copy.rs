//! Appending bytes to a buffer without the slow path of `memcpy` on some
//! machines.
//!
//! glibc copies blocks larger than about 2 KiB with `rep movsb`. On AMD EPYC
//! processors with fast short `rep movsb` (FSRM, as in the machines this
//! project is measured on) that instruction runs some 30 times slower
//! (2.6 GB/s instead of 80 GB/s for 16 KiB) when the destination sits 1–15
//! bytes past the source modulo 4 KiB, and several times slower at 16–31.
//! Where a payload lands in the connection's buffers depends on frame and
//! record headers (2–14 bytes, 5 for TLS) and on where the allocator put
//! each buffer, so without care a connection hits that case in one process
//! and not in the next. Copying such blocks as several copies of at most
//! 2 KiB keeps glibc on its vector loop, which does not care.
//!
//! `cargo bench -p wharf-core --bench frame -- append/` measures both ways.

use bytes::BytesMut;

/// Copies of at most this many bytes stay on glibc's vector loop.
const PIECE: usize = 2048;

/// A growable byte buffer (`Vec<u8>`, `BytesMut`).
pub(crate) trait Append {
    /// Room for `additional` more bytes without reallocating.
    fn reserve_more(&mut self, additional: usize);
    /// The address the next appended byte goes to.
    fn end_addr(&self) -> usize;
    /// Appends `src` (a `memcpy`).
    fn push_slice(&mut self, src: &[u8]);
}

impl Append for Vec<u8> {
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
    fn end_addr(&self) -> usize {
        self.as_ptr() as usize + self.len()
    }
    fn push_slice(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
}

impl Append for BytesMut {
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
    fn end_addr(&self) -> usize {
        self.as_ptr() as usize + self.len()
    }
    fn push_slice(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
}

/// Appends `src` to `dst`: one copy, or pieces of at most 2 KiB when the
/// destination would sit 1–63 bytes past the source modulo 4 KiB (the
/// slow cases, with a margin).
pub(crate) fn append(dst: &mut impl Append, src: &[u8]) {
    if src.len() <= PIECE {
        dst.push_slice(src);
        return;
    }
    // Reserve first: the destination's address is final only then.
    dst.reserve_more(src.len());
    if slow_offset(dst.end_addr(), src.as_ptr() as usize) {
        for piece in src.chunks(PIECE) {
            dst.push_slice(piece);
        }
    } else {
        dst.push_slice(src);
    }
}

/// Whether `rep movsb` from `src` to `dst` may take its slow path.
fn slow_offset(dst: usize, src: usize) -> bool {
    matches!(dst.wrapping_sub(src) % 4096, 1..=63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_every_byte_in_order_at_every_relative_offset() {
        let src: Vec<u8> = (0..3 * PIECE + 77).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE, src.len() - 64] {
            // Both paths: some of these offsets are slow ones for the
            // allocator's addresses, some are not.
            for offset in 0..64 {
                let part = &src[offset..offset + len];
                let mut v: Vec<u8> = b"head".to_vec();
                append(&mut v, part);
                assert_eq!(&v[..4], b"head");
                assert_eq!(&v[4..], part, "Vec, len {len}, offset {offset}");
                let mut b = BytesMut::from(&b"head"[..]);
                append(&mut b, part);
                assert_eq!(&b[..4], b"head");
                assert_eq!(&b[4..], part, "BytesMut, len {len}, offset {offset}");
            }
        }
    }

    #[test]
    fn the_slow_offsets_are_just_past_the_source_modulo_4_kib() {
        let src = 1_000_000;
        let slow: Vec<usize> = (0..8192).filter(|&d| slow_offset(src + d, src)).collect();
        let expected: Vec<usize> = (1..=63).chain(4097..=4159).collect();
        assert_eq!(slow, expected);
        // The destination below the source, wrapping around.
        assert!(slow_offset(src - 4095, src));
        assert!(!slow_offset(src - 1, src));
        assert!(!slow_offset(0, src));
    }
}
