//! Fuzzes the ECS response-body parser and everything downstream of it: sanitizing, classifying
//! and mapping to a gRPC status must never panic, and no message may keep an echoed string to sign.
//! The HTTP status and the body come from separate inputs, so every status meets every body.
#![no_main]

use ecs_gateway::aliyun::error::{ApiError, EcsError, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (http_status, body) = input;
    let Some(parsed) = parse_body(body) else {
        let _ = ecs_gateway::api::status::from_ecs_error(&EcsError::Malformed {
            http_status,
            request_id: None,
        });
        return;
    };
    if let Some(message) = &parsed.message {
        assert!(!message.to_ascii_lowercase().contains("string to sign"));
    }
    let error = EcsError::Api(ApiError {
        http_status,
        code: parsed.code.unwrap_or_default(),
        message: parsed.message.unwrap_or_default(),
        request_id: parsed.request_id,
        host_id: parsed.host_id,
        recommend: parsed.recommend,
        retry_after: None,
    });
    let _ = ecs_gateway::api::status::from_ecs_error(&error);
});
