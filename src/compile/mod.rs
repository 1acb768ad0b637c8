//! Stage 2, compile: a prepared project plus resolved flags in, a binary out.
//!
//! Backends sit behind [`Compiler`] so the pipeline (and its tests) never care where cargo
//! runs: `local` uses the host toolchain; a builder-container backend sits beside it.

mod local;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::preset::Flags;
use crate::source::Project;

pub use local::LocalCompiler;

/// The product of a compile.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Path to the executable, as cargo reported it.
    pub binary: PathBuf,
    /// Wall time of the compile.
    pub compile_time: Duration,
    /// Whether cargo had nothing to rebuild.
    pub fresh: bool,
}

/// A way to compile a project.
#[async_trait::async_trait]
pub trait Compiler: Send + Sync {
    /// Short name for metrics and messages (`local`, `docker`).
    fn name(&self) -> &'static str;

    /// The target triple used when the user does not pass `--target`.
    async fn default_target(&self) -> Result<String>;

    /// Builds the project's binary with the given flags.
    async fn compile(&self, project: &Project, flags: &Flags) -> Result<Artifact>;
}
