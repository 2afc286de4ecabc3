//! The simulator's world: regions, invocations and the nonces seen recently.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Regions the simulator knows, as ECS lists them.
pub(crate) const REGIONS: &[&str] = &[
    "cn-hangzhou",
    "cn-shanghai",
    "cn-beijing",
    "cn-shenzhen",
    "cn-qingdao",
    "cn-zhangjiakou",
    "cn-huhehaote",
    "cn-wulanchabu",
    "cn-chengdu",
    "cn-heyuan",
    "cn-guangzhou",
    "cn-hongkong",
    "ap-southeast-1",
    "ap-southeast-3",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "us-west-1",
    "us-east-1",
    "eu-central-1",
    "eu-west-1",
    "me-east-1",
    "me-central-1",
    "cn-nanjing",
];
/// A known region where StopInvocation answers `RegionId.ApiNotSupported`.
pub(crate) const API_NOT_SUPPORTED_REGION: &str = "cn-nanjing";
/// The seeded demo invocation that is protected (`Operation.Forbidden`).
pub(crate) const PROTECTED_DEMO_INVOCATION: &str = "t-demo0009";
/// How long a running execution takes to stop, unless a test sets another delay.
pub(crate) const DEFAULT_STOP_DELAY: Duration = Duration::from_secs(2);
/// The seeded demo invocation that runs periodically.
pub(crate) const PERIODIC_DEMO_INVOCATION: &str = "t-demo0005";

/// Where one instance's execution of an invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// Not started yet; a stop cancels it.
    Pending,
    /// Started; a stop moves it to `Stopping`.
    Running,
    /// Being stopped; `Stopped` once the world's stop delay has passed.
    Stopping,
    /// Stopped while it ran.
    Stopped,
    /// Cancelled by a stop before it started.
    Cancelled,
    /// Ended on its own (a periodic or an older run), before any stop.
    Finished,
    /// Ended on its own with exit code 0.
    Success,
    /// Ended on its own with a failure.
    Failed,
}

impl ExecutionStatus {
    /// The name ECS gives the status (`InvocationStatus`).
    pub fn as_ecs(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Cancelled => "Cancelled",
            Self::Finished => "Finished",
            Self::Success => "Success",
            Self::Failed => "Failed",
        }
    }

    /// Whether nothing more happens to the execution.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Stopping)
    }
}

/// One Cloud Assistant command run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Executions per instance, in instance order.
    pub executions: Vec<(String, ExecutionStatus)>,
    /// When each `Stopping` execution was asked to stop, by index into `executions`.
    stopping_since: Vec<(usize, Instant)>,
    /// Whether it is scheduled periodically.
    pub periodic: bool,
    /// Whether further periodic runs are scheduled.
    pub scheduling: bool,
    /// Whether stops are forbidden (`Operation.Forbidden`).
    pub protected: bool,
    /// How many stops ECS accepted.
    pub stops: u32,
}

impl Invocation {
    /// A run on `instances`, each with the given status.
    pub fn new(executions: &[(&str, ExecutionStatus)]) -> Self {
        Self {
            executions: executions
                .iter()
                .map(|(i, s)| (i.to_string(), *s))
                .collect(),
            stopping_since: Vec::new(),
            periodic: false,
            scheduling: false,
            protected: false,
            stops: 0,
        }
    }

    /// Applies StopInvocation at `now`: pending executions are cancelled, running ones start
    /// stopping, ended ones stay as they ended, a periodic run stops scheduling. An empty
    /// `instances` means all of them.
    pub fn stop(&mut self, instances: &[String], now: Instant) {
        for (index, (instance, status)) in self.executions.iter_mut().enumerate() {
            let targeted = instances.is_empty() || instances.iter().any(|i| i == instance);
            match *status {
                ExecutionStatus::Pending if targeted => *status = ExecutionStatus::Cancelled,
                ExecutionStatus::Running if targeted => {
                    *status = ExecutionStatus::Stopping;
                    self.stopping_since.push((index, now));
                }
                _ => {}
            }
        }
        self.scheduling = false;
        self.stops += 1;
    }

    /// Moves every execution that has been stopping for `delay` by `now` to `Stopped`.
    pub fn settle(&mut self, now: Instant, delay: Duration) {
        let executions = &mut self.executions;
        self.stopping_since.retain(|&(index, since)| {
            if now.saturating_duration_since(since) < delay {
                return true;
            }
            if let Some((_, status)) = executions.get_mut(index) {
                *status = ExecutionStatus::Stopped;
            }
            false
        });
    }

    /// The aggregate `InvocationStatus` ECS reports for the run as a whole.
    pub fn aggregate(&self) -> &'static str {
        use ExecutionStatus::*;
        let any =
            |wanted: &[ExecutionStatus]| self.executions.iter().any(|(_, s)| wanted.contains(s));
        let all =
            |wanted: &[ExecutionStatus]| self.executions.iter().all(|(_, s)| wanted.contains(s));
        if any(&[Stopping]) {
            "Stopping"
        } else if any(&[Running]) {
            "Running"
        } else if any(&[Pending]) {
            "Pending"
        } else if any(&[Stopped, Cancelled]) {
            "Stopped"
        } else if all(&[Success]) {
            "Success"
        } else if all(&[Failed]) {
            "Failed"
        } else if any(&[Failed]) {
            "PartialFailed"
        } else {
            "Finished"
        }
    }
}

/// Invocations keyed by (region, invoke id), and the nonce window.
#[derive(Debug)]
pub struct World {
    invocations: Mutex<HashMap<(String, String), Invocation>>,
    nonces: Mutex<NonceWindow>,
    stop_delay: Mutex<Duration>,
    /// The most instances a DescribeInvocations answer lists per invocation; all when `None`.
    instance_list_cap: Mutex<Option<usize>>,
}

#[derive(Debug)]
struct NonceWindow {
    window: Duration,
    seen: HashMap<String, Instant>,
    last_prune: Instant,
}

impl World {
    /// A world with the demo invocations in `cn-hangzhou`: `t-demo0001` … `t-demo0009` on three
    /// instances (one running, one pending, one finished), `t-demo0010` on three that ended on
    /// their own (success, failure, running), and `t-demo1000` on 1,000 instances.
    pub fn seeded(nonce_window: Duration) -> Self {
        use ExecutionStatus::*;
        let mut invocations = HashMap::new();
        for n in 1..=9 {
            let id = format!("t-demo{n:04}");
            let a = format!("i-demo{n:02}a");
            let b = format!("i-demo{n:02}b");
            let c = format!("i-demo{n:02}c");
            let mut inv = Invocation::new(&[(&a, Running), (&b, Pending), (&c, Finished)]);
            inv.periodic = id == PERIODIC_DEMO_INVOCATION;
            inv.scheduling = inv.periodic;
            inv.protected = id == PROTECTED_DEMO_INVOCATION;
            invocations.insert(("cn-hangzhou".to_owned(), id), inv);
        }
        invocations.insert(
            ("cn-hangzhou".to_owned(), "t-demo0010".to_owned()),
            Invocation::new(&[
                ("i-demo10a", Success),
                ("i-demo10b", Failed),
                ("i-demo10c", Running),
            ]),
        );
        // A fleet: mostly running, some not yet started, some already ended either way.
        let fleet: Vec<(String, ExecutionStatus)> = (1..=1000)
            .map(|n| {
                let status = match n % 10 {
                    0 => Success,
                    7 => Failed,
                    3 | 5 => Pending,
                    _ => Running,
                };
                (format!("i-fleet{n:04}"), status)
            })
            .collect();
        let fleet: Vec<(&str, ExecutionStatus)> =
            fleet.iter().map(|(i, s)| (i.as_str(), *s)).collect();
        invocations.insert(
            ("cn-hangzhou".to_owned(), "t-demo1000".to_owned()),
            Invocation::new(&fleet),
        );
        Self {
            invocations: Mutex::new(invocations),
            nonces: Mutex::new(NonceWindow {
                window: nonce_window,
                seen: HashMap::new(),
                last_prune: Instant::now(),
            }),
            stop_delay: Mutex::new(DEFAULT_STOP_DELAY),
            instance_list_cap: Mutex::new(None),
        }
    }

    /// Cuts every DescribeInvocations answer to `cap` instances per invocation (all when `None`):
    /// whether ECS lists every instance of a large invocation is documented nowhere, and
    /// DescribeInvocationResults still pages each.
    pub fn set_instance_list_cap(&self, cap: Option<usize>) {
        *self
            .instance_list_cap
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cap;
    }

    /// The most instances a DescribeInvocations answer lists per invocation.
    pub fn instance_list_cap(&self) -> Option<usize> {
        *self
            .instance_list_cap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// How long a running execution takes to stop from now on.
    pub fn set_stop_delay(&self, delay: Duration) {
        *self.stop_delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// The invocations of `region` as they are now (stopping executions settled), in invoke ID
    /// order, those named `invoke_id` only when given.
    pub fn list(&self, region: &str, invoke_id: Option<&str>) -> Vec<(String, Invocation)> {
        let delay = *self.stop_delay.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut invocations = self.lock_invocations();
        let mut listed: Vec<(String, Invocation)> = invocations
            .iter_mut()
            .filter(|((r, id), _)| r == region && invoke_id.is_none_or(|wanted| wanted == id))
            .map(|((_, id), invocation)| {
                invocation.settle(now, delay);
                (id.clone(), invocation.clone())
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// Adds or replaces an invocation.
    pub fn insert(&self, region: &str, invoke_id: &str, invocation: Invocation) {
        self.lock_invocations()
            .insert((region.to_owned(), invoke_id.to_owned()), invocation);
    }

    /// A copy of an invocation's state.
    pub fn get(&self, region: &str, invoke_id: &str) -> Option<Invocation> {
        self.lock_invocations()
            .get(&(region.to_owned(), invoke_id.to_owned()))
            .cloned()
    }

    /// Runs `f` on the invocation, if it exists.
    pub fn with_invocation<R>(
        &self,
        region: &str,
        invoke_id: &str,
        f: impl FnOnce(&mut Invocation) -> R,
    ) -> Option<R> {
        self.lock_invocations()
            .get_mut(&(region.to_owned(), invoke_id.to_owned()))
            .map(f)
    }

    /// Records `nonce`; false when it was seen within the window.
    pub fn fresh_nonce(&self, nonce: &str) -> bool {
        let now = Instant::now();
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let window = nonces.window;
        // Prune at most once a second so the map stays bounded by rate × window.
        if now.duration_since(nonces.last_prune) > Duration::from_secs(1) {
            nonces.seen.retain(|_, at| now.duration_since(*at) < window);
            nonces.last_prune = now;
        }
        match nonces.seen.get(nonce) {
            Some(at) if now.duration_since(*at) < window => false,
            _ => {
                nonces.seen.insert(nonce.to_owned(), now);
                true
            }
        }
    }

    fn lock_invocations(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Invocation>> {
        // A panic elsewhere must not take the simulator down with poisoned state.
        self.invocations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionStatus::*;

    #[test]
    fn a_stop_touches_only_the_targeted_instances() {
        let mut inv = Invocation::new(&[("i-a", Running), ("i-b", Pending), ("i-c", Pending)]);
        inv.periodic = true;
        inv.scheduling = true;
        let now = Instant::now();
        inv.stop(&["i-b".to_owned()], now);
        assert_eq!(inv.executions[0].1, Running);
        assert_eq!(inv.executions[1].1, Cancelled);
        assert_eq!(inv.executions[2].1, Pending);
        assert!(!inv.scheduling);
    }

    #[test]
    fn a_running_execution_stops_after_the_delay_and_an_ended_one_stays() {
        let mut inv = Invocation::new(&[("i-a", Running), ("i-b", Success), ("i-c", Pending)]);
        let now = Instant::now();
        inv.stop(&[], now);
        assert_eq!(inv.aggregate(), "Stopping");
        inv.settle(now + Duration::from_millis(999), Duration::from_secs(1));
        assert_eq!(inv.executions[0].1, Stopping);
        inv.settle(now + Duration::from_secs(1), Duration::from_secs(1));
        let statuses: Vec<ExecutionStatus> = inv.executions.iter().map(|(_, s)| *s).collect();
        assert_eq!(statuses, [Stopped, Success, Cancelled]);
        assert_eq!(inv.aggregate(), "Stopped");
        assert!(statuses.iter().all(|s| s.is_final()));
    }

    #[test]
    fn the_aggregate_follows_the_executions() {
        let cases: &[(&[ExecutionStatus], &str)] = &[
            (&[Running, Pending], "Running"),
            (&[Pending, Success], "Pending"),
            (&[Success, Success], "Success"),
            (&[Failed, Failed], "Failed"),
            (&[Success, Failed], "PartialFailed"),
            (&[Finished, Success], "Finished"),
            (&[Cancelled, Success], "Stopped"),
        ];
        for (statuses, aggregate) in cases {
            let executions: Vec<(&str, ExecutionStatus)> =
                statuses.iter().map(|s| ("i-x", *s)).collect();
            assert_eq!(
                Invocation::new(&executions).aggregate(),
                *aggregate,
                "{statuses:?}"
            );
        }
    }

    #[test]
    fn a_nonce_is_fresh_once() {
        let world = World::seeded(Duration::from_secs(900));
        assert!(world.fresh_nonce("n-1"));
        assert!(!world.fresh_nonce("n-1"));
        assert!(world.fresh_nonce("n-2"));
    }

    #[test]
    fn demo_invocations_are_seeded() {
        let world = World::seeded(Duration::from_secs(900));
        for n in 1..=9 {
            assert!(world.get("cn-hangzhou", &format!("t-demo{n:04}")).is_some());
        }
        assert!(
            world
                .get("cn-hangzhou", PROTECTED_DEMO_INVOCATION)
                .unwrap()
                .protected
        );
        assert!(
            world
                .get("cn-hangzhou", PERIODIC_DEMO_INVOCATION)
                .unwrap()
                .scheduling
        );
    }
}
