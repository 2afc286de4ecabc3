//! A gRPC call from a client that never reads: raw HTTP/2 with a window of zero, so no DATA frame
//! of the answer can ever reach it, while the connection stays open.

use std::net::SocketAddr;

/// The open call: dropping it closes the stream and the connection.
pub struct Unread {
    _client: h2::client::SendRequest<bytes::Bytes>,
    /// The answer's head (status and headers arrive; no body will).
    pub response: http::Response<h2::RecvStream>,
}

/// Sends `message` to `path` (`/package.Service/Method`) on `addr`, with `authorization: Bearer
/// token` when given, and never reads the answer's body.
pub async fn call(
    addr: SocketAddr,
    path: &str,
    message: &impl prost::Message,
    token: Option<&str>,
) -> Unread {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(frame.into(), true).unwrap();
    let response = response.await.unwrap();
    Unread {
        _client: client,
        response,
    }
}
