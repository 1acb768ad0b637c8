//! `--base docker://REGISTRY/IMAGE[:TAG|@DIGEST]`: a base read straight from a registry,
//! without a daemon. The manifest (an index resolved to this machine's platform), config and
//! layers are fetched into an OCI layout in the cache, blobs shared by digest and each one
//! checked against its digest, and then read by the same reader as `oci:DIR` bases, with the
//! same safety rules.

use std::path::{Path, PathBuf};

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};

use super::{host_architecture, BaseRef};
use crate::adapters::fsutil::{hex, sha256_digest};
use crate::core::error::{Error, Result};
use crate::pipeline::publish::{auth_for, client_for, push_error, RegistryOptions};

/// The tag the pulled image has in its cached layout.
pub const LAYOUT_TAG: &str = "pulled";

const ACCEPTED: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Fetches `text` into an OCI layout under `cache_dir` and returns the layout's directory.
pub async fn pull(
    base: &BaseRef,
    text: &str,
    options: &RegistryOptions,
    cache_dir: &Path,
) -> Result<PathBuf> {
    let reference = parse_reference_any(text)?;
    let puller = Puller {
        base,
        client: client_for(&reference, options)?,
        auth: auth_for(&reference, options).await?,
        blobs: cache_dir.join("blobs/sha256"),
        reference,
    };
    let (top, top_digest) = puller.manifest(&puller.reference).await?;
    if let Some(wanted) = puller.reference.digest() {
        check(base, "the manifest", &top, wanted)?;
    }
    std::fs::create_dir_all(&puller.blobs)
        .map_err(Error::io(format!("creating {}", puller.blobs.display())))?;
    let top_json: serde_json::Value = serde_json::from_slice(&top).map_err(|e| invalid(base, e))?;
    puller.keep(&top)?;
    // An index: this platform's manifest, or the list of the ones it has.
    let manifest_bytes = if top_json["manifests"].is_array() {
        puller.platform_manifest(&top_json).await?
    } else {
        top.clone()
    };
    let wanted = blob_digests(base, &manifest_bytes)?;
    puller.fetch_blobs(&wanted).await?;

    // The layout: the top-level manifest (or index) under our tag, blobs linked from the cache.
    let layout = cache_dir
        .join("registry-bases")
        .join(top_digest.trim_start_matches("sha256:"));
    if !layout.join("index.json").exists() {
        let mut all = wanted;
        all.push(sha256_digest(&top));
        all.push(sha256_digest(&manifest_bytes));
        let media_type = top_json["mediaType"]
            .as_str()
            .unwrap_or(OCI_IMAGE_MEDIA_TYPE);
        cache_layout(cache_dir, &puller.blobs, &all, &top, media_type, &layout)?;
    }
    Ok(layout)
}

/// One pull from one registry: its client and credentials, and the cache's blob directory,
/// where every blob fetched is kept by digest.
struct Puller<'a> {
    base: &'a BaseRef,
    client: oci_client::Client,
    auth: oci_client::secrets::RegistryAuth,
    blobs: PathBuf,
    reference: oci_client::Reference,
}

impl Puller<'_> {
    /// The manifest (or index) `reference` names, as the registry sent it, and its digest.
    async fn manifest(&self, reference: &oci_client::Reference) -> Result<(Vec<u8>, String)> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, ACCEPTED)
            .await
            .map_err(push_error(&self.reference, None))?;
        Ok((bytes.to_vec(), digest))
    }

    /// The manifest of this machine's platform in the index `index`, checked and kept.
    async fn platform_manifest(&self, index: &serde_json::Value) -> Result<Vec<u8>> {
        let arch = host_architecture();
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = manifests
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch);
        let Some(chosen) = chosen else {
            let platforms: Vec<String> = manifests
                .iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["platform"]["os"].as_str().unwrap_or("?"),
                        m["platform"]["architecture"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            return Err(Error::BaseNotFound {
                reference: self.base.to_string(),
                reason: format!(
                    "its index has no linux/{arch} image; it has: {}",
                    platforms.join(", ")
                ),
            });
        };
        let digest = chosen["digest"].as_str().unwrap_or_default().to_string();
        let (bytes, _) = self
            .manifest(&self.reference.clone_with_digest(digest.clone()))
            .await?;
        check(self.base, "the platform's manifest", &bytes, &digest)?;
        self.keep(&bytes)?;
        Ok(bytes)
    }

    /// Fetches each blob of `digests` the cache does not have yet, checked and kept.
    async fn fetch_blobs(&self, digests: &[String]) -> Result<()> {
        for digest in digests {
            let path = self.blobs.join(digest.trim_start_matches("sha256:"));
            if path.exists() {
                continue; // cached, and checked when it was stored
            }
            let mut bytes = Vec::new();
            let descriptor = oci_client::manifest::OciDescriptor {
                digest: digest.clone(),
                ..Default::default()
            };
            self.client
                .pull_blob(&self.reference, &descriptor, &mut bytes)
                .await
                .map_err(push_error(&self.reference, None))?;
            check(self.base, &format!("blob {digest}"), &bytes, digest)?;
            self.keep(&bytes)?;
        }
        Ok(())
    }

    /// Stores `bytes` in the cache under their digest, unless already there.
    fn keep(&self, bytes: &[u8]) -> Result<()> {
        let digest = sha256_digest(bytes);
        let path = self.blobs.join(digest.trim_start_matches("sha256:"));
        if !path.exists() {
            crate::adapters::fsutil::write_file_atomically("a pulled blob", &path, bytes)?;
        }
        Ok(())
    }
}

/// The config's and the layers' digests of an image manifest.
fn blob_digests(base: &BaseRef, manifest: &[u8]) -> Result<Vec<String>> {
    let manifest: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| invalid(base, e))?;
    let mut wanted: Vec<String> = vec![manifest["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .into()];
    wanted.extend(
        manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string)),
    );
    Ok(wanted)
}

/// Makes `layout`: an OCI layout with `top` (of `media_type`) under [`LAYOUT_TAG`] and the
/// blobs `digests` linked from the cache's `blobs`, staged in `cache_dir` and renamed in place.
fn cache_layout(
    cache_dir: &Path,
    blobs: &Path,
    digests: &[String],
    top: &[u8],
    media_type: &str,
    layout: &Path,
) -> Result<()> {
    let staging = tempfile::Builder::new()
        .prefix(&crate::adapters::cleanup::temp_prefix("base"))
        .tempdir_in(cache_dir)
        .map_err(Error::io("staging a pulled base"))?;
    let dir = staging.path();
    let staged_blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&staged_blobs).map_err(Error::io("staging a pulled base"))?;
    for digest in digests {
        let name = digest.trim_start_matches("sha256:");
        let from = blobs.join(name);
        let to = staged_blobs.join(name);
        if !to.exists() {
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(drop))
                .map_err(Error::io(format!("staging {}", from.display())))?;
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": sha256_digest(top),
            "size": top.len(),
            "annotations": {"org.opencontainers.image.ref.name": LAYOUT_TAG},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string())
        .and_then(|_| std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#))
        .map_err(Error::io("staging a pulled base"))?;
    if let Some(parent) = layout.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("caching a pulled base"))?;
    }
    // Another run may have cached the same one meanwhile: theirs is as good.
    if std::fs::rename(staging.keep(), layout).is_err() && !layout.join("index.json").exists() {
        return Err(Error::Io {
            context: format!("caching a pulled base in {}", layout.display()),
            source: std::io::Error::other("rename failed"),
        });
    }
    Ok(())
}

/// A reference as a registry names it (`docker://` already stripped), tags or digests.
fn parse_reference_any(text: &str) -> Result<oci_client::Reference> {
    text.parse().map_err(|e| Error::InvalidInput {
        what: "base image",
        value: format!("docker://{text}"),
        reason: format!("{e}; expected docker://REGISTRY/IMAGE[:TAG|@DIGEST]"),
    })
}

fn check(base: &BaseRef, what: &str, bytes: &[u8], digest: &str) -> Result<()> {
    let actual = format!(
        "sha256:{}",
        hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
    );
    if actual != digest {
        return Err(Error::InvalidBase {
            reason: format!("{base}: the registry sent {what} with digest {actual}, not {digest}"),
        });
    }
    Ok(())
}

fn invalid(base: &BaseRef, e: serde_json::Error) -> Error {
    Error::InvalidBase {
        reason: format!("{base}: the registry's manifest is not valid JSON: {e}"),
    }
}
