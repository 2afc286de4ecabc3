//! Alibaba Cloud signature V3 (ACS3-HMAC-SHA256) as pure functions, one per stage: canonical
//! headers and signed headers, canonical request, string to sign, signature, and the
//! `Authorization` value. The action's parameters travel in the query string, the body is empty,
//! and what V1 put in common parameters (action, version, time, nonce, key id) moves to signed
//! `x-acs-*` headers.
//!
//! Each stage is public so the published example and the SDK-computed vectors can be checked step
//! by step, as aws-sigv4 checks its suite.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use super::canonicalized_query;

/// The algorithm's name, first in the string to sign and in `Authorization`.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// SHA-256 of an empty body, lowercase hex: the `x-acs-content-sha256` of every call sent.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The header carrying the signature.
pub const AUTHORIZATION: &str = "authorization";
/// The header naming the API action.
pub const ACTION: &str = "x-acs-action";
/// The header naming the API version.
pub const VERSION: &str = "x-acs-version";
/// The header with the request time, UTC to the second.
pub const DATE: &str = "x-acs-date";
/// The header with the request's unique nonce.
pub const NONCE: &str = "x-acs-signature-nonce";
/// The header with the body's SHA-256.
pub const CONTENT_SHA256: &str = "x-acs-content-sha256";
/// The header with an STS security token.
pub const SECURITY_TOKEN: &str = "x-acs-security-token";
/// The header naming the AccessKeyId beside an STS token, as Alibaba's SDKs send it.
pub const ACCESS_KEY_ID: &str = "x-acs-accesskey-id";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `CanonicalHeaders` and `SignedHeaders` of `headers`: lowercase names sorted, one line
/// `name:value\n` each with the value trimmed (a name given twice is one line, its values sorted
/// and joined by `,`), and the names joined by `;`.
pub fn canonical_headers<N, V>(headers: &[(N, V)]) -> (String, String)
where
    N: AsRef<str>,
    V: AsRef<str>,
{
    let mut lines: Vec<(Cow<'_, str>, &str)> = headers
        .iter()
        .map(|(n, v)| (lowercase(n.as_ref()), v.as_ref().trim()))
        .collect();
    // Sorting by name, then value, groups a repeated name with its values in order.
    lines.sort_unstable();
    let size: usize = lines.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let (mut canonical, mut signed) = (String::with_capacity(size), String::with_capacity(size));
    let mut previous: Option<&str> = None;
    for (name, value) in &lines {
        if previous == Some(name.as_ref()) {
            canonical.pop();
            canonical.push(',');
        } else {
            if previous.is_some() {
                signed.push(';');
            }
            signed.push_str(name);
            canonical.push_str(name);
            canonical.push(':');
        }
        canonical.push_str(value);
        canonical.push('\n');
        previous = Some(name);
    }
    (canonical, signed)
}

/// `name` in lowercase, borrowed when it already is (every name the gateway signs).
fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `METHOD \n / \n query \n canonical headers \n signed headers \n payload hash`; the canonical
/// headers end with their own newline, as Alibaba's code writes them.
pub fn canonical_request(
    method: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_sha256: &str,
) -> String {
    format!(
        "{}\n/\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}",
        method.to_ascii_uppercase()
    )
}

/// `ACS3-HMAC-SHA256 \n hex(SHA-256(canonical request))`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// An HMAC-SHA256 keyed once with the raw AccessKey secret (no `&`, unlike V1).
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl SigningKey {
    /// Keys the HMAC with the AccessKey secret.
    pub fn new(access_key_secret: &str) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
            .expect("HMAC takes any key length");
        Self(mac)
    }

    /// Lowercase hex of HMAC-SHA256 over the string to sign.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// `ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=NAMES,Signature=HEX`.
pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// A signed request: the query string that was signed (to send as it is) and the
/// `Authorization` value to send beside the signed headers. It carries the signature, so its
/// `Debug` is redacted and it has no `Display`.
pub struct SignedRequest {
    query: String,
    authorization: String,
    signature: String,
}

impl SignedRequest {
    /// The query string to put after `?`, byte for byte the one signed.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The `Authorization` header's value.
    pub fn authorization(&self) -> &str {
        &self.authorization
    }

    /// The signature alone (hex), so that an echo of it can be recognized and removed.
    pub fn signature(&self) -> &str {
        &self.signature
    }
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignedRequest(<redacted>)")
    }
}

/// Runs every stage over `params` (the query) and `headers` (every header to sign and send: `host`
/// and the `x-acs-*` ones, the payload hash among them).
pub fn sign<K, V, N, H>(
    method: &str,
    params: &[(K, V)],
    headers: &[(N, H)],
    payload_sha256: &str,
    access_key_id: &str,
    key: &SigningKey,
) -> SignedRequest
where
    K: AsRef<str>,
    V: AsRef<str>,
    N: AsRef<str>,
    H: AsRef<str>,
{
    let query = canonicalized_query(params);
    let (canonical, signed) = canonical_headers(headers);
    let request = canonical_request(method, &query, &canonical, &signed, payload_sha256);
    let signature = key.sign(&string_to_sign(&request));
    SignedRequest {
        authorization: authorization(access_key_id, &signed, &signature),
        query,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_payload_hash_is_sha256_of_nothing() {
        assert_eq!(hex(&Sha256::digest(b"")), EMPTY_PAYLOAD_SHA256);
    }

    #[test]
    fn headers_are_lowercased_trimmed_sorted_and_repeats_joined() {
        let headers = [
            ("X-Acs-Version", " 2014-05-26 "),
            ("host", "ecs.aliyuncs.com"),
            ("x-acs-b", "2"),
            ("x-acs-b", "1"),
        ];
        let (canonical, signed) = canonical_headers(&headers);
        assert_eq!(
            canonical,
            "host:ecs.aliyuncs.com\nx-acs-b:1,2\nx-acs-version:2014-05-26\n"
        );
        assert_eq!(signed, "host;x-acs-b;x-acs-version");
    }

    #[test]
    fn debug_output_hides_key_signature_and_token() {
        let key = SigningKey::new("topsecret");
        let signed = sign(
            "POST",
            &[("RegionId", "cn-hangzhou")],
            &[(SECURITY_TOKEN, "tok-123")],
            EMPTY_PAYLOAD_SHA256,
            "LTAIid",
            &key,
        );
        let shown = format!("{key:?} {signed:?}");
        for secret in ["topsecret", "tok-123", signed.signature()] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
