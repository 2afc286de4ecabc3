//! The gRPC face: the only modules that know the generated API types and make a `tonic::Status`.
//! A call goes codec → service → (auth, validate) → the ECS client → status.

pub mod codec;
pub mod deadline;
pub mod routes;
pub mod service;
pub mod status;
pub mod validate;
