//! Criterion benchmarks of the per-call hot path: validate, build parameters, sign, parse, map.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ecs_gateway::aliyun::Credential;
use ecs_gateway::aliyun::CredentialSupply;
use ecs_gateway::aliyun::signer::{SigningKey, canonicalized_query, sign_query, v3};
use ecs_gateway::aliyun::{ApiError, EcsError};
use ecs_gateway::pb::StopInvocationRequest;
use ecs_gateway::testing::aliyun::parse_body;
use ecs_gateway::testing::aliyun::{Action as _, Param};
use ecs_gateway::testing::api::{from_ecs_error, stop_invocation};

fn wire_request(instances: usize) -> StopInvocationRequest {
    StopInvocationRequest {
        region_id: "cn-hangzhou".into(),
        invoke_id: "t-7d2a745b412b4601b2d47f6a768d".into(),
        instance_ids: (0..instances)
            .map(|i| format!("i-bp67acfmxazb4p{i:04}"))
            .collect(),
        owner_id: Some(1234567890),
        ..Default::default()
    }
}

fn common_params<'a>() -> Vec<Param<'a>> {
    [
        ("Action", "StopInvocation"),
        ("Version", "2014-05-26"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", "LTAI5tExampleAccessKey"),
        ("SignatureNonce", "c3b5a1e0-5d3f-4a8e-9f1e-0d7c2b6a9e41"),
        ("Timestamp", "2025-01-02T03:04:05Z"),
    ]
    .map(|(k, v)| (k.into(), v.into()))
    .into()
}

fn hot_path(c: &mut Criterion) {
    let one = wire_request(1);
    let fifty = wire_request(50);
    c.bench_function("validate/1_instance", |b| {
        b.iter(|| stop_invocation(black_box(&one)))
    });
    c.bench_function("validate/50_instances", |b| {
        b.iter(|| stop_invocation(black_box(&fifty)))
    });

    let typed = stop_invocation(&one).unwrap();
    c.bench_function("params/build", |b| {
        b.iter(|| {
            let mut params = common_params();
            black_box(&typed).push_params(&mut params);
            params
        })
    });

    let mut params = common_params();
    typed.push_params(&mut params);
    let key = SigningKey::new("testsecret");
    c.bench_function("sign/canonicalize", |b| {
        b.iter(|| canonicalized_query(black_box(&params)))
    });
    c.bench_function("sign/full", |b| {
        b.iter(|| sign_query("POST", black_box(&params), &key))
    });
    c.bench_function("sign/key_per_call_baseline", |b| {
        // What keying the HMAC on every call would cost: the reason the key is built once.
        b.iter(|| {
            sign_query(
                "POST",
                black_box(&params),
                &SigningKey::new(black_box("testsecret")),
            )
        })
    });

    // V3 against V1 in the same run, each as an attempt builds and signs it.
    let v1_key = SigningKey::new("testsecret");
    let v3_key = v3::SigningKey::new("testsecret");
    for (label, request) in [("1_instance", &one), ("50_instances", &fifty)] {
        let typed = stop_invocation(request).unwrap();
        c.bench_function(&format!("sign_v1/{label}"), |b| {
            b.iter(|| {
                let mut params = common_params();
                black_box(&typed).push_params(&mut params);
                sign_query("POST", &params, &v1_key)
            })
        });
        c.bench_function(&format!("sign_v3/{label}"), |b| {
            b.iter(|| {
                let mut params = Vec::with_capacity(6 + typed.instance_ids.len());
                black_box(&typed).push_params(&mut params);
                let headers = [
                    ("host", "ecs.cn-hangzhou.aliyuncs.com".to_owned()),
                    (v3::ACTION, "StopInvocation".to_owned()),
                    (v3::VERSION, "2014-05-26".to_owned()),
                    (v3::DATE, "2025-01-02T03:04:05Z".to_owned()),
                    (v3::NONCE, "c3b5a1e0-5d3f-4a8e-9f1e-0d7c2b6a9e41".to_owned()),
                    (v3::CONTENT_SHA256, v3::EMPTY_PAYLOAD_SHA256.to_owned()),
                ];
                v3::sign(
                    "POST",
                    &params,
                    &headers,
                    v3::EMPTY_PAYLOAD_SHA256,
                    "LTAI5tExampleAccessKey",
                    &v3_key,
                )
            })
        });
    }

    // What every attempt now pays to sign with the credential current at that moment.
    let supply = CredentialSupply::fixed(
        Credential::new("STS.key", "testsecret", Some("token".into()))
            .expiring_at(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)),
    );
    c.bench_function("credential/current", |b| {
        b.iter(|| black_box(supply.current().is_ok()))
    });

    // What metrics add to one call that makes one upstream attempt.
    use ecs_gateway::testing::observe::Rpc;
    let metrics = ecs_gateway::testing::observe::Metrics::new(None);
    c.bench_function("metrics/one_call", |b| {
        b.iter(|| {
            let in_flight = metrics.call_started(Rpc::StopInvocation);
            metrics.upstream_attempt(
                "StopInvocation",
                Some(200),
                None,
                std::time::Duration::from_micros(300),
            );
            metrics.call_handled(
                Rpc::StopInvocation,
                tonic::Code::Ok,
                std::time::Duration::from_micros(400),
            );
            drop(in_flight);
        })
    });

    let success = br#"{"RequestId":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"}"#;
    let error = include_bytes!("../tests/data/ecs/invalid-invoke-id-not-found.json");
    c.bench_function("parse/success", |b| {
        b.iter(|| parse_body(black_box(success)))
    });
    c.bench_function("parse/error", |b| b.iter(|| parse_body(black_box(error))));

    let failure = EcsError::Api(ApiError {
        http_status: 404,
        code: "InvalidInvokeId.NotFound".into(),
        message: "The specified invoke ID does not exist.".into(),
        request_id: Some("540CFF28-407A-40B5-B6A5-74B000000005".into()),
        host_id: Some("ecs.aliyuncs.com".into()),
        recommend: Some("https://api.aliyun.com/troubleshoot?q=InvalidInvokeId.NotFound".into()),
        retry_after: None,
        retry_after_sent: false,
    });
    c.bench_function("map/error_status", |b| {
        b.iter(|| from_ecs_error(black_box(&failure)))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
