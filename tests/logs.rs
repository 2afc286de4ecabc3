//! JSON logs carry what operators need and never a secret, token, signature or signed URL — even
//! at TRACE, where reqwest and hyper log too.

mod support;

use ecs_gateway::testing::observe::LogFormat;
use support::log_capture::{assert_no_secrets, run_scenario};

/// The top-level keys of a JSON object in order, duplicates kept (serde_json's map keeps only the
/// last of a repeated key, which would hide the very fault this looks for).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

#[tokio::test]
async fn json_logs_hold_the_call_span_and_no_secret() {
    let (logs, request_id) = run_scenario(LogFormat::Json).await;
    assert_no_secrets(&logs);
    // Log pipelines drop or mangle lines with a repeated key; "message" is the one at risk.
    let mut checked = 0;
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let Keys(keys) = serde_json::from_str(line).expect("every JSON line is an object");
        let messages = keys.iter().filter(|k| *k == "message").count();
        assert!(messages <= 1, "{line}");
        checked += 1;
    }
    assert!(
        logs.contains("\"error\":") && checked > 20,
        "failed calls were logged and checked: {logs}"
    );
    let finished: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "call finished")
        .collect();
    assert_eq!(finished.len(), 1, "{logs}");
    let span = &finished[0]["span"];
    assert_eq!(span["region"], "cn-hangzhou");
    assert_eq!(span["invoke_id"], "t-demo0003");
    assert_eq!(span["instances"], 0);
    assert_eq!(span["request_id"], request_id.as_str());
    assert_eq!(span["grpc_code"], "Ok");
    assert!(span["latency_us"].as_u64().is_some(), "{span}");
}
