//! Turns the wire requests into typed ECS requests ([`StopInvocation`], [`DescribeInvocation`]), or
//! lists every violation.

use std::collections::HashSet;

use crate::aliyun::request::{
    DescribeInvocation, MAX_INSTANCE_IDS, Owner, RegionId, StopInvocation,
};
use crate::pb::{GetInvocationRequest, StopInvocationAndWaitRequest, StopInvocationRequest};

/// The longest invoke or instance ID accepted.
pub(crate) const MAX_ID_LEN: usize = 128;
/// The longest `owner_account` or `resource_owner_account` accepted.
pub(crate) const MAX_ACCOUNT_LEN: usize = 128;

/// One broken rule: the request field (a path such as `instance_ids[3]`) and what it must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path in the request message.
    pub field: String,
    /// The rule, phrased for the caller.
    pub description: String,
}

/// The most violations listed; the rest are only counted, so a hostile request cannot make the
/// answer (trailers) or the log line large.
pub(crate) const MAX_LISTED: usize = 10;
/// The most violations named in the one-line message; the full list is in `listed`.
const MAX_IN_MESSAGE: usize = 3;

/// The rules the request broke, in field order: the first [`MAX_LISTED`], and how many more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", summary(self))]
pub struct Violations {
    /// The first violations, never empty.
    pub listed: Vec<Violation>,
    /// Violations found past `listed`.
    pub more: usize,
}

fn summary(violations: &Violations) -> String {
    let shown = violations.listed.iter().take(MAX_IN_MESSAGE);
    let mut text = shown
        .map(|v| format!("{} {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    let unnamed = violations.total() - violations.listed.len().min(MAX_IN_MESSAGE);
    if unnamed > 0 {
        text.push_str(&format!("; and {unnamed} more"));
    }
    text
}

impl Violations {
    /// Every violation found, listed or not.
    pub fn total(&self) -> usize {
        self.listed.len() + self.more
    }
}

/// Checks an ID made of ASCII letters, digits, `-` and `_`, at most `MAX_ID_LEN` long.
fn id_rule(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is required");
    }
    if value.len() > MAX_ID_LEN {
        return Err("must be at most 128 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("must contain only ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Checks an account name: at most `MAX_ACCOUNT_LEN` printable ASCII characters, so that the
/// signed URL stays bounded and no control character reaches ECS or a log.
fn account_rule(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_ACCOUNT_LEN {
        return Err("must be at most 128 characters");
    }
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err("must contain only printable ASCII characters");
    }
    Ok(())
}

/// The fields the three requests share, borrowed from whichever was sent.
struct Fields<'a> {
    region_id: &'a str,
    invoke_id: &'a str,
    /// `None` for a request without instances (a read).
    instance_ids: Option<&'a [String]>,
    owner: Owner,
}

/// What [`check`] found valid.
struct Checked {
    region_id: RegionId,
    owner: Owner,
}

/// Checks `fields`, listing every violation; at most `max_instances` instance IDs.
fn check(fields: Fields<'_>, max_instances: usize) -> Result<Checked, Violations> {
    let mut listed = Vec::new();
    let mut more = 0;
    let mut violate = |field: String, description: &str| {
        if listed.len() < MAX_LISTED {
            listed.push(Violation {
                field,
                description: description.to_owned(),
            });
        } else {
            more += 1;
        }
    };

    let region_id = RegionId::parse(fields.region_id)
        .map_err(|rule| violate("region_id".into(), rule))
        .ok();
    if let Err(rule) = id_rule(fields.invoke_id) {
        violate("invoke_id".into(), rule);
    }
    let instance_ids = fields.instance_ids.unwrap_or_default();
    // The count first: past the limit the elements are not worth checking one by one.
    if instance_ids.len() > max_instances {
        violate(
            "instance_ids".into(),
            &format!("must list at most {max_instances} instance IDs"),
        );
    } else {
        let mut seen = HashSet::with_capacity(instance_ids.len());
        for (i, id) in instance_ids.iter().enumerate() {
            if let Err(rule) = id_rule(id) {
                violate(format!("instance_ids[{i}]"), rule);
            } else if !seen.insert(id.as_str()) {
                violate(
                    format!("instance_ids[{i}]"),
                    "duplicates an earlier instance ID",
                );
            }
        }
    }

    for (field, value) in [
        ("owner_account", &fields.owner.owner_account),
        (
            "resource_owner_account",
            &fields.owner.resource_owner_account,
        ),
    ] {
        if let Some(Err(rule)) = value.as_deref().map(account_rule) {
            violate(field.into(), rule);
        }
    }

    match region_id {
        Some(region_id) if listed.is_empty() => Ok(Checked {
            region_id,
            owner: fields.owner,
        }),
        _ => Err(Violations { listed, more }),
    }
}

/// The shared fields of a wire request (all three name them alike); `$instances` is
/// `Some(&req.instance_ids)` or `None`.
macro_rules! fields {
    ($req:expr, $instances:expr) => {
        Fields {
            region_id: &$req.region_id,
            invoke_id: &$req.invoke_id,
            instance_ids: $instances,
            owner: Owner {
                owner_id: $req.owner_id,
                owner_account: $req.owner_account.clone(),
                resource_owner_id: $req.resource_owner_id,
                resource_owner_account: $req.resource_owner_account.clone(),
            },
        }
    };
}

/// The stop `checked` and the request's IDs describe.
fn stop(checked: Checked, invoke_id: &str, instance_ids: &[String]) -> StopInvocation {
    StopInvocation {
        region_id: checked.region_id,
        invoke_id: invoke_id.to_owned(),
        instance_ids: instance_ids.to_vec(),
        owner: checked.owner,
    }
}

/// Validates a unary stop (at most ECS's 50 instances), reporting all violations at once.
pub fn stop_invocation(req: &StopInvocationRequest) -> Result<StopInvocation, Violations> {
    let checked = check(fields!(req, Some(&req.instance_ids)), MAX_INSTANCE_IDS)?;
    Ok(stop(checked, &req.invoke_id, &req.instance_ids))
}

/// Validates a stop-and-wait on at most `max_instances` instances; the stop it returns may name
/// more than ECS's 50, and is sent in chunks.
pub(crate) fn stop_and_wait(
    req: &StopInvocationAndWaitRequest,
    max_instances: usize,
) -> Result<StopInvocation, Violations> {
    let checked = check(fields!(req, Some(&req.instance_ids)), max_instances)?;
    Ok(stop(checked, &req.invoke_id, &req.instance_ids))
}

/// Validates a read of one invocation.
pub(crate) fn get_invocation(req: &GetInvocationRequest) -> Result<DescribeInvocation, Violations> {
    let checked = check(fields!(req, None), 0)?;
    Ok(DescribeInvocation {
        region_id: checked.region_id,
        invoke_id: req.invoke_id.clone(),
        owner: checked.owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(region: &str, invoke: &str, instances: &[&str]) -> StopInvocationRequest {
        StopInvocationRequest {
            region_id: region.into(),
            invoke_id: invoke.into(),
            instance_ids: instances.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn fields(err: &Violations) -> Vec<&str> {
        err.listed.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn a_good_request_passes_with_owner_fields_untouched() {
        let mut req = request(
            "cn-hangzhou",
            "t-7d2a745b412b4601b2d47f6a768d",
            &["i-bp67acfmxazb4p"],
        );
        req.owner_id = Some(-1);
        req.owner_account = Some("any thing at all".into());
        let typed = stop_invocation(&req).unwrap();
        assert_eq!(typed.region_id.as_str(), "cn-hangzhou");
        assert_eq!(typed.owner.owner_id, Some(-1));
        assert_eq!(
            typed.owner.owner_account.as_deref(),
            Some("any thing at all")
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let err = stop_invocation(&request("cn/../x", "", &["i-a", "", "i-a", "i b"])).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "region_id",
                "invoke_id",
                "instance_ids[1]",
                "instance_ids[2]",
                "instance_ids[3]"
            ]
        );
        assert_eq!(err.listed[2].description, "is required");
        assert_eq!(
            err.listed[3].description,
            "duplicates an earlier instance ID"
        );
    }

    #[test]
    fn at_most_ten_violations_are_listed_and_the_rest_counted() {
        let ids: Vec<String> = (0..40).map(|i| format!("bad id {i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let err = stop_invocation(&request("", "", &refs)).unwrap_err();
        assert_eq!(err.listed.len(), MAX_LISTED);
        assert_eq!(err.total(), 42);
        let text = err.to_string();
        assert!(text.ends_with("; and 39 more"), "{text}");
        assert!(text.len() < 200, "{text}");
    }

    #[test]
    fn fifty_one_instances_are_refused_fifty_pass() {
        let ids: Vec<String> = (0..51).map(|i| format!("i-{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let err = stop_invocation(&request("cn-hangzhou", "t-1", &refs)).unwrap_err();
        assert_eq!(fields(&err), ["instance_ids"]);
        assert!(stop_invocation(&request("cn-hangzhou", "t-1", &refs[..50])).is_ok());
    }

    #[test]
    fn a_wait_may_target_up_to_its_own_limit_and_a_read_names_no_instances() {
        let ids: Vec<String> = (0..120).map(|i| format!("i-{i}")).collect();
        let wait = StopInvocationAndWaitRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: "t-1".into(),
            instance_ids: ids.clone(),
            ..Default::default()
        };
        assert_eq!(stop_and_wait(&wait, 1000).unwrap().instance_ids.len(), 120);
        let err = stop_and_wait(&wait, 100).unwrap_err();
        assert_eq!(fields(&err), ["instance_ids"]);
        assert_eq!(
            err.listed[0].description,
            "must list at most 100 instance IDs"
        );
        let read = GetInvocationRequest {
            region_id: "cn-hangzhou".into(),
            invoke_id: String::new(),
            owner_account: Some("x\ty".into()),
            ..Default::default()
        };
        let err = get_invocation(&read).unwrap_err();
        assert_eq!(fields(&err), ["invoke_id", "owner_account"]);
    }

    #[test]
    fn owner_accounts_are_bounded_printable_ascii() {
        let mut req = request("cn-hangzhou", "t-1", &[]);
        req.owner_account = Some("a".repeat(129));
        req.resource_owner_account = Some("team\nb".into());
        let err = stop_invocation(&req).unwrap_err();
        assert_eq!(fields(&err), ["owner_account", "resource_owner_account"]);
        assert_eq!(err.listed[0].description, "must be at most 128 characters");
        assert_eq!(
            err.listed[1].description,
            "must contain only printable ASCII characters"
        );
        req.owner_account = Some("a".repeat(128));
        req.resource_owner_account = Some("team a/b+c&d=e".into());
        assert!(stop_invocation(&req).is_ok());
    }

    #[test]
    fn long_ids_are_refused() {
        let long = "t".repeat(129);
        let err = stop_invocation(&request("cn-hangzhou", &long, &[])).unwrap_err();
        assert_eq!(err.listed[0].description, "must be at most 128 characters");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_accepted_regions_are_host_safe(
            region in ".{0,80}", invoke in ".{0,140}", instances in prop::collection::vec(".{0,10}", 0..60)
        ) {
            let refs: Vec<&str> = instances.iter().map(String::as_str).collect();
            if let Ok(typed) = stop_invocation(&request(&region, &invoke, &refs)) {
                let r = typed.region_id.as_str();
                prop_assert!(r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            }
        }
    }
}
