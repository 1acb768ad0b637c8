//! Base images: `scratch` (nothing), an image in the engine, an OCI layout directory, or a
//! `docker save` archive, all read into one [`Base`] whose layers go under ours byte for byte
//! (same blobs, same digests, no recompression).

pub mod fs;
mod registry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::adapters::engine::Engine;
use crate::adapters::fsutil::blocking;
use crate::adapters::fsutil::sha256_digest;
use crate::core::error::{Error, Result};
use crate::core::event::Events;
use crate::pipeline::oci::image::Underlay;
use crate::pipeline::oci::layer::Layer;
use crate::pipeline::publish::RegistryOptions;
use fs::BaseFs;
pub use fs::Limits;

/// Where a base image comes from, as `--base` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// No base: the image holds only our layers.
    Scratch,
    /// An image in the engine (pulled when missing and pullable).
    Engine(String),
    /// `oci:DIR[:TAG]`: an OCI image layout on disk.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// Which image of the index (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// `docker-archive:FILE`: a `docker save` tarball.
    DockerArchive(PathBuf),
    /// `docker://REGISTRY/IMAGE[:TAG|@DIGEST]`: an image in a registry, read without a daemon.
    Registry(String),
}

impl std::str::FromStr for BaseRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidInput {
            what: "base image",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "scratch" {
            return Ok(BaseRef::Scratch);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = crate::pipeline::oci::layout::dir_and_tag(rest)
                .ok_or_else(|| invalid("expected oci:DIR[:TAG]"))?;
            return Ok(BaseRef::OciLayout {
                dir: dir.into(),
                tag,
            });
        }
        if let Some(reference) = s.strip_prefix("docker://") {
            reference
                .parse::<oci_spec::distribution::Reference>()
                .map_err(|e| {
                    invalid(&format!(
                        "{e}; expected docker://REGISTRY/IMAGE[:TAG|@DIGEST]"
                    ))
                })?;
            return Ok(BaseRef::Registry(reference.to_string()));
        }
        if let Some(file) = s.strip_prefix("docker-archive:") {
            if file.is_empty() {
                return Err(invalid("expected docker-archive:FILE"));
            }
            return Ok(BaseRef::DockerArchive(file.into()));
        }
        if s.contains(':') && s.split(':').next().is_some_and(|p| !p.contains(['/', '.'])) {
            let transport = s.split(':').next().unwrap_or_default();
            if s.split_once(':')
                .is_some_and(|(_, rest)| rest.contains('/'))
            {
                return Err(invalid(&format!(
                    "unknown transport `{transport}:`; use scratch, an image name, oci:DIR[:TAG] or docker-archive:FILE"
                )));
            }
        }
        s.parse::<oci_spec::distribution::Reference>()
            .map_err(|e| {
                invalid(&format!(
                    "{e}; use scratch, an image name (alpine:3.20), oci:DIR[:TAG] or docker-archive:FILE"
                ))
            })?;
        // A name that starts with a registry host (`registry.example.com/app`,
        // `127.0.0.1:5000/app`, `localhost/app`) is read from that registry, without the
        // engine, as `docker://` is; a bare name (`alpine:3.20`) is the engine's.
        let first = s.split('/').next().unwrap_or_default();
        if s.contains('/') && (first.contains(['.', ':']) || first == "localhost") {
            return Ok(BaseRef::Registry(s.to_string()));
        }
        Ok(BaseRef::Engine(s.to_string()))
    }
}

crate::core::text::serde_as_text!(BaseRef);

impl std::fmt::Display for BaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseRef::Scratch => f.write_str("scratch"),
            BaseRef::Engine(name) => f.write_str(name),
            BaseRef::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            BaseRef::OciLayout {
                dir,
                tag: Some(tag),
            } => write!(f, "oci:{}:{tag}", dir.display()),
            BaseRef::DockerArchive(file) => write!(f, "docker-archive:{}", file.display()),
            BaseRef::Registry(reference) => write!(f, "docker://{reference}"),
        }
    }
}

/// A base image read into memory: config, layers, and a view of its filesystem.
#[derive(Debug, Clone)]
pub struct Base {
    /// How the user named it.
    pub reference: String,
    /// Its manifest digest when known (OCI layouts), else its image ID (config digest).
    pub digest: String,
    /// Its config.
    pub config: ImageConfiguration,
    /// Its layers, bottom first, as stored.
    pub layers: Vec<Layer>,
    /// Its merged filesystem.
    pub fs: BaseFs,
}

impl Base {
    /// Bytes of its layers as stored.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(Layer::size).sum()
    }

    /// Its OCI architecture (`amd64`).
    pub fn architecture(&self) -> String {
        self.config.architecture().to_string()
    }

    /// What assembly puts under our layers.
    pub fn underlay(&self) -> Underlay<'_> {
        Underlay {
            layers: &self.layers,
            config: &self.config,
            files: &self.fs,
        }
    }
}

fn not_found(reference: &BaseRef, reason: impl std::fmt::Display) -> Error {
    Error::BaseNotFound {
        reference: reference.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the base `reference` names; `None` for scratch. Images missing from the engine are
/// pulled when they can be; registry bases are fetched into `cache_dir` with `registry`'s
/// credentials. Each layer is read within `limits`.
pub async fn load(
    reference: &BaseRef,
    engine: Option<&Engine>,
    registry: &RegistryOptions,
    cache_dir: &Path,
    limits: Limits,
    events: &Events,
) -> Result<Option<Base>> {
    let owned = reference.clone();
    let base = match reference {
        BaseRef::Scratch => return Ok(None),
        BaseRef::OciLayout { dir, tag } => {
            let (dir, tag) = (dir.clone(), tag.clone());
            blocking(move || read_oci_layout(&owned, &dir, tag.as_deref(), &limits)).await?
        }
        BaseRef::Registry(name) => {
            let layout = registry::pull(reference, name, registry, cache_dir).await?;
            blocking(move || read_oci_layout(&owned, &layout, Some(registry::LAYOUT_TAG), &limits))
                .await?
        }
        BaseRef::DockerArchive(file) => {
            let file = file.clone();
            blocking(move || {
                let bytes = std::fs::read(&file).map_err(|e| not_found(&owned, e))?;
                read_docker_archive(&owned, &bytes, &limits)
            })
            .await?
        }
        BaseRef::Engine(name) => {
            let engine = engine.ok_or_else(|| {
                not_found(
                    reference,
                    "no Docker engine answers; use oci:DIR or docker-archive:FILE without one",
                )
            })?;
            if engine.image_id(name).await?.is_none() {
                engine.pull(name, events).await.map_err(|e| {
                    not_found(
                        reference,
                        format!("not in the engine, and the pull failed: {e}"),
                    )
                })?;
            }
            let bytes = engine.export_image(name).await?;
            blocking(move || read_docker_archive(&owned, &bytes, &limits)).await?
        }
    };
    Ok(Some(base))
}

/// Checks a blob against its descriptor's digest.
fn verified(reference: &BaseRef, what: &str, bytes: Vec<u8>, digest: &str) -> Result<Vec<u8>> {
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(Error::InvalidBase {
            reason: format!("{reference}: {what} should have digest {digest}, has {actual}"),
        });
    }
    Ok(bytes)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    reference: &BaseRef,
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidBase {
        reason: format!("{reference}: {what} is not valid: {e}"),
    })
}

/// The OCI architecture name of the machine we run on.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Reads the image `tag` names (or the layout's only image) from the OCI layout in `dir`,
/// every blob checked against its digest.
fn read_oci_layout(
    reference: &BaseRef,
    dir: &Path,
    tag: Option<&str>,
    limits: &Limits,
) -> Result<Base> {
    let layout = OciLayout { reference, dir };
    let index_bytes = std::fs::read(dir.join("index.json")).map_err(|e| {
        not_found(
            reference,
            format!("{}: {e}", dir.join("index.json").display()),
        )
    })?;
    let index: ImageIndex = parse_json(reference, "index.json", &index_bytes)?;
    let mut descriptor = chosen_image(reference, &index, tag)?;
    // A multi-platform index: take the image for this machine's architecture.
    if *descriptor.media_type() == MediaType::ImageIndex {
        descriptor = layout.platform_image(&descriptor)?;
    }
    let manifest_digest = descriptor.digest().to_string();
    let manifest: ImageManifest =
        parse_json(reference, "the manifest", &layout.blob(&manifest_digest)?)?;
    let config_bytes = layout.blob(manifest.config().digest().as_ref())?;
    let config: ImageConfiguration = parse_json(reference, "the config", &config_bytes)?;
    let layers = layout.layers(&manifest, &config)?;
    finish(reference, manifest_digest, config, layers, limits)
}

/// The descriptor in a layout's `index.json` of the image to build on: the one tagged `tag`,
/// else the only image there is.
fn chosen_image(reference: &BaseRef, index: &ImageIndex, tag: Option<&str>) -> Result<Descriptor> {
    let names = |m: &Descriptor| {
        m.annotations()
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
    };
    match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .find(|m| names(m).as_deref() == Some(tag))
            .cloned()
            .ok_or_else(|| {
                let known: Vec<String> = index.manifests().iter().filter_map(names).collect();
                not_found(
                    reference,
                    format!(
                        "no image tagged {tag}; the layout has: {}",
                        known.join(", ")
                    ),
                )
            }),
        // Artifacts attached to an image (an SBOM referrer) are not images to build on.
        None => match index
            .manifests()
            .iter()
            .filter(|m| m.artifact_type().is_none())
            .cloned()
            .collect::<Vec<_>>()
            .as_slice()
        {
            [only] => Ok(only.clone()),
            many => {
                let known: Vec<String> = many.iter().filter_map(names).collect();
                Err(not_found(
                    reference,
                    format!(
                        "the layout holds {} images; name one as oci:DIR:TAG ({})",
                        many.len(),
                        known.join(", ")
                    ),
                ))
            }
        },
    }
}

/// An OCI layout a base is read from.
struct OciLayout<'a> {
    reference: &'a BaseRef,
    dir: &'a Path,
}

impl OciLayout<'_> {
    /// The blob `digest`, checked against it.
    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.dir.join("blobs").join(digest.replacen(':', "/", 1));
        let bytes = std::fs::read(&path)
            .map_err(|e| not_found(self.reference, format!("{}: {e}", path.display())))?;
        verified(
            self.reference,
            &format!("blob {}", path.display()),
            bytes,
            digest,
        )
    }

    /// The descriptor of this machine's image in the nested index `index`.
    fn platform_image(&self, index: &Descriptor) -> Result<Descriptor> {
        let nested: ImageIndex = parse_json(
            self.reference,
            "a nested index",
            &self.blob(index.digest().as_ref())?,
        )?;
        nested
            .manifests()
            .iter()
            .find(|m| {
                m.platform().as_ref().is_some_and(|p| {
                    p.architecture().to_string() == host_architecture()
                        && p.os().to_string() == "linux"
                })
            })
            .cloned()
            .ok_or_else(|| {
                not_found(
                    self.reference,
                    format!("no linux/{} image in its index", host_architecture()),
                )
            })
    }

    /// The manifest's layers, read and checked, each with its diff id from `config`.
    fn layers(&self, manifest: &ImageManifest, config: &ImageConfiguration) -> Result<Vec<Layer>> {
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::InvalidBase {
                reason: format!(
                    "{}: {} layers but {} diff_ids",
                    self.reference,
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (descriptor, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let digest = descriptor.digest().to_string();
            layers.push(Layer {
                blob: self.blob(&digest)?,
                digest,
                diff_id,
                uncompressed_size: 0,
                media_type: descriptor.media_type().clone(),
            });
        }
        Ok(layers)
    }
}

/// Said of a file that is not a tar archive. The tar reader's own message quotes the bytes it
/// choked on, which may be any file of the user's: never shown.
const NOT_A_TAR: &str = "not a tar archive (a docker-archive: base is what `docker save` writes)";

fn read_docker_archive(reference: &BaseRef, archive: &[u8], limits: &Limits) -> Result<Base> {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|_| not_found(reference, NOT_A_TAR))?;
    for entry in entries {
        let mut entry = entry.map_err(|_| not_found(reference, NOT_A_TAR))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| not_found(reference, e))?;
        files.insert(path, bytes);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let manifest = files
        .get("manifest.json")
        .ok_or_else(|| not_found(reference, "no manifest.json: not a docker save archive"))?;
    let entries: Vec<Entry> = parse_json(reference, "manifest.json", manifest)?;
    let entry = entries
        .first()
        .ok_or_else(|| not_found(reference, "manifest.json lists no image"))?;
    let file = |path: &str| {
        files.get(path).cloned().ok_or_else(|| Error::InvalidBase {
            reason: format!("{reference}: {path} is missing from the archive"),
        })
    };
    let config_bytes = file(&entry.config)?;
    let config: ImageConfiguration = parse_json(reference, "the config", &config_bytes)?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::InvalidBase {
            reason: format!(
                "{reference}: {} layers but {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let blob = file(path)?;
        // `docker save` stores layers as plain tars: their digest is their diff_id.
        let media_type = if blob.starts_with(&[0x1f, 0x8b]) {
            MediaType::ImageLayerGzip
        } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            MediaType::ImageLayerZstd
        } else {
            MediaType::ImageLayer
        };
        layers.push(Layer {
            digest: sha256_digest(&blob),
            blob,
            diff_id,
            uncompressed_size: 0,
            media_type,
        });
    }
    finish(
        reference,
        sha256_digest(&config_bytes),
        config,
        layers,
        limits,
    )
}

/// Reads the layers' filesystem (checking each plain layer against its diff_id) and makes
/// the [`Base`].
fn finish(
    reference: &BaseRef,
    digest: String,
    config: ImageConfiguration,
    mut layers: Vec<Layer>,
    limits: &Limits,
) -> Result<Base> {
    let mut fs = BaseFs::default();
    for (index, layer) in layers.iter_mut().enumerate() {
        if layer.media_type == MediaType::ImageLayer && layer.digest != layer.diff_id {
            return Err(Error::InvalidBase {
                reason: format!("{reference}: layer {index} does not match its diff_id"),
            });
        }
        layer.uncompressed_size = fs.apply_layer(index, &layer.blob, limits)?;
    }
    Ok(Base {
        reference: reference.to_string(),
        digest,
        config,
        layers,
        fs,
    })
}

#[cfg(test)]
mod tests {
    use super::BaseRef;

    #[test]
    fn base_references_parse() {
        assert_eq!("scratch".parse::<BaseRef>().unwrap(), BaseRef::Scratch);
        assert_eq!(
            "alpine:3.20".parse::<BaseRef>().unwrap(),
            BaseRef::Engine("alpine:3.20".into())
        );
        assert_eq!(
            "oci:./layouts/alpine:3.20".parse::<BaseRef>().unwrap(),
            BaseRef::OciLayout {
                dir: "./layouts/alpine".into(),
                tag: Some("3.20".into())
            }
        );
        assert_eq!(
            "oci:/tmp/layout".parse::<BaseRef>().unwrap(),
            BaseRef::OciLayout {
                dir: "/tmp/layout".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:base.tar".parse::<BaseRef>().unwrap(),
            BaseRef::DockerArchive("base.tar".into())
        );
        for registry in ["127.0.0.1:5000/base:1", "registry.example.com/team/base@sha256:0000000000000000000000000000000000000000000000000000000000000000", "localhost/base"] {
            assert_eq!(
                registry.parse::<BaseRef>().unwrap(),
                BaseRef::Registry(registry.into()),
                "{registry}"
            );
        }
        assert_eq!(
            "docker://127.0.0.1:5000/base:1".parse::<BaseRef>().unwrap(),
            BaseRef::Registry("127.0.0.1:5000/base:1".into())
        );
        assert_eq!(
            "ruchy-image-test/busybox:base".parse::<BaseRef>().unwrap(),
            BaseRef::Engine("ruchy-image-test/busybox:base".into())
        );
        for bad in [
            "Alpine",
            "oci:",
            "docker-archive:",
            "ftp://x/y",
            "registry:/x",
        ] {
            assert!(bad.parse::<BaseRef>().is_err(), "{bad}");
        }
    }
}
