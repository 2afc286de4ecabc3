//! The ECS instance's RAM role from the instance metadata service, IMDSv2 first: a session token
//! from `PUT /latest/api/token`, sent as `X-aliyun-ecs-metadata-token`; IMDSv1 (no token) only as
//! the SDKs' fallback, and never when `ALIBABA_CLOUD_IMDSV1_DISABLED=true`.

use std::time::Duration;

use super::credential::Credential;
use super::env::Env;
use super::fetch::{FetchError, Fetcher, http_failure, successful};

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
/// The SDKs' token lifetime.
const TOKEN_TTL_SECONDS: &str = "21600";
/// The service is on the host's link: an answer takes milliseconds or never comes.
const TIMEOUT: Duration = Duration::from_secs(1);

/// An instance RAM role source.
#[derive(Debug, Clone)]
pub struct EcsRamRole {
    /// The role; discovered from the metadata service when `None`.
    pub role_name: Option<String>,
    /// No fallback to IMDSv1 (`ALIBABA_CLOUD_IMDSV1_DISABLED=true`).
    pub imdsv1_disabled: bool,
}

impl EcsRamRole {
    /// The role named by `ALIBABA_CLOUD_ECS_METADATA` (or `explicit`), IMDSv1 as the environment says.
    pub fn new(explicit: Option<&str>, env: &Env) -> Self {
        Self {
            role_name: explicit
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .or_else(|| env.var("ALIBABA_CLOUD_ECS_METADATA")),
            imdsv1_disabled: env.is_true("ALIBABA_CLOUD_IMDSV1_DISABLED"),
        }
    }

    /// The role's current credential.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        let role = match &self.role_name {
            Some(role) => role.clone(),
            None => {
                let body = self.get(fetcher, ROLES_PATH, "role name").await?;
                String::from_utf8(body)
                    .ok()
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty() && !r.contains(['/', '?', '#']))
                    .ok_or_else(|| {
                        FetchError("metadata service: the instance has no usable RAM role".into())
                    })?
            }
        };
        let body = self
            .get(fetcher, &format!("{ROLES_PATH}{role}"), "role credential")
            .await?;
        successful("metadata service", &body)
    }

    /// GET `path` with a fresh IMDSv2 token; the SDKs' fallbacks to IMDSv1 when allowed.
    async fn get(&self, fetcher: &Fetcher, path: &str, what: &str) -> Result<Vec<u8>, FetchError> {
        let token = match self.token(fetcher).await {
            Ok(token) => Some(token),
            Err(error) if self.imdsv1_disabled => return Err(error),
            Err(_) => None,
        };
        let with_token = self.get_once(fetcher, path, what, token.as_deref()).await;
        match with_token {
            Err(_) if token.is_some() && !self.imdsv1_disabled => {
                self.get_once(fetcher, path, what, None).await
            }
            other => other,
        }
    }

    async fn token(&self, fetcher: &Fetcher) -> Result<String, FetchError> {
        let url = join(fetcher, TOKEN_PATH)?;
        let request = fetcher
            .http
            .put(url)
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS)
            .timeout(TIMEOUT);
        let (status, body) = fetcher.send("metadata service token", request).await?;
        if status != 200 {
            return Err(http_failure("metadata service token", status, &body));
        }
        String::from_utf8(body).map_err(|_| FetchError("metadata service token: not text".into()))
    }

    async fn get_once(
        &self,
        fetcher: &Fetcher,
        path: &str,
        what: &str,
        token: Option<&str>,
    ) -> Result<Vec<u8>, FetchError> {
        let what = format!("metadata service {what}");
        let mut request = fetcher.http.get(join(fetcher, path)?).timeout(TIMEOUT);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let (status, body) = fetcher.send(&what, request).await?;
        if status != 200 {
            return Err(http_failure(&what, status, &body));
        }
        Ok(body)
    }
}

fn join(fetcher: &Fetcher, path: &str) -> Result<url::Url, FetchError> {
    fetcher
        .metadata_endpoint
        .join(path)
        .map_err(|_| FetchError("the metadata endpoint is not a base URL".into()))
}
