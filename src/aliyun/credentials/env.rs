//! The process environment as the credential chain reads it, and its first provider: an AccessKey
//! in `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::credential::{Credential, CredentialError};

/// Looks a variable up.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Variables the chain reads, looked up through a function so tests need not touch the process.
#[derive(Clone)]
pub struct Env {
    lookup: Arc<Lookup>,
}

impl Env {
    /// The real process environment.
    pub fn process() -> Self {
        Self {
            lookup: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// Exactly these variables and no others.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Arc::new(move |name| map.get(name).cloned()),
        }
    }

    /// A variable's value; unset and empty are the same, as in Alibaba's SDKs.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// Whether a variable is `true` (any case), the SDKs' test for their switches.
    pub fn is_true(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The home directory the SDKs use: `HOME`.
    pub fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

/// The environment's AccessKey, or why there is none.
pub(crate) fn credential(env: &Env) -> Result<Credential, CredentialError> {
    Credential::from_lookup(|name| env.var(name))
}
