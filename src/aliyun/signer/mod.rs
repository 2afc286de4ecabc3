//! Alibaba Cloud's request signatures: V3 (ACS3-HMAC-SHA256, what Alibaba's SDKs sign with today)
//! and V1 (the RPC HMAC-SHA1 query signature), each as pure functions one stage at a time, beside
//! each other as aws-sigv4 keeps `v4` beside `v4a`. Both sign the same canonical query, built here.

/// The RPC HMAC-SHA1 query signature, on request (and for STS, as Alibaba's credentials library signs).
pub mod v1;
/// ACS3-HMAC-SHA256, the default.
pub mod v3;

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use v1::{
    SIGNATURE_METHOD, SIGNATURE_VERSION, SignedQuery, SigningKey, sign_query, string_to_sign,
};

/// Which signature ECS calls carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// ACS3-HMAC-SHA256: what Alibaba's SDKs sign with today.
    #[default]
    V3,
    /// The RPC HMAC-SHA1 query signature (`SignatureVersion=1.0`), which Alibaba calls discontinued.
    V1,
}

impl SignatureVersion {
    /// The name operators write: `v3` or `v1`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V3 => "v3",
            Self::V1 => "v1",
        }
    }
}

impl FromStr for SignatureVersion {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "v3" => Ok(Self::V3),
            "v1" => Ok(Self::V1),
            _ => Err("must be v3 (ACS3-HMAC-SHA256, the default) or v1 (HMAC-SHA1)"),
        }
    }
}

/// Everything but RFC 3986 unreserved characters is escaped; `percent-encoding` emits uppercase hex.
const RPC_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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
}
