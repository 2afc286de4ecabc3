//! The gRPC face: the only modules that know the generated API types and make a `tonic::Status`.
//! A call goes codec → service → (auth, validate) → the ECS client → status.

pub(crate) mod codec;
pub(crate) mod deadline;
pub(crate) mod invocation;
pub(crate) mod routes;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod validate;
pub(crate) mod wait;
