//! The artifact registry (`serve --artifacts REGISTRY/REPO`): where every worker pushes the
//! images of the builds it finishes (through the library's own registry publisher, SBOM
//! referrer included) and where any worker reads them back for a download, so no image lives
//! only on the worker that built it. A download is the same docker-load/OCI archive the data
//! dir would hold, written as a tar stream whose blobs come straight from the registry: only
//! manifests and configs are held in memory, never a layer.

pub mod http;

use std::collections::HashMap;

use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Arch, DescriptorBuilder, ImageIndexBuilder, MediaType, Os, PlatformBuilder};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::core::error::{Error, Result};
use crate::core::preset::Preset;
use crate::pipeline::publish::{
    auth_for, client_for, parse_reference, push_error, RegistryOptions,
};

/// The repository builds' images go to, and how to reach its registry.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `REGISTRY/REPOSITORY`, without a tag.
    pub repository: String,
    /// Credentials (else Docker's config and credential helpers), CAs, plain-HTTP hosts.
    pub registry: RegistryOptions,
}

impl Artifacts {
    /// `text` as a repository to keep images in: a registry host and a path, no tag or digest
    /// (each build's images get tags of their own).
    pub fn new(text: &str, registry: RegistryOptions) -> Result<Artifacts> {
        Ok(Artifacts {
            repository: crate::pipeline::publish::parse_repository(text)?,
            registry,
        })
    }

    /// The registry's `host[:port]`.
    pub fn registry_host(&self) -> &str {
        self.repository.split('/').next().unwrap_or_default()
    }

    /// Where one preset of one build is pushed: `REPO:<build id>-<preset>`.
    pub fn reference_for(&self, build: &str, preset: Preset) -> String {
        format!("{}:{build}-{preset}", self.repository)
    }

    /// Whether this worker can push there (see [`crate::pipeline::publish::check_push`]).
    pub async fn check(&self) -> Result<()> {
        crate::pipeline::publish::check_push(&self.repository, &self.registry).await
    }

    /// The registry's HTTP API, with this repository's credentials (for what oci-client has
    /// no call for: deletes).
    pub async fn http(&self) -> Result<http::RegistryHttp> {
        let reference = parse_reference(&self.repository)?;
        let auth = auth_for(&reference, &self.registry).await?;
        http::RegistryHttp::new(self.registry_host(), &self.registry, auth)
    }

    /// The archive of the image (or index) at `stored` (`REPO@sha256:…`), named `name` inside,
    /// its entries dated `mtime`: the same files the data dir's archive has (layout, docker
    /// `manifest.json`, the images' referrers), its length, and a stream of its bytes.
    pub async fn archive(&self, stored: &str, name: &str, mtime: u64) -> Result<Download> {
        let reference: Reference = stored.parse().map_err(|e| Error::InvalidInput {
            what: "stored image",
            value: stored.to_string(),
            reason: format!("{e}"),
        })?;
        let client = client_for(&reference, &self.registry)?;
        let auth = auth_for(&reference, &self.registry).await?;
        let fail = push_error(&reference, user_of(&auth));
        let accepted = [OCI_IMAGE_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE];
        let (root, digest) = client
            .pull_manifest_raw(&reference, &auth, &accepted)
            .await
            .map_err(&fail)?;
        let root = root.to_vec();
        let root_json = json(&root, "the manifest")?;
        let is_index = root_json["manifests"].is_array();
        // The images: the root, or the index's ones.
        let mut images = Vec::new();
        if is_index {
            for entry in root_json["manifests"].as_array().into_iter().flatten() {
                let at = reference.clone_with_digest(text(&entry["digest"]));
                let (bytes, digest) = client
                    .pull_manifest_raw(&at, &auth, &accepted)
                    .await
                    .map_err(&fail)?;
                images.push((digest, bytes.to_vec()));
            }
        } else {
            images.push((digest.clone(), root.clone()));
        }

        let mut files: Vec<(String, Entry)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        if is_index {
            files.push((blob_path(&digest), Entry::Inline(root.clone())));
        }
        let mut configs = Vec::new();
        for (digest, manifest) in &images {
            files.push((blob_path(digest), Entry::Inline(manifest.clone())));
        }
        for (_, manifest) in &images {
            let parsed = json(manifest, "a manifest")?;
            let config = text(&parsed["config"]["digest"]);
            let bytes = pull_small(&client, &reference, &config, &fail).await?;
            let settings = json(&bytes, "an image config")?;
            if seen.insert(config.clone()) {
                files.push((blob_path(&config), Entry::Inline(bytes)));
            }
            let layers: Vec<(String, u64)> = parsed["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| (text(&l["digest"]), l["size"].as_u64().unwrap_or(0)))
                .collect();
            for (layer, size) in &layers {
                if seen.insert(layer.clone()) {
                    files.push((blob_path(layer), Entry::Remote(layer.clone(), *size)));
                }
            }
            configs.push((config, settings, layers));
        }
        // docker-archive's `manifest.json` names the image an engine loads: this machine's
        // platform in an index (the one a local build loads), else the first.
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let loaded = configs
            .iter()
            .position(|(_, settings, _)| settings["architecture"] == arch)
            .unwrap_or(0);
        let (config, settings, layers) = &configs[loaded];
        let docker = serde_json::to_vec(&[DockerManifest {
            config: blob_path(config),
            repo_tags: [name],
            layers: layers.iter().map(|(l, _)| blob_path(l)).collect(),
        }])
        .map_err(|source| Error::Json {
            what: "manifest.json",
            source,
        })?;
        let index = layout_index(is_index, &digest, root.len(), settings, name)?;
        files.push(("oci-layout".into(), Entry::Inline(OCI_LAYOUT.to_vec())));
        files.push(("index.json".into(), Entry::Inline(index)));
        files.push(("manifest.json".into(), Entry::Inline(docker)));
        files.sort_by(|a, b| a.0.cmp(&b.0));

        // The referrers (the SBOM) of each image, as the archive publisher adds them.
        for (subject, _) in &images {
            let tag = format!(
                "{}/{}:sha256-{}",
                reference.registry(),
                reference.repository(),
                subject.trim_start_matches("sha256:")
            );
            let Ok(tag) = tag.parse::<Reference>() else {
                continue;
            };
            // No referrer yet is no referrer: the image was pushed without an SBOM.
            let Ok((list, _)) = client
                .pull_manifest_raw(&tag, &auth, &[OCI_IMAGE_INDEX_MEDIA_TYPE])
                .await
            else {
                continue;
            };
            for entry in json(&list, "the referrers' index")?["manifests"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let at = reference.clone_with_digest(text(&entry["digest"]));
                let (manifest, digest) = client
                    .pull_manifest_raw(&at, &auth, &accepted)
                    .await
                    .map_err(&fail)?;
                let parsed = json(&manifest, "a referrer's manifest")?;
                let parts = std::iter::once(&parsed["config"])
                    .chain(parsed["layers"].as_array().into_iter().flatten());
                for part in parts {
                    let blob = text(&part["digest"]);
                    if seen.insert(blob.clone()) {
                        let size = part["size"].as_u64().unwrap_or(0);
                        files.push((blob_path(&blob), Entry::Remote(blob, size)));
                    }
                }
                if seen.insert(digest.clone()) {
                    files.push((blob_path(&digest), Entry::Inline(manifest.to_vec())));
                }
            }
        }

        let length = 2 * BLOCK
            + files
                .iter()
                .map(|(_, e)| BLOCK + e.size().div_ceil(BLOCK) * BLOCK)
                .sum::<u64>()
            + 2 * BLOCK;
        let (reader, writer) = tokio::io::duplex(256 << 10);
        let location = format!(
            "{}/{}@{digest}",
            reference.registry(),
            reference.repository()
        );
        let task = tokio::spawn(write_tar(client, reference, files, mtime, writer));
        Ok(Download {
            length,
            digest,
            location,
            body: reader,
            task,
        })
    }
}

/// An archive on its way out of the registry.
pub struct Download {
    /// Its length in bytes.
    pub length: u64,
    /// The image's (or index's) manifest digest.
    pub digest: String,
    /// `REGISTRY/REPO@digest`.
    pub location: String,
    /// Its bytes, as they come.
    pub body: tokio::io::DuplexStream,
    /// What writes them: its error, if the registry fails half-way (the body is then cut
    /// short of its length, which a client sees as a broken download).
    pub task: tokio::task::JoinHandle<Result<()>>,
}

const BLOCK: u64 = 512;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What an archive entry holds: bytes at hand, or a registry blob of a known size.
enum Entry {
    Inline(Vec<u8>),
    Remote(String, u64),
}

impl Entry {
    fn size(&self) -> u64 {
        match self {
            Entry::Inline(bytes) => bytes.len() as u64,
            Entry::Remote(_, size) => *size,
        }
    }
}

/// `manifest.json` of the docker-archive format, as `oci::archive` writes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest<'a> {
    config: String,
    repo_tags: [&'a str; 1],
    layers: Vec<String>,
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidInput {
        what: "stored image",
        value: what.to_string(),
        reason: format!("the registry sent {what} that is not JSON: {e}"),
    })
}

fn user_of(auth: &RegistryAuth) -> Option<String> {
    match auth {
        RegistryAuth::Basic(user, _) => Some(user.clone()),
        _ => None,
    }
}

/// A small blob (a config), whole, checked against its digest by the client.
async fn pull_small(
    client: &Client,
    reference: &Reference,
    digest: &str,
    fail: &impl Fn(oci_client::errors::OciDistributionError) -> Error,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let descriptor = oci_client::manifest::OciDescriptor {
        digest: digest.to_string(),
        ..Default::default()
    };
    client
        .pull_blob(reference, &descriptor, &mut bytes)
        .await
        .map_err(fail)?;
    Ok(bytes)
}

/// `index.json` of the archive's layout: one entry, the image (with its platform) or the
/// index, named `name`, as `oci::layout::files` writes it.
fn layout_index(
    is_index: bool,
    digest: &str,
    size: usize,
    settings: &serde_json::Value,
    name: &str,
) -> Result<Vec<u8>> {
    let image_ref: crate::pipeline::oci::ImageRef = name.parse()?;
    let annotations: HashMap<String, String> = [
        (
            "org.opencontainers.image.ref.name".to_string(),
            image_ref.tag.clone(),
        ),
        ("io.containerd.image.name".to_string(), image_ref.full),
    ]
    .into();
    let bad = |e: oci_spec::OciSpecError| Error::InvalidInput {
        what: "stored image",
        value: digest.to_string(),
        reason: e.to_string(),
    };
    let mut descriptor = DescriptorBuilder::default()
        .media_type(match is_index {
            true => MediaType::ImageIndex,
            false => MediaType::ImageManifest,
        })
        .digest(digest.parse::<oci_spec::image::Digest>().map_err(bad)?)
        .size(size as u64)
        .build()
        .map_err(bad)?;
    if !is_index {
        descriptor.set_platform(Some(
            PlatformBuilder::default()
                .architecture(Arch::from(
                    settings["architecture"].as_str().unwrap_or_default(),
                ))
                .os(Os::Linux)
                .build()
                .map_err(bad)?,
        ));
    }
    descriptor.set_annotations(Some(annotations));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()
        .map_err(bad)?;
    crate::pipeline::oci::canonical_json(&index).map_err(|source| Error::Json {
        what: "the OCI index",
        source,
    })
}

/// Writes the archive to `out`: the two directories, every entry (a registry blob streamed
/// a chunk at a time), the closing zero blocks.
async fn write_tar(
    client: Client,
    reference: Reference,
    files: Vec<(String, Entry)>,
    mtime: u64,
    mut out: tokio::io::DuplexStream,
) -> Result<()> {
    use futures_util::StreamExt;
    let registry = reference.resolve_registry().to_string();
    let io = |e: std::io::Error| Error::Registry {
        registry: registry.clone(),
        message: format!("sending an image archive: {e}"),
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let header = header(tar::EntryType::Directory, 0o755, 0, mtime, dir)?;
        out.write_all(&header).await.map_err(io)?;
    }
    for (path, entry) in files {
        let size = entry.size();
        let header = header(tar::EntryType::Regular, 0o644, size, mtime, &path)?;
        out.write_all(&header).await.map_err(io)?;
        match entry {
            Entry::Inline(bytes) => out.write_all(&bytes).await.map_err(io)?,
            Entry::Remote(digest, size) => {
                let descriptor = oci_client::manifest::OciDescriptor {
                    digest: digest.clone(),
                    size: size as i64,
                    ..Default::default()
                };
                let mut stream = client
                    .pull_blob_stream(&reference, &descriptor)
                    .await
                    .map_err(push_error(&reference, None))?;
                let mut sent = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(io)?;
                    sent += chunk.len() as u64;
                    out.write_all(&chunk).await.map_err(io)?;
                }
                if sent != size {
                    return Err(Error::Registry {
                        registry,
                        message: format!("blob {digest} is {sent} bytes, its manifest says {size}"),
                    });
                }
            }
        }
        let pad = size.div_ceil(BLOCK) * BLOCK - size;
        out.write_all(&vec![0; pad as usize]).await.map_err(io)?;
    }
    out.write_all(&[0; 2 * BLOCK as usize]).await.map_err(io)?;
    out.shutdown().await.map_err(io)
}

/// One entry's header, as `tar::Builder` writes it for `oci::archive`.
fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64, path: &str) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header
        .set_path(path)
        .map_err(Error::io(format!("naming {path} in an image archive")))?;
    header.set_cksum();
    Ok(header.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_names_its_registry_and_no_tag() {
        let ok = Artifacts::new("127.0.0.1:5000/team/builds", RegistryOptions::default()).unwrap();
        assert_eq!(ok.registry_host(), "127.0.0.1:5000");
        assert_eq!(
            ok.reference_for("b1", Preset::Size),
            "127.0.0.1:5000/team/builds:b1-size"
        );
        for bad in [
            "builds",
            "team/builds",
            "127.0.0.1:5000/builds:1",
            "127.0.0.1:5000/builds@sha256:00",
            "127.0.0.1:5000/Builds",
        ] {
            let error = Artifacts::new(bad, RegistryOptions::default()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}: {error}");
            assert!(error.to_string().contains("REGISTRY/REPOSITORY"), "{error}");
        }
    }

    #[test]
    fn headers_are_the_ones_the_archive_writer_makes() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut expected = tar::Header::new_gnu();
        expected.set_entry_type(tar::EntryType::Regular);
        expected.set_mode(0o644);
        expected.set_size(3);
        expected.set_mtime(7);
        builder
            .append_data(&mut expected, "blobs/sha256/ab", &b"abc"[..])
            .unwrap();
        let written = builder.into_inner().unwrap();
        let ours = header(tar::EntryType::Regular, 0o644, 3, 7, "blobs/sha256/ab").unwrap();
        assert_eq!(&written[..512], &ours[..]);
    }
}
