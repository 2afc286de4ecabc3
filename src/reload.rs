//! Settings read from files that are rotated in place (certificates, tokens, policy): read and
//! parsed at start, where a bad file stops the start, then re-read every interval; a change that
//! parses replaces the value for every call that starts afterwards, one that does not is logged at
//! error level and the old value stays.
//!
//! Polling, not inotify: Kubernetes updates a mounted Secret by swapping a symlink of its parent
//! directory, cert-manager and SPIFFE agents rewrite files in place or rename over them; comparing
//! the bytes catches all of these the same way, for the cost of reading a few kilobytes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

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
    let contents = read_all(&paths)
        .await
        .map_err(|(path, error)| LoadError::Read {
            setting,
            path: path.display().to_string(),
            error,
        })?;
    let value = parse(&contents, None).map_err(|e| LoadError::Parse {
        setting,
        error: e.to_string(),
    })?;
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
        let previous = current.load_full();
        match parse(&contents, Some(&previous)) {
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

async fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, (&Path, std::io::Error)> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(
            tokio::fs::read(path)
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
