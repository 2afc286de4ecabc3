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
/// The seeded demo invocation that runs periodically.
pub(crate) const PERIODIC_DEMO_INVOCATION: &str = "t-demo0005";

/// Where one instance's execution of an invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    /// Not started yet; a stop cancels it.
    Pending,
    /// Started; a stop does not interrupt it.
    Running,
    /// Finished before the stop.
    Finished,
    /// Cancelled by a stop before it started.
    Cancelled,
}

/// One Cloud Assistant command run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Executions per instance, in instance order.
    pub executions: Vec<(String, ExecutionStatus)>,
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
            periodic: false,
            scheduling: false,
            protected: false,
            stops: 0,
        }
    }

    /// Applies StopInvocation: pending executions are cancelled, started ones are not interrupted,
    /// a periodic run stops scheduling. An empty `instances` means all of them.
    pub fn stop(&mut self, instances: &[String]) {
        for (instance, status) in &mut self.executions {
            let targeted = instances.is_empty() || instances.iter().any(|i| i == instance);
            if targeted && *status == ExecutionStatus::Pending {
                *status = ExecutionStatus::Cancelled;
            }
        }
        self.scheduling = false;
        self.stops += 1;
    }
}

/// Invocations keyed by (region, invoke id), and the nonce window.
#[derive(Debug)]
pub struct World {
    invocations: Mutex<HashMap<(String, String), Invocation>>,
    nonces: Mutex<NonceWindow>,
}

#[derive(Debug)]
struct NonceWindow {
    window: Duration,
    seen: HashMap<String, Instant>,
    last_prune: Instant,
}

impl World {
    /// A world with the demo invocations `t-demo0001` … `t-demo0009` in `cn-hangzhou`.
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
        Self {
            invocations: Mutex::new(invocations),
            nonces: Mutex::new(NonceWindow {
                window: nonce_window,
                seen: HashMap::new(),
                last_prune: Instant::now(),
            }),
        }
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
    fn stop_cancels_pending_and_leaves_running() {
        let mut inv = Invocation::new(&[("i-a", Running), ("i-b", Pending), ("i-c", Pending)]);
        inv.periodic = true;
        inv.scheduling = true;
        inv.stop(&["i-b".to_owned()]);
        assert_eq!(inv.executions[0].1, Running);
        assert_eq!(inv.executions[1].1, Cancelled);
        assert_eq!(inv.executions[2].1, Pending);
        assert!(!inv.scheduling);
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
