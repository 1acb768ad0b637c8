//! The machine under the pipeline: the container engine (Docker or Podman, through its
//! API), Docker Compose, the host's Rust toolchain and the std builds, the cache volumes, files and cleanup.
//! Imports only `core`.

pub mod c_toolchain;
pub mod cache_volumes;
pub mod cleanup;
pub mod compose;
pub mod engine;
pub mod fsutil;
pub mod stdlib;
pub mod toolchain;
