//! Typed caller identities. A caller is a SPIFFE ID (a certificate's `spiffe://` URI SAN), a DNS
//! name (a certificate's DNS SAN), a certificate's subject CN, or a token's name — four kinds
//! that never meet: each is written with its kind (`spiffe://…`, `dns:…`, `cn:…`, `token:…`), so
//! no certificate can become a token caller and no CN or DNS SAN a SPIFFE ID (Envoy's RBAC keeps
//! principals typed the same way).

/// The longest name accepted for any kind, before its prefix: it ends up in logs and statuses.
pub(crate) const MAX_NAME_LEN: usize = 256;

const SPIFFE: &str = "spiffe://";
const DNS: &str = "dns:";
const CN: &str = "cn:";
const TOKEN: &str = "token:";

/// The identity of the token file's caller `name`.
pub(crate) fn token(name: &str) -> String {
    format!("{TOKEN}{name}")
}

/// The identity of a certificate's SPIFFE ID; `None` for any other URI.
pub(crate) fn spiffe(uri: &str) -> Option<String> {
    uri.starts_with(SPIFFE).then(|| uri.to_owned())
}

/// The identity of a certificate's DNS SAN.
pub(crate) fn dns(name: &str) -> String {
    format!("{DNS}{name}")
}

/// The identity of a certificate's subject CN.
pub(crate) fn cn(name: &str) -> String {
    format!("{CN}{name}")
}

/// Whether `name` can be an identity's name: 1 to [`MAX_NAME_LEN`] printable ASCII characters
/// (spaces allowed inside, as CNs have them), so that it survives a log line and a status.
pub(crate) fn printable(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// A caller as the policy file names it, made typed. A name without a kind is a token's name
/// (what such a name matched before identities were typed, for token callers); a name with a
/// colon must say its kind.
pub(crate) fn policy_name(written: &str) -> Result<String, String> {
    let typed = [SPIFFE, DNS, CN, TOKEN]
        .into_iter()
        .find_map(|prefix| written.strip_prefix(prefix).map(|rest| (prefix, rest)));
    match typed {
        Some((_, rest)) if !printable(rest) => Err(format!(
            "the name after the kind must be 1 to {MAX_NAME_LEN} printable ASCII characters"
        )),
        Some(_) => Ok(written.to_owned()),
        None if written.contains(':') => {
            Err("name the caller with its kind: spiffe://…, dns:…, cn:… or token:…".to_owned())
        }
        None if !printable(written) => Err(format!(
            "a caller name is 1 to {MAX_NAME_LEN} printable ASCII characters"
        )),
        None => Ok(token(written)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_prefix_and_a_bare_name_is_a_token_name() {
        assert_eq!(policy_name("billing").unwrap(), "token:billing");
        assert_eq!(policy_name("token:billing").unwrap(), "token:billing");
        assert_eq!(
            policy_name("dns:runner.internal").unwrap(),
            "dns:runner.internal"
        );
        assert_eq!(policy_name("cn:runner").unwrap(), "cn:runner");
        assert_eq!(
            policy_name("spiffe://prod.example/ns/ops/sa/runner").unwrap(),
            "spiffe://prod.example/ns/ops/sa/runner"
        );
    }

    #[test]
    fn an_unknown_kind_or_an_empty_name_is_refused() {
        for bad in ["uri:x", "billing:prod", "dns:", "cn: ", "token:\u{7}", ""] {
            assert!(policy_name(bad).is_err(), "{bad:?}");
        }
        assert!(policy_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn certificate_names_cannot_pass_for_another_kind() {
        assert_eq!(spiffe("https://prod.example/runner"), None);
        assert_ne!(dns("billing"), token("billing"));
        assert_ne!(cn("billing"), token("billing"));
        assert_ne!(
            cn("spiffe://prod.example/runner"),
            "spiffe://prod.example/runner"
        );
        assert_ne!(
            dns("spiffe://prod.example/runner"),
            "spiffe://prod.example/runner"
        );
    }
}
