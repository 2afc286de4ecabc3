//! The oracle for endpoints: for every public region and every region in the SDKs' endpoint map,
//! on both networks, the host the gateway would call equals the host Alibaba's Tea ECS SDK
//! (`alibabacloud_ecs20140526`) computes, read from the installed SDK at run time; and the legacy
//! SDK's (`aliyun-python-sdk-ecs`) map agrees wherever it has an entry. A new SDK release that
//! moves a host makes this fail. `scripts/test.sh` installs the SDKs.

use std::collections::{BTreeMap, BTreeSet};

use ecs_gateway::aliyun::Endpoint;
use ecs_gateway::aliyun::Network;
use ecs_gateway::aliyun::RegionId;
use ecs_gateway::testing::aliyun as catalog;
use tokio::io::AsyncWriteExt as _;

#[derive(serde::Deserialize)]
struct SdkHosts {
    public: String,
    vpc: String,
    legacy: Option<String>,
}

/// The host in the URL the gateway's client would send a request for `region` on `network` to.
fn gateway_host(region: &str, network: Network) -> String {
    let region = RegionId::parse(region).unwrap();
    let url = Endpoint::Sdk(network).url_with_query(&region, "Action=StopInvocation");
    reqwest::Url::parse(&url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned()
}

async fn sdk_hosts(regions: &BTreeSet<String>) -> BTreeMap<String, SdkHosts> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/endpoints.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let input: String = regions.iter().map(|r| format!("{r}\n")).collect();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "the SDKs must be installed (pip install -r scripts/test-requirements.txt): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn every_region_goes_where_alibabas_ecs_sdks_send_it_on_both_networks() {
    let mut regions: BTreeSet<String> = catalog::public_regions().iter().cloned().collect();
    regions.extend(catalog::mapped_regions().map(str::to_owned));
    // Regions on neither list follow the regional rule in both.
    regions.extend(["xx-unlisted-1".to_owned(), "cn-nowhere".to_owned()]);
    let sdk = sdk_hosts(&regions).await;
    assert_eq!(sdk.len(), regions.len());

    let mut mismatches = Vec::new();
    let mut legacy_checked = 0;
    for (region, hosts) in &sdk {
        for (network, expected) in [(Network::Public, &hosts.public), (Network::Vpc, &hosts.vpc)] {
            let ours = gateway_host(region, network);
            if &ours != expected {
                mismatches.push(format!(
                    "{region} {network:?}: gateway {ours}, SDK {expected}"
                ));
            }
        }
        if let Some(legacy) = &hosts.legacy {
            legacy_checked += 1;
            let ours = gateway_host(region, Network::Public);
            if &ours != legacy {
                mismatches.push(format!("{region}: gateway {ours}, legacy SDK {legacy}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The comparison covered the whole map (every mapped region has a legacy entry today).
    assert_eq!(legacy_checked, catalog::mapped_regions().count());
    assert_eq!(sdk["cn-shanghai"].vpc, "ecs-vpc.cn-shanghai.aliyuncs.com");
}
