//! The credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else `~/.alibabacloud/credentials.ini`.
//! INI; the section named by `ALIBABA_CLOUD_PROFILE`, else `default`; `type = access_key | sts |
//! ecs_ram_role | ram_role_arn | oidc_role_arn`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::assume_role::AssumeRole;
use super::ecs_metadata::EcsRamRole;
use super::env::Env;
use super::fetch::static_key;
use super::oidc::OidcRole;
use super::source::Source;
use super::sts;

/// The file the SDKs read.
pub(crate) fn path(env: &Env) -> Option<PathBuf> {
    env.var("ALIBABA_CLOUD_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            env.home()
                .map(|home| home.join(".alibabacloud").join("credentials.ini"))
        })
}

/// The source the credentials file describes, or why it describes none.
pub(crate) fn source(env: &Env) -> Result<Source, String> {
    let path = path(env).ok_or("HOME is not set")?;
    let shown = path.display();
    let text = crate::bounded::read_text(&path).map_err(|e| format!("{shown}: {e}"))?;
    let name = env
        .var("ALIBABA_CLOUD_PROFILE")
        .unwrap_or_else(|| "default".to_owned());
    let section = section(&text, &name)
        .map_err(|e| format!("{shown}: not an INI file: {e}"))?
        .ok_or_else(|| format!("{shown}: no section [{name}]"))?;
    from_section(&section, env).map_err(|e| format!("{shown}: [{name}]: {e}"))
}

/// One section's keys (lower-cased) and values, read as Python's `configparser` and the SDK read
/// them: a value ends at the first `#`, and surrounding blanks are dropped.
fn section(text: &str, name: &str) -> Result<Option<HashMap<String, String>>, String> {
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ini::ParseOption::default()
    };
    let ini = ini::Ini::load_from_str_opt(text, options).map_err(|e| e.to_string())?;
    Ok(ini.section(Some(name)).map(|props| {
        props
            .iter()
            .map(|(k, v)| {
                let v = v.split('#').next().unwrap_or_default().trim();
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect()
    }))
}

fn from_section(s: &HashMap<String, String>, env: &Env) -> Result<Source, String> {
    let get = |key: &str| s.get(key).map(String::as_str).filter(|v| !v.is_empty());
    let required = |key: &str| get(key).ok_or_else(|| format!("{key} is missing"));
    let key = || static_key(get("access_key_id"), get("access_key_secret"), None);
    match get("type").unwrap_or_default() {
        "access_key" => Ok(Source::Static(key()?)),
        "sts" => Ok(Source::Static(static_key(
            get("access_key_id"),
            get("access_key_secret"),
            Some(required("security_token")?),
        )?)),
        "ram_role_arn" => Ok(Source::AssumeRole(AssumeRole {
            base: Box::new(Source::Static(key()?)),
            role_arn: get("role_arn")
                .map(str::to_owned)
                .or_else(|| env.var("ALIBABA_CLOUD_ROLE_ARN"))
                .ok_or("role_arn is missing")?,
            session_name: sts::session_name(get("role_session_name"), env),
            duration_seconds: sts::DEFAULT_DURATION_SECONDS,
            policy: get("policy").map(str::to_owned),
            external_id: None,
            sts_host: sts::host(None, None, env),
        })),
        "oidc_role_arn" => Ok(Source::Oidc(OidcRole {
            role_arn: required("role_arn")?.to_owned(),
            provider_arn: required("oidc_provider_arn")?.to_owned(),
            token_file: required("oidc_token_file_path")?.into(),
            session_name: sts::session_name(get("role_session_name"), env),
            duration_seconds: sts::DEFAULT_DURATION_SECONDS,
            policy: get("policy").map(str::to_owned),
            sts_host: sts::host(None, None, env),
        })),
        "ecs_ram_role" => Ok(Source::EcsRamRole(EcsRamRole::new(get("role_name"), env))),
        other => Err(format!(
            "type {other:?} is not supported by ecs-gateway (access_key, sts, ram_role_arn, oidc_role_arn, ecs_ram_role are)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_end_at_a_hash_and_keys_ignore_case() {
        let text = "[default]\nType = access_key   # a comment\naccess_key_id = LTAIa\n\n[other]\ntype=sts\n";
        let s = section(text, "default").unwrap().unwrap();
        assert_eq!(s["type"], "access_key");
        assert_eq!(s["access_key_id"], "LTAIa");
        assert!(section(text, "missing").unwrap().is_none());
    }
}
