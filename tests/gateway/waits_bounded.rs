//! StopInvocationAndWait as solid as the unary call, one test (or two) per finding of the look
//! from outside at de77705: waits are bounded and charged, targets resolved once each within the
//! limit, a caller that never reads stalls nothing, messages cost O(N + changes), throttled stops
//! are sent again, polls that cannot succeed end the wait, wait traffic is counted, and reads
//! speak of reads. Real gateway, simulator or wiremock, tonic or a raw HTTP/2 client.

use std::time::Duration;

use crate::support::{
    Gateway, Setup, ecs_client, error_info, eventually, test_credential, with_bearer,
};
use crate::waits::{
    REGION, calls_of, described, drain, fast, running, setup, wait_on, wait_request, with_callers,
    with_running,
};
use ecs_gateway::pb::{GetInvocationRequest, StopInvocationAndWaitRequest, WaitMessageKind};
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::server::{ConnectionSettings, ServerSettings};
use tonic::Code;
use tonic_types::StatusExt as _;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT_PATH: &str = "/ecsgateway.v1.CloudAssistantService/StopInvocationAndWait";

/// `fast(1000)` with these caps on waits.
fn capped(max_concurrent: usize, max_per_caller: usize) -> ServiceSettings {
    let mut settings = fast(1000);
    settings.wait.max_concurrent = max_concurrent;
    settings.wait.max_per_caller = max_per_caller;
    settings
}

/// A DescribeInvocations answer for `t-s1` listing these instances.
fn listing(aggregate: &str, instances: &[(&str, &str)]) -> ResponseTemplate {
    let instances: Vec<serde_json::Value> = instances
        .iter()
        .map(|(id, status)| serde_json::json!({"InstanceId": id, "InvocationStatus": status}))
        .collect();
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "RequestId": "6E1F8A8C-0000-4000-8000-00000000D0D1",
        "Invocations": {"Invocation": [{
            "InvokeId": "t-s1",
            "InvocationStatus": aggregate,
            "InvokeInstances": {"InvokeInstance": instances}
        }]}
    }))
}

fn action(name: &'static str) -> wiremock::matchers::HeaderExactMatcher {
    header("x-acs-action", name)
}

/// An ECS error answer.
fn ecs_error(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "RequestId": "6E1F8A8C-0000-4000-8000-00000000EEEE",
        "Code": code,
        "Message": "scripted"
    }))
}

/// ECS accepting every stop.
async fn stops_accepted(ecs: &MockServer) {
    Mock::given(method("POST"))
        .and(action("StopInvocation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"RequestId": "6E1F8A8C-0000-4000-8000-00000000570F"}),
        ))
        .with_priority(5)
        .mount(ecs)
        .await;
}

async fn gateway_for(ecs: &MockServer, service: ServiceSettings) -> Gateway {
    Gateway::start_setup(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        Setup {
            service: Some(service),
            metrics: true,
            ..Setup::default()
        },
        None,
    )
    .await
}

async fn requests_of(ecs: &MockServer, name: &str) -> Vec<wiremock::Request> {
    ecs.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.headers.get("x-acs-action").is_some_and(|v| v == name))
        .collect()
}

/// The value of the first exposition line that starts with `prefix`.
fn sample(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

/// Sum of every exposition line that starts with `prefix` and contains each of `having`.
fn sum(exposition: &str, prefix: &str, having: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(prefix) && having.iter().all(|h| l.contains(h)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// Row 1: waits take a place of their own, bounded per replica and per caller.
#[tokio::test]
async fn past_max_concurrent_waits_a_wait_is_refused_with_retry_info_and_nothing_is_read() {
    let (gw, sim) = setup(
        Duration::from_secs(3600),
        Setup {
            service: Some(capped(2, 100)),
            ..Setup::default()
        },
    )
    .await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-held", invocation);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = wait_on(&gw, "t-held", &ids).await;
        stream.message().await.unwrap().expect("a first message");
        held.push(stream);
    }
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
    let status = gw
        .client
        .clone()
        .stop_invocation_and_wait(wait_request("t-held", &ids))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_info(&status).0, "WAITS_EXHAUSTED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");
    assert_eq!(
        calls_of(&sim.calls(), "DescribeInvocations").len(),
        reads,
        "a refused wait reads nothing"
    );
    // A place frees once a stream is gone.
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..50 {
        if gw
            .client
            .clone()
            .stop_invocation_and_wait(wait_request("t-held", &ids))
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the place of a dropped stream is given again");
}

#[tokio::test]
async fn past_max_polled_invocations_a_wait_on_another_invocation_is_refused_but_not_one_on_a_followed_one()
 {
    let mut service = capped(100, 100);
    service.wait.max_invocations = 2;
    let (gw, sim) = setup(
        Duration::from_secs(3600),
        Setup {
            service: Some(service),
            ..Setup::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for invoke_id in ["t-one", "t-two", "t-three"] {
        let (ids, invocation) = running(2);
        sim.world().insert(REGION, invoke_id, invocation);
        if invoke_id == "t-three" {
            let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
            let status = gw
                .client
                .clone()
                .stop_invocation_and_wait(wait_request(invoke_id, &ids))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_eq!(error_info(&status).0, "POLLED_INVOCATIONS_EXHAUSTED");
            assert!(status.get_details_retry_info().is_some());
            assert_eq!(calls_of(&sim.calls(), "DescribeInvocations").len(), reads);
            // One more wait on an invocation already followed costs no new loop: admitted.
            let mut again = wait_on(&gw, "t-one", &ids).await;
            again.message().await.unwrap().expect("a first message");
        } else {
            let mut stream = wait_on(&gw, invoke_id, &ids).await;
            stream.message().await.unwrap().expect("a first message");
            held.push(stream);
        }
    }
}

#[tokio::test]
async fn one_caller_cannot_hold_every_wait() {
    let (gw, sim, _dir) = with_callers(
        &[
            ("greedy", "greedy-token-1a2b3c4d"),
            ("other", "other-token-5e6f7a8b"),
        ],
        None,
        Setup {
            service: Some(capped(10, 2)),
            ..Setup::default()
        },
    )
    .await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-shared", invocation);
    let mut client = gw.client.clone();
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = client
            .stop_invocation_and_wait(with_bearer(
                wait_request("t-shared", &ids),
                "greedy-token-1a2b3c4d",
            ))
            .await
            .unwrap();
        held.push(stream);
    }
    let status = client
        .stop_invocation_and_wait(with_bearer(
            wait_request("t-shared", &ids),
            "greedy-token-1a2b3c4d",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(error_info(&status).0, "CALLER_WAITS_EXHAUSTED");
    client
        .stop_invocation_and_wait(with_bearer(
            wait_request("t-shared", &ids),
            "other-token-5e6f7a8b",
        ))
        .await
        .expect("another caller still has its share");
}

#[tokio::test]
async fn one_caller_cannot_multiply_an_invocations_poll_loops_with_owner_fields() {
    let (gw, sim, _dir) = with_callers(
        &[
            ("fanout", "fanout-token-9a8b7c6d"),
            ("other", "other-token-5e6f7a8b"),
        ],
        None,
        Setup::default(),
    )
    .await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-owned", invocation);
    let mut client = gw.client.clone();
    let owned = |account: &str, token: &str| {
        let mut request = wait_request("t-owned", &ids);
        request.owner_account = Some(account.to_owned());
        with_bearer(request, token)
    };
    let mut held = Vec::new();
    for n in 0..4 {
        let stream = client
            .stop_invocation_and_wait(owned(&format!("account-{n}"), "fanout-token-9a8b7c6d"))
            .await
            .expect("within the caller's owner variants");
        held.push(stream);
    }
    let status = client
        .stop_invocation_and_wait(owned("account-4", "fanout-token-9a8b7c6d"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_info(&status).0, "OWNER_VARIANTS_EXHAUSTED");
    assert!(status.message().contains("owner_account"), "{status:?}");
    // A set already followed costs no loop; another caller has its own variants.
    held.push(
        client
            .stop_invocation_and_wait(owned("account-0", "fanout-token-9a8b7c6d"))
            .await
            .expect("an owner set the caller already waits with"),
    );
    held.push(
        client
            .stop_invocation_and_wait(owned("account-4", "other-token-5e6f7a8b"))
            .await
            .expect("another caller"),
    );
}

// Row 2: the first read is the caller's, and shared.
#[tokio::test]
async fn a_waits_first_read_is_taken_from_the_callers_rate_like_get_invocation() {
    let (gw, sim, _dir) = with_callers(
        &[("slow", "slow-token-0f0e0d0c")],
        Some("[callers.slow]\nregions = [\"*\"]\nrate = 1\n"),
        Setup::default(),
    )
    .await;
    let mut client = gw.client.clone();
    // End t-demo0010 first: every later wait on it is a read and nothing to stop.
    let first = client
        .stop_invocation_and_wait(with_bearer(
            wait_request("t-demo0010", &[]),
            "slow-token-0f0e0d0c",
        ))
        .await
        .unwrap();
    assert_eq!(drain(first.into_inner()).await.1.code(), Code::Ok);
    let before = calls_of(&sim.calls(), "DescribeInvocations").len();
    let mut refused = 0;
    for _ in 0..20 {
        match client
            .stop_invocation_and_wait(with_bearer(
                wait_request("t-demo0010", &[]),
                "slow-token-0f0e0d0c",
            ))
            .await
        {
            Ok(stream) => {
                assert_eq!(drain(stream.into_inner()).await.1.code(), Code::Ok);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(error_info(&status).0, "CALLER_RATE_EXCEEDED");
                refused += 1;
            }
        }
    }
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len() - before;
    // A rate of 1 a second: the twenty come far faster, so nearly all are refused, reading nothing.
    assert!(refused >= 15, "{refused} of 20 refused");
    assert!(
        reads <= 20 - refused,
        "{reads} reads for {} admitted waits",
        20 - refused
    );
}

#[tokio::test]
async fn concurrent_first_reads_of_one_invocation_are_one_read() {
    let mut service = fast(1000);
    // No second poll while the waits start.
    service.wait.pace.first = Duration::from_secs(30);
    service.wait.pace.max = Duration::from_secs(30);
    let (gw, sim) = setup(
        Duration::from_secs(3600),
        Setup {
            service: Some(service),
            ..Setup::default()
        },
    )
    .await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-many", invocation);
    let waits = (0..20).map(|_| async {
        let mut stream = wait_on(&gw, "t-many", &ids).await;
        stream.message().await.unwrap().expect("a first message");
        stream
    });
    let streams = futures_util::future::join_all(waits).await;
    assert_eq!(streams.len(), 20);
    assert_eq!(
        calls_of(&sim.calls(), "DescribeInvocations").len(),
        1,
        "twenty waits, one read"
    );
}

#[tokio::test]
async fn concurrent_waits_on_one_invocation_stop_each_instance_once_between_them() {
    let (gw, sim, ids) = with_running(Duration::from_millis(300), false, "t-crowd", 120).await;
    let waits = (0..10).map(|_| async { drain(wait_on(&gw, "t-crowd", &ids).await).await });
    for (messages, status) in futures_util::future::join_all(waits).await {
        assert_eq!(status.code(), Code::Ok, "{status:?}");
        assert_eq!(messages.last().unwrap().final_instances, 120);
    }
    let mut stopped: Vec<String> = calls_of(&sim.calls(), "StopInvocation")
        .iter()
        .flat_map(|c| c.instance_ids.clone())
        .collect();
    assert_eq!(
        stopped.len(),
        120,
        "each instance stopped once, not once per wait"
    );
    stopped.sort();
    stopped.dedup();
    assert_eq!(stopped.len(), 120);
}

// Row 3: targets resolved within the limit, each once.
#[tokio::test]
async fn every_instance_of_an_invocation_larger_than_the_limit_is_refused_before_any_stop() {
    let (gw, sim) = setup(
        Duration::from_millis(300),
        Setup {
            service: Some(fast(20)),
            ..Setup::default()
        },
    )
    .await;
    let (_, invocation) = running(30);
    sim.world().insert(REGION, "t-big", invocation);
    let (messages, status) = drain(wait_on(&gw, "t-big", &[]).await).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(messages.is_empty());
    assert!(status.message().contains("30 instances"), "{status:?}");
    assert!(status.message().contains("20"), "{status:?}");
    let details = status.get_error_details();
    let violation = &details.precondition_failure().unwrap().violations[0];
    assert_eq!(violation.subject, "instance_ids");
    assert!(
        calls_of(&sim.calls(), "StopInvocation").is_empty(),
        "nothing stopped"
    );
}

#[tokio::test]
async fn an_answer_listing_an_instance_twice_targets_it_once_and_the_wait_ends() {
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(listing(
            "Running",
            &[("i-a", "Running"), ("i-b", "Running"), ("i-a", "Running")],
        ))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(listing(
            "Stopped",
            &[("i-a", "Stopped"), ("i-b", "Stopped"), ("i-a", "Stopped")],
        ))
        .with_priority(2)
        .mount(&ecs)
        .await;
    stops_accepted(&ecs).await;
    let gw = gateway_for(&ecs, fast(1000)).await;
    let (messages, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let last = messages.last().unwrap();
    assert_eq!((last.final_instances, last.targeted_instances), (2, 2));
    let stops = requests_of(&ecs, "StopInvocation").await;
    assert_eq!(stops.len(), 1);
    let query = stops[0].url.query().unwrap_or_default().to_owned();
    assert!(query.contains("InstanceId.2=i-b"), "{query}");
    assert!(!query.contains("InstanceId.3"), "i-a once: {query}");
}

// Row 4: a caller that never reads stalls nothing.
#[tokio::test]
async fn a_caller_that_never_reads_gets_every_stop_sent_holds_nothing_past_max_wait_nor_sigterm() {
    let mut service = fast(1000);
    service.wait.max_wait = Duration::from_secs(2);
    let (url, sim) = crate::support::start_simulator(ecs_gateway::simulator::SimulatorConfig {
        stop_delay: Duration::from_secs(3600),
        ..ecs_gateway::simulator::SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let mut gw = Gateway::start_setup(
        ecs_client(&url, test_credential()),
        Setup {
            service: Some(service),
            server: Some(ServerSettings {
                shutdown_grace: Duration::from_secs(60),
                ..ServerSettings::default()
            }),
            metrics: true,
            ..Setup::default()
        },
        None,
    )
    .await;
    let (_, invocation) = running(1000);
    sim.world().insert(REGION, "t-unread", invocation);

    // A raw HTTP/2 client that grants the server no window: no DATA frame can ever reach it.
    let request = StopInvocationAndWaitRequest {
        region_id: REGION.into(),
        invoke_id: "t-unread".into(),
        ..Default::default()
    };
    let unread = crate::support::unread::call(gw.addr, WAIT_PATH, &request, None).await;
    assert_eq!(unread.response.status(), 200);

    let stops_sent = || calls_of(&sim.calls(), "StopInvocation").len();
    assert!(
        eventually(Duration::from_secs(10), || stops_sent() == 20).await,
        "every stop is sent though nobody reads: {} of 20",
        stops_sent()
    );
    let metrics = gw.metrics.clone().unwrap();
    let waiting = || sample(&metrics.encode(), "ecs_gateway_waits_in_flight").unwrap_or(-1.0);
    assert!(
        eventually(Duration::from_secs(10), || waiting() == 0.0).await,
        "the wait ends at --max-wait though nobody reads"
    );
    let ended = sum(
        &metrics.encode(),
        "ecs_gateway_wait_seconds_count",
        &["DeadlineExceeded"],
    );
    assert_eq!(ended, 1.0, "counted as ended at its deadline");
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        calls_of(&sim.calls(), "DescribeInvocations").len(),
        reads,
        "the poll loop retired with the wait"
    );

    // SIGTERM: the stream nobody reads does not hold the 60 s grace.
    gw.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(3), &mut gw.task)
        .await
        .expect("the gateway stops within seconds")
        .unwrap();
    drop(unread);
}

// Row 5: messages cost O(N + changes).
#[tokio::test]
async fn a_1000_instance_wait_sends_two_snapshots_and_each_change_once() {
    let (gw, _sim, ids) = with_running(Duration::from_millis(300), false, "t-w1000", 1000).await;
    let (messages, status) = drain(wait_on(&gw, "t-w1000", &ids).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let carried: Vec<usize> = messages
        .iter()
        .map(|m| m.invocation.as_ref().map_or(0, |i| i.instances.len()))
        .collect();
    assert_eq!(messages[0].kind(), WaitMessageKind::Snapshot);
    assert_eq!(carried[0], 1000);
    assert_eq!(messages.last().unwrap().kind(), WaitMessageKind::Final);
    assert_eq!(*carried.last().unwrap(), 1000);
    let between: usize = carried[1..carried.len() - 1].iter().sum();
    // Each instance moves twice at most (Running → Stopping → Stopped).
    assert!(between <= 2000, "{between} instances in the changes");
    assert!(
        messages[1..messages.len() - 1]
            .iter()
            .all(|m| m.kind() == WaitMessageKind::Changes)
    );
    let stops: usize = messages.iter().map(|m| m.stops.len()).sum();
    assert_eq!(stops, 20, "each stop call said once");
    assert!(messages.iter().all(|m| m.targeted_instances == 1000));
}

// Row 6: throttled stops are sent again when ECS says; a stop that fails for good ends the wait.
#[tokio::test]
async fn stops_throttled_with_retry_after_are_sent_again_and_the_wait_ends_ok() {
    let (gw, sim, ids) = with_running(Duration::from_millis(300), false, "t-thr", 120).await;
    // Longer than the unary retry policy waits (2 s): a unary stop gives up on it.
    sim.throttle_stops(3, Duration::from_millis(2500));
    let (messages, status) = drain(wait_on(&gw, "t-thr", &ids).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(messages.last().unwrap().final_instances, 120);
    let answered: Vec<_> = messages.iter().flat_map(|m| m.stops.iter()).collect();
    assert_eq!(answered.len(), 3);
    assert!(answered.iter().all(|s| s.error.is_none()), "{answered:?}");
    let sent = calls_of(&sim.calls(), "StopInvocation").len();
    assert_eq!(sent, 6, "three throttled, three sent again");
}

#[tokio::test]
async fn a_stop_call_that_fails_for_good_ends_the_wait_with_its_status_once_the_others_answer() {
    let ecs = MockServer::start().await;
    let instances: Vec<(String, &str)> =
        (0..60).map(|i| (format!("i-{i:03}"), "Running")).collect();
    let instances: Vec<(&str, &str)> = instances.iter().map(|(i, s)| (i.as_str(), *s)).collect();
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(listing("Running", &instances))
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .and(action("StopInvocation"))
        .respond_with(ecs_error(400, "InvalidParameter"))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&ecs)
        .await;
    stops_accepted(&ecs).await;
    let mut service = fast(1000);
    service.wait.max_wait = Duration::from_secs(60);
    let gw = gateway_for(&ecs, service).await;
    let (messages, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(error_info(&status).0, "INVALID_PARAMETER");
    let answered: Vec<_> = messages.iter().flat_map(|m| m.stops.iter()).collect();
    assert_eq!(answered.len(), 2, "both calls answered first");
    assert_eq!(answered.iter().filter(|s| s.error.is_some()).count(), 1);
    assert_eq!(messages.last().unwrap().kind(), WaitMessageKind::Final);
}

/// An ECS whose first read of `t-s1` finds it running, whose every later read gets `then`, and
/// which accepts every stop.
async fn reads_running_then(then: ResponseTemplate) -> MockServer {
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(described("Running", serde_json::json!({})))
        .with_priority(1)
        .up_to_n_times(1)
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(then)
        .with_priority(2)
        .mount(&ecs)
        .await;
    stops_accepted(&ecs).await;
    ecs
}

// Row 7: polls that cannot succeed end the wait, with the status a unary call would get.
#[tokio::test]
async fn a_clock_step_mid_wait_ends_it_with_internal_not_at_the_deadline() {
    let ecs = reads_running_then(ecs_error(400, "InvalidTimeStamp.Expired")).await;
    let mut service = fast(1000);
    service.wait.max_wait = Duration::from_secs(60);
    let gw = gateway_for(&ecs, service).await;
    let (_, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(error_info(&status).0, "INVALID_TIME_STAMP_EXPIRED");
    let reads = requests_of(&ecs, "DescribeInvocations").await.len();
    assert_eq!(reads, 4, "the first read, then three failed polls");
}

#[tokio::test]
async fn a_wait_that_ends_at_its_deadline_says_what_the_last_poll_said() {
    let ecs = reads_running_then(ecs_error(503, "ServiceUnavailable")).await;
    let mut service = fast(1000);
    service.wait.max_wait = Duration::from_secs(3);
    let gw = gateway_for(&ecs, service).await;
    let (_, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status
            .message()
            .contains("the last read of the invocation failed: ")
            && status.message().contains("ServiceUnavailable"),
        "{status:?}"
    );
}

// Row 8: wait traffic is counted where it happens.
#[tokio::test]
async fn a_waits_stops_and_reads_are_counted_as_upstream_attempts_by_action() {
    let (gw, _sim, ids) = with_running(Duration::from_millis(300), true, "t-count", 120).await;
    let (_, status) = drain(wait_on(&gw, "t-count", &ids).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let exposition = gw.metrics.as_ref().unwrap().encode();
    let attempts = |action: &str| {
        sum(
            &exposition,
            "ecs_gateway_upstream_attempts_total",
            &[&format!("action=\"{action}\"")],
        )
    };
    assert_eq!(attempts("StopInvocation"), 3.0, "{exposition}");
    assert!(attempts("DescribeInvocations") >= 2.0, "{exposition}");
}

#[tokio::test]
async fn a_throttled_wait_stop_is_seen_by_the_throttling_metric() {
    let (gw, sim, ids) = with_running(Duration::from_millis(300), true, "t-seen", 50).await;
    sim.throttle_stops(1, Duration::from_millis(200));
    let (_, status) = drain(wait_on(&gw, "t-seen", &ids).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let exposition = gw.metrics.as_ref().unwrap().encode();
    let throttled = sum(
        &exposition,
        "ecs_gateway_upstream_attempts_total",
        &["action=\"StopInvocation\"", "ecs_code=\"Throttling.User\""],
    );
    assert_eq!(throttled, 1.0, "{exposition}");
}

// Row 10: reads speak of reads.
#[tokio::test]
async fn an_unreadable_read_and_a_refused_region_speak_of_reading_not_stopping() {
    let ecs = MockServer::start().await;
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"RequestId": "6E1F8A8C-0000-4000-8000-0000000BAD00", "Invocations": 5}),
        ))
        .mount(&ecs)
        .await;
    let gw = gateway_for(&ecs, fast(1000)).await;
    let read = GetInvocationRequest {
        region_id: REGION.into(),
        invoke_id: "t-s1".into(),
        ..Default::default()
    };
    let status = gw.client.clone().get_invocation(read).await.unwrap_err();
    assert!(!status.message().contains("stop"), "{status:?}");
    assert!(status.message().contains("read"), "{status:?}");
    let (_, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert!(!status.message().contains("stop"), "{status:?}");
    assert!(status.message().contains("read"), "{status:?}");

    let (gw, _sim, _dir) = with_callers(
        &[("beijing", "beijing-token-77aa88bb")],
        Some("[callers.beijing]\nregions = [\"cn-beijing\"]\n"),
        Setup::default(),
    )
    .await;
    let read = GetInvocationRequest {
        region_id: REGION.into(),
        invoke_id: "t-demo0001".into(),
        ..Default::default()
    };
    let status = gw
        .client
        .clone()
        .get_invocation(with_bearer(read, "beijing-token-77aa88bb"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("may not read invocations"),
        "{status:?}"
    );
}

// The connection: past --max-connection-age and its grace it is closed, a wait on it or not.
#[tokio::test]
async fn a_connection_past_its_age_and_grace_is_closed_under_a_wait() {
    let (url, sim) = crate::support::start_simulator(ecs_gateway::simulator::SimulatorConfig {
        stop_delay: Duration::from_secs(3600),
        ..ecs_gateway::simulator::SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let gw = Gateway::start_setup(
        ecs_client(&url, test_credential()),
        Setup {
            service: Some(fast(1000)),
            server: Some(ServerSettings {
                connection: ConnectionSettings {
                    max_age: Duration::from_secs(1),
                    max_age_grace: Duration::from_secs(1),
                    ..ConnectionSettings::default()
                },
                ..ServerSettings::default()
            }),
            ..Setup::default()
        },
        None,
    )
    .await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-old", invocation);
    let stream = wait_on(&gw, "t-old", &ids).await;
    let (_, status) = tokio::time::timeout(Duration::from_secs(10), drain(stream))
        .await
        .expect("the stream ends with its connection");
    // The connection is closed under the stream: the client hears a transport error.
    assert_ne!(status.code(), Code::Ok, "{status:?}");
}
