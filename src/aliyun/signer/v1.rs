//! Alibaba Cloud RPC signature V1 (HMAC-SHA1, `SignatureVersion=1.0`) as pure functions, one per
//! stage: the string to sign, the key, and the signed query.
//!
//! Each stage is public so the published vectors can be checked step by step: a failure then names
//! the step that broke (encoding, canonicalization, string to sign, or the HMAC itself).

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

use super::{canonicalized_query, percent_encode};

/// The value of the `SignatureMethod` common parameter.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// The value of the `SignatureVersion` common parameter.
pub const SIGNATURE_VERSION: &str = "1.0";

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
    fn debug_output_hides_key_and_query() {
        let key = SigningKey::new("topsecret");
        let signed = sign_query("POST", &[("SecurityToken", "tok-123")], &key);
        assert!(!format!("{key:?}").contains("topsecret"));
        assert!(!format!("{signed:?}").contains("tok-123"));
        assert!(!format!("{signed:?}").contains("Signature"));
    }
}
