//! Where requests go: by default the host Alibaba's ECS SDKs would call for the region and network
//! ([`catalog`]), over HTTPS; or an operator's override URL, which wins, as it does in the SDKs.

use crate::aliyun::catalog::{self, Network};
use crate::aliyun::request::RegionId;

const PLACEHOLDER: &str = "{region}";

/// Where requests go, checked once at start so that per-request work is a lookup and a
/// concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://<host>/`, the host resolved as the SDKs resolve it.
    Sdk(Network),
    /// An override URL, with `{region}` optionally inside its host.
    Template {
        /// Everything before `{region}`, or the whole URL.
        prefix: String,
        /// `Some(suffix)` when the template contains `{region}`.
        suffix: Option<String>,
    },
}

/// The endpoint setting is unusable. Messages never repeat the setting, which may hold a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not an absolute http(s) URL without query or fragment.
    #[error("must be an absolute http:// or https:// URL without query or fragment")]
    Invalid,
    /// The URL carries `user:password@`.
    #[error("must not contain user info (user:password@); ECS takes no credential in the URL")]
    UserInfo,
    /// A `{…}` other than `{region}`.
    #[error("may contain no placeholder other than {{region}}")]
    UnknownPlaceholder,
    /// `{region}` outside the host, twice, or as the host's last label.
    #[error(
        "may contain {{region}} once, inside the host name, with at least one fixed label after it (as in https://ecs.{{region}}.aliyuncs.com/)"
    )]
    RegionPlacement,
    /// Plain HTTP to a host that is not loopback would expose the signed request.
    #[error(
        "sends signed requests over plain http:// to a host that is not loopback; use https:// or pass --allow-insecure-endpoint"
    )]
    Insecure,
}

impl Endpoint {
    /// Parses a URL that may contain `{region}` once, inside the host and before a fixed label.
    pub fn parse(template: &str) -> Result<Self, EndpointError> {
        let (_, rest) = template.split_once("://").ok_or(EndpointError::Invalid)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(EndpointError::UserInfo);
        }
        let without_region = template.replacen(PLACEHOLDER, "", 1);
        if without_region.contains(PLACEHOLDER) {
            return Err(EndpointError::RegionPlacement);
        }
        if without_region.contains(['{', '}']) {
            return Err(EndpointError::UnknownPlaceholder);
        }
        if template.contains(PLACEHOLDER) && !region_is_inside_host(authority) {
            return Err(EndpointError::RegionPlacement);
        }
        // Check the URL as it will look with a real region in place.
        let sample = template.replace(PLACEHOLDER, "cn-hangzhou");
        let url = reqwest::Url::parse(&sample).map_err(|_| EndpointError::Invalid)?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(EndpointError::Invalid);
        }
        Ok(match template.split_once(PLACEHOLDER) {
            Some((prefix, suffix)) => Self::Template {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
            },
            None => Self::Template {
                prefix: template.to_owned(),
                suffix: None,
            },
        })
    }

    /// Whether requests go over TLS.
    pub fn is_https(&self) -> bool {
        match self {
            Self::Sdk(_) => true,
            Self::Template { prefix, .. } => prefix.starts_with("https://"),
        }
    }

    /// Whether every request stays on this machine (a loopback address or `localhost`).
    pub fn is_loopback(&self) -> bool {
        let Self::Template {
            prefix,
            suffix: None,
        } = self
        else {
            return false;
        };
        let Ok(url) = reqwest::Url::parse(prefix) else {
            return false;
        };
        match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
    }

    /// Refuses plain HTTP to anything but loopback, unless the operator allowed it.
    pub fn check_transport(&self, allow_insecure: bool) -> Result<(), EndpointError> {
        if self.is_https() || self.is_loopback() || allow_insecure {
            Ok(())
        } else {
            Err(EndpointError::Insecure)
        }
    }

    /// The URL for `region`, followed by `?` and `query`.
    pub fn url_with_query(&self, region: &RegionId, query: &str) -> String {
        match self {
            Self::Sdk(network) => {
                let mut url = String::with_capacity(8 + region.as_str().len() + 26 + query.len());
                url.push_str("https://");
                catalog::push_host(&mut url, region, *network);
                url.push_str("/?");
                url.push_str(query);
                url
            }
            Self::Template { prefix, suffix } => {
                let suffix = suffix.as_deref();
                let mut url = String::with_capacity(
                    prefix.len()
                        + region.as_str().len()
                        + suffix.map_or(0, str::len)
                        + 1
                        + query.len(),
                );
                url.push_str(prefix);
                if let Some(suffix) = suffix {
                    url.push_str(region.as_str());
                    url.push_str(suffix);
                }
                url.push('?');
                url.push_str(query);
                url
            }
        }
    }
}

/// Whether `{region}` sits in the host (not the port) with a fixed label after it, so a caller's
/// region can only ever choose a name under the operator's domain.
fn region_is_inside_host(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let Some((_, after)) = host.split_once(PLACEHOLDER) else {
        return false;
    };
    after
        .split_once('.')
        .is_some_and(|(_, labels)| labels.split('.').any(|label| !label.is_empty()))
}

impl Default for Endpoint {
    /// The SDKs' endpoints on the public network.
    fn default() -> Self {
        Self::Sdk(Network::Public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> RegionId {
        RegionId::parse(r).unwrap()
    }

    #[test]
    fn the_default_goes_where_the_sdks_go() {
        let public = Endpoint::default();
        assert_eq!(
            public.url_with_query(&region("cn-hangzhou"), "a=1"),
            "https://ecs-cn-hangzhou.aliyuncs.com/?a=1"
        );
        assert_eq!(
            public.url_with_query(&region("cn-shanghai"), "a=1"),
            "https://ecs.cn-shanghai.aliyuncs.com/?a=1"
        );
        assert_eq!(
            Endpoint::Sdk(Network::Vpc).url_with_query(&region("cn-shanghai"), "a=1"),
            "https://ecs-vpc.cn-shanghai.aliyuncs.com/?a=1"
        );
    }

    #[test]
    fn a_fixed_override_ignores_the_region() {
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            e.url_with_query(&region("us-west-1"), "q"),
            "http://127.0.0.1:8080/?q"
        );
    }

    #[test]
    fn bad_overrides_are_refused_for_the_right_reason() {
        use EndpointError::*;
        for (bad, why) in [
            ("ftp://x/", Invalid),
            ("not a url", Invalid),
            ("http://x/?a=b", Invalid),
            ("http://u:p@x/", UserInfo),
            ("https://user:hunter2@ecs.{region}.example/", UserInfo),
            ("https://{region}.{region}.x/", RegionPlacement),
            ("https://ecs.{REGION}.aliyuncs.com/", UnknownPlaceholder),
            ("https://ecs.{zone}.aliyuncs.com/", UnknownPlaceholder),
            ("http://{region}:8080/", RegionPlacement),
            ("http://ecs.{region}/", RegionPlacement),
            ("http://ecs.{region}./", RegionPlacement),
            ("http://gw.example:{region}/", RegionPlacement),
            ("http://gw.example/{region}/", RegionPlacement),
        ] {
            assert_eq!(Endpoint::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn the_region_may_sit_anywhere_in_the_host_before_a_fixed_label() {
        for good in [
            "https://ecs.{region}.aliyuncs.com/",
            "https://ecs-{region}.aliyuncs.com/",
            "https://{region}.ecs.internal:8443/api/",
        ] {
            assert!(Endpoint::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback_unless_allowed() {
        for local in [
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/",
            "http://[::1]:80/",
            "http://localhost:9/",
        ] {
            assert_eq!(
                Endpoint::parse(local).unwrap().check_transport(false),
                Ok(())
            );
        }
        for remote in ["http://10.0.0.1/", "http://ecs.{region}.example/"] {
            let e = Endpoint::parse(remote).unwrap();
            assert_eq!(e.check_transport(false), Err(EndpointError::Insecure));
            assert_eq!(e.check_transport(true), Ok(()));
        }
        assert_eq!(Endpoint::default().check_transport(false), Ok(()));
    }

    #[test]
    fn errors_never_repeat_the_setting() {
        let err = Endpoint::parse("https://admin:hunter2@ecs.example/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
