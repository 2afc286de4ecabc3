//! Waits on many invocations of one region, read by one poller for the group: listings where a
//! listing costs fewer calls than reading each, one by one in turn where it does not. A gateway
//! process in front of the simulator; what is checked is what reached "ECS", in its order.

use std::time::Duration;

use crate::quota::{align, early_in_a_minute, hold_waits, metric, replica};
use crate::support::start_simulator;
use crate::waits::{REGION, drain};
use ecs_gateway::simulator::{ExecutionStatus, Invocation, SimulatorConfig};

/// The value of `ecs_gateway_invocation_reads_total` of `kind`.
async fn reads(gateway: &crate::support::binary::Binary, kind: &str) -> f64 {
    metric(
        gateway,
        &format!("ecs_gateway_invocation_reads_total{{kind=\"{kind}\"}}"),
    )
    .await
}

#[tokio::test]
async fn thirty_waits_in_a_region_are_followed_with_listings_not_thirty_reads_a_round() {
    let mut config = SimulatorConfig::demo();
    // Long enough for several rounds of polling while the stopped executions are stopping.
    config.stop_delay = Duration::from_secs(6);
    let (url, simulator) = start_simulator(config).await;
    let gateway = replica(&url, &[]).await;
    let streams = hold_waits(&gateway, &simulator, "t-many", 30).await;
    all_end_stopped(streams).await;
    let caller = reads(&gateway, "caller").await;
    let listing = reads(&gateway, "listing").await;
    let poll = reads(&gateway, "poll").await;
    assert_eq!(caller, 30.0, "each wait's first read");
    assert!(listing >= 2.0, "Running, then Stopping: {listing}");
    // Read one by one, thirty invocations stopping for 6 s cost 30 reads a round, a round at
    // 1, 2.5 and 4.75 s, and 30 more when they stop: 120. Listed, each is read alone once, when
    // it leaves the listing of Stopping.
    assert!(poll <= 35.0, "{poll} reads of one invocation");
    assert!(
        listing + poll < 60.0,
        "{listing} listing pages and {poll} reads"
    );
    let listed = simulator
        .calls()
        .iter()
        .filter(|c| c.action == "DescribeInvocations" && c.invoke_id.is_none())
        .count();
    assert_eq!(
        listed as f64, listing,
        "the metric counts what ECS received"
    );
}

#[tokio::test]
async fn where_others_invocations_make_a_listing_cost_more_each_waited_one_is_read_in_turn() {
    let mut config = SimulatorConfig::demo();
    config.stop_delay = Duration::from_secs(600);
    let (url, simulator) = start_simulator(config).await;
    // Another tool's 400 invocations, stopping, listed before the waited ones: a listing of
    // Stopping would take 9 pages to reach six invocations, and is cut off at 5.
    for n in 0..400 {
        simulator.world().insert(
            REGION,
            &format!("t-a{n:04}"),
            Invocation::new(&[("i-other", ExecutionStatus::Stopping)]),
        );
    }
    // 8 reads per 2 s, of which polls may take 6: one round of six, when rounds come faster.
    let gateway = replica(&url, &["--api-quota", "DescribeInvocations=8/2s"]).await;
    align(Duration::from_secs(2), Duration::from_millis(50)).await;
    let streams = hold_waits(&gateway, &simulator, "t-z", 6).await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    let calls = simulator.calls();
    let reads: Vec<&str> = calls
        .iter()
        .filter(|c| c.action == "DescribeInvocations")
        .filter_map(|c| c.invoke_id.as_deref())
        .filter(|id| id.starts_with("t-z"))
        .collect();
    let (first, polls) = reads.split_at(6);
    let mut distinct = first.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "each wait's first read: {first:?}");
    assert!(
        polls.len() >= 12,
        "{} reads one by one: {polls:?}",
        polls.len()
    );
    for turn in polls.chunks(6).take(polls.len() / 6) {
        let mut read = turn.to_vec();
        read.sort_unstable();
        read.dedup();
        assert_eq!(
            read.len(),
            6,
            "no invocation read twice before each other once: {polls:?}"
        );
    }
    let is_read = |c: &&ecs_gateway::simulator::Call| {
        c.action == "DescribeInvocations"
            && c.invoke_id
                .as_deref()
                .is_some_and(|id| id.starts_with("t-z"))
    };
    let first_poll = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| is_read(c))
        .nth(6)
        .map(|(i, _)| i)
        .unwrap();
    let listed_late = calls[first_poll..]
        .iter()
        .filter(|c| c.action == "DescribeInvocations" && c.invoke_id.is_none())
        .count();
    assert_eq!(
        listed_late, 0,
        "a listing cut off is not tried again for a minute"
    );
    drop(streams);
}

#[tokio::test]
async fn an_invocation_nobody_waits_on_is_let_go_within_a_second_even_while_its_group_is_held_back()
{
    let mut config = SimulatorConfig::demo();
    config.stop_delay = Duration::from_secs(600);
    let (url, simulator) = start_simulator(config).await;
    // One followed invocation at a time; 4 reads a minute, of which polls may take 3.
    let gateway = replica(
        &url,
        &[
            "--max-polled-invocations",
            "1",
            "--api-quota",
            "DescribeInvocations=4/60s",
        ],
    )
    .await;
    early_in_a_minute(Duration::from_secs(20)).await;
    let held = hold_waits(&gateway, &simulator, "t-gone", 1).await;
    // The first read and two polls (about 1 and 2.5 s on) spend the background share; the third
    // poll (about 4.75 s on) is refused, and the group is held back to the end of the minute.
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut client = gateway.client().await;
    simulator
        .world()
        .insert(REGION, "t-next", crate::waits::running(2).1);
    let mut stream = client
        .stop_invocation_and_wait(crate::waits::wait_request("t-next", &[]))
        .await
        .expect("the first invocation was let go, so another may be followed")
        .into_inner();
    stream
        .message()
        .await
        .expect("a first message")
        .expect("a first message");
}

#[tokio::test]
async fn instances_a_describe_answer_leaves_out_are_read_through_invocation_results() {
    use crate::waits::{calls_of, with_running};
    use tonic::Code;
    use tonic_types::StatusExt as _;
    let (gw, sim, ids) = with_running(Duration::from_millis(300), false, "t-big", 150).await;
    // DescribeInvocations lists the first 100 instances of each invocation, no more.
    sim.world().set_instance_list_cap(Some(100));
    let (beyond, listed) = (ids[139].clone(), ids[0].clone());

    // An instance that is the invocation's, though the answer leaves it out, is waited on; one
    // that DescribeInvocationResults does not page either is refused by name, nothing stopped.
    let stream = gw
        .client
        .clone()
        .stop_invocation_and_wait(crate::waits::wait_request(
            "t-big",
            &[listed.clone(), "i-nobody".into()],
        ))
        .await
        .unwrap()
        .into_inner();
    let (_, refused) = drain(stream).await;
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let bad = refused.get_details_bad_request().unwrap();
    assert_eq!(bad.field_violations[0].field, "instance_ids[1]");
    assert!(calls_of(&sim.calls(), "StopInvocation").is_empty());

    let stream = gw
        .client
        .clone()
        .stop_invocation_and_wait(crate::waits::wait_request(
            "t-big",
            &[listed.clone(), beyond.clone()],
        ))
        .await
        .unwrap()
        .into_inner();
    let (messages, status) = tokio::time::timeout(Duration::from_secs(20), drain(stream))
        .await
        .expect("the wait ends");
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let last = messages.last().expect("a final message");
    assert_eq!((last.final_instances, last.targeted_instances), (2, 2));
    let statuses: Vec<(&str, &str)> = last
        .invocation
        .as_ref()
        .unwrap()
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [(listed.as_str(), "Stopped"), (beyond.as_str(), "Stopped")]
    );
    let calls = sim.calls();
    let stopped: Vec<&String> = calls_of(&calls, "StopInvocation")
        .iter()
        .flat_map(|c| &c.instance_ids)
        .collect();
    assert!(stopped.contains(&&beyond), "{stopped:?}");
    // The first read, and the polls that saw it stop, each completed past the cut: 150
    // instances are three pages of 50.
    assert!(
        calls_of(&calls, "DescribeInvocationResults").len() >= 6,
        "{:?}",
        calls_of(&calls, "DescribeInvocationResults").len()
    );
}

/// Two replicas sharing a real Redis in front of a simulator whose stops take `stop_delay`;
/// `None` where redis-server is missing outside CI (see `RedisServer::start`).
async fn two_on_redis(
    stop_delay: Duration,
) -> Option<(
    crate::support::redis::RedisServer,
    ecs_gateway::simulator::Simulator,
    crate::support::binary::Binary,
    crate::support::binary::Binary,
)> {
    let redis = crate::support::redis::RedisServer::start().await?;
    let mut config = SimulatorConfig::demo();
    config.stop_delay = stop_delay;
    let (url, simulator) = start_simulator(config).await;
    let redis_url = redis.url();
    let a = replica(&url, &["--redis-url", &redis_url]).await;
    let b = replica(&url, &["--redis-url", &redis_url]).await;
    Some((redis, simulator, a, b))
}

/// Drains every stream, within 40 s in all; that each ended OK with its two instances Stopped.
async fn all_end_stopped(
    streams: Vec<tonic::Streaming<ecs_gateway::pb::StopInvocationAndWaitResponse>>,
) {
    let ends = tokio::time::timeout(
        Duration::from_secs(40),
        futures_util::future::join_all(streams.into_iter().map(drain)),
    )
    .await
    .expect("every wait ends");
    for (messages, status) in &ends {
        assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
        let last = messages.last().expect("a final message");
        assert_eq!(
            (last.final_instances, last.targeted_instances),
            (2, 2),
            "{last:?}"
        );
        let invocation = last.invocation.as_ref().expect("the invocation");
        assert_eq!(invocation.status, "Stopped", "{last:?}");
    }
}

#[tokio::test]
async fn two_replicas_on_one_redis_poll_a_region_once_and_both_callers_hear_every_end() {
    let Some((_redis, simulator, a, b)) = two_on_redis(Duration::from_secs(8)).await else {
        return;
    };
    let on_a = hold_waits(&a, &simulator, "t-ra", 10).await;
    let on_b = hold_waits(&b, &simulator, "t-rb", 10).await;
    let (_, _) = tokio::join!(all_end_stopped(on_a), all_end_stopped(on_b));
    let (listed_a, listed_b) = (reads(&a, "listing").await, reads(&b, "listing").await);
    let (polled_a, polled_b) = (reads(&a, "poll").await, reads(&b, "poll").await);
    // One holds the group's lease and reads for both; the other takes its reads from Redis.
    let (follower_listed, follower_polled, leader_listed) = if listed_a <= listed_b {
        (listed_a, polled_a, listed_b)
    } else {
        (listed_b, polled_b, listed_a)
    };
    assert_eq!(
        (follower_listed, follower_polled),
        (0.0, 0.0),
        "the follower read nothing itself (leader: {leader_listed} listing pages)"
    );
    assert!(leader_listed >= 1.0);
    // Each wait's first read is its caller's, on its own replica.
    assert_eq!(reads(&a, "caller").await + reads(&b, "caller").await, 20.0);
}

#[tokio::test]
async fn without_redis_each_replica_polls_its_own_waits_again() {
    let Some((mut redis, simulator, a, b)) = two_on_redis(Duration::from_secs(6)).await else {
        return;
    };
    let on_a = hold_waits(&a, &simulator, "t-sa", 5).await;
    let on_b = hold_waits(&b, &simulator, "t-sb", 5).await;
    redis.stop().await;
    let (_, _) = tokio::join!(all_end_stopped(on_a), all_end_stopped(on_b));
    let read = reads(&a, "listing").await + reads(&a, "poll").await;
    let read_b = reads(&b, "listing").await + reads(&b, "poll").await;
    assert!(
        read >= 1.0 && read_b >= 1.0,
        "each replica read its own: {read}, {read_b}"
    );
}

#[tokio::test]
async fn when_the_lease_holder_goes_another_replica_takes_its_group_over() {
    let Some((_redis, simulator, a, b)) = two_on_redis(Duration::from_secs(12)).await else {
        return;
    };
    let on_a = hold_waits(&a, &simulator, "t-la", 3).await;
    let on_b = hold_waits(&b, &simulator, "t-lb", 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_leads = reads(&a, "listing").await + reads(&a, "poll").await > 0.0;
    let (survivor, waits, gone, gone_waits) = if a_leads {
        (b, on_b, a, on_a)
    } else {
        (a, on_a, b, on_b)
    };
    drop(gone_waits);
    drop(gone);
    all_end_stopped(waits).await;
    let changes = survivor.lines("a group of waited invocations changed who polls it");
    assert!(
        changes.iter().any(|l| l["to"] == "Lead"),
        "the survivor took the lease: {changes:?}"
    );
}
