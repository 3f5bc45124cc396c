//! The connection's lifecycle.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// TLS handshake and/or HTTP upgrade in progress.
    Handshake,
    /// Server: the request was reported; waiting for `accept` / `reject`.
    AwaitDecision,
    /// Frames flow (possibly with a closing handshake under way).
    Open,
    /// `Closed` was reported. Nothing but queued bytes go out.
    Closed,
}
