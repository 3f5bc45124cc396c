//! Which end of a connection this is: a leaf type every module may use.

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the upgrade request and masks its frames (§5.3).
    Client,
    /// Answers the upgrade request; its frames are not masked.
    Server,
}
