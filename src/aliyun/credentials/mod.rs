//! Where the gateway's Alibaba Cloud credential comes from and how it stays fresh: Alibaba's default
//! credential chain (the order, variable names and file formats of `alibabacloud-credentials`), one
//! provider per file, and a background refresh of temporary credentials.

pub(crate) mod assume_role;
pub(crate) mod chain;
pub(crate) mod cli_config;
pub(crate) mod credential;
pub(crate) mod ecs_metadata;
pub(crate) mod env;
pub(crate) mod fetch;
pub(crate) mod oidc;
pub(crate) mod profile;
pub(crate) mod refresh;
pub(crate) mod source;
pub(crate) mod sts;
pub(crate) mod uri;

pub use chain::NothingFound;
pub use credential::Credential;
pub use env::Env;
pub use fetch::FetchError;
pub use refresh::CredentialSupply;
