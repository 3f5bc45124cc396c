//! wharf: protobuf registration / request / result messaging over wharf.
//!
//! This crate is being built; see the workspace README.
