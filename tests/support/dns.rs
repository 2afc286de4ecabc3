//! A loopback DNS server over UDP for resolver tests: a name with a label starting `nx-` gets
//! NXDOMAIN, `fail-` gets SERVFAIL, `silent-` no answer at all (a DNS outage), anything else an A
//! record of 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;

/// A running fake DNS server and the number of queries it has answered.
pub struct FakeDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicU64>,
}

const NXDOMAIN: u8 = 3;
const SERVFAIL: u8 = 2;

impl FakeDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = answer(&buf[..n]) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        Self { addr, queries }
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }
}

/// Builds the response to one query (RFC 1035 §4.1), or `None` for a packet that is not one.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then QTYPE and QCLASS.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        if len == 0 {
            break;
        }
        labels.push(query.get(at + 1..at + 1 + len)?);
        at += 1 + len;
    }
    let question_end = at + 1 + 4;
    let question = query.get(12..question_end)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    if labels.iter().any(|l| l.starts_with(b"silent-")) {
        return None;
    }
    let (rcode, with_address) = if labels.iter().any(|l| l.starts_with(b"nx-")) {
        (NXDOMAIN, false)
    } else if labels.iter().any(|l| l.starts_with(b"fail-")) {
        (SERVFAIL, false)
    } else {
        (0, qtype == 1)
    };
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[..2]); // ID
    out.extend_from_slice(&[0x81, 0x80 | rcode]); // QR, RD, RA, RCODE
    out.extend_from_slice(&[0, 1, 0, u8::from(with_address), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if with_address {
        // Name by pointer to the question, type A, class IN, TTL 60, 127.0.0.1.
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
