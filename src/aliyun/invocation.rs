//! What DescribeInvocations says of one invocation, read leniently from ECS's JSON: the aggregate
//! status and every instance's, and which statuses are end states.

use serde::{Deserialize, Serialize};

/// The longest status, code or time text kept from an answer, in bytes; ECS's are far shorter.
pub(crate) const MAX_SHORT: usize = 128;
/// The longest `ErrorInfo` kept, in bytes.
pub(crate) const MAX_ERROR_INFO: usize = 1024;

/// Statuses after which nothing more happens to an execution (or to the invocation as a whole).
/// Anything else — the documented Pending, Scheduled, Running and Stopping, and any status ECS adds
/// later — is treated as still moving: a wait that does not know a status keeps waiting rather
/// than report an end that has not come.
const FINAL: &[&str] = &[
    "Success",
    "Failed",
    "PartialFailed",
    "Stopped",
    "Finished",
    "Invalid",
    "Aborted",
    "Timeout",
    "Error",
    "Cancelled",
    "Terminated",
];

/// Whether `status` is an end state.
pub fn is_final(status: &str) -> bool {
    FINAL.contains(&status)
}

/// Whether a stop can still change an execution in `status` (it has not started, or is running).
pub fn stoppable(status: &str) -> bool {
    matches!(status, "Pending" | "Scheduled" | "Running")
}

/// One invocation as ECS reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationState {
    /// The invoke ID.
    pub invoke_id: String,
    /// The aggregate `InvocationStatus`.
    pub status: String,
    /// Every instance, in ECS's order.
    pub instances: Vec<InstanceState>,
}

/// One instance's execution of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceState {
    /// The instance ID.
    pub instance_id: String,
    /// Its `InvocationStatus`.
    pub status: String,
    /// The command's exit code, when it ended.
    pub exit_code: Option<i64>,
    /// ECS's `ErrorCode`, when the execution failed.
    pub error_code: String,
    /// ECS's `ErrorInfo`.
    pub error_info: String,
    /// When the execution started (ISO 8601, as ECS wrote it).
    pub start_time: String,
    /// When it finished.
    pub finish_time: String,
    /// When it was stopped.
    pub stop_time: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Invocations {
    #[serde(default)]
    invocation: Vec<WireInvocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireInvocation {
    #[serde(default)]
    invoke_id: String,
    #[serde(default)]
    invocation_status: Option<String>,
    // The older field, for answers that carry only it.
    #[serde(default)]
    invoke_status: Option<String>,
    #[serde(default)]
    invoke_instances: Option<WireInstances>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireInstances {
    #[serde(default)]
    invoke_instance: Vec<WireInstance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireInstance {
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    invocation_status: Option<String>,
    #[serde(default)]
    instance_invoke_status: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_info: Option<String>,
    #[serde(default)]
    start_time: Option<String>,
    // DescribeInvocationResults names it FinishedTime.
    #[serde(default, alias = "FinishedTime")]
    finish_time: Option<String>,
    #[serde(default)]
    stop_time: Option<String>,
}

/// At most `max` bytes of `text` (whole characters), control characters dropped: bytes, so that
/// the size of what a wait sends has a bound (see `wait::MAX_WAIT_INSTANCES_LIMIT`).
fn kept(text: Option<String>, max: usize) -> String {
    let mut kept = String::new();
    for c in text.unwrap_or_default().chars().filter(|c| !c.is_control()) {
        if kept.len() + c.len_utf8() > max {
            break;
        }
        kept.push(c);
    }
    kept
}

/// One page of a DescribeInvocations listing: the invocations on it, in ECS's order, and the
/// token of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The invocations listed.
    pub invocations: Vec<InvocationState>,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PageBody {
    #[serde(default)]
    invocations: Option<Invocations>,
    #[serde(default)]
    next_token: Option<String>,
}

/// The invocation `invoke_id` in a DescribeInvocations answer; `None` when ECS lists no such
/// invocation (ECS answers an unknown invoke ID with an empty list, not an error).
pub fn parse(body: &[u8], invoke_id: &str) -> Result<Option<InvocationState>, String> {
    let body: PageBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(body
        .invocations
        .into_iter()
        .flat_map(|i| i.invocation)
        .find(|i| i.invoke_id == invoke_id)
        .map(state))
}

/// Every invocation on one page of a DescribeInvocations listing, and the next page's token.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let body: PageBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(Page {
        invocations: body
            .invocations
            .into_iter()
            .flat_map(|i| i.invocation)
            .map(state)
            .collect(),
        next_token: token(body.next_token),
    })
}

/// ECS's next-page token; `None` on the last page, which ECS marks with an empty one.
fn token(next: Option<String>) -> Option<String> {
    next.filter(|t| !t.is_empty())
        .map(|t| kept(Some(t), MAX_SHORT))
}

/// One page of DescribeInvocationResults: one execution record per instance, and the next page's
/// token (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultsPage {
    /// The executions on the page.
    pub instances: Vec<InstanceState>,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResultsBody {
    #[serde(default)]
    invocation: Option<ResultsInvocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResultsInvocation {
    #[serde(default)]
    invocation_results: Option<WireResults>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireResults {
    #[serde(default)]
    invocation_result: Vec<WireInstance>,
}

/// Every execution on one page of a DescribeInvocationResults answer, and the next page's token.
pub fn parse_results(body: &[u8]) -> Result<ResultsPage, String> {
    let body: ResultsBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let invocation = body.invocation.ok_or("no Invocation")?;
    Ok(ResultsPage {
        instances: invocation
            .invocation_results
            .map(|r| r.invocation_result)
            .unwrap_or_default()
            .into_iter()
            .map(instance)
            .collect(),
        next_token: token(invocation.next_token),
    })
}

fn state(found: WireInvocation) -> InvocationState {
    InvocationState {
        invoke_id: kept(Some(found.invoke_id), MAX_SHORT),
        status: kept(found.invocation_status.or(found.invoke_status), MAX_SHORT),
        instances: found
            .invoke_instances
            .map(|i| i.invoke_instance)
            .unwrap_or_default()
            .into_iter()
            .map(instance)
            .collect(),
    }
}

fn instance(i: WireInstance) -> InstanceState {
    InstanceState {
        instance_id: kept(Some(i.instance_id), MAX_SHORT),
        status: kept(i.invocation_status.or(i.instance_invoke_status), MAX_SHORT),
        exit_code: i.exit_code,
        error_code: kept(i.error_code, MAX_SHORT),
        error_info: kept(i.error_info, MAX_ERROR_INFO),
        start_time: kept(i.start_time, MAX_SHORT),
        finish_time: kept(i.finish_time, MAX_SHORT),
        stop_time: kept(i.stop_time, MAX_SHORT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of ECS's documented DescribeInvocations answer, fields the gateway ignores included.
    const ANSWER: &str = r#"{
      "RequestId": "E69EF3CC-94CD-42E7-8926-F133B86387C0", "TotalCount": 1, "PageSize": 10,
      "PageNumber": 1, "NextToken": "",
      "Invocations": {"Invocation": [{
        "InvokeId": "t-7d2a745b412b4601b2d47f6a768d", "InvocationStatus": "Stopping",
        "InvokeStatus": "Running", "CommandName": "test", "Repeats": 1,
        "InvokeInstances": {"InvokeInstance": [
          {"InstanceId": "i-bp1i7gg30r52z2em****", "InvocationStatus": "Stopped",
           "InstanceInvokeStatus": "Stopped", "ExitCode": 0, "ErrorCode": "", "ErrorInfo": "",
           "StartTime": "2019-12-20T06:15:55Z", "FinishTime": "", "StopTime": "2019-12-20T06:15:56Z",
           "Repeats": 0, "Dropped": 0},
          {"InstanceId": "i-b", "InvocationStatus": "Failed", "ExitCode": 1,
           "ErrorCode": "InstanceNotRunning", "ErrorInfo": "the instance\nwas stopped"},
          {"InstanceId": "i-c", "InstanceInvokeStatus": "Running"}
        ]}
      }]}
    }"#;

    #[test]
    fn every_instance_and_the_aggregate_are_read() {
        let state = parse(ANSWER.as_bytes(), "t-7d2a745b412b4601b2d47f6a768d")
            .unwrap()
            .unwrap();
        assert_eq!(state.status, "Stopping");
        let summary: Vec<(&str, &str)> = state
            .instances
            .iter()
            .map(|i| (i.instance_id.as_str(), i.status.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("i-bp1i7gg30r52z2em****", "Stopped"),
                ("i-b", "Failed"),
                ("i-c", "Running")
            ]
        );
        assert_eq!(state.instances[0].stop_time, "2019-12-20T06:15:56Z");
        assert_eq!(state.instances[1].exit_code, Some(1));
        assert_eq!(state.instances[1].error_info, "the instancewas stopped");
    }

    #[test]
    fn an_unknown_invocation_is_none_and_garbage_is_an_error() {
        assert_eq!(parse(ANSWER.as_bytes(), "t-other").unwrap(), None);
        assert_eq!(
            parse(br#"{"RequestId":"x","TotalCount":0}"#, "t-1").unwrap(),
            None
        );
        assert!(parse(b"<html>", "t-1").is_err());
    }

    #[test]
    fn only_documented_end_states_are_final() {
        for status in [
            "Pending",
            "Scheduled",
            "Running",
            "Stopping",
            "Resuming",
            "",
        ] {
            assert!(!is_final(status), "{status}");
        }
        for status in [
            "Success",
            "Failed",
            "PartialFailed",
            "Stopped",
            "Finished",
            "Cancelled",
        ] {
            assert!(is_final(status), "{status}");
        }
        assert!(stoppable("Pending") && stoppable("Running") && !stoppable("Stopping"));
    }

    #[test]
    fn a_listing_page_holds_every_invocation_and_the_next_token() {
        let page = parse_page(ANSWER.as_bytes()).unwrap();
        assert_eq!(page.invocations.len(), 1);
        assert_eq!(
            page.invocations[0].invoke_id,
            "t-7d2a745b412b4601b2d47f6a768d"
        );
        assert_eq!(page.invocations[0].instances.len(), 3);
        assert_eq!(page.next_token, None, "an empty token is the last page");
        let more = parse_page(
            br#"{"NextToken":"50","Invocations":{"Invocation":[
            {"InvokeId":"t-1","InvocationStatus":"Running"},
            {"InvokeId":"t-2","InvokeStatus":"Stopping"}]}}"#,
        )
        .unwrap();
        let listed: Vec<(&str, &str)> = more
            .invocations
            .iter()
            .map(|i| (i.invoke_id.as_str(), i.status.as_str()))
            .collect();
        assert_eq!(listed, [("t-1", "Running"), ("t-2", "Stopping")]);
        assert_eq!(more.next_token.as_deref(), Some("50"));
        assert!(parse_page(b"<html>").is_err());
    }

    #[test]
    fn a_results_page_holds_each_execution_and_the_next_token() {
        // The shape of ECS's documented DescribeInvocationResults answer.
        let page = parse_results(
            br#"{"RequestId":"r","Invocation":{"PageSize":50,"TotalCount":2,"NextToken":"t2",
            "InvocationResults":{"InvocationResult":[
              {"InvokeId":"t-1","InstanceId":"i-a","InvocationStatus":"Stopped",
               "InvokeRecordStatus":"Finished","ExitCode":0,"StopTime":"2026-12-08T04:00:00Z"},
              {"InvokeId":"t-1","InstanceId":"i-b","InvocationStatus":"Failed","ExitCode":2,
               "ErrorCode":"CommandFailed","FinishedTime":"2026-12-08T04:00:01Z"}]}}}"#,
        )
        .unwrap();
        let summary: Vec<(&str, &str, Option<i64>)> = page
            .instances
            .iter()
            .map(|i| (i.instance_id.as_str(), i.status.as_str(), i.exit_code))
            .collect();
        assert_eq!(
            summary,
            [("i-a", "Stopped", Some(0)), ("i-b", "Failed", Some(2))]
        );
        assert_eq!(page.instances[1].finish_time, "2026-12-08T04:00:01Z");
        assert_eq!(page.instances[0].stop_time, "2026-12-08T04:00:00Z");
        assert_eq!(page.next_token.as_deref(), Some("t2"));
        assert!(parse_results(br#"{"RequestId":"r"}"#).is_err());
    }
}
