//! Everything Alibaba-specific: credential, request model, regions, endpoint, signer, DNS, TLS,
//! client and retry policy. It knows nothing of gRPC, callers or metrics; the rest of the crate
//! uses it through the names below.

pub(crate) mod catalog;
pub(crate) mod client;
pub mod credentials;
pub(crate) mod dns;
pub(crate) mod endpoint;
pub(crate) mod error;
pub mod invocation;
pub(crate) mod regions;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;
pub(crate) mod retry_budget;
pub(crate) mod scrub;
pub mod signer;
pub(crate) mod tls;
pub(crate) mod transport;

pub use catalog::Network;
pub use client::{
    Admission, BuildError, ClientSettings, Clock, Described, EcsClient, Failed, Listed,
    NonceSource, Planned, ReadKind, Sources, Stopped, SystemClock, UuidNonce,
};
pub use credentials::{Credential, CredentialSupply, Env};
pub use dns::DnsConfig;
pub use endpoint::{Endpoint, EndpointError};
pub use error::{ApiError, EcsError, ErrorClass, Limit, NotAdmitted};
pub use invocation::{InstanceState, InvocationState};
pub use regions::Regions;
pub use request::{DescribeInvocation, ListInvocations, Owner, RegionId, StopInvocation};
pub use retry::{RetryPolicy, Trail};
pub use signer::SignatureVersion;
