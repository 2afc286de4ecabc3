//! The ECS instance metadata face: IMDSv2 session tokens (`PUT /latest/api/token`), the instance's
//! RAM role name, and that role's temporary credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::keyring::Keyring;
use super::sts::temporary_json;

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// The metadata service's state: the role and the session tokens handed out.
#[derive(Debug)]
pub(crate) struct Metadata {
    role: String,
    require_token: bool,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// An answer: HTTP status and body.
pub(crate) type Reply = (u16, String);

impl Metadata {
    /// A service for an instance with RAM role `role`; IMDSv1 (no token) refused when `require_token`.
    pub(crate) fn new(role: impl Into<String>, require_token: bool) -> Self {
        Self {
            role: role.into(),
            require_token,
            tokens: Mutex::default(),
        }
    }

    /// Answers `method path` with the `X-aliyun-ecs-metadata-token(-ttl-seconds)` headers given.
    pub(crate) fn answer(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        ttl: Option<&str>,
        keyring: &Keyring,
        lifetime: Duration,
    ) -> Reply {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, expiry| *expiry > now);
        if path == TOKEN_PATH {
            if method != "PUT" {
                return (405, "method not allowed".into());
            }
            let Some(ttl) = ttl
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| (1..=21600).contains(t))
            else {
                return (
                    400,
                    "missing or bad X-aliyun-ecs-metadata-token-ttl-seconds".into(),
                );
            };
            let token = uuid::Uuid::new_v4().simple().to_string();
            tokens.insert(token.clone(), now + Duration::from_secs(ttl));
            return (200, token);
        }
        match token {
            Some(token) if !tokens.contains_key(token) => return (401, "invalid token".into()),
            None if self.require_token => return (401, "token required".into()),
            _ => {}
        }
        drop(tokens);
        if method != "GET" {
            return (405, "method not allowed".into());
        }
        match path.strip_prefix(ROLES_PATH) {
            Some("") => (200, self.role.clone()),
            Some(role) if role == self.role => {
                let credential = keyring.issue(&format!("ecs-{role}"), lifetime);
                let mut body = temporary_json(&credential);
                body["Code"] = json!("Success");
                body["LastUpdated"] = json!(
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
                );
                (200, body.to_string())
            }
            _ => (404, "not found".into()),
        }
    }
}
