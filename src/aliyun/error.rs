//! What can go wrong talking to ECS, the parser for ECS error bodies, and the one classification
//! table from ECS `Code` (first) and HTTP status (fallback) to what the failure means.

use std::time::Duration;

use serde::Deserialize;

/// An error ECS itself reported: HTTP status plus the fields of its JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the response.
    pub http_status: u16,
    /// ECS error code, verbatim (`InvalidInvokeId.NotFound`).
    pub code: String,
    /// ECS message, already cut before any echoed string-to-sign.
    pub message: String,
    /// ECS RequestId, when given.
    pub request_id: Option<String>,
    /// ECS HostId, when given.
    pub host_id: Option<String>,
    /// The troubleshooting link from `Recommend`, when given.
    pub recommend: Option<String>,
    /// The delay ECS asked for: `x-acs-retry-after`, else (when throttled) the `TimeLeft` of
    /// `x-ratelimit-user-api` / `x-ratelimit-user`, else `Retry-After`.
    pub retry_after: Option<Duration>,
    /// ECS sent `x-acs-retry-after`, which the newest Tea core reads as throttling whatever the
    /// code.
    pub retry_after_sent: bool,
}

impl ApiError {
    /// Whether this answer says the account's quota for the action is spent, so that no replica
    /// should send the action again before `retry_after` (or the next minute): the Go core's
    /// throttling codes, or any error the Tea core reads as throttling. `Throttling.Resource`
    /// throttles one resource, not the action, and does not.
    pub fn closes_the_action(&self) -> bool {
        self.retry_after_sent
            || matches!(
                self.code.as_str(),
                "Throttling" | "Throttling.User" | "Throttling.Api"
            )
    }
}

/// How an attempt's transport failed; its detail never holds the request URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection: refused, resolver unavailable, TLS handshake broken.
    Connect,
    /// DNS answered that the upstream host does not exist.
    NoSuchHost,
    /// The upstream's TLS certificate did not verify against the gateway's trust store.
    UntrustedCertificate,
    /// The request could not be built (it never left the gateway).
    Build,
    /// The attempt ran past the per-attempt timeout.
    Timeout,
    /// The connection broke mid-exchange (reset, closed before the response was complete).
    Interrupted,
}

/// Every failure of the ECS client. Messages never carry secrets, signatures or signed URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// ECS answered with an error code.
    #[error("{}: {}", .0.code, .0.message)]
    Api(ApiError),
    /// The upstream answered with a body that is not an ECS answer (HTML, non-JSON, no Code/RequestId).
    #[error("upstream answered HTTP {http_status} with a body that is not a valid ECS response")]
    Malformed {
        /// HTTP status of the response.
        http_status: u16,
        /// RequestId, if the body had one after all.
        request_id: Option<String>,
    },
    /// The request did not complete at the transport level.
    #[error("upstream transport failure ({kind:?}): {detail}")]
    Transport {
        /// What kind of failure.
        kind: TransportKind,
        /// The HTTP client's description and its causes; never the URL.
        detail: String,
    },
    /// The caller's deadline ran out before an answer.
    #[error("the caller's deadline ran out before ECS answered")]
    DeadlineExceeded,
    /// The gateway holds no valid credential (it expired and refreshing it fails); nothing was sent.
    #[error("the gateway holds no valid Alibaba Cloud credential")]
    CredentialsUnavailable,
    /// The account's quota toward ECS had no room for this attempt; nothing was sent.
    #[error("{}", .0.limit)]
    NotAdmitted(NotAdmitted),
}

/// An attempt the gateway's limits toward ECS refused; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotAdmitted {
    /// Which limit refused it.
    pub limit: Limit,
    /// When the attempt could be admitted.
    pub retry_after: Duration,
}

// Rates come from validated settings, never NaN, so equality is total.
impl Eq for NotAdmitted {}

/// A limit on what the gateway sends to ECS for one account and region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// `--fleet-rate`: calls per second for every action together.
    Rate {
        /// Calls per second.
        per_second: f64,
    },
    /// `--api-quota` × `--quota-share`: the gateway's share of the action's quota, per window.
    Quota {
        /// The action.
        action: &'static str,
        /// Calls the gateway may make per window.
        calls: u32,
        /// The window.
        period: Duration,
    },
    /// ECS throttled the action, here or on another replica, until a time it gave.
    Throttled {
        /// The action.
        action: &'static str,
    },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Rate { per_second } => write!(
                f,
                "the fleet's rate of {per_second} calls per second to ECS is spent"
            ),
            Limit::Quota {
                action,
                calls,
                period,
            } => write!(
                f,
                "the gateways' share of the account's {action} quota ({calls} calls per {}) is spent",
                humantime::format_duration(*period)
            ),
            Limit::Throttled { action } => write!(
                f,
                "ECS throttled {action} for this account and region; the gateways send none until it said"
            ),
        }
    }
}

/// What a failure means, independent of how it is reported: the one table both retry policy and
/// gRPC status mapping read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// ECS refused the arguments.
    InvalidArgument,
    /// RAM or the resource forbids the operation.
    PermissionDenied,
    /// The region or invocation does not exist.
    NotFound,
    /// ECS throttled the call.
    Throttled,
    /// ECS rejected the gateway's signature, AccessKey, token or timestamp.
    CredentialRejected,
    /// ECS saw the nonce before; nothing was executed.
    NonceReused,
    /// The gateway built a request ECS does not understand.
    RequestBuiltWrong,
    /// ECS or a proxy in front of it failed transiently.
    Transient,
    /// ECS failed with an unlisted 500/501.
    UpstreamInternal,
    /// HTTP 409.
    Conflict,
    /// Any other non-2xx.
    Unknown,
    /// A 2xx we cannot read: the stop may or may not have happened.
    OutcomeUnknown,
    /// No connection could be made.
    Unreachable,
    /// An attempt ran past its timeout.
    AttemptTimedOut,
    /// The connection broke mid-exchange.
    Interrupted,
    /// The caller's deadline ran out.
    DeadlineExceeded,
    /// DNS says the upstream host does not exist.
    HostNotFound,
    /// The upstream's certificate did not verify: the gateway's endpoint or trust store is wrong.
    UntrustedUpstream,
    /// The gateway's credential expired and could not be refreshed.
    CredentialsUnavailable,
    /// The fleet's quota toward ECS is spent.
    FleetQuota,
}

impl ErrorClass {
    /// Whether the gateway itself is misconfigured or wrong (its credential, clock, request or
    /// trust store), so that operators must look and retrying cannot help.
    pub fn is_gateway_fault(self) -> bool {
        matches!(
            self,
            ErrorClass::CredentialRejected
                | ErrorClass::NonceReused
                | ErrorClass::RequestBuiltWrong
                | ErrorClass::UntrustedUpstream
        )
    }

    /// Every class, for exhaustive checks.
    pub const ALL: [ErrorClass; 20] = [
        ErrorClass::InvalidArgument,
        ErrorClass::PermissionDenied,
        ErrorClass::NotFound,
        ErrorClass::Throttled,
        ErrorClass::CredentialRejected,
        ErrorClass::NonceReused,
        ErrorClass::RequestBuiltWrong,
        ErrorClass::Transient,
        ErrorClass::UpstreamInternal,
        ErrorClass::Conflict,
        ErrorClass::Unknown,
        ErrorClass::OutcomeUnknown,
        ErrorClass::Unreachable,
        ErrorClass::AttemptTimedOut,
        ErrorClass::Interrupted,
        ErrorClass::DeadlineExceeded,
        ErrorClass::HostNotFound,
        ErrorClass::UntrustedUpstream,
        ErrorClass::CredentialsUnavailable,
        ErrorClass::FleetQuota,
    ];
}

impl ErrorClass {
    /// Whether an attempt that failed so was handed to the transport at all. Without a valid
    /// credential or a slot in the fleet's quota the gateway holds it back: nothing is signed or
    /// sent, so it is no upstream attempt, and what follows it is no retry.
    pub fn sent_upstream(self) -> bool {
        use ErrorClass::*;
        match self {
            CredentialsUnavailable | FleetQuota => false,
            InvalidArgument | PermissionDenied | NotFound | CredentialRejected
            | RequestBuiltWrong | UpstreamInternal | Conflict | Unknown | OutcomeUnknown
            | DeadlineExceeded | HostNotFound | UntrustedUpstream | NonceReused | Throttled
            | Transient | Unreachable | AttemptTimedOut | Interrupted => true,
        }
    }

    /// A stable snake_case name, for metric labels and trace attributes.
    pub fn name(self) -> &'static str {
        use ErrorClass::*;
        match self {
            InvalidArgument => "invalid_argument",
            PermissionDenied => "permission_denied",
            NotFound => "not_found",
            Throttled => "throttled",
            CredentialRejected => "credential_rejected",
            NonceReused => "nonce_reused",
            RequestBuiltWrong => "request_built_wrong",
            Transient => "transient",
            UpstreamInternal => "upstream_internal",
            Conflict => "conflict",
            Unknown => "unknown",
            OutcomeUnknown => "outcome_unknown",
            Unreachable => "unreachable",
            AttemptTimedOut => "attempt_timed_out",
            Interrupted => "interrupted",
            DeadlineExceeded => "deadline_exceeded",
            HostNotFound => "host_not_found",
            UntrustedUpstream => "untrusted_upstream",
            CredentialsUnavailable => "credentials_unavailable",
            FleetQuota => "fleet_quota",
        }
    }
}

impl EcsError {
    /// The meaning of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            EcsError::Api(api) if api.retry_after_sent => ErrorClass::Throttled,
            EcsError::Api(api) => classify(Some(&api.code), api.http_status),
            EcsError::Malformed { http_status, .. } if (200..300).contains(http_status) => {
                ErrorClass::OutcomeUnknown
            }
            EcsError::Malformed { http_status, .. } => classify(None, *http_status),
            EcsError::Transport { kind, .. } => match kind {
                TransportKind::Connect => ErrorClass::Unreachable,
                TransportKind::Timeout => ErrorClass::AttemptTimedOut,
                TransportKind::Interrupted => ErrorClass::Interrupted,
                TransportKind::NoSuchHost => ErrorClass::HostNotFound,
                TransportKind::UntrustedCertificate => ErrorClass::UntrustedUpstream,
                TransportKind::Build => ErrorClass::RequestBuiltWrong,
            },
            EcsError::DeadlineExceeded => ErrorClass::DeadlineExceeded,
            EcsError::CredentialsUnavailable => ErrorClass::CredentialsUnavailable,
            EcsError::NotAdmitted(_) => ErrorClass::FleetQuota,
        }
    }

    /// The ECS RequestId, when the upstream gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            EcsError::Api(api) => api.request_id.as_deref(),
            EcsError::Malformed { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// The first error of type `T` in `error`'s chain of causes, looking inside `io::Error`s too (their
/// `source()` skips the error they wrap, and TLS errors arrive as an io::Error inside another).
pub(crate) fn find_cause<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        let wrapped = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        next = wrapped.or_else(|| current.source());
    }
    None
}

/// The ECS codes the gateway knows by name, each with its class, or `None` where the HTTP status
/// decides (`reference/error-mapping.md`). The one list: [`classify`] matches these exactly
/// before any family, and they are the only values a metric label may take (anything else is
/// `other`).
pub(crate) const CODES: [(&str, Option<ErrorClass>); 36] = {
    use ErrorClass::*;
    [
        ("RegionId.ApiNotSupported", Some(InvalidArgument)),
        ("InstanceIds.ExceedLimit", Some(InvalidArgument)),
        ("Operation.Forbidden", Some(PermissionDenied)),
        ("NoPermission", Some(PermissionDenied)),
        ("InvalidRegionId.NotFound", Some(NotFound)),
        ("InvalidInvokeId.NotFound", Some(NotFound)),
        ("InternalError.Dispatch", Some(Transient)),
        ("InternalError", Some(Transient)),
        ("UnknownError", Some(Transient)),
        ("ServiceUnavailable", Some(Transient)),
        ("SignatureNonceUsed", Some(NonceReused)),
        ("SignatureDoesNotMatch", Some(CredentialRejected)),
        ("IncompleteSignature", Some(CredentialRejected)),
        ("InvalidSignatureMethod", Some(CredentialRejected)),
        ("InvalidAction.NotFound", Some(RequestBuiltWrong)),
        ("InvalidApi.NotFound", Some(RequestBuiltWrong)),
        ("InvalidProduct.NotFound", Some(RequestBuiltWrong)),
        ("UnsupportedHTTPMethod", Some(RequestBuiltWrong)),
        ("Throttling", Some(Throttled)),
        ("Throttling.User", Some(Throttled)),
        ("Throttling.Api", Some(Throttled)),
        ("Throttling.Resource", Some(Throttled)),
        ("InvalidAccessKeyId.NotFound", Some(CredentialRejected)),
        ("InvalidAccessKeyId.Inactive", Some(CredentialRejected)),
        ("InvalidSecurityToken.Expired", Some(CredentialRejected)),
        ("InvalidSecurityToken.Malformed", Some(CredentialRejected)),
        (
            "InvalidSecurityToken.MismatchWithAccessKey",
            Some(CredentialRejected),
        ),
        ("MissingSecurityToken", Some(InvalidArgument)),
        ("InvalidTimeStamp.Expired", Some(CredentialRejected)),
        ("InvalidTimeStamp.Format", Some(CredentialRejected)),
        ("Forbidden", Some(PermissionDenied)),
        ("Forbidden.RAM", Some(PermissionDenied)),
        ("MissingParameter", Some(InvalidArgument)),
        ("InvalidParameter", Some(InvalidArgument)),
        ("InvalidInstance.NotFound", Some(InvalidArgument)),
        // Named for its metric label; what it means depends on the status ECS sends it with.
        ("IncorrectInstanceStatus", None),
    ]
};

/// Codes ECS sends in families: a code with one of these prefixes and no entry of its own in
/// [`CODES`] takes the family's class. Order matters: the specific families precede `Invalid`.
const FAMILIES: [(&str, ErrorClass); 7] = {
    use ErrorClass::*;
    [
        ("Throttling.", Throttled),
        ("InvalidAccessKeyId.", CredentialRejected),
        ("InvalidSecurityToken.", CredentialRejected),
        ("InvalidTimeStamp.", CredentialRejected),
        ("Forbidden", PermissionDenied),
        ("Missing", InvalidArgument),
        ("Invalid", InvalidArgument),
    ]
};

/// Classifies by ECS `Code` first — an exact entry of [`CODES`], else a family — and by HTTP
/// status only for codes not listed (`reference/error-mapping.md`).
pub(crate) fn classify(code: Option<&str>, http_status: u16) -> ErrorClass {
    use ErrorClass::*;
    if let Some(code) = code {
        let by_code = match CODES.iter().find(|(known, _)| *known == code) {
            Some((_, class)) => *class,
            None => FAMILIES
                .iter()
                .find(|(prefix, _)| code.starts_with(prefix))
                .map(|(_, class)| *class),
        };
        if let Some(class) = by_code {
            return class;
        }
    }
    match http_status {
        400 => InvalidArgument,
        401 => CredentialRejected,
        403 => PermissionDenied,
        404 => NotFound,
        409 => Conflict,
        429 => Throttled,
        500 | 501 => UpstreamInternal,
        502..=504 => Transient,
        _ => Unknown,
    }
}

/// ECS's JSON error body; the SDKs accept upper- and lower-case keys alike.
#[derive(Debug, Deserialize)]
struct RawBody {
    #[serde(rename = "Code", alias = "code")]
    code: Option<String>,
    #[serde(rename = "Message", alias = "message")]
    message: Option<String>,
    #[serde(rename = "RequestId", alias = "requestId")]
    request_id: Option<String>,
    #[serde(rename = "HostId", alias = "hostId")]
    host_id: Option<String>,
    #[serde(rename = "Recommend", alias = "recommend")]
    recommend: Option<String>,
}

/// The fields of an ECS response body that matter to the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedBody {
    /// `Code`, when present and non-empty.
    pub code: Option<String>,
    /// `Message`, sanitized.
    pub message: Option<String>,
    /// `RequestId`, when present and non-empty.
    pub request_id: Option<String>,
    /// `HostId`.
    pub host_id: Option<String>,
    /// `Recommend`.
    pub recommend: Option<String>,
}

/// Parses an ECS response body; `None` when it is not a JSON object of the expected shape.
pub fn parse_body(bytes: &[u8]) -> Option<ParsedBody> {
    let raw: RawBody = serde_json::from_slice(bytes).ok()?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    Some(ParsedBody {
        code: non_empty(raw.code),
        message: raw.message.map(|m| sanitize_message(&m)),
        request_id: non_empty(raw.request_id),
        host_id: non_empty(raw.host_id),
        recommend: non_empty(raw.recommend),
    })
}

/// Cuts an ECS message before the echoed string-to-sign (`SignatureDoesNotMatch` appends
/// `server string to sign is:<…>`, which carries the AccessKeyId and every parameter).
pub(crate) fn sanitize_message(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let cut = ["string to sign", "stringtosign"]
        .iter()
        .filter_map(|marker| lower.find(marker))
        .min()
        .map(|at| {
            // Also drop the word that introduces the echo ("server").
            let head = &message[..at];
            head.trim_end().strip_suffix("server").unwrap_or(head)
        })
        .unwrap_or(message);
    cut.trim_end_matches(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;
    use proptest::prelude::*;

    #[test]
    fn the_code_table_lists_each_code_once_and_its_class_holds_at_every_status() {
        let mut names: Vec<&str> = CODES.iter().map(|(code, _)| *code).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CODES.len(), "a code is listed twice");
        // Expectations written out, not read from the table: a listed code keeps its class
        // whatever the status it comes with; the one entry without a class follows the status.
        let expected = [
            ("RegionId.ApiNotSupported", [InvalidArgument; 5]),
            ("Operation.Forbidden", [PermissionDenied; 5]),
            ("InvalidRegionId.NotFound", [NotFound; 5]),
            ("ServiceUnavailable", [Transient; 5]),
            ("UnknownError", [Transient; 5]),
            ("SignatureNonceUsed", [NonceReused; 5]),
            ("SignatureDoesNotMatch", [CredentialRejected; 5]),
            ("InvalidAction.NotFound", [RequestBuiltWrong; 5]),
            ("Throttling.Resource", [Throttled; 5]),
            ("InvalidSecurityToken.Expired", [CredentialRejected; 5]),
            ("MissingSecurityToken", [InvalidArgument; 5]),
            ("InvalidInstance.NotFound", [InvalidArgument; 5]),
            (
                "IncorrectInstanceStatus",
                [
                    InvalidArgument,
                    PermissionDenied,
                    NotFound,
                    UpstreamInternal,
                    Transient,
                ],
            ),
        ];
        for (code, classes) in expected {
            for (status, class) in [400, 403, 404, 500, 503].into_iter().zip(classes) {
                assert_eq!(classify(Some(code), status), class, "{code} at {status}");
            }
        }
        // A family member with no entry of its own is classified by its family, not its status.
        assert_eq!(classify(Some("Throttling.Other"), 400), Throttled);
        assert_eq!(
            classify(Some("InvalidTimeStamp.Other"), 400),
            CredentialRejected
        );
    }

    #[test]
    fn the_code_decides_before_the_status() {
        assert_eq!(classify(Some("Throttling.User"), 400), Throttled);
        assert_eq!(
            classify(Some("InstanceIds.ExceedLimit"), 403),
            InvalidArgument
        );
        assert_eq!(classify(Some("InvalidInvokeId.NotFound"), 400), NotFound);
        assert_eq!(
            classify(Some("InvalidAccessKeyId.NotFound"), 404),
            CredentialRejected
        );
        assert_eq!(
            classify(Some("InvalidTimeStamp.Expired"), 400),
            CredentialRejected
        );
        assert_eq!(
            classify(Some("InvalidApi.NotFound"), 404),
            RequestBuiltWrong
        );
        assert_eq!(classify(Some("InvalidParameter"), 400), InvalidArgument);
        assert_eq!(classify(Some("MissingInvokeId"), 400), InvalidArgument);
        assert_eq!(classify(Some("Forbidden.RAM"), 403), PermissionDenied);
        assert_eq!(classify(Some("InternalError.Dispatch"), 500), Transient);
    }

    #[test]
    fn unlisted_codes_fall_back_to_the_status() {
        assert_eq!(classify(Some("Something.New"), 404), NotFound);
        assert_eq!(classify(Some("Something.New"), 500), UpstreamInternal);
        assert_eq!(classify(None, 502), Transient);
        assert_eq!(classify(None, 409), Conflict);
        assert_eq!(classify(None, 418), Unknown);
        assert_eq!(classify(None, 401), CredentialRejected);
    }

    #[test]
    fn lower_case_keys_are_accepted() {
        let body = br#"{"code":"Throttling","message":"slow down","requestId":"R-1"}"#;
        let parsed = parse_body(body).unwrap();
        assert_eq!(parsed.code.as_deref(), Some("Throttling"));
        assert_eq!(parsed.request_id.as_deref(), Some("R-1"));
    }

    #[test]
    fn html_is_not_a_body() {
        assert_eq!(
            parse_body(b"<html><body>502 Bad Gateway</body></html>"),
            None
        );
    }

    #[test]
    fn echoed_string_to_sign_is_cut() {
        let m = "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3DLTAI";
        assert_eq!(
            sanitize_message(m),
            "Specified signature is not matched with our calculation."
        );
    }

    proptest! {
        #[test]
        fn sanitized_messages_never_keep_what_the_echo_carried(
            prefix in "[^#]{0,40}",
            marker in prop::sample::select(vec!["server string to sign is:", "StringToSign: ", "string to sign"]),
            echoed in "#[A-Za-z0-9%&=]{8,40}",
        ) {
            let m = format!("{prefix} {marker}{echoed}");
            let sanitized = sanitize_message(&m);
            prop_assert!(!sanitized.contains(&echoed), "{m:?} -> {sanitized:?}");
            prop_assert!(sanitized.len() <= prefix.len(), "{m:?} -> {sanitized:?}");
        }
    }
}
