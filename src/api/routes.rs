//! What the server serves for the API: the handler with its message-size limit, reflection (v1,
//! and v1alpha for grpcurl 1.8 and other older tools) when on, and the name health reports.

use tonic::server::NamedService as _;
use tonic::service::Routes;

use crate::api::service::CloudAssistant;
use crate::pb::FILE_DESCRIPTOR_SET;
use crate::pb::cloud_assistant_service_server::CloudAssistantServiceServer;
use crate::server::Served;

/// The reflection service could not load a descriptor set.
pub(crate) type ReflectionError = tonic_reflection::server::Error;

/// The handler's routes, with reflection when its settings ask for it.
pub(crate) fn routes(service: CloudAssistant) -> Result<Served, ReflectionError> {
    let (reflect, max_bytes) = (
        service.settings().reflection,
        service.settings().max_request_bytes,
    );
    let gateway = CloudAssistantServiceServer::new(service).max_decoding_message_size(max_bytes);
    let mut routes = Routes::new(gateway);
    if reflect {
        routes = routes
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
    }
    Ok(Served {
        routes,
        name: CloudAssistantServiceServer::<CloudAssistant>::NAME,
    })
}

/// Reflection over the gateway's API, health, and `google.rpc` error details — the last so that
/// grpcurl can decode `ErrorInfo`, `BadRequest` and friends in error statuses.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}
