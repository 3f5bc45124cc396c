//! Incremental UTF-8 validation across fragment boundaries. SKELETON.

/// The bytes fed so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Error;

/// Validates a stream of chunks; fails as soon as a byte rules validity out.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// Validates the next chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let _ = chunk;
        todo!()
    }
    /// Ends the stream: fails if an incomplete sequence remains.
    pub(crate) fn finish(&mut self) -> Result<(), Utf8Error> {
        todo!()
    }
    /// How many bytes at the end of what was fed form an incomplete sequence (0..=3).
    pub(crate) fn pending(&self) -> usize {
        todo!()
    }
}
