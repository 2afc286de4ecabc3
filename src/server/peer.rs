//! What the gateway knows about the other end of a connection, attached to each of its calls.

use std::net::SocketAddr;
use std::sync::Arc;

/// The connection a call arrived on: where from, and who its client certificate names.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The identity of a verified client certificate (mutual TLS), if one was presented.
    pub certificate_identity: Option<Arc<str>>,
}
