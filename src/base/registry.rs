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
use crate::error::{Error, Result};
use crate::fsutil::{hex, sha256_digest};
use crate::publish::{auth_for, client_for, push_error, RegistryOptions};

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
    let client = client_for(&reference, options)?;
    let auth = auth_for(&reference, options).await?;
    let fail = push_error(&reference, None);
    let (top, top_digest) = client
        .pull_manifest_raw(&reference, &auth, ACCEPTED)
        .await
        .map_err(&fail)?;
    if let Some(wanted) = reference.digest() {
        check(base, "the manifest", &top, wanted)?;
    }
    let blobs = cache_dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(Error::io(format!("creating {}", blobs.display())))?;
    let keep = |bytes: &[u8]| -> Result<String> {
        let digest = sha256_digest(bytes);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        if !path.exists() {
            crate::fsutil::write_file_atomically("a pulled blob", &path, bytes)?;
        }
        Ok(digest)
    };
    let top_json: serde_json::Value = serde_json::from_slice(&top).map_err(|e| invalid(base, e))?;
    let mut manifest_bytes = top.to_vec();
    keep(&top)?;
    // An index: this platform's manifest, or the list of the ones it has.
    if top_json["manifests"].is_array() {
        let arch = host_architecture();
        let manifests = top_json["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
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
                reference: base.to_string(),
                reason: format!(
                    "its index has no linux/{arch} image; it has: {}",
                    platforms.join(", ")
                ),
            });
        };
        let digest = chosen["digest"].as_str().unwrap_or_default().to_string();
        let (bytes, _) = client
            .pull_manifest_raw(
                &reference.clone_with_digest(digest.clone()),
                &auth,
                ACCEPTED,
            )
            .await
            .map_err(&fail)?;
        check(base, "the platform's manifest", &bytes, &digest)?;
        keep(&bytes)?;
        manifest_bytes = bytes.to_vec();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).map_err(|e| invalid(base, e))?;
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
    for digest in &wanted {
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        if path.exists() {
            continue; // cached, and checked when it was stored
        }
        let mut bytes = Vec::new();
        let descriptor = oci_client::manifest::OciDescriptor {
            digest: digest.clone(),
            ..Default::default()
        };
        client
            .pull_blob(&reference, &descriptor, &mut bytes)
            .await
            .map_err(&fail)?;
        check(base, &format!("blob {digest}"), &bytes, digest)?;
        keep(&bytes)?;
    }

    // The layout: the top-level manifest (or index) under our tag, blobs linked from the cache.
    let layout = cache_dir
        .join("registry-bases")
        .join(top_digest.trim_start_matches("sha256:"));
    if !layout.join("index.json").exists() {
        let staging = tempfile::Builder::new()
            .prefix(&crate::cleanup::temp_prefix("base"))
            .tempdir_in(cache_dir)
            .map_err(Error::io("staging a pulled base"))?;
        let dir = staging.path();
        let staged_blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&staged_blobs).map_err(Error::io("staging a pulled base"))?;
        let mut all = wanted.clone();
        all.push(sha256_digest(&top));
        all.push(sha256_digest(&manifest_bytes));
        for digest in all {
            let name = digest.trim_start_matches("sha256:");
            let from = blobs.join(name);
            let to = staged_blobs.join(name);
            if !to.exists() {
                std::fs::hard_link(&from, &to)
                    .or_else(|_| std::fs::copy(&from, &to).map(drop))
                    .map_err(Error::io(format!("staging {}", from.display())))?;
            }
        }
        let media_type = top_json["mediaType"]
            .as_str()
            .unwrap_or(OCI_IMAGE_MEDIA_TYPE)
            .to_string();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": media_type,
                "digest": sha256_digest(&top),
                "size": top.len(),
                "annotations": {"org.opencontainers.image.ref.name": LAYOUT_TAG},
            }],
        });
        std::fs::write(dir.join("index.json"), index.to_string())
            .and_then(|_| {
                std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            })
            .map_err(Error::io("staging a pulled base"))?;
        if let Some(parent) = layout.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("caching a pulled base"))?;
        }
        // Another run may have cached the same one meanwhile: theirs is as good.
        if std::fs::rename(staging.keep(), &layout).is_err() && !layout.join("index.json").exists()
        {
            return Err(Error::Io {
                context: format!("caching a pulled base in {}", layout.display()),
                source: std::io::Error::other("rename failed"),
            });
        }
    }
    Ok(layout)
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
