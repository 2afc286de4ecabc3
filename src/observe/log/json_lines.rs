//! The JSON lines json-subscriber writes are the lines tracing-subscriber's JSON format wrote:
//! the same keys and values, for the shapes of event the gateway logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// What a call goes through: a span whose fields are recorded as the call goes (one twice), an
/// event inside it, one with it as explicit parent from outside, a nested span, and one outside
/// any span; each line parsed, without its timestamp.
fn lines(
    layer: impl FnOnce(Capture) -> Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>,
) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(layer(capture.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "StopInvocation",
            peer = tracing::field::Empty,
            caller = tracing::field::Empty,
            region = "cn-hangzhou",
            instances = tracing::field::Empty,
            latency_us = tracing::field::Empty,
            grpc_code = tracing::field::Empty,
            ok = tracing::field::Empty,
        );
        tracing::info!(parent: &span, "before any record");
        span.record("peer", tracing::field::display("127.0.0.1:5000"));
        span.record("caller", "spiffe://prod/ns/a \"quoted\" ünï\n");
        span.record("instances", 3_u64);
        span.record("instances", 4_u64);
        span.record("latency_us", 1234_u64);
        span.record("ok", false);
        span.record("grpc_code", tracing::field::debug(tonic::Code::NotFound));
        {
            let _entered = span.enter();
            tracing::warn!(
                error = "no such invocation",
                attempt = 2_i64,
                "call refused"
            );
            let inner = tracing::debug_span!("attempt", n = 1_u64);
            let _inner = inner.enter();
            tracing::info!(ratio = 0.5_f64, "inside the attempt");
        }
        tracing::info!(parent: &span, "call finished");
        tracing::info!(outside = true, "no span");
    });
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let fields = value.as_object_mut().unwrap();
            assert!(fields.remove("timestamp").is_some(), "{line}");
            value
        })
        .collect()
}

fn theirs() -> Vec<serde_json::Value> {
    lines(|w| {
        tracing_subscriber::fmt::layer()
            .with_writer(w)
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    })
}

#[test]
fn with_nested_spans_json_subscriber_writes_the_lines_tracing_subscriber_wrote() {
    let ours = lines(|w| super::json_layer(w, true).boxed());
    let theirs = theirs();
    assert_eq!(ours.len(), 5);
    assert_eq!(theirs.len(), 5);
    // One difference: for an event given its span as parent from outside it (the audit line),
    // tracing-subscriber lists the spans entered where it was logged (none), json-subscriber the
    // event's own span.
    for (i, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        let (mut ours, mut theirs) = (ours.clone(), theirs.clone());
        if i == 0 || i == 3 {
            assert_eq!(theirs["spans"], serde_json::json!([]));
            assert_eq!(ours["spans"], serde_json::json!([ours["span"]]));
            ours.as_object_mut().unwrap().remove("spans");
            theirs.as_object_mut().unwrap().remove("spans");
        }
        assert_eq!(ours, theirs, "line {i}");
    }
    assert_eq!(
        ours[1]["span"]["caller"],
        "spiffe://prod/ns/a \"quoted\" ünï\n"
    );
    assert_eq!(ours[1]["span"]["instances"], 4);
    assert_eq!(ours[3]["span"]["grpc_code"], "NotFound");
    assert_eq!(ours[2]["spans"][1]["name"], "attempt");
}

#[test]
fn without_nested_spans_the_lines_are_the_same_but_for_the_span_list() {
    let ours = lines(|w| super::json_layer(w, false).boxed());
    let theirs = theirs();
    assert_eq!(ours.len(), theirs.len());
    for (i, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        let mut theirs = theirs.clone();
        theirs.as_object_mut().unwrap().remove("spans");
        assert!(ours.get("spans").is_none(), "line {i}: {ours}");
        assert_eq!(ours, &theirs, "line {i}");
    }
    assert_eq!(ours[3]["span"]["latency_us"], 1234);
}
