//! The bearer-token file: one caller a line, `NAME sha256:HEX`, so that no token is stored in the
//! clear; a presented token is hashed and compared with every entry in constant time.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::identity::MAX_NAME_LEN;

/// The prefix of a token's digest in the file.
const DIGEST_PREFIX: &str = "sha256:";

/// The callers that may present a bearer token, by the SHA-256 of their token.
#[derive(Default)]
pub(crate) struct TokenTable {
    entries: Vec<(Arc<str>, [u8; 32])>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: digests are not secret, but nothing here needs them.
        f.debug_list()
            .entries(self.entries.iter().map(|(name, _)| name))
            .finish()
    }
}

/// A line of the token file is unusable; the line's content is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {rule}")]
pub(crate) struct TokenFileError {
    /// 1-based line number.
    pub line: usize,
    /// What the line breaks.
    pub rule: &'static str,
}

impl TokenTable {
    /// Parses the file: `NAME sha256:HEX` a line (HEX: 64 hex digits), blank lines and `#`
    /// comments ignored; names and digests must be unique.
    pub(crate) fn parse(text: &[u8]) -> Result<Self, TokenFileError> {
        let error = |line, rule| TokenFileError { line, rule };
        let text = std::str::from_utf8(text).map_err(|_| error(0, "the file is not UTF-8"))?;
        let mut entries = Vec::new();
        let mut names = HashSet::new();
        let mut digests = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let content = line.split_once('#').map_or(line, |(before, _)| before);
            let mut fields = content.split_whitespace();
            let Some(name) = fields.next() else { continue };
            let (Some(digest), None) = (fields.next(), fields.next()) else {
                return Err(error(line_no, "expected `NAME sha256:HEX`"));
            };
            if name.len() > MAX_NAME_LEN || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(error(
                    line_no,
                    "a caller name is 1 to 256 printable ASCII characters without spaces",
                ));
            }
            let digest = parse_digest(digest).ok_or_else(|| {
                error(
                    line_no,
                    "the token must be given as sha256: and 64 hex digits (its SHA-256), never in the clear",
                )
            })?;
            if !names.insert(name) {
                return Err(error(line_no, "this caller name appears twice"));
            }
            if !digests.insert(digest) {
                return Err(error(line_no, "this token digest appears twice"));
            }
            entries.push((Arc::from(crate::identity::token(name)), digest));
        }
        Ok(Self { entries })
    }

    /// The caller whose token this is (`token:NAME`). Every entry is compared, without stopping at a match, so
    /// the time taken says nothing about which entry matched or how much of one did.
    pub(crate) fn identify(&self, token: &[u8]) -> Option<Arc<str>> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for (name, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Number of callers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table names no caller (so no token is accepted).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_digest(field: &str) -> Option<[u8; 32]> {
    let hex = field.strip_prefix(DIGEST_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf %s s3cret | sha256sum`, computed outside this code.
    const S3CRET_SHA256: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

    #[test]
    fn the_digest_in_the_file_is_the_sha256_of_the_token() {
        let table = TokenTable::parse(
            format!("# callers\n\nbilling sha256:{S3CRET_SHA256}  # rotated 2026-11\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.identify(b"s3cret").as_deref(), Some("token:billing"));
        assert_eq!(table.identify(b"s3cret\n"), None);
        assert_eq!(table.identify(b""), None);
    }

    #[test]
    fn unusable_lines_are_named_by_number_without_echoing_them() {
        let digest = format!("sha256:{S3CRET_SHA256}");
        let cases = [
            (format!("a {digest}\nb\n"), 2, "expected"),
            ("a plaintext-token\n".to_owned(), 1, "never in the clear"),
            (format!("a sha256:{}\n", &S3CRET_SHA256[1..]), 1, "64 hex"),
            (
                format!("a sha256:{}\n", S3CRET_SHA256.replace('e', "g")),
                1,
                "64 hex",
            ),
            (format!("a {digest} extra\n"), 1, "expected"),
            (
                format!("a {digest}\na sha256:{}\n", "0".repeat(64)),
                2,
                "name appears twice",
            ),
            (
                format!("a {digest}\nb {digest}\n"),
                2,
                "digest appears twice",
            ),
            (format!("{} {digest}\n", "n".repeat(257)), 1, "1 to 256"),
            (format!("caf\u{e9} {digest}\n"), 1, "printable ASCII"),
        ];
        for (text, line, rule) in cases {
            let err = TokenTable::parse(text.as_bytes()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(rule), "{text:?}: {err}");
            assert!(!err.to_string().contains("plaintext-token"), "{err}");
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let table =
            TokenTable::parse(format!("billing sha256:{S3CRET_SHA256}").as_bytes()).unwrap();
        assert_eq!(format!("{table:?}"), r#"["token:billing"]"#);
    }
}
