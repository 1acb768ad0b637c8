//! The `docker` backend: cargo runs in a builder container (stage 1 of a multi-stage build),
//! driven through the engine API. The source goes in and the binary comes out as tar
//! streams, so nothing is written into the user's tree and remote engines work too.
//!
//! Caches: cargo's home (downloaded crates, and the lock that keeps two containers from
//! unpacking the same crate at once) and the target directory live in named volumes (the
//! target one keyed by project), so a one-line change recompiles only the app crate; and a
//! build whose inputs (sources, preset and flags, builder image) are unchanged starts no
//! container at all.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::context::{ChunkSender, Context};
use super::{cargo_args, encoded_rustflags, parse_message, Artifact, CargoLine, Compiler};
use crate::builder::{FINGERPRINT_LABEL, TARGET_LABEL};
use crate::engine::{api_error, Engine};
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::fsutil::{blocking, hex};
use crate::metrics::human_size;
use crate::preset::Flags;
use crate::source::Project;

/// The builder image used when none is given: musl, so binaries are static already.
pub const DEFAULT_BUILDER_IMAGE: &str = "rust:1-alpine";
/// Where the source and the target volume sit in the builder container.
const SRC: &str = "/src";
const TARGET: &str = "/target";
/// Where the host's CA bundle goes, for crates.io behind TLS-intercepting proxies.
const HOST_CA: &str = "etc/ssl/certs/ruchy-image-host-ca.crt";
/// Where cargo's home volume sits in the builder container; `CARGO_HOME` points there, so the
/// image's own cargo home (with its binaries) stays as the image has it.
const CARGO_HOME: &str = "/ruchy-image/cargo-home";
/// The volume shared by every build for cargo's home, unless `RUCHY_IMAGE_CARGO_VOLUME`
/// names another (a test that wants an empty one).
const CARGO_HOME_VOLUME: &str = "ruchy-image-cargo-home";
/// A build context over this many bytes is worth a warning.
const LARGE_CONTEXT: u64 = 100 << 20;
/// Label on the cache volumes, so they can be listed and removed together.
pub const CACHE_VOLUME_LABEL: &str = "dev.ruchy.image.cache";

/// A builder image present in the engine, with what we need to know about it.
#[derive(Debug, Clone)]
pub struct BuilderImage {
    /// The reference it was found by.
    pub reference: String,
    /// Its image ID.
    pub id: String,
    /// The target triple its toolchain builds for by default.
    pub target: String,
}

impl BuilderImage {
    /// Finds the builder image: `requested`, else `rust:1-alpine` (pulled with progress when
    /// missing), else, when that cannot be pulled, an image made by `builder import-host`.
    pub async fn resolve(
        engine: &Engine,
        requested: Option<&str>,
        cache_dir: &Path,
        events: &Events,
    ) -> Result<BuilderImage> {
        let reference = requested.unwrap_or(DEFAULT_BUILDER_IMAGE).to_string();
        let inspect = match engine.docker().inspect_image(&reference).await {
            Ok(inspect) => inspect,
            Err(_) => match engine.pull(&reference, events).await {
                Ok(()) => engine
                    .docker()
                    .inspect_image(&reference)
                    .await
                    .map_err(api_error(format!("inspecting {reference}")))?,
                Err(reason) => {
                    let fallback = match requested {
                        None => imported_builder(engine).await?,
                        Some(_) => None,
                    };
                    let Some((tag, inspect)) = fallback else {
                        return Err(Error::BuilderImageUnavailable {
                            image: reference,
                            reason,
                        });
                    };
                    events.note(format!(
                        "{reference} cannot be pulled ({reason}); using {tag}, made by `builder import-host`"
                    ));
                    inspect
                }
            },
        };
        let id = inspect.id.clone().unwrap_or_default();
        let config = inspect.config.unwrap_or_default();
        let labelled = config.labels.unwrap_or_default().get(TARGET_LABEL).cloned();
        let target = match labelled {
            Some(target) => target,
            None => detect_target(engine, &reference, &id, cache_dir).await?,
        };
        Ok(BuilderImage {
            reference,
            id,
            target,
        })
    }
}

/// The newest image made by `builder import-host`, if any.
async fn imported_builder(
    engine: &Engine,
) -> Result<Option<(String, bollard::models::ImageInspect)>> {
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&std::collections::HashMap::from([(
            "label",
            vec![FINGERPRINT_LABEL],
        )]))
        .build();
    let mut images = engine
        .docker()
        .list_images(Some(options))
        .await
        .map_err(api_error("listing builder images"))?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let Some(tag) = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .find(|t| t != "<none>:<none>")
    else {
        return Ok(None);
    };
    let inspect = engine
        .docker()
        .inspect_image(&tag)
        .await
        .map_err(api_error(format!("inspecting {tag}")))?;
    Ok(Some((tag, inspect)))
}

/// Asks the image's rustc for its host triple once, then remembers it by image ID.
async fn detect_target(
    engine: &Engine,
    reference: &str,
    image_id: &str,
    cache_dir: &Path,
) -> Result<String> {
    let remembered = cache_dir.join("builders").join(image_id.replace(':', "-"));
    if let Ok(target) = std::fs::read_to_string(&remembered) {
        return Ok(target.trim().to_string());
    }
    let id = engine
        .create_container(ContainerCreateBody {
            image: Some(image_id.to_string()),
            cmd: Some(vec!["rustc".into(), "-vV".into()]),
            ..Default::default()
        })
        .await?;
    let mut target = None;
    let finished = engine
        .run_to_completion(&id, &mut |_, line| {
            if let Some(host) = line.strip_prefix("host: ") {
                target = Some(host.to_string());
            }
        })
        .await;
    let removed = engine.remove_container(&id).await;
    let not_rust = |reason: String| Error::BuilderNotRust {
        image: reference.to_string(),
        reason,
    };
    let target = match (Error::with_cleanup(finished, removed), target) {
        (Ok(finished), Some(target)) if finished.exit_code == 0 => target,
        (Ok(finished), _) => return Err(not_rust(format!("exit code {}", finished.exit_code))),
        // The engine's message says the program is missing; a cleanup error stays an error.
        (Err(Error::Engine { message, .. }), _) => return Err(not_rust(message)),
        (Err(other), _) => return Err(other),
    };
    if let Some(parent) = remembered.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&remembered, &target);
    Ok(target)
}

/// Compiles in a builder container.
#[derive(Debug, Clone)]
pub struct DockerCompiler {
    engine: Engine,
    image: BuilderImage,
    cache_dir: PathBuf,
    color: bool,
    quiet: bool,
}

impl DockerCompiler {
    /// A compiler using `image` in `engine`; artifacts are kept under `cache_dir`.
    pub fn new(
        engine: Engine,
        image: BuilderImage,
        cache_dir: PathBuf,
        color: bool,
        quiet: bool,
    ) -> DockerCompiler {
        DockerCompiler {
            engine,
            image,
            cache_dir,
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
struct BuildIdentity {
    flags: Flags,
    cargo_env: Vec<(String, String)>,
    rustflags: String,
    package: String,
    bin: String,
    image_id: String,
}

impl BuildIdentity {
    /// The cache key of a build of `context` with this identity.
    fn key(&self, context: &Context) -> String {
        let mut key = Sha256::new();
        key.update(context.digest);
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

    async fn default_target(&self) -> Result<String> {
        Ok(self.image.target.clone())
    }

    async fn compile(&self, project: &Project, flags: &Flags, events: &Events) -> Result<Artifact> {
        let started = Instant::now();
        let root = &project.workspace_root;
        let rustflags = encoded_rustflags(flags, SRC);
        let (context, key) = {
            let (root, target_dir) = (root.clone(), project.target_dir.clone());
            let identity = BuildIdentity {
                flags: flags.clone(),
                cargo_env: flags.cargo_env(),
                rustflags: rustflags.clone(),
                package: project.package.clone(),
                bin: project.bin.clone(),
                image_id: self.image.id.clone(),
            };
            blocking(move || {
                let context = Context::collect(&root, &target_dir)?;
                let key = identity.key(&context);
                Ok::<_, Error>((context, key))
            })
            .await?
        };
        let artifact_dir = self.cache_dir.join("artifacts").join(&key[..32]);
        let binary = artifact_dir.join(&project.bin);
        if binary.is_file() {
            return Ok(Artifact {
                binary,
                compile_time: started.elapsed(),
                fresh: true,
            });
        }

        let project_key =
            hex(&Sha256::digest(root.as_os_str().as_encoded_bytes()))[..12].to_string();
        let registry = std::env::var("RUCHY_IMAGE_CARGO_VOLUME")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| CARGO_HOME_VOLUME.to_string());
        let target_volume = format!("ruchy-image-target-{project_key}");
        // The label says whose cache a volume is: the project's root, or "shared".
        let root_label = root.display().to_string();
        for (volume, owner) in [(&registry, "shared"), (&target_volume, root_label.as_str())] {
            self.engine
                .docker()
                .create_volume(bollard::models::VolumeCreateRequest {
                    name: Some(volume.clone()),
                    labels: Some(std::collections::HashMap::from([(
                        CACHE_VOLUME_LABEL.to_string(),
                        owner.to_string(),
                    )])),
                    ..Default::default()
                })
                .await
                .map_err(api_error(format!("creating the cache volume {volume}")))?;
        }

        let relative_manifest = project
            .manifest_path
            .strip_prefix(root)
            .unwrap_or(Path::new("Cargo.toml"));
        let manifest = format!("{SRC}/{}", relative_manifest.display());
        let mut cmd = vec!["cargo".to_string()];
        cmd.extend(cargo_args(&manifest, project, flags, self.color));
        if self.quiet {
            cmd.push("--quiet".into());
        }
        let ca = blocking(host_ca_bundle).await;
        let mut env: Vec<String> = flags
            .cargo_env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("CARGO_ENCODED_RUSTFLAGS={rustflags}"));
        env.push(format!("CARGO_TARGET_DIR={TARGET}"));
        env.push(format!("CARGO_HOME={CARGO_HOME}"));
        if ca.is_some() {
            env.push(format!("CARGO_HTTP_CAINFO=/{HOST_CA}"));
            env.push(format!("SSL_CERT_FILE=/{HOST_CA}"));
        }
        env.extend(proxy_env());
        let volume = |source: &str, target: &str| Mount {
            source: Some(source.to_string()),
            target: Some(target.to_string()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        };
        let config = ContainerCreateBody {
            image: Some(self.image.id.clone()),
            cmd: Some(cmd),
            env: Some(env),
            working_dir: Some(SRC.to_string()),
            // Labels say what a container is for, should one ever be found lying around.
            labels: Some(std::collections::HashMap::from([
                ("dev.ruchy.image.role".to_string(), "builder".to_string()),
                (
                    "dev.ruchy.image.source".to_string(),
                    std::fs::canonicalize(&project.source)
                        .unwrap_or_else(|_| project.source.clone())
                        .display()
                        .to_string(),
                ),
            ])),
            host_config: Some(HostConfig {
                mounts: Some(vec![
                    volume(&registry, CARGO_HOME),
                    volume(&target_volume, TARGET),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.engine.create_container(config).await?;
        // Whatever happens next, the container goes.
        let result = async {
            self.upload(&id, context, ca, events).await?;
            self.build_in(&id, project, &artifact_dir, &binary, events)
                .await
        }
        .await;
        let removed = self.engine.remove_container(&id).await;
        Error::with_cleanup(result, removed)?;
        Ok(Artifact {
            binary,
            compile_time: started.elapsed(),
            fresh: false,
        })
    }
}

impl DockerCompiler {
    /// Runs cargo in the container, and copies the binary out of it.
    async fn build_in(
        &self,
        id: &str,
        project: &Project,
        artifact_dir: &Path,
        binary: &Path,
        events: &Events,
    ) -> Result<()> {
        let mut executable = None;
        let output = |line: &str| {
            events.emit(Event::CompilerOutput {
                line: line.to_string(),
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
                        executable: Some(path),
                        ..
                    } => executable = Some(path),
                    CargoLine::Text => output(line),
                    _ => {}
                }
            })
            .await?;
        if finished.exit_code != 0 {
            return Err(Error::CompileFailed {
                package: project.package.clone(),
                status: std::os::unix::process::ExitStatusExt::from_raw(
                    (finished.exit_code as i32 & 0xff) << 8,
                ),
            });
        }
        let executable = executable.ok_or_else(|| Error::NoExecutable {
            bin: project.bin.clone(),
        })?;

        // The binary comes out as a one-entry tar.
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(&executable.display().to_string())
            .build();
        let mut stream = self
            .engine
            .docker()
            .download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(
                &chunk.map_err(api_error("copying the binary out of the builder"))?,
            );
        }
        let (artifact_dir, binary) = (artifact_dir.to_path_buf(), binary.to_path_buf());
        let bin = project.bin.clone();
        blocking(move || keep_binary(&archive, &bin, &artifact_dir, &binary)).await
    }

    /// Streams the build context (and the host's CA bundle) into the container, saying how
    /// much goes, and warning when it is more than a source tree should be.
    async fn upload(
        &self,
        id: &str,
        context: Context,
        ca: Option<Vec<u8>>,
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
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let writer = tokio::task::spawn_blocking(move || {
            let ca = ca.as_deref().map(|ca| (HOST_CA, ca));
            context.write_tar(ChunkSender::new(sender), ca)
        });
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path("/")
            .build();
        let uploaded = self
            .engine
            .docker()
            .upload_to_container(id, Some(options), bollard::body_try_stream(chunks))
            .await
            .map_err(api_error("uploading the source into the builder"));
        // The engine's error says more than the writer's "stopped reading".
        let written = writer
            .await
            .map_err(|e| Error::io("packing the source")(e.into()));
        uploaded?;
        written?
    }
}

/// Takes the binary out of the one-entry tar the engine sent and stores it in the artifact
/// cache (by way of a temp file, so a cached binary is always whole).
fn keep_binary(archive: &[u8], bin: &str, artifact_dir: &Path, binary: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    let mut entries = tar::Archive::new(archive);
    let mut entry = entries
        .entries()
        .map_err(Error::io("reading the binary from the builder"))?
        .next()
        .ok_or_else(|| Error::NoExecutable {
            bin: bin.to_string(),
        })?
        .map_err(Error::io("reading the binary from the builder"))?;
    entry
        .read_to_end(&mut bytes)
        .map_err(Error::io("reading the binary from the builder"))?;

    std::fs::create_dir_all(artifact_dir)
        .map_err(Error::io(format!("creating {}", artifact_dir.display())))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&crate::cleanup::temp_prefix("binary"))
        .tempfile_in(artifact_dir)
        .map_err(Error::io(format!(
            "writing into {}",
            artifact_dir.display()
        )))?;
    std::io::Write::write_all(&mut temp, &bytes)
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
    use crate::preset::{Overrides, Preset};

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
