//! What an ECS answer means, as a pure function of its status, headers and body: the RequestId of
//! a success, or the error with everything that came from upstream checked or scrubbed of the
//! request's secrets. The client only does the I/O around it, so this is unit-tested and fuzzed
//! without a server.

use std::time::Duration;

use http::HeaderMap;

use super::error::{ApiError, EcsError, ParsedBody, parse_body};
use super::scrub::{self, Scrubber};

/// What the answer must not repeat: the credential's parts and the signature, and the signed
/// query they were sent in.
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    /// The AccessKeyId, the secret, the security token (empty when none) and the signature.
    pub values: [&'a str; 4],
    /// What carries the signature as sent: V1's signed query, or V3's `Authorization` value.
    pub signed: &'a str,
}

impl std::fmt::Debug for Secrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// ECS's answer: the RequestId of an accepted stop (empty when ECS sent a malformed one), or why
/// it was not accepted.
// The same `EcsError` the client's attempts return by value; boxing it here alone would only move
// the allocation, on the rare path.
#[expect(clippy::result_large_err)]
pub fn interpret(
    http_status: u16,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    secrets: Secrets<'_>,
) -> Result<String, EcsError> {
    let success = (200..300).contains(&http_status);
    let checked_id = |id: Option<String>| id.and_then(|id| scrub::request_id(&id, &secrets.values));
    let header_request_id = || {
        headers
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match body.and_then(parse_body) {
        Some(ParsedBody {
            request_id: Some(request_id),
            ..
        }) if success => Ok(checked_id(Some(request_id)).unwrap_or_else(|| {
            tracing::warn!("ECS accepted the stop but its RequestId is malformed; left out");
            String::new()
        })),
        Some(ParsedBody {
            code: Some(code),
            message,
            request_id,
            host_id,
            recommend,
        }) if !success => {
            let scrubber = Scrubber::new(secrets.values.into_iter().chain([secrets.signed]));
            let acs = acs_retry_after(headers);
            let throttled = acs.is_some() || code.starts_with("Throttling");
            let left = throttled.then(|| time_left(headers)).flatten();
            Err(EcsError::Api(ApiError {
                http_status,
                code: scrubber.text(&code, scrub::MAX_CODE),
                message: scrubber.text(&message.unwrap_or_default(), scrub::MAX_TEXT),
                request_id: checked_id(request_id).or_else(|| checked_id(header_request_id())),
                host_id: host_id.map(|h| scrubber.text(&h, scrub::MAX_HOST_ID)),
                recommend: recommend
                    .and_then(|link| scrub::help_link(&scrubber.text(&link, scrub::MAX_TEXT))),
                retry_after: acs.or(left).or_else(|| retry_after(headers)),
                retry_after_sent: acs.is_some(),
            }))
        }
        other => Err(EcsError::Malformed {
            http_status,
            request_id: checked_id(other.and_then(|p| p.request_id))
                .or_else(|| checked_id(header_request_id())),
        }),
    }
}

/// The wait ECS asked for: `x-acs-retry-after` in **milliseconds**, as Alibaba's Tea SDKs read it
/// (a positive integer; anything else is ignored), else HTTP `Retry-After` in seconds; capped.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    acs_retry_after(headers).or_else(|| {
        number(headers, "retry-after")
            .map(Duration::from_secs)
            .map(|delay| delay.min(scrub::MAX_RETRY_DELAY))
    })
}

/// `x-acs-retry-after`, in milliseconds, when a positive integer; capped.
fn acs_retry_after(headers: &HeaderMap) -> Option<Duration> {
    number(headers, "x-acs-retry-after")
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms).min(scrub::MAX_RETRY_DELAY))
}

/// The larger `TimeLeft` (milliseconds) of `x-ratelimit-user-api` and `x-ratelimit-user`, as the
/// Go core reads a throttled answer: `Limit:1,Remain:0,TimeLeft:2000,Reset:1234`; capped.
fn time_left(headers: &HeaderMap) -> Option<Duration> {
    let field = |name: &str| {
        let value = headers.get(name)?.to_str().ok()?;
        value.split(',').find_map(|part| {
            let (key, ms) = part.split_once(':')?;
            (key.trim() == "TimeLeft")
                .then(|| ms.trim().parse::<u64>().ok())
                .flatten()
        })
    };
    field("x-ratelimit-user-api")
        .max(field("x-ratelimit-user"))
        .filter(|ms| *ms > 0)
        .map(|ms| Duration::from_millis(ms).min(scrub::MAX_RETRY_DELAY))
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const SECRETS: Secrets<'static> = Secrets {
        values: [
            "LTAIresponseTestKey",
            "response-test-secret",
            "",
            "c2lnbmF0dXJlLXZhbHVl",
        ],
        signed: "AccessKeyId=LTAIresponseTestKey&Signature=c2lnbmF0dXJlLXZhbHVl",
    };

    #[test]
    fn a_success_is_its_request_id() {
        let body = br#"{"RequestId":"473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E"}"#;
        let id = interpret(200, &HeaderMap::new(), Some(body), SECRETS).unwrap();
        assert_eq!(id, "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E");
    }

    #[test]
    fn an_error_keeps_code_message_and_ids_but_no_secret() {
        let body = br#"{"RequestId":"E1","Code":"Forbidden.RAM","Message":"key LTAIresponseTestKey with secret response-test-secret denied","HostId":"ecs.aliyuncs.com","Recommend":"https://api.aliyun.com/troubleshoot?q=Forbidden.RAM"}"#;
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        let Err(EcsError::Api(error)) = interpret(403, &headers, Some(body), SECRETS) else {
            panic!("an API error");
        };
        assert_eq!(error.http_status, 403);
        assert_eq!(error.code, "Forbidden.RAM");
        assert_eq!(error.request_id.as_deref(), Some("E1"));
        assert_eq!(error.host_id.as_deref(), Some("ecs.aliyuncs.com"));
        assert!(error.recommend.is_some());
        assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
        assert!(error.message.contains("denied"), "{}", error.message);
        assert!(
            !error.message.contains("LTAIresponseTestKey"),
            "{}",
            error.message
        );
        assert!(
            !error.message.contains("response-test-secret"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_body_that_is_not_ecs_s_is_malformed_with_the_header_s_request_id() {
        let mut headers = HeaderMap::new();
        headers.insert("x-acs-request-id", HeaderValue::from_static("H-1"));
        for (status, body) in [
            (502, Some(&b"<html>bad gateway</html>"[..])),
            (200, Some(&br#"{"Code":"NoRequestId"}"#[..])),
            (500, None),
        ] {
            match interpret(status, &headers, body, SECRETS) {
                Err(EcsError::Malformed {
                    http_status,
                    request_id,
                }) => {
                    assert_eq!(http_status, status);
                    assert_eq!(request_id.as_deref(), Some("H-1"));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_request_id_that_repeats_a_secret_is_left_out() {
        let body = br#"{"RequestId":"LTAIresponseTestKey"}"#;
        assert_eq!(
            interpret(200, &HeaderMap::new(), Some(body), SECRETS).unwrap(),
            ""
        );
    }

    fn throttled(headers: &[(&'static str, &'static str)], code: &str) -> ApiError {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        let body = format!(r#"{{"RequestId":"T-1","Code":"{code}","Message":"m"}}"#);
        match interpret(400, &map, Some(body.as_bytes()), SECRETS) {
            Err(EcsError::Api(api)) => api,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_error_with_x_acs_retry_after_is_throttling_and_closes_the_action() {
        let api = throttled(&[("x-acs-retry-after", "1500")], "InvalidParameter");
        assert_eq!(api.retry_after, Some(Duration::from_millis(1500)));
        assert!(api.closes_the_action());
        assert_eq!(
            EcsError::Api(api).class(),
            crate::aliyun::ErrorClass::Throttled
        );
        let plain = throttled(&[], "InvalidParameter");
        assert!(!plain.closes_the_action());
        assert_eq!(
            EcsError::Api(plain).class(),
            crate::aliyun::ErrorClass::InvalidArgument
        );
        assert!(throttled(&[], "Throttling.User").closes_the_action());
        assert!(throttled(&[], "Throttling.Api").closes_the_action());
        assert!(!throttled(&[], "Throttling.Resource").closes_the_action());
    }

    #[test]
    fn a_throttled_answer_without_retry_after_waits_the_larger_time_left() {
        let api = throttled(
            &[
                (
                    "x-ratelimit-user-api",
                    "Limit:1000,Remain:0,TimeLeft:2000,Reset:1234",
                ),
                (
                    "x-ratelimit-user",
                    "Limit:5000,Remain:0,TimeLeft:3500,Reset:1234",
                ),
                ("retry-after", "9"),
            ],
            "Throttling.User",
        );
        assert_eq!(api.retry_after, Some(Duration::from_millis(3500)));
        assert!(!api.retry_after_sent);
        // x-acs-retry-after wins; TimeLeft is read on throttling only; junk is ignored.
        let acs = throttled(
            &[
                ("x-acs-retry-after", "700"),
                (
                    "x-ratelimit-user-api",
                    "Limit:1,Remain:0,TimeLeft:2000,Reset:1",
                ),
            ],
            "Throttling.User",
        );
        assert_eq!(acs.retry_after, Some(Duration::from_millis(700)));
        let not_throttled = throttled(
            &[(
                "x-ratelimit-user-api",
                "Limit:1,Remain:0,TimeLeft:2000,Reset:1",
            )],
            "InvalidParameter",
        );
        assert_eq!(not_throttled.retry_after, None);
        let junk = throttled(
            &[
                ("x-ratelimit-user-api", "TimeLeft:soon,Remain:0"),
                ("retry-after", "4"),
            ],
            "Throttling",
        );
        assert_eq!(junk.retry_after, Some(Duration::from_secs(4)));
        let huge = throttled(
            &[(
                "x-ratelimit-user",
                "Limit:1,Remain:0,TimeLeft:99999999,Reset:1",
            )],
            "Throttling",
        );
        assert_eq!(huge.retry_after, Some(Duration::from_secs(60)));
    }

    #[test]
    fn retry_after_reads_milliseconds_from_acs_and_seconds_from_http() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        // The Tea SDK's reading: 1500 is 1.5 s, not 25 minutes; and it wins over Retry-After.
        h.insert("x-acs-retry-after", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        for ignored in ["soon", "0", "-5", "1.5", ""] {
            h.insert("x-acs-retry-after", HeaderValue::from_static(ignored));
            assert_eq!(retry_after(&h), Some(Duration::from_secs(3)), "{ignored:?}");
        }
        h.insert("retry-after", HeaderValue::from_static("100000"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        h.insert("x-acs-retry-after", HeaderValue::from_static("100000000"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
    }
}
