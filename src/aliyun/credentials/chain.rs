//! The default credential chain, in the order of Alibaba's SDKs (`alibabacloud-credentials`'
//! `DefaultCredentialsProvider`): environment, OIDC role, CLI profile file, credentials file, ECS
//! instance role, credentials URI. The first source that yields a credential wins and stays the
//! source for every refresh; one that is configured but fails is passed over, as in the SDKs.

use std::fmt;

use super::credential::{Credential, CredentialError};
use super::ecs_metadata::EcsRamRole;
use super::env::{self, Env};
use super::fetch::Fetcher;
use super::oidc::OidcRole;
use super::source::Source;
use super::uri::CredentialsUri;
use super::{cli_config, profile};

/// One link of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`.
    Environment,
    /// `ALIBABA_CLOUD_ROLE_ARN` + `_OIDC_PROVIDER_ARN` + `_OIDC_TOKEN_FILE` (RRSA).
    OidcRole,
    /// `~/.aliyun/config.json`.
    CliProfile,
    /// `ALIBABA_CLOUD_CREDENTIALS_FILE` or `~/.alibabacloud/credentials.ini`.
    CredentialsFile,
    /// The instance metadata service.
    EcsInstanceRole,
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    CredentialsUri,
}

impl Step {
    /// The chain, in order.
    pub const ALL: [Step; 6] = [
        Step::Environment,
        Step::OidcRole,
        Step::CliProfile,
        Step::CredentialsFile,
        Step::EcsInstanceRole,
        Step::CredentialsUri,
    ];

    /// The name logs and errors use.
    pub fn name(self) -> &'static str {
        match self {
            Step::Environment => "environment",
            Step::OidcRole => "OIDC role",
            Step::CliProfile => "CLI profile file",
            Step::CredentialsFile => "credentials file",
            Step::EcsInstanceRole => "ECS instance RAM role",
            Step::CredentialsUri => "credentials URI",
        }
    }

    /// The source this step describes, or why it describes none.
    pub fn source(self, env: &Env) -> Result<Source, Skip> {
        match self {
            Step::Environment => env::credential(env).map(Source::Static).map_err(|e| match e {
                CredentialError::Missing(_) => Skip::Absent(e.to_string()),
                CredentialError::Malformed(_) => Skip::Failed(e.to_string()),
            }),
            Step::OidcRole => OidcRole::from_env(env).map(Source::Oidc).ok_or_else(|| {
                Skip::Absent(
                    "ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE are not all set"
                        .into(),
                )
            }),
            Step::CliProfile => {
                if env.is_true("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
                    return Err(Skip::Absent("ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true".into()));
                }
                absent_unless_file(cli_config::path(env))?;
                cli_config::source(env).map_err(Skip::Failed)
            }
            Step::CredentialsFile => {
                absent_unless_file(profile::path(env))?;
                profile::source(env).map_err(Skip::Failed)
            }
            Step::EcsInstanceRole => {
                if env.is_true("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
                    return Err(Skip::Absent("ALIBABA_CLOUD_ECS_METADATA_DISABLED=true".into()));
                }
                Ok(Source::EcsRamRole(EcsRamRole::new(None, env)))
            }
            Step::CredentialsUri => match env.var("ALIBABA_CLOUD_CREDENTIALS_URI") {
                None => Err(Skip::Absent("ALIBABA_CLOUD_CREDENTIALS_URI is not set".into())),
                Some(value) => CredentialsUri::parse(&value)
                    .map(Source::Uri)
                    .map_err(Skip::Failed),
            },
        }
    }
}

fn absent_unless_file(path: Option<std::path::PathBuf>) -> Result<(), Skip> {
    match path {
        None => Err(Skip::Absent("HOME is not set".into())),
        Some(path) if !path.is_file() => {
            Err(Skip::Absent(format!("{} does not exist", path.display())))
        }
        Some(_) => Ok(()),
    }
}

/// Why a step gave no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Nothing is configured there.
    Absent(String),
    /// Something is configured there, and it did not work.
    Failed(String),
}

/// The winning source and its first credential.
#[derive(Debug)]
pub struct Found {
    /// Which link of the chain.
    pub step: Step,
    /// The source, kept for refreshes.
    pub source: Source,
    /// Its credential now.
    pub credential: Credential,
    /// Configured sources passed over before this one, and why.
    pub passed_over: Vec<(Step, String)>,
}

/// No source gave a credential; lists every step and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct NothingFound {
    tried: Vec<(Step, Skip)>,
}

impl NothingFound {
    /// Each step and why it gave nothing.
    pub fn tried(&self) -> &[(Step, Skip)] {
        &self.tried
    }
}

impl fmt::Display for NothingFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no Alibaba Cloud credential found; tried, in order:")?;
        for (i, (step, skip)) in self.tried.iter().enumerate() {
            let (Skip::Absent(why) | Skip::Failed(why)) = skip;
            write!(f, " {}. {}: {why};", i + 1, step.name())?;
        }
        Ok(())
    }
}

/// Walks the chain: the first source that yields a credential.
pub async fn resolve(env: &Env, fetcher: &Fetcher) -> Result<Found, NothingFound> {
    let mut tried = Vec::new();
    for step in Step::ALL {
        let skip = match step.source(env) {
            Err(skip) => skip,
            Ok(source) => match source.fetch(fetcher).await {
                Ok(credential) => {
                    let passed_over = tried
                        .into_iter()
                        .filter_map(|(step, skip)| match skip {
                            Skip::Failed(why) => Some((step, why)),
                            Skip::Absent(_) => None,
                        })
                        .collect();
                    return Ok(Found {
                        step,
                        source,
                        credential,
                        passed_over,
                    });
                }
                Err(error) => Skip::Failed(error.0),
            },
        };
        tried.push((step, skip));
    }
    Err(NothingFound { tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(files: &[(&str, &str)]) -> std::path::PathBuf {
        let home = std::env::temp_dir().join(format!(
            "ecs-gateway-chain-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        for (path, content) in files {
            let path = home.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        home
    }

    fn env(home: &std::path::Path, vars: &[(&str, &str)]) -> Env {
        let home = home.display().to_string();
        Env::from_pairs(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("HOME".to_owned(), home)]),
        )
    }

    #[test]
    fn an_sts_section_in_the_credentials_file_carries_its_token() {
        // The Go SDK reads `type = sts`; the Python one (1.0.12) does not, so the oracle cannot.
        let home = home_with(&[(
            ".alibabacloud/credentials.ini",
            "[default]\ntype = sts\naccess_key_id = STS.fileKey\naccess_key_secret = s\nsecurity_token = tok\n",
        )]);
        match Step::CredentialsFile.source(&env(&home, &[])) {
            Ok(Source::Static(c)) => {
                assert_eq!(c.access_key_id(), "STS.fileKey");
                assert_eq!(c.security_token(), Some("tok"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsupported_modes_and_missing_fields_are_named() {
        let home = home_with(&[
            (
                ".aliyun/config.json",
                r#"{"current": "sso", "profiles": [{"name": "sso", "mode": "CloudSSO"}, {"name": "role", "mode": "RamRoleArn", "access_key_id": "a", "access_key_secret": "b"}]}"#,
            ),
            (
                ".alibabacloud/credentials.ini",
                "[default]\ntype = rsa_key_pair\n",
            ),
        ]);
        let failed = |step: Step, vars: &[(&str, &str)]| match step.source(&env(&home, vars)) {
            Err(Skip::Failed(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(failed(Step::CliProfile, &[]).contains("\"CloudSSO\" is not supported"));
        let role = failed(Step::CliProfile, &[("ALIBABA_CLOUD_PROFILE", "role")]);
        assert!(role.contains("ram_role_arn is missing"), "{role}");
        assert!(failed(Step::CredentialsFile, &[]).contains("\"rsa_key_pair\" is not supported"));
    }

    #[test]
    fn oidc_needs_all_three_variables() {
        let home = home_with(&[]);
        let two = [
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/p",
            ),
        ];
        assert!(matches!(
            Step::OidcRole.source(&env(&home, &two)),
            Err(Skip::Absent(_))
        ));
        let three = [
            two[0],
            two[1],
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/var/run/token"),
        ];
        assert!(matches!(
            Step::OidcRole.source(&env(&home, &three)),
            Ok(Source::Oidc(_))
        ));
    }

    #[test]
    fn sources_never_show_a_secret_in_debug() {
        let home = home_with(&[(
            ".alibabacloud/credentials.ini",
            "[default]\ntype = ram_role_arn\naccess_key_id = LTAIbaseKey\naccess_key_secret = base-secret-value\nrole_arn = acs:ram::1:role/r\npolicy = {}\n",
        )]);
        let vars = [
            (
                "ALIBABA_CLOUD_CREDENTIALS_URI",
                "http://127.0.0.1:1/creds?token=uri-token-value",
            ),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", "env-token-value"),
        ];
        let env = env(&home, &vars);
        let shown = format!(
            "{:?} {:?}",
            Step::CredentialsFile.source(&env),
            Step::CredentialsUri.source(&env)
        );
        for secret in ["base-secret-value", "uri-token-value", "LTAIbaseKey"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn a_malformed_environment_key_is_a_failure_not_an_absence() {
        let home = home_with(&[]);
        let vars = [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIkey"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret\n"),
        ];
        match Step::Environment.source(&env(&home, &vars)) {
            Err(Skip::Failed(why)) => {
                assert!(why.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "{why}");
                assert!(!why.contains("secret\n"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
