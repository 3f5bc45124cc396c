//! `proto_envelope`: the protobuf envelope codec of wharf-proto and its two
//! sans-IO sessions, driven by a model of what their documentation promises.
//!
//! The harness plays the network between one [`ClientSession`] and one
//! [`ServerSession`] (which may have other connections too) and the
//! application on both sides. It keeps its own account of every request,
//! registration, stream and connection, derives from it the exact events and
//! messages each call must produce, and compares.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use prost::Message as _;
use wharf_core::{Bytes, Message};
use wharf_proto::{
    decode, encode, Body, ClientEvent, ClientSession, ClientSessionConfig, ConnectionId, Envelope,
    Frame, OnReconnect, Outcome, ProtoError, Register, RegisterAck, Request, RequestError,
    RequestResult, ServerError, ServerEvent, ServerSession, ServerSessionConfig, Status,
    StreamPosition, SubmitError, Subscription, PROTOCOL_VERSION,
};

use crate::{take_bytes, take_u16, take_u8};

// ---------------------------------------------------------------------------
// The codec
// ---------------------------------------------------------------------------

/// The id a body carries when it is a usable one (not 0): a request's id or
/// a result's `request_id`.
fn carried_id(body: &Body) -> Option<u64> {
    let id = match body {
        Body::Request(r) => r.id,
        Body::Result(r) => r.request_id,
        Body::Register(_) | Body::RegisterAck(_) | Body::Frame(_) => 0,
    };
    (id != 0).then_some(id)
}

/// The schema's rules (`proto/wharf.proto`, [`decode`]): ids never 0, kinds
/// and stream names not empty, a known status other than unspecified,
/// sequence numbers from 1, an accepted registration's epoch never 0.
fn follows_rules(body: &Body) -> bool {
    match body {
        Body::Request(r) => r.id != 0 && !r.kind.is_empty(),
        Body::Result(r) => {
            r.request_id != 0
                && matches!(Status::try_from(r.status), Ok(s) if s != Status::Unspecified)
        }
        Body::Frame(f) => !f.stream.is_empty() && f.sequence != 0,
        Body::RegisterAck(a) => !a.accepted || a.server_epoch != 0,
        Body::Register(_) => true,
    }
}

/// The bytes payload of a body, if it has one.
fn payload_of(body: &Body) -> Option<&Bytes> {
    match body {
        Body::Request(r) => Some(&r.payload),
        Body::Frame(f) => Some(&f.payload),
        Body::Result(r) => match &r.outcome {
            Some(Outcome::Payload(p)) => Some(p),
            _ => None,
        },
        Body::Register(_) | Body::RegisterAck(_) => None,
    }
}

/// [`decode`] of `bytes` as a binary message (a text one when `text`),
/// checked:
///
/// - a text message is [`ProtoError::TextMessage`];
/// - `Malformed` exactly when plain protobuf decoding of an [`Envelope`]
///   fails; else `MissingBody` exactly when it has no body; else
///   `UnsupportedVersion` (with the carried request id) exactly when the
///   version is not [`PROTOCOL_VERSION`]; else `InvalidField` (with the
///   carried request id) exactly when the body breaks a schema rule; else
///   the very body protobuf decoded;
/// - a decoded body's payload shares the message's buffer (no copy);
/// - decode → encode → decode gives the same body, and encoding it again
///   gives the same bytes.
pub fn check_decode(bytes: &[u8], text: bool) -> Result<Body, ProtoError> {
    let message = if text {
        Message::text(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Message::binary(Bytes::copy_from_slice(bytes))
    };
    let result = decode(&message);
    if text {
        assert_eq!(result, Err(ProtoError::TextMessage));
        return result;
    }
    match Envelope::decode(bytes) {
        Err(e) => assert!(
            matches!(result, Err(ProtoError::Malformed(_))),
            "protobuf refuses the bytes ({e}), decode gives {result:?}"
        ),
        Ok(env) => match (&env.body, &result) {
            (_, Err(ProtoError::Malformed(e))) => {
                panic!("decode calls malformed ({e}) what protobuf reads as {env:?}")
            }
            (None, r) => assert_eq!(r, &Err(ProtoError::MissingBody)),
            (Some(body), r) if env.version != PROTOCOL_VERSION => assert_eq!(
                r,
                &Err(ProtoError::UnsupportedVersion {
                    version: env.version,
                    request_id: carried_id(body),
                })
            ),
            (Some(body), Ok(b)) => {
                assert_eq!(b, body, "decode and protobuf read different bodies");
                assert!(follows_rules(b), "decode let a body break the rules: {b:?}");
            }
            (Some(body), Err(ProtoError::InvalidField { request_id, .. })) => {
                assert!(
                    !follows_rules(body),
                    "decode refused a body within the rules: {body:?}"
                );
                assert_eq!(*request_id, carried_id(body), "InvalidField's request id");
            }
            (Some(body), Err(e)) => panic!("decode of {body:?} gave {e:?}"),
        },
    }
    if let Ok(body) = &result {
        if let Some(p) = payload_of(body).filter(|p| !p.is_empty()) {
            let buf = message.payload().as_ptr_range();
            let range = p.as_ptr_range();
            assert!(
                buf.start <= range.start && range.end <= buf.end,
                "a decoded payload was copied out of the message's buffer"
            );
        }
        let again = encode(body.clone());
        let back = decode(&again);
        assert_eq!(back.as_ref(), Ok(body), "decode → encode → decode");
        let third = encode(back.expect("just compared equal to Ok"));
        assert_eq!(third.payload(), again.payload(), "encoding is not stable");
    }
    result
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// Stream names the client may subscribe to and frames may carry ("" is
/// never valid).
const STREAMS: [&str; 4] = ["ticks", "news", "", "s"];
/// Request kinds ("" is refused).
const KINDS: [&str; 3] = ["echo", "", "k"];
/// Result statuses, the last three not valid ones.
const STATUSES: [i32; 10] = [1, 2, 3, 4, 5, 6, 7, 0, 8, -1];

/// Client ids: valid ones, an empty one and one longer than any
/// `max_name_len` the target sets.
fn client_id(i: u8) -> String {
    match i % 4 {
        0 => "c1".into(),
        1 => "c2".into(),
        2 => String::new(),
        _ => "x".repeat(300),
    }
}

/// One step of `proto_envelope` (tag byte `% 16`, then the fields; `u16`
/// little-endian; byte strings with a length byte). "Connection `sel`"
/// picks among the server's open connections in id order, and one past
/// them a connection that was closed (unknown to the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoOp {
    /// Client `request` of kind `KINDS[kind % 3]`, a payload of `len`
    /// bytes, the default timeout when `timeout` is 0, else `timeout` ms.
    Request { kind: u8, len: u8, timeout: u16 },
    /// Client `cancel(id)`.
    Cancel { id: u8 },
    /// A new connection between them: server `connect`, client `connected`.
    /// `flags` bit 0: the server first drops the previous one.
    Connect { flags: u8 },
    /// Client `disconnected`; `flags` bit 0: the server's `disconnect` too.
    Disconnect { flags: u8 },
    /// Deliver up to `n` (0: all) of the client's messages to the server.
    ToServer { n: u8 },
    /// Deliver up to `n % 128` (0: all) of the server's messages to the
    /// client; bit 7: the first one twice.
    ToClient { n: u8 },
    /// Lose the next message in flight: bit 0 server to client, else client
    /// to server.
    Drop { which: u8 },
    /// Server `accept_registration` on connection `sel`.
    Accept { sel: u8 },
    /// Server `refuse_registration` on connection `sel` with a reason of
    /// `reason` bytes.
    Refuse { sel: u8, reason: u8 },
    /// Server `respond`: to the application's `sel`-th unanswered request,
    /// or past them, for request id `sel` on connection `sel`; status
    /// `STATUSES[status % 10]`.
    Respond { sel: u8, status: u8 },
    /// Server `publish` on `STREAMS[stream % 4]`, `len` payload bytes.
    Publish { stream: u8, len: u8 },
    /// Advance the clock by `ms`; client `handle_timeout`.
    Advance { ms: u16 },
    /// `sel` bit 0: server `connect` (a connection of some other peer);
    /// else `disconnect` of connection `sel >> 1`.
    Conn { sel: u8 },
    /// Arbitrary bytes to the client (a text message when `text` is odd).
    ClientBytes { text: u8, bytes: Vec<u8> },
    /// Arbitrary bytes to the server on connection `sel`.
    ServerBytes { sel: u8, text: u8, bytes: Vec<u8> },
    /// A made envelope (see [`made_body`]) to the client (`dest` bit 0
    /// clear) or to the server on connection `dest >> 1`; protocol version
    /// 1, except `version % 6` 4: 0 and 5: 2.
    Body {
        dest: u8,
        kind: u8,
        a: u8,
        b: u16,
        c: u8,
        version: u8,
    },
}

impl ProtoOp {
    /// Reads one op; `None` at the end of the input.
    pub fn parse(u: &mut Unstructured<'_>) -> Option<ProtoOp> {
        let tag = take_u8(u)? % 16;
        Some(match tag {
            0 => ProtoOp::Request {
                kind: take_u8(u)?,
                len: take_u8(u).unwrap_or(0),
                timeout: take_u16(u).unwrap_or(0),
            },
            1 => ProtoOp::Cancel { id: take_u8(u)? },
            2 => ProtoOp::Connect {
                flags: take_u8(u).unwrap_or(0),
            },
            3 => ProtoOp::Disconnect {
                flags: take_u8(u).unwrap_or(0),
            },
            4 => ProtoOp::ToServer {
                n: take_u8(u).unwrap_or(0),
            },
            5 => ProtoOp::ToClient {
                n: take_u8(u).unwrap_or(0),
            },
            6 => ProtoOp::Drop { which: take_u8(u)? },
            7 => ProtoOp::Accept {
                sel: take_u8(u).unwrap_or(0),
            },
            8 => ProtoOp::Refuse {
                sel: take_u8(u)?,
                reason: take_u8(u).unwrap_or(0),
            },
            9 => ProtoOp::Respond {
                sel: take_u8(u)?,
                status: take_u8(u).unwrap_or(0),
            },
            10 => ProtoOp::Publish {
                stream: take_u8(u)?,
                len: take_u8(u).unwrap_or(0),
            },
            11 => ProtoOp::Advance { ms: take_u16(u)? },
            12 => ProtoOp::Conn { sel: take_u8(u)? },
            13 => {
                let text = take_u8(u)?;
                let n = take_u8(u).unwrap_or(0);
                ProtoOp::ClientBytes {
                    text,
                    bytes: take_bytes(u, usize::from(n)).to_vec(),
                }
            }
            14 => {
                let sel = take_u8(u)?;
                let text = take_u8(u).unwrap_or(0);
                let n = take_u8(u).unwrap_or(0);
                ProtoOp::ServerBytes {
                    sel,
                    text,
                    bytes: take_bytes(u, usize::from(n)).to_vec(),
                }
            }
            _ => ProtoOp::Body {
                dest: take_u8(u)?,
                kind: take_u8(u)?,
                a: take_u8(u).unwrap_or(0),
                b: take_u16(u).unwrap_or(0),
                c: take_u8(u).unwrap_or(0),
                version: take_u8(u).unwrap_or(0),
            },
        })
    }

    /// The bytes [`parse`](Self::parse) reads back as this op (byte strings
    /// longer than 255 bytes are cut).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let bytes = |out: &mut Vec<u8>, b: &[u8]| {
            let n = b.len().min(255);
            out.push(n as u8);
            out.extend_from_slice(&b[..n]);
        };
        match self {
            ProtoOp::Request { kind, len, timeout } => {
                out.extend_from_slice(&[0, *kind, *len]);
                out.extend_from_slice(&timeout.to_le_bytes());
            }
            ProtoOp::Cancel { id } => out.extend_from_slice(&[1, *id]),
            ProtoOp::Connect { flags } => out.extend_from_slice(&[2, *flags]),
            ProtoOp::Disconnect { flags } => out.extend_from_slice(&[3, *flags]),
            ProtoOp::ToServer { n } => out.extend_from_slice(&[4, *n]),
            ProtoOp::ToClient { n } => out.extend_from_slice(&[5, *n]),
            ProtoOp::Drop { which } => out.extend_from_slice(&[6, *which]),
            ProtoOp::Accept { sel } => out.extend_from_slice(&[7, *sel]),
            ProtoOp::Refuse { sel, reason } => out.extend_from_slice(&[8, *sel, *reason]),
            ProtoOp::Respond { sel, status } => out.extend_from_slice(&[9, *sel, *status]),
            ProtoOp::Publish { stream, len } => out.extend_from_slice(&[10, *stream, *len]),
            ProtoOp::Advance { ms } => {
                out.push(11);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            ProtoOp::Conn { sel } => out.extend_from_slice(&[12, *sel]),
            ProtoOp::ClientBytes { text, bytes: b } => {
                out.extend_from_slice(&[13, *text]);
                bytes(out, b);
            }
            ProtoOp::ServerBytes {
                sel,
                text,
                bytes: b,
            } => {
                out.extend_from_slice(&[14, *sel, *text]);
                bytes(out, b);
            }
            ProtoOp::Body {
                dest,
                kind,
                a,
                b,
                c,
                version,
            } => {
                out.extend_from_slice(&[15, *dest, *kind, *a]);
                out.extend_from_slice(&b.to_le_bytes());
                out.extend_from_slice(&[*c, *version]);
            }
        }
    }
}

/// The body a [`ProtoOp::Body`] sends, by `kind % 5`:
///
/// 0. `Register`: `client_id(a)`, the streams `STREAMS[i]` for each bit `i`
///    (0-3) of `c`, resuming when bit `4 + i` is set, from `last_sequence`
///    `b`; `server_epoch` (0, the server's, 1, 2)`[a >> 2 & 3]`.
/// 1. `RegisterAck`: accepted when `a` bit 0, reason "no" when bit 1,
///    `server_epoch` (0, the server's, 1, 2, max)`[(a >> 2) % 5]`; a position
///    `b + i` for `STREAMS[i]` per bit `i` of `c`, the first one again when
///    bit 4.
/// 2. `Request`: id `b`, kind `KINDS[a % 3]`, `c % 8` payload bytes.
/// 3. `Result`: `request_id` `b`, status `STATUSES[a % 10]`, outcome by
///    `c % 3`: none, a payload, an error.
/// 4. `Frame`: `STREAMS[a % 4]`, sequence `b`, payload `[c]`.
pub fn made_body(kind: u8, a: u8, b: u16, c: u8, epoch: u64) -> Body {
    let b64 = u64::from(b);
    match kind % 5 {
        0 => Body::Register(Register {
            client_id: client_id(a),
            auth_token: "t".into(),
            streams: (0..4)
                .filter(|i| c >> i & 1 != 0)
                .map(|i| Subscription {
                    stream: STREAMS[i].into(),
                    resume: c >> (4 + i) & 1 != 0,
                    last_sequence: b64,
                })
                .collect(),
            server_epoch: [0, epoch, 1, 2][usize::from(a >> 2 & 3)],
        }),
        1 => {
            let mut streams: Vec<StreamPosition> = (0..4u64)
                .filter(|&i| c >> i & 1 != 0)
                .map(|i| StreamPosition {
                    stream: STREAMS[i as usize].into(),
                    next_sequence: b64 + i,
                })
                .collect();
            if c & 16 != 0 {
                if let Some(first) = streams.first().cloned() {
                    streams.push(first);
                }
            }
            Body::RegisterAck(RegisterAck {
                accepted: a & 1 != 0,
                reason: if a & 2 != 0 {
                    "no".into()
                } else {
                    String::new()
                },
                server_epoch: [0, epoch, 1, 2, u64::MAX][usize::from(a >> 2) % 5],
                streams,
            })
        }
        2 => Body::Request(Request {
            id: b64,
            kind: KINDS[usize::from(a % 3)].into(),
            payload: Bytes::from(vec![c; usize::from(c % 8)]),
        }),
        3 => Body::Result(RequestResult {
            request_id: b64,
            status: STATUSES[usize::from(a % 10)],
            outcome: match c % 3 {
                0 => None,
                1 => Some(Outcome::Payload(Bytes::from(vec![c; 3]))),
                _ => Some(Outcome::Error("e".into())),
            },
        }),
        _ => Body::Frame(Frame {
            stream: STREAMS[usize::from(a % 4)].into(),
            sequence: b64,
            payload: Bytes::from(vec![c]),
        }),
    }
}

/// A result with `status` (any `i32`) for `id`.
fn result_with(id: u64, status: i32) -> RequestResult {
    match Status::try_from(status) {
        Ok(Status::Ok) => RequestResult::ok(id, Bytes::from_static(b"answer")),
        Ok(s) if s != Status::Unspecified => RequestResult::error(id, s, "failed"),
        _ => RequestResult {
            request_id: id,
            status,
            outcome: None,
        },
    }
}

// ---------------------------------------------------------------------------
// The client's model
// ---------------------------------------------------------------------------

/// Where the client is with its connection, as its documentation describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Disconnected,
    /// The registration goes out first; `sent` once it did.
    Registering {
        sent: bool,
    },
    Registered,
    /// Refused: nothing goes out until the next connection.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Pending,
    Ended,
    Cancelled,
}

#[derive(Debug)]
struct Req {
    kind: String,
    payload: Bytes,
    deadline: Instant,
    state: ReqState,
    /// The connection generation it was last sent on, cleared on
    /// disconnection (it goes out again after the next registration).
    sent_on: Option<u64>,
}

// ---------------------------------------------------------------------------
// The server's model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum SState {
    /// No registration (or the last one was refused).
    Connected,
    /// A registration awaits the application; requests are held.
    Registering {
        register: Register,
        held: Vec<Request>,
    },
    Registered {
        client_id: String,
    },
    /// Replaced by a newer connection of its client: nothing goes out on it
    /// and nothing it sends is taken; its requests in flight are forgotten.
    Replaced,
}

#[derive(Debug)]
struct SConn {
    state: SState,
    /// Requests handed to the application and not answered.
    in_flight: BTreeSet<u64>,
    /// The streams it gets frames of.
    streams: Vec<String>,
}

#[derive(Debug, Default)]
struct Log {
    /// Frames published so far.
    published: u64,
    /// The last `history` of them.
    history: VecDeque<Frame>,
    subscribers: BTreeSet<ConnectionId>,
}

/// A message the server must send in the current call.
#[derive(Debug)]
enum Tx {
    /// Exactly this message.
    Exact(ConnectionId, Message),
    /// A refused `RegisterAck` with some non-empty reason (the
    /// registration broke a rule).
    Refused(ConnectionId),
    /// An error `Result` for `id` with this status and some error text.
    Error(ConnectionId, u64, Status),
}

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

/// Most ops per run.
const MAX_STEPS: usize = 1000;

struct World {
    now: Instant,
    trace: bool,
    client: ClientSession,
    server: ServerSession,
    // The client's settings.
    client_id: String,
    max_pending: usize,
    default_timeout: Duration,
    policy: OnReconnect,
    // The client's model.
    link: Option<ConnectionId>,
    state: Link,
    generation: u64,
    requests: BTreeMap<u64, Req>,
    epoch_seen: u64,
    /// Per subscribed stream: the next sequence number expected (`None`
    /// until an ack lists it).
    views: BTreeMap<String, Option<u64>>,
    /// The last request id sent on the current connection.
    last_sent: u64,
    c2s: VecDeque<Message>,
    s2c: VecDeque<Message>,
    // The server's settings and model.
    scfg: ServerSessionConfig,
    epoch: u64,
    conns: BTreeMap<ConnectionId, SConn>,
    gone: Option<ConnectionId>,
    clients: HashMap<String, ConnectionId>,
    logs: BTreeMap<String, Log>,
    /// Requests handed to the application and not answered (a replaced
    /// connection's included: answering them is refused).
    app: Vec<(ConnectionId, u64)>,
}

fn unexpected(e: &ProtoError, what: &str, id: Option<u64>) -> bool {
    matches!(e, ProtoError::Unexpected { message, request_id, .. } if *message == what && *request_id == id)
}

impl World {
    fn new(c: u8, d: u8, e: u8, now: Instant, trace: bool) -> World {
        let max_pending = [1, 2, 4, 1024][usize::from(c & 3)];
        let policy = if c & 4 != 0 {
            OnReconnect::Fail
        } else {
            OnReconnect::Resend
        };
        let default_timeout = [10_000, 1, 1000, 0][usize::from(e >> 4 & 3)];
        let default_timeout = Duration::from_millis(default_timeout);
        let mut ccfg = ClientSessionConfig::new(client_id(c >> 6))
            .with_auth_token("t")
            .with_max_pending(max_pending)
            .with_on_reconnect(policy)
            .with_request_timeout(default_timeout);
        for (bit, stream) in [(3, "ticks"), (4, "news"), (5, "ticks")] {
            if c >> bit & 1 != 0 {
                ccfg = ccfg.with_stream(stream);
            }
        }
        let views = ccfg.streams.iter().map(|s| (s.clone(), None)).collect();
        let client_id = ccfg.client_id.clone();

        let mut scfg = ServerSessionConfig::new()
            .with_max_in_flight([1, 2, 4, 256][usize::from(d & 3)])
            .with_history([0, 1, 3, 1024][usize::from(d >> 2 & 3)])
            .with_max_connections([1, 2, 3, 10_000][usize::from(d >> 4 & 3)])
            .with_max_streams_per_client([0, 1, 2, 64][usize::from(d >> 6)]);
        scfg.max_name_len = [256, 1, 4, 5][usize::from(e >> 2 & 3)];
        let raw_epoch = [0, 1, 2, u64::MAX][usize::from(e & 3)];
        let server = ServerSession::new(scfg.clone(), raw_epoch);
        assert_eq!(server.epoch(), raw_epoch.max(1), "epoch 0 is taken as 1");
        World {
            now,
            trace,
            client: ClientSession::new(ccfg),
            server,
            client_id,
            max_pending,
            default_timeout,
            policy,
            link: None,
            state: Link::Disconnected,
            generation: 0,
            requests: BTreeMap::new(),
            epoch_seen: 0,
            views,
            last_sent: 0,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            epoch: raw_epoch.max(1),
            scfg,
            conns: BTreeMap::new(),
            gone: None,
            clients: HashMap::new(),
            logs: BTreeMap::new(),
            app: Vec::new(),
        }
    }

    // -- the client --------------------------------------------------------

    fn pending_ids(&self) -> Vec<u64> {
        self.requests
            .iter()
            .filter(|(_, r)| r.state == ReqState::Pending)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Ends a pending request in the model with the event it must produce.
    fn fail(&mut self, id: u64, error: RequestError, want: &mut Vec<ClientEvent>) {
        let r = self.requests.get_mut(&id).expect("a pending request");
        r.state = ReqState::Ended;
        want.push(ClientEvent::Failed {
            request_id: id,
            kind: r.kind.clone(),
            error,
        });
    }

    /// The model of `disconnected()`: returns how many sent requests go out
    /// again.
    fn model_disconnect(&mut self, want: &mut Vec<ClientEvent>) -> usize {
        let sent: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.state == ReqState::Pending && r.sent_on.is_some())
            .map(|(&id, _)| id)
            .collect();
        self.state = Link::Disconnected;
        match self.policy {
            OnReconnect::Fail => {
                for id in sent {
                    self.fail(id, RequestError::ConnectionLost, want);
                }
                0
            }
            _ => {
                for id in &sent {
                    self.requests.get_mut(id).expect("listed above").sent_on = None;
                }
                sent.len()
            }
        }
    }

    /// Drains the client's transmissions and checks each: the registration
    /// first on a connection and nothing else until its ack; then every
    /// pending request not yet sent on this connection, in submission
    /// order, each once, as submitted.
    fn pump_client(&mut self) {
        while let Some(message) = self.client.poll_transmit() {
            let body = check_decode(
                message.payload(),
                message.kind() == wharf_core::MessageKind::Text,
            )
            .unwrap_or_else(|e| panic!("the client sent an undecodable message: {e}"));
            match body {
                Body::Register(r) => {
                    assert_eq!(
                        self.state,
                        Link::Registering { sent: false },
                        "a registration in state {:?}",
                        self.state
                    );
                    self.state = Link::Registering { sent: true };
                    assert_eq!(r.client_id, self.client_id);
                    assert_eq!(r.auth_token, "t");
                    assert_eq!(r.server_epoch, self.epoch_seen, "registration's epoch");
                    let streams: Vec<Subscription> = self
                        .views
                        .iter()
                        .map(|(name, v)| Subscription {
                            stream: name.clone(),
                            resume: v.is_some(),
                            last_sequence: v.map_or(0, |e| e.saturating_sub(1)),
                        })
                        .collect();
                    assert_eq!(r.streams, streams, "subscriptions in the registration");
                }
                Body::Request(q) => {
                    assert_eq!(self.state, Link::Registered, "a request before the ack");
                    assert!(
                        q.id > self.last_sent,
                        "request {} after {}",
                        q.id,
                        self.last_sent
                    );
                    self.last_sent = q.id;
                    let generation = self.generation;
                    let r = self
                        .requests
                        .get_mut(&q.id)
                        .unwrap_or_else(|| panic!("the client sent unknown request {}", q.id));
                    assert_eq!(
                        r.state,
                        ReqState::Pending,
                        "request {} is not pending",
                        q.id
                    );
                    assert_ne!(r.sent_on, Some(generation), "request {} sent twice", q.id);
                    assert_eq!((q.kind.as_str(), &q.payload), (r.kind.as_str(), &r.payload));
                    r.sent_on = Some(generation);
                }
                other => panic!("the client sent {other:?}"),
            }
            assert!(self.link.is_some(), "the client sent while disconnected");
            self.c2s.push_back(message);
        }
        if self.state == Link::Registered {
            let generation = self.generation;
            let unsent: Vec<u64> = self
                .requests
                .iter()
                .filter(|(_, r)| r.state == ReqState::Pending && r.sent_on != Some(generation))
                .map(|(&id, _)| id)
                .collect();
            assert!(
                unsent.is_empty(),
                "registered, yet requests {unsent:?} wait"
            );
        }
    }

    /// After a client call: its events are exactly `want`; its transmissions
    /// check out; its queries agree with the model.
    fn client_after(&mut self, want: Vec<ClientEvent>) {
        let got: Vec<ClientEvent> = std::iter::from_fn(|| self.client.poll_event()).collect();
        if self.trace {
            eprintln!("  client events {got:?}");
        }
        assert_eq!(got, want, "client events");
        self.pump_client();
        let pending = self.pending_ids();
        assert_eq!(self.client.pending(), pending.len(), "pending()");
        assert!(
            pending.len() <= self.max_pending,
            "more pending than max_pending"
        );
        let earliest = pending.iter().map(|id| self.requests[id].deadline).min();
        assert_eq!(self.client.poll_timeout(), earliest, "poll_timeout()");
        assert_eq!(self.client.is_connected(), self.state != Link::Disconnected);
        assert_eq!(self.client.is_registered(), self.state == Link::Registered);
        assert_eq!(self.client.server_epoch(), self.epoch_seen);
    }

    fn client_request(&mut self, kind: u8, len: u8, timeout: u16) {
        let kind = KINDS[usize::from(kind % 3)];
        let payload = Bytes::from(vec![len; usize::from(len)]);
        let (result, timeout) = if timeout == 0 {
            (
                self.client.request(self.now, kind, payload.clone()),
                self.default_timeout,
            )
        } else {
            let t = Duration::from_millis(u64::from(timeout));
            (
                self.client
                    .request_with_timeout(self.now, kind, payload.clone(), t),
                t,
            )
        };
        let pending = self.pending_ids().len();
        match result {
            Ok(id) => {
                assert!(!kind.is_empty() && pending < self.max_pending);
                assert!(
                    id != 0 && !self.requests.contains_key(&id),
                    "id {id} reused"
                );
                self.requests.insert(
                    id,
                    Req {
                        kind: kind.into(),
                        payload,
                        deadline: self.now + timeout,
                        state: ReqState::Pending,
                        sent_on: None,
                    },
                );
            }
            Err(SubmitError::EmptyKind { payload: p }) => {
                assert!(kind.is_empty() && p == payload);
            }
            Err(SubmitError::Full {
                capacity,
                kind: k,
                payload: p,
            }) => {
                assert!(!kind.is_empty(), "Full before EmptyKind");
                assert_eq!(pending, self.max_pending, "Full with {pending} pending");
                assert_eq!(
                    (capacity, k.as_str(), &p),
                    (self.max_pending, kind, &payload)
                );
            }
            Err(e) => panic!("request: {e:?}"),
        }
        self.client_after(Vec::new());
    }

    /// The events an accepted ack must produce, and the model's new state.
    fn model_ack(&mut self, ack: &RegisterAck, want: &mut Vec<ClientEvent>) {
        let changed = self.epoch_seen != 0 && self.epoch_seen != ack.server_epoch;
        for pos in &ack.streams {
            let Some(view) = self.views.get_mut(&pos.stream) else {
                continue;
            };
            let next = pos.next_sequence.max(1);
            let from = match *view {
                None => next,
                Some(e) if changed => {
                    want.push(ClientEvent::StreamReset {
                        stream: pos.stream.clone(),
                        last_sequence: e.saturating_sub(1),
                    });
                    1
                }
                Some(e) => e,
            };
            if next > from {
                want.push(ClientEvent::Gap {
                    stream: pos.stream.clone(),
                    missing: from..next,
                });
            } else if next < from {
                // The same epoch went backwards: its numbering started over.
                want.push(ClientEvent::StreamReset {
                    stream: pos.stream.clone(),
                    last_sequence: from - 1,
                });
            }
            *view = Some(next);
        }
        self.epoch_seen = ack.server_epoch;
        self.state = Link::Registered;
        self.last_sent = 0;
        want.push(ClientEvent::Registered {
            server_epoch: ack.server_epoch,
            streams: ack.streams.clone(),
        });
    }

    /// Client `handle_message`, the result and events checked against the
    /// model.
    fn client_message(&mut self, message: &Message) {
        let decoded = check_decode(
            message.payload(),
            message.kind() == wharf_core::MessageKind::Text,
        );
        let result = self.client.handle_message(self.now, message);
        let mut want = Vec::new();
        match decoded {
            Err(e) => {
                assert_eq!(result.as_ref(), Err(&e), "the client's error is decode's");
                if let Some(id) = e.request_id() {
                    if self
                        .requests
                        .get(&id)
                        .is_some_and(|r| r.state == ReqState::Pending)
                    {
                        self.fail(id, RequestError::MalformedResult(e), &mut want);
                    }
                }
            }
            Ok(Body::RegisterAck(ack)) => {
                if self.state != (Link::Registering { sent: true }) {
                    assert!(
                        matches!(&result, Err(e) if unexpected(e, "RegisterAck", None)),
                        "an ack in state {:?}: {result:?}",
                        self.state
                    );
                } else if !ack.accepted {
                    assert_eq!(result, Ok(()));
                    self.state = Link::Refused;
                    for id in self.pending_ids() {
                        self.fail(
                            id,
                            RequestError::RegistrationRefused(ack.reason.clone()),
                            &mut want,
                        );
                    }
                    want.push(ClientEvent::RegistrationRefused { reason: ack.reason });
                } else {
                    assert_eq!(result, Ok(()));
                    self.model_ack(&ack, &mut want);
                }
            }
            Ok(Body::Result(r)) => {
                assert_eq!(result, Ok(()));
                match self.requests.get_mut(&r.request_id) {
                    Some(q) if q.state == ReqState::Pending => {
                        q.state = ReqState::Ended;
                        want.push(ClientEvent::Result(r));
                    }
                    _ => want.push(ClientEvent::UnmatchedResult(r)),
                }
            }
            Ok(Body::Frame(f)) => {
                let expected = self.views.get(&f.stream).copied().flatten();
                if self.state != Link::Registered {
                    assert!(
                        matches!(&result, Err(e) if unexpected(e, "Frame", None)),
                        "a frame in state {:?}: {result:?}",
                        self.state
                    );
                } else if let Some(e) = expected {
                    assert_eq!(result, Ok(()));
                    let seq = f.sequence;
                    if seq < e {
                        want.push(ClientEvent::Duplicate {
                            stream: f.stream,
                            sequence: seq,
                        });
                    } else {
                        if seq > e {
                            want.push(ClientEvent::Gap {
                                stream: f.stream.clone(),
                                missing: e..seq,
                            });
                        }
                        self.views
                            .insert(f.stream.clone(), Some(seq.saturating_add(1)));
                        want.push(ClientEvent::Frame(f));
                    }
                } else {
                    assert_eq!(
                        result,
                        Err(ProtoError::UnknownStream { stream: f.stream }),
                        "a frame of a stream not subscribed (or not acked)"
                    );
                }
            }
            Ok(Body::Register(_)) => assert!(
                matches!(&result, Err(e) if unexpected(e, "Register", None)),
                "{result:?}"
            ),
            Ok(Body::Request(q)) => assert!(
                matches!(&result, Err(e) if unexpected(e, "Request", Some(q.id))),
                "{result:?}"
            ),
        }
        self.client_after(want);
    }

    // -- the server --------------------------------------------------------

    /// The connection `sel` picks: an open one in id order, or one past them
    /// the last closed one.
    fn pick(&self, sel: u8) -> Option<ConnectionId> {
        let n = self.conns.len() + usize::from(self.gone.is_some());
        if n == 0 {
            return None;
        }
        let i = usize::from(sel) % n;
        self.conns.keys().nth(i).copied().or(self.gone)
    }

    /// The documented registration rules of [`ServerSessionConfig`].
    fn registration_ok(&self, r: &Register) -> bool {
        let c = &self.scfg;
        let mut seen = BTreeSet::new();
        !r.client_id.is_empty()
            && r.client_id.len() <= c.max_name_len
            && r.streams.len() <= c.max_streams_per_client
            && r.streams.iter().all(|s| {
                !s.stream.is_empty()
                    && s.stream.len() <= c.max_name_len
                    && seen.insert(s.stream.as_str())
            })
    }

    /// After a server call: its events are exactly `want`, its
    /// transmissions exactly `tx` (in order); the ones to the client's
    /// connection go in flight to it.
    fn server_after(&mut self, want: Vec<ServerEvent>, tx: Vec<Tx>) {
        let got: Vec<ServerEvent> = std::iter::from_fn(|| self.server.poll_event()).collect();
        if self.trace {
            eprintln!("  server events {got:?}");
        }
        assert_eq!(got, want, "server events");
        let sent: Vec<(ConnectionId, Message)> =
            std::iter::from_fn(|| self.server.poll_transmit()).collect();
        assert_eq!(
            sent.len(),
            tx.len(),
            "the server sent {} messages, {} expected: {sent:?} / {tx:?}",
            sent.len(),
            tx.len()
        );
        for ((to, message), want) in sent.into_iter().zip(tx) {
            match want {
                Tx::Exact(conn, m) => {
                    assert_eq!(to, conn, "sent to another connection");
                    assert!(m == message, "sent {message:?}, expected {m:?}");
                }
                Tx::Refused(conn) => {
                    assert_eq!(to, conn);
                    match decode(&message) {
                        Ok(Body::RegisterAck(a)) => {
                            assert!(!a.accepted && !a.reason.is_empty() && a.streams.is_empty());
                            assert_eq!(a.server_epoch, self.epoch);
                        }
                        other => panic!("expected a refusal, sent {other:?}"),
                    }
                }
                Tx::Error(conn, id, status) => {
                    assert_eq!(to, conn);
                    match decode(&message) {
                        Ok(Body::Result(r)) => {
                            assert_eq!((r.request_id, r.status), (id, status as i32));
                            assert!(matches!(r.outcome, Some(Outcome::Error(_))));
                        }
                        other => panic!("expected an error result, sent {other:?}"),
                    }
                }
            }
            let open = self.conns.get(&to).map(|c| &c.state);
            assert!(open.is_some(), "sent to a closed connection");
            assert!(
                !matches!(open, Some(SState::Replaced)),
                "sent on a replaced connection"
            );
            if self.link == Some(to) {
                self.s2c.push_back(message);
            }
        }
        assert_eq!(self.server.connections(), self.conns.len());
        for (id, conn) in &self.conns {
            let max = self.scfg.max_in_flight;
            assert!(
                conn.in_flight.len() <= max,
                "connection {id:?} has {} requests in flight (max {max})",
                conn.in_flight.len()
            );
            assert_eq!(
                self.server.client_id(*id),
                match &conn.state {
                    SState::Registered { client_id } => Some(client_id.as_str()),
                    _ => None,
                }
            );
        }
        for (name, log) in &self.logs {
            assert_eq!(self.server.subscribers(name), log.subscribers.len());
        }
    }

    /// Server `handle_message` on `conn` (open, closed or never known).
    fn server_message(&mut self, conn: ConnectionId, message: &Message) {
        let decoded = check_decode(
            message.payload(),
            message.kind() == wharf_core::MessageKind::Text,
        );
        let result = self.server.handle_message(conn, message);
        let mut want = Vec::new();
        let mut tx = Vec::new();
        let max_in_flight = self.scfg.max_in_flight;
        let registration_ok = match &decoded {
            Ok(Body::Register(r)) => self.registration_ok(r),
            _ => false,
        };
        let Some(c) = self
            .conns
            .get_mut(&conn)
            .filter(|c| !matches!(c.state, SState::Replaced))
        else {
            assert_eq!(
                result,
                Ok(()),
                "a message on a closed or replaced connection"
            );
            self.server_after(want, tx);
            return;
        };
        // A request id handed to the application or held.
        let in_flight = |c: &SConn, id: u64| {
            c.in_flight.contains(&id)
                || matches!(&c.state, SState::Registering { held, .. }
                    if held.iter().any(|h| h.id == id))
        };
        match decoded {
            Err(e) => match e.request_id() {
                // Malformed or not, a repeat of an id in flight is a
                // duplicate: dropped, no second result for the id.
                Some(id) if in_flight(c, id) => {
                    assert_eq!(result, Err(ProtoError::DuplicateRequest { id }));
                }
                carried => {
                    assert_eq!(result.as_ref(), Err(&e), "the server's error is decode's");
                    if let Some(id) = carried {
                        let status = match e {
                            ProtoError::UnsupportedVersion { .. } => Status::UnsupportedVersion,
                            _ => Status::InvalidRequest,
                        };
                        tx.push(Tx::Error(conn, id, status));
                    }
                }
            },
            Ok(Body::Register(r)) => {
                if !matches!(c.state, SState::Connected) {
                    assert!(
                        matches!(&result, Err(e) if unexpected(e, "Register", None)),
                        "{result:?}"
                    );
                } else if !registration_ok {
                    assert_eq!(result, Ok(()));
                    tx.push(Tx::Refused(conn));
                } else {
                    assert_eq!(result, Ok(()));
                    c.state = SState::Registering {
                        register: r.clone(),
                        held: Vec::new(),
                    };
                    want.push(ServerEvent::Register {
                        connection: conn,
                        register: r,
                    });
                }
            }
            Ok(Body::Request(q)) => {
                if in_flight(c, q.id) {
                    assert_eq!(result, Err(ProtoError::DuplicateRequest { id: q.id }));
                } else {
                    match &mut c.state {
                        SState::Replaced => unreachable!("filtered out above"),
                        SState::Connected => {
                            assert!(
                                matches!(&result, Err(e) if unexpected(e, "Request", Some(q.id))),
                                "{result:?}"
                            );
                            tx.push(Tx::Error(conn, q.id, Status::NotRegistered));
                        }
                        SState::Registering { held, .. } => {
                            assert_eq!(result, Ok(()));
                            if held.len() >= max_in_flight {
                                tx.push(Tx::Error(conn, q.id, Status::Unavailable));
                            } else {
                                held.push(q);
                            }
                        }
                        SState::Registered { client_id } => {
                            assert_eq!(result, Ok(()));
                            if c.in_flight.len() >= max_in_flight {
                                tx.push(Tx::Error(conn, q.id, Status::Unavailable));
                            } else {
                                c.in_flight.insert(q.id);
                                self.app.push((conn, q.id));
                                want.push(ServerEvent::Request {
                                    connection: conn,
                                    client_id: client_id.clone(),
                                    request: q,
                                });
                            }
                        }
                    }
                }
            }
            Ok(Body::RegisterAck(_)) => assert!(
                matches!(&result, Err(e) if unexpected(e, "RegisterAck", None)),
                "{result:?}"
            ),
            Ok(Body::Result(_)) => assert!(
                matches!(&result, Err(e) if unexpected(e, "Result", None)),
                "{result:?}"
            ),
            Ok(Body::Frame(_)) => assert!(
                matches!(&result, Err(e) if unexpected(e, "Frame", None)),
                "{result:?}"
            ),
        }
        self.server_after(want, tx);
    }

    /// Takes `conn` off every stream it gets.
    fn unsubscribe(&mut self, conn: ConnectionId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            for name in std::mem::take(&mut c.streams) {
                if let Some(log) = self.logs.get_mut(&name) {
                    log.subscribers.remove(&conn);
                }
            }
        }
    }

    fn server_accept(&mut self, conn: ConnectionId) {
        let result = self.server.accept_registration(conn);
        let mut want = Vec::new();
        let mut tx = Vec::new();
        let Some(c) = self.conns.get_mut(&conn) else {
            assert_eq!(result, Err(ServerError::UnknownConnection(conn)));
            return self.server_after(want, tx);
        };
        let SState::Registering { register, held } = c.state.clone() else {
            assert_eq!(result, Err(ServerError::NoPendingRegistration(conn)));
            return self.server_after(want, tx);
        };
        assert_eq!(result, Ok(()));
        c.state = SState::Registered {
            client_id: register.client_id.clone(),
        };
        c.streams = register.streams.iter().map(|s| s.stream.clone()).collect();
        if let Some(old) = self
            .clients
            .insert(register.client_id.clone(), conn)
            .filter(|&old| old != conn)
        {
            self.unsubscribe(old);
            if let Some(o) = self.conns.get_mut(&old) {
                o.state = SState::Replaced;
                o.in_flight.clear();
            }
            want.push(ServerEvent::Replaced {
                old,
                new: conn,
                client_id: register.client_id.clone(),
            });
        }
        // The ack, then what each resuming stream missed: from its last
        // sequence number in this epoch, from the start of the history if it
        // comes from another, never before the oldest frame kept.
        let mut positions = Vec::new();
        let mut replay = Vec::new();
        for sub in &register.streams {
            let log = self.logs.entry(sub.stream.clone()).or_default();
            let next = log.published + 1;
            let from = if !sub.resume {
                next
            } else if register.server_epoch == self.epoch {
                sub.last_sequence.saturating_add(1).min(next)
            } else {
                1
            };
            let oldest = log.history.front().map_or(next, |f| f.sequence);
            let start = from.max(oldest);
            replay.extend(log.history.iter().filter(|f| f.sequence >= start).cloned());
            log.subscribers.insert(conn);
            positions.push(StreamPosition {
                stream: sub.stream.clone(),
                next_sequence: start,
            });
        }
        let ack = RegisterAck {
            accepted: true,
            reason: String::new(),
            server_epoch: self.epoch,
            streams: positions,
        };
        tx.push(Tx::Exact(conn, encode(Body::RegisterAck(ack))));
        for frame in replay {
            tx.push(Tx::Exact(conn, encode(Body::Frame(frame))));
        }
        let c = self.conns.get_mut(&conn).expect("looked up above");
        for q in held {
            c.in_flight.insert(q.id);
            self.app.push((conn, q.id));
            want.push(ServerEvent::Request {
                connection: conn,
                client_id: register.client_id.clone(),
                request: q,
            });
        }
        self.server_after(want, tx);
    }

    fn server_refuse(&mut self, conn: ConnectionId, reason: String) {
        let result = self.server.refuse_registration(conn, reason.clone());
        let mut tx = Vec::new();
        let Some(c) = self.conns.get_mut(&conn) else {
            assert_eq!(result, Err(ServerError::UnknownConnection(conn)));
            return self.server_after(Vec::new(), tx);
        };
        let SState::Registering { held, .. } = c.state.clone() else {
            assert_eq!(result, Err(ServerError::NoPendingRegistration(conn)));
            return self.server_after(Vec::new(), tx);
        };
        assert_eq!(result, Ok(()));
        c.state = SState::Connected;
        let ack = RegisterAck {
            accepted: false,
            reason,
            server_epoch: self.epoch,
            streams: Vec::new(),
        };
        tx.push(Tx::Exact(conn, encode(Body::RegisterAck(ack))));
        for q in held {
            tx.push(Tx::Error(conn, q.id, Status::NotRegistered));
        }
        self.server_after(Vec::new(), tx);
    }

    fn server_respond(&mut self, conn: ConnectionId, result: RequestResult) {
        let id = result.request_id;
        let r = self.server.respond(conn, result.clone());
        let mut tx = Vec::new();
        match self.conns.get_mut(&conn) {
            None => assert_eq!(r, Err(ServerError::UnknownConnection(conn))),
            Some(c) if matches!(c.state, SState::Replaced) => {
                // The result is dropped: the application is done with it.
                assert_eq!(r, Err(ServerError::Replaced(conn)));
                self.app.retain(|&x| x != (conn, id));
            }
            Some(c) if !c.in_flight.contains(&id) => assert_eq!(
                r,
                Err(ServerError::NoSuchRequest {
                    connection: conn,
                    request_id: id,
                })
            ),
            Some(c) => {
                assert_eq!(r, Ok(()));
                c.in_flight.remove(&id);
                self.app.retain(|&x| x != (conn, id));
                tx.push(Tx::Exact(conn, encode(Body::Result(result))));
            }
        }
        self.server_after(Vec::new(), tx);
    }

    fn server_publish(&mut self, stream: &str, len: u8) {
        let payload = Bytes::from(vec![len; usize::from(len)]);
        let r = self.server.publish(stream, payload.clone());
        let mut tx = Vec::new();
        if stream.is_empty() {
            assert_eq!(r, Err(ServerError::EmptyStream));
        } else {
            let history = self.scfg.history;
            let log = self.logs.entry(stream.into()).or_default();
            log.published += 1;
            assert_eq!(r, Ok(log.published), "sequence numbers count from 1");
            let frame = Frame {
                stream: stream.into(),
                sequence: log.published,
                payload,
            };
            for &to in &log.subscribers {
                tx.push(Tx::Exact(to, encode(Body::Frame(frame.clone()))));
            }
            if history > 0 {
                if log.history.len() >= history {
                    log.history.pop_front();
                }
                log.history.push_back(frame);
            }
        }
        self.server_after(Vec::new(), tx);
    }

    fn server_connect(&mut self) -> Option<ConnectionId> {
        let r = self.server.connect();
        let full = self.conns.len() >= self.scfg.max_connections;
        let id = match r {
            Ok(id) => {
                assert!(!full, "a connection past max_connections");
                assert!(
                    !self.conns.contains_key(&id) && Some(id) != self.gone,
                    "connection id {id:?} reused"
                );
                self.conns.insert(
                    id,
                    SConn {
                        state: SState::Connected,
                        in_flight: BTreeSet::new(),
                        streams: Vec::new(),
                    },
                );
                Some(id)
            }
            Err(e) => {
                assert!(full, "connect refused below the limit: {e:?}");
                assert_eq!(
                    e,
                    ServerError::TooManyConnections(self.scfg.max_connections)
                );
                None
            }
        };
        self.server_after(Vec::new(), Vec::new());
        id
    }

    fn server_disconnect(&mut self, conn: ConnectionId) {
        self.server.disconnect(conn);
        if self.conns.contains_key(&conn) {
            self.unsubscribe(conn);
            let c = self.conns.remove(&conn).expect("checked above");
            if let SState::Registered { client_id } = c.state {
                if self.clients.get(&client_id) == Some(&conn) {
                    self.clients.remove(&client_id);
                }
            }
            self.app.retain(|&(to, _)| to != conn);
            self.gone = Some(conn);
        }
        if self.link == Some(conn) {
            self.s2c.clear();
        }
        self.server_after(Vec::new(), Vec::new());
    }

    // -- the ops -------------------------------------------------------------

    fn step(&mut self, op: ProtoOp) {
        match op {
            ProtoOp::Request { kind, len, timeout } => self.client_request(kind, len, timeout),
            ProtoOp::Cancel { id } => {
                let id = u64::from(id);
                let pending = self
                    .requests
                    .get_mut(&id)
                    .filter(|r| r.state == ReqState::Pending);
                let was = pending.is_some();
                if let Some(r) = pending {
                    r.state = ReqState::Cancelled;
                }
                assert_eq!(self.client.cancel(id), was, "cancel({id})");
                self.client_after(Vec::new());
            }
            ProtoOp::Connect { flags } => {
                if flags & 1 != 0 {
                    if let Some(old) = self.link {
                        self.server_disconnect(old);
                    }
                }
                let Some(conn) = self.server_connect() else {
                    return;
                };
                self.link = Some(conn);
                self.c2s.clear();
                self.s2c.clear();
                let mut want = Vec::new();
                if self.state != Link::Disconnected {
                    self.model_disconnect(&mut want);
                }
                self.client.connected();
                self.state = Link::Registering { sent: false };
                self.generation += 1;
                self.last_sent = 0;
                self.client_after(want);
            }
            ProtoOp::Disconnect { flags } => {
                let mut want = Vec::new();
                let resent = self.model_disconnect(&mut want);
                assert_eq!(self.client.disconnected(), resent, "disconnected()");
                let old = self.link.take();
                self.c2s.clear();
                self.s2c.clear();
                self.client_after(want);
                if let (Some(conn), true) = (old, flags & 1 != 0) {
                    self.server_disconnect(conn);
                }
            }
            ProtoOp::ToServer { n } => {
                let n = if n == 0 { usize::MAX } else { usize::from(n) };
                for _ in 0..n {
                    let (Some(conn), Some(m)) = (self.link, self.c2s.pop_front()) else {
                        break;
                    };
                    self.server_message(conn, &m);
                }
            }
            ProtoOp::ToClient { n } => {
                let twice = n & 128 != 0;
                let n = match n & 127 {
                    0 => usize::MAX,
                    n => usize::from(n),
                };
                for i in 0..n {
                    let Some(m) = self.s2c.pop_front() else {
                        break;
                    };
                    self.client_message(&m);
                    if i == 0 && twice {
                        self.client_message(&m);
                    }
                }
            }
            ProtoOp::Drop { which } => {
                if which & 1 != 0 {
                    self.s2c.pop_front();
                } else {
                    self.c2s.pop_front();
                }
            }
            ProtoOp::Accept { sel } => {
                if let Some(conn) = self.pick(sel) {
                    self.server_accept(conn);
                }
            }
            ProtoOp::Refuse { sel, reason } => {
                if let Some(conn) = self.pick(sel) {
                    self.server_refuse(conn, "r".repeat(usize::from(reason)));
                }
            }
            ProtoOp::Respond { sel, status } => {
                let status = STATUSES[usize::from(status % 10)];
                let target = match self.app.get(usize::from(sel)) {
                    Some(&(conn, id)) => Some((conn, id)),
                    None => self.pick(sel).map(|conn| (conn, u64::from(sel))),
                };
                if let Some((conn, id)) = target {
                    self.server_respond(conn, result_with(id, status));
                }
            }
            ProtoOp::Publish { stream, len } => {
                self.server_publish(STREAMS[usize::from(stream % 4)], len);
            }
            ProtoOp::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.client_timeout();
            }
            ProtoOp::Conn { sel } => {
                if sel & 1 != 0 {
                    self.server_connect();
                } else if let Some(conn) = self.pick(sel >> 1) {
                    self.server_disconnect(conn);
                }
            }
            ProtoOp::ClientBytes { text, bytes } => {
                let m = as_message(&bytes, text & 1 != 0);
                self.client_message(&m);
            }
            ProtoOp::ServerBytes { sel, text, bytes } => {
                if let Some(conn) = self.pick(sel) {
                    let m = as_message(&bytes, text & 1 != 0);
                    self.server_message(conn, &m);
                }
            }
            ProtoOp::Body {
                dest,
                kind,
                a,
                b,
                c,
                version,
            } => {
                let body = made_body(kind, a, b, c, self.epoch);
                let version = match version % 6 {
                    4 => 0,
                    5 => 2,
                    _ => PROTOCOL_VERSION,
                };
                let bytes = Envelope {
                    version,
                    body: Some(body),
                }
                .encode_to_vec();
                let m = Message::binary(bytes);
                if dest & 1 == 0 {
                    self.client_message(&m);
                } else if let Some(conn) = self.pick(dest >> 1) {
                    self.server_message(conn, &m);
                }
            }
        }
    }

    /// Client `handle_timeout(now)`: every pending request whose deadline
    /// passed fails with `Timeout`, earliest first.
    fn client_timeout(&mut self) {
        self.client.handle_timeout(self.now);
        let mut due: Vec<(Instant, u64)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.state == ReqState::Pending && r.deadline <= self.now)
            .map(|(&id, r)| (r.deadline, id))
            .collect();
        due.sort();
        let mut want = Vec::new();
        for (_, id) in due {
            self.fail(id, RequestError::Timeout, &mut want);
        }
        self.client_after(want);
        if let Some(t) = self.client.poll_timeout() {
            assert!(
                t > self.now,
                "a deadline at or before now survived handle_timeout"
            );
        }
    }

    /// The end of a run: the application accepts every registration and
    /// answers every request it was handed (each `respond` must succeed and
    /// send its result, except on a replaced connection, where it must be
    /// refused and send nothing), everything in flight is delivered, then
    /// time runs past every deadline: no client request is left pending.
    fn finish(&mut self) {
        for _ in 0..4 {
            let registering: Vec<ConnectionId> = self
                .conns
                .iter()
                .filter(|(_, c)| matches!(c.state, SState::Registering { .. }))
                .map(|(&id, _)| id)
                .collect();
            for conn in registering {
                self.server_accept(conn);
            }
            for (conn, id) in self.app.clone() {
                self.server_respond(conn, result_with(id, Status::Ok as i32));
            }
            self.step(ProtoOp::ToServer { n: 0 });
            self.step(ProtoOp::ToClient { n: 0 });
        }
        for (conn, id) in self.app.clone() {
            self.server_respond(conn, result_with(id, Status::Ok as i32));
        }
        self.now += Duration::from_secs(86_400);
        self.client_timeout();
        assert_eq!(
            self.client.pending(),
            0,
            "requests pending past every deadline"
        );
        assert_eq!(self.client.poll_timeout(), None);
    }
}

fn as_message(bytes: &[u8], text: bool) -> Message {
    if text {
        Message::text(String::from_utf8_lossy(bytes).into_owned())
    } else {
        Message::binary(bytes.to_vec())
    }
}

/// `proto_envelope`. Input: a mode byte. Bit 0 clear: the rest is one
/// message for [`decode`] (a text message when bit 1 is set), checked by
/// [`check_decode`]. Bit 0 set: three settings bytes, then [`ProtoOp`]s:
///
/// - `c`, the client: bits 0-1 `max_pending` (1, 2, 4, 1024); bit 2
///   `OnReconnect::Fail` (else `Resend`); bits 3-5 subscribe to `ticks`,
///   `news`, `ticks` again; bits 6-7 its client id ([`client_id`]);
/// - `d`, the server: bits 0-1 `max_in_flight` (1, 2, 4, 256); bits 2-3
///   `history` (0, 1, 3, 1024); bits 4-5 `max_connections` (1, 2, 3,
///   10 000); bits 6-7 `max_streams_per_client` (0, 1, 2, 64);
/// - `e`: bits 0-1 the server's epoch (0, 1, 2, max); bits 2-3
///   `max_name_len` (256, 1, 4, 5); bits 4-5 the client's default request
///   timeout (10 s, 1 ms, 1 s, 0).
///
/// Every message either side takes goes through [`check_decode`] first,
/// and the error a session returns for it is `decode`'s (except that the
/// server reports a repeat of a request id in flight as a duplicate,
/// malformed or not). The harness keeps
/// a model of both sessions from their documentation and checks, after
/// every call, that the events and the messages sent are exactly the
/// model's:
///
/// - client: on every connection the registration goes first (client id,
///   token, each subscribed stream resuming where its frames left off, the
///   last epoch), requests only after an accepted ack, then every pending
///   one not yet sent on this connection, in submission order, each once;
///   every request ends exactly once, with its `Result` (any status) or
///   `Failed` (timeout at its deadline, `ConnectionLost` under `Fail` for
///   the ones sent on a lost connection, `RegistrationRefused`, a malformed
///   answer carrying its id), unless cancelled; a result for no pending
///   request is `UnmatchedResult`; frames per stream in order, holes
///   reported as `Gap` before the frame after them, older ones as
///   `Duplicate`, a new epoch (or numbering that went backwards) as
///   `StreamReset`; at most `max_pending` requests; `request` hands back
///   what it refuses; `poll_timeout` is the earliest deadline; `pending`,
///   `is_connected`, `is_registered` and `server_epoch` agree;
/// - server: a connection's first message must be a `Register` (one that
///   breaks a rule is refused at once, a good one awaits the application);
///   every request that arrives gets exactly one `Result` (not registered,
///   held then run or refused, too many in flight, malformed, other
///   version; or the application's), a repeated id in flight, well-formed
///   or not, is dropped as a duplicate with no result; at most
///   `max_in_flight` requests in flight per connection; `respond` fails
///   for an unknown or replaced connection or a request not in flight and
///   sends nothing; an accepted registration sends the ack first, then the
///   frames each resuming stream missed, then live frames in sequence, and
///   replaces the client's previous connection, which from then on gets
///   nothing, has nothing it sends taken, and has its requests in flight
///   forgotten; `publish` numbers frames per stream from 1 and sends them
///   to the subscribers only; at most `max_connections`; nothing is sent to
///   a closed connection; no message for an unknown connection is taken.
///
/// At the end the application accepts every registration and answers
/// every request it was handed, all in flight is delivered, and time runs
/// past every deadline: no client request is left pending.
pub fn run_proto_envelope(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Some(mode) = take_u8(&mut u) else { return };
    if mode & 1 == 0 {
        let bytes = take_bytes(&mut u, usize::MAX);
        let _ = check_decode(bytes, mode & 2 != 0);
        return;
    }
    let c = take_u8(&mut u).unwrap_or(0);
    let d = take_u8(&mut u).unwrap_or(0);
    let e = take_u8(&mut u).unwrap_or(0);
    let trace = std::env::var_os("WHARF_FUZZ_TRACE").is_some();
    let mut world = World::new(c, d, e, Instant::now(), trace);
    let mut steps = 0;
    while let Some(op) = ProtoOp::parse(&mut u) {
        if trace {
            eprintln!("op {op:?}");
        }
        world.step(op);
        steps += 1;
        if steps >= MAX_STEPS {
            break;
        }
    }
    world.finish();
}
