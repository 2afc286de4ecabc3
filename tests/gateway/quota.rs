//! The account's ECS quota with real parts: gateway processes (two replicas sharing a real
//! redis-server, or one alone) in front of the simulator, whose quotas and throttles say what ECS
//! would. What is checked is what reached "ECS" and what the callers heard.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::binary::Binary;
use crate::support::redis::RedisServer;
use crate::support::{error_info, request, start_simulator};
use ecs_gateway::pb::GetInvocationRequest;
use ecs_gateway::simulator::{Simulator, SimulatorConfig, ThrottleHeaders, demo_credential};
use tonic::Code;
use tonic_types::StatusExt as _;

/// A gateway in front of `simulator_url` with the demo credential, no retries, and `args`.
pub(crate) async fn replica(simulator_url: &str, args: &[&str]) -> Binary {
    let credential = demo_credential();
    let mut all = vec![
        "--metrics-listen",
        "127.0.0.1:0",
        "--endpoint",
        simulator_url,
        "--max-retries",
        "0",
        // Generous for a loaded 2-core CI machine.
        "--redis-timeout",
        "200ms",
    ];
    all.extend_from_slice(args);
    Binary::start(
        &all,
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

async fn stop(gateway: &Binary) -> Result<(), tonic::Status> {
    let mut client = gateway.client().await;
    client
        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
        .await
        .map(drop)
}

fn stops_received(simulator: &Simulator) -> usize {
    simulator
        .calls()
        .iter()
        .filter(|c| c.action == "StopInvocation")
        .count()
}

/// The refusal's `ErrorInfo` reason and its `RetryInfo` delay.
fn refusal(status: &tonic::Status) -> (String, Duration) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo");
    (error_info(status).0, delay)
}

/// Sleeps until `offset` into a window of `period` of the clock, so that a test's calls fall in
/// one window.
pub(crate) async fn align(period: Duration, offset: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_millis((now.as_millis() % period.as_millis()) as u64);
    if into > offset {
        tokio::time::sleep(period - into + offset).await;
    } else {
        tokio::time::sleep(offset - into).await;
    }
}

/// The value of the metric line that starts with `series`.
pub(crate) async fn metric(gateway: &Binary, series: &str) -> f64 {
    let text = gateway.scrape().await;
    let line = text
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in {text}"));
    line[series.len()..].trim().parse().unwrap()
}

/// Two replicas sharing a real Redis in front of the simulator, each with `flags` besides
/// `--redis-url`; `None` where redis-server is missing outside CI (see `RedisServer::start`).
async fn two_replicas(flags: &[&str]) -> Option<(RedisServer, Simulator, Binary, Binary)> {
    let redis = RedisServer::start().await?;
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let redis_url = redis.url();
    let mut all = vec!["--redis-url", redis_url.as_str()];
    all.extend_from_slice(flags);
    let a = replica(&url, &all).await;
    let b = replica(&url, &all).await;
    Some((redis, simulator, a, b))
}

/// Waits for the next minute when fewer than `margin` are left of this one, so that a test's
/// calls fall in one of ECS's minutes.
pub(crate) async fn early_in_a_minute(margin: Duration) {
    if left_of_the_minute() < margin {
        align(Duration::from_secs(60), Duration::from_millis(200)).await;
    }
}

/// A first message from a wait on each of `count` new invocations running on two instances,
/// named `prefix` and a number; the streams, held.
pub(crate) async fn hold_waits(
    gateway: &Binary,
    simulator: &Simulator,
    prefix: &str,
    count: usize,
) -> Vec<tonic::Streaming<ecs_gateway::pb::StopInvocationAndWaitResponse>> {
    use crate::waits::{REGION, running, wait_request};
    let mut streams = Vec::new();
    for n in 0..count {
        let invoke_id = format!("{prefix}{n:02}");
        simulator.world().insert(REGION, &invoke_id, running(2).1);
        let mut client = gateway.client().await;
        let mut stream = client
            .stop_invocation_and_wait(wait_request(&invoke_id, &[]))
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().expect("the first message");
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn a_throttle_seen_by_one_replica_closes_the_action_on_both_until_the_time_ecs_gave() {
    let Some((_redis, simulator, a, b)) = two_replicas(&[]).await else {
        return;
    };
    simulator.throttle_stops(1, Duration::from_secs(3));

    // A hears ECS's throttle itself: ECS's code, and the wait ECS gave.
    let heard = stop(&a).await.unwrap_err();
    let (reason, delay) = refusal(&heard);
    assert_eq!(reason, "THROTTLING_USER");
    assert_eq!(delay, Duration::from_secs(3));
    assert_eq!(stops_received(&simulator), 1);

    // B never heard ECS, and sends nothing: the action is closed for the account.
    let closed = stop(&b).await.unwrap_err();
    let (reason, delay) = refusal(&closed);
    assert_eq!(reason, "ECS_THROTTLED", "{closed:?}");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(3),
        "{delay:?}"
    );
    assert!(closed.message().contains("StopInvocation"), "{closed:?}");
    assert!(closed.message().contains("nothing was sent"), "{closed:?}");
    assert_eq!(error_info(&closed).1, "ecs-gateway", "{closed:?}");
    assert_eq!(
        stop(&a).await.map_err(|s| refusal(&s).0),
        Err("ECS_THROTTLED".into())
    );
    assert_eq!(
        stops_received(&simulator),
        1,
        "no replica sent the closed action"
    );

    // Other actions are not held back.
    let mut client = b.client().await;
    client
        .get_invocation(GetInvocationRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: "t-demo0002".into(),
            ..Default::default()
        })
        .await
        .expect("DescribeInvocations still goes");

    assert_eq!(
        metric(&b, "ecs_gateway_shed_total{reason=\"ecs_throttled\"}").await,
        1.0
    );
    let until = metric(
        &a,
        "ecs_gateway_ecs_blocked_until_timestamp_seconds{action=\"StopInvocation\"}",
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(until > now && until <= now + 4.0, "{until} vs {now}");

    // Once ECS's time has passed, both send again.
    tokio::time::sleep(delay).await;
    stop(&b).await.expect("open again");
    stop(&a).await.expect("open again");
    assert_eq!(stops_received(&simulator), 3);
}

#[tokio::test]
async fn the_share_of_an_actions_quota_is_spent_by_both_replicas_as_one_in_the_clocks_windows() {
    // Half of 6 calls per 5 s: 3 per window for the two replicas together.
    let quota = ["--api-quota", "StopInvocation=6/5s", "--quota-share", "0.5"];
    let Some((_redis, simulator, a, b)) = two_replicas(&quota).await else {
        return;
    };
    let listening = a.line("ecs-gateway listening").unwrap();
    assert_eq!(listening["api_quotas"], "StopInvocation=3/5s");
    assert_eq!(listening["quotas_kept"], "fleet-wide, in Redis");
    assert_eq!(
        metric(&a, "ecs_gateway_api_quota_calls{action=\"StopInvocation\"}").await,
        3.0
    );

    let window = Duration::from_secs(5);
    align(window, Duration::from_millis(100)).await;
    for gateway in [&a, &b, &a] {
        stop(gateway).await.expect("within the share");
    }
    let spent = stop(&b).await.unwrap_err();
    let (reason, delay) = refusal(&spent);
    assert_eq!(reason, "API_QUOTA_EXCEEDED", "{spent:?}");
    assert!(
        delay <= window && delay >= Duration::from_secs(3),
        "{delay:?}"
    );
    let (_, _, metadata) = {
        let info = spent.get_details_error_info().unwrap();
        (info.reason, info.domain, info.metadata)
    };
    assert_eq!(metadata["action"], "StopInvocation");
    assert_eq!(metadata["calls"], "3");
    assert_eq!(metadata["periodSeconds"], "5");
    // DescribeInvocations has no quota unless given one.
    let mut client = a.client().await;
    for _ in 0..5 {
        client
            .get_invocation(GetInvocationRequest {
                region_id: "cn-hangzhou".into(),
                invoke_id: "t-demo0002".into(),
                ..Default::default()
            })
            .await
            .expect("no quota on reads");
    }
    assert_eq!(stops_received(&simulator), 3);
    assert_eq!(
        metric(&b, "ecs_gateway_shed_total{reason=\"api_quota\"}").await,
        1.0
    );

    // The next window is the share afresh.
    tokio::time::sleep(delay).await;
    stop(&b).await.expect("a new window");
    assert_eq!(stops_received(&simulator), 4);
    assert_eq!(simulator.throttled_calls("StopInvocation"), 0);
}

#[tokio::test]
async fn alone_a_replica_closes_an_action_for_the_time_left_that_ecs_sent_in_x_ratelimit_user_api()
{
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let alone = replica(&url, &[]).await;
    assert_eq!(
        alone.line("ecs-gateway listening").unwrap()["quotas_kept"],
        "by this replica alone (no --redis-url): each replica spends the whole share"
    );
    let window = Duration::from_secs(4);
    simulator.set_quota("StopInvocation", 1, window, ThrottleHeaders::RateLimitUser);
    align(window, Duration::from_millis(200)).await;
    stop(&alone).await.expect("the simulator's one call");
    let heard = stop(&alone).await.unwrap_err();
    let (_, asked) = refusal(&heard);
    assert!(
        asked > Duration::from_secs(2) && asked <= Duration::from_millis(3800),
        "TimeLeft read: {asked:?}"
    );
    let closed = stop(&alone).await.unwrap_err();
    let (reason, delay) = refusal(&closed);
    assert_eq!(reason, "ECS_THROTTLED");
    assert!(delay <= asked, "{delay:?} vs {asked:?}");
    assert_eq!(simulator.throttled_calls("StopInvocation"), 1);
    assert_eq!(stops_received(&simulator), 2);
    tokio::time::sleep(delay).await;
    stop(&alone).await.expect("the simulator's next window");
}

#[tokio::test]
async fn a_throttle_that_says_no_time_closes_the_action_to_ecss_next_minute() {
    let (url, simulator) = start_simulator(SimulatorConfig::demo()).await;
    let alone = replica(&url, &[]).await;
    let minute = Duration::from_secs(60);
    simulator.set_quota("StopInvocation", 1, minute, ThrottleHeaders::Silent);
    early_in_a_minute(Duration::from_secs(8)).await;
    stop(&alone).await.expect("the one call of the minute");
    let heard = stop(&alone).await.unwrap_err();
    assert_eq!(error_info(&heard).0, "THROTTLING_USER");
    let closed = stop(&alone).await.unwrap_err();
    let left = left_of_the_minute();
    let (reason, delay) = refusal(&closed);
    assert_eq!(reason, "ECS_THROTTLED");
    assert!(
        delay.abs_diff(left) < Duration::from_secs(1),
        "to the next minute ({left:?} away): {delay:?}"
    );
    assert_eq!(stops_received(&simulator), 2);
}

/// The time to the clock's next minute.
fn left_of_the_minute() -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Duration::from_millis(60_000 - (now.as_millis() % 60_000) as u64)
}

#[tokio::test]
async fn thirty_throttled_waited_invocations_of_a_region_cost_a_read_a_round_and_a_line_a_second() {
    use crate::waits::REGION;
    let mut config = SimulatorConfig::demo();
    // Stopped instances stay Stopping for the whole test, so every loop keeps polling.
    config.stop_delay = Duration::from_secs(600);
    let (url, simulator) = start_simulator(config).await;
    let gateway = replica(&url, &[]).await;
    let streams = hold_waits(&gateway, &simulator, "t-loud", 30).await;
    simulator.set_reads_throttled(true);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let throttled = metric(
        &gateway,
        "ecs_gateway_invocation_polls_total{outcome=\"throttled\"}",
    )
    .await;
    // One group reads the thirty: a round stops at its first refusal, and the next waits for the
    // time ECS's throttle closed the action for (the rest of its minute).
    assert!(
        (1.0..=8.0).contains(&throttled),
        "{throttled} throttled reads for 30 invocations in 6 s"
    );
    let said = gateway.lines("a read for waiting streams was throttled; reading again later");
    assert!(
        (1..=7).contains(&said.len()),
        "{} lines for {throttled} throttled polls in 6 s",
        said.len()
    );
    assert!(said.iter().all(|l| l["region"] == REGION), "{said:?}");
    drop(streams);
}

#[tokio::test]
async fn polls_leave_a_quarter_of_the_read_quota_to_callers() {
    use crate::waits::REGION;
    let mut config = SimulatorConfig::demo();
    config.stop_delay = Duration::from_secs(600);
    let (url, simulator) = start_simulator(config).await;
    // 8 reads per 20 s: waits' later polls may take 6 of them, callers all 8.
    let gateway = replica(&url, &["--api-quota", "DescribeInvocations=8/20s"]).await;
    let reads = || {
        simulator
            .calls()
            .iter()
            .filter(|c| c.action == "DescribeInvocations")
            .count()
    };
    align(Duration::from_secs(20), Duration::from_millis(100)).await;
    let streams = hold_waits(&gateway, &simulator, "t-polled", 4).await;
    assert_eq!(reads(), 4, "each wait's first read, for its caller");
    // Four loops polling about once a second would take the rest of the window; they stop at 6.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(reads(), 6, "polls stop at the background share");
    let mut client = gateway.client().await;
    let mut get = async |invoke_id: &str| {
        client
            .get_invocation(GetInvocationRequest {
                region_id: REGION.into(),
                invoke_id: invoke_id.into(),
                ..Default::default()
            })
            .await
    };
    get("t-demo0002").await.expect("a caller finds its reserve");
    get("t-demo0003").await.expect("a caller finds its reserve");
    let spent = get("t-demo0004").await.unwrap_err();
    assert_eq!(refusal(&spent).0, "API_QUOTA_EXCEEDED", "{spent:?}");
    assert_eq!(reads(), 8);
    drop(streams);
}

#[tokio::test]
async fn the_simulator_subcommand_keeps_the_quota_it_is_given() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ecs-gateway"));
    crate::support::isolate_credentials(&mut command);
    let listen = format!("127.0.0.1:{port}");
    let _simulator = command
        .args(["simulator", "--listen", &listen])
        .args([
            "--quota",
            "StopInvocation=2/60s",
            "--quota-headers",
            "ratelimit",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{listen}/");
    assert!(
        crate::support::eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(&listen).is_ok()
        })
        .await,
        "the simulator listens"
    );
    let gateway = replica(&url, &[]).await;
    early_in_a_minute(Duration::from_secs(8)).await;
    stop(&gateway).await.expect("the quota's first call");
    stop(&gateway).await.expect("the quota's second call");
    let throttled = stop(&gateway).await.unwrap_err();
    let (reason, delay) = refusal(&throttled);
    assert_eq!(reason, "THROTTLING_USER", "{throttled:?}");
    let left = left_of_the_minute();
    assert!(
        delay.abs_diff(left) < Duration::from_secs(1),
        "x-ratelimit-user-api's TimeLeft, to the minute's end ({left:?}): {delay:?}"
    );
}

#[tokio::test]
async fn a_replica_that_loses_redis_mid_window_goes_on_from_the_fleets_count_and_settles_after() {
    let Some((redis, simulator, a, b)) =
        two_replicas(&["--api-quota", "StopInvocation=4/60s"]).await
    else {
        return;
    };
    early_in_a_minute(Duration::from_secs(15)).await;
    for gateway in [&a, &a, &b] {
        stop(gateway).await.expect("within the quota");
    }
    // B last heard from Redis that the fleet had made 3 of the minute's 4 calls.
    redis.freeze(true);
    stop(&b)
        .await
        .expect("the minute's fourth call, decided alone");
    let spent = stop(&b).await.unwrap_err();
    assert_eq!(refusal(&spent).0, "API_QUOTA_EXCEEDED", "{spent:?}");
    assert_eq!(stops_received(&simulator), 4);
    assert!(metric(&b, "ecs_gateway_fleet_limiter_local_decisions_total").await >= 2.0);
    // Back on Redis, the fleet's count holds the call B made alone (the frozen Redis ran B's
    // timed-out script late; had it not, B's settlement adds it: see fleet.rs): spent for both.
    redis.freeze(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&b, "ecs_gateway_fleet_limiter_redis_connected").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "B reconnects");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for gateway in [&b, &a] {
        let spent = stop(gateway).await.unwrap_err();
        assert_eq!(refusal(&spent).0, "API_QUOTA_EXCEEDED", "{spent:?}");
    }
    assert_eq!(stops_received(&simulator), 4);
}
