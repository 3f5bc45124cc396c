//! permessage-deflate negotiation (RFC 7692 §5, §7.1) over the
//! `Sec-WebSocket-Extensions` header (RFC 6455 §9.1).
//!
//! A client builds its offer from its [`DeflateConfig`] ([`ClientOffer`]) and
//! checks the server's answer against it ([`accept_response`]); a server
//! picks the first acceptable offer of a request ([`negotiate`]). Both end
//! with the same [`DeflateParams`].

use super::{is_tchar, trim_ows, values};
use crate::config::DeflateConfig;
use crate::error::{ExtensionError, HandshakeError};

/// The extension's registered name (RFC 7692 §7).
pub(crate) const NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The largest LZ77 window (and the one used when no limit was agreed).
const MAX_WINDOW_BITS: u8 = 15;

/// The permessage-deflate parameters both sides agreed on (RFC 7692 §7.1):
/// what each side's compressor may do. Read it with
/// [`Connection::deflate`](crate::Connection::deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its compressor after every message (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message (§7.1.1.2),
    /// because the server asked it to or the client said it would.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window of the server's compressor, 8 to 15 (§7.1.2.1).
    /// A wharf endpoint held to 8 sends its messages uncompressed, since zlib
    /// cannot compress with a 256-byte window.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window of the client's compressor, 8 to 15 (§7.1.2.2).
    pub client_max_window_bits: u8,
}

/// What a client offered (one offer, RFC 7692 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientOffer {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    /// `None`: the parameter is left out; `Some(None)`: sent without a value
    /// ("the server may limit my window"); `Some(Some(n))`: sent with a value.
    pub(crate) client_max_window_bits: Option<Option<u8>>,
}

impl ClientOffer {
    /// The offer a client with `cfg` sends. `client_max_window_bits` is always
    /// in it, so that a server may limit our window (§7.1.2.2) rather than
    /// decline.
    pub(crate) fn new(cfg: &DeflateConfig) -> ClientOffer {
        ClientOffer {
            server_no_context_takeover: cfg.peer_no_context_takeover,
            client_no_context_takeover: cfg.no_context_takeover,
            server_max_window_bits: (cfg.peer_max_window_bits < MAX_WINDOW_BITS)
                .then_some(cfg.peer_max_window_bits),
            client_max_window_bits: Some(
                (cfg.max_window_bits < MAX_WINDOW_BITS).then_some(cfg.max_window_bits),
            ),
        }
    }

    /// The `Sec-WebSocket-Extensions` value.
    pub(crate) fn header_value(&self) -> String {
        let mut v = NAME.to_owned();
        if self.client_no_context_takeover {
            v.push_str("; ");
            v.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
        }
        if self.server_no_context_takeover {
            v.push_str("; ");
            v.push_str(SERVER_NO_CONTEXT_TAKEOVER);
        }
        if let Some(bits) = self.server_max_window_bits {
            v.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={bits}"));
        }
        match self.client_max_window_bits {
            None => {}
            Some(None) => {
                v.push_str("; ");
                v.push_str(CLIENT_MAX_WINDOW_BITS);
            }
            Some(Some(bits)) => v.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={bits}")),
        }
        v
    }
}

/// One element of an extension list: its name and parameters, names in
/// ASCII lower case, quoted values unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// Parses every `Sec-WebSocket-Extensions` header of `headers` as one list
/// (RFC 6455 §9.1, RFC 7230 §7 `#rule`: empty elements are skipped):
///
/// ```text
/// extension-list = 1#extension
/// extension      = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// Whitespace is allowed around `,`, `;` and `=`. A quoted value must be a
/// token once unescaped (§9.1). `None` when the syntax is broken anywhere.
fn parse_list(headers: &[(String, Vec<u8>)]) -> Option<Vec<Element>> {
    let mut out = Vec::new();
    for value in values(headers, "Sec-WebSocket-Extensions") {
        let mut p = Parser { s: value, pos: 0 };
        loop {
            p.skip_ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = p.token()?;
            let mut params = Vec::new();
            loop {
                p.skip_ows();
                match p.peek() {
                    None | Some(b',') => break,
                    Some(b';') => {
                        p.pos += 1;
                        p.skip_ows();
                        let pname = p.token()?;
                        p.skip_ows();
                        let pvalue = if p.peek() == Some(b'=') {
                            p.pos += 1;
                            p.skip_ows();
                            Some(if p.peek() == Some(b'"') {
                                p.quoted_token()?
                            } else {
                                p.token()?
                            })
                        } else {
                            None
                        };
                        params.push((pname, pvalue));
                    }
                    Some(_) => return None,
                }
            }
            out.push(Element { name, params });
        }
    }
    Some(out)
}

/// A cursor over one header value.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `1*tchar`, lower-cased.
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let t = self.s.get(start..self.pos)?;
        if t.is_empty() {
            return None;
        }
        // tchar is ASCII.
        Some(String::from_utf8_lossy(t).to_ascii_lowercase())
    }

    /// A quoted-string (RFC 7230 §3.2.6) whose unescaped content is a token.
    fn quoted_token(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut v = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek()?;
                    self.pos += 1;
                    v.push(escaped);
                }
                _ => v.push(b),
            }
        }
        if v.is_empty() || !v.iter().copied().all(is_tchar) {
            return None;
        }
        Some(String::from_utf8_lossy(&v).to_ascii_lowercase())
    }
}

/// A window size: a decimal integer 8 to 15 without leading zeroes (§7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    match v {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => v.parse().ok(),
        _ => None,
    }
}

/// An offer as the server reads it (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads one offer's parameters; `None` when the server must decline it
/// (§5.1): a parameter not defined for an offer, an invalid value, or a
/// parameter given twice.
fn parse_offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    for (i, (name, value)) in params.iter().enumerate() {
        if params[..i].iter().any(|(n, _)| n == name) {
            return None;
        }
        match (name.as_str(), value) {
            (SERVER_NO_CONTEXT_TAKEOVER, None) => offer.server_no_context_takeover = true,
            (CLIENT_NO_CONTEXT_TAKEOVER, None) => offer.client_no_context_takeover = true,
            (SERVER_MAX_WINDOW_BITS, Some(v)) => {
                offer.server_max_window_bits = Some(window_bits(v)?)
            }
            (CLIENT_MAX_WINDOW_BITS, None) => offer.client_max_window_bits = Some(None),
            (CLIENT_MAX_WINDOW_BITS, Some(v)) => {
                offer.client_max_window_bits = Some(Some(window_bits(v)?));
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Server side: the first permessage-deflate offer in `headers` that can be
/// accepted, answered per `cfg`. Returns the response's
/// `Sec-WebSocket-Extensions` value and the agreed parameters, or `None` to
/// decline (no valid offer, or a header that is not a valid extension list).
///
/// The answer (§7.1):
///
/// - `server_no_context_takeover` when the client asked for it (§7.1.1.1:
///   accepting the offer means granting it) or `cfg.no_context_takeover`.
/// - `client_no_context_takeover` when the client said it would not take
///   over context anyway (§7.1.1.2) or `cfg.peer_no_context_takeover`.
/// - `server_max_window_bits=N`, N the smaller of the client's limit and
///   `cfg.max_window_bits`, when the client sent a limit (it must then be
///   answered, §7.1.2.1) or N is below 15. At 8 this side sends its messages
///   uncompressed, which RFC 7692 allows, rather than decline.
/// - `client_max_window_bits=N` only when the client offered the parameter
///   (§7.1.2.2): N the smaller of its value (if any) and
///   `cfg.peer_max_window_bits`, left out when that is 15 and the client gave
///   no value.
pub(crate) fn negotiate(
    headers: &[(String, Vec<u8>)],
    cfg: &DeflateConfig,
) -> Option<(String, DeflateParams)> {
    let offer = parse_list(headers)?
        .into_iter()
        .filter(|e| e.name == NAME)
        .find_map(|e| parse_offer(&e.params))?;

    let server_bits = offer
        .server_max_window_bits
        .unwrap_or(MAX_WINDOW_BITS)
        .min(cfg.max_window_bits);
    let client_bits = match offer.client_max_window_bits {
        None => None,
        Some(None) => {
            (cfg.peer_max_window_bits < MAX_WINDOW_BITS).then_some(cfg.peer_max_window_bits)
        }
        Some(Some(v)) => Some(v.min(cfg.peer_max_window_bits)),
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover || cfg.no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || cfg.peer_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits.unwrap_or(MAX_WINDOW_BITS),
    };

    let mut answer = NAME.to_owned();
    if params.server_no_context_takeover {
        answer.push_str("; ");
        answer.push_str(SERVER_NO_CONTEXT_TAKEOVER);
    }
    if params.client_no_context_takeover {
        answer.push_str("; ");
        answer.push_str(CLIENT_NO_CONTEXT_TAKEOVER);
    }
    if offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS {
        answer.push_str(&format!("; {SERVER_MAX_WINDOW_BITS}={server_bits}"));
    }
    if let Some(bits) = client_bits {
        answer.push_str(&format!("; {CLIENT_MAX_WINDOW_BITS}={bits}"));
    }
    Some((answer, params))
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` against
/// `offer` (RFC 6455 §4.1 item 5, RFC 7692 §5.2, §7.1). `Ok(None)`: the server
/// declined compression.
///
/// Fails with [`HandshakeError::UnofferedExtension`] for any other extension
/// and with [`HandshakeError::Extension`] when the answer names
/// permessage-deflate twice, has a parameter that is unknown, repeated or has
/// a bad value (a window size must be 8 to 15, and `client_max_window_bits`
/// needs a value in a response), does not grant `server_no_context_takeover`
/// or `server_max_window_bits` that were asked for, answers a larger window
/// than offered, or limits the client's window when the offer did not allow
/// it.
pub(crate) fn accept_response(
    headers: &[(String, Vec<u8>)],
    offer: &ClientOffer,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let elements = parse_list(headers).ok_or(ExtensionError::Malformed)?;
    let mut chosen = None;
    for e in &elements {
        if e.name != NAME {
            return Err(HandshakeError::UnofferedExtension(e.name.clone()));
        }
        if chosen.replace(e).is_some() {
            return Err(ExtensionError::DuplicateExtension.into());
        }
    }
    let Some(element) = chosen else {
        return Ok(None);
    };

    let mut params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: MAX_WINDOW_BITS,
        client_max_window_bits: match offer.client_max_window_bits {
            Some(Some(bits)) => bits,
            _ => MAX_WINDOW_BITS,
        },
    };
    let mut server_bits_answered = false;
    for (i, (name, value)) in element.params.iter().enumerate() {
        if element.params[..i].iter().any(|(n, _)| n == name) {
            return Err(ExtensionError::DuplicateParameter(name.clone()).into());
        }
        let invalid = || ExtensionError::InvalidValue {
            name: name.clone(),
            value: value.clone(),
        };
        match name.as_str() {
            SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER => {
                if value.is_some() {
                    return Err(invalid().into());
                }
                if name == SERVER_NO_CONTEXT_TAKEOVER {
                    params.server_no_context_takeover = true;
                } else {
                    params.client_no_context_takeover = true;
                }
            }
            SERVER_MAX_WINDOW_BITS => {
                let bits = value.as_deref().and_then(window_bits).ok_or_else(invalid)?;
                if let Some(offered) = offer.server_max_window_bits {
                    if bits > offered {
                        return Err(ExtensionError::WindowTooLarge {
                            name: SERVER_MAX_WINDOW_BITS,
                            offered,
                            answered: bits,
                        }
                        .into());
                    }
                }
                params.server_max_window_bits = bits;
                server_bits_answered = true;
            }
            CLIENT_MAX_WINDOW_BITS => {
                let bits = value.as_deref().and_then(window_bits).ok_or_else(invalid)?;
                match offer.client_max_window_bits {
                    None => {
                        return Err(
                            ExtensionError::UnofferedParameter(CLIENT_MAX_WINDOW_BITS).into()
                        )
                    }
                    Some(Some(offered)) if bits > offered => {
                        return Err(ExtensionError::WindowTooLarge {
                            name: CLIENT_MAX_WINDOW_BITS,
                            offered,
                            answered: bits,
                        }
                        .into())
                    }
                    Some(_) => params.client_max_window_bits = bits,
                }
            }
            _ => return Err(ExtensionError::UnknownParameter(name.clone()).into()),
        }
    }
    if offer.server_no_context_takeover && !params.server_no_context_takeover {
        return Err(ExtensionError::MissingParameter(SERVER_NO_CONTEXT_TAKEOVER).into());
    }
    if offer.server_max_window_bits.is_some() && !server_bits_answered {
        return Err(ExtensionError::MissingParameter(SERVER_MAX_WINDOW_BITS).into());
    }
    Ok(Some(params))
}

/// True when `headers` name any extension (used when none was offered).
pub(crate) fn first_extension(headers: &[(String, Vec<u8>)]) -> Option<&[u8]> {
    values(headers, "Sec-WebSocket-Extensions")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .find(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> Vec<(String, Vec<u8>)> {
        vec![("Sec-WebSocket-Extensions".to_owned(), v.as_bytes().to_vec())]
    }

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    /// Server side: the answer to `offer` with the default config.
    fn answer(offer: &str) -> Option<String> {
        negotiate(&h(offer), &cfg()).map(|(a, _)| a)
    }

    #[test]
    fn parses_lists_params_and_quoted_values() {
        let list = parse_list(&[
            (
                "Sec-WebSocket-Extensions".to_owned(),
                b"Foo, permessage-deflate ; client_max_window_bits = \"10\";x,,".to_vec(),
            ),
            (
                "sec-websocket-extensions".to_owned(),
                b"bar; a=\"b\\c\"".to_vec(),
            ),
        ])
        .expect("valid");
        assert_eq!(
            list,
            vec![
                Element {
                    name: "foo".into(),
                    params: vec![]
                },
                Element {
                    name: NAME.into(),
                    params: vec![
                        ("client_max_window_bits".into(), Some("10".into())),
                        ("x".into(), None)
                    ]
                },
                Element {
                    name: "bar".into(),
                    params: vec![("a".into(), Some("bc".into()))]
                },
            ]
        );
        assert_eq!(parse_list(&h("")), Some(vec![]));
        for bad in [
            "permessage-deflate;",
            "permessage-deflate; =1",
            "permessage-deflate; a=",
            "permessage-deflate; a=\"\"",
            "permessage-deflate; a=\"1 0\"",
            "permessage-deflate; a=\"10",
            "permessage-deflate; a=\"1\\",
            "permessage-deflate; a=1 0",
            "permessage-deflate x",
            "permessage-deflate; a=b=c",
            "\"x\"",
            "a/b",
            "; a",
        ] {
            assert_eq!(parse_list(&h(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn window_bits_are_8_to_15_without_leading_zeroes() {
        for v in 8..=15u8 {
            assert_eq!(window_bits(&v.to_string()), Some(v));
        }
        for v in [
            "7", "16", "0", "08", "015", "+9", "9.0", "", " 9", "1e1", "a",
        ] {
            assert_eq!(window_bits(v), None, "{v:?}");
        }
    }

    #[test]
    fn client_offer_follows_the_config() {
        assert_eq!(
            ClientOffer::new(&cfg()).header_value(),
            "permessage-deflate; client_max_window_bits"
        );
        let c = DeflateConfig {
            max_window_bits: 12,
            peer_max_window_bits: 9,
            no_context_takeover: true,
            peer_no_context_takeover: true,
            ..cfg()
        };
        assert_eq!(
            ClientOffer::new(&c).header_value(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=12"
        );
    }

    #[test]
    fn server_accepts_a_plain_offer() {
        let (a, p) = negotiate(&h("permessage-deflate"), &cfg()).expect("accepted");
        assert_eq!(a, "permessage-deflate");
        assert_eq!(p, params(false, false, 15, 15));
    }

    #[test]
    fn server_grants_server_no_context_takeover() {
        let (a, p) =
            negotiate(&h("permessage-deflate; server_no_context_takeover"), &cfg()).expect("ok");
        assert_eq!(a, "permessage-deflate; server_no_context_takeover");
        assert!(p.server_no_context_takeover);
        // And offers it unasked when configured to.
        let c = DeflateConfig {
            no_context_takeover: true,
            ..cfg()
        };
        let (a, _) = negotiate(&h("permessage-deflate"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn server_echoes_or_asks_client_no_context_takeover() {
        let (a, p) =
            negotiate(&h("permessage-deflate; client_no_context_takeover"), &cfg()).expect("ok");
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover);
        let c = DeflateConfig {
            peer_no_context_takeover: true,
            ..cfg()
        };
        let (a, p) = negotiate(&h("permessage-deflate"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover);
    }

    #[test]
    fn server_max_window_bits_is_answered_at_or_below_the_offer() {
        for bits in 8..=15u8 {
            let (a, p) = negotiate(
                &h(&format!(
                    "permessage-deflate; server_max_window_bits={bits}"
                )),
                &cfg(),
            )
            .expect("ok");
            assert_eq!(
                a,
                format!("permessage-deflate; server_max_window_bits={bits}")
            );
            assert_eq!(p.server_max_window_bits, bits);
        }
        // Our own smaller limit wins, and is announced unasked.
        let c = DeflateConfig {
            max_window_bits: 10,
            ..cfg()
        };
        let (a, p) =
            negotiate(&h("permessage-deflate; server_max_window_bits=12"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(p.server_max_window_bits, 10);
        let (a, _) = negotiate(&h("permessage-deflate"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; server_max_window_bits=10");
    }

    #[test]
    fn client_max_window_bits_rules() {
        // Bare in the offer: left out of the answer unless we want a limit.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate")
        );
        let c = DeflateConfig {
            peer_max_window_bits: 9,
            ..cfg()
        };
        let (a, p) = negotiate(&h("permessage-deflate; client_max_window_bits"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; client_max_window_bits=9");
        assert_eq!(p.client_max_window_bits, 9);
        // With a value: answered at or below it.
        let (a, p) =
            negotiate(&h("permessage-deflate; client_max_window_bits=12"), &cfg()).expect("ok");
        assert_eq!(a, "permessage-deflate; client_max_window_bits=12");
        assert_eq!(p.client_max_window_bits, 12);
        let (a, _) =
            negotiate(&h("permessage-deflate; client_max_window_bits=12"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate; client_max_window_bits=9");
        // Not in the offer: never answered (§7.1.2.2), and the client may
        // use a 15-bit window.
        let (a, p) = negotiate(&h("permessage-deflate"), &c).expect("ok");
        assert_eq!(a, "permessage-deflate");
        assert_eq!(p.client_max_window_bits, 15);
    }

    #[test]
    fn server_declines_bad_offers_and_takes_the_next() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=x",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=09",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; x-unknown",
            "permessage-deflate; max_window_bits=10",
            "x-webkit-deflate-frame",
            "deflate-frame; no_context_takeover",
        ] {
            assert_eq!(answer(bad), None, "{bad:?} must be declined");
            // A valid offer after it is taken.
            let list = format!("{bad}, permessage-deflate; client_max_window_bits=11");
            assert_eq!(
                answer(&list).as_deref(),
                Some("permessage-deflate; client_max_window_bits=11"),
                "{list:?}"
            );
        }
        // The first acceptable offer wins.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=9, permessage-deflate").as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        // Quoted values are values.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=\"10\"").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        // A header that is not an extension list is declined whole.
        assert_eq!(
            answer("permessage-deflate; a=\"b, permessage-deflate"),
            None
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=\"\", permessage-deflate"),
            None
        );
        assert_eq!(negotiate(&[], &cfg()), None);
    }

    #[test]
    fn server_answers_the_autobahn_offers() {
        for (offer, expect) in [
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits",
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=9",
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=9",
            ),
        ] {
            assert_eq!(answer(offer).as_deref(), Some(expect), "{offer}");
        }
    }

    /// Client side: the server's answer to the default offer.
    fn check(answer: &str, offer: &ClientOffer) -> Result<Option<DeflateParams>, HandshakeError> {
        accept_response(&h(answer), offer)
    }

    fn default_offer() -> ClientOffer {
        ClientOffer::new(&cfg())
    }

    #[test]
    fn client_takes_valid_answers() {
        let o = default_offer();
        assert_eq!(check("", &o), Ok(None));
        assert_eq!(
            check("permessage-deflate", &o),
            Ok(Some(params(false, false, 15, 15)))
        );
        assert_eq!(
            check(
                "Permessage-Deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=\"9\"",
                &o
            ),
            Ok(Some(params(true, true, 10, 9)))
        );
        // An unasked server_max_window_bits is fine (§7.1.2.1), so is 8.
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=8", &o),
            Ok(Some(params(false, false, 8, 15)))
        );
        // The client's own hint stands even when not echoed.
        let hinted = ClientOffer {
            client_no_context_takeover: true,
            ..o
        };
        assert_eq!(
            check("permessage-deflate", &hinted),
            Ok(Some(params(false, true, 15, 15)))
        );
        // A limit we offered binds without an answer.
        let limited = ClientOffer {
            client_max_window_bits: Some(Some(11)),
            ..o
        };
        assert_eq!(
            check("permessage-deflate", &limited),
            Ok(Some(params(false, false, 15, 11)))
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=10", &limited),
            Ok(Some(params(false, false, 15, 10)))
        );
    }

    #[test]
    fn client_fails_bad_answers() {
        let o = default_offer();
        let ext = |e: ExtensionError| Err(HandshakeError::Extension(e));
        let invalid = |name: &str, value: Option<&str>| {
            ext(ExtensionError::InvalidValue {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            })
        };
        assert_eq!(
            check("x-foo", &o),
            Err(HandshakeError::UnofferedExtension("x-foo".to_owned()))
        );
        assert_eq!(
            check("permessage-deflate, x-foo", &o),
            Err(HandshakeError::UnofferedExtension("x-foo".to_owned()))
        );
        assert_eq!(
            check("permessage-deflate, permessage-deflate", &o),
            ext(ExtensionError::DuplicateExtension)
        );
        assert_eq!(
            check("permessage-deflate;", &o),
            ext(ExtensionError::Malformed)
        );
        assert_eq!(
            check("permessage-deflate; mystery", &o),
            ext(ExtensionError::UnknownParameter("mystery".to_owned()))
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                &o
            ),
            ext(ExtensionError::DuplicateParameter(
                "server_no_context_takeover".to_owned()
            ))
        );
        assert_eq!(
            check(
                "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
                &o
            ),
            ext(ExtensionError::DuplicateParameter(
                "client_max_window_bits".to_owned()
            ))
        );
        assert_eq!(
            check("permessage-deflate; server_no_context_takeover=1", &o),
            invalid("server_no_context_takeover", Some("1"))
        );
        assert_eq!(
            check("permessage-deflate; client_no_context_takeover=\"x\"", &o),
            invalid("client_no_context_takeover", Some("x"))
        );
        for v in ["7", "16", "08", "x"] {
            assert_eq!(
                check(
                    &format!("permessage-deflate; server_max_window_bits={v}"),
                    &o
                ),
                invalid("server_max_window_bits", Some(v))
            );
            assert_eq!(
                check(
                    &format!("permessage-deflate; client_max_window_bits={v}"),
                    &o
                ),
                invalid("client_max_window_bits", Some(v))
            );
        }
        // Window sizes need a value in a response.
        assert_eq!(
            check("permessage-deflate; server_max_window_bits", &o),
            invalid("server_max_window_bits", None)
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits", &o),
            invalid("client_max_window_bits", None)
        );
    }

    #[test]
    fn client_fails_answers_that_do_not_grant_the_offer() {
        let o = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(Some(12)),
        };
        let ext = |e: ExtensionError| Err(HandshakeError::Extension(e));
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=10", &o),
            ext(ExtensionError::MissingParameter(
                "server_no_context_takeover"
            ))
        );
        assert_eq!(
            check("permessage-deflate; server_no_context_takeover", &o),
            ext(ExtensionError::MissingParameter("server_max_window_bits"))
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                &o
            ),
            ext(ExtensionError::WindowTooLarge {
                name: "server_max_window_bits",
                offered: 10,
                answered: 11
            })
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
                 client_max_window_bits=13",
                &o
            ),
            ext(ExtensionError::WindowTooLarge {
                name: "client_max_window_bits",
                offered: 12,
                answered: 13
            })
        );
        assert_eq!(
            check(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                &o
            ),
            Ok(Some(params(true, false, 9, 12)))
        );
        // client_max_window_bits answered though never offered.
        let no_cmwb = ClientOffer {
            client_max_window_bits: None,
            ..default_offer()
        };
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=10", &no_cmwb),
            ext(ExtensionError::UnofferedParameter("client_max_window_bits"))
        );
    }

    #[test]
    fn every_server_answer_satisfies_the_client() {
        // Whatever the two configs, the server's answer to the client's offer
        // passes the client's checks and both sides agree.
        let bools = [false, true];
        for sbits in 9..=15u8 {
            for pbits in 8..=15u8 {
                for &nct in &bools {
                    for &pnct in &bools {
                        let client = DeflateConfig {
                            max_window_bits: sbits,
                            peer_max_window_bits: pbits,
                            no_context_takeover: nct,
                            peer_no_context_takeover: pnct,
                            ..cfg()
                        };
                        let server = DeflateConfig {
                            max_window_bits: 24 - sbits,
                            peer_max_window_bits: 23 - pbits,
                            no_context_takeover: pnct,
                            peer_no_context_takeover: nct,
                            ..cfg()
                        };
                        let offer = ClientOffer::new(&client);
                        let (answer, server_params) =
                            negotiate(&h(&offer.header_value()), &server).expect("accepted");
                        let client_params = accept_response(&h(&answer), &offer)
                            .expect("valid answer")
                            .expect("accepted");
                        assert_eq!(client_params, server_params, "{offer:?} -> {answer}");
                        assert!(client_params.client_max_window_bits <= client.max_window_bits);
                        assert!(
                            client_params.server_max_window_bits <= client.peer_max_window_bits
                        );
                        assert!(client_params.server_max_window_bits <= server.max_window_bits);
                    }
                }
            }
        }
    }

    #[test]
    fn first_extension_for_unoffered_answers() {
        assert_eq!(
            first_extension(&h(" , x-foo; a=1")),
            Some(&b"x-foo; a=1"[..])
        );
        assert_eq!(first_extension(&h(" ")), None);
    }
}
