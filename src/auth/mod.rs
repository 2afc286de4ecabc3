//! Who is calling, and whether they may: the caller's identity from its bearer token or its
//! verified client certificate, then the per-caller policy.

pub(crate) mod files;
pub(crate) mod policy;
pub(crate) mod tokens;

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataMap;

use crate::aliyun::regions::Regions;
use crate::aliyun::request::RegionId;
use crate::limit::fleet::FleetStore;
use crate::reload::{self, LoadError, Reloading};
use crate::server::peer::Peer;
use files::SecurityFiles;
use policy::{Denial, Permission, Policy};
use tokens::TokenTable;

/// How the token file is named in errors and logs.
pub(crate) const TOKENS_SETTING: &str = "--auth-tokens-file / ECS_GATEWAY_AUTH_TOKENS_FILE";
/// How the policy file is named in errors and logs.
pub(crate) const POLICY_SETTING: &str = "--policy / ECS_GATEWAY_POLICY";

/// The metadata key carrying `Bearer TOKEN`.
pub(crate) const AUTHORIZATION: &str = "authorization";

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Nobody is asked: the gateway runs without authentication.
    Anonymous,
    /// A typed identity ([`crate::identity`]): `token:…`, `spiffe://…`, `dns:…` or `cn:…`.
    Named(Arc<str>),
}

impl Caller {
    /// The name the audit log and policy use; `-` for an anonymous caller.
    pub(crate) fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "-",
            Caller::Named(name) => name,
        }
    }
}

/// Why a call has no caller identity. Never carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unauthenticated {
    /// Neither a token nor a client certificate identifies the caller.
    #[error("no caller identity: send `authorization: Bearer <token>`{}", if *.certificates { " or connect with a client certificate" } else { "" })]
    Missing {
        /// Whether a client certificate would also have done.
        certificates: bool,
    },
    /// The `authorization` metadata is not one `Bearer <token>`.
    #[error("the authorization metadata must be exactly one `Bearer <token>`")]
    Malformed,
    /// The token is not in the token file.
    #[error("the bearer token is not known to this gateway")]
    UnknownToken,
}

/// The gateway's authentication and authorization settings; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// Callers with bearer tokens.
    pub tokens: Option<Reloading<TokenTable>>,
    /// Whether verified client certificates identify callers (mutual TLS is on).
    pub certificates: bool,
    /// What each caller may do; without it, any identified caller may do everything.
    pub policy: Option<Reloading<Policy>>,
    /// Where callers' rates are kept for the whole fleet; without it, each replica keeps its own.
    pub fleet: Option<FleetStore>,
}

impl Access {
    /// Loads the token and policy files that `files` names and keeps them current; every region
    /// the policy names must be in `served`.
    pub(crate) async fn load(
        files: &SecurityFiles,
        served: &Regions,
        interval: Duration,
    ) -> Result<Self, LoadError> {
        let tokens = match &files.tokens {
            None => None,
            Some(path) => Some(
                reload::watch(TOKENS_SETTING, vec![path.clone()], interval, |text, _| {
                    let table = TokenTable::parse(&text[0])?;
                    if table.is_empty() {
                        tracing::warn!(
                            setting = TOKENS_SETTING,
                            "the token file names no caller: every token is refused"
                        );
                    }
                    Ok::<_, tokens::TokenFileError>(table)
                })
                .await?,
            ),
        };
        let policy = match &files.policy {
            None => None,
            Some(path) => {
                let served = served.clone();
                Some(
                    reload::watch(
                        POLICY_SETTING,
                        vec![path.clone()],
                        interval,
                        move |text, previous| {
                            let policy = Policy::parse(&text[0], &served, previous)?;
                            if policy.is_empty() {
                                tracing::warn!(
                                    setting = POLICY_SETTING,
                                    "the policy names no caller: every call is refused"
                                );
                            }
                            Ok::<_, policy::PolicyError>(policy)
                        },
                    )
                    .await?,
                )
            }
        };
        Ok(Self {
            tokens,
            certificates: files.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            policy,
            fleet: None,
        })
    }

    /// Whether callers must identify themselves.
    pub(crate) fn authenticates(&self) -> bool {
        self.tokens.is_some() || self.certificates
    }

    /// The caller of a call with `metadata`, on the connection `peer`. A token, when sent, must
    /// be valid and names the caller (a bad token is never overlooked in favour of a
    /// certificate); without one, the client certificate does.
    pub(crate) fn authenticate(
        &self,
        metadata: &MetadataMap,
        peer: Option<&Peer>,
    ) -> Result<Caller, Unauthenticated> {
        if !self.authenticates() {
            return Ok(Caller::Anonymous);
        }
        if let Some(tokens) = &self.tokens {
            let mut values = metadata.get_all(AUTHORIZATION).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(Unauthenticated::Malformed);
                }
                let token = bearer_token(value.as_bytes()).ok_or(Unauthenticated::Malformed)?;
                return tokens
                    .current()
                    .identify(token)
                    .map(Caller::Named)
                    .ok_or(Unauthenticated::UnknownToken);
            }
        }
        if self.certificates
            && let Some(identity) = peer.and_then(|p| p.certificate_identity.clone())
        {
            return Ok(Caller::Named(identity));
        }
        Err(Unauthenticated::Missing {
            certificates: self.certificates,
        })
    }

    /// Whether `caller` may do `what` in `region` now (taking one call from its rate).
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        region: &RegionId,
        what: Permission,
    ) -> Result<(), Denial> {
        // Released before the rate is taken, which may wait on Redis.
        match self.permits(caller, region, what)? {
            Some(limit) => limit.take(caller.name(), self.fleet.as_ref()).await,
            None => Ok(()),
        }
    }

    /// Whether `caller` may do `what` in `region`, without taking from its rate; the rate, if any.
    pub(crate) fn permits(
        &self,
        caller: &Caller,
        region: &RegionId,
        what: Permission,
    ) -> Result<Option<policy::CallerLimit>, Denial> {
        match &self.policy {
            None => Ok(None),
            Some(policy) => policy.current().check(caller.name(), region, what),
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_required() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"abc"), None);
    }
}
