//! An upstream that echoes the signed request it received into every string of its answer, as a
//! careless proxy or a hostile server might.

use ecs_gateway::aliyun::signer::percent_encode;
use wiremock::{Respond, ResponseTemplate};

pub const ID: &str = "LTAIhostileTestKey";
pub const SECRET: &str = "hostile-secret-0123456789";
pub const TOKEN: &str = "sts+tok/en==value";

/// An upstream that puts the whole signed request it received into every string of its answer.
pub struct Echo {
    pub status: u16,
    pub request_id: String,
}

impl Respond for Echo {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        // V1 carries the key id, token and signature in the query; V3 in headers: echo both.
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let query = format!(
            "{} {} {} {}",
            request.url.query().unwrap_or_default(),
            header("authorization"),
            header("x-acs-security-token"),
            header("x-acs-accesskey-id"),
        );
        // How a server's string to sign carries it: percent-encoded once more.
        let to_sign = format!("POST&%2F&{}", percent_encode(&query));
        if self.status == 200 {
            let body = serde_json::json!({ "RequestId": self.request_id });
            return ResponseTemplate::new(200).set_body_json(body);
        }
        let body = serde_json::json!({
            "Code": format!("Echo.{query}"),
            "Message": format!("got {query} \u{1b}[31m\r\nX-Injected: 1 to sign {to_sign} {}", "é".repeat(20_000)),
            // The right shape, but it carries the AccessKeyId.
            "RequestId": format!("{ID}-0000"),
            "HostId": format!("{to_sign}{}", "h".repeat(5_000)),
            "Recommend": format!("https://evil.example/troubleshoot?{query}"),
        });
        // Under the gateway's 64 KiB body cap, so that it is parsed, not refused as too large.
        ResponseTemplate::new(self.status)
            .insert_header("retry-after", "100000")
            .insert_header("x-acs-request-id", self.request_id.as_str())
            .set_body_json(body)
    }
}
