//! The simulator judges raw signed requests the way ECS does and answers in ECS's body shape.
//!
//! It verifies signatures with the gateway's own signer, and these tests sign with it too, so
//! their agreement on a signature is by construction: the oracle for signing is elsewhere, in
//! Alibaba's SDKs (`tests/signature_vectors.rs`, the SDK vectors in `tests/data/`, and
//! `sdk_interop.rs`, which sends Alibaba's Python SDKs against the simulator).

use std::time::{Duration, SystemTime};

use crate::support::{start_simulator, test_credential};
use ecs_gateway::aliyun::Credential;
use ecs_gateway::aliyun::signer::{SigningKey, sign_query};
use ecs_gateway::simulator::Faults;
use ecs_gateway::simulator::SimulatorConfig;

/// A request's parameters, editable before signing.
struct Call {
    params: Vec<(String, String)>,
    method: &'static str,
    secret: String,
}

impl Call {
    fn new(invoke_id: &str) -> Self {
        let c = test_credential();
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let params = [
            ("Action", "StopInvocation"),
            ("Version", "2014-05-26"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", c.access_key_id()),
            ("SignatureNonce", &uuid::Uuid::new_v4().to_string()),
            ("Timestamp", &now),
            ("RegionId", "cn-hangzhou"),
            ("InvokeId", invoke_id),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        Self {
            params,
            method: "POST",
            secret: c.access_key_secret().to_owned(),
        }
    }

    fn set(mut self, name: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self
    }

    async fn send(&self, base: &str) -> (u16, serde_json::Value, String) {
        let signed = sign_query(self.method, &self.params, &SigningKey::new(&self.secret));
        let url = format!("{base}?{}", signed.as_str());
        let client = reqwest::Client::new();
        let request = if self.method == "GET" {
            client.get(url)
        } else {
            client.post(url)
        };
        let response = request.send().await.expect("simulator answers");
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body");
        (status, body, content_type)
    }
}

async fn simulator() -> String {
    start_simulator(SimulatorConfig::with_credential(test_credential()))
        .await
        .0
}

async fn expect_error(base: &str, call: Call, status: u16, code: &str) -> serde_json::Value {
    let (got_status, body, _) = call.send(base).await;
    assert_eq!(
        (got_status, body["Code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_good_request_gets_ecs_success_shape() {
    let base = simulator().await;
    let (status, body, content_type) = Call::new("t-demo0001").send(&base).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json;charset=utf-8");
    let id = body["RequestId"].as_str().unwrap();
    assert_eq!(id, id.to_uppercase());
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "success has only RequestId: {body}"
    );
}

#[tokio::test]
async fn errors_have_ecs_body_shape() {
    let base = simulator().await;
    let body = expect_error(
        &base,
        Call::new("t-unknown"),
        404,
        "InvalidInvokeId.NotFound",
    )
    .await;
    assert_eq!(body["Message"], "The specified invoke ID does not exist.");
    assert_eq!(body["HostId"], "ecs.cn-hangzhou.aliyuncs.com");
    let id = body["RequestId"].as_str().unwrap();
    assert_eq!(
        body["Recommend"],
        format!(
            "https://api.aliyun.com/troubleshoot?q=InvalidInvokeId.NotFound&product=Ecs&requestId={id}"
        )
    );
}

#[tokio::test]
async fn get_and_form_body_requests_are_accepted_too() {
    let base = simulator().await;
    let mut get = Call::new("t-demo0002");
    get.method = "GET";
    assert_eq!(get.send(&base).await.0, 200);

    // POST with InvokeId in a form body, signed together with the query.
    let call = Call::new("t-demo0003");
    let signed = sign_query("POST", &call.params, &SigningKey::new(&call.secret));
    let query: Vec<&str> = signed
        .as_str()
        .split('&')
        .filter(|p| !p.starts_with("InvokeId="))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{base}?{}", query.join("&")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("InvokeId=t-demo0003")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn authentication_failures_use_ecs_codes() {
    let base = simulator().await;
    let mut wrong = Call::new("t-demo0001");
    wrong.secret = "not-the-secret".into();
    let body = expect_error(&base, wrong, 400, "SignatureDoesNotMatch").await;
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:POST&%2F&AccessKeyId%3D"),
        "{body}"
    );

    expect_error(
        &base,
        Call::new("t-demo0001").set("AccessKeyId", "LTAIunknown"),
        404,
        "InvalidAccessKeyId.NotFound",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("Timestamp", "2016-02-23T12:46:24Z"),
        400,
        "InvalidTimeStamp.Expired",
    )
    .await;
    let future =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(16 * 60))
            .to_string();
    expect_error(
        &base,
        Call::new("t-demo0001").set("Timestamp", &future),
        400,
        "InvalidTimeStamp.Expired",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("Timestamp", "yesterday"),
        400,
        "InvalidTimeStamp.Format",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("SignatureMethod", "HMAC-SHA256"),
        400,
        "InvalidSignatureMethod",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").without("SignatureNonce"),
        400,
        "MissingParameter",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").without("Timestamp"),
        400,
        "MissingParameter",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("Action", "DescribeRegions"),
        404,
        "InvalidAction.NotFound",
    )
    .await;

    let once = Call::new("t-demo0001");
    assert_eq!(once.send(&base).await.0, 200);
    expect_error(&base, once, 400, "SignatureNonceUsed").await;
}

#[tokio::test]
async fn sts_tokens_are_checked() {
    let sts = Credential::new("STS.simKey", "sts-secret", Some("the-token".into()));
    let (base, _) = start_simulator(SimulatorConfig::with_credential(sts.clone())).await;
    let call = |token: Option<&str>| {
        let mut c = Call::new("t-demo0001").set("AccessKeyId", "STS.simKey");
        c.secret = "sts-secret".into();
        match token {
            Some(t) => c.set("SecurityToken", t),
            None => c,
        }
    };
    assert_eq!(call(Some("the-token")).send(&base).await.0, 200);
    expect_error(
        &base,
        call(Some("other-token")),
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    )
    .await;
    expect_error(&base, call(None), 400, "MissingSecurityToken").await;
}

#[tokio::test]
async fn the_action_is_judged_after_authentication() {
    let base = simulator().await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("RegionId", "mars-north-1"),
        404,
        "InvalidRegionId.NotFound",
    )
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001").set("RegionId", "cn-nanjing"),
        400,
        "RegionId.ApiNotSupported",
    )
    .await;
    expect_error(&base, Call::new("t-demo0009"), 403, "Operation.Forbidden").await;
    expect_error(
        &base,
        Call::new("t-demo0001").without("InvokeId"),
        400,
        "MissingParameter",
    )
    .await;
    let mut many = Call::new("t-demo0001");
    for n in 1..=51 {
        many = many.set(&format!("InstanceId.{n}"), &format!("i-{n}"));
    }
    expect_error(&base, many, 403, "InstanceIds.ExceedLimit").await;
}

#[tokio::test]
async fn injected_faults_answer_as_configured() {
    let config = |faults: Faults| SimulatorConfig {
        faults,
        ..SimulatorConfig::with_credential(test_credential())
    };
    let (base, _) = start_simulator(config(Faults {
        error_503_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    expect_error(&base, Call::new("t-demo0001"), 503, "ServiceUnavailable").await;
    let (base, _) = start_simulator(config(Faults {
        error_500_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    expect_error(
        &base,
        Call::new("t-demo0001"),
        500,
        "InternalError.Dispatch",
    )
    .await;
    let (base, _) = start_simulator(config(Faults {
        throttle_rps: Some(1),
        ..Faults::default()
    }))
    .await;
    assert_eq!(Call::new("t-demo0001").send(&base).await.0, 200);
    expect_error(&base, Call::new("t-demo0001"), 400, "Throttling.User").await;

    let (base, _) = start_simulator(config(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let call = Call::new("t-demo0001");
    let signed = sign_query("POST", &call.params, &SigningKey::new(&call.secret));
    let error = reqwest::Client::new()
        .post(format!("{base}?{}", signed.as_str()))
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout() && !error.is_status(), "{error:?}");
}
