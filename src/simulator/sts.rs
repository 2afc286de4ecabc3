//! The STS face: `AssumeRole` (signed and judged like an ECS call) and `AssumeRoleWithOIDC` (an
//! OIDC token instead of a signature), both issuing a temporary credential the ECS face accepts
//! until it expires.

use std::time::Duration;

use serde_json::json;

use super::answer::Answer;
use super::keyring::Keyring;

/// The actions this face answers.
pub(crate) const ACTIONS: [&str; 2] = ["AssumeRole", "AssumeRoleWithOIDC"];

/// What STS needs besides the request.
#[derive(Debug, Clone)]
pub(crate) struct StsSettings {
    /// Longest lifetime of an issued credential (a real role's MaxSessionDuration, made short).
    pub lifetime: Duration,
    /// The OIDC token `AssumeRoleWithOIDC` must present; any non-empty one when `None`.
    pub oidc_token: Option<String>,
}

/// Answers an STS request whose signature (for `AssumeRole`) has been checked: the JSON body, or
/// an error.
pub(crate) fn act(
    params: &[(String, String)],
    keyring: &Keyring,
    settings: &StsSettings,
) -> Result<serde_json::Value, Answer> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |name: &str| Answer::Error {
        status: 400,
        code: "MissingParameter",
        message: format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    };
    let action = get("Action").unwrap_or_default();
    let role_arn = get("RoleArn").ok_or_else(|| missing("RoleArn"))?;
    let session = get("RoleSessionName").ok_or_else(|| missing("RoleSessionName"))?;
    if action == "AssumeRoleWithOIDC" {
        get("OIDCProviderArn").ok_or_else(|| missing("OIDCProviderArn"))?;
        let token = get("OIDCToken").ok_or_else(|| missing("OIDCToken"))?;
        if settings
            .oidc_token
            .as_deref()
            .is_some_and(|want| want != token)
        {
            return Err(Answer::Error {
                status: 400,
                code: "AuthenticationFail.OIDCToken.Invalid",
                message: "The OIDC token is invalid.".into(),
            });
        }
    }
    let requested = get("DurationSeconds")
        .and_then(|d| d.parse::<u64>().ok())
        .map_or(settings.lifetime, Duration::from_secs);
    let role = role_arn.rsplit('/').next().unwrap_or(role_arn);
    let kind = if action == "AssumeRole" {
        "assume"
    } else {
        "oidc"
    };
    let credential = keyring.issue(&format!("{kind}-{role}"), requested.min(settings.lifetime));
    Ok(json!({
        "RequestId": uuid::Uuid::new_v4().to_string().to_uppercase(),
        "AssumedRoleUser": {
            "Arn": format!("{role_arn}/{session}"),
            "AssumedRoleId": format!("3{:017}:{session}", 0),
        },
        "Credentials": temporary_json(&credential),
    }))
}

/// The credential fields every issuing face writes, `Expiration` in UTC to the second.
pub(crate) fn temporary_json(
    credential: &crate::aliyun::credentials::credential::Credential,
) -> serde_json::Value {
    json!({
        "AccessKeyId": credential.access_key_id(),
        "AccessKeySecret": credential.access_key_secret(),
        "SecurityToken": credential.security_token(),
        "Expiration": credential.expiration().map(|at| humantime::format_rfc3339_seconds(at).to_string()),
    })
}
