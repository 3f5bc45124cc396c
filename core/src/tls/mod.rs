//! TLS for `wss://`: the only module of the crate that touches rustls, so a
//! rustls API change stays local to it.
//!
//! - `config`: the public configuration, [`ClientTls`] and [`ServerTls`],
//!   wrapping shared rustls configs built from PEM.
//! - `provider`: which crypto provider those configs use (crate features
//!   `aws-lc-rs`, the default, and `ring`); the process-wide default provider
//!   of rustls is never consulted.
//! - `session`: [`TlsSession`], the buffered rustls connection the
//!   [`Connection`](crate::Connection) drives, and the mapping of rustls'
//!   errors into [`TlsError`](crate::TlsError).

mod config;
mod provider;
mod session;
#[cfg(test)]
mod tests;

pub use config::{ClientTls, ClientTlsBuilder, ServerTls, ServerTlsBuilder};
pub use session::TlsInfo;
pub(crate) use session::TlsSession;
