//! One protobuf `Envelope` per WebSocket binary message: encoding, decoding,
//! the version check and the schema's field rules.

use prost::Message as _;
use wharf_core::{Bytes, Message};

use crate::error::ProtoError;
use crate::wire::{self, envelope::Body, Envelope, Status, PROTOCOL_VERSION};

/// Wraps `body` in an [`Envelope`] of [`PROTOCOL_VERSION`] and encodes it as
/// one binary WebSocket message.
///
/// ```
/// use wharf_proto::{decode, encode, Body, Request};
///
/// let request = Request { id: 7, kind: "echo".into(), payload: "hi".into() };
/// let message = encode(Body::Request(request.clone()));
/// assert_eq!(decode(&message)?, Body::Request(request));
/// # Ok::<(), wharf_proto::ProtoError>(())
/// ```
#[must_use]
pub fn encode(body: Body) -> Message {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        body: Some(body),
    };
    Message::Binary(Bytes::from(envelope.encode_to_vec()))
}

/// Decodes one WebSocket message into the body of its [`Envelope`], checking
/// the version and the schema's field rules (ids never 0, names and kinds
/// not empty, a known status, sequence numbers from 1).
///
/// Never panics, whatever the bytes. Payloads share the message's buffer
/// (no copy).
///
/// # Errors
///
/// A [`ProtoError`]; its [`request_id`](ProtoError::request_id) names the
/// request it carried when that could be read.
pub fn decode(message: &Message) -> Result<Body, ProtoError> {
    let bytes = match message {
        Message::Binary(bytes) => bytes.clone(),
        Message::Text(_) => return Err(ProtoError::TextMessage),
    };
    let envelope = Envelope::decode(bytes).map_err(ProtoError::Malformed)?;
    let body = envelope.body.ok_or(ProtoError::MissingBody)?;
    if envelope.version != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion {
            version: envelope.version,
            request_id: carried_id(&body),
        });
    }
    validate(&body)?;
    Ok(body)
}

/// The request id a body carries, if it is a usable one.
fn carried_id(body: &Body) -> Option<u64> {
    let id = match body {
        Body::Request(r) => r.id,
        Body::Result(r) => r.request_id,
        Body::Register(_) | Body::RegisterAck(_) | Body::Frame(_) => 0,
    };
    (id != 0).then_some(id)
}

fn invalid(
    message: &'static str,
    field: &'static str,
    reason: &'static str,
    request_id: Option<u64>,
) -> ProtoError {
    ProtoError::InvalidField {
        message,
        field,
        reason,
        request_id,
    }
}

/// The schema's rules that need no session state.
fn validate(body: &Body) -> Result<(), ProtoError> {
    match body {
        Body::Request(r) => {
            if r.id == 0 {
                return Err(invalid("Request", "id", "must not be 0", None));
            }
            if r.kind.is_empty() {
                return Err(invalid("Request", "kind", "must not be empty", Some(r.id)));
            }
        }
        Body::Result(r) => {
            if r.request_id == 0 {
                return Err(invalid("Result", "request_id", "must not be 0", None));
            }
            match Status::try_from(r.status) {
                Ok(Status::Unspecified) => {
                    return Err(invalid(
                        "Result",
                        "status",
                        "must be set",
                        Some(r.request_id),
                    ))
                }
                Err(_) => {
                    return Err(invalid(
                        "Result",
                        "status",
                        "unknown value",
                        Some(r.request_id),
                    ))
                }
                Ok(_) => {}
            }
        }
        Body::Frame(f) => {
            if f.stream.is_empty() {
                return Err(invalid("Frame", "stream", "must not be empty", None));
            }
            if f.sequence == 0 {
                return Err(invalid("Frame", "sequence", "must not be 0", None));
            }
        }
        Body::RegisterAck(a) => {
            if a.accepted && a.server_epoch == 0 {
                return Err(invalid(
                    "RegisterAck",
                    "server_epoch",
                    "must not be 0 when accepted",
                    None,
                ));
            }
        }
        // The server checks registrations itself and refuses bad ones with
        // a reason (a RegisterAck), which is more useful than an error here.
        Body::Register(_) => {}
    }
    Ok(())
}

impl wire::Result {
    /// A successful result for request `request_id`.
    #[must_use]
    pub fn ok(request_id: u64, payload: impl Into<Bytes>) -> wire::Result {
        wire::Result {
            request_id,
            status: Status::Ok as i32,
            outcome: Some(wire::result::Outcome::Payload(payload.into())),
        }
    }

    /// A failed result for request `request_id`. `status` should not be
    /// [`Status::Ok`] or [`Status::Unspecified`].
    #[must_use]
    pub fn error(request_id: u64, status: Status, error: impl Into<String>) -> wire::Result {
        wire::Result {
            request_id,
            status: status as i32,
            outcome: Some(wire::result::Outcome::Error(error.into())),
        }
    }

    /// Whether the status is [`Status::Ok`].
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok as i32
    }

    /// The answer bytes, if the outcome is a payload.
    #[must_use]
    pub fn payload(&self) -> Option<&Bytes> {
        match &self.outcome {
            Some(wire::result::Outcome::Payload(p)) => Some(p),
            _ => None,
        }
    }

    /// The error text, if the outcome is an error.
    #[must_use]
    pub fn error_message(&self) -> Option<&str> {
        match &self.outcome {
            Some(wire::result::Outcome::Error(e)) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, Register, RegisterAck, Request, StreamPosition, Subscription};

    fn raw(version: u32, body: Option<Body>) -> Message {
        Message::Binary(Bytes::from(Envelope { version, body }.encode_to_vec()))
    }

    #[test]
    fn every_body_round_trips() {
        let bodies = [
            Body::Register(Register {
                client_id: "c".into(),
                auth_token: "t".into(),
                streams: vec![Subscription {
                    stream: "s".into(),
                    resume: true,
                    last_sequence: 9,
                }],
                server_epoch: 3,
            }),
            Body::RegisterAck(RegisterAck {
                accepted: true,
                reason: String::new(),
                server_epoch: 3,
                streams: vec![StreamPosition {
                    stream: "s".into(),
                    next_sequence: 10,
                }],
            }),
            Body::Request(Request {
                id: 1,
                kind: "k".into(),
                payload: Bytes::from_static(b"\x00\xff"),
            }),
            Body::Result(wire::Result::ok(1, Bytes::from_static(b"ok"))),
            Body::Result(wire::Result::error(1, Status::ApplicationError, "no")),
            Body::Frame(Frame {
                stream: "s".into(),
                sequence: 1,
                payload: Bytes::new(),
            }),
        ];
        for body in bodies {
            assert_eq!(decode(&encode(body.clone())), Ok(body));
        }
    }

    #[test]
    fn text_messages_are_refused() {
        assert_eq!(decode(&Message::text("hi")), Err(ProtoError::TextMessage));
    }

    #[test]
    fn garbage_is_malformed() {
        for bytes in [&b"\xff\xff\xff"[..], b"\x12\x05ab", b"\x0a"] {
            let err = decode(&Message::binary(Bytes::copy_from_slice(bytes))).unwrap_err();
            assert!(
                matches!(err, ProtoError::Malformed(_)),
                "{bytes:?}: {err:?}"
            );
            assert_eq!(err.request_id(), None);
        }
    }

    #[test]
    fn an_empty_envelope_has_no_body() {
        assert_eq!(
            decode(&Message::binary(Bytes::new())),
            Err(ProtoError::MissingBody)
        );
        // A newer peer's unknown body (field 15) is skipped by protobuf.
        let mut bytes = Envelope {
            version: PROTOCOL_VERSION,
            body: None,
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x7a, 0x01, 0x00]); // field 15, length 1
        assert_eq!(
            decode(&Message::binary(bytes)),
            Err(ProtoError::MissingBody)
        );
    }

    #[test]
    fn other_versions_are_refused_with_the_request_id() {
        let request = Request {
            id: 42,
            kind: "k".into(),
            payload: Bytes::new(),
        };
        for version in [0, 2, u32::MAX] {
            let err = decode(&raw(version, Some(Body::Request(request.clone())))).unwrap_err();
            assert_eq!(
                err,
                ProtoError::UnsupportedVersion {
                    version,
                    request_id: Some(42)
                }
            );
        }
    }

    #[test]
    fn field_rules() {
        let bad = [
            (Body::Request(Request::default()), None),
            (
                Body::Request(Request {
                    id: 5,
                    ..Request::default()
                }),
                Some(5),
            ),
            (Body::Result(wire::Result::default()), None),
            (
                Body::Result(wire::Result {
                    request_id: 6,
                    ..wire::Result::default()
                }),
                Some(6),
            ),
            (
                Body::Result(wire::Result {
                    request_id: 7,
                    status: 99,
                    outcome: None,
                }),
                Some(7),
            ),
            (Body::Frame(Frame::default()), None),
            (
                Body::Frame(Frame {
                    stream: "s".into(),
                    ..Frame::default()
                }),
                None,
            ),
            (
                Body::RegisterAck(RegisterAck {
                    accepted: true,
                    ..RegisterAck::default()
                }),
                None,
            ),
        ];
        for (body, id) in bad {
            let err = decode(&encode(body.clone())).unwrap_err();
            assert!(
                matches!(err, ProtoError::InvalidField { .. }),
                "{body:?}: {err:?}"
            );
            assert_eq!(err.request_id(), id, "{body:?}");
        }
    }

    #[test]
    fn truncated_envelopes_never_panic() {
        let message = encode(Body::Request(Request {
            id: 300,
            kind: "kind".into(),
            payload: Bytes::from(vec![7u8; 300]),
        }));
        let bytes = message.into_payload();
        for end in 0..bytes.len() {
            let _ = decode(&Message::Binary(bytes.slice(..end)));
        }
        // Every single-byte change, too.
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut v = bytes.to_vec();
                v[i] ^= flip;
                let _ = decode(&Message::binary(v));
            }
        }
    }
}
