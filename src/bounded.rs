//! Bounded reads: every file the gateway reads (TLS, tokens, policy, Redis password, OIDC token,
//! credential profiles) must be a regular file under a size cap, and every HTTP answer a credential
//! source sends is read up to a cap — so that a FIFO, `/dev/zero` or an endless answer costs an
//! error naming the source, never a wedged task or gigabytes of memory.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The largest file read: far above any certificate bundle, token table or policy in use.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The largest credential-source answer (a temporary credential is well under 4 KiB; ECS's own
/// answers are capped at 64 KiB too).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads `path` whole if it is a regular file of at most `MAX_FILE_BYTES`. Opened without
/// blocking, so that a FIFO put in its place is refused instead of waiting for a writer forever.
pub(crate) fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut contents = Vec::with_capacity(metadata.len().min(MAX_FILE_BYTES) as usize);
    // One byte past the cap tells a file that grew past it since the size was read.
    File::take(file, MAX_FILE_BYTES + 1).read_to_end(&mut contents)?;
    if contents.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(contents)
}

/// [`read_file`] as text.
pub(crate) fn read_text(path: &Path) -> io::Result<String> {
    read_file(path).and_then(text)
}

/// [`read_file`] off the async threads.
pub(crate) async fn read_file_async(path: &Path) -> io::Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_file(&path))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// [`read_text`] off the async threads.
pub(crate) async fn read_text_async(path: &Path) -> io::Result<String> {
    read_file_async(path).await.and_then(text)
}

fn text(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {} KiB", MAX_FILE_BYTES / 1024),
    )
}

/// Reads `response`'s body up to `MAX_ANSWER_BYTES`; `None` once it goes past, without reading
/// further. reqwest has no body limit of its own.
pub(crate) async fn read_answer(
    mut response: reqwest::Response,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_under_the_cap_is_read_whole() {
        let dir = std::env::temp_dir().join(format!("bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("small");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_file(&path).unwrap(), b"hello");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(
            read_file(&big).unwrap_err().to_string(),
            "larger than 1024 KiB"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn devices_and_directories_are_refused_at_once() {
        for path in ["/dev/zero", "/dev/null", "/tmp"] {
            let error = read_file(Path::new(path)).unwrap_err();
            assert!(
                error.to_string() == "not a regular file"
                    || error.kind() == io::ErrorKind::IsADirectory,
                "{path}: {error}"
            );
        }
    }
}
