//! The ECS region catalog: the public regions and the SDKs' endpoint map, read from one data file
//! (`ecs_regions.toml`, with its sources), and the host a region's calls go to — resolved exactly
//! as Alibaba's ECS SDKs resolve it: the map first, then `ecs{-network}.{region}.aliyuncs.com`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::aliyun::request::RegionId;

/// The data file, compiled in.
const DATA: &str = include_str!("ecs_regions.toml");

/// Which network of Alibaba Cloud the gateway reaches ECS over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Internet endpoints, `ecs.<region>.aliyuncs.com`.
    #[default]
    Public,
    /// VPC endpoints, `ecs-vpc.<region>.aliyuncs.com`, for gateways inside Alibaba Cloud without
    /// internet egress.
    Vpc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    public_regions: Vec<String>,
    #[allow(dead_code)]
    sources: HashMap<String, String>,
    endpoint_map: HashMap<String, String>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    // The file is part of the source; a unit test parses it, so this cannot fail in a build
    // whose tests passed.
    toml::from_str(DATA).expect("src/aliyun/ecs_regions.toml parses")
});

/// The public ECS regions, by region ID.
pub fn public_regions() -> &'static [String] {
    &CATALOG.public_regions
}

/// The host the SDKs' endpoint map names for `region`, if it names one.
pub(crate) fn mapped_host(region: &str) -> Option<&'static str> {
    CATALOG.endpoint_map.get(region).map(String::as_str)
}

/// Every region the endpoint map names.
pub fn mapped_regions() -> impl Iterator<Item = &'static str> {
    CATALOG.endpoint_map.keys().map(String::as_str)
}

/// Appends the host of `region` on `network` to `out`: the mapped host (which ignores the network,
/// as in the SDKs), else `ecs.<region>.aliyuncs.com` or `ecs-vpc.<region>.aliyuncs.com`.
pub(crate) fn push_host(out: &mut String, region: &RegionId, network: Network) {
    if let Some(host) = mapped_host(region.as_str()) {
        out.push_str(host);
        return;
    }
    out.push_str(match network {
        Network::Public => "ecs.",
        Network::Vpc => "ecs-vpc.",
    });
    out.push_str(region.as_str());
    out.push_str(".aliyuncs.com");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of `region` on `network`.
    fn host(region: &RegionId, network: Network) -> String {
        let mut out = String::with_capacity(region.as_str().len() + 24);
        push_host(&mut out, region, network);
        out
    }

    fn region(id: &str) -> RegionId {
        RegionId::parse(id).unwrap()
    }

    #[test]
    fn the_data_file_parses_and_every_entry_is_usable() {
        assert!(public_regions().len() >= 20, "{:?}", public_regions());
        for r in public_regions() {
            assert!(RegionId::parse(r).is_ok(), "{r}");
        }
        assert!(CATALOG.sources.contains_key("public_regions"));
        assert!(CATALOG.sources.contains_key("endpoint_map"));
        for (r, host) in &CATALOG.endpoint_map {
            assert!(RegionId::parse(r).is_ok(), "{r}");
            assert!(
                host.ends_with(".aliyuncs.com")
                    && host.split('.').all(|l| !l.is_empty() && l.len() <= 63),
                "{r} → {host}"
            );
        }
    }

    #[test]
    fn the_map_wins_over_the_regional_rule_on_either_network() {
        // The hosts the issue quotes from the SDKs, typed here rather than read from the file.
        let cases = [
            ("cn-hangzhou", "ecs-cn-hangzhou.aliyuncs.com"),
            ("cn-shanghai-finance-1", "ecs-cn-hangzhou.aliyuncs.com"),
            ("cn-shenzhen-finance-1", "ecs-cn-hangzhou.aliyuncs.com"),
            ("cn-wuhan", "ecs.aliyuncs.com"),
            ("cn-zhangbei", "ecs.aliyuncs.com"),
            ("cn-hangzhou-finance", "ecs.aliyuncs.com"),
            ("cn-beijing-gov-1", "ecs.aliyuncs.com"),
            ("cn-north-2-gov-1", "ecs.aliyuncs.com"),
        ];
        for (r, expected) in cases {
            assert_eq!(host(&region(r), Network::Public), expected);
            assert_eq!(host(&region(r), Network::Vpc), expected);
        }
        assert_eq!(
            host(&region("cn-shanghai"), Network::Public),
            "ecs.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(
            host(&region("cn-shanghai"), Network::Vpc),
            "ecs-vpc.cn-shanghai.aliyuncs.com"
        );
    }

    #[test]
    fn of_the_public_regions_the_map_names_only_cn_hangzhou() {
        // The map's other entries are finance, government, internal or retired IDs, which the
        // default region list leaves to --regions.
        let public: Vec<&str> = mapped_regions()
            .filter(|r| public_regions().iter().any(|p| p == r))
            .collect();
        assert_eq!(public, ["cn-hangzhou"]);
    }
}
