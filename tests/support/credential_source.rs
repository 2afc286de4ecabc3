//! A credentials URI that answers whatever the test says: a temporary credential expiring when
//! told, a malformed one, an answer of 100 MB, one that never ends, or none at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the next request gets.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A credential with these fields, expiring this far from now (negative: in the past).
    Credential {
        id: String,
        secret: String,
        expires_in: i64,
    },
    /// `Content-Length: 100 MB` and that much body.
    Huge,
    /// A body that never ends.
    Endless,
    /// The request is read and never answered.
    Hang,
}

impl Answer {
    /// A well-formed credential valid for `secs` seconds (negative: expired that long ago).
    pub fn valid_for(secs: i64) -> Self {
        Answer::Credential {
            id: "STS.hostile-source".to_owned(),
            secret: "hostile-source-secret".to_owned(),
            expires_in: secs,
        }
    }
}

/// The fake source on 127.0.0.1.
pub struct CredentialSource {
    /// Its URL, for `ALIBABA_CLOUD_CREDENTIALS_URI`.
    pub url: String,
    answer: Arc<Mutex<Answer>>,
}

impl CredentialSource {
    /// Starts answering `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/credentials", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(answer));
        let shared = answer.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = shared.lock().unwrap().clone();
                tokio::spawn(respond(stream, answer));
            }
        });
        Self { url, answer }
    }

    /// Changes what later requests get.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

async fn respond(mut stream: TcpStream, answer: Answer) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let chunk = vec![b'x'; 64 * 1024];
    match answer {
        Answer::Credential {
            id,
            secret,
            expires_in,
        } => {
            let now = SystemTime::now();
            let at = if expires_in >= 0 {
                now + Duration::from_secs(expires_in as u64)
            } else {
                now - Duration::from_secs(expires_in.unsigned_abs())
            };
            let body = serde_json::json!({
                "Code": "Success",
                "AccessKeyId": id,
                "AccessKeySecret": secret,
                "SecurityToken": "hostile-source-token",
                "Expiration": humantime::format_rfc3339_seconds(at).to_string(),
            })
            .to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Answer::Huge => {
            let size = 100 * 1024 * 1024;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            for _ in 0..size / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Answer::Endless => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            while stream.write_all(&chunk).await.is_ok() {}
        }
        Answer::Hang => std::future::pending().await,
    }
}
