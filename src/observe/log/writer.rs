//! Where log lines go: appended to a shared buffer that one background thread writes out in
//! batches. A call pays a lock and a copy instead of a `write(2)`, and a stalled stdout (a full
//! pipe, a paused log shipper) never blocks a call: past [`MAX_PENDING`] bytes, lines are dropped,
//! counted and reported.
//!
//! Written here rather than taken from `tracing-appender`: its non-blocking writer allocates each
//! line, wakes its worker for each one and writes each with its own syscall; measured in the same
//! run it cost more CPU per call than writing inline (`bench/README.md`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather before it writes them out: the most a line is late.
const GATHER: Duration = Duration::from_millis(10);

/// Bytes waiting to be written beyond which new lines are dropped: seconds of lines at full load
/// (about 6 MB/s at 20,000 calls/s), so that only a writer that is stuck, not merely busy, loses any.
pub(crate) const MAX_PENDING: usize = 32 << 20;

/// The longest shutdown waits for the last lines to be written to a stalled output.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time between two reports of dropped lines, so a broken output is not flooded.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Lines dropped by every writer of this process: exported as a metric.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines this process has dropped because its output fell behind or failed.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closing: bool,
    done: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the first line lands in an empty buffer, at close, and when the writer ends.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind; they are still worth writing.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A [`MakeWriter`] whose lines a background thread writes to the output in batches; call
/// [`BatchedWriter::flush`] before the process exits.
pub(crate) struct BatchedWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BatchedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedWriter").finish_non_exhaustive()
    }
}

impl BatchedWriter {
    /// A writer to this process's stdout.
    pub(crate) fn stdout() -> io::Result<Self> {
        Self::new(io::stdout())
    }

    /// A writer to `output`, which only the background thread touches.
    pub(crate) fn new(output: impl Write + Send + 'static) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_out(&shared, output)
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A cheap handle that appends to the same buffer.
    pub(crate) fn handle(&self) -> BatchedHandle {
        BatchedHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Writes out every line appended so far and stops the thread; waits at most a few seconds
    /// for an output that does not take them. Lines appended afterwards are dropped and counted.
    pub(crate) fn flush(&self) {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.changed.notify_all();
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while !state.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(state);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Appends whole lines to a [`BatchedWriter`]'s buffer.
#[derive(Clone)]
pub(crate) struct BatchedHandle {
    shared: Arc<Shared>,
}

impl BatchedHandle {
    /// Appends `line` (one complete log line) or, when the buffer is full or closed, drops it.
    fn append(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        if state.closing || state.pending.len() + line.len() > MAX_PENDING {
            drop(state);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        drop(state);
        // Only the first line of a batch wakes the writer: one futex call per batch, not per line.
        if was_empty {
            self.shared.changed.notify_all();
        }
    }
}

/// One event's writer. tracing-subscriber formats an event into one buffer and hands it over in
/// a single `write`, so each `write` is a whole line and lines never interleave.
pub(crate) struct Line<'a> {
    handle: &'a BatchedHandle,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedHandle {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { handle: self }
    }
}

/// The background thread: waits for a first line, lets a batch gather, writes it in one call.
fn write_out(shared: &Shared, mut output: impl Write) {
    let mut batch = Vec::new();
    let mut reported = 0;
    let mut last_report: Option<Instant> = None;
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && !state.closing {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if !state.closing {
            drop(state);
            std::thread::sleep(GATHER);
            state = shared.lock();
        }
        std::mem::swap(&mut state.pending, &mut batch);
        let closing = state.closing;
        drop(state);
        if !batch.is_empty() && (output.write_all(&batch).is_err() || output.flush().is_err()) {
            DROPPED.fetch_add(count_lines(&batch), Ordering::Relaxed);
        }
        batch.clear();
        // A burst may have grown the buffer to MAX_PENDING; do not keep that much for good.
        batch.shrink_to(1 << 20);
        let dropped = dropped_lines();
        if dropped > reported && last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            // Through the subscriber, so it is a proper line in the chosen format; it lands in
            // the next batch.
            tracing::warn!(
                dropped = dropped - reported,
                "log output fell behind or failed: log lines were dropped"
            );
            reported = dropped;
            last_report = Some(Instant::now());
        }
        if closing {
            let mut state = shared.lock();
            if state.pending.is_empty() {
                state.done = true;
                shared.changed.notify_all();
                return;
            }
        }
    }
}

fn count_lines(batch: &[u8]) -> u64 {
    batch.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that keeps everything, and can be made to stall until released.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Sink {
        fn stall(&self) {
            *self.gate.0.lock().unwrap() = true;
        }
        fn release(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (stalled, cv) = &*self.gate;
            let mut stalled = stalled.lock().unwrap();
            while *stalled {
                stalled = cv.wait(stalled).unwrap();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(thread: usize, i: usize) -> String {
        // Long enough that a torn or interleaved write would show.
        format!("thread={thread} i={i} {}\n", "x".repeat(200))
    }

    #[test]
    fn every_line_from_many_threads_arrives_whole_by_the_time_flush_returns() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone()).unwrap();
        let handle = writer.handle();
        std::thread::scope(|s| {
            for t in 0..8 {
                let handle = handle.clone();
                s.spawn(move || {
                    for i in 0..2_000 {
                        handle
                            .make_writer()
                            .write_all(line(t, i).as_bytes())
                            .unwrap();
                    }
                });
            }
        });
        writer.flush();
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 16_000);
        let mut seen = std::collections::HashSet::new();
        for l in &lines {
            assert!(seen.insert(*l), "a line twice: {l}");
            let (t, i) = l
                .strip_prefix("thread=")
                .and_then(|rest| rest.split_once(" i="))
                .unwrap();
            let i = i.split_once(' ').unwrap().0;
            assert_eq!(
                format!("{l}\n"),
                line(t.parse().unwrap(), i.parse().unwrap())
            );
        }
    }

    #[test]
    fn a_stalled_output_never_blocks_a_line_and_what_overflows_is_counted() {
        let sink = Sink::default();
        sink.stall();
        let writer = BatchedWriter::new(sink.clone()).unwrap();
        let handle = writer.handle();
        let before = dropped_lines();
        // The writer takes a first batch and blocks in `write`; then the buffer fills up.
        handle.make_writer().write_all(b"first\n").unwrap();
        std::thread::sleep(GATHER * 5);
        let big = vec![b'y'; 1 << 20];
        let mut lines = big.clone();
        lines.push(b'\n');
        // On this thread: were `write` to block on the stalled output, the test would hang here.
        for _ in 0..(MAX_PENDING >> 20) + 8 {
            handle.make_writer().write_all(&lines).unwrap();
        }
        assert!(
            dropped_lines() - before >= 8,
            "lines beyond MAX_PENDING are dropped and counted"
        );
        sink.release();
        writer.flush();
        let text = sink.text();
        assert!(text.starts_with("first\n"));
        let kept = text.lines().filter(|l| l.len() == big.len()).count();
        assert!(kept >= (MAX_PENDING >> 20) - 1, "kept {kept} whole lines");
        assert!(
            text.lines()
                .all(|l| l == "first" || l.len() == big.len() || l.contains("dropped"))
        );
    }

    #[test]
    fn a_failing_output_counts_its_lines_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let writer = BatchedWriter::new(Broken).unwrap();
        let before = dropped_lines();
        for _ in 0..3 {
            writer.handle().make_writer().write_all(b"lost\n").unwrap();
        }
        writer.flush();
        assert!(dropped_lines() - before >= 3);
    }

    #[test]
    fn lines_after_the_flush_are_dropped_not_written() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone()).unwrap();
        writer.handle().make_writer().write_all(b"kept\n").unwrap();
        writer.flush();
        writer.handle().make_writer().write_all(b"late\n").unwrap();
        assert_eq!(sink.text(), "kept\n");
    }
}
