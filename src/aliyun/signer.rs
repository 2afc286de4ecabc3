//! Alibaba Cloud RPC signature v1 (HMAC-SHA1) as pure functions, one per stage.
//!
//! Each stage is public so the published vectors can be checked step by step: a failure then names
//! the step that broke (encoding, canonicalization, string to sign, or the HMAC itself).

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Everything but RFC 3986 unreserved characters is escaped; `percent-encoding` emits uppercase hex.
const RPC_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The value of the `SignatureMethod` common parameter.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// The value of the `SignatureVersion` common parameter.
pub const SIGNATURE_VERSION: &str = "1.0";

/// Percent-encodes `input` over its UTF-8 bytes the way the RPC signature requires (space → `%20`).
pub fn percent_encode(input: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(input, RPC_ENCODE_SET)
}

/// Sorts parameters by name in byte order and joins `enc(name)=enc(value)` pairs with `&`.
///
/// `Signature` must not be among `params`; it is never part of what is signed.
pub fn canonicalized_query<K, V>(params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Byte order on the raw names, as Alibaba's SDKs sort before encoding.
    sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::with_capacity(sorted.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in sorted.iter().enumerate() {
        use fmt::Write as _;
        if i > 0 {
            out.push('&');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "{}={}", percent_encode(k), percent_encode(v));
    }
    out
}

/// Builds `METHOD&%2F&enc(canonicalized_query)`.
pub fn string_to_sign(method: &str, canonicalized_query: &str) -> String {
    format!(
        "{}&%2F&{}",
        method.to_ascii_uppercase(),
        percent_encode(canonicalized_query)
    )
}

/// An HMAC-SHA1 keyed once with `AccessKeySecret + "&"`, reused for every request.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha1>);

impl SigningKey {
    /// Keys the HMAC with the raw AccessKey secret followed by `&`.
    pub fn new(access_key_secret: &str) -> Self {
        let mut key = Vec::with_capacity(access_key_secret.len() + 1);
        key.extend_from_slice(access_key_secret.as_bytes());
        key.push(b'&');
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = Hmac::<Sha1>::new_from_slice(&key).expect("HMAC takes any key length");
        Self(mac)
    }

    /// Base64 (standard, padded) of HMAC-SHA1 over the string to sign.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A canonical query with its `Signature` appended: the full query string of a signed request.
///
/// It carries the AccessKeyId, the signature and any security token, so its `Debug` is redacted and
/// it has no `Display`.
pub struct SignedQuery {
    query: String,
    signature: String,
}

impl SignedQuery {
    /// The query string to put after `?`.
    pub fn as_str(&self) -> &str {
        &self.query
    }

    /// The signature alone (base64), so that an echo of it can be recognized and removed.
    pub fn signature(&self) -> &str {
        &self.signature
    }
}

impl fmt::Debug for SignedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignedQuery(<redacted>)")
    }
}

/// Runs every stage: canonicalize, build the string to sign, sign, and append `Signature`.
pub fn sign_query<K, V>(method: &str, params: &[(K, V)], key: &SigningKey) -> SignedQuery
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut query = canonicalized_query(params);
    let signature = key.sign(&string_to_sign(method, &query));
    use fmt::Write as _;
    let _ = write!(query, "&Signature={}", percent_encode(&signature));
    SignedQuery { query, signature }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-_.~").to_string(), "aZ09-_.~");
        assert_eq!(
            percent_encode(" *+/=&%:").to_string(),
            "%20%2A%2B%2F%3D%26%25%3A"
        );
        assert_eq!(percent_encode("é").to_string(), "%C3%A9");
    }

    #[test]
    fn instance_ids_sort_in_byte_order_not_numeric_order() {
        let params = [
            ("InstanceId.2", "b"),
            ("InstanceId.10", "c"),
            ("InstanceId.1", "a"),
        ];
        assert_eq!(
            canonicalized_query(&params),
            "InstanceId.1=a&InstanceId.10=c&InstanceId.2=b"
        );
    }

    #[test]
    fn uppercase_names_sort_before_lowercase() {
        let params = [("a", "1"), ("B", "2")];
        assert_eq!(canonicalized_query(&params), "B=2&a=1");
    }

    #[test]
    fn debug_output_hides_key_and_query() {
        let key = SigningKey::new("topsecret");
        let signed = sign_query("POST", &[("SecurityToken", "tok-123")], &key);
        assert!(!format!("{key:?}").contains("topsecret"));
        assert!(!format!("{signed:?}").contains("tok-123"));
        assert!(!format!("{signed:?}").contains("Signature"));
    }
}
