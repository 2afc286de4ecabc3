//! One poller per (region, owner) group of followed invocations. Each round reads what is due: a
//! listing of a status where one costs fewer calls than reading each invocation in it, and one
//! read each, oldest due first, for the rest — all as background work, which the quota serves
//! after callers. When the quota is short, a round stops at the first refusal and the invocations
//! it did not reach are first in the next: each is still read in turn, only less often.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::pace::{Pace, PollPace};
use super::plan::{Cost, Learnt, listing_pays, page_cap};
use super::read::{
    AfterFailure, Extra, Latest, Polled, READ_BUDGET, Read, after_failure, complete, slow_down,
};
use crate::aliyun::client::{Described, EcsClient, Failed, Listed};
use crate::aliyun::error::EcsError;
use crate::aliyun::invocation::InvocationState;
use crate::aliyun::request::{DescribeInvocation, ListInvocations, Owner, RegionId};
use crate::limit::fleet::{FleetStore, Group as FleetGroup};
use crate::observe::metrics::PollOutcome;

/// The longest a throttled group waits before reading again, whatever ECS or the quota says.
const MAX_SLOW_DOWN: Duration = Duration::from_secs(60);
/// Reads of one group in flight at once.
const CONCURRENT_READS: usize = 8;
/// How often a poller of a fleet with Redis announces what its replica follows and takes or renews
/// its group's lease.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How long a lease and an announcement last unrenewed: a replica that goes loses the lease, and
/// its invocations leave the fleet's list, within this.
const LEASE_LIFETIME: Duration = Duration::from_secs(5);
/// How long a shared read is kept in Redis.
const SHARED_LIFETIME: Duration = Duration::from_secs(15);
/// How long a follower waits for a shared read of an invocation before it reads it itself.
const STALE_AFTER: Duration = Duration::from_secs(10);
/// The most invocations a group's lease holder polls for the others.
const MAX_REMOTE: usize = 10_000;
/// The longest a sleeping poller goes without letting go of invocations nobody waits on any
/// more, which count toward `--max-polled-invocations` until it does.
const RETIRE_EVERY: Duration = Duration::from_secs(1);

/// The invocations one listing can hold together: same region, same owner parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    region: RegionId,
    owner: Owner,
}

impl GroupKey {
    /// The group `invocation` belongs to.
    pub(crate) fn of(invocation: &DescribeInvocation) -> Self {
        Self {
            region: invocation.region_id.clone(),
            owner: invocation.owner.clone(),
        }
    }
}

/// What a group's poller needs of the replica's followed invocations.
pub(crate) trait Registry: Send + Sync + 'static {
    /// Removes `invocation` when nobody waits on it any more (or `always`); whether it did.
    fn retire(
        &self,
        invocation: &DescribeInvocation,
        sender: &Arc<watch::Sender<Latest>>,
        always: bool,
    ) -> bool;
    /// Removes the group `key`, which has no members left, unless an invocation joined
    /// meanwhile, which is returned to be polled.
    fn leave(&self, key: &GroupKey, joins: &mut mpsc::UnboundedReceiver<Joined>) -> Option<Joined>;
    /// The client reads go through.
    fn client(&self) -> &EcsClient;
    /// How often followed invocations are read.
    fn pace(&self) -> PollPace;
    /// Counts one poll by how it ended.
    fn count(&self, outcome: PollOutcome);
    /// Whether a poller of `region` may say it was throttled now, and how many such reads went
    /// unsaid since.
    fn may_say_throttled(&self, region: &RegionId) -> Option<u64>;
    /// Where the fleet shares the polling of groups, and this replica's name there.
    fn fleet(&self) -> Option<(&FleetStore, &str)>;
}

/// An invocation whose first read is done, handed to its group to be polled.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The invocation.
    pub invocation: DescribeInvocation,
    /// Where its reads go.
    pub sender: Arc<watch::Sender<Latest>>,
    /// Its aggregate status at the first read.
    pub status: String,
    /// Its instances that DescribeInvocations leaves out.
    pub extra: Arc<Extra>,
}

/// A followed invocation as its group keeps it.
#[derive(Debug)]
struct Member {
    invocation: DescribeInvocation,
    /// Where its reads go; `None` for an invocation another replica follows, which this one, as
    /// the group's lease holder, polls for it.
    sender: Option<Arc<watch::Sender<Latest>>>,
    /// When a read of it last came from the fleet's poller (or it joined), and that read.
    shared: (Instant, Option<Arc<str>>),
    extra: Arc<Extra>,
    status: Box<str>,
    pace: Pace,
    due: Instant,
    failures_in_a_row: u32,
    /// A whole listing of its status did not hold it: its status changed, so it is read alone.
    left: bool,
    /// Its status is a guess (see [`AFTER_A_STOP`]), not what ECS said.
    guessed: bool,
}

/// Where an invocation a listing no longer holds most likely went: a wait reads an invocation,
/// then stops it, so its running executions are stopping. A listing of that status finds them
/// all at the cost of one, before each is read alone.
const AFTER_A_STOP: &str = "Stopping";

/// The pace of a status the group reads with listings.
#[derive(Debug)]
struct Listing {
    pace: Pace,
    due: Instant,
    /// Where a listing refused part-way goes on from.
    resume: Option<Resume>,
}

/// A listing refused part-way: the next page's token, the pages it took, and the followed
/// invocations it held.
#[derive(Debug)]
struct Resume {
    token: String,
    pages: usize,
    seen: HashSet<String>,
}

/// How a listing of one status ended.
#[derive(Debug)]
enum ListEnd {
    /// It reached the last page after this many.
    Whole(usize),
    /// It stopped at the page cap.
    Cut(usize),
    /// ECS or the quota said to slow down.
    SlowDown(EcsError),
    /// It failed otherwise.
    Failed(EcsError),
}

/// A group's poller: its members, the statuses it lists, and what listing them cost.
struct Group<R> {
    polls: R,
    key: GroupKey,
    members: Vec<Member>,
    listings: HashMap<Box<str>, Listing>,
    costs: HashMap<Box<str>, Learnt>,
    not_before: Instant,
    /// The last round was stopped by a refusal: read one at a time, so that who is read is who
    /// was first, not who won a race.
    short: bool,
    /// Who polls the group: this replica alone, or as the fleet's lease holder, or another.
    mode: Mode,
    /// The group in the fleet's store, and when this replica last synced with it.
    fleet: Option<(FleetGroup, Instant)>,
    /// Reads of this round to share with the fleet, when this replica holds the lease.
    to_share: Vec<(String, String)>,
}

/// Who polls a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// This replica, for itself: no Redis, or Redis does not answer.
    Alone,
    /// This replica, for the fleet: it holds the group's lease and shares what it reads.
    Lead,
    /// Another replica: this one takes its reads from Redis.
    Follow,
}

/// Polls the group `key` until it has no members and no joins are pending.
pub(crate) async fn run<R: Registry>(
    polls: R,
    key: GroupKey,
    mut joins: mpsc::UnboundedReceiver<Joined>,
) {
    let mut group = Group {
        polls,
        key,
        members: Vec::new(),
        listings: HashMap::new(),
        costs: HashMap::new(),
        not_before: Instant::now(),
        short: false,
        mode: Mode::Alone,
        fleet: None,
        to_share: Vec::new(),
    };
    loop {
        while let Ok(joined) = joins.try_recv() {
            group.join(joined);
        }
        group.retire_unwatched();
        if group.members.is_empty() {
            match group.polls.leave(&group.key, &mut joins) {
                Some(joined) => group.join(joined),
                None => return,
            }
            continue;
        }
        group.sync().await;
        let now = Instant::now();
        let round = match group.mode {
            Mode::Follow => group.follow(now).await,
            Mode::Alone | Mode::Lead => group.due(now),
        };
        if now < group.not_before || round.is_empty() {
            let wake = group
                .next_due()
                .max(group.not_before)
                .min(now + RETIRE_EVERY);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                joined = joins.recv() => {
                    if let Some(joined) = joined {
                        group.join(joined);
                    }
                }
            }
            continue;
        }
        group.read(round).await;
        group.share().await;
    }
}

/// What one round reads.
#[derive(Debug, Default)]
struct Round {
    /// Statuses to list.
    listings: Vec<Box<str>>,
    /// Members to read one by one, by index, oldest due first.
    targets: Vec<usize>,
}

impl Round {
    fn is_empty(&self) -> bool {
        self.listings.is_empty() && self.targets.is_empty()
    }
}

impl<R: Registry> Group<R> {
    fn join(&mut self, joined: Joined) {
        let settings = self.polls.pace();
        let mut pace = Pace::new(settings);
        let now = Instant::now();
        let due = now + pace.next(&mut rand::rng());
        // A new invocation in a listed status is read by the listing, soon.
        if let Some(listing) = self.listings.get_mut(joined.status.as_str()) {
            listing.pace = Pace::new(settings);
            listing.due = listing.due.min(due);
        }
        self.members.push(Member {
            invocation: joined.invocation,
            sender: Some(joined.sender),
            shared: (now, None),
            extra: joined.extra,
            status: joined.status.into(),
            pace,
            due,
            failures_in_a_row: 0,
            left: false,
            guessed: false,
        });
    }

    fn retire_unwatched(&mut self) {
        let polls = &self.polls;
        self.members.retain(|m| match &m.sender {
            Some(sender) => !polls.retire(&m.invocation, sender, false),
            None => true,
        });
    }

    /// With the fleet's store, at most once per [`SYNC_EVERY`]: announces what this replica
    /// follows, takes or renews the lease, and as its holder adds what the others follow (and
    /// drops what they no longer do). Without an answer, the group is polled alone.
    async fn sync(&mut self) {
        let Some((store, replica)) = self.polls.fleet() else {
            return;
        };
        let now = Instant::now();
        let group = match &self.fleet {
            Some((_, at)) if now.duration_since(*at) < SYNC_EVERY => return,
            Some((group, _)) => group.clone(),
            None => FleetGroup::new(
                self.polls.client().credentials().principal(),
                self.key.region.as_str(),
                &format!("{:?}", self.key.owner),
            ),
        };
        self.fleet = Some((group.clone(), now));
        let local: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.sender.is_some())
            .map(|m| m.invocation.invoke_id.as_str())
            .collect();
        let announced = store
            .announce(&group, &local, LEASE_LIFETIME, MAX_REMOTE)
            .await;
        let held = match announced {
            Some(_) => store.lease(&group, replica, LEASE_LIFETIME).await,
            None => None,
        };
        let mode = match (announced, held) {
            (Some(all), Some(true)) => {
                self.lead(all);
                Mode::Lead
            }
            (Some(_), Some(false)) => Mode::Follow,
            _ => Mode::Alone,
        };
        if mode != Mode::Lead {
            self.members.retain(|m| m.sender.is_some());
        }
        if mode == Mode::Follow {
            self.listings.clear();
        }
        if mode != self.mode {
            tracing::info!(region = self.key.region.as_str(), from = ?self.mode, to = ?mode, "a group of waited invocations changed who polls it");
        }
        self.mode = mode;
    }

    /// As the lease holder: polls every invocation in `all` too (those another replica follows).
    fn lead(&mut self, all: Vec<String>) {
        let all: HashSet<String> = all.into_iter().collect();
        self.members
            .retain(|m| m.sender.is_some() || all.contains(&m.invocation.invoke_id));
        let known: HashSet<String> = self
            .members
            .iter()
            .map(|m| m.invocation.invoke_id.clone())
            .collect();
        let now = Instant::now();
        for invoke_id in all.into_iter().filter(|id| !known.contains(id)) {
            self.members.push(Member {
                invocation: DescribeInvocation {
                    region_id: self.key.region.clone(),
                    invoke_id,
                    owner: self.key.owner.clone(),
                },
                sender: None,
                shared: (now, None),
                extra: Arc::default(),
                status: "".into(),
                pace: Pace::new(self.polls.pace()),
                due: now,
                failures_in_a_row: 0,
                left: false,
                guessed: false,
            });
        }
    }

    /// As a follower: the reads the lease holder shared for this replica's members that are due;
    /// those it has not shared for [`STALE_AFTER`] are read here, alone.
    async fn follow(&mut self, now: Instant) -> Round {
        let due: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].due <= now)
            .collect();
        let (Some((store, _)), Some((group, _)), false) =
            (self.polls.fleet(), &self.fleet, due.is_empty())
        else {
            return Round::default();
        };
        let ids: Vec<&str> = due
            .iter()
            .map(|&i| self.members[i].invocation.invoke_id.as_str())
            .collect();
        let Some(reads) = store.fetch(group, &ids).await else {
            self.mode = Mode::Alone;
            return self.due(now);
        };
        let mut stale = Vec::new();
        for (i, read) in due.into_iter().zip(reads) {
            let member = &mut self.members[i];
            let state = read
                .as_deref()
                .and_then(|json| serde_json::from_str::<InvocationState>(json).ok());
            match (read, state) {
                (Some(json), Some(state)) => {
                    let json: Arc<str> = json.into();
                    if member.shared.1.as_deref() != Some(&*json) {
                        member.status = state.status.as_str().into();
                        if let Some(sender) = &member.sender {
                            sender.send_replace(Some(Arc::new(Polled::Read(Read::new(state)))));
                        }
                    }
                    member.shared = (now, Some(json));
                    member.due = now + member.pace.next(&mut rand::rng());
                }
                _ if now.duration_since(member.shared.0) >= STALE_AFTER => stale.push(i),
                _ => member.due = now + member.pace.next(&mut rand::rng()),
            }
        }
        Round {
            listings: Vec::new(),
            targets: stale,
        }
    }

    /// As the lease holder: shares this round's reads with the fleet.
    async fn share(&mut self) {
        let reads = std::mem::take(&mut self.to_share);
        let (Mode::Lead, Some((store, _)), Some((group, _))) =
            (self.mode, self.polls.fleet(), &self.fleet)
        else {
            return;
        };
        let reads: Vec<(&str, String)> = reads
            .iter()
            .map(|(id, json)| (id.as_str(), json.clone()))
            .collect();
        if !store.share(group, &reads, SHARED_LIFETIME).await {
            self.mode = Mode::Alone;
        }
    }

    /// Hands `state` to the member's waiters here and, as the lease holder, to the fleet's.
    fn publish(&mut self, i: usize, state: InvocationState) {
        if self.mode == Mode::Lead
            && let Ok(json) = serde_json::to_string(&state)
        {
            self.to_share
                .push((self.members[i].invocation.invoke_id.clone(), json));
        }
        if let Some(sender) = &self.members[i].sender {
            sender.send_replace(Some(Arc::new(Polled::Read(Read::new(state)))));
        }
    }

    /// The statuses listed now and their members' count.
    fn followed_by_status(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for member in &self.members {
            *counts.entry(&*member.status).or_default() += 1;
        }
        counts
    }

    /// What is due at `now`, after choosing which statuses are listed.
    fn due(&mut self, now: Instant) -> Round {
        let listed: HashSet<Box<str>> = self
            .followed_by_status()
            .into_iter()
            .filter(|(status, followed)| {
                listing_pays(status, *followed, self.costs.get(*status), now)
            })
            .map(|(status, _)| Box::from(status))
            .collect();
        self.listings.retain(|status, _| listed.contains(status));
        for status in &listed {
            if !self.listings.contains_key(status) {
                // Due when its earliest member is: switching to a listing reads nobody sooner.
                let due = self
                    .members
                    .iter()
                    .filter(|m| m.status == *status)
                    .map(|m| m.due)
                    .min()
                    .unwrap_or(now);
                let pace = Pace::new(self.polls.pace());
                let resume = None;
                self.listings
                    .insert(status.clone(), Listing { pace, due, resume });
            }
        }
        let mut round = Round {
            listings: self
                .listings
                .iter()
                .filter(|(_, l)| l.due <= now)
                .map(|(status, _)| status.clone())
                .collect(),
            targets: Vec::new(),
        };
        let mut targets: Vec<(Instant, usize)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| (m.left || !listed.contains(&m.status)) && m.due <= now)
            .map(|(i, m)| (m.due, i))
            .collect();
        targets.sort_unstable();
        round.targets = targets.into_iter().map(|(_, i)| i).collect();
        round
    }

    /// When something is next due.
    fn next_due(&self) -> Instant {
        let listed = |m: &Member| {
            self.mode != Mode::Follow && !m.left && self.listings.contains_key(&m.status)
        };
        let members = self.members.iter().filter(|m| !listed(m)).map(|m| m.due);
        // A follower lists nothing: its listings' times have stopped moving.
        let listings = self
            .listings
            .values()
            .filter(|_| self.mode != Mode::Follow)
            .map(|l| l.due);
        members
            .chain(listings)
            .min()
            .unwrap_or_else(|| Instant::now() + self.polls.pace().max)
    }

    async fn read(&mut self, round: Round) {
        for status in round.listings {
            if !self.list(&status).await {
                return;
            }
        }
        // A listing may have found members gone from it: read them in this round too.
        let now = Instant::now();
        let mut targets = round.targets;
        for (i, member) in self.members.iter().enumerate() {
            if member.left && member.due <= now && !targets.contains(&i) {
                targets.push(i);
            }
        }
        self.read_each(targets).await;
    }

    /// Lists `status` and hands each member found its read; whether the round may go on.
    async fn list(&mut self, status: &str) -> bool {
        let followed: HashSet<String> = self
            .members
            .iter()
            .filter(|m| &*m.status == status)
            .map(|m| m.invocation.invoke_id.clone())
            .collect();
        let resume = self.listings.get_mut(status).and_then(|l| l.resume.take());
        let seen_before = resume.as_ref().map(|r| r.seen.clone()).unwrap_or_default();
        let (mut found, end, resume) = self.list_pages(status, &followed, resume).await;
        for member in &self.members {
            if let Some(state) = found.remove(&member.invocation.invoke_id) {
                let state = self.completed(member, state).await;
                found.insert(member.invocation.invoke_id.clone(), state);
            }
        }
        let now = Instant::now();
        let mut guessed = false;
        let mut read = Vec::new();
        for (i, member) in self.members.iter_mut().enumerate() {
            let id = &member.invocation.invoke_id;
            if let Some(state) = found.remove(id) {
                member.failures_in_a_row = 0;
                member.guessed = false;
                member.status = state.status.as_str().into();
                read.push((i, state));
            } else if matches!(end, ListEnd::Whole(_))
                && &*member.status == status
                && !seen_before.contains(id)
            {
                if status != AFTER_A_STOP && !member.guessed {
                    member.status = AFTER_A_STOP.into();
                    member.guessed = true;
                    guessed = true;
                } else {
                    member.left = true;
                }
                member.due = now;
            }
        }
        for (i, state) in read {
            self.publish(i, state);
        }
        if let (true, Some(listing)) = (guessed, self.listings.get_mut(AFTER_A_STOP)) {
            listing.due = now;
        }
        let learnt = |cost| Learnt { cost, at: now };
        let go_on = match end {
            ListEnd::Whole(pages) => {
                self.costs.insert(status.into(), learnt(Cost::Pages(pages)));
                true
            }
            ListEnd::Cut(pages) => {
                self.costs
                    .insert(status.into(), learnt(Cost::MoreThan(pages)));
                true
            }
            ListEnd::SlowDown(error) => {
                self.short = true;
                self.slow_down(&error, None);
                false
            }
            ListEnd::Failed(error) => {
                tracing::warn!(region = self.key.region.as_str(), status, class = ?error.class(), %error, "a listing for waiting streams failed; reading them one by one");
                self.costs
                    .insert(status.into(), learnt(Cost::MoreThan(usize::MAX)));
                true
            }
        };
        if let Some(listing) = self.listings.get_mut(status) {
            if resume.is_none() {
                listing.due = now + listing.pace.next(&mut rand::rng());
            }
            listing.resume = resume;
        }
        go_on
    }

    /// The followed invocations a listing of `status` holds, page by page up to the cap, from
    /// where a refused one stopped; where to go on from if this one is refused part-way.
    async fn list_pages(
        &self,
        status: &str,
        followed: &HashSet<String>,
        resume: Option<Resume>,
    ) -> (HashMap<String, InvocationState>, ListEnd, Option<Resume>) {
        let cap = page_cap(followed.len());
        let mut found = HashMap::new();
        let (token, mut pages, mut seen) = match resume {
            Some(Resume { token, pages, seen }) => (Some(token), pages, seen),
            None => (None, 0, HashSet::new()),
        };
        let mut request = ListInvocations {
            region_id: self.key.region.clone(),
            status: status.to_owned(),
            next_token: token,
            owner: self.key.owner.clone(),
        };
        let client = self.polls.client();
        loop {
            if pages >= cap {
                return (found, ListEnd::Cut(pages), None);
            }
            let deadline = Some(Instant::now() + READ_BUDGET);
            let outcome = client.list_invocations(&request, deadline).await;
            match outcome {
                Ok(Listed { page, .. }) => {
                    pages += 1;
                    self.polls.count(PollOutcome::Read);
                    for state in page.invocations {
                        if followed.contains(&state.invoke_id) {
                            seen.insert(state.invoke_id.clone());
                            found.insert(state.invoke_id.clone(), state);
                        }
                    }
                    match page.next_token {
                        Some(token) if seen.len() < followed.len() => {
                            request.next_token = Some(token);
                        }
                        // Past the last page, or every followed invocation found: the rest of
                        // the listing is others'.
                        _ => return (found, ListEnd::Whole(pages), None),
                    }
                }
                Err(Failed { error, .. }) => {
                    if after_failure(error.class(), 1) == AfterFailure::SlowDown {
                        self.polls.count(PollOutcome::Throttled);
                        let resume = request
                            .next_token
                            .map(|token| Resume { token, pages, seen });
                        return (found, ListEnd::SlowDown(error), resume);
                    }
                    self.polls.count(PollOutcome::Failed);
                    return (found, ListEnd::Failed(error), None);
                }
            }
        }
    }

    /// Reads each of `targets` alone, a few at once, stopping at the first refusal to slow down.
    async fn read_each(&mut self, targets: Vec<usize>) {
        if targets.is_empty() {
            return;
        }
        let stop = AtomicBool::new(false);
        let this: &Self = self;
        let client = this.polls.client();
        let stop = &stop;
        let reads = targets.into_iter().map(|i| {
            let member = &this.members[i];
            async move {
                if stop.load(Ordering::Relaxed) {
                    return (i, None);
                }
                let deadline = Some(Instant::now() + READ_BUDGET);
                let mut outcome = client.poll_invocation(&member.invocation, deadline).await;
                if let Ok(Described {
                    invocation: state @ Some(_),
                    ..
                }) = &mut outcome
                    && let Some(read) = state.take()
                {
                    *state = Some(this.completed(member, read).await);
                }
                if let Err(Failed { error, .. }) = &outcome
                    && after_failure(error.class(), 1) == AfterFailure::SlowDown
                {
                    stop.store(true, Ordering::Relaxed);
                }
                (i, Some(outcome))
            }
        });
        let at_once = if self.short { 1 } else { CONCURRENT_READS };
        let outcomes: Vec<_> = stream::iter(reads)
            .buffer_unordered(at_once)
            .collect()
            .await;
        self.short = stop.load(Ordering::Relaxed);
        let mut ended = Vec::new();
        for (i, outcome) in outcomes {
            if let Some(outcome) = outcome
                && self.settle(i, outcome)
            {
                ended.push(i);
            }
        }
        // Highest index first, so that the others stay where they are.
        ended.sort_unstable_by(|a, b| b.cmp(a));
        for i in ended {
            let member = self.members.swap_remove(i);
            if let Some(sender) = &member.sender {
                self.polls.retire(&member.invocation, sender, true);
            }
        }
    }

    /// `state` completed with the member's instances that DescribeInvocations leaves out, as far
    /// as DescribeInvocationResults answers; as it is when that fails (the waiters keep what they
    /// last knew of those).
    async fn completed(&self, member: &Member, state: InvocationState) -> InvocationState {
        let extra = member.extra.ids();
        if extra.is_empty() {
            return state;
        }
        let fallback = state.clone();
        match complete(self.polls.client(), &member.invocation, state, &extra, true).await {
            Ok((state, _)) => state,
            Err(error) => {
                tracing::warn!(invoke_id = member.invocation.invoke_id.as_str(), class = ?error.class(), %error, "reading the instances a DescribeInvocations answer left out failed");
                fallback
            }
        }
    }

    /// Publishes one member's read; whether its waiters are done with it (not found, or polling
    /// cannot succeed).
    fn settle(&mut self, i: usize, outcome: Result<Described, Failed>) -> bool {
        let member = &mut self.members[i];
        member.left = false;
        member.guessed = false;
        // A refused read keeps its place: it is among the first of the next round.
        let mut refused = false;
        let polled = match outcome {
            Ok(Described {
                invocation: Some(state),
                ..
            }) => {
                member.failures_in_a_row = 0;
                member.status = state.status.as_str().into();
                self.polls.count(PollOutcome::Read);
                Polled::Read(Read::new(state))
            }
            Ok(Described {
                invocation: None, ..
            }) => {
                self.polls.count(PollOutcome::NotFound);
                Polled::NotFound
            }
            Err(Failed { error, .. }) => {
                member.failures_in_a_row += 1;
                let invoke_id = member.invocation.invoke_id.as_str();
                match after_failure(error.class(), member.failures_in_a_row) {
                    AfterFailure::End => {
                        self.polls.count(PollOutcome::Failed);
                        tracing::warn!(invoke_id, class = ?error.class(), %error, "polls for waiting streams cannot succeed; ending them");
                        Polled::Ended(error)
                    }
                    AfterFailure::SlowDown => {
                        self.polls.count(PollOutcome::Throttled);
                        refused = true;
                        Polled::Failed(error)
                    }
                    AfterFailure::Again => {
                        self.polls.count(PollOutcome::Failed);
                        tracing::warn!(invoke_id, class = ?error.class(), %error, "a read for waiting streams failed; reading again later");
                        Polled::Failed(error)
                    }
                }
            }
        };
        let member = &mut self.members[i];
        if !refused {
            member.due = Instant::now() + member.pace.next(&mut rand::rng());
        }
        let ended = matches!(polled, Polled::NotFound | Polled::Ended(_));
        if let (Polled::Failed(error), true) = (&polled, refused) {
            let error = error.clone();
            let invoke_id = member.invocation.invoke_id.clone();
            self.slow_down(&error, Some(&invoke_id));
        }
        match polled {
            Polled::Read(read) => {
                let state = Arc::unwrap_or_clone(read.state);
                self.publish(i, state);
            }
            polled => {
                if let Some(sender) = &self.members[i].sender {
                    sender.send_replace(Some(Arc::new(polled)));
                }
            }
        }
        ended
    }

    /// Holds the whole group back as ECS or the quota said, and says so at most once a second per
    /// region.
    fn slow_down(&mut self, error: &EcsError, invoke_id: Option<&str>) {
        let wait = slow_down(error)
            .unwrap_or(self.polls.pace().first)
            .min(MAX_SLOW_DOWN);
        self.not_before = self.not_before.max(Instant::now() + wait);
        if let Some(unsaid) = self.polls.may_say_throttled(&self.key.region) {
            tracing::info!(
                invoke_id,
                region = self.key.region.as_str(),
                wait_ms = wait.as_millis() as u64,
                unsaid,
                "a read for waiting streams was throttled; reading again later"
            );
        }
    }
}
