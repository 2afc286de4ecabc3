//! The ECS client: builds StopInvocation and DescribeInvocations requests, signs them, sends each
//! with retries within the caller's deadline, and reads ECS's success and error bodies. It knows
//! nothing of gRPC.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

use super::credentials::credential::Credential;
use super::credentials::refresh::CredentialSupply;
use super::dns::{DnsConfig, HickoryResolver};
use super::endpoint::Endpoint;
use super::error::{EcsError, ErrorClass, NotAdmitted, TransportKind};
use super::invocation::{self, InvocationState, Page, ResultsPage};
use super::request::{
    API_VERSION, Action, DescribeInvocation, InvocationResults, ListInvocations, Param,
    StopInvocation,
};
use super::response::{self, Secrets};
use super::retry::{self, RetryPolicy, Trail};
use super::retry_budget::{RetryBudget, retry_budget};
use super::signer::{self, SignatureVersion, v3};
use super::tls::{self, EmptyTrustStore};
use super::transport::{self, Exchange, Transport, TransportSettings};

/// The `User-Agent` the gateway sends.
pub(crate) const USER_AGENT_VALUE: &str = concat!("ecs-gateway/", env!("CARGO_PKG_VERSION"));

/// The wall clock used for `Timestamp`; injectable so tests can pin it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The source of `SignatureNonce` values; injectable so tests can pin them.
pub trait NonceSource: Send + Sync {
    /// A value never used before.
    fn nonce(&self) -> String;
}

/// UUID v4 nonces, as Alibaba's SDKs use.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidNonce;

impl NonceSource for UuidNonce {
    fn nonce(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// Whether an attempt may go to ECS now: the account's quota, kept above this module.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Takes one slot for `attempt`.
    fn admit<'a>(
        &'a self,
        attempt: Attempt<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), NotAdmitted>>;

    /// ECS answered `attempt` that the account's quota for its action is spent, for `asked` (or
    /// to ECS's next minute when it did not say).
    fn throttled<'a>(
        &'a self,
        attempt: Attempt<'a>,
        asked: Option<Duration>,
    ) -> futures_util::future::BoxFuture<'a, ()>;
}

/// Who an attempt is charged to: an action, by an account, in a region.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The account: see `CredentialSupply::principal`.
    pub principal: &'a str,
    /// The region.
    pub region: &'a str,
    /// The action.
    pub action: &'static str,
    /// Work no caller waits on (a wait's later polls), which yields the budget to callers.
    pub background: bool,
}

/// Where every call's attempts are reported once it is over: metrics, kept above this module.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// `action` was called with these attempts.
    fn called(&self, action: &'static str, trail: &Trail);
    /// A read of invocations that reached ECS, by what it was for.
    fn read(&self, kind: ReadKind);
}

/// What a read of invocations was for: the quota counts them alike; the metrics tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// A caller waits on it: GetInvocation, a wait's first read.
    Caller,
    /// A wait's later poll of one invocation.
    Poll,
    /// One page of a listing of a region's invocations in one status.
    Listing,
}

impl ReadKind {
    /// Every kind, for starting each series at zero.
    pub const ALL: [Self; 3] = [Self::Caller, Self::Poll, Self::Listing];

    /// The kind as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Poll => "poll",
            Self::Listing => "listing",
        }
    }
}

/// Timeouts and retry settings of the client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where requests go.
    pub endpoint: Endpoint,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for one attempt, response body included.
    pub attempt_timeout: Duration,
    /// Which failures are retried and how often.
    pub retry: RetryPolicy,
    /// Idle keep-alive connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Where upstream host names are resolved.
    pub dns: DnsConfig,
    /// The share of calls that retries may add, process-wide (0.2 = 20%).
    pub retry_budget: f64,
    /// How calls are signed.
    pub signature: SignatureVersion,
}

/// What the client draws on besides its settings: the time, nonces, and the quota every attempt
/// must get a slot from. Handles, not settings, so they are passed in.
#[derive(Clone)]
pub struct Sources {
    /// The wall clock for timestamps.
    pub clock: Arc<dyn Clock>,
    /// The nonces.
    pub nonces: Arc<dyn NonceSource>,
    /// The quota every attempt, retries included, must get a slot from; none when unset.
    pub admission: Option<Arc<dyn Admission>>,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            nonces: Arc::new(UuidNonce),
            admission: None,
        }
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::default(),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            pool_max_idle_per_host: 256,
            dns: DnsConfig::System,
            retry_budget: 0.2,
            signature: SignatureVersion::default(),
        }
    }
}

/// ECS accepted the stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// ECS's RequestId.
    pub request_id: String,
    /// Each attempt, the successful one last.
    pub trail: Trail,
}

/// ECS did not accept the stop, and how many attempts it took to find out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The last attempt's failure.
    pub error: EcsError,
    /// Each attempt (none when none started before the deadline).
    pub trail: Trail,
}

/// ECS listed one page of invocations.
#[derive(Debug, Clone)]
pub struct Listed {
    /// ECS's RequestId.
    pub request_id: String,
    /// The invocations on the page, and where the next starts.
    pub page: Page,
}

/// ECS read the invocation.
#[derive(Debug, Clone)]
pub struct Described {
    /// ECS's RequestId.
    pub request_id: String,
    /// The invocation and every instance's status; `None` when ECS lists no such invocation.
    pub invocation: Option<InvocationState>,
    /// Each attempt, the successful one last.
    pub trail: Trail,
}

/// A call as it would be sent, with nothing secret or per-attempt in it: no credential, nonce,
/// time or signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The endpoint host (and port, when not the scheme's default).
    pub host: String,
    /// The action.
    pub action: &'static str,
    /// The API version.
    pub version: &'static str,
    /// The action's own parameters, in the order they are signed.
    pub params: Vec<(String, String)>,
    /// How the call would be signed.
    pub signature: SignatureVersion,
}

/// An answer ECS accepted: its RequestId, HTTP status and body.
struct Answered {
    request_id: String,
    http_status: u16,
    body: Vec<u8>,
}

/// A cheaply clonable ECS client sharing one connection pool.
#[derive(Clone)]
pub struct EcsClient {
    inner: Arc<Inner>,
    observer: Option<Arc<dyn CallObserver>>,
}

struct Inner {
    http: Transport,
    settings: ClientSettings,
    credentials: CredentialSupply,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceSource>,
    admission: Option<Arc<dyn Admission>>,
    budget: RetryBudget,
}

impl std::fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcsClient")
            .field("endpoint", &self.inner.settings.endpoint)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An https:// endpoint with nothing to verify it against.
    #[error(transparent)]
    TrustStore(#[from] EmptyTrustStore),
    /// The system's DNS configuration could not be read.
    #[error("cannot set up DNS resolution (is /etc/resolv.conf readable?): {0}")]
    Dns(String),
}

const ACTION_HEADER: HeaderName = HeaderName::from_static(v3::ACTION);
const VERSION_HEADER: HeaderName = HeaderName::from_static(v3::VERSION);
const DATE_HEADER: HeaderName = HeaderName::from_static(v3::DATE);
const NONCE_HEADER: HeaderName = HeaderName::from_static(v3::NONCE);
const CONTENT_SHA256_HEADER: HeaderName = HeaderName::from_static(v3::CONTENT_SHA256);
const AUTHORIZATION_HEADER: HeaderName = HeaderName::from_static(v3::AUTHORIZATION);
const ACCESS_KEY_ID_HEADER: HeaderName = HeaderName::from_static(v3::ACCESS_KEY_ID);
const SECURITY_TOKEN_HEADER: HeaderName = HeaderName::from_static(v3::SECURITY_TOKEN);

/// A V3 attempt ready to send.
struct V3Attempt {
    /// The URL, with the query that was signed.
    url: String,
    /// The signature.
    signed: v3::SignedRequest,
    /// The headers to send: the signed ones but `host` (the URL's authority), and `Authorization`.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// What an attempt was signed with, for recognizing its echo in an answer.
enum Signature {
    V1(signer::SignedQuery),
    V3(v3::SignedRequest),
}

impl Signature {
    fn signature(&self) -> &str {
        match self {
            Self::V1(signed) => signed.signature(),
            Self::V3(signed) => signed.signature(),
        }
    }

    /// What carries the signature on the wire: V1's query, V3's `Authorization` value.
    fn sent(&self) -> &str {
        match self {
            Self::V1(signed) => signed.as_str(),
            Self::V3(signed) => signed.authorization(),
        }
    }
}

/// The `host` V3 signs: the URL's authority, without the scheme's default port — what hyper puts
/// in the Host header and HTTP/2's `:authority`.
fn signed_host(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let host = match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host,
        _ => authority,
    };
    (!host.is_empty()).then_some(host)
}

/// The request could not be built (a URL or header value the HTTP stack refuses).
fn unbuildable(detail: String) -> EcsError {
    EcsError::Transport {
        kind: TransportKind::Build,
        detail,
    }
}

impl EcsClient {
    /// A client with the system clock and UUID nonces, signing with `credentials` as they are now.
    pub fn new(
        credentials: impl Into<CredentialSupply>,
        settings: ClientSettings,
    ) -> Result<Self, BuildError> {
        Self::with_sources(credentials, settings, Sources::default())
    }

    /// A client with the given clock, nonce source and quota.
    pub fn with_sources(
        credentials: impl Into<CredentialSupply>,
        settings: ClientSettings,
        sources: Sources,
    ) -> Result<Self, BuildError> {
        // Plain-HTTP endpoints (the simulator, loopback tests) need no trust store; HTTPS ones do.
        let roots = match tls::native_roots() {
            Ok(roots) => roots,
            Err(empty) if settings.endpoint.is_https() => return Err(empty.into()),
            Err(_) => rustls::RootCertStore::empty(),
        };
        let resolver =
            HickoryResolver::new(&settings.dns).map_err(|e| BuildError::Dns(e.to_string()))?;
        let http = Transport::new(
            roots,
            resolver,
            &TransportSettings {
                connect_timeout: settings.connect_timeout,
                pool_max_idle_per_host: settings.pool_max_idle_per_host,
                pool_idle_timeout: Duration::from_secs(50),
                user_agent: USER_AGENT_VALUE,
            },
        );
        let budget = retry_budget(settings.retry_budget);
        let credentials = credentials.into();
        Ok(Self {
            inner: Arc::new(Inner {
                budget,
                http,
                settings,
                credentials,
                clock: sources.clock,
                nonces: sources.nonces,
                admission: sources.admission,
            }),
            observer: None,
        })
    }

    /// The same client (its pool, credential and budget shared), reporting every call to
    /// `observer`: the one place where ECS calls are counted, whoever makes them.
    pub fn observed_by(&self, observer: Arc<dyn CallObserver>) -> Self {
        Self {
            inner: self.inner.clone(),
            observer: Some(observer),
        }
    }

    fn observe<A: Action>(&self, trail: &Trail) {
        if let Some(observer) = &self.observer {
            observer.called(A::NAME, trail);
        }
    }

    fn observe_read(&self, kind: ReadKind, trail: &Trail) {
        let sent = trail
            .attempts
            .iter()
            .any(|a| a.failure.is_none_or(ErrorClass::sent_upstream));
        if let (Some(observer), true) = (&self.observer, sent) {
            observer.read(kind);
        }
    }

    /// The credential the client signs with.
    pub(crate) fn credentials(&self) -> &CredentialSupply {
        &self.inner.credentials
    }

    /// What `request` would be sent as, without sending it (or signing it); `None` when the
    /// endpoint gives the region no host, where an attempt would fail too.
    pub fn plan<A: Action>(&self, request: &A) -> Option<Planned> {
        let settings = &self.inner.settings;
        let url = settings.endpoint.url_with_query(request.region(), "");
        let host = signed_host(&url)?.to_owned();
        let mut params = Vec::with_capacity(request.param_count());
        request.push_params(&mut params);
        Some(Planned {
            host,
            action: A::NAME,
            version: API_VERSION,
            params: params
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            signature: settings.signature,
        })
    }

    /// Whether a credential is there to sign with now.
    pub fn can_sign(&self) -> bool {
        self.inner.credentials.current().is_ok()
    }

    /// Stops the invocation, retrying transient failures, and never working past `deadline`.
    pub async fn stop_invocation(
        &self,
        request: &StopInvocation,
        deadline: Option<Instant>,
    ) -> Result<Stopped, Failed> {
        let outcome = self.call(request, deadline, false).await;
        let (Ok((_, trail)) | Err(Failed { trail, .. })) = &outcome;
        self.observe::<StopInvocation>(trail);
        let (answer, trail) = outcome?;
        Ok(Stopped {
            request_id: answer.request_id,
            trail,
        })
    }

    /// Reads one invocation and every instance's status (DescribeInvocations) for a caller,
    /// retrying transient failures, never working past `deadline`.
    pub async fn describe_invocation(
        &self,
        request: &DescribeInvocation,
        deadline: Option<Instant>,
    ) -> Result<Described, Failed> {
        self.describe(request, deadline, false).await
    }

    /// [`Self::describe_invocation`] in the background (a wait's later polls): it takes only
    /// what the quota keeps beyond its reserve for callers.
    pub async fn poll_invocation(
        &self,
        request: &DescribeInvocation,
        deadline: Option<Instant>,
    ) -> Result<Described, Failed> {
        self.describe(request, deadline, true).await
    }

    async fn describe(
        &self,
        request: &DescribeInvocation,
        deadline: Option<Instant>,
        background: bool,
    ) -> Result<Described, Failed> {
        let kind = if background {
            ReadKind::Poll
        } else {
            ReadKind::Caller
        };
        let parse = |body: &[u8]| invocation::parse(body, &request.invoke_id);
        let (invocation, request_id, trail) = self
            .read(request, deadline, background, Some(kind), parse)
            .await?;
        Ok(Described {
            request_id,
            invocation,
            trail,
        })
    }

    /// Lists one page of a region's invocations in one status (DescribeInvocations without
    /// `InvokeId`), in the background like [`Self::poll_invocation`], never working past `deadline`.
    pub async fn list_invocations(
        &self,
        request: &ListInvocations,
        deadline: Option<Instant>,
    ) -> Result<Listed, Failed> {
        let kind = Some(ReadKind::Listing);
        let (page, request_id, _) = self
            .read(request, deadline, true, kind, invocation::parse_page)
            .await?;
        Ok(Listed { request_id, page })
    }

    /// Reads one page of an invocation's execution records (DescribeInvocationResults), for a
    /// caller or in the background, never working past `deadline`.
    pub async fn invocation_results(
        &self,
        request: &InvocationResults,
        deadline: Option<Instant>,
        background: bool,
    ) -> Result<ResultsPage, Failed> {
        let parse = invocation::parse_results;
        let (page, _, _) = self
            .read(request, deadline, background, None, parse)
            .await?;
        Ok(page)
    }

    /// Sends a read and parses ECS's answer with `parse`: what it read, ECS's RequestId and each
    /// attempt. An answer `parse` cannot read fails the call (`Malformed`, its attempt marked
    /// `OutcomeUnknown`). Every attempt is observed, and the read by `kind` once one reached ECS.
    async fn read<A: Action, T>(
        &self,
        request: &A,
        deadline: Option<Instant>,
        background: bool,
        kind: Option<ReadKind>,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<(T, String, Trail), Failed> {
        let outcome = self.call(request, deadline, background).await;
        if let (Some(kind), Ok((_, trail)) | Err(Failed { trail, .. })) = (kind, &outcome) {
            self.observe_read(kind, trail);
        }
        let (answer, mut trail) = match outcome {
            Ok(answered) => answered,
            Err(failed) => {
                self.observe::<A>(&failed.trail);
                return Err(failed);
            }
        };
        let parsed = parse(&answer.body);
        if let Err(detail) = &parsed {
            tracing::warn!(%detail, action = A::NAME, "ECS answered with a body the gateway cannot read");
            if let Some(last) = trail.attempts.last_mut() {
                last.failure = Some(ErrorClass::OutcomeUnknown);
            }
        }
        self.observe::<A>(&trail);
        match parsed {
            Ok(read) => Ok((read, answer.request_id, trail)),
            Err(_) => Err(Failed {
                error: EcsError::Malformed {
                    http_status: answer.http_status,
                    request_id: Some(answer.request_id).filter(|id| !id.is_empty()),
                },
                trail,
            }),
        }
    }

    /// Sends `request` with retries within `deadline`; the accepted answer and each attempt.
    async fn call<A: Action>(
        &self,
        request: &A,
        deadline: Option<Instant>,
        background: bool,
    ) -> Result<(Answered, Trail), Failed> {
        let settings = &self.inner.settings;
        let mut trail = Trail::default();
        let outcome = retry::run(
            &settings.retry,
            settings.attempt_timeout,
            deadline,
            &self.inner.budget,
            &mut trail,
            || self.attempt(request, background),
        )
        .await;
        match outcome {
            Ok((answer, _)) => {
                if let Some(last) = trail.attempts.last_mut() {
                    last.http_status = Some(answer.http_status);
                }
                Ok((answer, trail))
            }
            Err(error) => Err(Failed { error, trail }),
        }
    }

    /// Builds every parameter of one attempt: common ones with a fresh nonce and timestamp.
    fn params<'a, A: Action>(
        &'a self,
        request: &'a A,
        credential: &'a Credential,
    ) -> Vec<Param<'a>> {
        let inner = &*self.inner;
        let mut params: Vec<Param<'a>> = Vec::with_capacity(6 + request.param_count());
        let fixed = [
            ("Action", A::NAME),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("SignatureMethod", signer::SIGNATURE_METHOD),
            ("SignatureVersion", signer::SIGNATURE_VERSION),
        ];
        params.extend(fixed.map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v))));
        params.push((
            Cow::Borrowed("AccessKeyId"),
            Cow::Borrowed(credential.access_key_id()),
        ));
        params.push((
            Cow::Borrowed("SignatureNonce"),
            Cow::Owned(inner.nonces.nonce()),
        ));
        params.push((
            Cow::Borrowed("Timestamp"),
            Cow::Owned(humantime::format_rfc3339_seconds(inner.clock.now()).to_string()),
        ));
        if let Some(token) = credential.security_token() {
            params.push((Cow::Borrowed("SecurityToken"), Cow::Borrowed(token)));
        }
        request.push_params(&mut params);
        params
    }

    /// A V3 attempt: the URL with the signed query, and every header to send with it (the signed
    /// ones and `Authorization`). Each attempt has its own nonce and date.
    fn sign_v3<A: Action>(
        &self,
        request: &A,
        credential: &Credential,
        key: &v3::SigningKey,
    ) -> Result<V3Attempt, String> {
        let inner = &*self.inner;
        let mut params: Vec<Param<'_>> = Vec::with_capacity(request.param_count());
        request.push_params(&mut params);
        // The host as the request will carry it, so that what is signed is what is sent.
        let mut url = inner.settings.endpoint.url_with_query(request.region(), "");
        let host = signed_host(&url)
            .ok_or_else(|| "the request URL has no host".to_owned())?
            .to_owned();
        let date = humantime::format_rfc3339_seconds(inner.clock.now()).to_string();
        let nonce = inner.nonces.nonce();
        let mut signed_headers: Vec<(&'static str, &str)> = vec![
            ("host", &host),
            (v3::ACTION, A::NAME),
            (v3::VERSION, API_VERSION),
            (v3::DATE, &date),
            (v3::NONCE, &nonce),
            (v3::CONTENT_SHA256, v3::EMPTY_PAYLOAD_SHA256),
        ];
        if let Some(token) = credential.security_token() {
            // As the Tea SDK does: the key id beside the token, both signed.
            signed_headers.push((v3::ACCESS_KEY_ID, credential.access_key_id()));
            signed_headers.push((v3::SECURITY_TOKEN, token));
        }
        let signed = v3::sign(
            "POST",
            &params,
            &signed_headers,
            v3::EMPTY_PAYLOAD_SHA256,
            credential.access_key_id(),
            key,
        );
        url.push_str(signed.query());
        // Credentials are held to rules that keep control characters out; still, never panic.
        let value = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| "a signed header value is not a valid HTTP header value".to_owned())
        };
        // `host` goes out as the URI's authority (the Host header, or HTTP/2's :authority); the
        // fixed values need no checking.
        let mut headers = vec![
            (ACTION_HEADER, HeaderValue::from_static(A::NAME)),
            (VERSION_HEADER, HeaderValue::from_static(API_VERSION)),
            (DATE_HEADER, value(&date)?),
            (NONCE_HEADER, value(&nonce)?),
            (
                CONTENT_SHA256_HEADER,
                HeaderValue::from_static(v3::EMPTY_PAYLOAD_SHA256),
            ),
            (AUTHORIZATION_HEADER, value(signed.authorization())?),
        ];
        if let Some(token) = credential.security_token() {
            headers.push((ACCESS_KEY_ID_HEADER, value(credential.access_key_id())?));
            headers.push((SECURITY_TOKEN_HEADER, value(token)?));
        }
        Ok(V3Attempt {
            url,
            signed,
            headers,
        })
    }

    /// One signed POST; the accepted answer, or what went wrong.
    async fn attempt<A: Action>(
        &self,
        request: &A,
        background: bool,
    ) -> Result<Answered, EcsError> {
        let inner = &*self.inner;
        let mut exchange = Exchange::new(inner.settings.attempt_timeout);
        // Each attempt signs with the credential current at that moment: a refresh between
        // attempts is picked up, and an expired credential sends nothing.
        let current = inner
            .credentials
            .current()
            .map_err(|_| EcsError::CredentialsUnavailable)?;
        let credential = &current.credential;
        let charged = Attempt {
            principal: inner.credentials.principal(),
            region: request.region().as_str(),
            action: A::NAME,
            background,
        };
        if let Some(admission) = &inner.admission {
            admission
                .admit(charged)
                .await
                .map_err(EcsError::NotAdmitted)?;
        }
        let (head, body, signature) = match inner.settings.signature {
            SignatureVersion::V1 => {
                let signed =
                    signer::sign_query("POST", &self.params(request, credential), &current.key);
                let url = inner
                    .settings
                    .endpoint
                    .url_with_query(request.region(), signed.as_str());
                let (head, body) = inner
                    .http
                    .post(url, Vec::new(), &mut exchange)
                    .await?
                    .into_parts();
                (head, body, Signature::V1(signed))
            }
            SignatureVersion::V3 => {
                let attempt = self
                    .sign_v3(request, credential, &current.key_v3)
                    .map_err(unbuildable)?;
                let (head, body) = inner
                    .http
                    .post(attempt.url, attempt.headers, &mut exchange)
                    .await?
                    .into_parts();
                (head, body, Signature::V3(attempt.signed))
            }
        };
        let http_status = head.status.as_u16();
        // The attempt's span (see `retry::run`), exported when tracing is on.
        tracing::Span::current().record("http_status", http_status);
        let body = transport::read_capped(body, A::MAX_ANSWER_BYTES).await?;
        exchange.answered();
        let secrets = Secrets {
            values: [
                credential.access_key_id(),
                credential.access_key_secret(),
                credential.security_token().unwrap_or_default(),
                signature.signature(),
            ],
            signed: signature.sent(),
        };
        let answer = response::interpret(http_status, &head.headers, body.as_deref(), secrets);
        if let (Err(EcsError::Api(api)), Some(admission)) = (&answer, &inner.admission)
            && api.closes_the_action()
        {
            admission.throttled(charged, api.retry_after).await;
        }
        let request_id = answer?;
        Ok(Answered {
            request_id,
            http_status,
            body: body.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_host_is_the_authority_without_a_default_port() {
        let cases = [
            (
                "https://ecs.cn-hangzhou.aliyuncs.com/?",
                "ecs.cn-hangzhou.aliyuncs.com",
            ),
            ("http://127.0.0.1:8080/?", "127.0.0.1:8080"),
            ("https://ecs.example:443/?", "ecs.example"),
            ("http://ecs.example:80?", "ecs.example"),
            ("https://ecs.example:80/?", "ecs.example:80"),
        ];
        for (url, host) in cases {
            assert_eq!(signed_host(url), Some(host), "{url}");
        }
        assert_eq!(signed_host("no-scheme"), None);
    }
}
