//! Strings from an upstream answer are hostile input: an upstream (or anything in between) that
//! echoes the request would hand the caller and the logs the credential and the signature, and an
//! unbounded string would overflow a client's metadata limit. Everything taken from an answer
//! passes through here first.

use std::time::Duration;

use super::signer::percent_encode;

/// The most bytes kept of any string from an upstream answer.
pub(crate) const MAX_TEXT: usize = 512;
/// The most bytes kept of an ECS `Code`; real codes are a few dozen.
pub(crate) const MAX_CODE: usize = 64;
/// The most bytes kept of an ECS `HostId`.
pub(crate) const MAX_HOST_ID: usize = 128;
/// The most bytes of a `Recommend` link kept; longer ones are dropped, not cut.
pub(crate) const MAX_LINK: usize = 256;
/// The longest RequestId accepted (ECS's are 36-character UUIDs).
pub(crate) const MAX_REQUEST_ID: usize = 64;
/// The longest retry delay passed on, whatever the upstream asked for.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// What a scrubbed secret is replaced with.
pub(crate) const REDACTED: &str = "<redacted>";

/// Domains whose links may reach a caller as `Help`.
const HELP_DOMAINS: [&str; 3] = ["aliyun.com", "aliyuncs.com", "alibabacloud.com"];

/// Removes one attempt's secrets from upstream strings, in every form an echo may take them.
#[derive(Default)]
pub(crate) struct Scrubber {
    /// Raw, percent-encoded and doubly encoded forms (the string to sign encodes the query
    /// again), longest first so that a value containing another is removed whole.
    needles: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber(<redacted>)")
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (AccessKeyId, secret, token, signature, signed query).
    pub(crate) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            let once = percent_encode(secret).to_string();
            let twice = percent_encode(&once).to_string();
            needles.extend([secret.to_owned(), once, twice]);
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Self { needles }
    }

    /// `text` with secrets replaced, control characters removed, cut to `max` bytes.
    pub(crate) fn text(&self, text: &str, max: usize) -> String {
        let mut clean: String = text.chars().filter(|c| !c.is_control()).collect();
        for needle in &self.needles {
            if clean.contains(needle.as_str()) {
                clean = clean.replace(needle.as_str(), REDACTED);
            }
        }
        cut(&mut clean, max);
        clean
    }
}

/// `id` if it looks like a RequestId (1–64 of `[A-Za-z0-9-]`) and contains none of `secrets`.
/// Raw forms suffice: an encoded form has a `%`, which the shape already excludes.
pub(crate) fn request_id(id: &str, secrets: &[&str]) -> Option<String> {
    let shaped = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let secret = secrets.iter().any(|s| !s.is_empty() && id.contains(s));
    (shaped && !secret).then(|| id.to_owned())
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// `link` if it is an https URL on an Alibaba Cloud domain, short enough to pass on.
pub(crate) fn help_link(link: &str) -> Option<String> {
    if link.len() > MAX_LINK {
        return None;
    }
    let url = url::Url::parse(link).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    let on_domain = HELP_DOMAINS
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    (url.scheme() == "https" && on_domain && url.username().is_empty() && url.password().is_none())
        .then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_secret_is_removed() {
        let scrubber = Scrubber::new(["LTAIkey", "tok+en/="]);
        let echoed = "id LTAIkey token tok+en/= enc tok%2Ben%2F%3D twice tok%252Ben%252F%253D";
        let clean = scrubber.text(echoed, MAX_TEXT);
        assert_eq!(
            clean,
            "id <redacted> token <redacted> enc <redacted> twice <redacted>"
        );
    }

    #[test]
    fn text_loses_control_characters_and_is_cut_on_a_character_boundary() {
        let scrubber = Scrubber::default();
        assert_eq!(scrubber.text("a\r\nb\u{1b}[31mc", MAX_TEXT), "ab[31mc");
        let long = "é".repeat(400);
        let cut = scrubber.text(&long, MAX_TEXT);
        assert_eq!(cut.len(), 512);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn only_request_ids_of_the_right_shape_and_without_secrets_pass() {
        let good = "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E";
        assert_eq!(request_id(good, &["LTAIkey"]).as_deref(), Some(good));
        for bad in ["", "a b", "x\n", &"A".repeat(65), "echo-LTAIkey"] {
            assert_eq!(request_id(bad, &["LTAIkey"]), None, "{bad:?}");
        }
    }

    #[test]
    fn help_links_must_be_https_on_alibaba_cloud_domains() {
        let ok = "https://api.aliyun.com/troubleshoot?q=InvalidInvokeId.NotFound&product=Ecs";
        assert!(help_link(ok).is_some());
        assert!(help_link("https://next.api.alibabacloud.com/x").is_some());
        for bad in [
            "http://api.aliyun.com/x",
            "https://aliyun.com.evil.example/x",
            "https://evilaliyun.com/x",
            "https://user@api.aliyun.com/x",
            "javascript:alert(1)",
            &format!("https://api.aliyun.com/{}", "a".repeat(300)),
        ] {
            assert_eq!(help_link(bad), None, "{bad}");
        }
    }
}
