//! The `docker` backend: cargo runs in a builder container (stage 1 of a multi-stage build),
//! driven through the engine API. The source goes in and the binary comes out as tar
//! streams, so nothing is written into the user's tree and remote engines work too.
//!
//! Isolation and caches: a build runs in three containers, without capabilities and within
//! the sandbox's limits ([`phases`]): `cargo fetch` into cargo's home (the only one with a
//! network), the dependency phase into a target volume every project of the builder image
//! shares (a stand-in of the project, none of its code), and the compile, offline and not as
//! root, in a target of its own seeded read-only from the shared one ([`volumes`]). A build
//! whose inputs (sources, preset and flags, builder image) are unchanged starts no container.
//!
//! Every source file goes in dated [`SOURCE_MTIME`], so the project's own crates are always
//! compiled again (cargo hashes a path package relative to its workspace, so another
//! project's unit of the same name could look fresh), and [`RUSTC_WRAPPER`] copies the binary
//! out of rustc's output while cargo still holds the target's lock.
mod phases;
mod volumes;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use phases::{Job, Phase};
use volumes::Volumes;

use super::build_scripts::BuildScriptWatch;
use super::builder_image::BuilderImage;
use super::context::{Context, TarOwner};
use super::deps::{self, Units};
use super::diagnostics::Diagnostics;
use super::sandbox::{self, LimitsHit, Sandbox, TargetScope, BUILDER_UID};
use super::{
    cargo_args, encoded_rustflags, is_std_mismatch, parse_message, with_rustc_args, Artifact,
    CargoLine, Compiler, StdChoice, StdInfo, StdSource,
};
use crate::adapters::cache_volumes::CACHE_VOLUME_LABEL;
use crate::adapters::engine::{stream_to_engine, ContainerSpec, Engine, VolumeMount};
use crate::adapters::fsutil::{blocking, hex};
use crate::adapters::stdlib;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::core::metrics::human_size;
use crate::core::preset::Flags;
use crate::core::preset::StdVariant;
use crate::pipeline::source::{Project, SourceKind};

/// Where the source and the target volume sit in the builder container.
const SRC: &str = "/src";
const TARGET: &str = "/target";
/// Where the host's CA bundle goes, for crates.io behind TLS-intercepting proxies.
const HOST_CA: &str = "etc/ssl/certs/ruchy-image-host-ca.crt";
/// Where cargo's home volume sits in the builder container; `CARGO_HOME` points there, so the
/// image's own cargo home (with its binaries) stays as the image has it.
const CARGO_HOME: &str = "/ruchy-image/cargo-home";
/// The volume shared by every build for cargo's home, unless the sandbox names another (a
/// test that wants an empty one).
const CARGO_HOME_VOLUME: &str = "ruchy-image-cargo-home";
/// A build context over this many bytes is worth a warning.
const LARGE_CONTEXT: u64 = 100 << 20;
/// Where the wrapper below sits in the builder container (no leading `/`: a tar path).
const WRAPPER: &str = "ruchy-image/rustc-wrapper";
/// Where the wrapper leaves the binary, outside the shared target volume.
const OUT: &str = "/ruchy-image/out";
/// Runs rustc; when that has just linked the binary this build wants (`RUCHY_IMAGE_BIN`),
/// copies it out of rustc's output while cargo still holds the target directory's lock.
/// The same script for every project, so cargo's fingerprints do not change with it.
/// In the shared dependency phase (`RUCHY_IMAGE_STAND_IN`), the stand-in's own crates are
/// made quickly (no LTO, no optimization): the build compiles them again, and a dependency's
/// flags are not touched, so its units are the build's.
const RUSTC_WRAPPER: &str = r#"#!/bin/sh
if [ "${RUCHY_IMAGE_STAND_IN:-}" = 1 ] && [ "${CARGO_PRIMARY_PACKAGE:-}" = 1 ]; then
  exec "$@" -C lto=off -C opt-level=0 -C codegen-units=16 -C debuginfo=0
fi
"$@" || exit $?
[ "${CARGO_PRIMARY_PACKAGE:-}" = 1 ] && [ "${CARGO_BIN_NAME:-}" = "$RUCHY_IMAGE_BIN" ] || exit 0
out= extra= crate=
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) out=$2; shift ;;
    --crate-name) crate=$2; shift ;;
    -C) case "$2" in extra-filename=*) extra=${2#extra-filename=} ;; esac; shift ;;
  esac
  shift
done
mkdir -p /ruchy-image/out && cp "$out/$crate$extra" "/ruchy-image/out/$RUCHY_IMAGE_BIN.tmp" &&
  mv "/ruchy-image/out/$RUCHY_IMAGE_BIN.tmp" "/ruchy-image/out/$RUCHY_IMAGE_BIN"
"#;
/// The date every source file goes in with (2100-01-01): newer than anything in the shared
/// target volume, so cargo compiles the project's own crates again instead of taking another
/// project's unit of the same name as fresh.
const SOURCE_MTIME: u64 = 4_102_444_800;

/// Compiles in a builder container.
#[derive(Debug, Clone)]
pub struct DockerCompiler {
    engine: Engine,
    image: BuilderImage,
    cache_dir: PathBuf,
    sandbox: Sandbox,
    color: bool,
    quiet: bool,
}

impl DockerCompiler {
    /// A compiler using `image` in `engine`, its containers in `sandbox`; artifacts are kept
    /// under `cache_dir`.
    pub fn new(
        engine: Engine,
        image: BuilderImage,
        cache_dir: PathBuf,
        sandbox: Sandbox,
        color: bool,
        quiet: bool,
    ) -> DockerCompiler {
        DockerCompiler {
            engine,
            image,
            cache_dir,
            sandbox,
            color,
            quiet,
        }
    }

    /// The builder image in use.
    pub fn image(&self) -> &BuilderImage {
        &self.image
    }
}

/// Everything besides the sources that decides what the builder produces: a change to any
/// of it (preset, flags, inherited `RUSTFLAGS`, target, builder image) must compile again.
#[derive(Clone)]
struct BuildIdentity {
    flags: Flags,
    cargo_env: Vec<(String, String)>,
    rustflags: String,
    package: String,
    bin: String,
    image_id: String,
}

impl BuildIdentity {
    /// The files `project` sends and the cache key of building them with this identity.
    async fn of(&self, project: &Project) -> Result<(Context, String)> {
        let (project, identity) = (project.clone(), self.clone());
        blocking(move || {
            let context = Context::collect_project(&project)?;
            let key = identity.key(&context);
            Ok((context, key))
        })
        .await
    }

    /// The cache key of a build of `context` with this identity.
    fn key(&self, context: &Context) -> String {
        self.key_of(&context.digest)
    }

    /// The key of the shared dependency phase for sources of digest `sources`: whether the
    /// binary lists its crates changes only the binary's own link, not a dependency's unit.
    fn dependencies_key(&self, sources: &[u8]) -> String {
        let mut identity = self.clone();
        identity.flags.embed_deps = true;
        identity.key_of(sources)
    }

    /// The key of building sources of digest `sources` with this identity.
    fn key_of(&self, sources: &[u8]) -> String {
        let mut key = Sha256::new();
        key.update(sources);
        key.update(serde_json::to_vec(&self.flags).unwrap_or_default());
        for (name, value) in &self.cargo_env {
            key.update(format!("{name}={value}\0"));
        }
        key.update(format!(
            "{}\0{}\0{}\0{}",
            self.rustflags, self.package, self.bin, self.image_id
        ));
        hex(&key.finalize())
    }
}

/// The host's CA bundle, if it has one.
fn host_ca_bundle() -> Option<Vec<u8>> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    std::fs::read(path).ok()
}

/// Proxy settings to carry into the builder.
fn proxy_env() -> Vec<String> {
    ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"]
        .iter()
        .flat_map(|name| [name.to_string(), name.to_lowercase()])
        .filter_map(|name| std::env::var(&name).ok().map(|v| format!("{name}={v}")))
        .collect()
}

#[async_trait::async_trait]
impl Compiler for DockerCompiler {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn host_target(&self) -> Result<String> {
        Ok(self.image.target.clone())
    }

    fn toolchain(&self) -> crate::pipeline::compile::ToolchainFacts {
        crate::pipeline::compile::ToolchainFacts {
            rustc: self.image.toolchain.rustc.clone(),
            image: Some((self.image.reference.clone(), self.image.id.clone())),
        }
    }

    async fn can_make(&self, target: &str, variant: StdVariant) -> bool {
        self.image.toolchain.std_for(target, variant).is_some()
    }

    async fn compile(&self, project: &Project, flags: &Flags, events: &Events) -> Result<Artifact> {
        let started = Instant::now();
        let std = self.std_for(flags)?;
        let rustflags = encoded_rustflags(flags, &std, SRC, &self.image.target);
        let identity = BuildIdentity {
            flags: flags.clone(),
            cargo_env: flags.cargo_env(),
            rustflags: rustflags.clone(),
            package: project.package.clone(),
            bin: project.bin.clone(),
            image_id: self.image.id.clone(),
        };
        let (context, key) = identity.of(project).await?;
        let binary = self.artifact_dir(&key).join(&project.bin);
        if binary.is_file() {
            return Ok(Artifact {
                binary,
                compile_time: started.elapsed(),
                fresh: true,
                std: std.info,
            });
        }

        let volumes = self.volumes(project).await?;
        let job = Job {
            project,
            flags,
            identity: &identity,
            rustflags: &rustflags,
            volumes: &volumes,
            events,
        };
        let result = self.phases(&job, context, &binary).await;
        // A build's own target goes with it, whatever happened.
        let removed = match volumes.target.scope {
            TargetScope::Build => self.engine.remove_volume(&volumes.target.name).await,
            TargetScope::Project => Ok(()),
        };
        volumes.disarm();
        let lock_written = Error::with_cleanup(result, removed)?;
        // The Cargo.lock that came back goes with the next build's sources: the binary is
        // kept under that build's key too, so it starts no container.
        if lock_written {
            let (_, next) = identity.of(project).await?;
            let again = self.artifact_dir(&next).join(&project.bin);
            let (from, to) = (binary.clone(), again);
            blocking(move || keep_copy(&from, &to)).await?;
        }
        Ok(Artifact {
            binary,
            compile_time: started.elapsed(),
            fresh: false,
            std: std.info,
        })
    }
}

impl DockerCompiler {
    /// The std in the image for the flags' target and panic strategy, checked against the
    /// image's compiler before any container starts.
    fn std_for(&self, flags: &Flags) -> Result<StdChoice> {
        let toolchain = &self.image.toolchain;
        let (target, variant) = (&flags.target, flags.std_variant());
        if !toolchain.targets.is_empty() && !toolchain.targets.contains(target) {
            return Err(Error::InvalidInput {
                what: "target",
                value: target.clone(),
                reason: format!(
                    "{} in {} does not know it; `rustc --print target-list` lists the ones it does",
                    toolchain.version(),
                    self.image.reference
                ),
            });
        }
        let Some(std) = toolchain.std_for(target, variant) else {
            let what = match variant {
                StdVariant::Unwind => format!("no standard library for {target}"),
                StdVariant::ImmediateAbort => format!(
                    "no standard library for {target} built for panic=immediate-abort (the size preset's)"
                ),
            };
            let arch = crate::core::platform::arch;
            let reason = match arch(target) == arch(&self.image.target) {
                true => format!(
                    "it has {what}; `ruchy-image builder import-host` makes a builder that has both musl stds, from a toolchain with the standard library's sources (Debian's rustc-web, cargo-web, rust-web-src, musl-tools, libunwind-14-dev)"
                ),
                false => format!(
                    "it has {what}; `ruchy-image builder import-host` puts in the std for {}-unknown-linux-musl (static, what --platform picks) and its cross linker on a machine that has {}",
                    arch(target),
                    stdlib::musl_packages(arch(target))
                ),
            };
            return Err(Error::TargetUnsupported {
                target: target.clone(),
                builder: self.image.reference.clone(),
                reason,
            });
        };
        if let Some(stamp) = &std.stamp {
            if !stdlib::matches(stamp, &toolchain.rustc) {
                return Err(Error::StdMismatch {
                    target: target.clone(),
                    location: format!("{} ({})", self.image.reference, std.sysroot),
                    built_by: stamp.rustc.lines().next().unwrap_or_default().to_string(),
                    compiler: toolchain.version().to_string(),
                });
            }
        }
        Ok(StdChoice {
            sysroot: (std.sysroot != toolchain.sysroot).then(|| std.sysroot.clone()),
            info: StdInfo {
                source: if std.stamp.is_some() {
                    StdSource::Rebuilt
                } else {
                    StdSource::Toolchain
                },
                variant,
            },
        })
    }

    /// Runs cargo in the container, and copies the binary out of it (and a generated
    /// project's Cargo.lock: true when it is new or changed).
    async fn build_in(&self, id: &str, job: &Job<'_>, binary: &Path) -> Result<bool> {
        let (project, flags, events) = (job.project, job.flags, job.events);
        let mut executable = None;
        let mut std_mismatch = false;
        let mut limits_hit = LimitsHit::default();
        let build_scripts = BuildScriptWatch::default();
        let diagnostics = Diagnostics::for_project(project);
        // What cargo found compiled already (copied from the shared volume, or left by this
        // project's last build) and what it built.
        let (mut fresh, mut compiled) = (0, Vec::new());
        let mut output = |line: &str| {
            if let Some(hit) = LimitsHit::parse(line) {
                limits_hit = hit;
                return;
            }
            std_mismatch |= is_std_mismatch(line);
            build_scripts.observe(line);
            events.emit(Event::CompilerOutput {
                line: diagnostics.rewrite(line),
            })
        };
        let finished = self
            .engine
            .run_to_completion(id, &mut |stderr, line| {
                // stdout carries cargo's JSON messages; stderr its status lines and
                // diagnostics.
                if stderr {
                    return output(line);
                }
                match parse_message(line, &project.bin) {
                    CargoLine::Artifact {
                        executable: path,
                        fresh: was_fresh,
                        target,
                    } => {
                        if was_fresh {
                            fresh += 1;
                        } else {
                            compiled.push(target);
                        }
                        if path.is_some() {
                            executable = path;
                        }
                    }
                    CargoLine::Text => output(line),
                    _ => {}
                }
            })
            .await?;
        events.note(format!(
            "cargo: {fresh} of {} units fresh; compiled: {}",
            fresh + compiled.len(),
            compiled.join(", ")
        ));
        if finished.exit_code != 0 {
            if let Some(error) = limits_hit.error(&project.package, &self.sandbox.limits) {
                return Err(error);
            }
        }
        if finished.exit_code != 0 && std_mismatch {
            return Err(Error::StdMismatch {
                target: flags.target.clone(),
                location: self.image.reference.clone(),
                built_by: "another compiler (rustc error E0514, above)".into(),
                compiler: self.image.toolchain.version().to_string(),
            });
        }
        if finished.exit_code != 0 {
            return Err(build_scripts.error(
                &project.package,
                std::os::unix::process::ExitStatusExt::from_raw(
                    (finished.exit_code as i32 & 0xff) << 8,
                ),
                format!("the builder image {}", self.image.reference),
                true,
            ));
        }
        // Cargo must have reported the binary; the copy the wrapper made of it is the one
        // taken, since the uplifted one may be another project's by now.
        if executable.is_none() {
            return Err(Error::NoExecutable {
                bin: project.bin.clone(),
            });
        }

        // The binary comes out as a one-entry tar. Missing means rustc did not link it here:
        // cargo took another build's output as fresh, which SOURCE_MTIME should prevent.
        let binary_path = format!("{OUT}/{}", project.bin);
        let archive = self.download(id, &binary_path, "the binary").await?;
        let binary = binary.to_path_buf();
        let bin = project.bin.clone();
        blocking(move || keep_binary(&archive, &bin, &binary)).await?;

        // A project generated for a single file keeps the Cargo.lock cargo wrote, so the next
        // build (in a container or with --builder local) resolves the same versions.
        if project.kind == SourceKind::CargoProject {
            return Ok(false);
        }
        let lock = format!("{SRC}/Cargo.lock");
        let archive = self.download(id, &lock, "Cargo.lock").await?;
        let kept = project.workspace_root.join("Cargo.lock");
        blocking(move || match first_entry(&archive) {
            Ok(Some(lock)) => crate::adapters::fsutil::write_if_changed(&kept, &lock),
            _ => Ok(false),
        })
        .await
    }

    /// Where the binary of the build with cache key `key` is kept.
    fn artifact_dir(&self, key: &str) -> PathBuf {
        self.cache_dir.join("artifacts").join(&key[..32])
    }

    /// The tar the engine makes of `path` in the container.
    async fn download(&self, id: &str, path: &str, what: &str) -> Result<Vec<u8>> {
        let context = format!("copying {what} out of the builder");
        self.engine.copy_out(id, path, &context).await
    }

    /// Streams the build context (and the host's CA bundle, and `files`: tar paths and
    /// contents) into the container, saying how much goes, and warning when it is more than a
    /// source tree should be.
    async fn upload(
        &self,
        id: &str,
        phase: Phase,
        context: Context,
        ca: Option<Vec<u8>>,
        files: Vec<(String, Vec<u8>)>,
        events: &Events,
    ) -> Result<()> {
        let bytes = context.bytes();
        events.note(format!(
            "sending {} files, {} to the builder",
            context.entries.len(),
            human_size(bytes)
        ));
        if bytes > LARGE_CONTEXT {
            events.emit(Event::Warning {
                message: format!(
                    "the build context is {}: files the build does not need can be left out with a .ruchyimageignore (or .dockerignore, .gitignore)",
                    human_size(bytes)
                ),
            });
        }
        let write = move |out| {
            let mut extras = vec![(WRAPPER, 0o755, RUSTC_WRAPPER.as_bytes())];
            if let Some(ca) = ca.as_deref() {
                extras.push((HOST_CA, 0o644, ca));
            }
            for (path, bytes) in &files {
                extras.push((path, 0o644, bytes));
            }
            match phase {
                // Root's, for root (without capabilities).
                Phase::Fetch => context.write_tar(out, &extras, Some(SOURCE_MTIME)),
                // The builder user's, with the target volume and the binary's way out.
                Phase::Dependencies | Phase::Compile => {
                    let owner = TarOwner {
                        uid: BUILDER_UID,
                        dirs: &["target", "ruchy-image/out"],
                    };
                    context.write_tar_owned(out, &extras, Some(SOURCE_MTIME), &owner)
                }
            }
        };
        stream_to_engine("packing the source", write, |chunks| {
            self.engine
                .copy_in(id, chunks, "uploading the source into the builder")
        })
        .await
    }
}

/// Removes a builder container when the build using it is dropped before it could.
struct ContainerGuard {
    engine: Engine,
    id: Option<String>,
}

impl ContainerGuard {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let engine = self.engine.clone();
        runtime.spawn(async move {
            let _ = engine.remove_container(&id).await;
        });
    }
}

/// Takes the binary out of the one-entry tar the engine sent and stores it in the artifact
/// cache (by way of a temp file, so a cached binary is always whole).
/// A copy of a kept binary, kept under another key.
fn keep_copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(Error::io(format!("reading {}", from.display())))?;
    keep_executable(&bytes, to)
}

/// The content of a tar's first entry, if it has one.
fn first_entry(archive: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut entries = tar::Archive::new(archive);
    let Some(entry) = entries.entries()?.next() else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    entry?.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn keep_binary(archive: &[u8], bin: &str, binary: &Path) -> Result<()> {
    let bytes = first_entry(archive)
        .map_err(Error::io("reading the binary from the builder"))?
        .ok_or_else(|| Error::NoExecutable {
            bin: bin.to_string(),
        })?;
    keep_executable(&bytes, binary)
}

/// Writes `bytes` to `binary` as an executable: into a temp file beside it, then renamed, so
/// a build that finds the file finds all of it.
fn keep_executable(bytes: &[u8], binary: &Path) -> Result<()> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&crate::adapters::cleanup::temp_prefix("binary"))
        .tempfile_in(dir)
        .map_err(Error::io(format!("writing into {}", dir.display())))?;
    std::io::Write::write_all(&mut temp, bytes)
        .map_err(Error::io(format!("writing {}", binary.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(Error::io(format!("writing {}", binary.display())))?;
    temp.persist(binary)
        .map_err(|e| Error::io(format!("writing {}", binary.display()))(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preset::{Overrides, Preset};

    fn identity(rustflags: &str, target: &str) -> BuildIdentity {
        let flags = Flags::resolve(Preset::Aggressive, &Overrides::default(), target);
        BuildIdentity {
            cargo_env: flags.cargo_env(),
            flags,
            rustflags: rustflags.into(),
            package: "app".into(),
            bin: "app".into(),
            image_id: "sha256:builder".into(),
        }
    }

    #[test]
    fn the_cache_key_changes_with_inherited_rustflags_and_the_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.rs"), "fn main() {}").unwrap();
        let files = Context::collect(dir.path(), &dir.path().join("target")).unwrap();
        let gnu = "x86_64-unknown-linux-gnu";
        let base = identity("-Cstrip=symbols", gnu).key(&files);
        assert_eq!(base, identity("-Cstrip=symbols", gnu).key(&files));
        assert_ne!(
            base,
            identity("--cfg\x1ffeature_x\x1f-Cstrip=symbols", gnu).key(&files)
        );
        assert_ne!(
            base,
            identity("-Cstrip=symbols", "x86_64-unknown-linux-musl").key(&files)
        );
        // The list of crates is the binary's: another artifact, the same dependencies.
        let mut bare = identity("-Cstrip=symbols", gnu);
        bare.flags.embed_deps = false;
        assert_ne!(base, bare.key(&files));
        let embedding = identity("-Cstrip=symbols", gnu);
        assert_eq!(
            embedding.dependencies_key(b"deps"),
            bare.dependencies_key(b"deps")
        );
    }
}
