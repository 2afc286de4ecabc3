//! Judges one ECS RPC request the way ECS does: common parameters, credential, timestamp, signature,
//! nonce, then the StopInvocation action itself.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::aliyun::request::{ACTION, API_VERSION, MAX_INSTANCE_IDS};
use crate::aliyun::signer;

use super::keyring::{Keyring, Refused};
use super::state::{API_NOT_SUPPORTED_REGION, REGIONS, World};

/// The answer to a request: success, or an ECS error code with its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with a RequestId.
    Ok,
    /// An ECS error.
    Error {
        /// HTTP status.
        status: u16,
        /// ECS code.
        code: &'static str,
        /// ECS message.
        message: String,
    },
}

fn error(status: u16, code: &'static str, message: impl Into<String>) -> Answer {
    Answer::Error {
        status,
        code,
        message: message.into(),
    }
}

fn missing(name: &str) -> Answer {
    error(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
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
        match (key.security_token.as_deref(), get("SecurityToken")) {
            (Some(_), None) => {
                return Err(error(
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this access key.",
                ));
            }
            (Some(want), Some(got)) if want != got => {
                return Err(error(
                    400,
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    "Specified SecurityToken mismatch with the AccessKey.",
                ));
            }
            (None, Some(_)) => {
                return Err(error(
                    400,
                    "InvalidSecurityToken.Malformed",
                    "Specified SecurityToken is malformed.",
                ));
            }
            _ => {}
        }
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

    /// Performs the action of an authenticated request.
    pub(crate) fn act(&self, params: &[(String, String)], world: &World) -> Answer {
        let get = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match get("Action") {
            Some(ACTION) => {}
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
        let Some(invoke_id) = get("InvokeId").filter(|r| !r.is_empty()) else {
            return missing("InvokeId");
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
                inv.stop(&instances);
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

    #[test]
    fn timestamps_must_be_iso8601_utc() {
        assert!(parse_timestamp("2016-02-23T12:46:24Z").is_some());
        assert!(parse_timestamp("2016-02-23 12:46:24").is_none());
        assert!(parse_timestamp("mock date").is_none());
        assert!(parse_timestamp("2016-02-23T12:46:24+08:00").is_none());
    }
}
