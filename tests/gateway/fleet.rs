//! The fleet-wide limiter with real parts: a real redis-server on loopback, gateway processes
//! sharing it, and the simulator counting what reaches "ECS".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::binary::Binary;
use crate::support::redis::RedisServer;
use crate::support::{eventually, request, start_simulator};
use ecs_gateway::simulator::{Simulator, SimulatorConfig, demo_credential};
use ecs_gateway::testing::limit::Rate;
use ecs_gateway::testing::limit::{Bucket, FleetStore, RedisSettings};
use ecs_gateway::testing::observe::Metrics;
use tokio::time::Instant;
use tonic::Code;
use tonic_types::StatusExt as _;

fn must_not_decide_locally() -> Result<(), Duration> {
    panic!("decided locally although Redis answers")
}

async fn store(redis: &RedisServer, timeout: Duration, metrics: Option<Metrics>) -> FleetStore {
    let settings = RedisSettings {
        url: redis.url().parse().unwrap(),
        password_file: None,
        timeout,
    };
    FleetStore::connect(settings, metrics).await.unwrap()
}

#[tokio::test]
async fn two_replicas_take_from_one_bucket_and_hear_how_long_to_wait() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = (
        store(&redis, Duration::from_millis(200), None).await,
        store(&redis, Duration::from_millis(200), None).await,
    );
    assert!(a.is_connected() && b.is_connected());
    let rate = Rate::new(5.0).unwrap();
    let bucket = Bucket::caller("billing");
    for i in 0..5 {
        let replica = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            replica
                .acquire(&bucket, rate, must_not_decide_locally)
                .await,
            Ok(()),
            "call {i} of the burst"
        );
    }
    // The burst is spent for both: the next slot is one interval (200 ms) away at most.
    let wait = b
        .acquire(&bucket, rate, must_not_decide_locally)
        .await
        .unwrap_err();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(200),
        "{wait:?}"
    );
    // Another bucket is untouched.
    assert_eq!(
        a.acquire(&Bucket::caller("payroll"), rate, must_not_decide_locally)
            .await,
        Ok(())
    );
    tokio::time::sleep(wait).await;
    assert_eq!(
        a.acquire(&bucket, rate, must_not_decide_locally).await,
        Ok(())
    );
}

#[tokio::test]
async fn a_frozen_redis_costs_one_call_its_timeout_then_decisions_are_local_until_it_thaws() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let metrics = Metrics::new(None);
    let fleet = store(&redis, Duration::from_millis(20), Some(metrics.clone())).await;
    let rate = Rate::new(1000.0).unwrap();
    let bucket = Bucket::upstream("LTAI-test", "cn-hangzhou");
    assert_eq!(
        fleet.acquire(&bucket, rate, must_not_decide_locally).await,
        Ok(())
    );
    assert!(
        metrics
            .encode()
            .contains("ecs_gateway_fleet_limiter_redis_connected 1")
    );

    redis.freeze(true);
    let locally = AtomicU64::new(0);
    let local = || {
        locally.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    let started = Instant::now();
    assert_eq!(fleet.acquire(&bucket, rate, local).await, Ok(()));
    // The first call waited for the timeout (20 ms), not for Redis; the next does not wait at all.
    let first = started.elapsed();
    assert!(first < Duration::from_millis(500), "{first:?}");
    assert_eq!(fleet.acquire(&bucket, rate, local).await, Ok(()));
    assert_eq!(locally.load(Ordering::Relaxed), 2);
    assert!(!fleet.is_connected());
    let text = metrics.encode();
    assert!(
        text.contains("ecs_gateway_fleet_limiter_local_decisions_total 2"),
        "{text}"
    );
    assert!(text.contains("ecs_gateway_fleet_limiter_redis_connected 0"));

    redis.freeze(false);
    assert!(
        eventually(Duration::from_secs(10), || fleet.is_connected()).await,
        "back on Redis once it answers"
    );
    assert_eq!(
        fleet.acquire(&bucket, rate, must_not_decide_locally).await,
        Ok(())
    );
}

/// What the callers of one phase saw.
#[derive(Debug, Default)]
struct Tally {
    ok_or_upstream: AtomicU64,
    fleet_limited: AtomicU64,
    other: AtomicU64,
}

/// Calls every gateway from `per_gateway` loops each, as fast as answers come, for `period`.
async fn hammer(gateways: &[Binary], per_gateway: usize, period: Duration) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + period;
    let mut tasks = Vec::new();
    for gateway in gateways {
        for worker in 0..per_gateway {
            let mut client = gateway.client().await;
            let tally = tally.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let invoke_id = format!("t-fleet{worker}x{n}");
                    match client
                        .stop_invocation(request("cn-hangzhou", &invoke_id, &[]))
                        .await
                    {
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            let details = status.get_error_details();
                            let reason = details.error_info().map(|i| i.reason.clone());
                            assert_eq!(reason.as_deref(), Some("FLEET_RATE_EXCEEDED"));
                            let delay = details.retry_info().and_then(|r| r.retry_delay);
                            assert!(
                                delay.is_some_and(|d| d <= Duration::from_millis(1050)),
                                "RetryInfo: {delay:?}"
                            );
                            tally.fleet_limited.fetch_add(1, Ordering::Relaxed);
                        }
                        // The simulator knows none of these invocations: ECS answered.
                        Ok(_) => {
                            tally.ok_or_upstream.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(status) if status.code() == Code::NotFound => {
                            tally.ok_or_upstream.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(status) => {
                            eprintln!("unexpected: {status:?}");
                            tally.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    tally
}

async fn gateway(simulator_url: &str, redis: &RedisServer, rate: &str) -> Binary {
    let credential = demo_credential();
    let redis_url = redis.url();
    Binary::start(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--endpoint",
            simulator_url,
            "--redis-url",
            &redis_url,
            "--fleet-rate",
            rate,
            // Generous for a loaded 2-core CI machine running 3 gateways, Redis and the callers.
            "--redis-timeout",
            "100ms",
            "--max-retries",
            "0",
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                credential.access_key_secret(),
            ),
        ],
    )
    .await
}

/// The value of the metric line that starts with `series`, from `gateway`'s /metrics.
async fn metric(gateway: &Binary, series: &str) -> f64 {
    let url = format!("http://{}/metrics", gateway.metrics.as_deref().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in {text}"));
    line[series.len()..].trim().parse().unwrap()
}

fn phase(simulator: &Simulator, since: &mut u64) -> u64 {
    let now = simulator.requests_received();
    let delta = now - *since;
    *since = now;
    delta
}

#[tokio::test]
async fn three_gateways_send_at_most_the_fleet_rate_and_keep_serving_without_redis() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(gateway(&url, &redis, "20").await);
    }
    for g in &gateways {
        let listening = g.line("ecs-gateway listening").unwrap();
        assert_eq!(listening["fleet_rate"], 20.0);
        assert!(g.line("fleet limiter: Redis does not answer; this replica applies the fleet-wide rates on its own until it does").is_none());
    }
    let mut seen = 0;

    // 1. Redis up: 5 s of hammering reach ECS at most 20 × 5 + 20 (the burst) times.
    let tally = hammer(&gateways, 3, Duration::from_secs(5)).await;
    let sent = phase(&simulator, &mut seen);
    eprintln!("phase: {sent} reached ECS; callers saw {tally:?}");
    assert!(sent <= 20 * 5 + 20, "{sent} calls reached ECS: {tally:?}");
    assert!(sent >= 80, "the fleet rate admits what it allows: {sent}");
    assert_eq!(tally.ok_or_upstream.load(Ordering::Relaxed), sent);
    assert!(
        tally.fleet_limited.load(Ordering::Relaxed) > sent,
        "{tally:?}"
    );
    assert_eq!(tally.other.load(Ordering::Relaxed), 0);
    let refused: f64 = {
        let mut sum = 0.0;
        for g in &gateways {
            assert_eq!(
                metric(g, "ecs_gateway_fleet_limiter_redis_connected").await,
                1.0
            );
            assert_eq!(
                metric(g, "ecs_gateway_fleet_limiter_local_decisions_total").await,
                0.0
            );
            // A call the rate refused was not sent, so it took nothing from the minute's quota.
            assert_eq!(
                metric(g, "ecs_gateway_shed_total{reason=\"api_quota\"}").await,
                0.0
            );
            sum += metric(g, "ecs_gateway_shed_total{reason=\"fleet_rate\"}").await;
        }
        sum
    };
    assert_eq!(refused as u64, tally.fleet_limited.load(Ordering::Relaxed));

    // 2. Redis gone: calls keep flowing, each replica at the fleet rate on its own.
    redis.stop().await;
    let tally = hammer(&gateways, 3, Duration::from_secs(2)).await;
    let sent = phase(&simulator, &mut seen);
    eprintln!("phase: {sent} reached ECS; callers saw {tally:?}");
    assert!(sent > 0, "calls flow without Redis: {tally:?}");
    assert!(sent <= 3 * (20 * 2 + 20), "{sent}: {tally:?}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{tally:?}");
    for g in &gateways {
        let lost = g
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("fleet limiter: lost Redis"))
            })
            .count();
        assert_eq!(lost, 1, "logged once per replica");
        assert_eq!(
            metric(g, "ecs_gateway_fleet_limiter_redis_connected").await,
            0.0
        );
        assert!(metric(g, "ecs_gateway_fleet_limiter_local_decisions_total").await > 0.0);
    }

    // 3. Redis back (empty): the fleet limit holds again once every replica has reconnected.
    redis.restart().await;
    for g in &gateways {
        let back = "fleet limiter: Redis answers; rates are fleet-wide again";
        assert!(
            eventually(Duration::from_secs(10), || g.line(back).is_some()).await,
            "reconnected"
        );
    }
    let _ = phase(&simulator, &mut seen);
    let tally = hammer(&gateways, 3, Duration::from_secs(3)).await;
    let sent = phase(&simulator, &mut seen);
    eprintln!("phase: {sent} reached ECS; callers saw {tally:?}");
    assert!(sent <= 20 * 3 + 20, "{sent}: {tally:?}");
    assert!(tally.fleet_limited.load(Ordering::Relaxed) > 0);

    // The Redis password is in no log line.
    for g in gateways {
        for line in g.stop().await {
            assert!(
                !line.to_string().contains(crate::support::redis::PASSWORD),
                "{line}"
            );
        }
    }
}

#[tokio::test]
async fn a_callers_policy_rate_holds_across_gateways() {
    use sha2::Digest as _;
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let dir = std::env::temp_dir().join(format!("ecs-gateway-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = "billing-token-4be1";
    let hash = hex(&sha2::Sha256::digest(token.as_bytes()));
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("billing sha256:{hash}\n")).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[callers.billing]\nregions = [\"*\"]\nrate = 10\n").unwrap();
    // The password from a file (a mounted Secret), not the URL.
    let password_file = dir.join("redis-password");
    std::fs::write(&password_file, format!("{}\n", redis.password)).unwrap();
    let redis_url = redis.url_without_password();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let redis = [
            "--redis-url",
            &redis_url,
            "--redis-password-file",
            password_file.to_str().unwrap(),
        ];
        gateways.push(policy_gateway(&url, &redis, &tokens, &policy).await);
    }
    let until = Instant::now() + Duration::from_secs(3);
    let (mut admitted, mut refused) = (0u64, 0u64);
    let mut clients = Vec::new();
    for g in &gateways {
        clients.push(g.client().await);
    }
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let count = clients.len();
        let client = &mut clients[n % count];
        let call = crate::support::with_bearer(request("cn-hangzhou", "t-policy1", &[]), token);
        match client.stop_invocation(call).await {
            Ok(_) => admitted += 1,
            Err(status) if status.code() == Code::NotFound => admitted += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert_eq!(
                    crate::support::error_info(&status).0,
                    "CALLER_RATE_EXCEEDED"
                );
                refused += 1;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    // One bucket for both gateways: 10 × 3 + 10, where two local ones would admit twice that.
    assert!(admitted <= 10 * 3 + 10, "{admitted} admitted");
    assert!(admitted >= 20, "{admitted} admitted");
    assert!(refused > 0);
    assert_eq!(simulator.requests_received(), admitted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A gateway binary in front of `url` with the demo credential, its callers from the `tokens` and
/// `policy` files, and its Redis as the `redis` flags say (100 ms for a decision: generous for a
/// loaded CI machine).
async fn policy_gateway(
    url: &str,
    redis: &[&str],
    tokens: &std::path::Path,
    policy: &std::path::Path,
) -> Binary {
    let credential = demo_credential();
    let mut args = vec![
        "--endpoint",
        url,
        "--redis-timeout",
        "100ms",
        "--auth-tokens-file",
        tokens.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    args.extend_from_slice(redis);
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", credential.access_key_id()),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            credential.access_key_secret(),
        ),
    ];
    Binary::start(&args, &env).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_replica_starts_without_redis_and_joins_the_fleet_when_it_comes_up() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    redis.stop().await;
    let metrics = Metrics::new(None);
    let fleet = store(&redis, Duration::from_millis(50), Some(metrics.clone())).await;
    assert!(!fleet.is_connected());
    let rate = Rate::new(1.0).unwrap();
    let bucket = Bucket::caller("billing");
    let local = || Err(Duration::from_millis(7));
    assert_eq!(
        fleet.acquire(&bucket, rate, local).await,
        Err(Duration::from_millis(7)),
        "the local limiter decides"
    );
    assert!(
        metrics
            .encode()
            .contains("ecs_gateway_fleet_limiter_local_decisions_total 1")
    );
    redis.restart().await;
    assert!(eventually(Duration::from_secs(10), || fleet.is_connected()).await);
    assert_eq!(
        fleet.acquire(&bucket, rate, must_not_decide_locally).await,
        Ok(())
    );
}

#[tokio::test]
async fn retries_take_from_the_fleet_quota_and_the_refused_attempt_sends_nothing() {
    use ecs_gateway::aliyun::{EcsClient, Sources};
    use ecs_gateway::testing::limit::{Quotas, UpstreamQuota};
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ecs/service-unavailable.json"
    ))
    .unwrap();
    let ecs = crate::support::ecs_answering(503, &body).await;
    let fleet = store(&redis, Duration::from_millis(200), None).await;
    let sources = Sources {
        admission: Some(Arc::new(UpstreamQuota::new(
            Quotas::new(&[], 1.0),
            Some(Rate::new(3.0).unwrap()),
            Some(fleet),
            None,
        ))),
        ..Sources::default()
    };
    let settings = crate::support::settings(&format!("{}/", ecs.uri()));
    let client =
        EcsClient::with_sources(crate::support::test_credential(), settings, sources).unwrap();
    let gateway = crate::support::Gateway::start(client).await;
    // The first call: one attempt and its two retries (503 is transient) spend the burst of 3.
    let first = gateway.refused_t1().await;
    assert_eq!(first.code(), Code::Unavailable, "{first:?}");
    assert_eq!(ecs.received_requests().await.unwrap().len(), 3);
    // The second call's first attempt finds no slot: refused with the wait, nothing sent.
    let second = gateway.refused_t1().await;
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    assert_eq!(crate::support::error_info(&second).0, "FLEET_RATE_EXCEEDED");
    let delay = second
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay);
    assert!(
        delay.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_millis(334)),
        "{delay:?}"
    );
    assert_eq!(ecs.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_bucket_another_tenant_wrote_cannot_refuse_a_caller_for_years() {
    use sha2::Digest as _;
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let dir = crate::support::pki::TempDir::new();
    let token = "billing-token-77aa";
    let hash = hex(&sha2::Sha256::digest(token.as_bytes()));
    let tokens = dir.write("tokens", &format!("billing sha256:{hash}\n"));
    let policy = dir.write(
        "policy.toml",
        "[callers.billing]\nregions = [\"*\"]\nrate = 10\n",
    );
    // Another tenant of the shared Redis sets the caller's bucket 10,000 years ahead.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut connection)
        .await
        .unwrap();
    let years = 10_000u64 * 365 * 24 * 3600 * 1_000_000;
    let key = Bucket::caller("token:billing");
    let _: () = redis::cmd("SET")
        .arg(key.key())
        .arg(secs * 1_000_000 + micros + years)
        .query_async(&mut connection)
        .await
        .unwrap();
    let redis_url = redis.url();
    let gateway = policy_gateway(&url, &["--redis-url", &redis_url], &tokens, &policy).await;
    let call = crate::support::with_bearer(request("cn-hangzhou", "t-policy1", &[]), token);
    let refused = gateway
        .client()
        .await
        .stop_invocation(call)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let wait = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    // At most one slot past the burst of a 10/s bucket: 1.1 s, and never past 60 s.
    assert!(wait <= Duration::from_millis(1100), "{wait:?}");
    assert_eq!(simulator.requests_received(), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn calls_a_replica_admitted_alone_join_the_fleets_count_when_it_settles() {
    use ecs_gateway::testing::limit::{ApiQuota, Decision};
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let fleet = store(&redis, Duration::from_millis(200), None).await;
    let quota: ApiQuota = "StopInvocation=5/1h".parse().unwrap();
    let bucket = Bucket::action("LTAI-test", "cn-hangzhou", "StopInvocation");
    let must_not = || -> Decision { panic!("decided locally although Redis answers") };
    // Two calls admitted alone are owed: the first call back counts them and itself.
    assert_eq!(
        fleet.take(&bucket, Some(quota), false, 2, must_not).await,
        (Decision::Admitted, Some(3))
    );
    assert_eq!(
        fleet.take(&bucket, Some(quota), false, 0, must_not).await,
        (Decision::Admitted, Some(4))
    );
    // Owed calls that fill the window leave no room for the one asking.
    let (spent, counted) = fleet.take(&bucket, Some(quota), false, 1, must_not).await;
    assert!(matches!(spent, Decision::Spent(_)), "{spent:?}");
    assert_eq!(counted, Some(5));
}
