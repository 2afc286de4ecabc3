//! One Alibaba Cloud credential: an AccessKey pair, optionally with an STS token and an expiry.

use std::fmt;
use std::time::SystemTime;

use secrecy::{ExposeSecret as _, SecretString};

/// Environment variable holding the AccessKey ID (the name Alibaba's SDKs use).
pub(crate) const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub(crate) const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding the optional STS security token.
pub(crate) const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// A credential could not be loaded; the message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// A required variable is unset or empty.
    #[error("missing credential: set the environment variable {0}")]
    Missing(&'static str),
    /// A value would be signed or sent with stray bytes, so every call would fail.
    #[error(
        "{0} must not have leading or trailing whitespace or contain control characters (check for a trailing newline)"
    )]
    Malformed(&'static str),
}

/// AccessKey ID, secret, optional STS token and expiry. `Debug` shows only the AccessKey ID's first
/// characters.
#[derive(Clone)]
pub struct Credential {
    access_key_id: String,
    access_key_secret: SecretString,
    security_token: Option<SecretString>,
    expiration: Option<SystemTime>,
}

impl Credential {
    /// Builds a credential from its parts; an empty token counts as none.
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::from(access_key_secret.into()),
            security_token: security_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
            expiration: None,
        }
    }

    /// The same credential, valid until `expiration` (temporary credentials from STS and the like).
    pub fn expiring_at(mut self, expiration: SystemTime) -> Self {
        self.expiration = Some(expiration);
        self
    }

    /// When the credential stops being accepted; `None` for a long-lived AccessKey.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.expiration
    }

    /// Whether ECS would still accept it at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.expiration.is_none_or(|at| now < at)
    }

    /// Reads the credential from the process environment.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the credential through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialError> {
        let clean = |name: &'static str, value: String| {
            if is_clean(&value) {
                Ok(value)
            } else {
                Err(CredentialError::Malformed(name))
            }
        };
        let required = |name: &'static str| {
            let value = lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(CredentialError::Missing(name))?;
            clean(name, value)
        };
        let id = required(ENV_ACCESS_KEY_ID)?;
        let secret = required(ENV_ACCESS_KEY_SECRET)?;
        let token = lookup(ENV_SECURITY_TOKEN)
            .filter(|t| !t.is_empty())
            .map(|t| clean(ENV_SECURITY_TOKEN, t))
            .transpose()?;
        Ok(Self::new(id, secret, token))
    }

    /// The AccessKey ID (not secret, but kept out of caller-facing messages all the same).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The raw AccessKey secret, for keying the signer.
    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose_secret()
    }

    /// The STS security token, when the credential has one.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(|t| t.expose_secret())
    }
}

/// No surrounding whitespace and no control characters: what a value pasted with a newline lacks.
pub(crate) fn is_clean(value: &str) -> bool {
    value.trim() == value && !value.chars().any(char::is_control)
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_prefix: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("Credential")
            .field("access_key_id", &format_args!("{id_prefix}…"))
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "expiration",
                &self.expiration.map(humantime::format_rfc3339_seconds),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn missing_secret_is_named() {
        let err = Credential::from_lookup(env(&[(ENV_ACCESS_KEY_ID, "LTAIexample")])).unwrap_err();
        assert_eq!(err, CredentialError::Missing(ENV_ACCESS_KEY_SECRET));
        assert!(err.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"));
    }

    #[test]
    fn empty_id_counts_as_missing() {
        let err = Credential::from_lookup(env(&[
            (ENV_ACCESS_KEY_ID, ""),
            (ENV_ACCESS_KEY_SECRET, "s"),
        ]))
        .unwrap_err();
        assert_eq!(err, CredentialError::Missing(ENV_ACCESS_KEY_ID));
    }

    #[test]
    fn stray_whitespace_or_control_characters_are_refused_without_echo() {
        for (name, bad) in [
            (ENV_ACCESS_KEY_ID, "LTAIexample\n"),
            (ENV_ACCESS_KEY_SECRET, " sekrit-value"),
            (ENV_ACCESS_KEY_SECRET, "sekrit\u{7}value"),
            (ENV_SECURITY_TOKEN, "tok-value\r\n"),
        ] {
            let mut vars = vec![
                (ENV_ACCESS_KEY_ID, "LTAIexample"),
                (ENV_ACCESS_KEY_SECRET, "sekrit-value"),
            ];
            vars.retain(|(k, _)| *k != name);
            vars.push((name, bad));
            let err = Credential::from_lookup(env(&vars)).unwrap_err();
            assert_eq!(err, CredentialError::Malformed(name), "{bad:?}");
            let shown = err.to_string();
            assert!(shown.contains(name), "{shown}");
            assert!(!shown.contains(bad.trim()), "{shown}");
        }
    }

    #[test]
    fn debug_redacts_secret_and_token() {
        let c = Credential::new(
            "LTAI5tExampleId",
            "very-secret-value",
            Some("sts-token-value".into()),
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("sts-token-value"), "{shown}");
        assert!(!shown.contains("LTAI5tExampleId"), "{shown}");
        assert_eq!(c.security_token(), Some("sts-token-value"));
    }
}
