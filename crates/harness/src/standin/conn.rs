//! How a request handler ends its own connection (a reset or a drop after accept), shared by the
//! handlers (`api`), which decide, and the connection loop (`server`), which acts.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Lets a handler end its own connection.
#[derive(Default)]
pub(super) struct ConnControl {
    abort: Notify,
    reset: AtomicBool,
}

impl ConnControl {
    /// Close the connection without answering: with a TCP reset if `reset`, else a plain FIN.
    pub(super) fn abort(&self, reset: bool) {
        self.reset.store(reset, Ordering::SeqCst);
        self.abort.notify_one();
    }

    /// Resolves once a handler has asked for the connection to end.
    pub(super) async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Whether the ending asked for is a TCP reset rather than a plain close.
    pub(super) fn wants_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }
}
