//! wharf: async WebSocket connections and a reconnecting client on tokio, built on wharf-core.
//!
//! This crate is being built; see the workspace README.
