//! A place a credential comes from, and fetching one from it. Static sources answer at once; the
//! others call STS, the instance metadata service or a credentials URI and return a temporary
//! credential with its expiry.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use super::assume_role::AssumeRole;
use super::credential::Credential;
use super::ecs_metadata::EcsRamRole;
use super::oidc::OidcRole;
use super::uri::CredentialsUri;
use crate::aliyun::tls;

/// Where the instance metadata service is, unless overridden.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";

/// One credential source, built from the environment and files by [`super::chain`].
#[derive(Debug, Clone)]
pub enum Source {
    /// A long-lived AccessKey, or an STS token someone else refreshes: used as it is.
    Static(Credential),
    /// STS `AssumeRole`, signed with another source's credential.
    AssumeRole(AssumeRole),
    /// STS `AssumeRoleWithOIDC` with a token file (RRSA on ACK).
    Oidc(OidcRole),
    /// The ECS instance's RAM role, from the metadata service.
    EcsRamRole(EcsRamRole),
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    Uri(CredentialsUri),
}

impl Source {
    /// The provider's name as Alibaba's SDKs report it (`ecs_ram_role`, `oidc_role_arn`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Static(c) if c.security_token().is_some() => "static_sts",
            Source::Static(_) => "static_ak",
            Source::AssumeRole(_) => "ram_role_arn",
            Source::Oidc(_) => "oidc_role_arn",
            Source::EcsRamRole(_) => "ecs_ram_role",
            Source::Uri(_) => "credential_uri",
        }
    }

    /// Who the credentials of this source act as, stably across refreshes and replicas: the
    /// AccessKeyId of a key used as it is, the role of temporary credentials (each STS session,
    /// so each replica and each refresh, has an AccessKeyId of its own). What a quota is kept for.
    pub fn principal(&self, first: &Credential) -> String {
        match self {
            Source::Static(_) => first.access_key_id().to_owned(),
            Source::AssumeRole(role) => role.role_arn.clone(),
            Source::Oidc(role) => role.role_arn.clone(),
            Source::EcsRamRole(role) => format!(
                "ecs_ram_role:{}",
                role.role_name.as_deref().unwrap_or("(the instance's)")
            ),
            // The URL may carry a token; one deployment uses one credentials service.
            Source::Uri(_) => "credentials_uri".to_owned(),
        }
    }

    /// The STS host the SDKs would call for this source, if it calls STS.
    pub fn sts_host(&self) -> Option<&str> {
        match self {
            Source::AssumeRole(r) => Some(&r.sts_host),
            Source::Oidc(r) => Some(&r.sts_host),
            _ => None,
        }
    }

    /// A credential from this source now.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        match self {
            Source::Static(credential) => Ok(credential.clone()),
            Source::AssumeRole(role) => role.fetch(fetcher).await,
            Source::Oidc(role) => role.fetch(fetcher).await,
            Source::EcsRamRole(role) => role.fetch(fetcher).await,
            Source::Uri(uri) => uri.fetch(fetcher).await,
        }
    }
}

/// Fetching a credential failed; the message never holds a secret or a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// The HTTP client and endpoints credential sources use.
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub(super) http: reqwest::Client,
    /// Replaces every STS URL (`ECS_GATEWAY_STS_ENDPOINT`), for tests and private endpoints.
    pub sts_override: Option<Url>,
    /// The instance metadata service (`ECS_GATEWAY_METADATA_ENDPOINT`).
    pub metadata_endpoint: Url,
}

impl Fetcher {
    /// A fetcher trusting the system's roots.
    pub fn new(sts_override: Option<Url>, metadata_endpoint: Url) -> Result<Self, FetchError> {
        let roots = tls::native_roots().unwrap_or_else(|_| rustls::RootCertStore::empty());
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls::client_config(roots))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // Credentials must come from the host asked, never from where a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FetchError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            sts_override,
            metadata_endpoint,
        })
    }

    /// Sends `request` and reads the answer, both without the URL (it may carry a signature or token).
    pub(super) async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let failed = |e: reqwest::Error| {
            let e = e.without_url();
            let mut message = format!("{what}: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            FetchError(message)
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(failed)?;
        Ok((status, body.to_vec()))
    }
}

/// The JSON shape of a temporary credential, shared by STS, the metadata service and credentials URIs.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Temporary {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    security_token: Option<String>,
    expiration: Option<String>,
}

impl Temporary {
    /// The credential, when every field is there and the expiry is a UTC timestamp.
    pub(super) fn into_credential(self, what: &str) -> Result<Credential, FetchError> {
        let missing = |field: &str| FetchError(format!("{what}: the answer has no {field}"));
        let id = self.access_key_id.ok_or_else(|| missing("AccessKeyId"))?;
        let secret = self
            .access_key_secret
            .ok_or_else(|| missing("AccessKeySecret"))?;
        let token = self
            .security_token
            .ok_or_else(|| missing("SecurityToken"))?;
        let expiration = self.expiration.ok_or_else(|| missing("Expiration"))?;
        let at = humantime::parse_rfc3339(&expiration)
            .map_err(|_| FetchError(format!("{what}: Expiration is not a UTC timestamp")))?;
        Ok(Credential::new(id, secret, Some(token)).expiring_at(at))
    }
}

/// `Code` from an error body, when it is a plain identifier (anything else could be an echo).
pub(super) fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Coded {
        #[serde(rename = "Code")]
        code: Option<String>,
    }
    let code = serde_json::from_slice::<Coded>(body).ok()?.code?;
    let plain = code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    plain.then_some(code)
}

/// "HTTP 403 (NoPermission)", or just "HTTP 403".
pub(super) fn http_failure(what: &str, status: u16, body: &[u8]) -> FetchError {
    match error_code(body) {
        Some(code) => FetchError(format!("{what}: HTTP {status} ({code})")),
        None => FetchError(format!("{what}: HTTP {status}")),
    }
}

/// The time now, for stamping requests; one place so tests could pin it.
pub(super) fn now() -> SystemTime {
    SystemTime::now()
}

/// The credential in a `"Code": "Success"` answer (the metadata service, credentials URIs); the
/// SDKs refuse any other code.
pub(super) fn successful(what: &str, body: &[u8]) -> Result<Credential, FetchError> {
    #[derive(Deserialize)]
    struct Coded {
        #[serde(rename = "Code")]
        code: Option<String>,
        #[serde(flatten)]
        credential: Temporary,
    }
    let answer: Coded = serde_json::from_slice(body)
        .map_err(|_| FetchError(format!("{what}: the answer is not JSON")))?;
    if answer.code.as_deref() != Some("Success") {
        return Err(FetchError(format!("{what}: Code is not Success")));
    }
    answer.credential.into_credential(what)
}

/// A static AccessKey (and token) read from a file, held to the same rules as the environment's.
pub(super) fn static_key(
    id: Option<&str>,
    secret: Option<&str>,
    token: Option<&str>,
) -> Result<Credential, String> {
    let clean = |field: &str, value: Option<&str>| match value.filter(|v| !v.is_empty()) {
        None => Err(format!("{field} is missing")),
        Some(v) if v.trim() != v || v.chars().any(char::is_control) => Err(format!(
            "{field} has surrounding whitespace or control characters"
        )),
        Some(v) => Ok(v.to_owned()),
    };
    let id = clean("access_key_id", id)?;
    let secret = clean("access_key_secret", secret)?;
    let token = token
        .filter(|t| !t.is_empty())
        .map(|t| clean("security token", Some(t)))
        .transpose()?;
    Ok(Credential::new(id, secret, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_credentials_act_as_their_role_and_keys_as_themselves() {
        let session = |id: &str| Credential::new(id, "secret", Some("token".into()));
        let role = Source::Oidc(OidcRole {
            role_arn: "acs:ram::1234567890123456:role/ecs-gateway".into(),
            provider_arn: "acs:ram::1234567890123456:oidc-provider/ack".into(),
            token_file: "/var/run/secrets/tokens/oidc-token".into(),
            session_name: "ecs-gateway".into(),
            duration_seconds: 3600,
            policy: None,
            sts_host: "sts.aliyuncs.com".into(),
        });
        // Two replicas (or two refreshes) hold different session keys for the same role.
        assert_eq!(
            role.principal(&session("STS.replica-a")),
            role.principal(&session("STS.replica-b"))
        );
        assert_eq!(
            role.principal(&session("STS.replica-a")),
            "acs:ram::1234567890123456:role/ecs-gateway"
        );
        let key = Credential::new("LTAI5tLongLived", "secret", None);
        assert_eq!(
            Source::Static(key.clone()).principal(&key),
            "LTAI5tLongLived"
        );
        let instance = Source::EcsRamRole(EcsRamRole {
            role_name: Some("gateway-role".into()),
            imdsv1_disabled: true,
        });
        assert_eq!(
            instance.principal(&session("STS.x")),
            "ecs_ram_role:gateway-role"
        );
    }
}
