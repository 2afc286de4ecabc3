//! STS `AssumeRole`: a RAM role's temporary credential, asked for with another source's credential
//! and signed with the same RPC signature as ECS calls (`RamRoleArn` / `ram_role_arn`).

use std::borrow::Cow;

use super::credential::Credential;
use super::fetch::{FetchError, Fetcher, now};
use super::source::Source;
use super::sts;
use crate::aliyun::signer::{self, SigningKey};

/// An `AssumeRole` source.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    /// Signs the `AssumeRole` call.
    pub base: Box<Source>,
    /// `acs:ram::<account>:role/<name>`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration_seconds: u32,
    /// An optional policy narrowing the role.
    pub policy: Option<String>,
    /// `ExternalId`, when the role's trust policy asks for one.
    pub external_id: Option<String>,
    /// The STS host the SDKs would use.
    pub sts_host: String,
}

impl AssumeRole {
    /// Assumes the role with the base source's current credential.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        const WHAT: &str = "STS AssumeRole";
        let base = Box::pin(self.base.fetch(fetcher)).await?;
        let duration = self.duration_seconds.to_string();
        let timestamp = humantime::format_rfc3339_seconds(now()).to_string();
        let nonce = uuid::Uuid::new_v4().to_string();
        let mut params: Vec<(&str, Cow<'_, str>)> = vec![
            ("Action", "AssumeRole".into()),
            ("Format", "JSON".into()),
            ("Version", sts::API_VERSION.into()),
            ("DurationSeconds", duration.into()),
            ("RoleArn", self.role_arn.as_str().into()),
            ("RoleSessionName", self.session_name.as_str().into()),
            ("SignatureMethod", signer::SIGNATURE_METHOD.into()),
            ("SignatureVersion", signer::SIGNATURE_VERSION.into()),
            ("Timestamp", timestamp.into()),
            ("SignatureNonce", nonce.into()),
            ("AccessKeyId", base.access_key_id().into()),
        ];
        if let Some(policy) = &self.policy {
            params.push(("Policy", policy.as_str().into()));
        }
        if let Some(external_id) = &self.external_id {
            params.push(("ExternalId", external_id.as_str().into()));
        }
        if let Some(token) = base.security_token() {
            params.push(("SecurityToken", token.into()));
        }
        let signed = signer::sign_query("GET", &params, &SigningKey::new(base.access_key_secret()));
        let mut url = sts::url(fetcher, &self.sts_host)?;
        url.set_query(Some(signed.as_str()));
        let (status, body) = fetcher.send(WHAT, fetcher.http.get(url)).await?;
        sts::credential_from(WHAT, status, &body)
    }
}
