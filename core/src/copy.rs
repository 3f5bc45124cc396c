//! Appending bytes to a buffer without `memcpy`'s slow case on some
//! processors.
//!
//! glibc copies blocks larger than about 2 KiB with `rep movsb`. On AMD
//! processors with fast short `rep movsb` (FSRM; EPYC among them) that
//! instruction runs 30–50 times slower when the destination sits 1–31 bytes
//! past the source modulo 4 KiB, up to 4 times slower at 32–95, and 1.3–2
//! times slower than at its best offset at most others. Where a payload
//! lands in the connection's buffers depends on frame and record headers
//! (2–14 bytes, 5 for TLS) and on where the allocator put each buffer, so
//! without care a connection hits the slow case in one process and not in
//! the next. Copies of at most 2 KiB stay on glibc's vector loop, which
//! cares little about offsets, so larger blocks are copied as such pieces:
//! as fast as `rep movsb` at its best offset, faster than it on average,
//! and within 5 % of one copy at 1 MiB, where memory bounds both.
//!
//! `cargo bench -p wharf-core --bench frame -- append/` compares one
//! `memcpy` (`extend_from_slice`) with this module's `append` (`wharf`) for
//! 16 KiB at fixed offsets and stepping through all 4,096 offsets. On such a
//! processor: 7.8 µs against 0.54 µs at 8 bytes past the source, and
//! 0.62 µs against 0.43 µs stepping through every offset.

use std::io;

use bytes::BytesMut;

/// Copies of at most this many bytes stay on glibc's vector loop.
const PIECE: usize = 2048;

/// A growable byte buffer (`Vec<u8>`, `BytesMut`).
pub(crate) trait Append {
    /// Room for `additional` more bytes without reallocating.
    fn reserve_more(&mut self, additional: usize);
    /// Appends `src` (a `memcpy`).
    fn push_slice(&mut self, src: &[u8]);
}

/// `Vec<u8>` and `BytesMut` have the same two methods under the same
/// names, but no trait in common that has both.
macro_rules! impl_append {
    ($($buffer:ty),*) => {$(
        impl Append for $buffer {
            fn reserve_more(&mut self, additional: usize) {
                self.reserve(additional);
            }
            fn push_slice(&mut self, src: &[u8]) {
                self.extend_from_slice(src);
            }
        }
    )*};
}

impl_append!(Vec<u8>, BytesMut);

/// Appends `src` to `dst`: one copy up to 2 KiB, pieces of 2 KiB above.
pub(crate) fn append(dst: &mut impl Append, src: &[u8]) {
    if src.len() <= PIECE {
        dst.push_slice(src);
        return;
    }
    dst.reserve_more(src.len());
    for piece in src.chunks(PIECE) {
        dst.push_slice(piece);
    }
}

/// Copies `src` over the start of `dst` the same way; `dst` must be at
/// least as long.
fn copy_into(dst: &mut [u8], src: &[u8]) {
    for (to, from) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
        to[..from.len()].copy_from_slice(from);
    }
}

/// A byte slice read as `std::io::Read`, copying as `append` does (in
/// 2 KiB pieces): for handing bytes to a library that reads them into its
/// own buffer (rustls' `read_tls`), whose copy would otherwise be one
/// `memcpy`.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len());
        let (now, rest) = self.0.split_at(n);
        copy_into(buf, now);
        self.0 = rest;
        Ok(n)
    }
}

/// A `Vec<u8>` written as `std::io::Write`, appending as `append` does
/// (in 2 KiB pieces): for a library that writes into a caller's buffer
/// (rustls' `write_tls`).
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        append(self.0, buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        self.0.reserve(total);
        for buf in bufs {
            append(self.0, buf);
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<B: Append + AsRef<[u8]>>(dst: &mut B, src: &[u8]) {
        let before = dst.as_ref().to_vec();
        append(dst, src);
        let after = dst.as_ref();
        assert_eq!(&after[..before.len()], &before[..], "len {}", src.len());
        assert_eq!(&after[before.len()..], src, "len {}", src.len());
    }

    #[test]
    fn reads_and_writes_every_byte_in_order() {
        use std::io::{Read, Write};
        let src: Vec<u8> = (0..3 * PIECE + 77).map(|i| (i * 31 % 251) as u8).collect();
        // Read in uneven steps, one of them longer than a piece.
        let mut reader = Reader(&src);
        let mut got = vec![0u8; src.len() + 10];
        let mut have: usize = 0;
        for step in [1, PIECE + 3, 5, usize::MAX] {
            let end = have.saturating_add(step).min(got.len());
            have += reader.read(&mut got[have..end]).unwrap();
        }
        assert_eq!(have, src.len());
        assert_eq!(&got[..have], &src[..]);
        assert_eq!(reader.read(&mut got).unwrap(), 0);
        // Write whole, then vectored.
        let mut out = b"head".to_vec();
        let mut writer = Writer(&mut out);
        assert_eq!(writer.write(&src).unwrap(), src.len());
        let parts = [
            io::IoSlice::new(&src[..PIECE + 1]),
            io::IoSlice::new(&src[PIECE + 1..]),
        ];
        assert_eq!(writer.write_vectored(&parts).unwrap(), src.len());
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..4 + src.len()], &src[..]);
        assert_eq!(&out[4 + src.len()..], &src[..]);
    }

    #[test]
    fn appends_every_byte_in_order_in_one_copy_or_in_pieces() {
        let src: Vec<u8> = (0..4 * PIECE).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, PIECE, PIECE + 1, 3 * PIECE + 77] {
            // Sources at every alignment within a word.
            for at in 0..8 {
                check(&mut b"head".to_vec(), &src[at..at + len]);
                check(&mut BytesMut::from(&b"head"[..]), &src[at..at + len]);
            }
        }
    }
}
