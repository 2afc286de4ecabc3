//! The gateway's credential chain against Alibaba's own: for every source, and with several present,
//! the gateway and the Python `alibabacloud-credentials` library (tests/sdk/credentials_chain.py),
//! given the same variables, files and loopback fakes, pick the same credential.
//!
//! Temporary credentials come from the simulator's STS and metadata faces, which name each one
//! `STS.<face>-<role>.<sequence>`; two fetches give two sequence numbers, so for those the source
//! (`STS.<face>-<role>`) is compared, and the STS host each side would call.

use std::path::Path;

use crate::support::test_credential;
use ecs_gateway::aliyun::Env;
use ecs_gateway::simulator::{DEMO_ECS_ROLE, SimulatorConfig};
use ecs_gateway::testing::aliyun::Fetcher;
use ecs_gateway::testing::aliyun::resolve_chain;

const CLOSED: &str = "127.0.0.1:9";

/// One setting of the world: variables (with `{home}`, `{sim}`, `{uri}` filled in) and files under HOME.
struct Scenario {
    name: &'static str,
    vars: Vec<(&'static str, &'static str)>,
    files: Vec<(&'static str, String)>,
    metadata_up: bool,
}

fn cli_config(current: &str, profiles: &str) -> String {
    format!(r#"{{"current": "{current}", "profiles": [{profiles}], "meta_path": ""}}"#)
}

fn ak_profile(name: &str, id: &str) -> String {
    format!(
        r#"{{"name": "{name}", "mode": "AK", "access_key_id": "{id}", "access_key_secret": "cli-secret", "region_id": "cn-hangzhou", "output_format": "json", "language": "en"}}"#
    )
}

fn scenarios() -> Vec<Scenario> {
    let base = test_credential();
    let (base_id, base_secret) = (
        base.access_key_id().to_owned(),
        base.access_key_secret().to_owned(),
    );
    let ram_role_profile = format!(
        r#"{{"name": "role", "mode": "RamRoleArn", "access_key_id": "{base_id}", "access_key_secret": "{base_secret}", "ram_role_arn": "acs:ram::123456789012:role/OracleCliRole", "ram_session_name": "oracle", "expired_seconds": 900, "sts_region": "cn-shanghai"}}"#
    );
    let ini = "[default]\ntype = access_key  # a long-lived key\naccess_key_id = LTAIoracleIniDefault\naccess_key_secret = ini-secret\n\n[ops]\ntype = access_key\naccess_key_id = LTAIoracleIniOps\naccess_key_secret = ini-secret-2\n".to_owned();
    let ini_role = format!(
        "[default]\ntype = ram_role_arn\naccess_key_id = {base_id}\naccess_key_secret = {base_secret}\nrole_arn = acs:ram::123456789012:role/OracleIniRole\nrole_session_name = oracle\n"
    );
    let env_key = vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIoracleEnv"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
    ];
    let oidc = vec![
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            "acs:ram::123456789012:role/OracleOidcRole",
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::123456789012:oidc-provider/ack-rrsa",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "{home}/token"),
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "oracle-oidc"),
    ];
    let token_file = ("token", "eyJhbGciOiJSUzI1NiJ9.oracle.token".to_owned());
    let cli = (
        ".aliyun/config.json",
        cli_config("dev", &ak_profile("dev", "LTAIoracleCli")),
    );
    let ini_file = (".alibabacloud/credentials.ini", ini.clone());
    let uri = ("ALIBABA_CLOUD_CREDENTIALS_URI", "{uri}");
    let no_metadata = ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    let s = |name,
             vars: Vec<(&'static str, &'static str)>,
             files: Vec<(&'static str, String)>,
             metadata_up| Scenario {
        name,
        vars,
        files,
        metadata_up,
    };
    vec![
        s("environment", env_key.clone(), vec![], false),
        s(
            "environment with an STS token",
            [
                env_key.clone(),
                vec![("ALIBABA_CLOUD_SECURITY_TOKEN", "env-token")],
            ]
            .concat(),
            vec![],
            false,
        ),
        s(
            "OIDC role (RRSA)",
            oidc.clone(),
            vec![token_file.clone()],
            false,
        ),
        s(
            "OIDC role through a regional VPC STS endpoint",
            [
                oidc.clone(),
                vec![
                    ("ALIBABA_CLOUD_STS_REGION", "cn-beijing"),
                    ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
                ],
            ]
            .concat(),
            vec![token_file.clone()],
            false,
        ),
        s("CLI profile, current AK", vec![], vec![cli.clone()], false),
        s(
            "CLI profile picked by ALIBABA_CLOUD_PROFILE",
            vec![("ALIBABA_CLOUD_PROFILE", "ops")],
            vec![(
                ".aliyun/config.json",
                cli_config(
                    "dev",
                    &[
                        ak_profile("dev", "LTAIoracleCli"),
                        ak_profile("ops", "LTAIoracleCliOps"),
                    ]
                    .join(","),
                ),
            )],
            false,
        ),
        s(
            "CLI profile, StsToken",
            vec![],
            vec![(
                ".aliyun/config.json",
                cli_config(
                    "sts",
                    r#"{"name": "sts", "mode": "StsToken", "access_key_id": "STS.oracleCliToken", "access_key_secret": "s", "sts_token": "t"}"#,
                ),
            )],
            false,
        ),
        s(
            "CLI profile, RamRoleArn in its own STS region",
            vec![],
            vec![(".aliyun/config.json", cli_config("role", &ram_role_profile))],
            false,
        ),
        s(
            "CLI profile, EcsRamRole",
            vec![],
            vec![(
                ".aliyun/config.json",
                cli_config(
                    "ecs",
                    &format!(
                        r#"{{"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "{DEMO_ECS_ROLE}"}}"#
                    ),
                ),
            )],
            true,
        ),
        s(
            "credentials file, default section",
            vec![],
            vec![ini_file.clone()],
            false,
        ),
        s(
            "credentials file, section from ALIBABA_CLOUD_PROFILE",
            vec![("ALIBABA_CLOUD_PROFILE", "ops")],
            vec![ini_file.clone()],
            false,
        ),
        s(
            "credentials file named by ALIBABA_CLOUD_CREDENTIALS_FILE",
            vec![("ALIBABA_CLOUD_CREDENTIALS_FILE", "{home}/elsewhere.ini")],
            vec![("elsewhere.ini", ini.clone())],
            false,
        ),
        s(
            "credentials file, ram_role_arn with ALIBABA_CLOUD_STS_REGION",
            vec![("ALIBABA_CLOUD_STS_REGION", "ap-southeast-1")],
            vec![(".alibabacloud/credentials.ini", ini_role)],
            false,
        ),
        s("ECS instance role, discovered", vec![], vec![], true),
        s(
            "ECS instance role, named, IMDSv1 disabled",
            vec![
                ("ALIBABA_CLOUD_ECS_METADATA", DEMO_ECS_ROLE),
                ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
            ],
            vec![],
            true,
        ),
        s("credentials URI", vec![uri, no_metadata], vec![], true),
        s(
            "credentials URI when the metadata service is unreachable",
            vec![uri],
            vec![],
            false,
        ),
        s(
            "environment beats everything",
            [env_key.clone(), oidc.clone(), vec![uri]].concat(),
            vec![token_file.clone(), cli.clone(), ini_file.clone()],
            true,
        ),
        s(
            "OIDC beats the CLI profile",
            oidc.clone(),
            vec![token_file.clone(), cli.clone(), ini_file.clone()],
            true,
        ),
        s(
            "the CLI profile beats the credentials file",
            vec![],
            vec![cli.clone(), ini_file.clone()],
            true,
        ),
        s(
            "a disabled CLI profile lets the credentials file win",
            vec![("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")],
            vec![cli.clone(), ini_file.clone()],
            true,
        ),
        s(
            "the credentials file beats the instance role",
            vec![uri],
            vec![ini_file.clone()],
            true,
        ),
        s("the instance role beats the URI", vec![uri], vec![], true),
        s(
            "a profile naming no section falls through to the instance role",
            vec![("ALIBABA_CLOUD_PROFILE", "absent")],
            vec![ini_file.clone()],
            true,
        ),
        s("nothing anywhere", vec![], vec![], false),
    ]
}

/// `STS.<face>-<role>.<n>` → `STS.<face>-<role>`; any other id as it is.
fn source_of(id: &str) -> &str {
    match id.rsplit_once('.') {
        Some((stem, n)) if id.starts_with("STS.") && n.chars().all(|c| c.is_ascii_digit()) => stem,
        _ => id,
    }
}

fn fill(value: &str, home: &Path, uri: &str) -> String {
    value
        .replace("{home}", &home.display().to_string())
        .replace("{uri}", uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_picks_the_credential_alibabas_own_chain_picks() {
    let python = which_python();
    let (sim_url, _sim) =
        crate::support::start_simulator(SimulatorConfig::with_credential(test_credential())).await;
    let sim = sim_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // A credentials URI server distinct from the metadata face, so that a win is unambiguous.
    let uri_server = wiremock::MockServer::start().await;
    let expiration = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(format!(
            r#"{{"Code": "Success", "AccessKeyId": "STS.uriServerKey", "AccessKeySecret": "uri-secret", "SecurityToken": "uri-token", "Expiration": "{expiration}"}}"#
        )))
        .mount(&uri_server)
        .await;
    let uri = format!("{}/credentials?token=abc", uri_server.uri());

    let mut compared = 0;
    for scenario in scenarios() {
        let home = tempdir(scenario.name);
        for (path, content) in &scenario.files {
            let path = home.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, fill(content, &home, &uri)).unwrap();
        }
        let vars: Vec<(String, String)> = scenario
            .vars
            .iter()
            .map(|(k, v)| (k.to_string(), fill(v, &home, &uri)))
            .chain([("HOME".to_owned(), home.display().to_string())])
            .collect();
        let metadata = if scenario.metadata_up {
            sim.as_str()
        } else {
            CLOSED
        };

        let fetcher = Fetcher::new(
            Some(url::Url::parse(&sim_url).unwrap()),
            url::Url::parse(&format!("http://{metadata}")).unwrap(),
        )
        .unwrap();
        let ours = resolve_chain(&Env::from_pairs(vars.clone()), &fetcher).await;

        let output = std::process::Command::new(&python)
            .arg("tests/sdk/credentials_chain.py")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env("ORACLE_METADATA", metadata)
            .env("ORACLE_STS", &sim)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let theirs: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|_| {
                panic!(
                    "{}: the oracle printed {stdout:?}, stderr {}",
                    scenario.name,
                    String::from_utf8_lossy(&output.stderr)
                )
            });

        match (&ours, theirs["access_key_id"].as_str()) {
            (Ok(found), Some(their_id)) => {
                assert_eq!(
                    source_of(found.credential.access_key_id()),
                    source_of(their_id),
                    "{}: the gateway took {:?} ({}), the SDK {} ({})",
                    scenario.name,
                    found.credential.access_key_id(),
                    found.step.name(),
                    their_id,
                    theirs["provider"]
                );
                let their_hosts: Vec<&str> = theirs["sts_hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|h| h.as_str())
                    .collect();
                assert_eq!(
                    found.source.sts_host().into_iter().collect::<Vec<_>>(),
                    their_hosts,
                    "{}: STS host",
                    scenario.name
                );
            }
            (Err(nothing), None) => {
                assert!(theirs["error"].is_string(), "{}: {theirs}", scenario.name);
                assert_eq!(nothing.tried().len(), 6, "{nothing}");
            }
            (ours, _) => panic!(
                "{}: the gateway says {ours:?}, the SDK says {theirs}",
                scenario.name
            ),
        }
        compared += 1;
        let _ = std::fs::remove_dir_all(&home);
    }
    assert_eq!(compared, scenarios().len());
}

fn which_python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir =
        std::env::temp_dir().join(format!("ecs-gateway-oracle-{}-{slug}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
