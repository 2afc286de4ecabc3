//! What one wait knows, as plain data: its targets (sorted, each once), where each stands in the
//! latest read of the invocation, which changed since the last message, and the messages that say
//! so. No I/O and no clock: the wait feeds it reads and takes messages out.

use std::collections::HashSet;
use std::sync::Arc;

use crate::aliyun::invocation::{InstanceState, InvocationState, is_final, stoppable};
use crate::wait::read::Read;

/// A target the latest read does not list.
const ABSENT: u32 = u32::MAX;

/// Why the asked instances cannot be waited on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// `instance_ids` was empty and the invocation has more instances than a wait may target.
    TooMany {
        /// The invocation's instances.
        count: usize,
        /// `--max-wait-instances`.
        limit: usize,
    },
    /// Asked instances the invocation does not have: their index in the request and their ID.
    Outside(Vec<(usize, String)>),
}

/// Which targets a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every target: the first message.
    Snapshot,
    /// The targets whose status changed since the previous message.
    Changes,
    /// Every target: the last message.
    Final,
}

/// One target as a message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// As the latest read lists it.
    Listed(&'a InstanceState),
    /// Not in the latest read: its ID alone.
    Unlisted(&'a str),
}

/// A message's instances, borrowed from the view until it is turned into the wire's form.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    /// Which targets these are.
    pub kind: Kind,
    /// The latest read (its aggregate status).
    pub invocation: &'a InvocationState,
    /// The targets carried, sorted by instance ID.
    pub targets: Vec<Target<'a>>,
    /// Targets in an end state.
    pub ended: usize,
    /// Targets.
    pub targeted: usize,
}

/// The targets of one wait and their latest statuses.
#[derive(Debug)]
pub(crate) struct View {
    /// Sorted, each once; shared with the read when every instance is targeted.
    targets: Arc<[Box<str>]>,
    /// Each target's position in `latest.instances`, or [`ABSENT`].
    at: Box<[u32]>,
    /// Whether each target's status changed since the last message.
    changed: Box<[bool]>,
    /// Whether the aggregate status changed since the last message.
    aggregate_changed: bool,
    /// The latest read, shared with the poll loop and every other waiter on it.
    latest: Arc<InvocationState>,
    /// Targets in an end state.
    ended: usize,
}

impl View {
    /// The view of `asked` (every instance when empty) in the first read `first`: at most `limit`
    /// targets when resolved from the read; asked ones must be the invocation's.
    pub(crate) fn resolve(
        first: &Read,
        asked: &[String],
        limit: usize,
    ) -> Result<Self, Unresolved> {
        let targets: Arc<[Box<str>]> = if asked.is_empty() {
            first.ids.clone()
        } else {
            let first = &first.state;
            let known: HashSet<&str> = first
                .instances
                .iter()
                .map(|i| i.instance_id.as_str())
                .collect();
            let outside: Vec<(usize, String)> = asked
                .iter()
                .enumerate()
                .filter(|(_, id)| !known.contains(id.as_str()))
                .map(|(n, id)| (n, id.clone()))
                .collect();
            if !outside.is_empty() {
                return Err(Unresolved::Outside(outside));
            }
            let mut targets: Vec<Box<str>> =
                asked.iter().map(|id| Box::from(id.as_str())).collect();
            targets.sort_unstable();
            targets.dedup();
            targets.into()
        };
        if targets.len() > limit {
            return Err(Unresolved::TooMany {
                count: targets.len(),
                limit,
            });
        }
        let n = targets.len();
        let mut view = Self {
            targets,
            at: vec![ABSENT; n].into_boxed_slice(),
            changed: vec![false; n].into_boxed_slice(),
            aggregate_changed: false,
            latest: first.state.clone(),
            ended: 0,
        };
        view.update(first.state.clone());
        Ok(view)
    }

    /// Takes a newer read in; whether anything a message says changed.
    pub(crate) fn update(&mut self, read: Arc<InvocationState>) -> bool {
        let mut at = vec![ABSENT; self.targets.len()];
        for (position, instance) in read.instances.iter().enumerate() {
            if let Ok(i) = self.index(&instance.instance_id) {
                // The first listing wins, as it does in `resolve`'s de-duplication.
                if at[i] == ABSENT {
                    at[i] = u32::try_from(position).unwrap_or(ABSENT);
                }
            }
        }
        let mut any = false;
        let mut ended = 0;
        for (i, &now) in at.iter().enumerate() {
            let new = status_at(&read, now);
            if status_at(&self.latest, self.at[i]) != new {
                self.changed[i] = true;
                any = true;
            }
            ended += usize::from(new.is_some_and(is_final));
        }
        if read.status != self.latest.status {
            self.aggregate_changed = true;
            any = true;
        }
        self.at = at.into_boxed_slice();
        self.ended = ended;
        self.latest = read;
        any
    }

    /// The targets a stop can still change (not started, or running), sorted.
    pub(crate) fn stoppable(&self) -> Vec<String> {
        self.targets
            .iter()
            .zip(self.at.iter())
            .filter(|(_, at)| status_at(&self.latest, **at).is_some_and(stoppable))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Targets in an end state.
    pub(crate) fn ended(&self) -> usize {
        self.ended
    }

    /// Targets.
    pub(crate) fn targeted(&self) -> usize {
        self.targets.len()
    }

    /// Whether every target is in an end state.
    pub(crate) fn all_final(&self) -> bool {
        self.ended == self.targets.len()
    }

    /// Whether a `Changes` message would carry anything.
    pub(crate) fn has_changes(&self) -> bool {
        self.aggregate_changed || self.changed.iter().any(|c| *c)
    }

    /// The message of `kind`; what it carries no longer counts as changed.
    pub(crate) fn message(&mut self, kind: Kind) -> Message<'_> {
        let whole = kind != Kind::Changes;
        let targets = self
            .targets
            .iter()
            .zip(self.at.iter())
            .zip(self.changed.iter())
            .filter(|(_, changed)| whole || **changed)
            .map(
                |((id, &at), _)| match self.latest.instances.get(at as usize) {
                    Some(instance) if at != ABSENT => Target::Listed(instance),
                    _ => Target::Unlisted(id),
                },
            )
            .collect();
        self.changed.iter_mut().for_each(|c| *c = false);
        self.aggregate_changed = false;
        Message {
            kind,
            invocation: &self.latest,
            targets,
            ended: self.ended,
            targeted: self.targets.len(),
        }
    }

    fn index(&self, id: &str) -> Result<usize, usize> {
        self.targets.binary_search_by(|t| (**t).cmp(id))
    }
}

/// The status of the instance at `at` in `read`; `None` when unlisted.
fn status_at(read: &InvocationState, at: u32) -> Option<&str> {
    (at != ABSENT)
        .then(|| read.instances.get(at as usize))
        .flatten()
        .map(|i| i.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(aggregate: &str, instances: &[(&str, &str)]) -> Arc<InvocationState> {
        first(aggregate, instances).state
    }

    fn first(aggregate: &str, instances: &[(&str, &str)]) -> Read {
        Read::new(InvocationState {
            invoke_id: "t-1".into(),
            status: aggregate.into(),
            instances: instances
                .iter()
                .map(|(id, status)| InstanceState {
                    instance_id: (*id).into(),
                    status: (*status).into(),
                    ..InstanceState::default()
                })
                .collect(),
        })
    }

    fn ids(message: &Message<'_>) -> Vec<String> {
        message
            .targets
            .iter()
            .map(|t| match t {
                Target::Listed(i) => format!("{}={}", i.instance_id, i.status),
                Target::Unlisted(id) => format!("{id}=?"),
            })
            .collect()
    }

    #[test]
    fn an_empty_ask_targets_every_instance_once_sorted_and_within_the_limit() {
        let first = first(
            "Running",
            &[("i-c", "Running"), ("i-a", "Success"), ("i-c", "Running")],
        );
        let mut view = View::resolve(&first, &[], 2).unwrap();
        assert_eq!((view.targeted(), view.ended()), (2, 1));
        assert_eq!(
            ids(&view.message(Kind::Snapshot)),
            ["i-a=Success", "i-c=Running"]
        );
        assert_eq!(
            View::resolve(&first, &[], 1).unwrap_err(),
            Unresolved::TooMany { count: 2, limit: 1 }
        );
    }

    #[test]
    fn asked_instances_must_be_the_invocations() {
        let first = first("Running", &[("i-a", "Running")]);
        let asked = ["i-a".to_owned(), "i-x".to_owned(), "i-y".to_owned()];
        assert_eq!(
            View::resolve(&first, &asked, 10).unwrap_err(),
            Unresolved::Outside(vec![(1, "i-x".into()), (2, "i-y".into())])
        );
    }

    #[test]
    fn only_pending_scheduled_and_running_targets_are_stopped() {
        let first = first(
            "Running",
            &[
                ("i-a", "Running"),
                ("i-b", "Pending"),
                ("i-c", "Stopping"),
                ("i-d", "Success"),
                ("i-e", "Scheduled"),
                ("i-f", "Running"),
            ],
        );
        let asked: Vec<String> = ["i-a", "i-b", "i-c", "i-d", "i-e"]
            .map(String::from)
            .to_vec();
        let view = View::resolve(&first, &asked, 10).unwrap();
        assert_eq!(view.stoppable(), ["i-a", "i-b", "i-e"]);
    }

    #[test]
    fn changes_carry_only_what_moved_since_the_last_message_and_merge_while_unsent() {
        let mut view = View::resolve(
            &first(
                "Running",
                &[("i-a", "Running"), ("i-b", "Running"), ("i-c", "Running")],
            ),
            &[],
            10,
        )
        .unwrap();
        assert_eq!(view.message(Kind::Snapshot).targets.len(), 3);
        assert!(!view.has_changes());
        // Two reads before the reader takes a message: one message, the latest status of each.
        assert!(view.update(read(
            "Running",
            &[("i-a", "Stopping"), ("i-b", "Running"), ("i-c", "Running")]
        )));
        assert!(view.update(read(
            "Running",
            &[("i-a", "Stopped"), ("i-b", "Running"), ("i-c", "Failed")]
        )));
        let message = view.message(Kind::Changes);
        assert_eq!(ids(&message), ["i-a=Stopped", "i-c=Failed"]);
        assert_eq!((message.ended, message.targeted), (2, 3));
        assert!(!view.has_changes());
        // The same read again changes nothing.
        assert!(!view.update(read(
            "Running",
            &[("i-a", "Stopped"), ("i-b", "Running"), ("i-c", "Failed")]
        )));
        // The aggregate alone is a change, with no instance in it.
        assert!(view.update(read(
            "PartialFailed",
            &[("i-a", "Stopped"), ("i-b", "Running"), ("i-c", "Failed")]
        )));
        let message = view.message(Kind::Changes);
        assert!(message.targets.is_empty());
        assert_eq!(message.invocation.status, "PartialFailed");
        assert_eq!(view.message(Kind::Final).targets.len(), 3);
    }

    #[test]
    fn a_target_a_read_stops_listing_is_said_by_id_and_counts_as_not_final() {
        let mut view = View::resolve(
            &first("Running", &[("i-a", "Success"), ("i-b", "Running")]),
            &[],
            10,
        )
        .unwrap();
        assert_eq!(view.ended(), 1);
        assert!(view.update(read("Running", &[("i-b", "Stopped")])));
        assert_eq!(view.ended(), 1);
        assert!(!view.all_final());
        assert_eq!(ids(&view.message(Kind::Changes)), ["i-a=?", "i-b=Stopped"]);
        // Listed again: a change again.
        assert!(view.update(read("Running", &[("i-a", "Success"), ("i-b", "Stopped")])));
        assert!(view.all_final());
    }

    #[test]
    fn duplicates_in_a_later_read_count_once() {
        let mut view = View::resolve(&first("Running", &[("i-a", "Running")]), &[], 10).unwrap();
        view.update(read("Stopped", &[("i-a", "Stopped"), ("i-a", "Stopped")]));
        assert_eq!((view.ended(), view.targeted()), (1, 1));
        assert!(view.all_final());
    }
}
