//! Span fields for JSON log lines, kept as the JSON object tracing-subscriber expects but grown by
//! appending: its own `JsonFields` parses the span's object and serializes it again for every
//! `Span::record`, and the call span records about ten fields per call (measured: 14 µs of CPU per
//! call at c=50, `bench/README.md`). Values are written by tracing-subscriber's own `JsonVisitor`,
//! so a line reads exactly as before.

use std::fmt;

use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{JsonFields, JsonVisitor, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// A [`FormatFields`] for the JSON format whose `add_fields` appends to the span's object.
#[derive(Debug, Default)]
pub(crate) struct AppendingJsonFields;

impl<'writer> FormatFields<'writer> for AppendingJsonFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        JsonFields::new().format_fields(writer, fields)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        let mut visitor = JsonVisitor::new(&mut added);
        fields.record(&mut visitor);
        visitor.finish()?;
        append(&mut current.fields, &added);
        Ok(())
    }
}

/// Merges the JSON object `added` into the JSON object `current` (or makes it `current`), by
/// splicing text. A field recorded twice appears twice; a JSON reader keeps the last value, the
/// value tracing-subscriber would have kept.
fn append(current: &mut String, added: &str) {
    let Some(inner) = added.strip_prefix('{').and_then(|a| a.strip_suffix('}')) else {
        return;
    };
    if inner.is_empty() {
        return;
    }
    if !current.ends_with('}') {
        current.clear();
        current.push('{');
    } else {
        current.pop();
        if current.len() > 1 {
            current.push(',');
        }
    }
    current.push_str(inner);
    current.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_merged_by_splicing() {
        let mut current = String::new();
        append(&mut current, r#"{"a":1}"#);
        assert_eq!(current, r#"{"a":1}"#);
        append(&mut current, "{}");
        assert_eq!(current, r#"{"a":1}"#);
        append(&mut current, r#"{"b":"x,}"}"#);
        assert_eq!(current, r#"{"a":1,"b":"x,}"}"#);
        let mut empty = "{}".to_owned();
        append(&mut empty, r#"{"c":true}"#);
        assert_eq!(empty, r#"{"c":true}"#);
        let parsed: serde_json::Value = serde_json::from_str(&current).unwrap();
        assert_eq!(parsed, serde_json::json!({"a": 1, "b": "x,}"}));
    }
}

#[cfg(test)]
mod same_lines {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

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

    /// What the gateway's call span goes through, logged with `fields` as the field formatter.
    fn lines<F>(fields: F) -> Vec<serde_json::Value>
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(capture.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(fields);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "StopInvocation",
                peer = tracing::field::Empty,
                caller = tracing::field::Empty,
                region = "cn-hangzhou",
                instances = tracing::field::Empty,
                latency_us = tracing::field::Empty,
                grpc_code = tracing::field::Empty,
            );
            tracing::info!(parent: &span, "before any record");
            span.record("peer", tracing::field::display("127.0.0.1:5000"));
            span.record("caller", "spiffe://prod/ns/a \"quoted\"");
            span.record("instances", 3_u64);
            span.record("latency_us", 1234_u64);
            span.record("grpc_code", tracing::field::debug(tonic::Code::NotFound));
            let _entered = span.enter();
            tracing::info!(error = "no such invocation", "call refused");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                value.as_object_mut().unwrap().remove("timestamp");
                value
            })
            .collect()
    }

    #[test]
    fn lines_are_those_of_tracing_subscribers_own_json_fields() {
        let ours = lines(AppendingJsonFields);
        let theirs = lines(JsonFields::new());
        assert_eq!(ours.len(), 2);
        assert_eq!(ours, theirs);
        assert_eq!(ours[1]["span"]["caller"], "spiffe://prod/ns/a \"quoted\"");
        assert_eq!(ours[1]["span"]["instances"], 3);
    }
}
