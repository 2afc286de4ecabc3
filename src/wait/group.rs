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
use crate::observe::metrics::PollOutcome;

/// The longest a throttled group waits before reading again, whatever ECS or the quota says.
const MAX_SLOW_DOWN: Duration = Duration::from_secs(60);
/// Reads of one group in flight at once.
const CONCURRENT_READS: usize = 8;
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
    sender: Arc<watch::Sender<Latest>>,
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
        let now = Instant::now();
        let round = group.due(now);
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
            sender: joined.sender,
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
        self.members
            .retain(|m| !polls.retire(&m.invocation, &m.sender, false));
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
        let listed = |m: &Member| !m.left && self.listings.contains_key(&m.status);
        let members = self.members.iter().filter(|m| !listed(m)).map(|m| m.due);
        let listings = self.listings.values().map(|l| l.due);
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
        for member in &mut self.members {
            let id = &member.invocation.invoke_id;
            if let Some(state) = found.get(id) {
                member.failures_in_a_row = 0;
                member.guessed = false;
                member.status = state.status.as_str().into();
                member
                    .sender
                    .send_replace(Some(Arc::new(Polled::Read(Read::new(state.clone())))));
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
            self.polls.retire(&member.invocation, &member.sender, true);
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
        self.members[i].sender.send_replace(Some(Arc::new(polled)));
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
