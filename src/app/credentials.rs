//! Where the gateway's credential comes from at start: Alibaba's default chain, and the one line
//! that says which source supplied it (never any part of it).

use super::error::RunError;
use super::settings::Settings;
use crate::aliyun::credentials::chain;
use crate::aliyun::credentials::env::Env;
use crate::aliyun::credentials::fetch::Fetcher;
use crate::aliyun::credentials::refresh::{CredentialSupply, describe_expiration};
use crate::aliyun::credentials::source::Source;

/// The first credential the default chain finds, refreshed in the background when it expires.
pub(super) async fn from_chain(
    settings: &Settings,
    env: &Env,
) -> Result<CredentialSupply, RunError> {
    let endpoints = &settings.credential_endpoints;
    let fetcher = Fetcher::new(endpoints.sts.clone(), endpoints.metadata.clone())?;
    let found = chain::resolve(env, &fetcher).await?;
    for (step, why) in &found.passed_over {
        tracing::warn!(source = step.name(), reason = %why, "credential source configured but passed over");
    }
    log_credential(
        found.step.name(),
        &found.source,
        found.credential.expiration(),
    );
    Ok(if found.credential.expiration().is_some() {
        CredentialSupply::refreshing(found.source, found.credential, fetcher)
    } else {
        CredentialSupply::fixed(found.credential)
    })
}

/// Says where the credential came from and when it expires; never any part of it.
pub(super) fn log_credential(
    from: &str,
    source: &Source,
    expiration: Option<std::time::SystemTime>,
) {
    tracing::info!(
        source = from,
        provider = source.kind(),
        expiration = %describe_expiration(expiration),
        "credential found"
    );
}
