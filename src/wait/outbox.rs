//! Where a wait leaves what its caller has not read yet: the view (changes merge in it), the stop
//! answers since the last message, and the end. The wait's task never waits for the reader, and
//! the reader builds each message when it can take one: a slow reader gets fewer, merged messages,
//! never a queue, and nothing the wait does blocks on it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::wait::outcome::{End, StopAnswer};
use crate::wait::view::{Kind, Message, View};

/// What the reader is handed: a message, then the end.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A message and the stop answers since the previous one.
    Message(Message<'a>, Vec<StopAnswer>),
    /// How the wait ended: the stream's last item.
    End(End),
}

#[derive(Debug, Default)]
struct Mail {
    view: Option<View>,
    stops: Vec<StopAnswer>,
    snapshot_sent: bool,
    end: Option<End>,
    final_sent: bool,
    done: bool,
}

impl Mail {
    /// The next step the reader may take now, if any.
    fn take(&mut self) -> Option<Step<'_>> {
        if self.done {
            return None;
        }
        let kind = match (&self.view, &self.end) {
            (Some(_), Some(_)) if !self.final_sent => Some(Kind::Final),
            (Some(_), None) if !self.snapshot_sent => Some(Kind::Snapshot),
            (Some(view), None) if view.has_changes() || !self.stops.is_empty() => {
                Some(Kind::Changes)
            }
            _ => None,
        };
        match kind {
            Some(kind) => {
                self.snapshot_sent = true;
                self.final_sent |= kind == Kind::Final;
                let stops = std::mem::take(&mut self.stops);
                let view = self.view.as_mut()?;
                Some(Step::Message(view.message(kind), stops))
            }
            None => {
                let end = self.end.take()?;
                self.done = true;
                Some(Step::End(end))
            }
        }
    }
}

struct Outbox {
    mail: Mutex<Mail>,
    ready: Notify,
    /// Whatever must live as long as either side (the wait's slot).
    _slot: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Mail> {
        // Every change is whole under the lock: a poisoned one is still sound.
        self.mail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new outbox holding `slot` until both sides are gone: the wait's side, and the stream's.
pub(crate) fn outbox<S: Send + Sync + 'static>(slot: S) -> (Writer, Reader) {
    let outbox = Arc::new(Outbox {
        mail: Mutex::default(),
        ready: Notify::new(),
        _slot: Box::new(slot),
    });
    let present = CancellationToken::new();
    let writer = Writer {
        outbox: outbox.clone(),
        gone: present.clone(),
        ended: false,
    };
    let reader = Reader {
        outbox,
        _present: present.drop_guard(),
    };
    (writer, reader)
}

/// The wait's side: merges into the outbox and never waits for the reader.
#[derive(Debug)]
pub(crate) struct Writer {
    outbox: Arc<Outbox>,
    gone: CancellationToken,
    ended: bool,
}

impl Writer {
    /// Sets the view once the targets are known.
    pub(crate) fn resolved(&self, view: View) {
        self.outbox.lock().view = Some(view);
        self.outbox.ready.notify_one();
    }

    /// Runs `f` on the view (none before it is resolved); wakes the reader when `f` says it
    /// changed something a message says.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut View) -> (bool, T)) -> Option<T> {
        let (changed, out) = f(self.outbox.lock().view.as_mut()?);
        if changed {
            self.outbox.ready.notify_one();
        }
        Some(out)
    }

    /// Adds a stop answer to the next message.
    pub(crate) fn stopped(&self, answer: StopAnswer) {
        self.outbox.lock().stops.push(answer);
        self.outbox.ready.notify_one();
    }

    /// Resolves once the reader has gone.
    pub(crate) async fn gone(&self) {
        self.gone.cancelled().await;
    }

    /// Ends the stream with `end`, after the final message.
    pub(crate) fn end(mut self, end: End) {
        self.finish(end);
    }

    fn finish(&mut self, end: End) {
        self.ended = true;
        self.outbox.lock().end = Some(end);
        self.outbox.ready.notify_one();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.ended {
            self.finish(End::Crashed);
        }
    }
}

/// The stream's side; dropping it tells the wait that its caller went away.
pub(crate) struct Reader {
    outbox: Arc<Outbox>,
    _present: DropGuard,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// The next step, turned by `f` into the wire's form; `None` after the end.
    pub(crate) async fn next<T>(&self, mut f: impl FnMut(Step<'_>) -> T) -> Option<T> {
        loop {
            {
                let mut mail = self.outbox.lock();
                if mail.done {
                    return None;
                }
                if let Some(step) = mail.take() {
                    return Some(f(step));
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a change made between the look
            // above and this await is not missed.
            self.outbox.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::invocation::{InstanceState, InvocationState};
    use crate::wait::read::Read;

    fn read(statuses: &[&str]) -> Arc<InvocationState> {
        first(statuses).state
    }

    fn first(statuses: &[&str]) -> Read {
        Read::new(InvocationState {
            invoke_id: "t-1".into(),
            status: "Running".into(),
            instances: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| InstanceState {
                    instance_id: format!("i-{i}"),
                    status: (*s).into(),
                    ..InstanceState::default()
                })
                .collect(),
        })
    }

    /// Each step as (kind or end, instances, stops).
    async fn steps(reader: &Reader) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        while let Some(step) = reader
            .next(|step| match step {
                Step::Message(m, stops) => (format!("{:?}", m.kind), m.targets.len(), stops.len()),
                Step::End(end) => (format!("{end:?}"), 0, 0),
            })
            .await
        {
            out.push(step);
        }
        out
    }

    fn answer(id: &str) -> StopAnswer {
        StopAnswer {
            instance_ids: vec![id.into()],
            outcome: Ok("R".into()),
        }
    }

    #[tokio::test]
    async fn a_reader_that_comes_late_gets_one_merged_message_and_then_the_final_state() {
        let (writer, reader) = outbox(());
        let view = View::resolve(&first(&["Running", "Running", "Running"]), &[], 10).unwrap();
        writer.resolved(view);
        // Nobody reads while two stops are answered and two reads come in.
        writer.stopped(answer("i-0"));
        writer.stopped(answer("i-1"));
        let all_final = writer.update(|v| {
            let changed = v.update(read(&["Stopping", "Running", "Running"]));
            (changed, v.all_final())
        });
        assert_eq!(all_final, Some(false));
        writer.update(|v| (v.update(read(&["Stopped", "Failed", "Running"])), ()));
        let first = reader
            .next(|s| match s {
                Step::Message(m, stops) => (m.kind, m.targets.len(), stops.len()),
                Step::End(_) => unreachable!("the end comes last"),
            })
            .await;
        assert_eq!(first, Some((Kind::Snapshot, 3, 2)));
        writer.update(|v| (v.update(read(&["Stopped", "Failed", "Stopped"])), ()));
        writer.end(End::AllFinal);
        assert_eq!(
            steps(&reader).await,
            [("Final".to_owned(), 3, 0), ("AllFinal".to_owned(), 0, 0)]
        );
    }

    #[tokio::test]
    async fn changes_since_the_snapshot_carry_only_what_moved() {
        let (writer, reader) = outbox(());
        writer.resolved(View::resolve(&first(&["Running", "Running"]), &[], 10).unwrap());
        let snapshot = reader.next(|s| matches!(s, Step::Message(..))).await;
        assert_eq!(snapshot, Some(true));
        writer.update(|v| (v.update(read(&["Running", "Stopped"])), ()));
        let changes = reader
            .next(|s| match s {
                Step::Message(m, _) => (m.kind, m.targets.len()),
                Step::End(_) => unreachable!(),
            })
            .await;
        assert_eq!(changes, Some((Kind::Changes, 1)));
    }

    #[tokio::test]
    async fn a_wait_that_ends_before_resolving_sends_its_end_alone() {
        let (writer, reader) = outbox(());
        writer.end(End::NotFound);
        assert_eq!(steps(&reader).await, [("NotFound".to_owned(), 0, 0)]);
    }

    #[tokio::test]
    async fn a_writer_dropped_without_an_end_ends_the_stream_as_crashed_never_ok() {
        let (writer, reader) = outbox(());
        writer.resolved(View::resolve(&first(&["Running"]), &[], 10).unwrap());
        let task = tokio::spawn(async move {
            let _writer = writer;
            panic!("the wait's task fails");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(
            steps(&reader).await,
            [("Final".to_owned(), 1, 0), ("Crashed".to_owned(), 0, 0)]
        );
    }

    #[tokio::test]
    async fn the_writer_hears_when_the_reader_goes() {
        let (writer, reader) = outbox(());
        drop(reader);
        tokio::time::timeout(std::time::Duration::from_secs(1), writer.gone())
            .await
            .expect("gone resolves once the reader is dropped");
    }
}
