//! Payload masking (RFC 6455 §5.3).
//!
//! Octet `i` of the payload is XORed with octet `i % 4` of the masking key.
//! Because a payload may arrive (or be sent) in pieces, both functions take the
//! position of the first byte within the payload as `offset`.
//!
//! Safe Rust only: the key is rotated to `offset` and repeated to 64 bytes,
//! XORed over 64-byte blocks (the compiler vectorises that loop), then as a
//! `u64` over the 8-byte words left; the tail of fewer than 8 bytes is done
//! byte by byte.

/// The key rotated to `offset` and repeated twice: byte `i` of the result is
/// `key[(offset + i) % 4]`.
fn key_pattern(key: [u8; 4], offset: usize) -> [u8; 8] {
    // Little-endian: key[0] is the low byte, so rotating right by whole bytes
    // brings key[offset % 4] to the front. `offset % 4 * 8` is at most 24.
    let shift = (offset % 4 * 8) as u32;
    let k = u32::from_le_bytes(key).rotate_right(shift).to_le_bytes();
    [k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]
}

/// XORs `buf` in place with `key`, byte `i` of `buf` using `key[(offset + i) % 4]`
/// (§5.3). Masking twice with the same key and offset restores the input.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let pattern = key_pattern(key, offset);
    let mut rest = buf;
    if rest.len() >= 64 {
        // 64-byte blocks first: four 16-byte vector XORs per block where
        // the word loop below does two (a block is a multiple of 8 bytes,
        // so the key's phase after each is unchanged).
        let mut block_key = [0u8; 64];
        for k in block_key.chunks_exact_mut(8) {
            k.copy_from_slice(&pattern);
        }
        let mut blocks = rest.chunks_exact_mut(64);
        for block in &mut blocks {
            for (b, k) in block.iter_mut().zip(block_key.iter()) {
                *b ^= *k;
            }
        }
        rest = blocks.into_remainder();
    }
    let word_key = u64::from_ne_bytes(pattern);
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        // `chunks_exact_mut(8)` yields 8-byte slices, so the lengths match.
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ word_key).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, hence at key phase 0 of `pattern`.
    for (b, k) in words.into_remainder().iter_mut().zip(pattern.iter()) {
        *b ^= *k;
    }
}

/// Appends `src` masked with `key` (starting at key position `offset % 4`) to
/// `dst` (§5.3): the bytes appended equal `src` after
/// `apply_mask(src, key, offset)`. Reserves once, copies, then masks in place.
pub(crate) fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    let start = dst.len();
    crate::copy::append(dst, src);
    if let Some(tail) = dst.get_mut(start..) {
        apply_mask(tail, key, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    fn sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_hello() {
        // §5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        apply_mask(&mut buf, KEY, 0);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut buf, KEY, 0);
        assert_eq!(&buf, b"Hello");
    }

    #[test]
    fn apply_matches_naive() {
        for len in 0..=200 {
            for offset in 0..8 {
                let mut fast = sample(len, offset as u8);
                let mut slow = fast.clone();
                apply_mask(&mut fast, KEY, offset);
                naive(&mut slow, KEY, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn extend_matches_naive() {
        for len in 0..=200 {
            for offset in 0..8 {
                let src = sample(len, 7);
                let mut want = src.clone();
                naive(&mut want, KEY, offset);
                let mut dst = b"prefix".to_vec();
                extend_masked(&mut dst, &src, KEY, offset);
                assert_eq!(&dst[..6], b"prefix");
                assert_eq!(&dst[6..], &want[..], "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unaligned_sub_slice() {
        let mut whole = sample(300, 3);
        let mut want = whole.clone();
        for start in 1..8 {
            let end = start + 157;
            apply_mask(&mut whole[start..end], KEY, start);
            naive(&mut want[start..end], KEY, start);
            assert_eq!(whole, want, "start {start}");
        }
        let src = sample(300, 9);
        for start in 1..8 {
            let mut dst = Vec::new();
            extend_masked(&mut dst, &src[start..], KEY, 5);
            let mut want = src[start..].to_vec();
            naive(&mut want, KEY, 5);
            assert_eq!(dst, want);
        }
    }

    #[test]
    fn split_payload_with_offsets() {
        // Masking a payload in pieces, each with its offset, equals masking it whole.
        let src = sample(1000, 1);
        let mut whole = src.clone();
        apply_mask(&mut whole, KEY, 0);
        let mut pieces = src.clone();
        let mut at = 0;
        for step in [1usize, 3, 33, 64, 7, 500] {
            let end = (at + step).min(pieces.len());
            apply_mask(&mut pieces[at..end], KEY, at);
            at = end;
        }
        apply_mask(&mut pieces[at..], KEY, at);
        assert_eq!(pieces, whole);
    }
}
