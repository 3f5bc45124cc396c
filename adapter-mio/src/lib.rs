//! wharf: drive wharf-core connections on mio sockets inside the caller's Poll.
//!
//! This crate is being built; see the workspace README.
