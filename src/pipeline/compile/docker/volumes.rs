//! The volumes a build mounts: cargo's home (written only by `cargo fetch`), a shared target
//! volume (written only by the dependency phase), and the build's own target (the command
//! line's per project, the service's per build). A volume's identity is a label made with it,
//! so markers about one never apply to another made later under its name.

use super::*;

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
pub(super) struct Volume {
    pub(super) name: String,
    pub(super) identity: String,
}

/// A shared target volume, held for one build.
pub(super) struct SharedVolume {
    pub(super) name: String,
    pub(super) identity: String,
    _held: TargetVolume,
}

/// The build's own target volume; one of [`TargetScope::Build`] is removed if the build is
/// dropped before it could remove it.
pub(super) struct OwnTarget {
    pub(super) name: String,
    pub(super) identity: String,
    pub(super) scope: TargetScope,
    pub(super) guard: Option<Engine>,
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
pub(super) struct Volumes {
    /// Cargo's home: written only by `cargo fetch`.
    pub(super) cargo_home: Volume,
    /// Compiled registry dependencies: written only by the dependency phase.
    pub(super) shared: SharedVolume,
    /// The build's own target.
    pub(super) target: OwnTarget,
}

impl Volumes {
    /// The build removed its own target itself.
    pub(super) fn disarm(mut self) {
        self.target.guard = None;
    }
}

impl DockerCompiler {
    /// The volumes a build mounts, made if missing: cargo's home, a free shared target
    /// volume (held until dropped) and the build's own target.
    pub(super) async fn volumes(&self, project: &Project) -> Result<Volumes> {
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
}
