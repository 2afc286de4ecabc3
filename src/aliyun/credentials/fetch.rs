//! What every credential provider shares to fetch with: the HTTP client and endpoints, the error,
//! the temporary-credential answer shape, and the rules a fetched or file-read key must meet. Kept
//! apart from [`super::source`], which names the providers, so that providers import only
//! downward.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use super::credential::{Credential, is_clean};
use crate::aliyun::tls;
use crate::bounded;

/// Where the instance metadata service is, unless overridden.
pub(crate) const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";

/// A fetched credential must be valid at least this long to be installed: one that has expired, or
/// is about to, would only turn every call into CREDENTIALS_UNAVAILABLE (a broken source, or a
/// clock far off).
pub(crate) const MIN_VALIDITY: Duration = Duration::from_secs(2);

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
        let body = bounded::read_answer(response).await.map_err(failed)?;
        let body = body.ok_or_else(|| {
            FetchError(format!(
                "{what}: the answer is larger than {} KiB",
                bounded::MAX_ANSWER_BYTES / 1024
            ))
        })?;
        Ok((status, body))
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
    /// The credential, when every field is there, held to the environment's rules (non-empty,
    /// no surrounding whitespace or control characters), and the expiry is a UTC timestamp.
    pub(super) fn into_credential(self, what: &str) -> Result<Credential, FetchError> {
        let field = |name: &str, value: Option<String>| match value.filter(|v| !v.is_empty()) {
            None => Err(FetchError(format!("{what}: the answer has no {name}"))),
            Some(v) if !is_clean(&v) => Err(FetchError(format!(
                "{what}: {name} has surrounding whitespace or control characters"
            ))),
            Some(v) => Ok(v),
        };
        let id = field("AccessKeyId", self.access_key_id)?;
        let secret = field("AccessKeySecret", self.access_key_secret)?;
        let token = field("SecurityToken", self.security_token)?;
        let expiration = field("Expiration", self.expiration)?;
        let at = humantime::parse_rfc3339(&expiration)
            .map_err(|_| FetchError(format!("{what}: Expiration is not a UTC timestamp")))?;
        if at < now() + MIN_VALIDITY {
            return Err(FetchError(format!(
                "{what}: the credential it answered expires at {} (already expired or about to)",
                humantime::format_rfc3339_seconds(at)
            )));
        }
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
        Some(v) if !is_clean(v) => Err(format!(
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
