//! Regenerates `proto/src/gen/` from `proto/sweep/v1/sweep.proto` and
//! `proto/externalscaler/externalscaler.proto` with the vendored protoc.
//! Run from the workspace root: `cargo run -p proto-gen`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = crate_dir.join("src/gen");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: single-threaded at this point; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().out_dir(&out_dir).file_descriptor_set_path(out_dir.join("sweep_descriptor.bin")).compile_protos(
        &[crate_dir.join("sweep/v1/sweep.proto"), crate_dir.join("externalscaler/externalscaler.proto")],
        std::slice::from_ref(&crate_dir),
    )?;
    println!("regenerated proto/src/gen");
    Ok(())
}
