//! Judges one ECS RPC request the way ECS does: common parameters, credential, timestamp, signature,
//! nonce, then the action itself (StopInvocation, or DescribeInvocations by `describe`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::aliyun::request::{
    ACTION, API_VERSION, DESCRIBE_ACTION, MAX_INSTANCE_IDS, RESULTS_ACTION,
};
use crate::aliyun::signer::{self, v3};

use super::answer::{Answer, error, missing};
use super::describe;
use super::keyring::{Key, Keyring, Refused};
use super::state::{API_NOT_SUPPORTED_REGION, REGIONS, World};

/// A V3-signed request as the judge reads it.
#[derive(Debug)]
pub(crate) struct V3Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The query's parameters, decoded.
    pub params: &'a [(String, String)],
    /// Every header, names lowercase.
    pub headers: &'a [(String, String)],
    /// Lowercase hex SHA-256 of the body received.
    pub body_sha256: &'a str,
}

/// What the judge needs to know besides the request.
#[derive(Debug)]
pub(crate) struct Judge {
    /// The credentials the simulator accepts.
    pub keyring: Keyring,
    /// Allowed clock skew of `Timestamp`.
    pub max_skew: Duration,
}

impl Judge {
    /// A judge accepting the keys in `keyring`.
    pub(crate) fn new(keyring: Keyring) -> Self {
        Self {
            keyring,
            max_skew: Duration::from_secs(15 * 60),
        }
    }

    /// Checks authentication (everything but the action): the order ECS uses.
    pub(crate) fn authenticate(
        &self,
        method: &str,
        params: &[(String, String)],
        now: SystemTime,
        world: &World,
    ) -> Result<(), Answer> {
        let map: HashMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let get = |name: &str| map.get(name).copied();
        if method != "GET" && method != "POST" {
            return Err(error(
                400,
                "UnsupportedHTTPMethod",
                "This http method is not supported.",
            ));
        }
        let signature = get("Signature").ok_or_else(|| {
            error(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        })?;
        let required = |name: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing(name))
        };
        let key_id = required("AccessKeyId")?;
        required("SignatureMethod")?;
        let nonce = required("SignatureNonce")?;
        let timestamp = required("Timestamp")?;
        required("Version")?;
        required("Action")?;
        if get("SignatureMethod") != Some(signer::SIGNATURE_METHOD) {
            return Err(error(
                400,
                "InvalidSignatureMethod",
                "Specified signature method is not supported.",
            ));
        }
        if get("SignatureVersion").is_some_and(|v| v != signer::SIGNATURE_VERSION) {
            return Err(error(
                400,
                "InvalidSignatureVersion",
                "Specified signature version is not supported.",
            ));
        }
        self.check_time(timestamp, now)?;
        let key = self.key_for(key_id, get("SecurityToken"), now)?;
        let unsigned: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let string_to_sign =
            signer::string_to_sign(method, &signer::canonicalized_query(&unsigned));
        if key.signing.sign(&string_to_sign) != signature {
            return Err(error(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
                ),
            ));
        }
        if !world.fresh_nonce(nonce) {
            return Err(error(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }

    /// Checks a V3 (ACS3-HMAC-SHA256) request: the `Authorization` header's shape, the headers that
    /// must be signed, the date, the body's hash, the key and token, the signature recomputed over
    /// exactly the headers `SignedHeaders` names, and the nonce. Returns the action and version,
    /// which V3 sends in headers, for [`Self::act`].
    pub(crate) fn authenticate_v3(
        &self,
        request: &V3Request<'_>,
        now: SystemTime,
        world: &World,
    ) -> Result<(String, String), Answer> {
        let incomplete = || {
            error(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        };
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if request.method != "GET" && request.method != "POST" {
            return Err(error(
                400,
                "UnsupportedHTTPMethod",
                "This http method is not supported.",
            ));
        }
        let authorization = header(v3::AUTHORIZATION).ok_or_else(incomplete)?;
        let (algorithm, fields) = authorization.split_once(' ').ok_or_else(incomplete)?;
        if algorithm != v3::ALGORITHM {
            return Err(error(
                400,
                "InvalidSignatureMethod",
                "Specified signature method is not supported.",
            ));
        }
        let field = |name: &str| {
            fields
                .split(',')
                .find_map(|f| f.trim().strip_prefix(name)?.strip_prefix('='))
                .filter(|v| !v.is_empty())
        };
        let (Some(key_id), Some(signed), Some(signature)) = (
            field("Credential"),
            field("SignedHeaders"),
            field("Signature"),
        ) else {
            return Err(incomplete());
        };
        let signed: Vec<&str> = signed.split(';').collect();
        // Every common header must be there and signed, as ECS requires.
        for name in [
            "host",
            v3::ACTION,
            v3::VERSION,
            v3::DATE,
            v3::NONCE,
            v3::CONTENT_SHA256,
        ]
        .into_iter()
        .chain(header(v3::SECURITY_TOKEN).map(|_| v3::SECURITY_TOKEN))
        .chain(header(v3::ACCESS_KEY_ID).map(|_| v3::ACCESS_KEY_ID))
        {
            if header(name).is_none_or(str::is_empty) || !signed.contains(&name) {
                return Err(incomplete());
            }
        }
        let value = |name: &str| header(name).unwrap_or_default();
        if header(v3::ACCESS_KEY_ID).is_some_and(|id| id != key_id) {
            return Err(incomplete());
        }
        self.check_time(value(v3::DATE), now)?;
        let key = self.key_for(key_id, header(v3::SECURITY_TOKEN), now)?;
        // ECS hashes the body it received: a header that says otherwise signs another request.
        if value(v3::CONTENT_SHA256) != request.body_sha256 {
            return Err(error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation: x-acs-content-sha256 is not the SHA-256 of the request body.",
            ));
        }
        let signed_headers: Vec<(&str, &str)> =
            signed.iter().map(|name| (*name, value(name))).collect();
        let (canonical, names) = v3::canonical_headers(&signed_headers);
        let query: Vec<(&str, &str)> = request
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let canonical_request = v3::canonical_request(
            request.method,
            &signer::canonicalized_query(&query),
            &canonical,
            &names,
            request.body_sha256,
        );
        let string_to_sign = v3::string_to_sign(&canonical_request);
        if key.v3.sign(&string_to_sign) != signature {
            return Err(error(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
                ),
            ));
        }
        if !world.fresh_nonce(value(v3::NONCE)) {
            return Err(error(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok((value(v3::ACTION).to_owned(), value(v3::VERSION).to_owned()))
    }

    /// A request time ECS accepts: well formed, and within the allowed skew of `now`.
    fn check_time(&self, timestamp: &str, now: SystemTime) -> Result<(), Answer> {
        let at = parse_timestamp(timestamp).ok_or_else(|| {
            error(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        })?;
        let skew = match now.duration_since(at) {
            Ok(behind) => behind,
            Err(ahead) => ahead.duration(),
        };
        if skew > self.max_skew {
            return Err(error(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        Ok(())
    }

    /// The key of `key_id` at `now`, when `token` is what it must come with.
    fn key_for(&self, key_id: &str, token: Option<&str>, now: SystemTime) -> Result<Key, Answer> {
        let key = match self.keyring.lookup(key_id, now) {
            Ok(key) => key,
            Err(Refused::Unknown) => {
                return Err(error(
                    404,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                ));
            }
            Err(Refused::Expired) => {
                return Err(error(
                    400,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                ));
            }
        };
        match (key.security_token.as_deref(), token) {
            (Some(_), None) => Err(error(
                400,
                "MissingSecurityToken",
                "SecurityToken is mandatory for this access key.",
            )),
            (Some(want), Some(got)) if want != got => Err(error(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            )),
            (None, Some(_)) => Err(error(
                400,
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed.",
            )),
            _ => Ok(key),
        }
    }

    /// Performs the action of an authenticated request.
    pub(crate) fn act(&self, params: &[(String, String)], world: &World) -> Answer {
        let get = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let action = get("Action");
        match action {
            Some(ACTION | DESCRIBE_ACTION | RESULTS_ACTION) => {}
            _ => {
                return error(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                );
            }
        }
        if get("Version") != Some(API_VERSION) {
            return error(
                400,
                "InvalidVersion",
                "Specified parameter Version is not valid.",
            );
        }
        let Some(region) = get("RegionId").filter(|r| !r.is_empty()) else {
            return missing("RegionId");
        };
        if !REGIONS.contains(&region) {
            return error(
                404,
                "InvalidRegionId.NotFound",
                "The RegionId provided does not exist in our records.",
            );
        }
        if region == API_NOT_SUPPORTED_REGION {
            return error(
                400,
                "RegionId.ApiNotSupported",
                "The api is not supported in this region.",
            );
        }
        if action == Some(DESCRIBE_ACTION) {
            return describe::answer(
                region,
                get("InvokeId"),
                get("InvokeStatus"),
                get("MaxResults"),
                get("NextToken"),
                world,
            );
        }
        if action == Some(RESULTS_ACTION) {
            return describe::results(
                region,
                get("InvokeId"),
                get("MaxResults"),
                get("NextToken"),
                world,
            );
        }
        let Some(invoke_id) = get("InvokeId").filter(|r| !r.is_empty()) else {
            return missing("InvokeId");
        };
        let instances: Vec<String> = params
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("InstanceId.")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .map(|(_, v)| v.clone())
            .collect();
        if instances.len() > MAX_INSTANCE_IDS {
            return error(
                403,
                "InstanceIds.ExceedLimit",
                "The number of instance IDs exceeds the upper limit.",
            );
        }
        let outcome = world.with_invocation(region, invoke_id, |inv| {
            if inv.protected {
                false
            } else {
                inv.stop(&instances, std::time::Instant::now());
                true
            }
        });
        match outcome {
            None => error(
                404,
                "InvalidInvokeId.NotFound",
                "The specified invoke ID does not exist.",
            ),
            Some(false) => error(
                403,
                "Operation.Forbidden",
                "The operation is not permitted.",
            ),
            Some(true) => Answer::Ok,
        }
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` exactly (ECS also takes fractional seconds, which the gateway never sends).
fn parse_timestamp(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b.last() == Some(&b'Z');
    if !shape_ok {
        return None;
    }
    humantime::parse_rfc3339(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::credentials::credential::Credential;

    const NOW: &str = "2026-12-04T08:00:00Z";

    /// Names and values, as a request carries them.
    type Pairs = Vec<(String, String)>;
    /// A request's query parameters and headers.
    type Built = (Pairs, Pairs);
    /// A request made anew for each nonce.
    type Make = Box<dyn Fn(&str) -> Built>;

    /// A V3 request as the gateway signs it, with `change` applied to its headers before signing
    /// and `tamper` after.
    fn v3_request(
        nonce: &str,
        change: impl FnOnce(&mut Pairs),
        tamper: impl FnOnce(&mut Pairs),
    ) -> Built {
        let params = vec![
            ("RegionId".to_owned(), "cn-hangzhou".to_owned()),
            ("InvokeId".to_owned(), "t-demo0001".to_owned()),
        ];
        let mut headers: Vec<(String, String)> = [
            ("host", "ecs.cn-hangzhou.aliyuncs.com"),
            (v3::ACTION, ACTION),
            (v3::VERSION, API_VERSION),
            (v3::DATE, NOW),
            (v3::NONCE, nonce),
            (v3::CONTENT_SHA256, v3::EMPTY_PAYLOAD_SHA256),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        change(&mut headers);
        let key = v3::SigningKey::new("judge-secret");
        let signed = v3::sign(
            "POST",
            &params,
            &headers,
            v3::EMPTY_PAYLOAD_SHA256,
            "LTAIjudge",
            &key,
        );
        headers.push((
            v3::AUTHORIZATION.to_owned(),
            signed.authorization().to_owned(),
        ));
        tamper(&mut headers);
        (params, headers)
    }

    fn judge_v3(
        judge: &Judge,
        world: &World,
        request: Built,
    ) -> Result<(String, String), &'static str> {
        let (params, headers) = request;
        let request = V3Request {
            method: "POST",
            params: &params,
            headers: &headers,
            body_sha256: v3::EMPTY_PAYLOAD_SHA256,
        };
        let now = humantime::parse_rfc3339(NOW).unwrap();
        judge
            .authenticate_v3(&request, now, world)
            .map_err(|answer| match answer {
                Answer::Error { code, .. } => code,
                Answer::Ok | Answer::Json(_) => "ok",
            })
    }

    #[test]
    fn v3_requests_are_judged_as_ecs_judges_them() {
        let judge = Judge::new(Keyring::new(Credential::new(
            "LTAIjudge",
            "judge-secret",
            None,
        )));
        let world = World::seeded(Duration::from_secs(15 * 60));
        let none = |_: &mut Pairs| {};
        assert_eq!(
            judge_v3(&judge, &world, v3_request("n1", none, none)),
            Ok((ACTION.to_owned(), API_VERSION.to_owned()))
        );
        // The same nonce again: a replay.
        assert_eq!(
            judge_v3(&judge, &world, v3_request("n1", none, none)),
            Err("SignatureNonceUsed")
        );
        let set = |name: &'static str, value: &'static str| {
            move |h: &mut Pairs| {
                h.retain(|(n, _)| n != name);
                h.push((name.to_owned(), value.to_owned()));
            }
        };
        let drop_header = |name: &'static str| move |h: &mut Pairs| h.retain(|(n, _)| n != name);
        let cases: Vec<(&str, Make, &str)> = vec![
            (
                "16 minutes late",
                Box::new(move |n| v3_request(n, set(v3::DATE, "2026-12-04T08:16:00Z"), none)),
                "InvalidTimeStamp.Expired",
            ),
            (
                "a malformed date",
                Box::new(move |n| v3_request(n, set(v3::DATE, "2026-12-04 08:00:00"), none)),
                "InvalidTimeStamp.Format",
            ),
            (
                "a body hash that is not the body's",
                Box::new(move |n| v3_request(n, set(v3::CONTENT_SHA256, "00"), none)),
                "SignatureDoesNotMatch",
            ),
            (
                "no nonce",
                Box::new(move |n| v3_request(n, drop_header(v3::NONCE), none)),
                "IncompleteSignature",
            ),
            (
                "no Authorization",
                Box::new(move |n| v3_request(n, none, drop_header(v3::AUTHORIZATION))),
                "IncompleteSignature",
            ),
            (
                "a header changed after signing",
                Box::new(move |n| v3_request(n, none, set(v3::ACTION, "DeleteInstance"))),
                "SignatureDoesNotMatch",
            ),
            (
                "another algorithm",
                Box::new(move |n| {
                    v3_request(n, none, |h| {
                        for (name, value) in h.iter_mut() {
                            if name == v3::AUTHORIZATION {
                                *value = value.replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3");
                            }
                        }
                    })
                }),
                "InvalidSignatureMethod",
            ),
        ];
        for (i, (what, request, code)) in cases.iter().enumerate() {
            let nonce = format!("case-{i}");
            assert_eq!(
                judge_v3(&judge, &world, request(&nonce)),
                Err(*code),
                "{what}"
            );
        }
    }

    #[test]
    fn timestamps_must_be_iso8601_utc() {
        assert!(parse_timestamp("2016-02-23T12:46:24Z").is_some());
        assert!(parse_timestamp("2016-02-23 12:46:24").is_none());
        assert!(parse_timestamp("mock date").is_none());
        assert!(parse_timestamp("2016-02-23T12:46:24+08:00").is_none());
    }
}
