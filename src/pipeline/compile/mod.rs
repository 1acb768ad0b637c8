//! Stage 2, compile: a prepared project plus resolved flags in, a binary out.
//!
//! Backends sit behind [`Compiler`] so the pipeline (and its tests) never care where cargo
//! runs: `local` uses the host toolchain; a builder-container backend sits beside it.

mod build_scripts;
pub use build_scripts::packages_for;
mod builder_image;
mod context;
pub use context::project_files;
mod deps;
mod diagnostics;
mod docker;
mod local;
mod sandbox;

use std::path::PathBuf;
use std::time::Duration;

use crate::core::error::Result;
use crate::core::event::Events;
use crate::core::preset::Flags;
use crate::core::preset::StdVariant;
pub use crate::core::preset::{StdInfo, StdSource};
use crate::pipeline::source::Project;

pub use builder_image::{BuilderImage, PullPolicy, DEFAULT_BUILDER_IMAGE, FINGERPRINT_LABEL};
pub use docker::DockerCompiler;
pub use local::LocalCompiler;
pub use sandbox::{
    parse_cpus, parse_memory, parse_pids, probe as probe_sandbox, CacheVolumes, Limits, Sandbox,
    Seen, TargetScope,
};

/// The product of a compile.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Path to the executable, as cargo reported it.
    pub binary: PathBuf,
    /// Wall time of the compile.
    pub compile_time: Duration,
    /// Whether cargo had nothing to rebuild.
    pub fresh: bool,
    /// The standard library it links.
    pub std: StdInfo,
}

/// The std a build uses, as a backend found it: what to tell rustc, and what to record.
#[derive(Debug, Clone)]
struct StdChoice {
    /// `--sysroot` for target crates, when std is not in the toolchain's own sysroot.
    sysroot: Option<String>,
    info: StdInfo,
}

impl StdChoice {
    fn rustflags(&self, target: &str) -> Vec<String> {
        let mut flags: Vec<String> = self
            .sysroot
            .iter()
            .map(|s| format!("--sysroot={s}"))
            .collect();
        // A std we built has compiler_builtins without compiler-rt's C part (rust-src does
        // not ship it), which rustup's has: C compiled with gcc calls those helpers
        // (jemalloc's `__popcountdi2`). gcc's libgcc has them, as musl-gcc links it; last on
        // the line, so anything Rust's builtins define stays theirs.
        if self.info.source == StdSource::Rebuilt && target.ends_with("-musl") {
            flags.push("-Clink-arg=-lgcc".into());
        }
        flags
    }
}

/// A way to compile a project.
#[async_trait::async_trait]
pub trait Compiler: Send + Sync {
    /// Short name for metrics and messages (`local`, `docker`).
    fn name(&self) -> &'static str;

    /// The host triple of the backend's toolchain.
    async fn host_target(&self) -> Result<String>;

    /// Whether the backend has (or can build) std for `target` in `variant`.
    async fn can_make(&self, target: &str, variant: StdVariant) -> bool;

    /// Builds the project's binary with the given flags; what the compiler prints goes out
    /// as [`Event::CompilerOutput`](crate::core::event::Event::CompilerOutput).
    async fn compile(&self, project: &Project, flags: &Flags, events: &Events) -> Result<Artifact>;

    /// What compiles, for the provenance: the compiler and the builder image it runs in.
    fn toolchain(&self) -> ToolchainFacts {
        ToolchainFacts::default()
    }
}

/// What a backend compiles with, as provenance names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolchainFacts {
    /// `rustc -vV`, whole.
    pub rustc: String,
    /// The builder image: as it was named, and its image ID (the digest of its config).
    pub image: Option<(String, String)>,
}

/// The digest (`sha256:<hex>`) of what a builder gets of `project`: every file its
/// `.gitignore`, `.dockerignore` and `.ruchyimageignore` leave, without `target/`, by path,
/// mode, size and content (for a single file, its generated project and path dependencies).
pub fn source_digest(project: &Project) -> Result<String> {
    let context = context::Context::collect_project(project)?;
    Ok(format!(
        "sha256:{}",
        crate::adapters::fsutil::hex(&context.digest)
    ))
}

/// Writes the build context of the project at `root` (what its `.gitignore`, `.dockerignore`
/// and `.ruchyimageignore` leave, without `target/`) as a tar to `out`, and returns `out`:
/// what `ruchy-image serve` takes.
pub fn write_context<W: std::io::Write>(root: &std::path::Path, out: W) -> Result<W> {
    let context = context::Context::collect(root, &root.join("target"))?;
    context.write_tar_under(out, "", &[], None, None)
}

/// `cargo build` arguments shared by every backend. `manifest` is the path as cargo sees it.
fn cargo_args(manifest: &str, project: &Project, flags: &Flags, color: bool) -> Vec<String> {
    [
        "build",
        "--manifest-path",
        manifest,
        "--package",
        &project.package,
        "--bin",
        &project.bin,
        "--profile",
        &flags.profile(),
        "--target",
        &flags.target,
        "--message-format=json-render-diagnostics",
        "--color",
        if color { "always" } else { "never" },
    ]
    .map(String::from)
    .to_vec()
}

/// `args` (a `cargo build` line, see [`cargo_args`]) as the `cargo rustc` line that also
/// passes `rustc` (arguments) to the binary's own rustc, and to no dependency's: their
/// fingerprints, and the units a shared target holds, stay as they are.
fn with_rustc_args(mut args: Vec<String>, rustc: &[String]) -> Vec<String> {
    if let Some(build) = args
        .iter_mut()
        .find(|a| *a == "build")
        .filter(|_| !rustc.is_empty())
    {
        *build = "rustc".into();
        args.push("--".into());
        args.extend(rustc.iter().cloned());
    }
    args
}

/// The linker for a Linux target of another architecture than `host`'s (the compiling
/// machine's triple): Debian's cross gcc for it. Target-only, like every flag of ours, so
/// build scripts still link for the host.
fn cross_linker(host: &str, target: &str) -> Option<String> {
    let arch = crate::core::platform::arch;
    let cross = arch(host) != arch(target) && target.contains("-linux-");
    cross.then(|| format!("-Clinker={}-linux-gnu-gcc", arch(target)))
}

/// `CARGO_ENCODED_RUSTFLAGS` for the build: the user's own flags first, then ours.
/// `workspace_root` is the workspace path as cargo sees it; `host` the compiling toolchain's
/// triple.
fn encoded_rustflags(flags: &Flags, std: &StdChoice, workspace_root: &str, host: &str) -> String {
    let mut all: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) if !encoded.is_empty() => encoded.split('\x1f').map(String::from).collect(),
        _ => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    all.extend(flags.rustflags());
    all.extend(std.rustflags(&flags.target));
    all.extend(cross_linker(host, &flags.target));
    // Debug info records absolute paths; map the workspace to `.` so the binary (and so the
    // image digest) does not depend on where the project sits.
    all.push(format!("--remap-path-prefix={workspace_root}=."));
    all.join("\x1f")
}

/// Whether a compiler message says a crate (std) was built by another rustc (E0514).
fn is_std_mismatch(line: &str) -> bool {
    line.contains("E0514") && line.contains("incompatible version of rustc")
}

/// One line of `cargo build --message-format=json-render-diagnostics` output.
#[derive(Debug, PartialEq, Eq)]
enum CargoLine {
    /// An artifact; `executable` is set when it is the binary we build.
    Artifact {
        executable: Option<PathBuf>,
        fresh: bool,
        /// The target's name (`serde`, `build-script-build`, the binary's).
        target: String,
    },
    /// A JSON message we do not need.
    Other,
    /// Not JSON: a build script's output, passed on as compiler output.
    Text,
}

fn parse_message(line: &str, bin: &str) -> CargoLine {
    match serde_json::from_str::<cargo_metadata::Message>(line) {
        Ok(cargo_metadata::Message::CompilerArtifact(artifact)) => CargoLine::Artifact {
            executable: artifact
                .executable
                .filter(|_| artifact.target.is_bin() && artifact.target.name == bin)
                .map(PathBuf::from),
            fresh: artifact.fresh,
            target: artifact.target.name.clone(),
        },
        Ok(_) => CargoLine::Other,
        Err(_) => CargoLine::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_architecture_links_with_its_cross_gcc() {
        let host = "x86_64-unknown-linux-gnu";
        assert_eq!(
            cross_linker(host, "aarch64-unknown-linux-musl").as_deref(),
            Some("-Clinker=aarch64-linux-gnu-gcc")
        );
        assert_eq!(cross_linker(host, "x86_64-unknown-linux-musl"), None);
        assert_eq!(cross_linker(host, "wasm32-unknown-unknown"), None);
    }

    #[test]
    fn link_arguments_go_to_the_binarys_rustc_only() {
        let args = vec!["cargo".to_string(), "build".into(), "--quiet".into()];
        assert_eq!(with_rustc_args(args.clone(), &[]), args);
        assert_eq!(
            with_rustc_args(args, &["-Clink-arg=x.o".into()]),
            ["cargo", "rustc", "--quiet", "--", "-Clink-arg=x.o"]
        );
    }
}
