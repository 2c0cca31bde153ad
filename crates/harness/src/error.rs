//! The harness's error type.

use std::net::SocketAddr;

/// Why a stand-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The listening socket could not be bound.
    #[error("stand-in could not listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}
