//! The simulator's DescribeInvocations: a region's invocations (one when `InvokeId` is given, those
//! in one aggregate status when `InvokeStatus` is), each with every instance's status, paged with
//! `MaxResults` and `NextToken` as ECS pages.

use serde_json::{Map, Value, json};

use super::answer::{Answer, error};
use super::state::World;

/// ECS's default page size for DescribeInvocations.
const DEFAULT_MAX_RESULTS: usize = 10;
/// ECS's largest page.
const MAX_RESULTS: usize = 50;

/// The answer to an authenticated DescribeInvocations in a known region.
pub(crate) fn answer(
    region: &str,
    invoke_id: Option<&str>,
    invoke_status: Option<&str>,
    max_results: Option<&str>,
    next_token: Option<&str>,
    world: &World,
) -> Answer {
    let (page_size, start) = match paging(max_results, next_token) {
        Ok(paging) => paging,
        Err(refused) => return refused,
    };
    let wanted = invoke_status.filter(|s| !s.is_empty());
    let mut listed = world.list(region, invoke_id.filter(|id| !id.is_empty()));
    listed.retain(|(_, invocation)| wanted.is_none_or(|s| invocation.aggregate() == s));
    let total = listed.len();
    let page: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(page_size)
        .map(|(id, invocation)| {
            let cap = world.instance_list_cap().unwrap_or(usize::MAX);
            let instances: Vec<Value> = invocation
                .executions
                .iter()
                .take(cap)
                .map(|(instance, status)| {
                    // Only an execution that ran to its own end has an exit code.
                    let exit_code = match status.as_ecs() {
                        "Success" | "Finished" => Some(0),
                        "Failed" => Some(1),
                        _ => None,
                    };
                    json!({
                        "InstanceId": instance,
                        "InvocationStatus": status.as_ecs(),
                        "InstanceInvokeStatus": status.as_ecs(),
                        "ExitCode": exit_code,
                        "ErrorCode": "",
                        "ErrorInfo": "",
                        "Repeats": 1,
                    })
                })
                .collect();
            json!({
                "InvokeId": id,
                "InvocationStatus": invocation.aggregate(),
                "InvokeStatus": invocation.aggregate(),
                "RepeatMode": if invocation.periodic { "Period" } else { "Once" },
                "InvokeInstances": { "InvokeInstance": instances },
            })
        })
        .collect();
    let next = start + page.len();
    let mut fields = Map::new();
    fields.insert("TotalCount".into(), json!(total));
    fields.insert("MaxResults".into(), json!(page_size));
    fields.insert(
        "NextToken".into(),
        json!(if next < total {
            next.to_string()
        } else {
            String::new()
        }),
    );
    fields.insert("Invocations".into(), json!({ "Invocation": page }));
    Answer::Json(fields)
}

/// The answer to an authenticated DescribeInvocationResults in a known region: the executions of
/// `invoke_id`, one record per instance, paged with `MaxResults` and `NextToken`, never cut.
pub(crate) fn results(
    region: &str,
    invoke_id: Option<&str>,
    max_results: Option<&str>,
    next_token: Option<&str>,
    world: &World,
) -> Answer {
    let (page_size, start) = match paging(max_results, next_token) {
        Ok(paging) => paging,
        Err(refused) => return refused,
    };
    let records: Vec<Value> = world
        .list(region, invoke_id.filter(|id| !id.is_empty()))
        .iter()
        .flat_map(|(id, invocation)| {
            invocation.executions.iter().map(move |(instance, status)| {
                json!({
                    "InvokeId": id,
                    "InstanceId": instance,
                    "InvocationStatus": status.as_ecs(),
                    "InvokeRecordStatus": if status.is_final() { "Finished" } else { "Running" },
                    "ErrorCode": "",
                    "ErrorInfo": "",
                })
            })
        })
        .collect();
    let total = records.len();
    let page: Vec<Value> = records.into_iter().skip(start).take(page_size).collect();
    let next = start + page.len();
    let mut fields = Map::new();
    fields.insert(
        "Invocation".into(),
        json!({
            "TotalCount": total,
            "MaxResults": page_size,
            "NextToken": if next < total { next.to_string() } else { String::new() },
            "InvocationResults": { "InvocationResult": page },
        }),
    );
    Answer::Json(fields)
}

/// The page size and the first item's index that `MaxResults` and `NextToken` ask for, as ECS
/// checks them; the refusal when they are not valid.
fn paging(max_results: Option<&str>, next_token: Option<&str>) -> Result<(usize, usize), Answer> {
    let page_size = match max_results.map(str::parse::<usize>) {
        None => DEFAULT_MAX_RESULTS,
        Some(Ok(n)) if (1..=MAX_RESULTS).contains(&n) => n,
        Some(_) => {
            return Err(error(
                400,
                "InvalidParam.MaxResults",
                "The specified parameter MaxResults is not valid.",
            ));
        }
    };
    let start = match next_token
        .filter(|t| !t.is_empty())
        .map(str::parse::<usize>)
    {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Err(error(
                400,
                "InvalidParam.NextToken",
                "The specified parameter NextToken is not valid.",
            ));
        }
    };
    Ok((page_size, start))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(answer: Answer) -> Map<String, Value> {
        match answer {
            Answer::Json(fields) => fields,
            other => panic!("not a listing: {other:?}"),
        }
    }

    #[test]
    fn one_invocation_with_every_instance() {
        let world = World::seeded(Duration::from_secs(60));
        let answer = fields(answer(
            "cn-hangzhou",
            Some("t-demo1000"),
            None,
            None,
            None,
            &world,
        ));
        assert_eq!(answer["TotalCount"], 1);
        let invocation = &answer["Invocations"]["Invocation"][0];
        assert_eq!(invocation["InvokeId"], "t-demo1000");
        let instances = invocation["InvokeInstances"]["InvokeInstance"]
            .as_array()
            .unwrap();
        assert_eq!(instances.len(), 1000);
        assert_eq!(instances[9]["InvocationStatus"], "Success");
        assert_eq!(instances[6]["InvocationStatus"], "Failed");
        assert_eq!(instances[6]["ExitCode"], 1);
        assert_eq!(instances[0]["ExitCode"], Value::Null);
    }

    #[test]
    fn pages_follow_next_token_to_the_end() {
        let world = World::seeded(Duration::from_secs(60));
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = fields(answer(
                "cn-hangzhou",
                None,
                None,
                Some("4"),
                Some(&token),
                &world,
            ));
            for invocation in page["Invocations"]["Invocation"].as_array().unwrap() {
                seen.push(invocation["InvokeId"].as_str().unwrap().to_owned());
            }
            token = page["NextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(matches!(
            answer("cn-hangzhou", None, None, Some("51"), None, &world),
            Answer::Error {
                code: "InvalidParam.MaxResults",
                ..
            }
        ));
    }

    #[test]
    fn a_status_lists_only_the_invocations_in_it() {
        use super::super::state::{ExecutionStatus, Invocation};
        let world = World::seeded(Duration::from_secs(60));
        world.insert(
            "cn-hangzhou",
            "t-done",
            Invocation::new(&[("i-x", ExecutionStatus::Success)]),
        );
        let ids = |status: &str| -> Vec<String> {
            let page = fields(answer(
                "cn-hangzhou",
                None,
                Some(status),
                Some("50"),
                None,
                &world,
            ));
            page["Invocations"]["Invocation"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["InvokeId"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids("Success"), ["t-done"]);
        let running = ids("Running");
        assert_eq!(running.len(), 11, "{running:?}");
        assert!(!running.contains(&"t-done".to_owned()));
        assert!(ids("Stopping").is_empty());
    }

    #[test]
    fn a_cut_listing_leaves_instances_out_and_results_page_every_one() {
        let world = World::seeded(Duration::from_secs(60));
        world.set_instance_list_cap(Some(100));
        let listed = fields(answer(
            "cn-hangzhou",
            Some("t-demo1000"),
            None,
            None,
            None,
            &world,
        ));
        let instances = listed["Invocations"]["Invocation"][0]["InvokeInstances"]["InvokeInstance"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(instances, 100);
        let mut seen = 0;
        let mut token = String::new();
        loop {
            let page = fields(results(
                "cn-hangzhou",
                Some("t-demo1000"),
                Some("50"),
                Some(&token),
                &world,
            ));
            let invocation = &page["Invocation"];
            seen += invocation["InvocationResults"]["InvocationResult"]
                .as_array()
                .unwrap()
                .len();
            token = invocation["NextToken"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen, 1000);
    }
}
