//! Where requests go: `https://ecs.{region}.aliyuncs.com/` by default, or an override URL.

use crate::aliyun::request::RegionId;

/// The default endpoint template; `{region}` is replaced by the request's region ID.
pub const DEFAULT_ENDPOINT: &str = "https://ecs.{region}.aliyuncs.com/";

const PLACEHOLDER: &str = "{region}";

/// An endpoint URL template, checked once at start so that per-request work is a concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    prefix: String,
    /// `Some(suffix)` when the template contains `{region}`.
    suffix: Option<String>,
}

/// The endpoint setting is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not an absolute http(s) URL without query or fragment.
    #[error("endpoint {0:?} must be an absolute http:// or https:// URL without query or fragment")]
    Invalid(String),
}

impl Endpoint {
    /// Parses a URL that may contain `{region}` once.
    pub fn parse(template: &str) -> Result<Self, EndpointError> {
        let invalid = || EndpointError::Invalid(template.to_owned());
        if template.matches(PLACEHOLDER).count() > 1 {
            return Err(invalid());
        }
        // Check the URL as it will look with a real region in place.
        let sample = template.replace(PLACEHOLDER, "cn-hangzhou");
        let url = reqwest::Url::parse(&sample).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(invalid());
        }
        Ok(match template.split_once(PLACEHOLDER) {
            Some((prefix, suffix)) => Self {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
            },
            None => Self {
                prefix: template.to_owned(),
                suffix: None,
            },
        })
    }

    /// The URL for `region`, followed by `?` and `query`.
    pub fn url_with_query(&self, region: &RegionId, query: &str) -> String {
        let suffix = self.suffix.as_deref();
        let mut url = String::with_capacity(
            self.prefix.len()
                + region.as_str().len()
                + suffix.map_or(0, str::len)
                + 1
                + query.len(),
        );
        url.push_str(&self.prefix);
        if let Some(suffix) = suffix {
            url.push_str(region.as_str());
            url.push_str(suffix);
        }
        url.push('?');
        url.push_str(query);
        url
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::parse(DEFAULT_ENDPOINT).expect("the default endpoint is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> RegionId {
        RegionId::parse(r).unwrap()
    }

    #[test]
    fn default_puts_the_region_in_the_host() {
        let url = Endpoint::default().url_with_query(&region("cn-hangzhou"), "a=1");
        assert_eq!(url, "https://ecs.cn-hangzhou.aliyuncs.com/?a=1");
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
    fn bad_overrides_are_refused() {
        for bad in [
            "ftp://x/",
            "not a url",
            "http://x/?a=b",
            "https://{region}.{region}.x/",
            "http://u:p@x/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
