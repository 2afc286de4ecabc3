//! Compiles the gateway's protobuf API and writes the descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Only the protos and this script feed the build: without these lines cargo reruns it, and
    // rebuilds the crate, whenever any file of the package changes (a README edit included).
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
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
