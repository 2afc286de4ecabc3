//! Fuzzes what an ECS answer means (`aliyun::response::interpret`, the body parser under it) and
//! everything downstream: classifying and mapping to a gRPC status must never panic, no message may
//! keep an echoed string to sign, and no secret of the request may come back out.
//! The HTTP status and the body come from separate inputs, so every status meets every body.
#![no_main]

use ecs_gateway::aliyun::EcsError;
use ecs_gateway::testing::aliyun::{Secrets, interpret};
use libfuzzer_sys::fuzz_target;

const SECRETS: Secrets<'static> = Secrets {
    values: ["LTAIfuzzKey", "fuzz-secret-value", "fuzz-token", "ZnV6elNpZ25hdHVyZQ=="],
    signed: "AccessKeyId=LTAIfuzzKey&Signature=ZnV6elNpZ25hdHVyZQ%3D%3D",
};

fuzz_target!(|input: (u16, &[u8])| {
    let (http_status, body) = input;
    let answer = interpret(http_status, &http::HeaderMap::new(), Some(body), SECRETS);
    if let Err(EcsError::Api(error)) = &answer {
        assert!(!error.message.to_ascii_lowercase().contains("string to sign"));
        for secret in ["fuzz-secret-value", "fuzz-token"] {
            assert!(!error.message.contains(secret) && !error.code.contains(secret));
        }
    }
    if let Err(error) = &answer {
        let _ = ecs_gateway::testing::api::from_ecs_error(error);
    }
});
