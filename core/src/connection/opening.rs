//! The opening handshake's outcome: the server's accept / reject decision,
//! the HTTP head parsed on either side, and the move to Open.

use crate::deflate::Deflate;
use crate::error::{ConfigError, Error, HandshakeError};
use crate::event::{Event, Open};
use crate::handshake::{self, Accept, DeflateParams, Reject};

use super::state::Phase;
use super::{Connection, Role};

impl Connection {
    /// Server: accepts the request reported by [`Event::Request`].
    pub fn accept(&mut self, accept: Accept) -> Result<(), ConfigError> {
        if self.phase != Phase::AwaitDecision {
            return Err(ConfigError::InvalidState("no upgrade request is waiting"));
        }
        let request = self
            .request
            .take()
            .ok_or(ConfigError::InvalidState("no upgrade request is waiting"))?;
        let deflate = self
            .config
            .deflate
            .as_ref()
            .and_then(|cfg| handshake::negotiate_deflate(request.headers(), cfg));
        let extensions = deflate.as_ref().map(|(answer, _)| answer.as_str());
        if let Err(e) = handshake::encode_accept(&request, &accept, extensions, &mut self.out) {
            self.request = Some(request);
            return Err(e);
        }
        self.start_deflate(deflate.map(|(_, params)| params));
        self.open(accept.subprotocol, None);
        // Frames the client sent right behind its request.
        self.process();
        Ok(())
    }

    /// Server: rejects the request reported by [`Event::Request`] with an HTTP
    /// error response; the connection then ends.
    pub fn reject(&mut self, reject: Reject) -> Result<(), ConfigError> {
        if self.phase != Phase::AwaitDecision {
            return Err(ConfigError::InvalidState("no upgrade request is waiting"));
        }
        handshake::encode_reject(&reject, &mut self.out)?;
        self.request = None;
        self.fail(Error::Handshake(HandshakeError::RejectedByApplication(
            reject.status,
        )));
        Ok(())
    }

    /// Looks for a complete HTTP head; returns true when the phase changed.
    pub(super) fn process_head(&mut self) -> bool {
        let max = self.config.max_header_bytes;
        let len = match self.head.scan(&self.inbuf, max) {
            Ok(Some(len)) => len,
            Ok(None) => return false,
            Err(e) => {
                if self.role == Role::Server {
                    handshake::encode_refusal(&e, &mut self.out);
                }
                self.fail(Error::Handshake(e));
                return true;
            }
        };
        let head = self.inbuf.split_to(len);
        match self.role {
            Role::Client => {
                match handshake::parse_response(
                    &head,
                    &self.client_key,
                    &self.offered,
                    self.deflate_offer.as_ref(),
                    self.config.max_headers,
                ) {
                    Ok(response) => {
                        self.start_deflate(response.deflate().copied());
                        let subprotocol = response.subprotocol.clone();
                        self.open(subprotocol, Some(Box::new(response)));
                    }
                    Err(e) => self.fail(Error::Handshake(e)),
                }
            }
            Role::Server => match handshake::parse_request(&head, self.config.max_headers) {
                Ok(request) => {
                    self.request = Some(request.clone());
                    self.phase = Phase::AwaitDecision;
                    self.emit(Event::Request(Box::new(request)));
                }
                Err(e) => {
                    handshake::encode_refusal(&e, &mut self.out);
                    self.fail(Error::Handshake(e));
                }
            },
        }
        true
    }

    /// Sets up permessage-deflate once the handshake agreed on `params`.
    pub(super) fn start_deflate(&mut self, params: Option<DeflateParams>) {
        if let (Some(params), Some(cfg)) = (params, self.config.deflate.as_ref()) {
            self.deflate = Some(Box::new(Deflate::new(params, cfg, self.role)));
        }
    }

    pub(super) fn open(
        &mut self,
        subprotocol: Option<String>,
        response: Option<Box<handshake::Response>>,
    ) {
        self.phase = Phase::Open;
        self.timers.handshake = None;
        if let Some(interval) = self.config.ping_interval {
            self.timers.keepalive = Some(self.now + interval);
        }
        self.emit(Event::Open(Open {
            subprotocol,
            response,
        }));
    }
}
