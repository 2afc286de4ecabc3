//! The Alibaba Cloud CLI's profile file, `~/.aliyun/config.json`: the profile named by
//! `ALIBABA_CLOUD_PROFILE`, else the file's `current`; modes `AK`, `StsToken`, `RamRoleArn`,
//! `EcsRamRole` and `OIDC`.

use std::path::PathBuf;

use serde::Deserialize;

use super::assume_role::AssumeRole;
use super::ecs_metadata::EcsRamRole;
use super::env::Env;
use super::fetch::static_key;
use super::oidc::OidcRole;
use super::source::Source;
use super::sts;

/// The fields of a CLI profile this gateway reads; the CLI writes many more, all ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Profile {
    name: String,
    mode: String,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    sts_token: Option<String>,
    ram_role_arn: Option<String>,
    ram_session_name: Option<String>,
    role_session_name: Option<String>,
    ram_role_name: Option<String>,
    expired_seconds: Option<u64>,
    policy: Option<String>,
    external_id: Option<String>,
    sts_region: Option<String>,
    enable_vpc: Option<bool>,
    oidc_provider_arn: Option<String>,
    oidc_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    current: Option<String>,
    profiles: Vec<Profile>,
}

/// `$HOME/.aliyun/config.json`.
pub(crate) fn path(env: &Env) -> Option<PathBuf> {
    env.home()
        .map(|home| home.join(".aliyun").join("config.json"))
}

/// The source the CLI profile file describes, or why it describes none.
pub(crate) fn source(env: &Env) -> Result<Source, String> {
    if env.is_true("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
        return Err("disabled by ALIBABA_CLOUD_CLI_PROFILE_DISABLED".into());
    }
    let path = path(env).ok_or("HOME is not set")?;
    let shown = path.display();
    let text = crate::bounded::read_text(&path).map_err(|e| format!("{shown}: {e}"))?;
    let config: ConfigFile =
        serde_json::from_str(&text).map_err(|e| format!("{shown}: not a CLI config file: {e}"))?;
    let name = env
        .var("ALIBABA_CLOUD_PROFILE")
        .or(config.current)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{shown}: no profile named and no current profile"))?;
    let profile = config
        .profiles
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("{shown}: no profile {name:?}"))?;
    from_profile(profile, env).map_err(|e| format!("{shown}: profile {name:?}: {e}"))
}

fn from_profile(p: Profile, env: &Env) -> Result<Source, String> {
    let required = |field: &str, value: Option<String>| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{field} is missing"))
    };
    match p.mode.as_str() {
        "AK" => Ok(Source::Static(static_key(
            p.access_key_id.as_deref(),
            p.access_key_secret.as_deref(),
            None,
        )?)),
        "StsToken" => {
            let token = required("sts_token", p.sts_token)?;
            Ok(Source::Static(static_key(
                p.access_key_id.as_deref(),
                p.access_key_secret.as_deref(),
                Some(&token),
            )?))
        }
        "RamRoleArn" => {
            let base = static_key(
                p.access_key_id.as_deref(),
                p.access_key_secret.as_deref(),
                None,
            )?;
            Ok(Source::AssumeRole(AssumeRole {
                base: Box::new(Source::Static(base)),
                role_arn: required("ram_role_arn", p.ram_role_arn)?,
                session_name: sts::session_name(p.ram_session_name.as_deref(), env),
                duration_seconds: sts::duration(p.expired_seconds)?,
                policy: p.policy.filter(|v| !v.is_empty()),
                external_id: p.external_id.filter(|v| !v.is_empty()),
                sts_host: sts::host(p.sts_region.as_deref(), p.enable_vpc, env),
            }))
        }
        "EcsRamRole" => Ok(Source::EcsRamRole(EcsRamRole::new(
            p.ram_role_name.as_deref(),
            env,
        ))),
        "OIDC" => Ok(Source::Oidc(OidcRole {
            role_arn: required("ram_role_arn", p.ram_role_arn)?,
            provider_arn: required("oidc_provider_arn", p.oidc_provider_arn)?,
            token_file: required("oidc_token_file", p.oidc_token_file)?.into(),
            session_name: sts::session_name(p.role_session_name.as_deref(), env),
            duration_seconds: sts::duration(p.expired_seconds)?,
            policy: p.policy.filter(|v| !v.is_empty()),
            sts_host: sts::host(p.sts_region.as_deref(), p.enable_vpc, env),
        })),
        other => Err(format!(
            "mode {other:?} is not supported by ecs-gateway (AK, StsToken, RamRoleArn, EcsRamRole, OIDC are)"
        )),
    }
}
