//! `ALIBABA_CLOUD_CREDENTIALS_URI`: a local credential server (a sidecar, an agent) answering GET
//! with `Code`, `AccessKeyId`, `AccessKeySecret`, `SecurityToken` and `Expiration`.

use url::Url;

use super::credential::Credential;
use super::fetch::{FetchError, Fetcher, http_failure, successful};

/// A credentials-URI source.
#[derive(Clone)]
pub struct CredentialsUri {
    url: Url,
}

impl CredentialsUri {
    /// `value` as a URL; it may carry a token in its query, so it is never shown.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|_| {
            "ALIBABA_CLOUD_CREDENTIALS_URI is not a URL (its value is not shown)".to_owned()
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("ALIBABA_CLOUD_CREDENTIALS_URI must be http:// or https://".into());
        }
        Ok(Self { url })
    }

    /// The URI's current credential; like the SDKs, `Code` must be `Success`.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        const WHAT: &str = "credentials URI";
        let (status, body) = fetcher
            .send(WHAT, fetcher.http.get(self.url.clone()))
            .await?;
        if status != 200 {
            return Err(http_failure(WHAT, status, &body));
        }
        successful(WHAT, &body)
    }
}

impl std::fmt::Debug for CredentialsUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CredentialsUri({}://{}…)",
            self.url.scheme(),
            self.url.host_str().unwrap_or("")
        )
    }
}
