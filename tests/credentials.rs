//! Temporary credentials end to end: each source of the chain signs calls the ECS face accepts,
//! a credential refreshes under load without a failed call, an expired one turns health
//! NOT_SERVING and calls UNAVAILABLE until a refresh lands, and no secret reaches a log.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Parser as _;
use ecs_gateway::aliyun::Env;
use ecs_gateway::app::{CredentialsFrom, Gateway, Settings};
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::simulator::{DEMO_ECS_ROLE, Simulator, SimulatorConfig};
use ecs_gateway::testing::observe::LogFormat;
use support::credential_source::{Answer, CredentialSource};
use support::log_capture::Capture;
use support::{error_info, request, start_simulator, test_credential};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.rrsa-test.token-value";

/// A gateway built by `Gateway::build` from parsed flags, with the chain reading `vars`, against `sim_url` for ECS,
/// STS and the metadata service.
struct Running {
    channel: Channel,
    _stop: oneshot::Sender<()>,
}

impl Running {
    async fn start(sim_url: &str, vars: Vec<(&str, String)>) -> Self {
        Self::try_start(sim_url, vars)
            .await
            .unwrap_or_else(|error| panic!("the gateway did not start: {error}"))
    }

    async fn try_start(
        sim_url: &str,
        vars: Vec<(&str, String)>,
    ) -> Result<Self, ecs_gateway::RunError> {
        let cli = ecs_gateway::app::cli::Cli::try_parse_from([
            "ecs-gateway",
            "--listen",
            "127.0.0.1:0",
            "--endpoint",
            sim_url,
            "--sts-endpoint",
            sim_url,
            "--metadata-endpoint",
            sim_url,
            // The minute of load below is about refreshing credentials, not the account's quota
            // (tests/gateway/quota.rs), which would refuse most of its stops.
            "--api-quota",
            "StopInvocation=1000000/60s",
        ])
        .unwrap();
        let settings = Settings::try_from(&cli.gateway).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let env = Env::from_pairs(
            vars.into_iter()
                .chain([("HOME", "/nonexistent".to_owned())]),
        );
        let gateway = Gateway::build(settings, CredentialsFrom::Chain(env)).await?;
        let addr = gateway.addr();
        tokio::spawn(gateway.serve(async {
            let _ = stopped.await;
        }));
        let channel = loop {
            match Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Ok(Self {
            channel,
            _stop: stop,
        })
    }

    fn client(&self) -> CloudAssistantServiceClient<Channel> {
        CloudAssistantServiceClient::new(self.channel.clone())
    }

    /// Waits up to `limit` for health to say `status`.
    async fn wait_for_health(&self, status: ServingStatus, limit: Duration) -> bool {
        let reached = async {
            while self.health().await != status {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(limit, reached).await.is_ok()
    }

    async fn health(&self) -> ServingStatus {
        let answer = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        answer.into_inner().status()
    }
}

fn simulator_config(lifetime: Duration) -> SimulatorConfig {
    SimulatorConfig {
        sts_lifetime: lifetime,
        oidc_token: Some(OIDC_TOKEN.to_owned()),
        ..SimulatorConfig::with_credential(test_credential())
    }
}

fn token_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ecs-gateway-oidc-{}", std::process::id()));
    std::fs::write(&path, OIDC_TOKEN).unwrap();
    path
}

/// The temporary ids the ECS face accepted whose source is `prefix`.
fn accepted(sim: &Simulator, prefix: &str) -> HashSet<String> {
    sim.keyring()
        .temporary_ids_accepted()
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn each_temporary_source_signs_calls_that_ecs_accepts() {
    let base = test_credential();
    let no_metadata = ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "STS.oidc-GatewayRole.",
            vec![
                (
                    "ALIBABA_CLOUD_ROLE_ARN",
                    "acs:ram::1:role/GatewayRole".into(),
                ),
                (
                    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                    "acs:ram::1:oidc-provider/ack".into(),
                ),
                (
                    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                    token_file().display().to_string(),
                ),
            ],
        ),
        ("STS.ecs-EcsGatewayRole.", vec![]),
        (
            "STS.ecs-EcsGatewayRole.",
            vec![
                (
                    "ALIBABA_CLOUD_CREDENTIALS_URI",
                    "{sim}latest/meta-data/ram/security-credentials/EcsGatewayRole".into(),
                ),
                no_metadata.clone(),
            ],
        ),
    ];
    for (prefix, vars) in cases {
        let (sim_url, sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k, v.replace("{sim}", &sim_url)))
            .collect();
        let gateway = Running::start(&sim_url, vars).await;
        gateway
            .client()
            .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
            .await
            .unwrap_or_else(|s| panic!("{prefix}: {s:?}"));
        assert_eq!(
            accepted(&sim, prefix).len(),
            1,
            "{prefix}: {:?}",
            sim.keyring().temporary_ids_accepted()
        );
    }

    // AssumeRole, signed with a long-lived key from the credentials file.
    let (sim_url, sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
    let ini = std::env::temp_dir().join(format!("ecs-gateway-ini-{}", std::process::id()));
    std::fs::write(
        &ini,
        format!(
            "[default]\ntype = ram_role_arn\naccess_key_id = {}\naccess_key_secret = {}\nrole_arn = acs:ram::1:role/IniRole\n",
            base.access_key_id(),
            base.access_key_secret()
        ),
    )
    .unwrap();
    let gateway = Running::start(
        &sim_url,
        vec![
            ("ALIBABA_CLOUD_CREDENTIALS_FILE", ini.display().to_string()),
            no_metadata,
        ],
    )
    .await;
    gateway
        .client()
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap();
    assert_eq!(accepted(&sim, "STS.assume-IniRole.").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_second_credential_refreshes_under_a_minute_of_load_without_a_failed_call() {
    let logs = Capture::shared(LogFormat::Json, "info");
    let (sim_url, sim) = start_simulator(simulator_config(Duration::from_secs(20))).await;
    let gateway = Running::start(
        &sim_url,
        vec![
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/LoadRole".into()),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/ack".into(),
            ),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file().display().to_string(),
            ),
        ],
    )
    .await;
    let until = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let mut client = gateway.client();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while Instant::now() < until {
                match client
                    .stop_invocation(request("cn-hangzhou", &format!("t-load{worker}"), &[]))
                    .await
                {
                    // The invocation is unknown to the simulator: a NOT_FOUND means ECS accepted the
                    // signature and looked it up, which is what this test is about.
                    Err(status) if status.code() == tonic::Code::NotFound => ok += 1,
                    Ok(_) => ok += 1,
                    Err(status) => failed.push(status),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        }));
    }
    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} calls failed, first: {:?}",
            failed.len(),
            failed[0]
        );
        total += ok;
    }
    let ids = accepted(&sim, "STS.oidc-LoadRole.");
    eprintln!(
        "{total} calls in 60 s, the upstream saw {} temporary AccessKeyIds: {ids:?}",
        ids.len()
    );
    assert!(total > 1000, "{total} calls");
    assert!(ids.len() >= 3, "the upstream saw {ids:?}");
    let text = logs.text();
    assert!(text.contains("credential refreshed"), "{text}");
    for secret in [OIDC_TOKEN, "CAIS", test_credential().access_key_secret()] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_turns_health_not_serving_until_a_refresh_lands() {
    let (sim_url, sim) = start_simulator(simulator_config(Duration::from_secs(6))).await;
    let gateway = Running::start(&sim_url, vec![]).await;
    let mut client = gateway.client();
    client
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .unwrap();
    assert_eq!(gateway.health().await, ServingStatus::Serving);

    sim.set_credential_faces_down(true);
    assert!(
        gateway
            .wait_for_health(ServingStatus::NotServing, Duration::from_secs(15))
            .await,
        "health turns NOT_SERVING once the credential expires"
    );
    let calls_before = sim.requests_received();
    let status = client
        .stop_invocation(request("cn-hangzhou", "t-demo0002", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        error_info(&status),
        (
            "CREDENTIALS_UNAVAILABLE".to_owned(),
            "ecs-gateway".to_owned()
        )
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert!(details.retry_info().is_some(), "{status:?}");
    assert_eq!(
        sim.requests_received(),
        calls_before,
        "nothing is sent without a credential"
    );

    sim.set_credential_faces_down(false);
    assert!(
        gateway
            .wait_for_health(ServingStatus::Serving, Duration::from_secs(40))
            .await,
        "health recovers by itself"
    );
    client
        .stop_invocation(request("cn-hangzhou", "t-demo0003", &[]))
        .await
        .unwrap();
    assert_eq!(
        accepted(&sim, &format!("STS.ecs-{DEMO_ECS_ROLE}.")).len(),
        2
    );
}

#[tokio::test]
async fn the_binary_says_which_source_supplied_the_credential_and_when_it_expires() {
    let (sim_url, _sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
    let binary = support::binary::Binary::start(
        &["--endpoint", &sim_url],
        &[("ECS_GATEWAY_METADATA_ENDPOINT", &sim_url)],
    )
    .await;
    let found = binary.line("credential found").expect("a credential line");
    binary.stop().await;
    assert_eq!(found["source"], "ECS instance RAM role", "{found}");
    assert_eq!(found["provider"], "ecs_ram_role", "{found}");
    let expiration = found["expiration"].as_str().unwrap();
    let at = humantime::parse_rfc3339(expiration).unwrap();
    assert!(
        at > std::time::SystemTime::now() + Duration::from_secs(3000),
        "{found}"
    );
    let line = found.to_string();
    assert!(!line.contains("CAIS") && !line.contains("STS."), "{line}");
}

#[tokio::test]
async fn dev_mode_can_show_a_refreshing_credential() {
    let binary =
        support::binary::Binary::start(&["--dev", "--dev-credential-lifetime", "5s"], &[]).await;
    let found = binary.line("credential found").expect("a credential line");
    assert_eq!(found["provider"], "ecs_ram_role", "{found}");
    let refreshed = support::eventually(Duration::from_secs(10), || {
        binary.line("credential refreshed").is_some()
    })
    .await;
    assert!(refreshed, "{:?}", binary.logs.lock().unwrap());
    binary
        .client()
        .await
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .expect("calls signed with the refreshed credential succeed");
    binary.stop().await;
}

/// The chain reading only a credentials URI at `url`.
fn uri_only(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ALIBABA_CLOUD_CREDENTIALS_URI", url.to_owned()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned()),
    ]
}

#[tokio::test]
async fn a_credential_answer_of_100_mb_or_without_end_is_refused_after_64_kib() {
    let (sim_url, _sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
    for answer in [Answer::Huge, Answer::Endless] {
        let source = CredentialSource::start(answer.clone()).await;
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            Running::try_start(&sim_url, uri_only(&source.url)),
        )
        .await
        .expect("refused at once, not at the 10 s timeout");
        let error = refused.err().expect("no credential").to_string();
        assert!(
            error.contains("credentials URI") && error.contains("larger than 64 KiB"),
            "{answer:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_fetched_credential_that_has_expired_or_is_malformed_is_never_installed() {
    let (sim_url, _sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
    let with = |id: &str, secret: &str| Answer::Credential {
        id: id.to_owned(),
        secret: secret.to_owned(),
        expires_in: 3600,
    };
    let cases = [
        (Answer::valid_for(-60), "already expired or about to"),
        (Answer::valid_for(1), "already expired or about to"),
        (
            with("STS.id\r\n", "secret"),
            "AccessKeyId has surrounding whitespace or control characters",
        ),
        (
            with(" STS.id", "secret"),
            "AccessKeyId has surrounding whitespace or control characters",
        ),
        (
            with("STS.id", "sec\nret"),
            "AccessKeySecret has surrounding whitespace or control characters",
        ),
        (with("", "secret"), "the answer has no AccessKeyId"),
    ];
    for (answer, why) in cases {
        let source = CredentialSource::start(answer.clone()).await;
        let refused = Running::try_start(&sim_url, uri_only(&source.url)).await;
        let error = refused.err().expect("no credential").to_string();
        assert!(error.contains(why), "{answer:?}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_credential_through_a_hanging_and_an_expired_refresh() {
    let logs = Capture::shared(LogFormat::Json, "info");
    let (sim_url, _sim) = start_simulator(simulator_config(Duration::from_secs(3600))).await;
    // Valid for 5 s: refreshed at 80 %, 4 s in.
    let source = CredentialSource::start(Answer::valid_for(5)).await;
    let gateway = Running::start(&sim_url, uri_only(&source.url)).await;
    let started = Instant::now();
    assert_eq!(gateway.health().await, ServingStatus::Serving);

    // The refresh hangs (the fetch timeout is 10 s): health turns NOT_SERVING at expiry, not 10 s later.
    source.set(Answer::Hang);
    assert!(
        gateway
            .wait_for_health(ServingStatus::NotServing, Duration::from_secs(8))
            .await,
        "NOT_SERVING once the credential expired"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}: NOT_SERVING came only after the hanging fetch gave up",
        started.elapsed()
    );
    // Answers of an expired credential are refused, and said at WARN with the expiry.
    source.set(Answer::valid_for(-30));
    let warned = async {
        loop {
            let text = logs.text();
            if text.lines().any(|l| {
                l.contains("\"WARN\"")
                    && l.contains("credential refresh failed")
                    && l.contains("already expired or about to")
            }) || text
                .lines()
                .any(|l| l.contains("\"ERROR\"") && l.contains("already expired or about to"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(40), warned)
        .await
        .expect("the refused expired answer is logged");
    assert_eq!(gateway.health().await, ServingStatus::NotServing);
    // The source recovers: SERVING again, calls succeed.
    source.set(Answer::valid_for(3600));
    assert!(
        gateway
            .wait_for_health(ServingStatus::Serving, Duration::from_secs(40))
            .await,
        "SERVING again on recovery"
    );
    assert_no_secrets_in(&logs.text());
}

fn assert_no_secrets_in(text: &str) {
    for secret in ["hostile-source-secret", "hostile-source-token"] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
}
