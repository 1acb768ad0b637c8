//! A compile's containers, in order: `cargo fetch` (the only one with a network), the shared
//! dependency phase (a stand-in of the project, see `deps.rs`), and the project's own compile
//! (see [`DockerCompiler::build_in`]); markers under the cache directory skip the first two
//! when they have nothing new to do. What each container may use is here too.

use super::*;

/// Where the fetch leaves `cargo metadata` of the project.
const METADATA: &str = "/ruchy-image/metadata.json";
/// After a fetch that worked, for a build that embeds its crates: `cargo metadata` of what
/// it resolved, for the target.
const FETCH_METADATA: &str = r#"if [ "$status" -eq 0 ] && [ -n "${RUCHY_IMAGE_METADATA:-}" ]; then
  cargo metadata --format-version 1 --locked --filter-platform "$RUCHY_IMAGE_TARGET" \
    --manifest-path "$RUCHY_IMAGE_MANIFEST" > "$RUCHY_IMAGE_METADATA" || status=$?
fi
"#;
/// Where the object with the list of the binary's crates goes (a tar path).
const DEPS_OBJECTS: &str = "ruchy-image/auditable";

/// The marker that keeps the fetch's `cargo metadata`, beside the fetch's own.
fn metadata_marker(fetched: &Path) -> PathBuf {
    fetched.with_extension("metadata")
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

/// One compile, as its phases see it.
pub(super) struct Job<'a> {
    pub(super) project: &'a Project,
    pub(super) flags: &'a Flags,
    pub(super) identity: &'a BuildIdentity,
    pub(super) rustflags: &'a str,
    pub(super) volumes: &'a Volumes,
    pub(super) events: &'a Events,
}

/// The containers of a compile, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
    pub(super) async fn phases(
        &self,
        job: &Job<'_>,
        context: Context,
        binary: &Path,
    ) -> Result<bool> {
        let events = job.events;
        let mut context = context;
        // Whether a generated project's Cargo.lock was written, by the fetch or the compile.
        let mut lock_kept = false;
        let cargo = &job.volumes.cargo_home;
        // What a fetch is known by: the manifests' digest, the toolchain and target, and the
        // cargo home it went into.
        let fetched_marker = |digest: &str| {
            let parts = [
                digest,
                &self.image.id,
                &job.flags.target,
                &cargo.name,
                &cargo.identity,
            ];
            self.marker("fetched", &parts)
        };
        // The fetch also keeps `cargo metadata` of what it resolved: the list of crates the
        // binary carries is made from it (see `auditable`), needed only when it carries one.
        let fetched = fetched_marker(&digest_of(&context).await?);
        let known = (fetched.clone(), metadata_marker(&fetched));
        let embed = job.flags.embed_deps;
        let remembered = blocking(move || {
            let lock = std::fs::read(&known.0).ok();
            let metadata = std::fs::read(&known.1).ok().filter(|m| !m.is_empty());
            Ok(lock.zip(metadata.or_else(|| (!embed).then(Vec::new))))
        })
        .await?;
        let metadata = match remembered {
            // Fetched before: a Cargo project without a lockfile builds with the one that
            // fetch resolved, so every later phase sees the same dependencies.
            Some((lock, metadata)) => {
                if !lock.is_empty() && deps::lockfile(&context)?.is_none() {
                    context = context.with_lockfile(lock);
                }
                metadata
            }
            None => {
                let (lock, metadata) = self.fetch(job, &context).await?;
                let lock = lock.unwrap_or_default();
                if !lock.is_empty() {
                    let (with_lock, written) =
                        self.with_lockfile(job, context, lock.clone()).await?;
                    (context, lock_kept) = (with_lock, written);
                }
                // Known by the manifests with the lockfile too, as the next build sends them.
                let again = fetched_marker(&digest_of(&context).await?);
                for marker in [fetched, again] {
                    let (lock, metadata) = (lock.clone(), metadata.clone());
                    blocking(move || {
                        if !metadata.is_empty() {
                            mark(&metadata_marker(&marker), &metadata)?;
                        }
                        mark(&marker, &lock)
                    })
                    .await?;
                }
                metadata
            }
        };
        let (files, link) = self.deps_object(job, &metadata).await?;

        let depends = digest_of(&context).await?;
        let units = self.dependencies(job, &context, &depends).await?;
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
        let mut files = files;
        files.extend(seed.map(|u| (deps::UNITS.to_string(), u.to_text().into_bytes())));
        let config = self.container_config(job, Phase::Compile, &link);
        let lock_written = self
            .in_container(config, |id| async move {
                // No CA bundle: the compile has no network.
                self.upload(&id, Phase::Compile, context, None, files, events)
                    .await?;
                self.build_in(&id, job, binary).await
            })
            .await?;
        if let Some(marker) = seeded {
            blocking(move || mark(&marker, b"")).await?;
        }
        Ok(lock_kept || lock_written)
    }

    /// The object holding the list of the crates in the binary (a file to send with the
    /// compile), and the rustc arguments that link it, from the fetch's `cargo metadata`;
    /// nothing when the build embeds no list (or, with a warning, for a target we write no
    /// object for).
    async fn deps_object(
        &self,
        job: &Job<'_>,
        metadata: &[u8],
    ) -> Result<(Vec<(String, Vec<u8>)>, Vec<String>)> {
        if !job.flags.embed_deps {
            return Ok(Default::default());
        }
        let project = job.project;
        let metadata = cargo_metadata::MetadataCommand::parse(String::from_utf8_lossy(metadata))
            .map_err(|e| crate::pipeline::source::metadata_error(&project.manifest_path, e))?;
        let object = crate::pipeline::auditable::object_for(
            &metadata,
            &project.manifest_path,
            &project.package,
            &job.flags.target,
        )?;
        let Some((name, object)) = object else {
            job.events.emit(Event::Warning {
                message: crate::pipeline::auditable::unsupported(&job.flags.target),
            });
            return Ok(Default::default());
        };
        let path = format!("{DEPS_OBJECTS}/{name}");
        let link = crate::pipeline::auditable::link_args(&format!("/{path}"));
        Ok((vec![(path, object)], link))
    }

    /// Runs `cargo fetch` for the project (the host's proxy settings and CA bundle with it),
    /// and returns the lockfile it resolved and, for a build that embeds its crates, `cargo
    /// metadata` of the project for the target (else nothing).
    async fn fetch(&self, job: &Job<'_>, context: &Context) -> Result<(Option<Vec<u8>>, Vec<u8>)> {
        job.events
            .note("fetching dependencies (the only step with a network)".to_string());
        let ca = blocking(host_ca_bundle).await;
        let config = self.container_config(job, Phase::Fetch, &[]);
        // Manifests, lockfile and cargo's configuration are all a fetch reads.
        let context = deps::stand_in(context, true);
        let events = job.events;
        self.in_container(config, |id| async move {
            self.upload(&id, Phase::Fetch, context, ca, Vec::new(), events)
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
            let metadata = match job.flags.embed_deps {
                true => {
                    let metadata = self.download(&id, METADATA, "cargo metadata").await?;
                    first_entry(&metadata).ok().flatten().unwrap_or_default()
                }
                false => Vec::new(),
            };
            Ok((first_entry(&lock).ok().flatten(), metadata))
        })
        .await
    }

    /// The context with the lockfile `cargo fetch` resolved: a generated project keeps it
    /// (as it keeps the one a compile writes; true when it was written); a Cargo project's
    /// own tree is never written, so it goes with this build's sources only.
    async fn with_lockfile(
        &self,
        job: &Job<'_>,
        context: Context,
        lock: Vec<u8>,
    ) -> Result<(Context, bool)> {
        let project = job.project;
        if project.kind == SourceKind::CargoProject {
            return Ok((context.with_lockfile(lock), false));
        }
        let kept = project.workspace_root.join("Cargo.lock");
        let written =
            blocking(move || crate::adapters::fsutil::write_if_changed(&kept, &lock)).await?;
        Ok((job.identity.of(project).await?.0, written))
    }

    /// The shared dependency phase's units for this project, with the key they are kept
    /// under; built now unless built before in this volume. `None` when the project does not
    /// share (git dependencies) or the phase failed (the compile then builds every crate).
    async fn dependencies(
        &self,
        job: &Job<'_>,
        context: &Context,
        depends: &str,
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
        let key = job.identity.dependencies_key(depends.as_bytes());
        let marker = self.marker("dependencies", &[&key, &shared.name, &shared.identity]);
        let kept = marker.clone();
        if let Some(text) = blocking(move || Ok(std::fs::read_to_string(&kept).ok())).await? {
            return Ok(Some((key, Units::from_text(&text))));
        }
        events.note(
            "compiling dependencies into the shared volume (the project's own code stays out)"
                .to_string(),
        );
        let config = self.container_config(job, Phase::Dependencies, &[]);
        let stand_in = deps::stand_in(context, false);
        let built = self
            .in_container(config, |id| async move {
                self.upload(&id, Phase::Dependencies, stand_in, None, Vec::new(), events)
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

    /// A builder container of `phase`: cargo on the project with the flags' environment and
    /// the wrapper (and `rustc`, arguments for the binary's own rustc), the volumes mounted
    /// as the phase may use them, the sandbox's limits, no capabilities, and a network only
    /// to fetch.
    fn container_config(&self, job: &Job<'_>, phase: Phase, rustc: &[String]) -> ContainerSpec {
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
                env.push(format!("RUCHY_IMAGE_MANIFEST={manifest}"));
                env.push(format!("RUCHY_IMAGE_TARGET={}", job.flags.target));
                if job.flags.embed_deps {
                    env.push(format!("RUCHY_IMAGE_METADATA={METADATA}"));
                }
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
        let cmd = with_rustc_args(cmd, rustc);
        script.push_str("\"$@\"\nstatus=$?\n");
        if phase == Phase::Fetch {
            script.push_str(FETCH_METADATA);
        }
        script.push_str("if [ \"$status\" -ne 0 ]; then\n");
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
            published: Vec::new(),
        }
    }
}
