//! Where the gateway's Alibaba Cloud credential comes from and how it stays fresh: Alibaba's default
//! credential chain (the order, variable names and file formats of `alibabacloud-credentials`), one
//! provider per file, and a background refresh of temporary credentials.

pub mod assume_role;
pub mod chain;
pub mod cli_config;
pub mod credential;
pub mod ecs_metadata;
pub mod env;
pub mod fetch;
pub mod oidc;
pub mod profile;
pub mod refresh;
pub mod source;
pub mod sts;
pub mod uri;
