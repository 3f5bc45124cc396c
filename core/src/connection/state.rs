//! The connection's lifecycle: one state, so that no combination of flags
//! can say two things at once.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// TLS handshake and/or HTTP upgrade in progress.
    Handshake,
    /// Server: the request was reported; waiting for `accept` / `reject`.
    AwaitDecision,
    /// Frames flow (possibly with a closing handshake under way).
    Open,
    /// `Closed` was reported. Nothing but queued bytes go out.
    Closed(Ending),
}

/// What a closed connection still waits for before the socket can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// A client after a clean close: the server ends the TCP connection
    /// first (§7.1.1). Bounded by the linger deadline.
    PeerEnd,
    /// The socket may be closed once every byte is out (bounded by the
    /// linger deadline where a peer could hold it open by not reading).
    Flush,
    /// The linger deadline passed: what is still queued will never leave.
    Abandoned,
}

impl Phase {
    pub(super) fn is_closed(self) -> bool {
        matches!(self, Phase::Closed(_))
    }
}
