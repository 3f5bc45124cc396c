//! Payload masking (RFC 6455 §5.3). SKELETON: to be implemented.

/// XORs `buf` in place with `key`, byte `i` of `buf` using `key[(offset + i) % 4]`.
pub(crate) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let _ = (buf, key, offset);
    todo!()
}

/// Appends `src` masked with `key` (starting at key position `offset % 4`) to `dst`.
pub(crate) fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    let _ = (dst, src, key, offset);
    todo!()
}
