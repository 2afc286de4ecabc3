//! The files that say who may call (TLS, tokens, policy), named by the settings and checked for
//! consistency before any is read.

use std::path::PathBuf;

use crate::server::tls::TlsFiles;

/// The files that say who may call, checked for consistency but not yet read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityFiles {
    /// TLS for the listener.
    pub tls: Option<TlsFiles>,
    /// The bearer-token file.
    pub tokens: Option<PathBuf>,
    /// The per-caller policy file.
    pub policy: Option<PathBuf>,
}

impl SecurityFiles {
    /// Whether callers must identify themselves (by token or client certificate).
    pub fn authenticates(&self) -> bool {
        self.tokens.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }
}
