//! Settings read from files that are rotated in place (certificates, tokens, policy): read and
//! parsed at start, where a bad file stops the start, then re-read every interval; a change that
//! reads the same twice [`SETTLE`] apart and parses replaces the value for every call that starts
//! afterwards, one that does not is logged and the old value stays. Reading twice is what makes an
//! in-place rewrite (truncate, then write) safe: its half-written state is never applied.
//! Every read is bounded ([`crate::bounded::read_file`]): regular files only, under a size cap.
//! A parser that panics is a failed reload, not a dead watcher.
//!
//! Polling, not inotify: Kubernetes updates a mounted Secret by swapping a symlink of its parent
//! directory, cert-manager and SPIFFE agents rewrite files in place or rename over them; comparing
//! the bytes catches all of these the same way, for the cost of reading a few kilobytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::bounded;

/// How long a changed file must stay the same before it is applied.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);
/// How many reads at start may find the files still changing before the start fails.
const START_READS: usize = 20;

/// A value parsed from files, replaced when they change.
pub struct Reloading<T> {
    current: Arc<ArcSwap<T>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// A value that never changes, for tests and embedders.
    pub fn fixed(value: T) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(value)),
        }
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }
}

/// A watched file could not be read or parsed at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{setting}: cannot read {path}: {error}")]
    Read {
        /// The flag and variable that named the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The files' contents are unusable.
    #[error("{setting}: {error}")]
    Parse {
        /// The flag and variable that named the file.
        setting: &'static str,
        /// What is wrong, naming the file's line or field where it can.
        error: String,
    },
}

/// Reads `paths`, parses them with `parse` (which also sees the value being replaced, so that it
/// can carry state across a reload), and re-reads them every `interval` for as long as any clone
/// of the returned value lives. `setting` names the flag in errors and logs.
pub(crate) async fn watch<T, E, P>(
    setting: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    parse: P,
) -> Result<Reloading<T>, LoadError>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display + 'static,
    P: Fn(&[Vec<u8>], Option<&T>) -> Result<T, E> + Send + 'static,
{
    let read_error = |(path, error): (&Path, std::io::Error)| LoadError::Read {
        setting,
        path: path.display().to_string(),
        error,
    };
    let mut contents = read_all(&paths).await.map_err(read_error)?;
    let mut stable = false;
    for _ in 0..START_READS {
        tokio::time::sleep(SETTLE).await;
        let again = read_all(&paths).await.map_err(read_error)?;
        stable = again == contents;
        contents = again;
        if stable {
            break;
        }
    }
    if !stable {
        return Err(LoadError::Parse {
            setting,
            error: "the file kept changing while it was read".to_owned(),
        });
    }
    let value = parse_guarded(&parse, &contents, None)
        .map_err(|error| LoadError::Parse { setting, error })?;
    let reloading = Reloading::fixed(value);
    let weak = Arc::downgrade(&reloading.current);
    tokio::spawn(poll(setting, paths, interval, contents, weak, parse));
    Ok(reloading)
}

/// Re-reads the files until nobody holds the value any more.
async fn poll<T, E, P>(
    setting: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    mut seen: Vec<Vec<u8>>,
    target: Weak<ArcSwap<T>>,
    parse: P,
) where
    E: std::fmt::Display,
    P: Fn(&[Vec<u8>], Option<&T>) -> Result<T, E>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // Each failure is logged once, not at every tick, until the files change again.
    let mut read_failing = false;
    loop {
        ticks.tick().await;
        let Some(current) = target.upgrade() else {
            return;
        };
        let contents = match read_all(&paths).await {
            Ok(contents) => contents,
            Err((path, error)) => {
                if !read_failing {
                    tracing::error!(setting, path = %path.display(), %error, "cannot re-read a watched file; keeping the settings in use");
                    read_failing = true;
                }
                continue;
            }
        };
        read_failing = false;
        if contents == seen {
            continue;
        }
        // Half-way through an in-place rewrite? Apply only what reads the same a moment later;
        // a file still changing is looked at again at the next tick.
        tokio::time::sleep(SETTLE).await;
        match read_all(&paths).await {
            Ok(again) if again == contents => {}
            _ => continue,
        }
        let previous = current.load_full();
        match parse_guarded(&parse, &contents, Some(&previous)) {
            Ok(value) => {
                current.store(Arc::new(value));
                tracing::info!(setting, "reloaded");
            }
            Err(error) => {
                tracing::error!(setting, %error, "changed file is unusable; keeping the settings in use");
            }
        }
        seen = contents;
    }
}

/// `parse`, with a panic turned into an error: whatever a file holds, the watcher lives on.
fn parse_guarded<T, E, P>(
    parse: &P,
    contents: &[Vec<u8>],
    previous: Option<&T>,
) -> Result<T, String>
where
    E: std::fmt::Display,
    P: Fn(&[Vec<u8>], Option<&T>) -> Result<T, E>,
{
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(contents, previous)));
    match parsed {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("the file could not be parsed (the parser failed)".to_owned()),
    }
}

async fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, (&Path, std::io::Error)> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(
            bounded::read_file_async(path)
                .await
                .map_err(|e| (path.as_path(), e))?,
        );
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How often watched files are re-read unless configured otherwise.
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    fn parse_number(files: &[Vec<u8>], _: Option<&u32>) -> Result<u32, String> {
        let text = String::from_utf8_lossy(&files[0]);
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn until(value: &Reloading<u32>, wanted: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *value.current() != wanted {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never became {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_fifo_in_place_of_a_file_is_refused_and_the_watcher_goes_on() {
        let dir = temp_dir();
        let file = dir.join("n");
        let fifo = |path: &Path| {
            let made = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(made.success());
        };
        fifo(&file);
        let at_start = tokio::time::timeout(
            Duration::from_secs(5),
            watch(
                "--n",
                vec![file.clone()],
                Duration::from_millis(20),
                parse_number,
            ),
        )
        .await
        .expect("a FIFO does not wedge the start");
        assert!(
            at_start
                .unwrap_err()
                .to_string()
                .ends_with("not a regular file"),
            "refused by name"
        );

        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "1").unwrap();
        let value = watch(
            "--n",
            vec![file.clone()],
            Duration::from_millis(20),
            parse_number,
        )
        .await
        .unwrap();
        std::fs::remove_file(&file).unwrap();
        fifo(&file);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*value.current(), 1, "the old value stays");
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "2").unwrap();
        until(&value, 2).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_parser_that_panics_is_a_failed_reload_not_a_dead_watcher() {
        let dir = temp_dir();
        let file = dir.join("n");
        std::fs::write(&file, "1").unwrap();
        let parse = |files: &[Vec<u8>], previous: Option<&u32>| {
            assert_ne!(files[0], b"boom", "a parser bug");
            parse_number(files, previous)
        };
        let value = watch("--n", vec![file.clone()], Duration::from_millis(20), parse)
            .await
            .unwrap();
        std::fs::write(&file, "boom").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*value.current(), 1);
        std::fs::write(&file, "3").unwrap();
        until(&value, 3).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_written_file_is_never_applied() {
        let dir = temp_dir();
        let file = dir.join("n");
        std::fs::write(&file, "100").unwrap();
        let value = watch(
            "--n",
            vec![file.clone()],
            Duration::from_millis(5),
            parse_number,
        )
        .await
        .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let watching = {
            let (value, seen) = (value.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    seen.lock().unwrap().insert(*value.current());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        // An in-place rewrite that stalls half-way: "1" for 30 ms, then "123".
        for whole in [123, 100, 123] {
            std::fs::write(&file, "1").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(&file, whole.to_string()).unwrap();
            until(&value, whole).await;
        }
        watching.abort();
        let seen = seen.lock().unwrap().clone();
        assert!(
            !seen.contains(&1),
            "the half-written value was applied: {seen:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_change_that_parses_replaces_the_value_and_one_that_does_not_keeps_it() {
        let dir = std::env::temp_dir().join(format!("reload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("n");
        std::fs::write(&file, "1").unwrap();
        let interval = Duration::from_millis(20);
        let value = watch("--n", vec![file.clone()], interval, parse_number)
            .await
            .unwrap();
        assert_eq!(*value.current(), 1);

        std::fs::write(&file, "2").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *value.current() != 2 {
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(interval).await;
        }
        std::fs::write(&file, "not a number").unwrap();
        tokio::time::sleep(interval * 5).await;
        assert_eq!(*value.current(), 2);
        std::fs::remove_file(&file).unwrap();
        tokio::time::sleep(interval * 5).await;
        assert_eq!(*value.current(), 2);
        std::fs::write(&file, "3").unwrap();
        while *value.current() != 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reloaded after recovery"
            );
            tokio::time::sleep(interval).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_bad_file_at_start_names_the_setting() {
        let missing = PathBuf::from("/nonexistent/ecs-gateway/n");
        let err = watch("--n / N", vec![missing], DEFAULT_INTERVAL, parse_number)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--n / N: cannot read /nonexistent"),
            "{err}"
        );
    }
}
