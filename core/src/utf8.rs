//! Incremental UTF-8 validation across fragment boundaries.
//!
//! §8.1: a text message must be valid UTF-8 as a whole, and §5.6 allows a
//! text message to be split into frames anywhere, even inside a code point;
//! Autobahn (6.x) expects an endpoint to fail fast, on the first byte that
//! rules validity out rather than at the end of the message.

/// The bytes fed so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Error;

/// Validates a stream of chunks; fails as soon as a byte rules validity out.
///
/// Holds the incomplete sequence (at most 3 bytes) left at the end of the last
/// chunk and completes it with the first bytes of the next one; everything else
/// goes through `simdutf8`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// `partial[..partial_len]` is an incomplete, still possible sequence.
    partial: [u8; 4],
    /// 0..=3.
    partial_len: u8,
}

/// The length of the sequence that `lead` starts, for a lead byte that can
/// start a multi-byte sequence (RFC 3629 §4); 1 for anything else.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// Validates the next chunk of the stream.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] as soon as the bytes fed so far (since the last
    /// [`finish`](Self::finish)) cannot be the start of valid UTF-8: an invalid
    /// byte, an overlong form, a surrogate or a code point above U+10FFFF, even
    /// when its sequence is cut off at the end of `chunk`. An incomplete but
    /// still possible sequence at the end is not an error; see
    /// [`pending`](Self::pending). After an error the validator must be reset
    /// with `finish` (or dropped) before reuse.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let mut rest = chunk;
        let held = usize::from(self.partial_len);
        if held > 0 {
            // Complete the held sequence with the first bytes of this chunk.
            let need = sequence_len(self.partial[0]).saturating_sub(held);
            let take = need.min(rest.len());
            let (head, tail) = rest.split_at(take);
            let total = held + take;
            let slot = self.partial.get_mut(held..total).ok_or(Utf8Error)?;
            slot.copy_from_slice(head);
            let seq = self.partial.get(..total).ok_or(Utf8Error)?;
            match std::str::from_utf8(seq) {
                Ok(_) => {
                    self.partial_len = 0;
                    rest = tail;
                }
                Err(e) if e.error_len().is_none() && tail.is_empty() => {
                    // Still incomplete, and the chunk is used up.
                    self.partial_len = total as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        match simdutf8::compat::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // `None` means the input ends inside a sequence that is valid so
                // far (at most 3 bytes, as std documents).
                let tail = rest.get(e.valid_up_to()..).ok_or(Utf8Error)?;
                let slot = self.partial.get_mut(..tail.len()).ok_or(Utf8Error)?;
                slot.copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the stream (the end of a text message) and resets the validator
    /// for the next one.
    ///
    /// # Errors
    ///
    /// [`Utf8Error`] when the stream ends inside a sequence
    /// ([`pending`](Self::pending) is not 0).
    pub(crate) fn finish(&mut self) -> Result<(), Utf8Error> {
        let pending = self.partial_len;
        *self = Self::default();
        if pending == 0 {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// How many bytes at the end of what was fed form an incomplete (but still
    /// possible) sequence (0..=3). The bytes before them are valid UTF-8 on
    /// their own, so a caller that hands out text incrementally can deliver
    /// everything but the last `pending()` bytes.
    pub(crate) fn pending(&self) -> usize {
        usize::from(self.partial_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the validator must say after seeing `prefix`: `Some(pending)` when
    /// it can still become valid UTF-8, `None` when it cannot.
    fn oracle(prefix: &[u8]) -> Option<usize> {
        match std::str::from_utf8(prefix) {
            Ok(_) => Some(0),
            Err(e) if e.error_len().is_none() => Some(prefix.len() - e.valid_up_to()),
            Err(_) => None,
        }
    }

    /// Feeds `input` cut at `cuts` and checks every step against the oracle,
    /// then checks the whole against `std::str::from_utf8`.
    fn check_split(input: &[u8], cuts: &[usize]) {
        let mut v = Utf8Validator::default();
        let mut start = 0;
        let mut failed = false;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let got = v.feed(&input[start..end]);
            match oracle(&input[..end]) {
                Some(p) => {
                    assert_eq!(got, Ok(()), "{input:02x?} cut at {cuts:?}, upto {end}");
                    assert_eq!(v.pending(), p, "{input:02x?} cut at {cuts:?}");
                }
                None => {
                    assert_eq!(got, Err(Utf8Error), "{input:02x?} cut at {cuts:?}");
                    failed = true;
                    break;
                }
            }
            start = end;
        }
        let whole_ok = !failed && v.finish().is_ok();
        assert_eq!(
            whole_ok,
            std::str::from_utf8(input).is_ok(),
            "{input:02x?} cut at {cuts:?}"
        );
    }

    fn tricky_inputs() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!".to_vec(),
            "κόσμε".as_bytes().to_vec(),
            "€𝄞\u{10FFFF}\u{FFFF}\u{800}\u{7FF}\u{80}\u{7F}"
                .as_bytes()
                .to_vec(),
            // Surrogates.
            vec![0xED, 0xA0, 0x80],
            vec![0xED, 0xBF, 0xBF],
            b"a\xED\xA0\x80b".to_vec(),
            vec![0xED, 0x9F, 0xBF], // U+D7FF, just below the surrogates
            // Overlongs.
            vec![0xC0, 0x80],
            vec![0xC1, 0xBF],
            vec![0xE0, 0x80, 0x80],
            vec![0xE0, 0x9F, 0xBF],
            vec![0xF0, 0x80, 0x80, 0x80],
            vec![0xF0, 0x8F, 0xBF, 0xBF],
            // Above U+10FFFF and bytes that never appear.
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xF4, 0x8F, 0xBF, 0xBF],
            vec![0xF5, 0x80, 0x80, 0x80],
            vec![0xF8, 0x88, 0x80, 0x80, 0x80],
            vec![0xFE],
            vec![0xFF],
            // Lone continuation bytes.
            vec![0x80],
            vec![0xBF],
            b"ab\x80cd".to_vec(),
            vec![0xCE, 0xBA, 0x80],
            // Truncated sequences at the end, or in the middle.
            vec![0xCE],
            vec![0xE2, 0x82],
            vec![0xF0, 0x9D, 0x84],
            b"ok\xE2\x82".to_vec(),
            b"\xE2\x82ok".to_vec(),
            b"\xF0\x9D\x84 ".to_vec(),
            vec![0xCE, 0xCE, 0xBA],
        ];
        // Autobahn 6.4.x: valid text, then an invalid byte in a later fragment.
        let mut s = "κόσμε".as_bytes().to_vec();
        s.extend_from_slice(&[0xED, 0xA0, 0x80]);
        s.extend_from_slice(b"edited");
        v.push(s);
        // Long enough to take simdutf8's vector path, errors on both sides of it.
        let mut long = "ascii and ünïcödé 𝄞 ".repeat(8).into_bytes();
        v.push(long.clone());
        long.push(0xF4);
        long.push(0x90);
        v.push(long.clone());
        let mut long2 = vec![b'x'; 70];
        long2.extend_from_slice("€".as_bytes());
        long2.extend_from_slice(&[b'y'; 70]);
        long2.push(0xE0);
        v.push(long2);
        v
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        for input in tricky_inputs() {
            check_split(&input, &[]);
            for a in 0..=input.len() {
                check_split(&input, &[a]);
            }
        }
    }

    #[test]
    fn agrees_with_std_at_every_pair_of_splits() {
        for input in tricky_inputs().into_iter().filter(|i| i.len() <= 64) {
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    check_split(&input, &[a, b]);
                }
            }
        }
    }

    #[test]
    fn one_byte_per_chunk() {
        for input in tricky_inputs() {
            let cuts: Vec<usize> = (1..input.len()).collect();
            check_split(&input, &cuts);
        }
    }

    #[test]
    fn fail_fast() {
        for bad in [
            &[0xED, 0xA0][..],
            &[0xE0, 0x80],
            &[0xF0, 0x80],
            &[0xF4, 0x90],
            &[0xC0],
            &[0xC1],
            &[0xF5],
            &[0xFF],
            &[0x80],
        ] {
            let mut v = Utf8Validator::default();
            assert_eq!(v.feed(bad), Err(Utf8Error), "{bad:02x?}");
            // Also when the first byte came in an earlier chunk.
            if bad.len() == 2 {
                let mut v = Utf8Validator::default();
                assert_eq!(v.feed(&bad[..1]), Ok(()));
                assert_eq!(v.pending(), 1);
                assert_eq!(v.feed(&bad[1..]), Err(Utf8Error), "{bad:02x?}");
            }
        }
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xCE]), Ok(()));
        assert_eq!(v.pending(), 1);
        assert_eq!(v.feed(&[0xBA]), Ok(()));
        assert_eq!(v.pending(), 0);
    }

    #[test]
    fn pending_and_finish() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ab\xF0"), Ok(()));
        assert_eq!(v.pending(), 1);
        assert_eq!(v.feed(b"\x9D"), Ok(()));
        assert_eq!(v.pending(), 2);
        assert_eq!(v.feed(b""), Ok(()));
        assert_eq!(v.pending(), 2);
        assert_eq!(v.feed(b"\x84"), Ok(()));
        assert_eq!(v.pending(), 3);
        assert_eq!(v.feed(b"\x9E"), Ok(()));
        assert_eq!(v.pending(), 0);
        assert_eq!(v.finish(), Ok(()));

        // finish fails on an incomplete sequence, and resets for the next message.
        assert_eq!(v.feed(b"\xE2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(Utf8Error));
        assert_eq!(v.pending(), 0);
        assert_eq!(v.feed(b"fresh"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    /// Tiny deterministic xorshift64.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn random_streams_agree_with_std() {
        // Bytes drawn mostly from ones that matter at sequence boundaries.
        const ALPHABET: [u8; 24] = [
            b'a', b' ', 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1,
            0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF, 0xCE,
        ];
        let pieces: Vec<Vec<u8>> = ["a", "é", "€", "𝄞", "\u{10FFFF}", "\u{D7FF}", "\u{E000}"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..4000 {
            let mut input = Vec::new();
            let n = rng.next() % 12;
            for _ in 0..n {
                let r = rng.next();
                if r & 3 == 0 {
                    input.push(ALPHABET[(r >> 8) as usize % ALPHABET.len()]);
                } else {
                    input.extend_from_slice(&pieces[(r >> 8) as usize % pieces.len()]);
                }
            }
            let mut cuts: Vec<usize> = (0..rng.next() % 4)
                .map(|_| (rng.next() as usize) % (input.len() + 1))
                .collect();
            cuts.sort_unstable();
            check_split(&input, &cuts);
        }
    }
}
