//! The places a credential comes from, one variant per provider. Static sources answer at once;
//! the others call STS, the instance metadata service or a credentials URI (through
//! [`super::fetch`]) and return a temporary credential with its expiry.

use super::assume_role::AssumeRole;
use super::credential::Credential;
use super::ecs_metadata::EcsRamRole;
use super::fetch::{FetchError, Fetcher};
use super::oidc::OidcRole;
use super::uri::CredentialsUri;

/// One credential source, built from the environment and files by [`super::chain`].
#[derive(Debug, Clone)]
pub enum Source {
    /// A long-lived AccessKey, or an STS token someone else refreshes: used as it is.
    Static(Credential),
    /// STS `AssumeRole`, signed with another source's credential.
    AssumeRole(AssumeRole),
    /// STS `AssumeRoleWithOIDC` with a token file (RRSA on ACK).
    Oidc(OidcRole),
    /// The ECS instance's RAM role, from the metadata service.
    EcsRamRole(EcsRamRole),
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    Uri(CredentialsUri),
}

impl Source {
    /// The provider's name as Alibaba's SDKs report it (`ecs_ram_role`, `oidc_role_arn`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Static(c) if c.security_token().is_some() => "static_sts",
            Source::Static(_) => "static_ak",
            Source::AssumeRole(_) => "ram_role_arn",
            Source::Oidc(_) => "oidc_role_arn",
            Source::EcsRamRole(_) => "ecs_ram_role",
            Source::Uri(_) => "credential_uri",
        }
    }

    /// Who the credentials of this source act as, stably across refreshes and replicas: the
    /// AccessKeyId of a key used as it is, the role of temporary credentials (each STS session,
    /// so each replica and each refresh, has an AccessKeyId of its own). What a quota is kept for.
    pub fn principal(&self, first: &Credential) -> String {
        match self {
            Source::Static(_) => first.access_key_id().to_owned(),
            Source::AssumeRole(role) => role.role_arn.clone(),
            Source::Oidc(role) => role.role_arn.clone(),
            Source::EcsRamRole(role) => format!(
                "ecs_ram_role:{}",
                role.role_name.as_deref().unwrap_or("(the instance's)")
            ),
            // The URL may carry a token; one deployment uses one credentials service.
            Source::Uri(_) => "credentials_uri".to_owned(),
        }
    }

    /// The STS host the SDKs would call for this source, if it calls STS.
    pub fn sts_host(&self) -> Option<&str> {
        match self {
            Source::AssumeRole(r) => Some(&r.sts_host),
            Source::Oidc(r) => Some(&r.sts_host),
            _ => None,
        }
    }

    /// A credential from this source now.
    pub async fn fetch(&self, fetcher: &Fetcher) -> Result<Credential, FetchError> {
        match self {
            Source::Static(credential) => Ok(credential.clone()),
            Source::AssumeRole(role) => role.fetch(fetcher).await,
            Source::Oidc(role) => role.fetch(fetcher).await,
            Source::EcsRamRole(role) => role.fetch(fetcher).await,
            Source::Uri(uri) => uri.fetch(fetcher).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_credentials_act_as_their_role_and_keys_as_themselves() {
        let session = |id: &str| Credential::new(id, "secret", Some("token".into()));
        let role = Source::Oidc(OidcRole {
            role_arn: "acs:ram::1234567890123456:role/ecs-gateway".into(),
            provider_arn: "acs:ram::1234567890123456:oidc-provider/ack".into(),
            token_file: "/var/run/secrets/tokens/oidc-token".into(),
            session_name: "ecs-gateway".into(),
            duration_seconds: 3600,
            policy: None,
            sts_host: "sts.aliyuncs.com".into(),
        });
        // Two replicas (or two refreshes) hold different session keys for the same role.
        assert_eq!(
            role.principal(&session("STS.replica-a")),
            role.principal(&session("STS.replica-b"))
        );
        assert_eq!(
            role.principal(&session("STS.replica-a")),
            "acs:ram::1234567890123456:role/ecs-gateway"
        );
        let key = Credential::new("LTAI5tLongLived", "secret", None);
        assert_eq!(
            Source::Static(key.clone()).principal(&key),
            "LTAI5tLongLived"
        );
        let instance = Source::EcsRamRole(EcsRamRole {
            role_name: Some("gateway-role".into()),
            imdsv1_disabled: true,
        });
        assert_eq!(
            instance.principal(&session("STS.x")),
            "ecs_ram_role:gateway-role"
        );
    }
}
