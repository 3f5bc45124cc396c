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

/// `Vec<u8>` and `BytesMut` have the same three methods under the same
/// names, but no trait in common that has them all.
macro_rules! impl_append {
    ($($buffer:ty),*) => {$(
        impl Append for $buffer {
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
    )*};
}

impl_append!(Vec<u8>, BytesMut);

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

    /// Appends `len` bytes to `dst` from a source placed `rel` bytes before
    /// the destination's end modulo 4 KiB, and checks what arrived.
    fn check<B: Append + AsRef<[u8]>>(dst: &mut B, len: usize, rel: usize) {
        let src: Vec<u8> = (0..len + 8192).map(|i| (i * 31 % 251) as u8).collect();
        dst.reserve_more(len);
        let end = dst.end_addr();
        let at = end.wrapping_sub(src.as_ptr() as usize).wrapping_sub(rel) % 4096;
        let part = &src[at..at + len];
        assert_eq!(end.wrapping_sub(part.as_ptr() as usize) % 4096, rel);
        let before = dst.as_ref().to_vec();
        append(dst, part);
        let after = dst.as_ref();
        assert_eq!(&after[..before.len()], &before[..], "len {len}, rel {rel}");
        assert_eq!(&after[before.len()..], part, "len {len}, rel {rel}");
    }

    #[test]
    fn appends_every_byte_in_order_on_both_paths() {
        for len in [0, 1, PIECE, PIECE + 1, 3 * PIECE + 77] {
            // 0, 64, 2048: one copy; 1, 8, 31, 63: in pieces (when longer
            // than one piece).
            for rel in [0, 1, 8, 31, 63, 64, 2048] {
                check(&mut b"head".to_vec(), len, rel);
                check(&mut BytesMut::from(&b"head"[..]), len, rel);
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
