//! The endpoint's URL for each region, parsed once: an attempt clones it and sets only the signed
//! query, instead of having the whole URL (scheme, host, IDNA) parsed again on every call.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use reqwest::Url;

use super::endpoint::Endpoint;
use super::request::RegionId;

/// Regions remembered; past this, a region's URL is parsed per call (the region list is
/// operator-set, so this bounds memory, not the normal case).
const MAX_REGIONS: usize = 128;

/// Parsed base URLs by region.
#[derive(Debug)]
pub struct BaseUrls {
    endpoint: Endpoint,
    parsed: ArcSwap<HashMap<String, Url>>,
}

impl BaseUrls {
    /// Base URLs of `endpoint`, parsed as regions are first used.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            parsed: ArcSwap::default(),
        }
    }

    /// The URL for `region` with `query` (already percent-encoded) as its query.
    pub fn with_query(&self, region: &RegionId, query: &str) -> Result<Url, url::ParseError> {
        let mut url = match self.parsed.load().get(region.as_str()) {
            Some(base) => base.clone(),
            None => self.parse(region)?,
        };
        url.set_query(Some(query));
        Ok(url)
    }

    fn parse(&self, region: &RegionId) -> Result<Url, url::ParseError> {
        let url = Url::parse(&self.endpoint.url_with_query(region, ""))?;
        self.parsed.rcu(|parsed| {
            let mut parsed = HashMap::clone(parsed);
            if parsed.len() < MAX_REGIONS {
                parsed.insert(region.as_str().to_owned(), url.clone());
            }
            Arc::new(parsed)
        });
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::catalog::Network;

    fn region(name: &str) -> RegionId {
        RegionId::parse(name).unwrap()
    }

    #[test]
    fn a_cached_base_gives_the_url_a_full_parse_gives() {
        let endpoints = [
            Endpoint::Sdk(Network::Public),
            Endpoint::Sdk(Network::Vpc),
            Endpoint::parse("http://127.0.0.1:8080/base/").unwrap(),
            Endpoint::parse("https://ecs.{region}.example.com:8443/").unwrap(),
        ];
        let query = "AccessKeyId=LTAI&Signature=a%2Bb%3D&Timestamp=2026-12-01T09%3A00%3A00Z&InstanceId.1=i-1";
        for endpoint in endpoints {
            let bases = BaseUrls::new(endpoint.clone());
            for name in ["cn-hangzhou", "us-west-1", "cn-hangzhou"] {
                let full = Url::parse(&endpoint.url_with_query(&region(name), query)).unwrap();
                let from_base = bases.with_query(&region(name), query).unwrap();
                assert_eq!(from_base.as_str(), full.as_str());
                assert_eq!(
                    from_base.query(),
                    Some(query),
                    "the signed query is kept byte for byte"
                );
            }
            assert_eq!(bases.parsed.load().len(), 2, "one parse per region");
        }
    }

    #[test]
    fn past_the_bound_regions_are_parsed_per_call_and_not_kept() {
        let bases = BaseUrls::new(Endpoint::Sdk(Network::Public));
        for i in 0..MAX_REGIONS + 10 {
            let url = bases
                .with_query(&region(&format!("xx-test-{i}")), "a=1")
                .unwrap();
            assert_eq!(
                url.host_str(),
                Some(format!("ecs.xx-test-{i}.aliyuncs.com").as_str())
            );
        }
        assert_eq!(bases.parsed.load().len(), MAX_REGIONS);
    }
}
