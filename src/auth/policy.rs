//! Per-caller policy, from a TOML file: which regions each caller may use, whether it may stop
//! commands there or only read invocations, and at what rate. A caller not in the file may do
//! nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use serde::Deserialize;

use crate::aliyun::regions::Regions;
use crate::aliyun::request::RegionId;
use crate::identity;
use crate::limit::fleet::{Bucket, FleetStore};
use crate::limit::rate::{Rate, local_wait};

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    callers: BTreeMap<String, CallerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    regions: Vec<String>,
    rate: Option<f64>,
    /// `"stop"` (the default: stop and read) or `"read"` (read invocations only).
    access: Option<String>,
}

/// What a call asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    /// Read an invocation (GetInvocation).
    Read,
    /// Stop an invocation (StopInvocation, StopInvocationAndWait).
    Stop,
}

/// What each caller may do.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    callers: HashMap<String, CallerRules>,
}

#[derive(Debug)]
struct CallerRules {
    /// `None`: every region the gateway serves.
    regions: Option<HashSet<String>>,
    rate: Option<CallerLimit>,
    /// Whether the caller may stop, or only read.
    may_stop: bool,
}

/// A caller's rate, with this replica's own limiter for it (used alone without Redis, and while
/// Redis does not answer); cheap to clone.
#[derive(Clone)]
pub(crate) struct CallerLimit {
    rate: Rate,
    local: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for CallerLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.rate)
    }
}

impl CallerLimit {
    /// Takes one call from `caller`'s rate: fleet-wide in `fleet` when given, else locally.
    pub(crate) async fn take(
        &self,
        caller: &str,
        fleet: Option<&FleetStore>,
    ) -> Result<(), Denial> {
        let local = || self.local.check().map_err(local_wait);
        let outcome = match fleet {
            Some(fleet) => {
                fleet
                    .acquire(&Bucket::caller(caller), self.rate, local)
                    .await
            }
            None => local(),
        };
        outcome.map_err(|retry_after| Denial::Rate {
            per_second: self.rate.per_second(),
            retry_after,
        })
    }
}

/// Why the policy refuses a call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Denial {
    /// The caller is not in the policy.
    UnknownCaller,
    /// The caller may not use this region.
    Region,
    /// The caller may read invocations but not stop them.
    ReadOnly,
    /// The caller is over its rate; the next call is allowed after `retry_after`.
    Rate {
        /// The caller's rate, in calls per second.
        per_second: f64,
        /// When the next call would be admitted.
        retry_after: Duration,
    },
}

/// The policy file is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyError {
    /// Not TOML, or not this file's shape.
    #[error("{0}")]
    Syntax(String),
    /// A caller's entry breaks a rule.
    #[error("callers.{caller}: {rule}")]
    Entry {
        /// The caller the entry is for.
        caller: String,
        /// What is wrong.
        rule: String,
    },
}

impl Policy {
    /// Parses the file; every region named must be one the gateway serves. Callers whose rate is
    /// unchanged from `previous` keep their limiter, so a reload does not refill anyone's burst.
    pub(crate) fn parse(
        text: &[u8],
        served: &Regions,
        previous: Option<&Policy>,
    ) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(text)
            .map_err(|_| PolicyError::Syntax("the file is not UTF-8".to_owned()))?;
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
            PolicyError::Syntax(format!("line {line}: {}", e.message()))
        })?;
        let mut callers = HashMap::with_capacity(file.callers.len());
        for (written, entry) in file.callers {
            let caller = identity::policy_name(&written).map_err(|rule| PolicyError::Entry {
                caller: written.clone(),
                rule,
            })?;
            let rule = |rule: String| PolicyError::Entry {
                caller: written.clone(),
                rule,
            };
            if callers.contains_key(&caller) {
                return Err(rule(format!(
                    "names the same caller as another entry ({caller})"
                )));
            }
            let regions = parse_regions(&entry.regions, served).map_err(rule)?;
            let rate = match entry.rate {
                None => None,
                Some(per_second) => {
                    let rate = Rate::new(per_second).map_err(|e| rule(format!("rate: {e}")))?;
                    let kept = previous
                        .and_then(|p| p.callers.get(&caller))
                        .and_then(|c| c.rate.as_ref())
                        .filter(|limit| limit.rate == rate)
                        .map(|limit| limit.local.clone());
                    Some(CallerLimit {
                        rate,
                        local: kept.unwrap_or_else(|| {
                            Arc::new(DefaultDirectRateLimiter::direct(rate.quota()))
                        }),
                    })
                }
            };
            let may_stop = match entry.access.as_deref() {
                None | Some("stop") => true,
                Some("read") => false,
                Some(other) => {
                    return Err(rule(format!(
                        "access: {other:?} must be \"stop\" (stop and read) or \"read\" (read only)"
                    )));
                }
            };
            callers.insert(
                caller,
                CallerRules {
                    regions,
                    rate,
                    may_stop,
                },
            );
        }
        Ok(Self { callers })
    }

    /// Whether `caller` may do `what` in `region`; its rate, if it has one, is left to take.
    pub(crate) fn check(
        &self,
        caller: &str,
        region: &RegionId,
        what: Permission,
    ) -> Result<Option<CallerLimit>, Denial> {
        let rules = self.callers.get(caller).ok_or(Denial::UnknownCaller)?;
        if let Some(allowed) = &rules.regions
            && !allowed.contains(region.as_str())
        {
            return Err(Denial::Region);
        }
        if what == Permission::Stop && !rules.may_stop {
            return Err(Denial::ReadOnly);
        }
        Ok(rules.rate.clone())
    }

    /// Number of callers named.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.callers.len()
    }

    /// Whether the policy names no caller (so refuses everyone).
    pub(crate) fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }
}

/// `["*"]` is every region served; otherwise each must be a region the gateway serves.
fn parse_regions(regions: &[String], served: &Regions) -> Result<Option<HashSet<String>>, String> {
    if regions.iter().any(|r| r == "*") {
        return if regions.len() == 1 {
            Ok(None)
        } else {
            Err("regions: \"*\" means every region and must stand alone".to_owned())
        };
    }
    if regions.is_empty() {
        return Err("regions: empty; name the regions, or [\"*\"] for all".to_owned());
    }
    regions
        .iter()
        .map(|r| {
            let id = RegionId::parse(r).map_err(|rule| format!("regions: {r:?} {rule}"))?;
            if !served.allows(&id) {
                return Err(format!(
                    "regions: {r:?} is not a region this gateway serves (see --regions)"
                ));
            }
            Ok(id.as_str().to_owned())
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: &str) -> RegionId {
        RegionId::parse(id).unwrap()
    }

    const EXAMPLE: &str = r#"
[callers.billing]                            # a token name
regions = ["cn-hangzhou", "cn-shanghai"]     # or ["*"]
rate = 3
[callers."spiffe://prod.example/ns/ops/sa/runner"]
regions = ["*"]
"#;

    /// The region checks, then one call from the rate, decided locally.
    async fn admit(policy: &Policy, caller: &str, region: &RegionId) -> Result<(), Denial> {
        match policy.check(caller, region, Permission::Stop)? {
            Some(limit) => limit.take(caller, None).await,
            None => Ok(()),
        }
    }

    #[tokio::test]
    async fn the_example_of_the_readme_means_what_it_says() {
        let policy = Policy::parse(EXAMPLE.as_bytes(), &Regions::public(), None).unwrap();
        assert_eq!(policy.len(), 2);
        let runner = "spiffe://prod.example/ns/ops/sa/runner";
        assert_eq!(
            admit(&policy, runner, &region("eu-central-1")).await,
            Ok(())
        );
        assert_eq!(
            admit(&policy, "token:billing", &region("cn-hangzhou")).await,
            Ok(())
        );
        assert_eq!(
            admit(&policy, "token:billing", &region("cn-beijing")).await,
            Err(Denial::Region)
        );
        assert_eq!(
            admit(&policy, "token:payroll", &region("cn-hangzhou")).await,
            Err(Denial::UnknownCaller)
        );
    }

    #[tokio::test]
    async fn a_rate_admits_its_burst_then_says_how_long_to_wait() {
        let policy = Policy::parse(EXAMPLE.as_bytes(), &Regions::public(), None).unwrap();
        let hz = region("cn-hangzhou");
        for _ in 0..3 {
            assert_eq!(admit(&policy, "token:billing", &hz).await, Ok(()));
        }
        match admit(&policy, "token:billing", &hz).await {
            Err(Denial::Rate {
                per_second,
                retry_after,
            }) => {
                assert_eq!(per_second, 3.0);
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_millis(334),
                    "{retry_after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A reload with the same rate keeps the exhausted bucket; a new rate starts afresh.
        let same = Policy::parse(EXAMPLE.as_bytes(), &Regions::public(), Some(&policy)).unwrap();
        assert!(matches!(
            admit(&same, "token:billing", &hz).await,
            Err(Denial::Rate { .. })
        ));
        let faster = EXAMPLE.replace("rate = 3", "rate = 4");
        let faster = Policy::parse(faster.as_bytes(), &Regions::public(), Some(&same)).unwrap();
        assert_eq!(admit(&faster, "token:billing", &hz).await, Ok(()));
    }

    #[tokio::test]
    async fn a_certificate_named_like_a_token_caller_or_a_spiffe_id_is_neither() {
        let policy = Policy::parse(EXAMPLE.as_bytes(), &Regions::public(), None).unwrap();
        let hz = region("cn-hangzhou");
        for impostor in [
            "cn:billing",
            "dns:billing",
            "cn:spiffe://prod.example/ns/ops/sa/runner",
            "dns:spiffe://prod.example/ns/ops/sa/runner",
        ] {
            assert_eq!(
                admit(&policy, impostor, &hz).await,
                Err(Denial::UnknownCaller),
                "{impostor}"
            );
        }
        let typed = "[callers.\"cn:billing\"]\nregions = [\"*\"]\n[callers.\"token:billing\"]\nregions = [\"cn-beijing\"]\n";
        let policy = Policy::parse(typed.as_bytes(), &Regions::public(), None).unwrap();
        assert_eq!(admit(&policy, "cn:billing", &hz).await, Ok(()));
        assert_eq!(
            admit(&policy, "token:billing", &hz).await,
            Err(Denial::Region)
        );
        let twice = "[callers.billing]\nregions = [\"*\"]\n[callers.\"token:billing\"]\nregions = [\"*\"]\n";
        let error = Policy::parse(twice.as_bytes(), &Regions::public(), None).unwrap_err();
        assert!(
            error.to_string().contains("names the same caller"),
            "{error}"
        );
    }

    #[test]
    fn unusable_entries_name_the_caller_and_the_rule() {
        let served = Regions::public();
        let cases = [
            (
                "[callers.a]\nregions = [\"cn-hangzou\"]\n",
                "callers.a: regions: \"cn-hangzou\" is not a region this gateway serves",
            ),
            (
                "[callers.a]\nregions = [\"Cn-Hangzhou\"]\n",
                "callers.a: regions: \"Cn-Hangzhou\"",
            ),
            (
                "[callers.a]\nregions = [\"*\", \"cn-hangzhou\"]\n",
                "must stand alone",
            ),
            ("[callers.a]\nregions = []\n", "regions: empty"),
            (
                "[callers.a]\nregions = [\"*\"]\nrate = 0\n",
                "callers.a: rate: must be",
            ),
            (
                "[callers.a]\nregions = [\"*\"]\nrate = -1.5\n",
                "rate: must be",
            ),
            (
                "[callers.a]\nregions = [\"*\"]\nrate = 2e6\n",
                "rate: must be",
            ),
            ("[callers.a]\nrate = 5\n", "line 1: missing field `regions`"),
            (
                "[callers.a]\nregions = [\"*\"]\nrates = 5\n",
                "unknown field `rates`",
            ),
            ("[caller.a]\nregions = [\"*\"]\n", "unknown field `caller`"),
            (
                "[callers.a]\nregions = [\"*\"]\n[callers.b\n",
                "line 3: unclosed table",
            ),
        ];
        for (text, expected) in cases {
            let err = Policy::parse(text.as_bytes(), &served, None).unwrap_err();
            assert!(err.to_string().contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_read_only_caller_may_read_but_not_stop_and_other_access_values_are_refused() {
        let text = "[callers.dash]\nregions = [\"*\"]\naccess = \"read\"\n[callers.ops]\nregions = [\"*\"]\naccess = \"stop\"\n";
        let policy = Policy::parse(text.as_bytes(), &Regions::public(), None).unwrap();
        let hz = region("cn-hangzhou");
        assert!(policy.check("token:dash", &hz, Permission::Read).is_ok());
        assert!(matches!(
            policy.check("token:dash", &hz, Permission::Stop),
            Err(Denial::ReadOnly)
        ));
        assert!(policy.check("token:ops", &hz, Permission::Stop).is_ok());
        assert!(policy.check("token:ops", &hz, Permission::Read).is_ok());
        let bad = "[callers.x]\nregions = [\"*\"]\naccess = \"admin\"\n";
        let error = Policy::parse(bad.as_bytes(), &Regions::public(), None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("callers.x: access: \"admin\""),
            "{error}"
        );
    }

    #[test]
    fn an_empty_file_allows_nobody() {
        let policy = Policy::parse(b"", &Regions::public(), None).unwrap();
        assert!(policy.is_empty());
        assert!(matches!(
            policy.check("billing", &region("cn-hangzhou"), Permission::Stop),
            Err(Denial::UnknownCaller)
        ));
    }
}
