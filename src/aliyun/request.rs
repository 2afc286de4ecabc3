//! The typed ECS requests the client accepts (StopInvocation, DescribeInvocations), and the action
//! parameters they become.

use std::borrow::Cow;
use std::fmt;

/// The ECS API action this gateway forwards.
pub(crate) const ACTION: &str = "StopInvocation";
/// The ECS API version of `ACTION`.
pub(crate) const API_VERSION: &str = "2014-05-26";
/// The most instance IDs one StopInvocation accepts (`InstanceId.1` … `InstanceId.50`).
pub(crate) const MAX_INSTANCE_IDS: usize = 50;
/// The longest region ID accepted: a DNS label holds at most 63 bytes.
pub(crate) const MAX_REGION_ID_LEN: usize = 63;

/// A region ID that is one valid DNS label, safe to put into a host name: lowercase letters, digits
/// and `-`, starting and ending with a letter or digit, not all digits (which resolvers read as an
/// IPv4 address), at most 63 characters. The only way to build one is [`RegionId::parse`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RegionId(String);

impl RegionId {
    /// Checks the rule and wraps the value; the error is the rule, phrased for a caller.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let bytes = value.as_bytes();
        let edge_ok =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if value.is_empty() {
            return Err("is required");
        }
        if value.len() > MAX_REGION_ID_LEN {
            return Err("must be at most 63 characters");
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err("must contain only lowercase ASCII letters, digits and '-'");
        }
        if !edge_ok(bytes.first()) || !edge_ok(bytes.last()) {
            return Err("must start and end with a lowercase letter or digit");
        }
        if bytes.iter().all(u8::is_ascii_digit) {
            return Err("must contain a letter");
        }
        Ok(Self(value.to_owned()))
    }

    /// The region ID as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ECS actions the gateway calls, by name.
pub(crate) const ACTIONS: [&str; 3] = [ACTION, DESCRIBE_ACTION, RESULTS_ACTION];

/// One ECS RPC action with its own parameters; the client adds the common ones and signs.
pub trait Action: Send + Sync {
    /// The action's name, e.g. `StopInvocation`.
    const NAME: &'static str;
    /// The largest answer read, in bytes.
    const MAX_ANSWER_BYTES: usize;
    /// The region the request goes to; it also chooses the endpoint host.
    fn region(&self) -> &RegionId;
    /// How many parameters [`Action::push_params`] adds, at most.
    fn param_count(&self) -> usize;
    /// Appends the action's own parameters (not the common ones) to `out`.
    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>);
}

/// The owner parameters ECS actions take, each passed through when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    /// `OwnerId`.
    pub owner_id: Option<i64>,
    /// `OwnerAccount`.
    pub owner_account: Option<String>,
    /// `ResourceOwnerId`.
    pub resource_owner_id: Option<i64>,
    /// `ResourceOwnerAccount`.
    pub resource_owner_account: Option<String>,
}

impl Owner {
    /// Appends the parameters that are set.
    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>) {
        let mut opt = |name: &'static str, value: Option<Cow<'a, str>>| {
            if let Some(value) = value {
                out.push((Cow::Borrowed(name), value));
            }
        };
        opt("OwnerId", self.owner_id.map(|v| Cow::Owned(v.to_string())));
        opt(
            "OwnerAccount",
            self.owner_account.as_deref().map(Cow::Borrowed),
        );
        opt(
            "ResourceOwnerId",
            self.resource_owner_id.map(|v| Cow::Owned(v.to_string())),
        );
        opt(
            "ResourceOwnerAccount",
            self.resource_owner_account.as_deref().map(Cow::Borrowed),
        );
    }
}

/// A validated StopInvocation: what the gateway will ask ECS to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopInvocation {
    /// Region of the invocation; also chooses the default endpoint host.
    pub region_id: RegionId,
    /// The invocation (command run) to stop.
    pub invoke_id: String,
    /// Instances to stop it on; empty means all of them.
    pub instance_ids: Vec<String>,
    /// The owner parameters.
    pub owner: Owner,
}

/// A parameter name and value, borrowed where possible.
pub type Param<'a> = (Cow<'static, str>, Cow<'a, str>);

impl Action for StopInvocation {
    const NAME: &'static str = ACTION;
    // ECS answers a stop with a RequestId only.
    const MAX_ANSWER_BYTES: usize = 64 * 1024;

    fn region(&self) -> &RegionId {
        &self.region_id
    }

    fn param_count(&self) -> usize {
        6 + self.instance_ids.len()
    }

    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>) {
        out.push((
            Cow::Borrowed("RegionId"),
            Cow::Borrowed(self.region_id.as_str()),
        ));
        out.push((Cow::Borrowed("InvokeId"), Cow::Borrowed(&self.invoke_id)));
        for (i, id) in self.instance_ids.iter().enumerate() {
            out.push((
                Cow::Owned(format!("InstanceId.{}", i + 1)),
                Cow::Borrowed(id),
            ));
        }
        self.owner.push_params(out);
    }
}

/// The ECS API action that reads invocations back.
pub(crate) const DESCRIBE_ACTION: &str = "DescribeInvocations";

/// DescribeInvocations for one invocation, every instance with it, without command output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DescribeInvocation {
    /// Region of the invocation.
    pub region_id: RegionId,
    /// The invocation to read.
    pub invoke_id: String,
    /// The owner parameters.
    pub owner: Owner,
}

impl Action for DescribeInvocation {
    const NAME: &'static str = DESCRIBE_ACTION;
    // One invocation with every instance's status: ~400 bytes an instance, and a margin.
    const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

    fn region(&self) -> &RegionId {
        &self.region_id
    }

    fn param_count(&self) -> usize {
        8
    }

    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>) {
        out.push((
            Cow::Borrowed("RegionId"),
            Cow::Borrowed(self.region_id.as_str()),
        ));
        out.push((Cow::Borrowed("InvokeId"), Cow::Borrowed(&self.invoke_id)));
        out.push((Cow::Borrowed("IncludeOutput"), Cow::Borrowed("false")));
        self.owner.push_params(out);
    }
}

/// The most invocations one listing page asks for: ECS's largest page.
pub(crate) const LIST_PAGE_SIZE: usize = 50;

/// Appends the paging of a read: ECS's largest page, from `next_token` when there is one.
fn push_page<'a>(out: &mut Vec<Param<'a>>, next_token: Option<&'a str>) {
    out.push((
        Cow::Borrowed("MaxResults"),
        Cow::Owned(LIST_PAGE_SIZE.to_string()),
    ));
    if let Some(token) = next_token {
        out.push((Cow::Borrowed("NextToken"), Cow::Borrowed(token)));
    }
}

/// One page of DescribeInvocations without `InvokeId`: a region's invocations in one status, each
/// with every instance, without command output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInvocations {
    /// The region listed.
    pub region_id: RegionId,
    /// The aggregate status listed (`InvokeStatus`).
    pub status: String,
    /// Where the page starts; `None` for the first.
    pub next_token: Option<String>,
    /// The owner parameters.
    pub owner: Owner,
}

impl Action for ListInvocations {
    const NAME: &'static str = DESCRIBE_ACTION;
    // Fifty invocations with their instances; a page past this fails, and the reads go one by one.
    const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

    fn region(&self) -> &RegionId {
        &self.region_id
    }

    fn param_count(&self) -> usize {
        9
    }

    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>) {
        out.push((
            Cow::Borrowed("RegionId"),
            Cow::Borrowed(self.region_id.as_str()),
        ));
        out.push((Cow::Borrowed("InvokeStatus"), Cow::Borrowed(&self.status)));
        out.push((Cow::Borrowed("IncludeOutput"), Cow::Borrowed("false")));
        push_page(out, self.next_token.as_deref());
        self.owner.push_params(out);
    }
}

/// The ECS API action that reads an invocation's execution records one by one.
pub(crate) const RESULTS_ACTION: &str = "DescribeInvocationResults";

/// One page of DescribeInvocationResults for one invocation: its executions, 50 at most, for
/// instances a DescribeInvocations answer left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationResults {
    /// The region of the invocation.
    pub region_id: RegionId,
    /// The invocation.
    pub invoke_id: String,
    /// Where the page starts; `None` for the first.
    pub next_token: Option<String>,
    /// The owner parameters.
    pub owner: Owner,
}

impl Action for InvocationResults {
    const NAME: &'static str = RESULTS_ACTION;
    // Fifty execution records without output, and a margin.
    const MAX_ANSWER_BYTES: usize = 1024 * 1024;

    fn region(&self) -> &RegionId {
        &self.region_id
    }

    fn param_count(&self) -> usize {
        8
    }

    fn push_params<'a>(&'a self, out: &mut Vec<Param<'a>>) {
        out.push((
            Cow::Borrowed("RegionId"),
            Cow::Borrowed(self.region_id.as_str()),
        ));
        out.push((Cow::Borrowed("InvokeId"), Cow::Borrowed(&self.invoke_id)));
        push_page(out, self.next_token.as_deref());
        self.owner.push_params(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_rule_refuses_host_steering() {
        for bad in [
            "",
            "cn-hangzhou.evil.example",
            "cn/../x",
            "a b",
            "-cn",
            "cn-",
            "CN-HANGZHOU",
            "cn_hz",
            "2130706433",
            "0",
        ] {
            assert!(RegionId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(RegionId::parse(&"a".repeat(64)).is_err());
        for good in [
            "cn-hangzhou",
            "ap-southeast-1",
            "a",
            "0x7f000001",
            &"a".repeat(63),
        ] {
            assert!(RegionId::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn params_number_instances_from_one_and_skip_unset_owners() {
        let req = StopInvocation {
            region_id: RegionId::parse("cn-hangzhou").unwrap(),
            invoke_id: "t-1".into(),
            instance_ids: vec!["i-a".into(), "i-b".into()],
            owner: Owner {
                owner_id: Some(7),
                resource_owner_account: Some("acct".into()),
                ..Owner::default()
            },
        };
        let mut params = Vec::new();
        req.push_params(&mut params);
        let flat: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            flat,
            [
                ("RegionId", "cn-hangzhou"),
                ("InvokeId", "t-1"),
                ("InstanceId.1", "i-a"),
                ("InstanceId.2", "i-b"),
                ("OwnerId", "7"),
                ("ResourceOwnerAccount", "acct"),
            ]
        );
    }

    #[test]
    fn reads_page_by_ecs_largest_page_and_pass_the_token_only_when_given() {
        let flat = |params: &[Param<'_>]| -> Vec<(String, String)> {
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let listing = ListInvocations {
            region_id: RegionId::parse("cn-hangzhou").unwrap(),
            status: "Stopping".into(),
            next_token: None,
            owner: Owner::default(),
        };
        let mut params = Vec::new();
        listing.push_params(&mut params);
        assert_eq!(
            flat(&params),
            [
                pair("RegionId", "cn-hangzhou"),
                pair("InvokeStatus", "Stopping"),
                pair("IncludeOutput", "false"),
                pair("MaxResults", "50"),
            ]
        );
        let results = InvocationResults {
            region_id: RegionId::parse("cn-hangzhou").unwrap(),
            invoke_id: "t-1".into(),
            next_token: Some("100".into()),
            owner: Owner {
                owner_id: Some(7),
                ..Owner::default()
            },
        };
        let mut params = Vec::new();
        results.push_params(&mut params);
        assert_eq!(
            flat(&params),
            [
                pair("RegionId", "cn-hangzhou"),
                pair("InvokeId", "t-1"),
                pair("MaxResults", "50"),
                pair("NextToken", "100"),
                pair("OwnerId", "7"),
            ]
        );
    }
}
