//! The embedded ECS simulator: a faithful stand-in for the ECS RPC endpoint (StopInvocation and
//! DescribeInvocations),
//! used by `--dev`, by the integration tests and as the upstream of load tests.

pub(crate) mod answer;
pub(crate) mod describe;
pub(crate) mod faults;
pub(crate) mod judge;
pub(crate) mod keyring;
pub(crate) mod metadata;
pub(crate) mod quota;
pub(crate) mod state;
pub(crate) mod sts;

pub use faults::Faults;
pub use quota::ThrottleHeaders;
pub use state::{ExecutionStatus, Invocation};

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::aliyun::credentials::credential::Credential;
use crate::aliyun::signer::v3;
use answer::Answer;
use faults::{FaultState, Injected};
use judge::{Judge, V3Request};
use keyring::Keyring;
use metadata::Metadata;
use state::World;
use sts::StsSettings;

/// The AccessKey ID the simulator accepts when none is configured.
pub const DEMO_ACCESS_KEY_ID: &str = "LTAIdemoGatewayKey";
/// The AccessKey secret the simulator accepts when none is configured (not a real secret).
pub const DEMO_ACCESS_KEY_SECRET: &str = "demo-secret-not-for-production";
/// Largest request body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The credential requests must be signed with.
    pub credential: Credential,
    /// Faults to inject.
    pub faults: Faults,
    /// How long a nonce stays "used".
    pub nonce_window: Duration,
    /// Lifetime of the temporary credentials the STS and metadata faces issue.
    pub sts_lifetime: Duration,
    /// The OIDC token `AssumeRoleWithOIDC` requires; any when `None`.
    pub oidc_token: Option<String>,
    /// The RAM role the metadata face says the instance has.
    pub ecs_role: String,
    /// How long a running execution takes to go from Stopping to Stopped after a stop.
    pub stop_delay: Duration,
}

/// The RAM role the simulated instance has.
pub const DEMO_ECS_ROLE: &str = "EcsGatewayRole";

/// The demo credential: what `--dev` signs with and the simulator accepts when none is configured.
pub fn demo_credential() -> Credential {
    Credential::new(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, None)
}

impl SimulatorConfig {
    /// Demo credentials and no faults.
    pub fn demo() -> Self {
        Self::with_credential(demo_credential())
    }

    /// `credential` and no faults.
    pub fn with_credential(credential: Credential) -> Self {
        Self {
            credential,
            faults: Faults::default(),
            nonce_window: Duration::from_secs(15 * 60),
            sts_lifetime: Duration::from_secs(3600),
            oidc_token: None,
            ecs_role: DEMO_ECS_ROLE.to_owned(),
            stop_delay: state::DEFAULT_STOP_DELAY,
        }
    }
}

/// A running simulator's shared state; clones are cheap.
#[derive(Clone, Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    judge: Judge,
    world: World,
    faults: FaultState,
    requests: AtomicU64,
    /// Authenticated DescribeInvocations calls, however many `calls` keeps.
    reads: AtomicU64,
    sts: StsSettings,
    metadata: Metadata,
    credential_faces_down: AtomicBool,
    reads_throttled: AtomicBool,
    /// The next this many StopInvocation calls are throttled, with this `x-acs-retry-after`.
    stops_throttled: Mutex<(u32, Duration)>,
    quotas: quota::Quotas,
    calls: Mutex<Vec<Call>>,
}

/// One authenticated ECS call the simulator received, for tests to count and inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The action, e.g. `StopInvocation`.
    pub action: String,
    /// The invoke ID named, if any.
    pub invoke_id: Option<String>,
    /// The `InstanceId.N` values, in order.
    pub instance_ids: Vec<String>,
}

/// The most calls kept; older ones are dropped, so a long-running simulator stays small.
const MAX_CALLS_KEPT: usize = 10_000;

/// A closed connection instead of an answer (fault injection).
#[derive(Debug, thiserror::Error)]
#[error("connection reset by fault injection")]
struct ResetFault;

impl Simulator {
    /// A simulator with the seeded demo world.
    pub fn new(config: SimulatorConfig) -> Self {
        let world = World::seeded(config.nonce_window);
        world.set_stop_delay(config.stop_delay);
        Self {
            shared: Arc::new(Shared {
                judge: Judge::new(Keyring::new(config.credential)),
                world,
                faults: FaultState::new(config.faults),
                requests: AtomicU64::new(0),
                reads: AtomicU64::new(0),
                sts: StsSettings {
                    lifetime: config.sts_lifetime,
                    oidc_token: config.oidc_token,
                },
                metadata: Metadata::new(config.ecs_role, false),
                credential_faces_down: AtomicBool::new(false),
                reads_throttled: AtomicBool::new(false),
                stops_throttled: Mutex::new((0, Duration::ZERO)),
                quotas: quota::Quotas::default(),
                calls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The invocations and nonces, for tests to inspect or seed.
    pub fn world(&self) -> &World {
        &self.shared.world
    }

    /// ECS requests received so far, faulted ones included (STS and metadata ones are not counted).
    pub fn requests_received(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Authenticated DescribeInvocations calls received so far, all of them.
    pub fn reads_received(&self) -> u64 {
        self.shared.reads.load(Ordering::Relaxed)
    }

    /// The authenticated ECS calls received so far (the latest 10,000), in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes every DescribeInvocations answer `Throttling.User` (`true`), as ECS does when the
    /// account's quota for it is spent, or answer again (`false`).
    pub fn set_reads_throttled(&self, throttled: bool) {
        self.shared
            .reads_throttled
            .store(throttled, Ordering::Relaxed);
    }

    /// Answers the next `count` StopInvocation calls `Throttling.User` with `x-acs-retry-after`
    /// of `retry_after`, as ECS does when the account's minute for the action is spent.
    pub fn throttle_stops(&self, count: u32, retry_after: Duration) {
        *self
            .shared
            .stops_throttled
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (count, retry_after);
    }

    /// Gives `action` a quota of `calls` per `period` (ECS's is a minute; tests may shorten it),
    /// counted from now: a call past it is answered `Throttling.User` until the window ends,
    /// saying how long in `headers`' style.
    pub fn set_quota(&self, action: &str, calls: u32, period: Duration, headers: ThrottleHeaders) {
        self.shared.quotas.set(action, calls, period, headers);
    }

    /// Calls of `action` answered `Throttling.User` because its quota was spent.
    pub fn throttled_calls(&self, action: &str) -> u64 {
        self.shared.quotas.throttled(action)
    }

    /// Whether this call is a StopInvocation to throttle (counting it), and for how long.
    fn stop_throttled(&self, params: &[(String, String)]) -> Option<Duration> {
        let is_stop = params
            .iter()
            .any(|(k, v)| k == "Action" && v == crate::aliyun::request::ACTION);
        let mut left = self
            .shared
            .stops_throttled
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (is_stop && left.0 > 0).then(|| {
            left.0 -= 1;
            left.1
        })
    }

    /// The keys accepted and issued.
    pub fn keyring(&self) -> &Keyring {
        &self.shared.judge.keyring
    }

    /// Makes the STS and metadata faces answer 503 (`true`) or work again (`false`).
    pub fn set_credential_faces_down(&self, down: bool) {
        self.shared
            .credential_faces_down
            .store(down, Ordering::Relaxed);
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let _ = stream.set_nodelay(true);
            let sim = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let sim = sim.clone();
                    async move { sim.handle(req).await }
                });
                // Errors here are client disconnects and injected resets: nothing to report.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ResetFault> {
        let shared = &*self.shared;
        let down = shared.credential_faces_down.load(Ordering::Relaxed);
        if request.uri().path().starts_with("/latest/") {
            return Ok(self.metadata(&request, down));
        }
        let method = request.method().as_str().to_owned();
        let mut params: Vec<(String, String)> = request
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        // V3 moves the signature, action and version to headers; V1 keeps them in parameters.
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let v3 = headers.iter().any(|(n, _)| n == v3::AUTHORIZATION);
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return Ok(respond(
                    413,
                    Some(("InvalidParameter", "The request body is too large.")),
                    None,
                ));
            }
        };
        let body_sha256 = v3::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body));
        if is_form {
            params.extend(form_urlencoded::parse(&body).into_owned());
        }
        let action = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.as_str());
        if action.is_some_and(|a| sts::ACTIONS.contains(&a)) {
            return Ok(self.sts(&method, &params, down));
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(delay) = shared.faults.latency() {
            tokio::time::sleep(delay).await;
        }
        let region = params
            .iter()
            .find(|(k, _)| k == "RegionId")
            .map(|(_, v)| v.clone());
        let authenticated = if v3 {
            let request = V3Request {
                method: &method,
                params: &params,
                headers: &headers,
                body_sha256: &body_sha256,
            };
            shared
                .judge
                .authenticate_v3(&request, SystemTime::now(), &shared.world)
                .map(|(action, version)| {
                    params.push(("Action".to_owned(), action));
                    params.push(("Version".to_owned(), version));
                })
        } else {
            shared
                .judge
                .authenticate(&method, &params, SystemTime::now(), &shared.world)
        };
        let is_read = authenticated.is_ok() && self.record(&params);
        let action = params
            .iter()
            .rev()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.as_str());
        if authenticated.is_ok()
            && let Some(headers) = action.and_then(|a| shared.quotas.charge(a))
        {
            return Ok(throttled(region.as_deref(), headers));
        }
        if authenticated.is_ok()
            && let Some(wait) = self.stop_throttled(&params)
        {
            let ms = HeaderValue::from_str(&wait.as_millis().to_string()).ok();
            return Ok(throttled(
                region.as_deref(),
                ms.map(|ms| ("x-acs-retry-after", ms)),
            ));
        }
        let answer = match authenticated {
            Err(answer) => answer,
            Ok(()) if is_read && shared.reads_throttled.load(Ordering::Relaxed) => Answer::Error {
                status: 400,
                code: "Throttling.User",
                message: "Request was denied due to user flow control.".into(),
            },
            Ok(()) => match shared.faults.roll() {
                Injected::Reset => return Err(ResetFault),
                Injected::InternalError => Answer::Error {
                    status: 500,
                    code: "InternalError.Dispatch",
                    message: "An error occurred when you dispatched the request. Try again later."
                        .into(),
                },
                Injected::Unavailable => Answer::Error {
                    status: 503,
                    code: "ServiceUnavailable",
                    message: "The request has failed due to a temporary failure of the server."
                        .into(),
                },
                Injected::Throttled => Answer::Error {
                    status: 400,
                    code: "Throttling.User",
                    message: "Request was denied due to user flow control.".into(),
                },
                Injected::None => {
                    if let Some(id) = key_id(&params, &headers) {
                        shared.judge.keyring.note_accepted(id);
                    }
                    shared.judge.act(&params, &shared.world)
                }
            },
        };
        Ok(match &answer {
            Answer::Ok => respond(200, None, region.as_deref()),
            Answer::Json(fields) => listing(fields),
            Answer::Error {
                status,
                code,
                message,
            } => respond(*status, Some((code, message)), region.as_deref()),
        })
    }
}

impl Simulator {
    /// Records an authenticated call; whether it is a DescribeInvocations.
    fn record(&self, params: &[(String, String)]) -> bool {
        let get = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let action = get("Action").unwrap_or_default();
        let is_read = action == crate::aliyun::request::DESCRIBE_ACTION;
        if is_read {
            self.shared.reads.fetch_add(1, Ordering::Relaxed);
        }
        let call = Call {
            action,
            invoke_id: get("InvokeId"),
            instance_ids: params
                .iter()
                .filter(|(k, _)| k.starts_with("InstanceId."))
                .map(|(_, v)| v.clone())
                .collect(),
        };
        let mut calls = self.shared.calls.lock().unwrap_or_else(|p| p.into_inner());
        if calls.len() >= MAX_CALLS_KEPT {
            calls.remove(0);
        }
        calls.push(call);
        is_read
    }
}

/// The AccessKeyId a request was signed with: V1's parameter, or V3's `Credential=`.
fn key_id<'a>(params: &'a [(String, String)], headers: &'a [(String, String)]) -> Option<&'a str> {
    if let Some((_, id)) = params.iter().find(|(k, _)| k == "AccessKeyId") {
        return Some(id);
    }
    let (_, authorization) = headers.iter().find(|(n, _)| n == v3::AUTHORIZATION)?;
    authorization
        .split([' ', ','])
        .find_map(|f| f.strip_prefix("Credential="))
}

impl Simulator {
    fn metadata(&self, request: &Request<Incoming>, down: bool) -> Response<Full<Bytes>> {
        if down {
            return plain(503, "service unavailable".into());
        }
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let shared = &*self.shared;
        let (status, body) = shared.metadata.answer(
            request.method().as_str(),
            request.uri().path(),
            header("x-aliyun-ecs-metadata-token"),
            header("x-aliyun-ecs-metadata-token-ttl-seconds"),
            &shared.judge.keyring,
            shared.sts.lifetime,
        );
        plain(status, body)
    }

    fn sts(&self, method: &str, params: &[(String, String)], down: bool) -> Response<Full<Bytes>> {
        let shared = &*self.shared;
        if down {
            return respond(
                503,
                Some((
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )),
                None,
            );
        }
        let signed = params
            .iter()
            .any(|(k, v)| k == "Action" && v == "AssumeRole");
        // AssumeRole is signed like any RPC call; AssumeRoleWithOIDC carries a token instead.
        let judged = if signed {
            shared
                .judge
                .authenticate(method, params, SystemTime::now(), &shared.world)
        } else {
            Ok(())
        };
        if let Err(Answer::Error {
            status,
            code,
            message,
        }) = judged
        {
            return respond(status, Some((code, &message)), None);
        }
        match sts::act(params, &shared.judge.keyring, &shared.sts) {
            Ok(body) => json_response(200, body.to_string()),
            Err(Answer::Error {
                status,
                code,
                message,
            }) => respond(status, Some((code, &message)), None),
            Err(Answer::Ok | Answer::Json(_)) => {
                respond(500, Some(("InternalError", "unreachable")), None)
            }
        }
    }
}

fn plain(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn json_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = plain(status, body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    response
}

/// ECS's JSON body: `RequestId` always; the rest on errors.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recommend: Option<String>,
}

/// ECS's answer to a call past the account's flow control, with `headers` saying how long.
fn throttled(
    region: Option<&str>,
    headers: impl IntoIterator<Item = (&'static str, HeaderValue)>,
) -> Response<Full<Bytes>> {
    let mut answer = respond(
        400,
        Some((
            "Throttling.User",
            "Request was denied due to user flow control.",
        )),
        region,
    );
    for (name, value) in headers {
        answer.headers_mut().insert(name, value);
    }
    answer
}

fn respond(
    status: u16,
    error: Option<(&str, &str)>,
    region: Option<&str>,
) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let body = match error {
        None => Body {
            request_id: &request_id,
            host_id: None,
            code: None,
            message: None,
            recommend: None,
        },
        Some((code, message)) => Body {
            request_id: &request_id,
            host_id: Some(match region {
                Some(r) if state::REGIONS.contains(&r) => format!("ecs.{r}.aliyuncs.com"),
                _ => "ecs.aliyuncs.com".to_owned(),
            }),
            code: Some(code),
            message: Some(message),
            recommend: Some(format!(
                "https://api.aliyun.com/troubleshoot?q={code}&product=Ecs&requestId={request_id}"
            )),
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(json)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-acs-request-id", value);
    }
    response
}

/// A 200 answer with a RequestId and `fields`.
fn listing(fields: &serde_json::Map<String, serde_json::Value>) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let mut body = serde_json::Map::with_capacity(fields.len() + 1);
    body.insert("RequestId".into(), request_id.clone().into());
    body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut response = json_response(200, serde_json::Value::Object(body).to_string());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-acs-request-id", value);
    }
    response
}

/// Serves a simulator built from `config` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: SimulatorConfig,
    shutdown: impl Future<Output = ()>,
) {
    Simulator::new(config).serve(listener, shutdown).await
}
