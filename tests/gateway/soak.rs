//! A short soak under the simulator's faults: every call gets OK or a contract status, none is
//! lost, and the gateway keeps serving. The 10-minute variant is `bench/soak.sh`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Gateway, ecs_client, request, start_simulator, test_credential};
use ecs_gateway::simulator::Faults;
use ecs_gateway::simulator::SimulatorConfig;
use tonic::Code;

const CALLS: usize = 1500;
const CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_answered_under_503s_resets_and_latency() {
    let faults = Faults {
        latency: Some((Duration::from_millis(5), Duration::from_millis(20))),
        error_503_rate: 0.05,
        reset_rate: 0.01,
        ..Faults::default()
    };
    let (url, simulator) = start_simulator(SimulatorConfig {
        faults,
        ..SimulatorConfig::with_credential(test_credential())
    })
    .await;
    let gateway = Gateway::start(ecs_client(&url, test_credential())).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let per_worker = CALLS / CONCURRENCY;
    for _ in 0..CONCURRENCY {
        let (mut client, tx) = (gateway.client.clone(), tx.clone());
        tokio::spawn(async move {
            for _ in 0..per_worker {
                let mut req = tonic::Request::new(request("cn-hangzhou", "t-demo0001", &[]));
                req.set_timeout(Duration::from_secs(10));
                let code = match client.stop_invocation(req).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                tx.send(code).unwrap();
            }
        });
    }
    drop(tx);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(code) = rx.recv().await {
        *codes.entry(format!("{code:?}")).or_default() += 1;
    }

    assert_eq!(
        codes.values().sum::<usize>(),
        CALLS,
        "every call answered: {codes:?}"
    );
    assert!(
        codes.keys().all(|c| c == "Ok" || c == "Unavailable"),
        "only contract codes: {codes:?}"
    );
    // With two retries, a 6% fault rate leaves about 0.02% of calls failing; most must succeed.
    assert!(
        codes.get("Ok").copied().unwrap_or(0) >= CALLS * 98 / 100,
        "{codes:?}"
    );
    // Faults really were injected: retries pushed the upstream past one request per call.
    assert!(
        simulator.requests_received() > CALLS as u64,
        "{}",
        simulator.requests_received()
    );
}
