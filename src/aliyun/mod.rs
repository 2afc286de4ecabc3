//! Everything Alibaba-specific: credential, request model, endpoint, signer, client, retry policy.

pub mod client;
pub mod credential;
pub mod endpoint;
pub mod error;
pub mod request;
pub mod retry;
pub mod signer;
