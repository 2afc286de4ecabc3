//! A scenario that exercises success, a rejected signature and a dead upstream while capturing logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ecs_gateway::aliyun::Credential;
use ecs_gateway::simulator::SimulatorConfig;
use ecs_gateway::testing::observe::{LogFormat, init_with};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use super::{Gateway, ecs_client, request, start_simulator};

/// Log output kept in memory.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Installs a global subscriber at `filter` in `format` writing here; once per test binary.
    pub fn install(format: LogFormat, filter: &str) -> Self {
        let capture = Capture::default();
        init_with(format, EnvFilter::new(filter), capture.clone());
        capture
    }

    /// The one capture of this test binary, installed by the first test that asks (a process
    /// has one global subscriber, so tests in one binary share it).
    pub fn shared(format: LogFormat, filter: &str) -> Self {
        static SHARED: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Self::install(format, filter)).clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub const ID: &str = "STS.LogTestKeyId";
const SECRET: &str = "log-test-secret-value-9f8e7d";
const TOKEN: &str = "log-test-sts-token-CAIS1234";

/// Installs a TRACE-level global subscriber in `format`, runs the scenario, returns (logs, request id).
pub async fn run_scenario(format: LogFormat) -> (String, String) {
    let capture = Capture::install(format, "trace");

    let credential = Credential::new(ID, SECRET, Some(TOKEN.into()));
    let (url, _sim) = start_simulator(SimulatorConfig::with_credential(credential.clone())).await;

    // Success, through the real signer and the simulator.
    let ok_gateway = Gateway::start(ecs_client(&url, credential)).await;
    let answer = ok_gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0003", &[]))
        .await
        .unwrap();
    let request_id = answer.get_ref().request_id.clone();

    // SignatureDoesNotMatch: the simulator echoes the string to sign, as ECS does.
    let wrong = Credential::new(ID, "a-wrong-secret", Some(TOKEN.into()));
    let bad_gateway = Gateway::start(ecs_client(&url, wrong)).await;
    let status = bad_gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0004", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);

    // Connection refused: reqwest's error would carry the signed URL.
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let dead_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let dead_gateway = Gateway::start(ecs_client(
        &dead_url,
        Credential::new(ID, SECRET, Some(TOKEN.into())),
    ))
    .await;
    let status = dead_gateway
        .client
        .clone()
        .stop_invocation(request("cn-hangzhou", "t-demo0005", &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        !status.message().contains("Signature"),
        "{}",
        status.message()
    );

    (capture.text(), request_id)
}

/// Fails if any secret-bearing string appears in `logs`.
pub fn assert_no_secrets(logs: &str) {
    for leak in [
        SECRET,
        TOKEN,
        "Signature=",
        "SignatureNonce=",
        "AccessKeyId=",
        "string to sign",
        "a-wrong-secret",
        // V3's Authorization value and its canonical request's signed-header line.
        "Credential=",
        "ACS3-HMAC-SHA256 ",
        "x-acs-security-token:",
    ] {
        assert!(!logs.contains(leak), "{leak:?} appears in the logs");
    }
    // TRACE really was on: the HTTP stack logged too, so its output was searched as well.
    assert!(
        logs.lines().count() > 20,
        "suspiciously few log lines: {logs}"
    );
    assert!(
        logs.contains("the gateway's own setup failed this call"),
        "credential failures are logged at error level"
    );
}
