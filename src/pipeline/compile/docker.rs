//! The `docker` backend: cargo runs in a builder container (stage 1 of a multi-stage build),
//! driven through the engine API. The source goes in and the binary comes out as tar
//! streams, so nothing is written into the user's tree and remote engines work too.
//!
//! Caches: cargo's home (downloaded crates, and the lock that keeps two containers from
//! unpacking the same crate at once) and the target directory live in named volumes. The
//! target volume is shared by every project built with the same builder image, so a second
//! project whose dependencies match (versions, features, profile, target, flags) finds them
//! compiled already; a build whose inputs (sources, preset and flags, builder image) are
//! unchanged starts no container at all.
//!
//! Sharing a target directory has two hazards, both handled here. Cargo hashes a path
//! package relative to its workspace, so two projects with a package of the same name and
//! version build the same unit there: every source file goes in dated [`SOURCE_MTIME`], so
//! the project's own crates are always compiled again (its dependencies stay fresh). And the
//! binary cargo uplifts to `target/<triple>/<profile>/<bin>` can be replaced by another
//! project's once cargo's lock is released: [`RUSTC_WRAPPER`] copies it out of rustc's output
//! while cargo still holds the lock.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::build_scripts::BuildScriptWatch;
use super::builder_image::BuilderImage;
use super::context::{Context, TarOwner};
use super::deps::{self, Units};
use super::diagnostics::Diagnostics;
use super::sandbox::{self, LimitsHit, Sandbox, TargetScope, BUILDER_UID};
use super::{
    cargo_args, encoded_rustflags, is_std_mismatch, parse_message, Artifact, CargoLine, Compiler,
    StdChoice, StdInfo, StdSource,
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

/// Shared target volumes builds in this process are using: a concurrent build (a service
/// slot) takes the first free one instead of waiting for another's cargo lock. Builds from
/// other processes may pick the same one; cargo's lock then makes them take turns.
/// Process-wide on purpose: the volumes are the engine's, shared by every compiler this
/// process makes, whichever plan made it.
static TARGET_VOLUMES_IN_USE: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// One shared target volume, held for one build.
struct TargetVolume(String);

impl TargetVolume {
    /// The first of `base-0`, `base-1`, ... no build in this process is using.
    fn take(base: &str) -> TargetVolume {
        let mut in_use = TARGET_VOLUMES_IN_USE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let name = (0..)
            .map(|n| format!("{base}-{n}"))
            .find(|name| !in_use.contains(name))
            .expect("a free name");
        in_use.insert(name.clone());
        TargetVolume(name)
    }
}

impl Drop for TargetVolume {
    fn drop(&mut self) {
        let mut in_use = TARGET_VOLUMES_IN_USE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        in_use.remove(&self.0);
    }
}

/// A volume, and its identity: a volume removed and made again under the same name holds
/// none of what markers say the old one held.
struct Volume {
    name: String,
    identity: String,
}

/// A shared target volume, held for one build.
struct SharedVolume {
    name: String,
    identity: String,
    _held: TargetVolume,
}

/// The build's own target volume; one of [`TargetScope::Build`] is removed if the build is
/// dropped before it could remove it.
struct OwnTarget {
    name: String,
    identity: String,
    scope: TargetScope,
    guard: Option<Engine>,
}

impl Drop for OwnTarget {
    fn drop(&mut self) {
        let (Some(engine), TargetScope::Build, Ok(runtime)) = (
            self.guard.take(),
            self.scope,
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let name = self.name.clone();
        // The container using it is being removed by its own guard: try for a while.
        runtime.spawn(async move {
            for _ in 0..20 {
                if engine.remove_volume(&name).await.is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
    }
}

/// The volumes one build mounts.
struct Volumes {
    /// Cargo's home: written only by `cargo fetch`.
    cargo_home: Volume,
    /// Compiled registry dependencies: written only by the dependency phase.
    shared: SharedVolume,
    /// The build's own target.
    target: OwnTarget,
}

impl Volumes {
    /// The build removed its own target itself.
    fn disarm(mut self) {
        self.target.guard = None;
    }
}

/// [`deps::digest`] off the async threads.
async fn digest_of(context: &Context) -> Result<String> {
    let context = context.clone();
    blocking(move || deps::digest(&context)).await
}

/// Writes a marker (with `content`), so a later build skips a phase.
fn mark(marker: &Path, content: &[u8]) -> Result<()> {
    crate::adapters::fsutil::create_parent("marker", marker)?;
    crate::adapters::fsutil::write_file_atomically("marker", marker, content)
}

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

/// One compile, as its phases see it.
struct Job<'a> {
    project: &'a Project,
    flags: &'a Flags,
    identity: &'a BuildIdentity,
    rustflags: &'a str,
    volumes: &'a Volumes,
    events: &'a Events,
}

/// The containers of a compile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `cargo fetch`: the only one with a network; runs no build script.
    Fetch,
    /// The project's stand-in, into the shared target volume (see `deps.rs`).
    Dependencies,
    /// The project itself, in its own target.
    Compile,
}

impl DockerCompiler {
    /// Fetch (when this project's dependencies were not fetched into this cargo home yet),
    /// the shared dependency phase (when not run for them in this shared volume yet), and the
    /// compile. Returns whether a generated project's Cargo.lock was written.
    async fn phases(&self, job: &Job<'_>, context: Context, binary: &Path) -> Result<bool> {
        let events = job.events;
        let mut context = context;
        let cargo = &job.volumes.cargo_home;
        let depends = digest_of(&context).await?;
        let fetched = self.marker(
            "fetched",
            &[
                &depends,
                &self.image.id,
                &job.flags.target,
                &cargo.name,
                &cargo.identity,
            ],
        );
        let known = fetched.clone();
        match blocking(move || Ok(std::fs::read(&known).ok())).await? {
            // Fetched before: a Cargo project without a lockfile builds with the one that
            // fetch resolved, so every later phase sees the same dependencies.
            Some(lock) => {
                if !lock.is_empty() && deps::lockfile(&context)?.is_none() {
                    context = context.with_lockfile(lock);
                }
            }
            None => {
                let lock = self.fetch(job, &context).await?.unwrap_or_default();
                if !lock.is_empty() {
                    context = self.with_lockfile(job, context, lock.clone()).await?;
                }
                let digest = digest_of(&context).await?;
                let again = self.marker(
                    "fetched",
                    &[
                        &digest,
                        &self.image.id,
                        &job.flags.target,
                        &cargo.name,
                        &cargo.identity,
                    ],
                );
                for marker in [fetched, again] {
                    let lock = lock.clone();
                    blocking(move || mark(&marker, &lock)).await?;
                }
            }
        }

        let units = self.dependencies(job, &context).await?;
        let target = &job.volumes.target;
        let seeded = units
            .as_ref()
            .map(|(key, _)| self.marker("seeded", &[key, &target.name, &target.identity]));
        let seed = match &seeded {
            Some(marker) if !marker.is_file() => units.map(|(_, units)| units),
            _ => None,
        };
        if let Some(units) = &seed {
            events.note(format!(
                "copying {} compiled dependency units from the shared volume",
                units.len()
            ));
        }
        let extras = seed.map(|u| (deps::UNITS, u.to_text().into_bytes()));
        let config = self.container_config(job, Phase::Compile);
        let lock_written = self
            .in_container(config, |id| async move {
                // No CA bundle: the compile has no network.
                self.upload(&id, Phase::Compile, context, None, extras, events)
                    .await?;
                self.build_in(&id, job, binary).await
            })
            .await?;
        if let Some(marker) = seeded {
            blocking(move || mark(&marker, b"")).await?;
        }
        Ok(lock_written)
    }

    /// Runs `cargo fetch` for the project (the host's proxy settings and CA bundle with it),
    /// and returns the lockfile it resolved.
    async fn fetch(&self, job: &Job<'_>, context: &Context) -> Result<Option<Vec<u8>>> {
        job.events
            .note("fetching dependencies (the only step with a network)".to_string());
        let ca = blocking(host_ca_bundle).await;
        let config = self.container_config(job, Phase::Fetch);
        let context = context.clone();
        let events = job.events;
        self.in_container(config, |id| async move {
            self.upload(&id, Phase::Fetch, context, ca, None, events)
                .await?;
            let finished = self
                .engine
                .run_to_completion(&id, &mut |_, line| {
                    events.emit(Event::CompilerOutput {
                        line: line.to_string(),
                    })
                })
                .await?;
            if finished.exit_code != 0 {
                return Err(Error::CompileFailed {
                    package: job.project.package.clone(),
                    status: std::os::unix::process::ExitStatusExt::from_raw(
                        (finished.exit_code as i32 & 0xff) << 8,
                    ),
                });
            }
            let lock = self
                .download(&id, &format!("{SRC}/Cargo.lock"), "Cargo.lock")
                .await?;
            Ok(first_entry(&lock).ok().flatten())
        })
        .await
    }

    /// The context with the lockfile `cargo fetch` resolved: a generated project keeps it
    /// (as it keeps the one a compile writes); a Cargo project's own tree is never written,
    /// so it goes with this build's sources only.
    async fn with_lockfile(
        &self,
        job: &Job<'_>,
        context: Context,
        lock: Vec<u8>,
    ) -> Result<Context> {
        let project = job.project;
        if project.kind == SourceKind::CargoProject {
            return Ok(context.with_lockfile(lock));
        }
        let kept = project.workspace_root.join("Cargo.lock");
        blocking(move || crate::adapters::fsutil::write_if_changed(&kept, &lock)).await?;
        Ok(job.identity.of(project).await?.0)
    }

    /// The shared dependency phase's units for this project, with the key they are kept
    /// under; built now unless built before in this volume. `None` when the project does not
    /// share (git dependencies) or the phase failed (the compile then builds every crate).
    async fn dependencies(
        &self,
        job: &Job<'_>,
        context: &Context,
    ) -> Result<Option<(String, Units)>> {
        let events = job.events;
        let lock = deps::lockfile(context)?;
        // Nothing from a registry (a program of std alone): nothing to share.
        if lock
            .as_deref()
            .is_some_and(|l| !deps::has_registry_dependencies(l))
        {
            return Ok(None);
        }
        if lock.as_deref().is_some_and(deps::has_git_dependencies) {
            events.note(
                "git dependencies: every crate compiles in the build's own target".to_string(),
            );
            return Ok(None);
        }
        let shared = &job.volumes.shared;
        let key = job.identity.key_of(digest_of(context).await?.as_bytes());
        let marker = self.marker("dependencies", &[&key, &shared.name, &shared.identity]);
        let kept = marker.clone();
        if let Some(text) = blocking(move || Ok(std::fs::read_to_string(&kept).ok())).await? {
            return Ok(Some((key, Units::from_text(&text))));
        }
        events.note(
            "compiling dependencies into the shared volume (the project's own code stays out)"
                .to_string(),
        );
        let config = self.container_config(job, Phase::Dependencies);
        let stand_in = deps::stand_in(context);
        let built = self
            .in_container(config, |id| async move {
                self.upload(&id, Phase::Dependencies, stand_in, None, None, events)
                    .await?;
                let mut units = Units::default();
                let (mut fresh, mut compiled) = (0, Vec::new());
                let finished = self
                    .engine
                    .run_to_completion(&id, &mut |stderr, line| {
                        if stderr {
                            return events.emit(Event::CompilerOutput {
                                line: line.to_string(),
                            });
                        }
                        units.observe(line, TARGET);
                        if let CargoLine::Artifact {
                            fresh: was, target, ..
                        } = parse_message(line, &job.project.bin)
                        {
                            match was {
                                true => fresh += 1,
                                false => compiled.push(target),
                            }
                        }
                    })
                    .await?;
                events.note(format!(
                    "shared dependencies: {fresh} of {} units fresh; compiled: {}",
                    fresh + compiled.len(),
                    compiled.join(", ")
                ));
                Ok((finished.exit_code, units))
            })
            .await?;
        match built {
            (0, units) => {
                let text = units.to_text().into_bytes();
                blocking(move || mark(&marker, &text)).await?;
                Ok(Some((key, units)))
            }
            (code, _) => {
                events.emit(Event::Warning {
                    message: format!(
                        "the shared dependency phase failed (exit {code}, above); every crate compiles in the build's own target"
                    ),
                });
                Ok(None)
            }
        }
    }

    /// Creates a container from `config`, runs `work` on it, and removes it, whatever
    /// happened; if this future is dropped (a cancelled service build), a guard removes it.
    async fn in_container<T, F, Fut>(&self, config: ContainerSpec, work: F) -> Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let id = self.engine.create(config).await?;
        let guard = ContainerGuard {
            engine: self.engine.clone(),
            id: Some(id.clone()),
        };
        let result = work(id.clone()).await;
        let removed = self.engine.remove_container(&id).await;
        guard.disarm();
        Error::with_cleanup(result, removed)
    }

    /// A marker kept under the cache directory, named by `parts`.
    fn marker(&self, kind: &str, parts: &[&str]) -> PathBuf {
        let mut key = Sha256::new();
        for part in parts {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let key = hex(&key.finalize());
        self.cache_dir
            .join("sandbox")
            .join(format!("{kind}-{}", &key[..32]))
    }

    /// The volumes a build mounts, made if missing: cargo's home, a free shared target
    /// volume (held until dropped) and the build's own target.
    async fn volumes(&self, project: &Project) -> Result<Volumes> {
        let names = &self.sandbox.volumes;
        let registry = names
            .cargo_home
            .clone()
            .unwrap_or_else(|| CARGO_HOME_VOLUME.to_string());
        // One shared volume (per concurrent build) for every project built with this builder
        // image, unless told another base (tests, benchmarks). A project's own targets are
        // named after it.
        let base = names.targets.clone().unwrap_or_else(|| {
            let id = self.image.id.trim_start_matches("sha256:");
            format!("ruchy-image-shared-{}", &id[..id.len().min(12)])
        });
        let shared = TargetVolume::take(&base);
        let scope = self.sandbox.target;
        let (target, mut labels) = match scope {
            TargetScope::Project => {
                let root = std::fs::canonicalize(&project.workspace_root)
                    .unwrap_or_else(|_| project.workspace_root.clone());
                let digest =
                    crate::adapters::fsutil::sha256_digest(root.as_os_str().as_encoded_bytes());
                let digest = digest.trim_start_matches("sha256:");
                let owner = crate::adapters::cache_volumes::project_owner(&root);
                (
                    format!("{base}-project-{}", &digest[..12]),
                    std::collections::HashMap::from([(CACHE_VOLUME_LABEL.to_string(), owner)]),
                )
            }
            // Named after the shared volume this build holds (no other build of this process
            // holds it now) and this process, and labelled with it: a run that finds it after
            // this process is gone removes it.
            TargetScope::Build => (
                format!(
                    "{}-build-{}",
                    shared.0,
                    crate::adapters::cleanup::temp_prefix("target").trim_matches('.')
                ),
                std::collections::HashMap::from([
                    (
                        CACHE_VOLUME_LABEL.to_string(),
                        "a build's target".to_string(),
                    ),
                    (
                        crate::adapters::cleanup::OWNER_LABEL.to_string(),
                        crate::adapters::cleanup::owner_label(),
                    ),
                ]),
            ),
        };
        let label = |owner: String| {
            std::collections::HashMap::from([(CACHE_VOLUME_LABEL.to_string(), owner)])
        };
        let cargo_id = self
            .engine
            .create_volume(&registry, label("shared".into()))
            .await?;
        let shared_label = label(format!("target for {}", self.image.reference));
        let shared_id = self.engine.create_volume(&shared.0, shared_label).await?;
        if scope == TargetScope::Build {
            // One left by a build of this process that could not remove it is not this one's.
            self.engine.remove_volume(&target).await?;
        }
        let target_id = self
            .engine
            .create_volume(&target, std::mem::take(&mut labels))
            .await?;
        Ok(Volumes {
            cargo_home: Volume {
                name: registry,
                identity: cargo_id,
            },
            shared: SharedVolume {
                name: shared.0.clone(),
                identity: shared_id,
                _held: shared,
            },
            target: OwnTarget {
                name: target,
                identity: target_id,
                scope,
                guard: Some(self.engine.clone()),
            },
        })
    }

    /// A builder container of `phase`: cargo on the project with the flags' environment and
    /// the wrapper, the volumes mounted as the phase may use them, the sandbox's limits, no
    /// capabilities, and a network only to fetch.
    fn container_config(&self, job: &Job<'_>, phase: Phase) -> ContainerSpec {
        let project = job.project;
        let relative_manifest = project
            .manifest_path
            .strip_prefix(&project.workspace_root)
            .unwrap_or(Path::new("Cargo.toml"));
        let manifest = format!("{SRC}/{}", relative_manifest.display());
        let mut cmd = vec!["cargo".to_string()];
        let mut env = vec![format!("CARGO_HOME={CARGO_HOME}")];
        let volumes = &job.volumes;
        let mut mounts = Vec::new();
        let mut script = String::new();
        match phase {
            Phase::Fetch => {
                cmd.extend(
                    [
                        "fetch",
                        "--manifest-path",
                        &manifest,
                        "--target",
                        &job.flags.target,
                    ]
                    .map(String::from),
                );
                // A wrapper or compiler named by the project's .cargo/config is its code:
                // cargo asks rustc for the target's configuration, and runs no other.
                env.push("RUSTC_WRAPPER=".into());
                env.push("RUSTC=rustc".into());
                env.push(format!("CARGO_HTTP_CAINFO=/{HOST_CA}"));
                env.push(format!("SSL_CERT_FILE=/{HOST_CA}"));
                env.extend(proxy_env());
                mounts.push(VolumeMount::writable(&volumes.cargo_home.name, CARGO_HOME));
            }
            Phase::Dependencies | Phase::Compile => {
                cmd.extend(cargo_args(&manifest, project, job.flags, self.color));
                cmd.push("--offline".into());
                env.extend(
                    job.flags
                        .cargo_env()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}")),
                );
                env.push(format!("CARGO_ENCODED_RUSTFLAGS={}", job.rustflags));
                if job.flags.needs_bootstrap() {
                    env.push("RUSTC_BOOTSTRAP=1".into());
                }
                env.push(format!("CARGO_TARGET_DIR={TARGET}"));
                env.push(format!("RUSTC_WRAPPER=/{WRAPPER}"));
                env.push(format!("RUCHY_IMAGE_BIN={}", project.bin));
                // Not root: its home is not this user's.
                env.push("HOME=/tmp".into());
                mounts.push(VolumeMount::read_only(&volumes.cargo_home.name, CARGO_HOME));
                if phase == Phase::Dependencies {
                    env.push("RUCHY_IMAGE_STAND_IN=1".into());
                    mounts.push(VolumeMount::writable(&volumes.shared.name, TARGET));
                } else {
                    mounts.push(VolumeMount::read_only(&volumes.shared.name, deps::SHARED));
                    mounts.push(VolumeMount::writable(&volumes.target.name, TARGET));
                    script.push_str(deps::SEED);
                    script.push('\n');
                }
            }
        }
        if self.quiet {
            cmd.push("--quiet".into());
        }
        script.push_str("\"$@\"\nstatus=$?\nif [ \"$status\" -ne 0 ]; then\n");
        script.push_str(sandbox::REPORT_LIMITS);
        script.push_str("\nfi\nexit \"$status\"");
        let limits = self.sandbox.limits;
        ContainerSpec {
            image: self.image.id.clone(),
            // The image's own entrypoint (if it has one) would take cargo as its argument.
            entrypoint: Some(vec!["sh".into(), "-c".into(), script, "sh".into()]),
            cmd: Some(cmd),
            env,
            working_dir: Some(SRC.to_string()),
            // Labels say what a container is for, should one ever be found lying around.
            labels: std::collections::HashMap::from([
                ("dev.ruchy.image.role".to_string(), "builder".to_string()),
                (
                    "dev.ruchy.image.source".to_string(),
                    std::fs::canonicalize(&project.source)
                        .unwrap_or_else(|_| project.source.clone())
                        .display()
                        .to_string(),
                ),
            ]),
            volumes: mounts,
            user: (phase != Phase::Fetch).then(|| format!("{BUILDER_UID}:{BUILDER_UID}")),
            memory: limits.memory,
            cpus: limits.cpus,
            pids: limits.pids,
            no_network: phase != Phase::Fetch,
            least_privilege: true,
        }
    }

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

    /// Streams the build context (and the host's CA bundle) into the container, saying how
    /// much goes, and warning when it is more than a source tree should be.
    async fn upload(
        &self,
        id: &str,
        phase: Phase,
        context: Context,
        ca: Option<Vec<u8>>,
        extra: Option<(&'static str, Vec<u8>)>,
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
            if let Some((path, bytes)) = &extra {
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
    }
}
