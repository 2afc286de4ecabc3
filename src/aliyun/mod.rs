//! Everything Alibaba-specific: credential, request model, regions, endpoint, signer, DNS, TLS,
//! client and retry policy.

pub mod catalog;
pub mod client;
pub mod credentials;
pub mod dns;
pub mod endpoint;
pub mod error;
pub mod regions;
pub mod request;
pub mod response;
pub mod retry;
pub mod retry_budget;
pub mod scrub;
pub mod signer;
pub mod tls;
pub mod transport;

/// The credential value type, where it always lived.
pub use credentials::credential;
