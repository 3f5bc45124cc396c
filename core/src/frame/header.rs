//! Frame header codec (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! The decoder fails fast: every rule that the bytes present can already decide
//! is checked before it asks for more input.

use crate::error::ProtocolError;

/// Longest possible header: 2 + 8 (length) + 4 (mask key).
pub(crate) const MAX_HEADER_LEN: usize = 14;

/// Largest payload a control frame may carry (§5.5), and largest length the
/// 7-bit length field encodes directly (§5.2).
const MAX_SHORT_LEN: u8 = 125;
/// 7-bit length code announcing a 16-bit extended length (§5.2).
const LEN_CODE_16: u8 = 126;
/// 7-bit length code announcing a 64-bit extended length (§5.2).
const LEN_CODE_64: u8 = 127;

/// Frame opcodes that RFC 6455 defines (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Close, Ping and Pong (§5.5): the opcodes with the high bit (0x8) set.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    /// The 4-bit wire value (§5.2): 0x0 continuation, 0x1 text, 0x2 binary,
    /// 0x8 close, 0x9 ping, 0xA pong.
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit wire value; `None` for the reserved values
    /// 0x3-0x7 and 0xB-0xF (§5.2) and for anything above 0xF.
    pub(crate) fn from_u8(v: u8) -> Option<OpCode> {
        match v {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }
}

/// A decoded or to-be-encoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    /// RSV1..RSV3 as the low 3 bits: 0b100 = RSV1, 0b010 = RSV2, 0b001 = RSV3.
    pub(crate) rsv: u8,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) payload_len: u64,
}

/// Decodes one header from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a header (short input is
/// never an error), or `Ok(Some((header, header_len)))`; the payload starts at
/// `buf[header_len..]`. Non-minimal length encodings are accepted.
///
/// `expect_masked` is true on the server side: §5.1 says every client frame is
/// masked and no server frame is. `allowed_rsv` holds the RSV bits that a
/// negotiated extension defines, in the layout of [`FrameHeader::rsv`].
///
/// # Errors
///
/// Each is reported as soon as the bytes present decide it, even when the
/// header is still incomplete:
///
/// - [`ProtocolError::ReservedBits`] (§5.2): an RSV bit is set that no
///   extension defines; carries the offending bits only.
/// - [`ProtocolError::ReservedOpcode`] (§5.2): opcode 0x3-0x7 or 0xB-0xF.
/// - [`ProtocolError::FragmentedControlFrame`] (§5.5): a control frame with
///   FIN clear.
/// - [`ProtocolError::UnmaskedClientFrame`] / [`ProtocolError::MaskedServerFrame`]
///   (§5.1): the MASK bit disagrees with `expect_masked`.
/// - [`ProtocolError::ControlFrameTooLong`] (§5.5): a control frame whose 7-bit
///   length is a 126/127 extended-length code; it carries that code, since the
///   extended length itself may not have arrived yet.
/// - [`ProtocolError::LengthTopBit`] (§5.2): a 64-bit length with its most
///   significant bit set.
pub(crate) fn decode_header(
    buf: &[u8],
    expect_masked: bool,
    allowed_rsv: u8,
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    // First byte: FIN, RSV1-3, opcode.
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x07;
    let bad_rsv = rsv & !allowed_rsv;
    if bad_rsv != 0 {
        return Err(ProtocolError::ReservedBits(bad_rsv));
    }
    let op_bits = b0 & 0x0F;
    let opcode = OpCode::from_u8(op_bits).ok_or(ProtocolError::ReservedOpcode(op_bits))?;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }

    // Second byte: MASK, 7-bit length.
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    match (expect_masked, masked) {
        (true, false) => return Err(ProtocolError::UnmaskedClientFrame),
        (false, true) => return Err(ProtocolError::MaskedServerFrame),
        _ => {}
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() && len7 > MAX_SHORT_LEN {
        return Err(ProtocolError::ControlFrameTooLong(u64::from(len7)));
    }

    // Extended payload length.
    let (payload_len, mut pos) = match len7 {
        LEN_CODE_16 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let mut be = [0u8; 2];
            be.copy_from_slice(bytes);
            (u64::from(u16::from_be_bytes(be)), 4)
        }
        LEN_CODE_64 => {
            // The top bit is decidable from the first length byte alone.
            match buf.get(2) {
                None => return Ok(None),
                Some(&hi) if hi & 0x80 != 0 => return Err(ProtocolError::LengthTopBit),
                Some(_) => {}
            }
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            (u64::from_be_bytes(be), 10)
        }
        short => (u64::from(short), 2),
    };

    // Masking key (§5.3).
    let mask = if masked {
        let Some(bytes) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        let mut key = [0u8; 4];
        key.copy_from_slice(bytes);
        pos += 4;
        Some(key)
    } else {
        None
    };

    Ok(Some((
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        pos,
    )))
}

/// Encodes `h` with the minimal length encoding (§5.2: 7-bit up to 125,
/// 16-bit up to 65535, 64-bit above) followed by the masking key when
/// `h.mask` is set; returns the header length.
///
/// Only the low 3 bits of `h.rsv` are used. A length with its top bit set
/// cannot be sent (§5.2) and no caller builds one; it is written as given.
pub(crate) fn encode_header(h: &FrameHeader, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    out[0] = (u8::from(h.fin) << 7) | ((h.rsv & 0x07) << 4) | h.opcode.to_u8();
    let mask_bit = if h.mask.is_some() { 0x80 } else { 0x00 };
    let mut pos = match h.payload_len {
        len @ 0..=125 => {
            // The match arm bounds `len` to 0..=125, so it fits in 7 bits.
            out[1] = mask_bit | len as u8;
            2
        }
        len @ 126..=0xFFFF => {
            out[1] = mask_bit | LEN_CODE_16;
            // The match arm bounds `len` to 16 bits.
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        len => {
            out[1] = mask_bit | LEN_CODE_64;
            out[2..10].copy_from_slice(&len.to_be_bytes());
            10
        }
    };
    if let Some(key) = h.mask {
        out[pos..pos + 4].copy_from_slice(&key);
        pos += 4;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` (a whole frame), checks the header, checks every prefix
    /// of the header asks for more input, and re-encodes it to the same bytes.
    fn roundtrip(wire: &[u8], expect_masked: bool) -> (FrameHeader, usize) {
        let (h, n) = decode_header(wire, expect_masked, 0)
            .expect("valid header")
            .expect("complete header");
        for cut in 0..n {
            assert_eq!(
                decode_header(&wire[..cut], expect_masked, 0),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        let mut out = [0u8; MAX_HEADER_LEN];
        let m = encode_header(&h, &mut out);
        assert_eq!(&out[..m], &wire[..n]);
        (h, n)
    }

    #[test]
    fn rfc_single_frame_unmasked_text() {
        // §5.7: a single-frame unmasked text message containing "Hello".
        let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = roundtrip(&wire, false);
        assert_eq!(n, 2);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: None,
                payload_len: 5
            }
        );
        assert_eq!(&wire[n..], b"Hello");
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        // §5.7: a single-frame masked text message containing "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = roundtrip(&wire, true);
        assert_eq!(n, 6);
        assert_eq!(h.opcode, OpCode::Text);
        assert!(h.fin);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
        let mut payload = wire[n..].to_vec();
        crate::frame::apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        // §5.7: a fragmented unmasked text message, "Hel" then "lo".
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let (h, n) = roundtrip(&first, false);
        assert!(!h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 3);
        assert_eq!(&first[n..], b"Hel");

        let second = [0x80, 0x02, 0x6c, 0x6f];
        let (h, n) = roundtrip(&second, false);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Continuation);
        assert_eq!(h.payload_len, 2);
        assert_eq!(&second[n..], b"lo");
    }

    #[test]
    fn rfc_ping_and_pong() {
        // §5.7: unmasked Ping with body "Hello".
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = roundtrip(&ping, false);
        assert_eq!(h.opcode, OpCode::Ping);
        assert!(h.opcode.is_control());
        assert_eq!(&ping[n..], b"Hello");

        // §5.7: masked Pong with body "Hello", matching the ping.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = roundtrip(&pong, true);
        assert_eq!(h.opcode, OpCode::Pong);
        assert_eq!(h.payload_len, 5);
        assert_eq!(n, 6);
    }

    #[test]
    fn rfc_256_byte_binary() {
        // §5.7: 256 bytes binary message in a single unmasked frame.
        let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
        wire.extend(std::iter::repeat_n(0xAB, 256));
        let (h, n) = roundtrip(&wire, false);
        assert_eq!(n, 4);
        assert_eq!(h.opcode, OpCode::Binary);
        assert_eq!(h.payload_len, 256);
        assert_eq!(wire.len() - n, 256);
    }

    #[test]
    fn rfc_64k_binary() {
        // §5.7: 64KiB binary message in a single unmasked frame.
        let wire = [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        let (h, n) = roundtrip(&wire, false);
        assert_eq!(n, 10);
        assert_eq!(h.opcode, OpCode::Binary);
        assert_eq!(h.payload_len, 65536);
    }

    #[test]
    fn opcode_wire_values() {
        for v in 0..=0xFFu8 {
            match OpCode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op.to_u8(), v);
                    assert_eq!(op.is_control(), v & 0x08 != 0);
                }
                None => assert!(matches!(v, 0x3..=0x7 | 0xB..), "{v:#x}"),
            }
        }
    }

    #[test]
    fn reserved_bits() {
        for rsv in 1..8u8 {
            let wire = [0x81 | (rsv << 4), 0x00];
            assert_eq!(
                decode_header(&wire, false, 0),
                Err(ProtocolError::ReservedBits(rsv))
            );
            // Decidable from the first byte alone.
            assert_eq!(
                decode_header(&wire[..1], false, 0),
                Err(ProtocolError::ReservedBits(rsv))
            );
            // Allowed bits pass and are reported; the others still fail.
            let (h, _) = decode_header(&wire, false, rsv)
                .expect("allowed")
                .expect("complete");
            assert_eq!(h.rsv, rsv);
            let allowed = 0b100;
            let bad = rsv & !allowed;
            let got = decode_header(&wire, false, allowed);
            if bad == 0 {
                assert!(matches!(got, Ok(Some(_))));
            } else {
                assert_eq!(got, Err(ProtocolError::ReservedBits(bad)));
            }
        }
    }

    #[test]
    fn reserved_opcodes() {
        for op in (0x3..=0x7u8).chain(0xB..=0xF) {
            for fin in [0x00, 0x80] {
                let wire = [fin | op, 0x00];
                assert_eq!(
                    decode_header(&wire, false, 0),
                    Err(ProtocolError::ReservedOpcode(op))
                );
                assert_eq!(
                    decode_header(&wire[..1], true, 0),
                    Err(ProtocolError::ReservedOpcode(op))
                );
            }
        }
    }

    #[test]
    fn fragmented_control_frame() {
        for op in [0x8u8, 0x9, 0xA] {
            let wire = [op, 0x00];
            assert_eq!(
                decode_header(&wire, false, 0),
                Err(ProtocolError::FragmentedControlFrame)
            );
            assert_eq!(
                decode_header(&wire[..1], false, 0),
                Err(ProtocolError::FragmentedControlFrame)
            );
        }
        // Data frames may be fragmented.
        for op in [0x0u8, 0x1, 0x2] {
            assert!(matches!(decode_header(&[op, 0x00], false, 0), Ok(Some(_))));
        }
    }

    #[test]
    fn control_frame_too_long() {
        for op in [0x88u8, 0x89, 0x8A] {
            // 125 is the most a control frame may carry.
            let (h, _) = decode_header(&[op, 125], false, 0)
                .expect("valid")
                .expect("complete");
            assert_eq!(h.payload_len, 125);
            // 126 / 127 codes fail on the second byte, before the extended length.
            assert_eq!(
                decode_header(&[op, 126], false, 0),
                Err(ProtocolError::ControlFrameTooLong(126))
            );
            assert_eq!(
                decode_header(&[op, 127], false, 0),
                Err(ProtocolError::ControlFrameTooLong(127))
            );
            assert_eq!(
                decode_header(&[op, 0x80 | 126, 0, 126, 1, 2, 3, 4], true, 0),
                Err(ProtocolError::ControlFrameTooLong(126))
            );
            // Even a non-minimal encoding of a small length is too long.
            assert_eq!(
                decode_header(&[op, 126, 0, 5], false, 0),
                Err(ProtocolError::ControlFrameTooLong(126))
            );
        }
    }

    #[test]
    fn length_top_bit() {
        let wire = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_header(&wire, false, 0),
            Err(ProtocolError::LengthTopBit)
        );
        // Decidable from the first length byte.
        assert_eq!(
            decode_header(&wire[..3], false, 0),
            Err(ProtocolError::LengthTopBit)
        );
        assert_eq!(decode_header(&wire[..2], false, 0), Ok(None));
        // The largest legal length.
        let wire = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let (h, n) = roundtrip(&wire, false);
        assert_eq!(n, 10);
        assert_eq!(h.payload_len, u64::MAX >> 1);
    }

    #[test]
    fn mask_direction() {
        // Server side (expect_masked): an unmasked client frame.
        assert_eq!(
            decode_header(&[0x81, 0x05], true, 0),
            Err(ProtocolError::UnmaskedClientFrame)
        );
        // Client side: a masked server frame, decided before the key arrives.
        assert_eq!(
            decode_header(&[0x81, 0x85], false, 0),
            Err(ProtocolError::MaskedServerFrame)
        );
        assert_eq!(
            decode_header(&[0x82, 0xFF], false, 0),
            Err(ProtocolError::MaskedServerFrame)
        );
        assert_eq!(decode_header(&[0x81], true, 0), Ok(None));
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, n) = decode_header(&[0x82, 126, 0, 5], false, 0)
            .expect("valid")
            .expect("complete");
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = decode_header(&[0x82, 127, 0, 0, 0, 0, 0, 0, 1, 0], false, 0)
            .expect("valid")
            .expect("complete");
        assert_eq!((h.payload_len, n), (256, 10));
    }

    #[test]
    fn minimal_encoding_boundaries() {
        let mut out = [0u8; MAX_HEADER_LEN];
        for (len, want) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (0xFFFF, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let n = encode_header(&h, &mut out);
                let extra = if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, want + extra, "len {len}");
                let back = decode_header(&out[..n], mask.is_some(), 0)
                    .expect("valid")
                    .expect("complete");
                assert_eq!(back, (h, n));
            }
        }
    }

    #[test]
    fn every_prefix_needs_more() {
        let mut out = [0u8; MAX_HEADER_LEN];
        for len in [0u64, 5, 125, 126, 300, 0xFFFF, 0x10000, 1 << 40] {
            for mask in [None, Some([0xde, 0xad, 0xbe, 0xef])] {
                let h = FrameHeader {
                    fin: false,
                    rsv: 0,
                    opcode: OpCode::Text,
                    mask,
                    payload_len: len,
                };
                let n = encode_header(&h, &mut out);
                for cut in 0..n {
                    assert_eq!(decode_header(&out[..cut], mask.is_some(), 0), Ok(None));
                }
            }
        }
    }

    /// Tiny deterministic xorshift64 for property-style tests.
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
    fn random_headers_roundtrip() {
        const OPS: [OpCode; 6] = [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut out = [0u8; MAX_HEADER_LEN];
        for _ in 0..5000 {
            let r = rng.next();
            let opcode = OPS[(r % 6) as usize];
            let control = opcode.is_control();
            let fin = control || r & 0x100 != 0;
            let rsv = ((r >> 9) & 0x07) as u8;
            let payload_len = if control {
                (r >> 16) % 126
            } else {
                // Spread lengths over the three encodings.
                match (r >> 12) & 3 {
                    0 => (r >> 16) % 126,
                    1 => 126 + (r >> 16) % (0x10000 - 126),
                    _ => rng.next() >> 1,
                }
            };
            let mask = if r & 0x200_0000 != 0 {
                Some(((rng.next() >> 7) as u32).to_be_bytes())
            } else {
                None
            };
            let h = FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            };
            let n = encode_header(&h, &mut out);
            // Append payload-like trailing bytes: they must not be consumed.
            let mut wire = out[..n].to_vec();
            wire.extend_from_slice(&rng.next().to_le_bytes());
            let got = decode_header(&wire, mask.is_some(), rsv);
            assert_eq!(got, Ok(Some((h, n))), "{h:?}");
            if rsv != 0 {
                assert!(matches!(
                    decode_header(&wire, mask.is_some(), 0),
                    Err(ProtocolError::ReservedBits(_))
                ));
            }
            assert!(matches!(
                decode_header(&wire, mask.is_none(), rsv),
                Err(ProtocolError::UnmaskedClientFrame | ProtocolError::MaskedServerFrame)
            ));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = XorShift(0x0123_4567_89AB_CDEF);
        for _ in 0..5000 {
            let len = (rng.next() % 16) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for cut in 0..=len {
                for expect_masked in [false, true] {
                    if let Ok(Some((h, n))) = decode_header(&bytes[..cut], expect_masked, 0b111) {
                        assert!(n <= cut);
                        assert_eq!(h.mask.is_some(), expect_masked);
                    }
                }
            }
        }
    }
}
