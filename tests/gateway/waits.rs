//! StopInvocationAndWait, GetInvocation and validate_only against the simulator's per-instance
//! state machines, through a real tonic client: chunking, final states, re-issued waits, the
//! deadline, shared polling, throttling mid-wait, a caller that leaves, shutdown, and policy.

use std::time::Duration;

use crate::support::pki::TempDir;
use crate::support::{
    Gateway, Setup, ecs_client, error_info, start_simulator, test_credential, with_bearer,
};
use ecs_gateway::pb::{
    GetInvocationRequest, StopInvocationAndWaitRequest, StopInvocationAndWaitResponse,
    StopInvocationRequest, WaitMessageKind,
};
use ecs_gateway::simulator::{Call, ExecutionStatus, Invocation, Simulator, SimulatorConfig};
use ecs_gateway::testing::api::{PollPace, ServiceSettings, WaitSettings};
use ecs_gateway::testing::auth::SecurityFiles;
use tonic::Code;
use tonic::Streaming;
use tonic_types::StatusExt as _;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const REGION: &str = "cn-hangzhou";

/// Polls every 100–200 ms, so that waits take tenths of seconds, not the default's seconds.
pub(crate) fn fast(max_instances: usize) -> ServiceSettings {
    ServiceSettings {
        wait: WaitSettings {
            max_instances,
            pace: PollPace {
                first: Duration::from_millis(200),
                max: Duration::from_millis(200),
            },
            ..WaitSettings::default()
        },
        ..ServiceSettings::default()
    }
}

/// A simulator whose running executions stop `stop_delay` after a stop, and a gateway in front.
pub(crate) async fn setup(stop_delay: Duration, setup: Setup) -> (Gateway, Simulator) {
    let (url, sim) = start_simulator(SimulatorConfig {
        stop_delay,
        ..SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let setup = Setup {
        service: setup.service.or_else(|| Some(fast(1000))),
        ..setup
    };
    let gateway = Gateway::start_setup(ecs_client(&url, test_credential()), setup, None).await;
    (gateway, sim)
}

pub(crate) fn wait_request(invoke_id: &str, instances: &[String]) -> StopInvocationAndWaitRequest {
    StopInvocationAndWaitRequest {
        region_id: REGION.into(),
        invoke_id: invoke_id.into(),
        instance_ids: instances.to_vec(),
        ..Default::default()
    }
}

/// Every message of a stream, and the status it ended with.
pub(crate) async fn drain(
    mut stream: Streaming<StopInvocationAndWaitResponse>,
) -> (Vec<StopInvocationAndWaitResponse>, tonic::Status) {
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, tonic::Status::ok("")),
            Err(status) => return (messages, status),
        }
    }
}

pub(crate) fn calls_of<'a>(calls: &'a [Call], action: &str) -> Vec<&'a Call> {
    calls.iter().filter(|c| c.action == action).collect()
}

/// `n` running instances `i-w0001`…
pub(crate) fn running(n: usize) -> (Vec<String>, Invocation) {
    let ids: Vec<String> = (1..=n).map(|i| format!("i-w{i:04}")).collect();
    let executions: Vec<(&str, ExecutionStatus)> = ids
        .iter()
        .map(|i| (i.as_str(), ExecutionStatus::Running))
        .collect();
    let invocation = Invocation::new(&executions);
    (ids, invocation)
}

/// A gateway and simulator (stopping in `stop_delay`) with `invoke_id` running on `n` instances.
pub(crate) async fn with_running(
    stop_delay: Duration,
    metrics: bool,
    invoke_id: &str,
    n: usize,
) -> (Gateway, Simulator, Vec<String>) {
    let (gw, sim) = setup(
        stop_delay,
        Setup {
            metrics,
            ..Setup::default()
        },
    )
    .await;
    let (ids, invocation) = running(n);
    sim.world().insert(REGION, invoke_id, invocation);
    (gw, sim, ids)
}

/// Starts waiting on `invoke_id`'s `ids`.
pub(crate) async fn wait_on(
    gw: &Gateway,
    invoke_id: &str,
    ids: &[String],
) -> Streaming<StopInvocationAndWaitResponse> {
    gw.client
        .clone()
        .stop_invocation_and_wait(wait_request(invoke_id, ids))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_wait_on_120_instances_stops_them_in_three_calls_of_at_most_50_and_ends_when_all_stopped()
{
    let (gw, sim, ids) = with_running(Duration::from_millis(300), false, "t-w120", 120).await;
    let stream = wait_on(&gw, "t-w120", &ids).await;
    let (messages, status) = drain(stream).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");

    let calls = sim.calls();
    assert_eq!(
        calls[0].action, "DescribeInvocations",
        "the invocation is read first"
    );
    let stops = calls_of(&calls, "StopInvocation");
    assert_eq!(stops.len(), 3, "{stops:?}");
    assert!(stops.iter().all(|c| c.instance_ids.len() <= 50));
    let mut stopped: Vec<String> = stops.iter().flat_map(|c| c.instance_ids.clone()).collect();
    stopped.sort();
    assert_eq!(stopped, ids, "each instance stopped exactly once");

    let reported: Vec<_> = messages.iter().flat_map(|m| m.stops.clone()).collect();
    assert_eq!(reported.len(), 3);
    assert!(
        reported
            .iter()
            .all(|r| r.error.is_none() && r.request_id.len() == 36),
        "{reported:?}"
    );
    let last = messages.last().unwrap();
    assert_eq!((last.final_instances, last.targeted_instances), (120, 120));
    let invocation = last.invocation.as_ref().unwrap();
    assert_eq!(invocation.instances.len(), 120);
    assert!(
        invocation
            .instances
            .iter()
            .all(|i| i.status == "Stopped" && i.is_final)
    );
    assert_eq!(invocation.status, "Stopped");
    assert!(invocation.is_final);
    // Messages only when something changed: the three stops, Stopping → Stopped, no repeats.
    assert!(messages.len() <= 6, "{} messages", messages.len());
}

#[tokio::test]
async fn a_wait_reports_mixed_end_states_and_a_reissued_wait_stops_nothing_twice() {
    let (gw, sim) = setup(Duration::from_millis(300), Setup::default()).await;
    use ExecutionStatus::*;
    sim.world().insert(
        REGION,
        "t-mixed",
        Invocation::new(&[
            ("i-done", Success),
            ("i-broke", Failed),
            ("i-run", Running),
            ("i-wait", Pending),
        ]),
    );
    let mut client = gw.client.clone();
    let stream = client
        .stop_invocation_and_wait(wait_request("t-mixed", &[]))
        .await
        .unwrap()
        .into_inner();
    let (messages, status) = drain(stream).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let stops = calls_of(&sim.calls(), "StopInvocation").len();
    let stopped: Vec<String> = calls_of(&sim.calls(), "StopInvocation")
        .iter()
        .flat_map(|c| c.instance_ids.clone())
        .collect();
    assert_eq!(stops, 1);
    let mut stopped = stopped;
    stopped.sort();
    assert_eq!(stopped, ["i-run", "i-wait"], "only what a stop can change");
    let last = messages.last().unwrap().invocation.clone().unwrap();
    let statuses: Vec<(&str, &str, bool)> = last
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.status.as_str(), i.is_final))
        .collect();
    // Sorted by instance ID, every target in the last (FINAL) message.
    assert_eq!(
        statuses,
        [
            ("i-broke", "Failed", true),
            ("i-done", "Success", true),
            ("i-run", "Stopped", true),
            ("i-wait", "Cancelled", true),
        ]
    );
    assert_eq!(
        messages.last().unwrap().kind(),
        WaitMessageKind::Final,
        "the last message is the whole final state"
    );

    // The caller resumes (as after a replica went away): nothing more is stopped.
    let stream = client
        .stop_invocation_and_wait(wait_request("t-mixed", &[]))
        .await
        .unwrap()
        .into_inner();
    let (messages, status) = drain(stream).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    // Ended already: one message, which is the first and the last.
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].kind(), WaitMessageKind::Final);
    assert_eq!(messages[0].final_instances, 4);
    assert_eq!(messages[0].invocation.as_ref().unwrap().instances.len(), 4);
    assert_eq!(
        calls_of(&sim.calls(), "StopInvocation").len(),
        1,
        "no second stop"
    );
}

#[tokio::test]
async fn the_deadline_ends_a_wait_after_the_latest_statuses_and_then_nothing_is_polled() {
    let (gw, sim) = setup(Duration::from_secs(3600), Setup::default()).await;
    let (ids, invocation) = running(3);
    sim.world().insert(REGION, "t-slow", invocation);
    let mut request = tonic::Request::new(wait_request("t-slow", &ids));
    request.set_timeout(Duration::from_millis(1500));
    let stream = gw
        .client
        .clone()
        .stop_invocation_and_wait(request)
        .await
        .unwrap()
        .into_inner();
    let (messages, status) = drain(stream).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_info(&status).0, "WAIT_DEADLINE_EXCEEDED");
    assert!(
        status.message().starts_with("0 of 3 targeted instances"),
        "{status:?}"
    );
    let last = messages.last().expect("the latest statuses before the end");
    assert!(
        last.invocation
            .as_ref()
            .unwrap()
            .instances
            .iter()
            .all(|i| i.status == "Stopping"),
        "{last:?}"
    );
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
    assert!(reads >= 3, "it polled while waiting: {reads} reads");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        calls_of(&sim.calls(), "DescribeInvocations").len(),
        reads,
        "nothing is sent upstream after the end"
    );
}

#[tokio::test]
async fn ten_waiters_on_one_invocation_share_one_poll_loop() {
    let (gw, sim) = setup(
        Duration::from_millis(1500),
        Setup {
            metrics: true,
            ..Setup::default()
        },
    )
    .await;
    let (ids, invocation) = running(20);
    sim.world().insert(REGION, "t-shared", invocation);
    let started = std::time::Instant::now();
    let waits: Vec<_> = (0..10)
        .map(|_| {
            let mut client = gw.client.clone();
            let request = wait_request("t-shared", &ids);
            tokio::spawn(async move {
                let stream = client
                    .stop_invocation_and_wait(request)
                    .await
                    .unwrap()
                    .into_inner();
                drain(stream).await
            })
        })
        .collect();
    for wait in waits {
        let (messages, status) = wait.await.unwrap();
        assert_eq!(status.code(), Code::Ok, "{status:?}");
        assert_eq!(messages.last().unwrap().final_instances, 20);
    }
    let took = started.elapsed();
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
    // At most one first read per waiter (concurrent ones share one, so often fewer); after that,
    // one loop polls every 160–200 ms.
    let one_loop = (took.as_secs_f64() / 0.16).ceil() as usize + 1;
    assert!(
        reads <= 10 + one_loop,
        "{reads} reads in {took:?}: more than ten first reads and one loop's {one_loop} polls"
    );
    let exposition = gw.metrics.as_ref().unwrap().encode();
    assert!(
        exposition.contains("ecs_gateway_waits_in_flight 0"),
        "{exposition}"
    );
    assert!(
        exposition.contains("ecs_gateway_wait_seconds_count{grpc_code=\"OK\"} 10"),
        "{exposition}"
    );
}

#[tokio::test]
async fn a_poll_throttled_mid_wait_waits_and_the_wait_still_ends() {
    let (gw, sim, ids) = with_running(Duration::from_millis(300), true, "t-throttled", 5).await;
    let mut stream = wait_on(&gw, "t-throttled", &ids).await;
    // Up to the stop's answer: from here on, every read is throttled for a while.
    while stream.message().await.unwrap().unwrap().stops.is_empty() {}
    sim.set_reads_throttled(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    sim.set_reads_throttled(false);
    let (messages, status) = drain(stream).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(messages.last().unwrap().final_instances, 5);
    let exposition = gw.metrics.as_ref().unwrap().encode();
    let throttled = exposition
        .lines()
        .find(|l| l.starts_with("ecs_gateway_invocation_polls_total{outcome=\"throttled\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(throttled >= 1, "{exposition}");
}

#[tokio::test]
async fn a_caller_that_goes_away_stops_costing_polls() {
    let (gw, sim, ids) = with_running(Duration::from_secs(3600), true, "t-left", 2).await;
    let mut stream = wait_on(&gw, "t-left", &ids).await;
    stream.message().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(stream);
    // The loop notices at its next tick and polls no more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = calls_of(&sim.calls(), "DescribeInvocations").len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls_of(&sim.calls(), "DescribeInvocations").len(), reads);
    let exposition = gw.metrics.as_ref().unwrap().encode();
    assert!(
        exposition.contains("ecs_gateway_waits_in_flight 0"),
        "{exposition}"
    );
}

#[tokio::test]
async fn shutdown_ends_a_waiting_stream_with_unavailable_and_retry_info_without_holding_the_drain()
{
    let (mut gw, _sim, ids) = with_running(Duration::from_secs(3600), false, "t-drain", 2).await;
    let mut stream = wait_on(&gw, "t-drain", &ids).await;
    stream.message().await.unwrap().unwrap();
    gw.signal_shutdown();
    let (_, status) = tokio::time::timeout(Duration::from_secs(5), drain(stream))
        .await
        .expect("the stream ends at once");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_info(&status).0, "GATEWAY_DRAINING");
    assert!(status.get_details_retry_info().is_some());
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("the wait does not hold the drain")
        .unwrap();
}

#[tokio::test]
async fn more_instances_than_the_limit_are_refused_naming_the_field_and_nothing_is_sent() {
    let (gw, sim) = setup(
        Duration::from_millis(300),
        Setup {
            service: Some(fast(5)),
            ..Setup::default()
        },
    )
    .await;
    let ids: Vec<String> = (1..=6).map(|i| format!("i-{i}")).collect();
    let status = gw
        .client
        .clone()
        .stop_invocation_and_wait(wait_request("t-demo0001", &ids))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().unwrap();
    assert_eq!(bad.field_violations[0].field, "instance_ids");
    assert_eq!(
        bad.field_violations[0].description,
        "must list at most 5 instance IDs"
    );
    assert!(sim.calls().is_empty());

    // Instances that are not the invocation's are named, and nothing is stopped.
    // Found on reading the invocation, so the stream ends before its first message.
    let stream = gw
        .client
        .clone()
        .stop_invocation_and_wait(wait_request(
            "t-demo0001",
            &["i-demo01a".into(), "i-other".into()],
        ))
        .await
        .unwrap()
        .into_inner();
    let (messages, status) = drain(stream).await;
    assert!(messages.is_empty());
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().unwrap();
    assert_eq!(bad.field_violations[0].field, "instance_ids[1]");
    assert!(calls_of(&sim.calls(), "StopInvocation").is_empty());
}

#[tokio::test]
async fn get_invocation_reads_every_instance_and_an_unknown_invocation_is_not_found() {
    let (gw, _sim) = setup(Duration::from_millis(300), Setup::default()).await;
    let mut client = gw.client.clone();
    let read = |invoke_id: &str| GetInvocationRequest {
        region_id: REGION.into(),
        invoke_id: invoke_id.into(),
        ..Default::default()
    };
    let answer = client
        .get_invocation(read("t-demo1000"))
        .await
        .unwrap()
        .into_inner();
    let invocation = answer.invocation.unwrap();
    assert_eq!(answer.request_id.len(), 36);
    assert_eq!(invocation.instances.len(), 1000);
    let succeeded = invocation
        .instances
        .iter()
        .filter(|i| i.status == "Success")
        .count();
    assert_eq!(succeeded, 100);
    assert!(
        invocation
            .instances
            .iter()
            .filter(|i| i.status == "Running")
            .all(|i| !i.is_final)
    );
    let status = client.get_invocation(read("t-nosuch")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_info(&status).0, "INVOCATION_NOT_FOUND");
}

#[tokio::test]
async fn validate_only_says_what_would_be_sent_and_sends_nothing() {
    let (gw, sim) = setup(Duration::from_millis(300), Setup::default()).await;
    let answer = gw
        .client
        .clone()
        .stop_invocation(StopInvocationRequest {
            region_id: REGION.into(),
            invoke_id: "t-demo0001".into(),
            instance_ids: vec!["i-demo01a".into()],
            owner_account: Some("ops team".into()),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.request_id.is_empty());
    let planned = answer.planned.unwrap();
    assert_eq!(planned.action, "StopInvocation");
    assert_eq!(planned.version, "2014-05-26");
    assert_eq!(planned.signature_version, "v3");
    assert!(planned.host.starts_with("127.0.0.1:"), "{planned:?}");
    let params: Vec<(&str, &str)> = planned
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("RegionId", "cn-hangzhou"),
            ("InvokeId", "t-demo0001"),
            ("InstanceId.1", "i-demo01a"),
            ("OwnerAccount", "ops team"),
        ]
    );
    let shown = format!("{planned:?}");
    let credential = test_credential();
    assert!(
        !shown.contains(credential.access_key_id())
            && !shown.contains(credential.access_key_secret())
    );
    assert_eq!(sim.requests_received(), 0, "nothing was sent");
    // Still validated: a bad request is refused as without validate_only.
    let status = gw
        .client
        .clone()
        .stop_invocation(StopInvocationRequest {
            region_id: REGION.into(),
            invoke_id: String::new(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

const READER: &str = "reader-token-0c1d2e3f";
const OPERATOR: &str = "operator-token-9a8b7c6d";

pub(crate) fn token_line(name: &str, token: &str) -> String {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name} sha256:{hex}\n")
}

/// A gateway (as `setup` has it, the simulator stopping in 300 ms) that knows these callers by
/// their tokens, under `policy` when given; the directory holding the files goes with it.
pub(crate) async fn with_callers(
    callers: &[(&str, &str)],
    policy: Option<&str>,
    setup_with: Setup,
) -> (Gateway, Simulator, TempDir) {
    let dir = TempDir::new();
    let tokens: String = callers
        .iter()
        .map(|(name, token)| token_line(name, token))
        .collect();
    let security = SecurityFiles {
        tls: None,
        tokens: Some(dir.write("tokens", &tokens)),
        policy: policy.map(|policy| dir.write("policy.toml", policy)),
    };
    let (gw, sim) = setup(
        Duration::from_millis(300),
        Setup {
            security,
            ..setup_with
        },
    )
    .await;
    (gw, sim, dir)
}

#[tokio::test]
async fn a_read_only_caller_may_get_an_invocation_but_neither_stop_nor_wait() {
    let (gw, sim, _dir) = with_callers(
        &[("reader", READER), ("operator", OPERATOR)],
        Some("[callers.reader]\nregions = [\"*\"]\naccess = \"read\"\n[callers.operator]\nregions = [\"cn-hangzhou\"]\n"),
        Setup::default(),
    )
    .await;
    let mut client = gw.client.clone();
    let read = GetInvocationRequest {
        region_id: REGION.into(),
        invoke_id: "t-demo0002".into(),
        ..Default::default()
    };
    client
        .get_invocation(with_bearer(read.clone(), READER))
        .await
        .unwrap();
    client
        .get_invocation(with_bearer(read, OPERATOR))
        .await
        .unwrap();

    let status = client
        .stop_invocation(with_bearer(
            crate::support::request(REGION, "t-demo0002", &[]),
            READER,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_info(&status).0, "CALLER_READ_ONLY");
    let status = client
        .stop_invocation_and_wait(with_bearer(wait_request("t-demo0002", &[]), READER))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_info(&status).0, "CALLER_READ_ONLY");
    assert!(calls_of(&sim.calls(), "StopInvocation").is_empty());

    let stream = client
        .stop_invocation_and_wait(with_bearer(wait_request("t-demo0002", &[]), OPERATOR))
        .await
        .unwrap()
        .into_inner();
    let (_, status) = drain(stream).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(calls_of(&sim.calls(), "StopInvocation").len(), 1);
}

#[tokio::test]
async fn a_wait_on_1000_instances_stops_each_stoppable_one_once_and_sees_every_one_end() {
    // t-demo1000: 600 running, 200 pending, 100 succeeded and 100 failed on their own.
    let (gw, sim) = setup(Duration::from_millis(300), Setup::default()).await;
    let (messages, status) = drain(wait_on(&gw, "t-demo1000", &[]).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let stops = calls_of(&sim.calls(), "StopInvocation")
        .into_iter()
        .map(|c| c.instance_ids.clone())
        .collect::<Vec<_>>();
    assert_eq!(stops.len(), 16, "800 stoppable instances in calls of 50");
    let mut stopped: Vec<String> = stops.concat();
    stopped.sort();
    stopped.dedup();
    assert_eq!(stopped.len(), 800, "each stoppable instance once");
    let last = messages.last().unwrap();
    assert_eq!(
        (last.final_instances, last.targeted_instances),
        (1000, 1000)
    );
    let count = |status: &str| {
        last.invocation
            .as_ref()
            .unwrap()
            .instances
            .iter()
            .filter(|i| i.status == status)
            .count()
    };
    assert_eq!(
        (
            count("Stopped"),
            count("Cancelled"),
            count("Success"),
            count("Failed")
        ),
        (600, 200, 100, 100)
    );
}

/// A DescribeInvocations answer for `t-s1` on one instance in `status`, with these extra fields.
pub(crate) fn described(status: &str, extra: serde_json::Value) -> ResponseTemplate {
    let mut instance = serde_json::json!({"InstanceId": "i-s1", "InvocationStatus": status});
    if let (Some(instance), Some(extra)) = (instance.as_object_mut(), extra.as_object()) {
        instance.extend(extra.clone());
    }
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "RequestId": "6E1F8A8C-0000-4000-8000-00000000D0D0",
        "TotalCount": 1,
        "Invocations": {"Invocation": [{
            "InvokeId": "t-s1",
            "InvocationStatus": status,
            "InvokeInstances": {"InvokeInstance": [instance]}
        }]}
    }))
}

#[tokio::test]
async fn against_a_scripted_ecs_a_wait_follows_running_stopping_stopped_and_passes_the_details() {
    let ecs = MockServer::start().await;
    let action = |name: &'static str| header("x-acs-action", name);
    // The first read sees the execution running; the first poll, stopping; later ones, stopped.
    for (priority, status) in [(1, "Running"), (2, "Stopping")] {
        Mock::given(method("POST"))
            .and(action("DescribeInvocations"))
            .respond_with(described(status, serde_json::json!({})))
            .with_priority(priority)
            .up_to_n_times(1)
            .mount(&ecs)
            .await;
    }
    Mock::given(method("POST"))
        .and(action("DescribeInvocations"))
        .respond_with(described(
            "Stopped",
            serde_json::json!({"StartTime": "2026-12-05T08:00:00Z", "StopTime": "2026-12-05T08:00:03Z", "ErrorCode": "", "ErrorInfo": "the command was stopped"}),
        ))
        .with_priority(3)
        .mount(&ecs)
        .await;
    Mock::given(method("POST"))
        .and(action("StopInvocation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"RequestId": "6E1F8A8C-0000-4000-8000-00000000570F"}),
        ))
        .expect(1)
        .mount(&ecs)
        .await;
    let gw = Gateway::start_setup(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        Setup {
            service: Some(fast(1000)),
            ..Setup::default()
        },
        None,
    )
    .await;
    let (messages, status) = drain(wait_on(&gw, "t-s1", &[]).await).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    // Each change once, in order; the first message is whole, and so is the last, which may
    // carry the last change itself when the reader takes both at once.
    let seen: Vec<(WaitMessageKind, &str)> = messages
        .iter()
        .filter_map(|m| {
            let instance = m.invocation.as_ref()?.instances.first()?;
            Some((m.kind(), instance.status.as_str()))
        })
        .collect();
    let mut statuses: Vec<&str> = seen.iter().map(|(_, s)| *s).collect();
    statuses.dedup();
    assert_eq!(statuses, ["Running", "Stopping", "Stopped"], "{seen:?}");
    assert_eq!(seen[0].0, WaitMessageKind::Snapshot, "{seen:?}");
    assert_eq!(seen.last().unwrap().0, WaitMessageKind::Final, "{seen:?}");
    assert!(
        seen[1..seen.len() - 1]
            .iter()
            .all(|(kind, _)| *kind == WaitMessageKind::Changes),
        "{seen:?}"
    );
    let stops: Vec<&str> = messages
        .iter()
        .flat_map(|m| m.stops.iter().map(|s| s.request_id.as_str()))
        .collect();
    assert_eq!(stops, ["6E1F8A8C-0000-4000-8000-00000000570F"]);
    let last = &messages
        .last()
        .unwrap()
        .invocation
        .as_ref()
        .unwrap()
        .instances[0];
    assert!(last.is_final);
    assert_eq!(last.start_time, "2026-12-05T08:00:00Z");
    assert_eq!(last.stop_time, "2026-12-05T08:00:03Z");
    assert_eq!(last.error_info, "the command was stopped");
}
