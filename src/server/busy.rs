//! How much handler work is under way — unary calls, and waits until they end — so that a
//! shutdown stops waiting for connections once only flushing answers is left: a stream whose
//! caller stopped reading is not work, and must not hold SIGTERM for the whole grace.

use std::sync::Arc;

use tokio::sync::watch;

/// Counts work under way; clones share the count.
#[derive(Clone, Debug)]
pub(crate) struct Busy(Arc<watch::Sender<usize>>);

impl Default for Busy {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Busy {
    /// Counts one piece of work until the guard is dropped.
    pub(crate) fn enter(&self) -> Working {
        self.0.send_modify(|n| *n += 1);
        Working(self.0.clone())
    }

    /// Resolves once no work is under way.
    pub(crate) async fn idle(&self) {
        let mut count = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// One piece of work, counted until dropped.
#[derive(Debug)]
pub(crate) struct Working(Arc<watch::Sender<usize>>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_piece_of_work() {
        let busy = Busy::default();
        let first = busy.enter();
        let second = busy.enter();
        drop(first);
        let idle = busy.idle();
        tokio::pin!(idle);
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(1), idle)
            .await
            .expect("idle once nothing is under way");
    }
}
