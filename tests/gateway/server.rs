//! Health, reflection, load shedding and graceful shutdown of the real server.

use std::time::Duration;

use crate::support::{Gateway, ecs_client, gateway_for_server, request, test_credential};
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::server::ServerSettings;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn slow_ecs(delay: Duration) -> MockServer {
    let ecs = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("../data/ecs/success.json"), "application/json")
                .set_delay(delay),
        )
        .mount(&ecs)
        .await;
    ecs
}

/// Waits until the upstream has received `n` requests: the calls have been admitted and sent.
async fn upstream_received(ecs: &MockServer, n: usize) -> bool {
    for _ in 0..500 {
        if ecs.received_requests().await.unwrap_or_default().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn health_answers_serving_for_the_server_and_the_service() {
    let ecs = slow_ecs(Duration::ZERO).await;
    let gateway = Gateway::start(ecs_client(&format!("{}/", ecs.uri()), test_credential())).await;
    let mut health = HealthClient::new(gateway.channel.clone());
    for service in ["", "ecsgateway.v1.CloudAssistantService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            answer.get_ref().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_lists_the_service_and_health() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let ecs = slow_ecs(Duration::ZERO).await;
    let gateway = Gateway::start(ecs_client(&format!("{}/", ecs.uri()), test_credential())).await;
    let mut reflection = ServerReflectionClient::new(gateway.channel.clone());
    let outbound = tokio_stream::once(ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    });
    let mut inbound = reflection
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    let answer = inbound.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"ecsgateway.v1.CloudAssistantService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn calls_past_the_concurrency_limit_are_refused_at_once_while_admitted_ones_succeed() {
    let ecs = slow_ecs(Duration::from_millis(400)).await;
    let gateway = Gateway::start_with(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        ServiceSettings {
            max_concurrent_requests: 2,
            ..ServiceSettings::default()
        },
        ServerSettings::default(),
    )
    .await;
    let admitted: Vec<_> = (0..2)
        .map(|_| {
            let mut client = gateway.client.clone();
            tokio::spawn(async move {
                client
                    .stop_invocation(request("cn-hangzhou", "t-1", &[]))
                    .await
            })
        })
        .collect();
    // Both admitted calls are waiting on the upstream before the third is made.
    assert!(upstream_received(&ecs, 2).await);

    let refused = gateway.refused_t1().await;

    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Refused without queueing: the admitted calls are still waiting on the upstream.
    assert!(admitted.iter().all(|call| !call.is_finished()));
    for call in admitted {
        call.await.unwrap().expect("admitted call succeeds");
    }
    assert_eq!(ecs.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_lets_the_call_in_flight_finish() {
    let ecs = slow_ecs(Duration::from_millis(500)).await;
    let mut gateway =
        Gateway::start(ecs_client(&format!("{}/", ecs.uri()), test_credential())).await;
    let mut health = HealthClient::new(gateway.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let mut client = gateway.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .stop_invocation(request("cn-hangzhou", "t-1", &[]))
            .await
    });
    assert!(upstream_received(&ecs, 1).await);
    gateway.signal_shutdown();

    // The watcher hears NOT_SERVING, and then its stream ends instead of holding shutdown open.
    let mut last = None;
    while let Some(update) = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch stream ends at shutdown")
        .unwrap()
    {
        last = Some(update.status());
    }
    assert_eq!(last, Some(ServingStatus::NotServing));
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(
        answer.get_ref().request_id,
        "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"
    );
    tokio::time::timeout(Duration::from_secs(5), gateway.task)
        .await
        .expect("server stops after draining")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(gateway.addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let ecs = slow_ecs(Duration::from_secs(30)).await;
    let settings = ServerSettings {
        shutdown_grace: Duration::from_millis(300),
        ..ServerSettings::default()
    };
    let mut gateway = gateway_for_server(&ecs, settings).await;
    let mut client = gateway.client.clone();
    let stuck = tokio::spawn(async move {
        client
            .stop_invocation(request("cn-hangzhou", "t-1", &[]))
            .await
    });
    assert!(upstream_received(&ecs, 1).await);
    gateway.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(5), gateway.task)
        .await
        .expect("shutdown ends within the grace period, not the upstream's 30 s")
        .unwrap();
    // The call still stuck upstream was dropped with its connection, not left running.
    let dropped = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck call ends with the server")
        .unwrap();
    assert!(dropped.is_err(), "{dropped:?}");
}

#[tokio::test]
async fn during_the_drain_delay_new_connections_still_hear_not_serving_then_the_listener_closes() {
    let ecs = slow_ecs(Duration::ZERO).await;
    let settings = ServerSettings {
        drain_delay: Duration::from_millis(800),
        ..ServerSettings::default()
    };
    let mut gateway = gateway_for_server(&ecs, settings).await;
    gateway.signal_shutdown();
    // A load balancer that has not noticed yet still connects, and is told to go elsewhere.
    let mut told = false;
    for _ in 0..50 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", gateway.addr))
            .unwrap()
            .connect()
            .await
            .expect("still accepting during the drain delay");
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        if answer.get_ref().status() == ServingStatus::NotServing {
            told = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(told);
    tokio::time::timeout(Duration::from_secs(5), gateway.task)
        .await
        .expect("the server stops after the delay")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(gateway.addr).await.is_err());
}
