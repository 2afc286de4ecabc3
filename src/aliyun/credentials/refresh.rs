//! Keeping the credential current. Calls read it with one atomic load and never wait; one
//! background task refreshes a temporary credential before it expires (15 minutes before, as the
//! SDKs do, or at 80% of its lifetime when that is earlier — so at the latest 3 minutes before for
//! STS's shortest, 15-minute sessions), keeps the old one while refreshes fail, and says when none
//! is valid so that health can turn NOT_SERVING.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::credential::Credential;
use super::fetch::Fetcher;
use super::source::Source;
use crate::aliyun::signer::{SigningKey, v3};

/// Refresh this long before expiry, unless 80% of the lifetime comes first. The SDKs treat a
/// credential as stale 15 minutes before expiry, and the credential-expiry alert fires under 15
/// minutes left for 5 minutes: a healthy gateway refreshes before either.
const LEAD: Duration = Duration::from_secs(15 * 60);
/// First wait after a failed refresh; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between failed refreshes.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Shortest time between two refreshes, whatever the expiry says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The credential in use, keyed for signing.
pub struct Current {
    /// The credential.
    pub credential: Credential,
    /// Its secret as a V1 (HMAC-SHA1) key, prepared once.
    pub key: SigningKey,
    /// Its secret as a V3 (HMAC-SHA256) key, prepared once.
    pub key_v3: v3::SigningKey,
    obtained: SystemTime,
}

impl Current {
    fn new(credential: Credential) -> Self {
        Self {
            key: SigningKey::new(credential.access_key_secret()),
            key_v3: v3::SigningKey::new(credential.access_key_secret()),
            credential,
            obtained: SystemTime::now(),
        }
    }
}

/// No credential is valid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no valid Alibaba Cloud credential: it expired and refreshing it has failed")]
pub struct Unavailable;

/// The gateway's credential, shared by every call; clones are cheap.
#[derive(Clone)]
pub struct CredentialSupply {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Current>,
    available: watch::Sender<bool>,
    principal: String,
}

impl CredentialSupply {
    /// A credential used as it is, never refreshed.
    pub fn fixed(credential: Credential) -> Self {
        let principal = credential.access_key_id().to_owned();
        Self::acting_as(credential, principal)
    }

    fn acting_as(credential: Credential, principal: String) -> Self {
        let (available, _) = watch::channel(credential.is_valid_at(SystemTime::now()));
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Current::new(credential)),
                available,
                principal,
            }),
        }
    }

    /// `first`, refreshed from `source` in the background while the supply lives (when it expires).
    pub fn refreshing(source: Source, first: Credential, fetcher: Fetcher) -> Self {
        let principal = source.principal(&first);
        let supply = Self::acting_as(first, principal);
        tokio::spawn(refresher(Arc::downgrade(&supply.shared), source, fetcher));
        supply
    }

    /// The credential to sign with now, unless it has expired.
    pub fn current(&self) -> Result<Arc<Current>, Unavailable> {
        let current = self.shared.current.load_full();
        if current.credential.is_valid_at(SystemTime::now()) {
            Ok(current)
        } else {
            Err(Unavailable)
        }
    }

    /// Who the credential acts as, the same across refreshes and replicas ([`Source::principal`]).
    pub fn principal(&self) -> &str {
        &self.shared.principal
    }

    /// Whether a valid credential is held; changes as it expires and refreshes.
    pub fn available(&self) -> watch::Receiver<bool> {
        self.shared.available.subscribe()
    }

    /// When the credential in use expires.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.shared.current.load().credential.expiration()
    }
}

impl From<Credential> for CredentialSupply {
    fn from(credential: Credential) -> Self {
        Self::fixed(credential)
    }
}

impl std::fmt::Debug for CredentialSupply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CredentialSupply")
            .field(&self.shared.current.load().credential)
            .finish()
    }
}

/// When to refresh a credential obtained at `obtained` that expires at `expiration`: 15 minutes
/// before expiry, or at 80% of its lifetime when that is earlier.
pub(crate) fn refresh_at(obtained: SystemTime, expiration: SystemTime) -> SystemTime {
    let lifetime = expiration.duration_since(obtained).unwrap_or_default();
    let lead = LEAD.min(lifetime / 5);
    (expiration - lead).max(obtained + MIN_INTERVAL)
}

/// An expiry as logs show it: an RFC 3339 time, or that there is none.
pub(crate) fn describe_expiration(expiration: Option<SystemTime>) -> String {
    expiration.map_or_else(
        || "never (long-lived AccessKey)".to_owned(),
        |at| humantime::format_rfc3339_seconds(at).to_string(),
    )
}

fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// The refresh loop; ends when the supply is dropped or the credential does not expire.
async fn refresher(shared: Weak<Shared>, source: Source, fetcher: Fetcher) {
    let kind = source.kind();
    loop {
        let (obtained, expiration) = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let current = shared.current.load();
            let Some(expiration) = current.credential.expiration() else {
                return;
            };
            (current.obtained, expiration)
        };
        tokio::time::sleep(until(refresh_at(obtained, expiration))).await;
        let mut backoff = MIN_BACKOFF;
        loop {
            let fetched = fetch_watching_expiry(&shared, &source, &fetcher, expiration).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match fetched {
                Ok(credential) => {
                    tracing::info!(
                        source = kind,
                        expiration = %describe_expiration(credential.expiration()),
                        "credential refreshed"
                    );
                    shared.current.store(Arc::new(Current::new(credential)));
                    if !shared.available.send_replace(true) {
                        tracing::info!("a valid credential is back: serving again");
                    }
                    break;
                }
                Err(error) => {
                    let left = until(expiration);
                    if left.is_zero() {
                        if shared.available.send_replace(false) {
                            tracing::error!(source = kind, %error, "the credential expired and cannot be refreshed: health NOT_SERVING, calls answered UNAVAILABLE until a refresh succeeds");
                        } else {
                            tracing::warn!(source = kind, %error, retry_in = ?backoff, "credential refresh failed; still no valid credential");
                        }
                    } else {
                        tracing::warn!(source = kind, %error, retry_in = ?backoff, valid_for = ?left, "credential refresh failed; keeping the current credential until it expires");
                    }
                    drop(shared);
                    let wait = if left.is_zero() {
                        backoff
                    } else {
                        backoff.min(left)
                    };
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Fetches from `source`; should the credential in use expire while the fetch hangs, health turns
/// NOT_SERVING then, not when the fetch gives up.
async fn fetch_watching_expiry(
    shared: &Weak<Shared>,
    source: &Source,
    fetcher: &Fetcher,
    expiration: SystemTime,
) -> Result<Credential, super::fetch::FetchError> {
    let fetch = source.fetch(fetcher);
    tokio::pin!(fetch);
    tokio::select! {
        fetched = &mut fetch => return fetched,
        () = tokio::time::sleep(until(expiration)) => {}
    }
    if let Some(shared) = shared.upgrade()
        && shared.available.send_replace(false)
    {
        tracing::error!(
            source = source.kind(),
            expired = %describe_expiration(Some(expiration)),
            "the credential expired while its refresh is still waiting for an answer: health NOT_SERVING, calls answered UNAVAILABLE"
        );
    }
    fetch.await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn long_sessions_refresh_fifteen_minutes_before_expiry() {
        assert_eq!(refresh_at(at(0), at(6 * 3600)), at(6 * 3600 - 900));
        assert_eq!(refresh_at(at(0), at(2 * 3600)), at(2 * 3600 - 900));
    }

    #[test]
    fn shorter_sessions_refresh_at_eighty_percent_and_never_later_than_three_minutes_before() {
        assert_eq!(refresh_at(at(0), at(3600)), at(2880));
        // STS's shortest session: 900 s.
        assert_eq!(refresh_at(at(0), at(900)), at(900 - 180));
        assert_eq!(refresh_at(at(0), at(20)), at(16));
        assert_eq!(refresh_at(at(100), at(190)), at(172));
    }

    #[test]
    fn an_expired_credential_is_not_refreshed_in_a_tight_loop() {
        assert_eq!(refresh_at(at(50), at(40)), at(51));
    }

    #[test]
    fn an_expired_credential_is_not_current() {
        let expired = Credential::new("id", "secret", Some("t".into()))
            .expiring_at(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(
            CredentialSupply::fixed(expired).current().err(),
            Some(Unavailable)
        );
        let fresh = Credential::new("id", "secret", None);
        assert!(CredentialSupply::fixed(fresh).current().is_ok());
    }
}
