//! A gRPC call made by hand over HTTP/2, for what typed clients cannot send or do not show:
//! broken frames, and the exact size of the trailers an error comes back with.

use std::net::SocketAddr;

/// What a refused call came back with ("trailers-only": the status is in the headers).
#[derive(Debug)]
pub struct Answer {
    /// `grpc-status`.
    pub status: String,
    /// `grpc-message`, still percent-encoded.
    pub message: String,
    /// Bytes of every header field name and value: what a client's metadata limit counts.
    pub header_bytes: usize,
}

/// Sends `payload` as the one message of a StopInvocation call.
pub async fn call(addr: SocketAddr, payload: &[u8]) -> Answer {
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(payload);
    let response = http
        .post(format!(
            "http://{addr}/ecsgateway.v1.CloudAssistantService/StopInvocation"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Answer {
        status: header("grpc-status"),
        message: header("grpc-message"),
        header_bytes: headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum(),
    }
}

/// Encodes a request message as the gateway's clients do.
pub fn encode(request: &ecs_gateway::pb::StopInvocationRequest) -> Vec<u8> {
    prost::Message::encode_to_vec(request)
}
