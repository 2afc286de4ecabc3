//! What the STS-backed sources share: the endpoint Alibaba's SDKs pick, session names and
//! durations, and reading an STS answer.

use std::time::UNIX_EPOCH;

use serde::Deserialize;
use url::Url;

use super::credential::Credential;
use super::env::Env;
use super::fetch::{FetchError, Fetcher, Temporary, http_failure, now};

/// The STS API version every SDK sends.
pub(crate) const API_VERSION: &str = "2015-04-01";
/// Session length asked for when none is configured (the SDKs' default).
pub(crate) const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// The shortest session STS grants.
pub(crate) const MIN_DURATION_SECONDS: u32 = 900;

/// The STS host the SDKs call: `sts.<region>.aliyuncs.com` for an explicit region, else for
/// `ALIBABA_CLOUD_STS_REGION`, with `sts-vpc.` when VPC endpoints are on (explicitly, else by
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED`); `sts.aliyuncs.com` when no region is known, VPC or not.
pub(crate) fn host(region: Option<&str>, vpc: Option<bool>, env: &Env) -> String {
    let vpc = vpc.unwrap_or_else(|| env.is_true("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"));
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    let region = region
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| env.var("ALIBABA_CLOUD_STS_REGION"));
    match region {
        Some(region) => format!("{prefix}.{region}.aliyuncs.com"),
        None => "sts.aliyuncs.com".to_owned(),
    }
}

/// The session name: explicit, else `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `ecs-gateway-<unix time>`.
pub(crate) fn session_name(explicit: Option<&str>, env: &Env) -> String {
    explicit
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| env.var("ALIBABA_CLOUD_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| {
            let secs = now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            format!("ecs-gateway-{secs}")
        })
}

/// The session length: unset or 0 is the default; under 900 s is refused, as STS would.
pub(crate) fn duration(seconds: Option<u64>) -> Result<u32, String> {
    match seconds {
        None | Some(0) => Ok(DEFAULT_DURATION_SECONDS),
        Some(s) if s < u64::from(MIN_DURATION_SECONDS) => Err(format!(
            "session duration {s}s is shorter than STS's minimum of {MIN_DURATION_SECONDS}s"
        )),
        Some(s) => u32::try_from(s).map_err(|_| format!("session duration {s}s is too long")),
    }
}

/// Where to send an STS call for `host`: the override when set, else `https://<host>/`.
pub(super) fn url(fetcher: &Fetcher, host: &str) -> Result<Url, FetchError> {
    match &fetcher.sts_override {
        Some(url) => Ok(url.clone()),
        None => Url::parse(&format!("https://{host}/"))
            .map_err(|_| FetchError(format!("STS host {host:?} is not a valid host name"))),
    }
}

/// The credential in an STS answer.
pub(super) fn credential_from(
    what: &str,
    status: u16,
    body: &[u8],
) -> Result<Credential, FetchError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        credentials: Option<Temporary>,
    }
    if status != 200 {
        return Err(http_failure(what, status, body));
    }
    serde_json::from_slice::<Answer>(body)
        .ok()
        .and_then(|a| a.credentials)
        .ok_or_else(|| FetchError(format!("{what}: the answer has no Credentials")))?
        .into_credential(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_follows_the_sdks_rules() {
        let none = Env::from_pairs::<&str, &str>([]);
        assert_eq!(host(None, None, &none), "sts.aliyuncs.com");
        assert_eq!(
            host(Some("cn-shanghai"), None, &none),
            "sts.cn-shanghai.aliyuncs.com"
        );
        let env = Env::from_pairs([
            ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "TRUE"),
        ]);
        assert_eq!(host(None, None, &env), "sts-vpc.cn-beijing.aliyuncs.com");
        assert_eq!(
            host(Some("cn-hangzhou"), Some(false), &env),
            "sts.cn-hangzhou.aliyuncs.com"
        );
        let vpc_only = Env::from_pairs([("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true")]);
        assert_eq!(host(None, None, &vpc_only), "sts.aliyuncs.com");
    }

    #[test]
    fn durations_below_stss_minimum_are_refused() {
        assert_eq!(duration(None), Ok(3600));
        assert_eq!(duration(Some(0)), Ok(3600));
        assert_eq!(duration(Some(900)), Ok(900));
        assert!(duration(Some(899)).unwrap_err().contains("900"));
    }
}
