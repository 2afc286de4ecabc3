//! Spawns a gateway and an upstream on 127.0.0.1:0 and hands out clients and shutdown handles.
#![allow(dead_code, missing_docs, unreachable_pub)]

pub mod binary;
pub mod credential_source;
pub mod dns;
pub mod echo;
pub mod log_capture;
pub mod pki;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod unread;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use ecs_gateway::aliyun::Credential;
use ecs_gateway::aliyun::Endpoint;
use ecs_gateway::aliyun::RetryPolicy;
use ecs_gateway::aliyun::SignatureVersion;
use ecs_gateway::aliyun::{ClientSettings, Clock, EcsClient, NonceSource, Sources};
use ecs_gateway::app::cli::Cli;
use ecs_gateway::app::{CredentialsFrom, Gateway as Built, Settings};
use ecs_gateway::pb::StopInvocationRequest;
use ecs_gateway::pb::cloud_assistant_service_client::CloudAssistantServiceClient;
use ecs_gateway::simulator::{Simulator, SimulatorConfig};
use ecs_gateway::testing::api::ServiceSettings;
use ecs_gateway::testing::auth::SecurityFiles;
use ecs_gateway::testing::observe::Metrics;
use ecs_gateway::testing::server::ServerSettings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A clock stuck at one instant.
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Always the same nonce.
pub struct FixedNonce(pub String);

impl NonceSource for FixedNonce {
    fn nonce(&self) -> String {
        self.0.clone()
    }
}

/// `nonce-1`, `nonce-2`, …
#[derive(Default)]
pub struct CountingNonce(AtomicU64);

impl NonceSource for CountingNonce {
    fn nonce(&self) -> String {
        format!("nonce-{}", self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Parses `2025-01-02T03:04:05Z`.
pub fn at(timestamp: &str) -> SystemTime {
    humantime::parse_rfc3339(timestamp).expect("test timestamp")
}

/// The credential the test simulators accept.
pub fn test_credential() -> Credential {
    Credential::new("LTAItestGatewayKey", "test-secret-value-0123456789", None)
}

/// Client settings for `endpoint` with fast, small retries so tests stay quick.
pub fn settings(endpoint: &str) -> ClientSettings {
    ClientSettings {
        endpoint: Endpoint::parse(endpoint).expect("test endpoint"),
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
        pool_max_idle_per_host: 16,
        dns: Default::default(),
        // Every retry made: the retry budget has tests of its own.
        retry_budget: 100.0,
        signature: SignatureVersion::default(),
    }
}

/// An ECS client for `endpoint` with the system clock and UUID nonces.
pub fn ecs_client(endpoint: &str, credential: Credential) -> EcsClient {
    EcsClient::new(credential, settings(endpoint)).expect("client")
}

/// A simulator on 127.0.0.1:0; returns its base URL and a handle to its state.
pub async fn start_simulator(config: SimulatorConfig) -> (String, Simulator) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let simulator = Simulator::new(config);
    tokio::spawn(simulator.clone().serve(listener, std::future::pending()));
    (url, simulator)
}

/// What a test gateway is built with besides its ECS client: the settings `Gateway::build` reads,
/// defaulting to what `main` parses from no flags (but on 127.0.0.1:0).
#[derive(Default)]
pub struct Setup {
    pub service: Option<ServiceSettings>,
    pub server: Option<ServerSettings>,
    /// The TLS, token and policy files.
    pub security: SecurityFiles,
    /// Count into a registry (`Gateway::metrics`), exported on 127.0.0.1:0.
    pub metrics: bool,
    /// How often watched files are checked, when not the default.
    pub reload_interval: Option<Duration>,
    /// Flags parsed besides `--listen`, as `main` parses them.
    pub flags: Vec<&'static str>,
}

/// A gateway on 127.0.0.1:0 with a connected client.
pub struct Gateway {
    pub addr: SocketAddr,
    pub client: CloudAssistantServiceClient<Channel>,
    pub channel: Channel,
    /// What the gateway counts, with `Setup::metrics`.
    pub metrics: Option<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Gateway {
    /// Stops `t-1` in `cn-hangzhou`, which must fail; the status.
    pub async fn refused_t1(&self) -> tonic::Status {
        self.client
            .clone()
            .stop_invocation(request("cn-hangzhou", "t-1", &[]))
            .await
            .unwrap_err()
    }

    /// Serves `ecs` with default limits.
    pub async fn start(ecs: EcsClient) -> Self {
        Self::start_setup(ecs, Setup::default(), None).await
    }

    /// Serves `ecs` with the given handler and server settings.
    pub async fn start_with(
        ecs: EcsClient,
        service: ServiceSettings,
        server: ServerSettings,
    ) -> Self {
        let setup = Setup {
            service: Some(service),
            server: Some(server),
            ..Setup::default()
        };
        Self::start_setup(ecs, setup, None).await
    }

    /// Builds the gateway as `main` does — settings parsed from flags, then `Gateway::build` —
    /// around `ecs`, with what `setup` changes; a client connects through `client_tls` when given
    /// (`setup.security.tls` must be set then).
    pub async fn start_setup(
        ecs: EcsClient,
        setup: Setup,
        client_tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        use clap::Parser as _;
        let args = ["ecs-gateway", "--listen", "127.0.0.1:0"];
        let cli = Cli::try_parse_from(args.into_iter().chain(setup.flags.iter().copied())).unwrap();
        let mut settings = Settings::try_from(&cli.gateway).unwrap();
        if let Some(service) = setup.service {
            settings.service = service;
        }
        if let Some(server) = setup.server {
            settings.server = server;
        }
        if let Some(interval) = setup.reload_interval {
            settings.reload_interval = interval;
        }
        settings.security = setup.security;
        if setup.metrics {
            settings.metrics_listen = Some(([127, 0, 0, 1], 0).into());
        }
        let built = Built::build(settings, CredentialsFrom::Client(ecs))
            .await
            .expect("the gateway starts");
        let addr = built.addr();
        let metrics = built.metrics().cloned();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(built.serve(async {
            let _ = rx.await;
        }));
        let channel = match client_tls {
            None => Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect to the gateway"),
            Some(tls) => tls_channel(addr, tls)
                .await
                .expect("connect to the gateway over TLS"),
        };
        Self {
            addr,
            client: CloudAssistantServiceClient::new(channel.clone()),
            channel,
            metrics,
            shutdown: Some(tx),
            task,
        }
    }

    /// Sends the shutdown signal (the test equivalent of SIGTERM).
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A plaintext gateway in front of `url` (with the test credential) admitting callers as the
/// token and policy files in `security` say.
pub async fn gateway_with_access(url: &str, security: SecurityFiles) -> Gateway {
    let setup = Setup {
        security,
        ..Setup::default()
    };
    Gateway::start_setup(ecs_client(url, test_credential()), setup, None).await
}

/// The `ErrorInfo` reason and domain of an error status (which must carry one).
pub fn error_info(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt as _;
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo");
    (info.reason, info.domain)
}

/// `message` as a request carrying `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// A channel to `addr` over TLS.
pub async fn tls_channel(
    addr: SocketAddr,
    tls: tonic::transport::ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// A StopInvocation request.
pub fn request(region: &str, invoke_id: &str, instances: &[&str]) -> StopInvocationRequest {
    StopInvocationRequest {
        region_id: region.into(),
        invoke_id: invoke_id.into(),
        instance_ids: instances.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A client for the simulator with the test credential, plus pinned sources when given.
pub fn pinned_client(
    endpoint: &str,
    credential: Credential,
    clock: SystemTime,
    nonce: &str,
    signature: SignatureVersion,
) -> EcsClient {
    let sources = Sources {
        clock: Arc::new(FixedClock(clock)),
        nonces: Arc::new(FixedNonce(nonce.to_owned())),
        ..Sources::default()
    };
    let settings = ClientSettings {
        signature,
        ..settings(endpoint)
    };
    EcsClient::with_sources(credential, settings, sources).expect("client")
}

/// How a raw TCP upstream treats each connection.
#[derive(Clone, Copy)]
pub enum RawBehavior {
    /// Read the request, then never answer.
    Hang,
    /// Close the connection as soon as it is accepted.
    Close,
    /// Read the request, write these bytes, close.
    Respond(&'static [u8]),
}

/// A hand-rolled upstream for faults HTTP mocks cannot produce; counts connections and notices
/// when the gateway drops one.
pub struct RawUpstream {
    pub url: String,
    pub accepted: Arc<AtomicU64>,
    pub peer_closed: Arc<AtomicU64>,
}

impl RawUpstream {
    pub async fn start(behavior: RawBehavior) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let peer_closed = Arc::new(AtomicU64::new(0));
        let (a, p) = (accepted.clone(), peer_closed.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let p = p.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    match behavior {
                        RawBehavior::Close => drop(stream),
                        RawBehavior::Respond(bytes) => {
                            let _ = stream.read(&mut buf).await;
                            let _ = stream.write_all(bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        RawBehavior::Hang => {
                            let _ = stream.read(&mut buf).await;
                            // Wait for the gateway to give up on the request and close its side.
                            while let Ok(n) = stream.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                            p.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Self {
            url,
            accepted,
            peer_closed,
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn peer_closed(&self) -> u64 {
        self.peer_closed.load(Ordering::SeqCst)
    }
}

/// Polls `condition` every 10 ms for up to `limit`; true once it holds.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// A wiremock ECS answering every POST with `status` and the JSON `body`.
pub async fn ecs_answering(status: u16, body: &str) -> wiremock::MockServer {
    let ecs = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(status).set_body_raw(body, "application/json"),
        )
        .mount(&ecs)
        .await;
    ecs
}

/// A gateway forwarding to `ecs` with the test credential and fast retries.
pub async fn gateway_for(ecs: &wiremock::MockServer) -> Gateway {
    gateway_for_server(ecs, ServerSettings::default()).await
}

/// A gateway forwarding to `ecs`, with the given server settings.
pub async fn gateway_for_server(ecs: &wiremock::MockServer, server: ServerSettings) -> Gateway {
    Gateway::start_with(
        ecs_client(&format!("{}/", ecs.uri()), test_credential()),
        ServiceSettings::default(),
        server,
    )
    .await
}

/// Every variable Alibaba's credential chain reads, so that a spawned gateway sees only what a test
/// sets.
pub const CHAIN_VARIABLES: [&str; 18] = [
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABA_CLOUD_ROLE_ARN",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    "ALIBABA_CLOUD_ROLE_SESSION_NAME",
    "ALIBABA_CLOUD_PROFILE",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "ALIBABA_CLOUD_ECS_METADATA",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
    "ALIBABA_CLOUD_IMDSV1_DISABLED",
    "ALIBABA_CLOUD_CREDENTIALS_URI",
    "ALIBABA_CLOUD_STS_REGION",
    "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
    "ECS_GATEWAY_STS_ENDPOINT",
    "ECS_GATEWAY_METADATA_ENDPOINT",
];

/// A metadata endpoint on loopback where nothing listens: the chain's instance-role step fails at
/// once instead of reaching for 100.100.100.200.
pub const NO_METADATA_SERVICE: &str = "http://127.0.0.1:9";

/// Cuts a spawned gateway off from this machine's credentials: none of the chain's variables, a
/// HOME without files, and no metadata service.
pub fn isolate_credentials(cmd: &mut tokio::process::Command) {
    for name in CHAIN_VARIABLES {
        cmd.env_remove(name);
    }
    cmd.env("HOME", "/nonexistent/ecs-gateway-test-home")
        .env("ECS_GATEWAY_METADATA_ENDPOINT", NO_METADATA_SERVICE);
}

/// `calls` successful StopInvocation calls to the gateway at `addr`, `concurrency` at a time, over
/// one channel; panics on any failure.
pub async fn calls_in_batches(addr: &str, calls: usize, concurrency: usize) {
    let client = CloudAssistantServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for _ in 0..calls / concurrency {
        let batch: Vec<_> = (0..concurrency)
            .map(|_| {
                let mut client = client.clone();
                tokio::spawn(async move {
                    client
                        .stop_invocation(request("cn-hangzhou", "t-demo0001", &[]))
                        .await
                })
            })
            .collect();
        for call in batch {
            call.await.unwrap().expect("the call succeeds");
        }
    }
}
