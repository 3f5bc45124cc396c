//! The typed async server (feature `tokio`): a [`ServerSession`] driven on
//! `wharf-tokio`'s server, with the application's async handler.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::ToSocketAddrs;
use tokio::task::JoinHandle;
use wharf_core::{Bytes, CloseCode};
use wharf_tokio::{Incoming, SendError, ServerConfig, ServerHandle, ServerTls, WsWriter};

use crate::error::ServerError;
use crate::server::{ConnectionId, ServerEvent, ServerSession, ServerSessionConfig};
use crate::wire::{self, Register, Request, Status};

type BoxFuture = Pin<Box<dyn Future<Output = wire::Result> + Send>>;
type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;
type Authorize = Arc<dyn Fn(&Register) -> Result<(), String> + Send + Sync>;

/// Builds a [`Server`]; from [`Server::builder`].
pub struct ServerBuilder {
    session: ServerSessionConfig,
    ws: ServerConfig,
    epoch: Option<u64>,
    handler: Handler,
    authorize: Authorize,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("session", &self.session)
            .field("ws", &self.ws)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The session's bounds (connections, streams, in-flight requests,
    /// history).
    #[must_use]
    pub fn session_config(mut self, config: ServerSessionConfig) -> Self {
        self.session = config;
        self
    }

    /// Connection settings (the core's config, TLS, buffers); replaces any
    /// TLS set before.
    #[must_use]
    pub fn ws_config(mut self, config: ServerConfig) -> Self {
        self.ws = config;
        self
    }

    /// Serves `wss` with `tls`.
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.ws = self.ws.with_tls(tls);
        self
    }

    /// This run's epoch (default: from the system clock, different on each
    /// start). Clients see a new epoch as a restart.
    #[must_use]
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// The application: an async function from a [`Request`] to its
    /// [`Result`](wire::Result). Each request runs on a task of its own;
    /// the result's `request_id` is set to the request's. Default: every
    /// request is answered with [`Status::UnknownKind`].
    #[must_use]
    pub fn handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = wire::Result> + Send + 'static,
    {
        self.handler = Arc::new(move |request| Box::pin(handler(request)));
        self
    }

    /// Decides on every registration (check `auth_token`): `Err(reason)`
    /// refuses it. Runs inline and should not block. Default: accept all.
    #[must_use]
    pub fn authorize(
        mut self,
        authorize: impl Fn(&Register) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Arc::new(authorize);
        self
    }

    /// Binds `addr` and starts serving.
    ///
    /// # Errors
    ///
    /// The address cannot be bound ([`wharf_tokio::Error::Io`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<Server, wharf_tokio::Error> {
        let mut ws = wharf_tokio::Server::bind(addr, self.ws).await?;
        let local_addr = ws.local_addr()?;
        let epoch = self.epoch.unwrap_or_else(clock_epoch);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                session: ServerSession::new(self.session, epoch),
                writers: HashMap::new(),
                protocol_errors: 0,
            }),
            handler: self.handler,
            authorize: self.authorize,
        });
        let handle = ws.handle();
        let accept_shared = shared.clone();
        let accepting = tokio::spawn(async move {
            loop {
                match ws.accept().await {
                    Ok(incoming) => {
                        drop(tokio::spawn(serve(accept_shared.clone(), incoming)));
                    }
                    Err(wharf_tokio::Error::ShuttingDown) => break,
                    // e.g. out of file descriptors: keep serving, a little later.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        });
        Ok(Server {
            shared,
            handle,
            local_addr,
            epoch,
            accepting,
        })
    }
}

/// A typed async server: registrations checked, requests handed to an async
/// handler and answered, frames published to subscribers, over ws or wss.
///
/// ```no_run
/// use wharf_proto::{RequestResult, Server, Status};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::builder()
///     .authorize(|register| {
///         (register.auth_token == "secret").then_some(()).ok_or_else(|| "bad token".into())
///     })
///     .handler(|request| async move {
///         match request.kind.as_str() {
///             "echo" => RequestResult::ok(request.id, request.payload),
///             _ => RequestResult::error(request.id, Status::UnknownKind, "no such kind"),
///         }
///     })
///     .bind("127.0.0.1:9443")
///     .await?;
/// server.publish("ticks", "tick 1")?;
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    handle: ServerHandle,
    local_addr: SocketAddr,
    epoch: u64,
    accepting: JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    handler: Handler,
    authorize: Authorize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct State {
    session: ServerSession,
    writers: HashMap<ConnectionId, WsWriter>,
    protocol_errors: u64,
}

/// What must happen outside the lock after a session call.
#[derive(Default)]
struct Actions {
    requests: Vec<(ConnectionId, Request)>,
    /// Connections to close: too slow to keep up, or replaced.
    close: Vec<(WsWriter, CloseCode, &'static str)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes what the session queued; decides registrations; collects
    /// requests and closes.
    fn drain(&self, st: &mut State) -> Actions {
        let mut actions = Actions::default();
        loop {
            let mut moved = false;
            while let Some((to, message)) = st.session.poll_transmit() {
                moved = true;
                let Some(writer) = st.writers.get_mut(&to) else {
                    continue;
                };
                match writer.try_send(message) {
                    Ok(()) => {}
                    Err(SendError::Full(_)) => {
                        // It cannot keep up: rather than drop its results or
                        // frames, close it; it reconnects and resumes.
                        if let Some(writer) = st.writers.remove(&to) {
                            st.session.disconnect(to);
                            actions
                                .close
                                .push((writer, CloseCode::TRY_AGAIN_LATER, "too slow"));
                        }
                    }
                    // Closing: its reader task cleans up.
                    Err(_) => {}
                }
            }
            while let Some(event) = st.session.poll_event() {
                moved = true;
                match event {
                    ServerEvent::Register {
                        connection,
                        register,
                    } => {
                        let _ = match (self.authorize)(&register) {
                            Ok(()) => st.session.accept_registration(connection),
                            Err(reason) => st.session.refuse_registration(connection, reason),
                        };
                    }
                    ServerEvent::Request {
                        connection,
                        request,
                        ..
                    } => actions.requests.push((connection, request)),
                    ServerEvent::Replaced { old, .. } => {
                        if let Some(writer) = st.writers.remove(&old) {
                            st.session.disconnect(old);
                            actions
                                .close
                                .push((writer, CloseCode::POLICY_VIOLATION, "replaced"));
                        }
                    }
                }
            }
            if !moved {
                return actions;
            }
        }
    }

    fn publish(self: &Arc<Self>, stream: &str, payload: Bytes) -> Result<u64, ServerError> {
        let (sequence, actions) = {
            let mut st = self.lock();
            let sequence = st.session.publish(stream, payload)?;
            (sequence, self.drain(&mut st))
        };
        self.run(actions);
        Ok(sequence)
    }

    fn run(self: &Arc<Self>, actions: Actions) {
        for (connection, request) in actions.requests {
            let shared = self.clone();
            let id = request.id;
            let answer = (self.handler)(request);
            drop(tokio::spawn(async move {
                let mut result = answer.await;
                result.request_id = id;
                let actions = {
                    let mut st = shared.lock();
                    // The connection may be gone: the client resends or fails it.
                    let _ = st.session.respond(connection, result);
                    shared.drain(&mut st)
                };
                shared.run(actions);
            }));
        }
        for (mut writer, code, reason) in actions.close {
            drop(tokio::spawn(async move {
                let _ = writer.close(code, reason).await;
            }));
        }
    }
}

/// Publishes on a [`Server`]'s streams from any task; from
/// [`Server::publisher`]. Publishing after the server shut down only feeds
/// the history.
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// As [`Server::publish`].
    ///
    /// # Errors
    ///
    /// [`ServerError::EmptyStream`].
    pub fn publish(&self, stream: &str, payload: impl Into<Bytes>) -> Result<u64, ServerError> {
        self.shared.publish(stream, payload.into())
    }
}

/// One connection: its handshake, then its messages into the session.
async fn serve(shared: Arc<Shared>, incoming: Incoming) {
    let Ok(ws) = incoming.handshake().await else {
        return;
    };
    let (mut reader, mut writer) = ws.split();
    let connected = {
        let mut st = shared.lock();
        st.session.connect().ok()
    };
    let Some(connection) = connected else {
        let _ = writer
            .close(CloseCode::TRY_AGAIN_LATER, "too many connections")
            .await;
        return;
    };
    shared.lock().writers.insert(connection, writer);
    while let Some(Ok(message)) = reader.recv().await {
        let actions = {
            let mut st = shared.lock();
            if st.session.handle_message(connection, &message).is_err() {
                st.protocol_errors += 1;
            }
            shared.drain(&mut st)
        };
        shared.run(actions);
    }
    let mut st = shared.lock();
    st.session.disconnect(connection);
    st.writers.remove(&connection);
}

/// A different epoch on every start: the clock's nanoseconds.
fn clock_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1)
}

impl Server {
    /// A builder: plaintext, default bounds, every registration accepted,
    /// every request answered with [`Status::UnknownKind`].
    #[must_use]
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            session: ServerSessionConfig::new(),
            ws: ServerConfig::new(),
            epoch: None,
            handler: Arc::new(|request: Request| {
                Box::pin(async move {
                    wire::Result::error(request.id, Status::UnknownKind, "no handler")
                })
            }),
            authorize: Arc::new(|_| Ok(())),
        }
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This run's epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Publishes a frame on `stream` to its subscribers (and its history,
    /// for clients that resume). Returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`ServerError::EmptyStream`].
    pub fn publish(&self, stream: &str, payload: impl Into<Bytes>) -> Result<u64, ServerError> {
        self.shared.publish(stream, payload.into())
    }

    /// A cloneable handle to publish from other tasks.
    #[must_use]
    pub fn publisher(&self) -> Publisher {
        Publisher {
            shared: self.shared.clone(),
        }
    }

    /// How many connections are registered or registering now.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.lock().session.connections()
    }

    /// How many connections subscribe to `stream`.
    #[must_use]
    pub fn subscribers(&self, stream: &str) -> usize {
        self.shared.lock().session.subscribers(stream)
    }

    /// Messages from clients that could not be used (each was answered or
    /// skipped; the connections stayed).
    #[must_use]
    pub fn protocol_errors(&self) -> u64 {
        self.shared.lock().protocol_errors
    }

    /// Stops: closes the listener, closes every connection with 1001 after
    /// what is queued for it, and returns once all are closed. Requests
    /// still running are answered nowhere (clients resend or fail them).
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
        let _ = self.accepting.await;
    }
}
