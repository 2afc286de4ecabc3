//! Compiles the gateway's protobuf API and writes the descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // A vendored protoc, so a fresh machine builds without a system protobuf compiler.
    let mut prost_config = prost_build::Config::new();
    prost_config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Decode failures are the sender's fault (INVALID_ARGUMENT), not the gateway's (INTERNAL).
        .codec_path("crate::api::codec::GatewayCodec")
        .file_descriptor_set_path(out_dir.join("ecsgateway_descriptor.bin"))
        .compile_with_config(
            prost_config,
            &["proto/ecsgateway/v1/cloud_assistant.proto"],
            &["proto"],
        )?;
    Ok(())
}
