//! STS `AssumeRoleWithOIDC`: RRSA on ACK. The OIDC token file is re-read for every call because
//! the kubelet rotates it; the call needs no AccessKey.

use std::path::PathBuf;

use super::credential::Credential;
use super::env::Env;
use super::fetch::{FetchError, Fetcher};
use super::sts;

/// An `AssumeRoleWithOIDC` source.
#[derive(Debug, Clone)]
pub struct OidcRole {
    /// The RAM role to assume.
    pub role_arn: String,
    /// The OIDC identity provider registered in RAM.
    pub provider_arn: String,
    /// The projected service-account token.
    pub token_file: PathBuf,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration_seconds: u32,
    /// An optional policy narrowing the role.
    pub policy: Option<String>,
    /// The STS host the SDKs would use.
    pub sts_host: String,
}

impl OidcRole {
    /// The RRSA variables, when all three of `ALIBABA_CLOUD_ROLE_ARN`, `_OIDC_PROVIDER_ARN` and
    /// `_OIDC_TOKEN_FILE` are set (the SDKs' condition for putting this source in the chain).
    pub fn from_env(env: &Env) -> Option<Self> {
        let role_arn = env.var("ALIBABA_CLOUD_ROLE_ARN")?;
        let provider_arn = env.var("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")?;
        let token_file = env.var("ALIBABA_CLOUD_OIDC_TOKEN_FILE")?;
        Some(Self {
            role_arn,
            provider_arn,
            token_file: token_file.into(),
            session_name: sts::session_name(None, env),
            duration_seconds: sts::DEFAULT_DURATION_SECONDS,
            policy: None,
            sts_host: sts::host(None, None, env),
        })
    }

    /// Reads the token file and assumes the role. The token goes in a POST body, not the URL, so
    /// that no proxy or access log keeps it.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        const WHAT: &str = "STS AssumeRoleWithOIDC";
        let token = crate::bounded::read_text_async(&self.token_file)
            .await
            .map_err(|e| {
                FetchError(format!(
                    "cannot read the OIDC token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let duration = self.duration_seconds.to_string();
        let timestamp = humantime::format_rfc3339_seconds(super::fetch::now()).to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("Action", "AssumeRoleWithOIDC"),
            ("Format", "JSON"),
            ("Version", sts::API_VERSION),
            ("DurationSeconds", &duration),
            ("RoleArn", &self.role_arn),
            ("OIDCProviderArn", &self.provider_arn),
            ("OIDCToken", token.trim()),
            ("RoleSessionName", &self.session_name),
            ("Timestamp", &timestamp),
        ];
        if let Some(policy) = &self.policy {
            form.push(("Policy", policy));
        }
        let url = sts::url(fetcher, &self.sts_host)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = fetcher
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let (status, body) = fetcher.send(WHAT, request).await?;
        sts::credential_from(WHAT, status, &body)
    }
}
