//! The engine's calls the pipeline and the commands make, in our own types: containers to
//! create, images to inspect, list, export and load, volumes, and files copied in and out. No
//! bollard type leaves this module's parent; its errors become [`Error::Engine`] with what
//! was being done.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};
use futures_util::{Stream, StreamExt};

use super::{api_error, Engine};
use crate::core::error::Result;

/// A container to create.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The image (reference or ID).
    pub image: String,
    /// The entrypoint; the image's own when unset (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// The command; the image's own when unset (`Some(vec![])` clears it).
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory; the image's own when unset.
    pub working_dir: Option<String>,
    /// Labels that say what the container is for.
    pub labels: HashMap<String, String>,
    /// Named volumes mounted.
    pub volumes: Vec<VolumeMount>,
    /// A memory limit in bytes (swap included: no swap beyond it).
    pub memory: Option<u64>,
    /// A CPU limit, in CPUs.
    pub cpus: Option<f64>,
    /// A limit on processes and threads together.
    pub pids: Option<u64>,
    /// The user (`UID:GID`); the image's own when unset.
    pub user: Option<String>,
    /// No network but loopback (network mode `none`).
    pub no_network: bool,
    /// Every capability dropped, and `no-new-privileges`: a setuid binary gains nothing.
    pub least_privilege: bool,
    /// Container ports published on the engine's host.
    pub published: Vec<PublishedPort>,
}

/// A container port reachable at an address of the engine's host (`docker run -p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// The host address to listen on (`127.0.0.1`; empty: every address).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The container's port and protocol, as images expose them (`8080/tcp`).
    pub container_port: String,
}

/// The label that holds a volume's identity (see [`Engine::create_volume`]).
const VOLUME_IDENTITY_LABEL: &str = "dev.ruchy.image.volume";

/// A named volume mounted into a container.
#[derive(Debug, Clone)]
pub struct VolumeMount {
    /// The volume's name.
    pub volume: String,
    /// Where it is mounted.
    pub at: String,
    /// Mounted read-only: nothing in the container can change it.
    pub read_only: bool,
}

impl VolumeMount {
    /// `volume` at `at`, writable.
    pub fn writable(volume: &str, at: &str) -> VolumeMount {
        VolumeMount {
            volume: volume.to_string(),
            at: at.to_string(),
            read_only: false,
        }
    }

    /// `volume` at `at`, read-only.
    pub fn read_only(volume: &str, at: &str) -> VolumeMount {
        VolumeMount {
            read_only: true,
            ..VolumeMount::writable(volume, at)
        }
    }
}

impl ContainerSpec {
    fn into_body(self) -> ContainerCreateBody {
        let mounts = self
            .volumes
            .into_iter()
            .map(|mount| Mount {
                source: Some(mount.volume),
                target: Some(mount.at),
                typ: Some(MountType::VOLUME),
                read_only: Some(mount.read_only),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let exposed = self
            .published
            .iter()
            .map(|p| p.container_port.clone())
            .collect::<Vec<_>>();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in self.published {
            bindings
                .entry(port.container_port)
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(port.host_ip).filter(|ip| !ip.is_empty()),
                    host_port: Some(port.host_port.to_string()),
                });
        }
        ContainerCreateBody {
            image: Some(self.image),
            exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
            entrypoint: self.entrypoint,
            cmd: self.cmd,
            env: Some(self.env).filter(|e| !e.is_empty()),
            working_dir: self.working_dir,
            labels: Some(self.labels),
            user: self.user,
            host_config: Some(HostConfig {
                mounts: Some(mounts).filter(|m| !m.is_empty()),
                memory: self.memory.map(|m| m as i64),
                // Without a swap limit equal to the memory limit, the engine allows twice as much.
                memory_swap: self.memory.map(|m| m as i64),
                nano_cpus: self.cpus.map(|c| (c * 1e9) as i64),
                pids_limit: self.pids.map(|p| p as i64),
                network_mode: self.no_network.then(|| "none".to_string()),
                port_bindings: Some(bindings).filter(|b| !b.is_empty()),
                cap_drop: self.least_privilege.then(|| vec!["ALL".to_string()]),
                security_opt: self
                    .least_privilege
                    .then(|| vec!["no-new-privileges".to_string()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// An image as the engine describes it.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// Its ID (the config's digest).
    pub id: String,
    /// Its size unpacked, as the engine counts it.
    pub size: u64,
    /// How many layers its root filesystem has.
    pub layer_count: usize,
    /// The configured user.
    pub user: String,
    /// The configured entrypoint.
    pub entrypoint: Vec<String>,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// The ports it exposes (`8080/tcp`), sorted.
    pub exposed_ports: Vec<String>,
}

/// An image as the engine lists it.
#[derive(Debug, Clone)]
pub struct ListedImage {
    /// When it was made (seconds since the epoch).
    pub created: i64,
    /// Its tags (`name:tag`).
    pub tags: Vec<String>,
}

/// A stream of chunks for the engine to read (an upload, an archive to load).
pub type Chunks = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

impl Engine {
    /// The memory of the engine's machine, in bytes (0 when it does not say).
    pub async fn memory_total(&self) -> Result<u64> {
        let info = self
            .docker
            .info()
            .await
            .map_err(api_error("asking the engine about its machine"))?;
        Ok(info.mem_total.unwrap_or(0).max(0) as u64)
    }

    /// Creates a container from `spec` (tracked and labelled as [`Engine::create_container`]
    /// does) and returns its ID.
    pub async fn create(&self, spec: ContainerSpec) -> Result<String> {
        self.create_container(spec.into_body()).await
    }

    /// The image `reference` names, or `None` when the engine does not have it.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let inspect = match self.docker.inspect_image(reference).await {
            Ok(inspect) => inspect,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(api_error(format!("inspecting image {reference}"))(e)),
        };
        let config = inspect.config.unwrap_or_default();
        Ok(Some(ImageInfo {
            id: inspect.id.unwrap_or_default(),
            size: inspect.size.unwrap_or(0).max(0) as u64,
            layer_count: inspect
                .root_fs
                .and_then(|r| r.layers)
                .map_or(0, |l| l.len()),
            user: config.user.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            exposed_ports: {
                let mut ports: Vec<String> = config.exposed_ports.into_iter().flatten().collect();
                ports.sort();
                ports
            },
        }))
    }

    /// The image `reference` names; not having it is an error saying what it was for.
    pub async fn image(&self, reference: &str, context: &str) -> Result<ImageInfo> {
        match self.inspect_image(reference).await? {
            Some(image) => Ok(image),
            None => Err(crate::core::error::Error::Engine {
                context: context.to_string(),
                message: format!("No such image: {reference}"),
            }),
        }
    }

    /// Every image carrying the label `label`.
    pub async fn images_with_label(&self, label: &str) -> Result<Vec<ListedImage>> {
        let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&HashMap::from([("label", vec![label])]))
            .build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(api_error(format!("listing images labelled {label}")))?;
        Ok(images
            .into_iter()
            .map(|i| ListedImage {
                created: i.created,
                tags: i.repo_tags,
            })
            .collect())
    }

    /// `docker save` of one image, as a tarball.
    pub async fn export_image(&self, name: &str) -> Result<Vec<u8>> {
        collect(self.docker.export_image(name), format!("exporting {name}")).await
    }

    /// Loads a `docker save`-format tarball streamed as `chunks`.
    pub async fn load_stream(&self, chunks: Chunks, context: &str) -> Result<()> {
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut stream = self
            .docker
            .import_image(options, bollard::body_try_stream(chunks), None);
        while let Some(info) = stream.next().await {
            info.map_err(api_error(context))?;
        }
        Ok(())
    }

    /// Creates the named volume with `labels` (an existing one is kept as it is).
    /// Creates the volume `name` unless it exists, and returns its identity: a value made
    /// when the volume was (a label), so a volume removed and made again under the same name
    /// has another. (Its `CreatedAt` is no such thing: the engine gives the mtime of its
    /// directory.)
    pub async fn create_volume(
        &self,
        name: &str,
        mut labels: HashMap<String, String>,
    ) -> Result<String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let identity = format!("{}/{nanos}", crate::adapters::cleanup::owner_label());
        labels.insert(VOLUME_IDENTITY_LABEL.to_string(), identity);
        self.docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map(|mut volume| {
                volume
                    .labels
                    .remove(VOLUME_IDENTITY_LABEL)
                    .unwrap_or_default()
            })
            .map_err(api_error(format!("creating the volume {name}")))
    }

    /// Removes the volume `name` (gone already is fine).
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api_error(format!("removing the volume {name}"))(e)),
        }
    }

    /// The tar the engine makes of `path` in the container `id`.
    pub async fn copy_out(&self, id: &str, path: &str, context: &str) -> Result<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        collect(
            self.docker.download_from_container(id, Some(options)),
            context.to_string(),
        )
        .await
    }

    /// Unpacks the tar streamed as `chunks` at `/` in the container `id`.
    pub async fn copy_in(&self, id: &str, chunks: Chunks, context: &str) -> Result<()> {
        // Without copyUIDGID the engine keeps the tar's owners (a builder that runs as another
        // user gets its files); with it, it would look the container's user up in its passwd.
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path("/")
            .build();
        self.docker
            .upload_to_container(id, Some(options), bollard::body_try_stream(chunks))
            .await
            .map_err(api_error(context))
    }

    /// Keeps calling `each` with the container's memory use (cgroup v1's `max_usage`, else
    /// the usage of each sample) while the engine streams its stats.
    pub async fn watch_memory(&self, id: &str, mut each: impl FnMut(u64)) {
        let options = bollard::query_parameters::StatsOptionsBuilder::default()
            .stream(true)
            .build();
        let mut stream = self.docker.stats(id, Some(options));
        while let Some(Ok(stats)) = stream.next().await {
            let memory = stats.memory_stats.unwrap_or_default();
            if let Some(seen) = memory.max_usage.or(memory.usage) {
                each(seen);
            }
        }
    }
}

/// Reads a byte stream of the engine's to its end.
async fn collect(
    mut stream: impl Stream<Item = std::result::Result<bytes::Bytes, BollardError>> + Unpin,
    context: String,
) -> Result<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&chunk.map_err(api_error(context.clone()))?);
    }
    Ok(all)
}

/// Streams what `write` writes on a blocking thread to the engine as it is written, through
/// `send` (one of [`Engine::copy_in`], [`Engine::load_stream`]): the one way a big tar goes
/// to the engine. `what` names the writing in an error; the engine's error, when both fail,
/// says more than the writer's "stopped reading".
pub async fn stream_to_engine<F, S>(
    what: &'static str,
    write: impl FnOnce(crate::adapters::fsutil::ChunkSender) -> Result<()> + Send + 'static,
    send: S,
) -> Result<()>
where
    S: FnOnce(Chunks) -> F,
    F: std::future::Future<Output = Result<()>>,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let writer = tokio::task::spawn_blocking(move || {
        write(crate::adapters::fsutil::ChunkSender::new(sender))
    });
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let sent = send(Box::pin(chunks)).await;
    let written = writer
        .await
        .map_err(|e| crate::core::error::Error::io(what)(e.into()));
    sent?;
    written?
}
