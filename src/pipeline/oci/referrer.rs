//! OCI 1.1 referrers: an artifact (the SBOM) attached to an image by a manifest whose
//! `subject` is the image's manifest. Registries without the referrers API (distribution 2.8)
//! find them through the spec's fallback tag, `sha256-<hex of the subject>`, an index listing
//! the referrers. A layout holds the artifact's blobs but keeps it out of `index.json`, so each
//! ref has one entry there, the form skopeo and umoci read by default; [`in_layout`] finds it
//! through its `subject`, as the spec's referrers lookup does.

use serde_json::json;

use super::image::Image;
use crate::adapters::fsutil::sha256_digest;
use crate::core::error::{Error, Result};

/// The empty config artifacts carry (`{}`), as the image spec defines it.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
/// An OCI image manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index's media type.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// An artifact ready to attach: its manifest and the blobs it names.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// What it is (`application/vnd.cyclonedx+json`).
    pub artifact_type: String,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// `sha256:` of the manifest.
    pub digest: String,
    /// The blobs: (digest, bytes) of the empty config and the artifact.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The subject's manifest digest.
    pub subject: String,
}

impl Referrer {
    /// `artifact` (of `media_type`) attached to `subject`, created at `epoch`.
    pub fn new(subject: &Image, media_type: &str, artifact: &[u8], epoch: u64) -> Result<Referrer> {
        Referrer::annotated(subject, media_type, artifact, epoch, &[])
    }

    /// [`Referrer::new`], with `annotations` on the artifact's layer (an attestation's
    /// `in-toto.io/predicate-type`, as BuildKit marks its own).
    pub fn annotated(
        subject: &Image,
        media_type: &str,
        artifact: &[u8],
        epoch: u64,
        annotations: &[(&str, &str)],
    ) -> Result<Referrer> {
        let artifact_digest = sha256_digest(artifact);
        let created = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch),
        )
        .to_string();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": media_type,
            "config": {
                "mediaType": EMPTY_MEDIA_TYPE,
                "digest": sha256_digest(EMPTY),
                "size": EMPTY.len(),
                "data": "e30=",
            },
            "layers": [{
                "mediaType": media_type,
                "digest": artifact_digest,
                "size": artifact.len(),
            }],
            "subject": {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": subject.manifest.digest,
                "size": subject.manifest.bytes.len(),
            },
            "annotations": { "org.opencontainers.image.created": created },
        });
        if !annotations.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            manifest["layers"][0]["annotations"] = serde_json::Value::Object(map);
        }
        let manifest = super::canonical_json(&manifest).map_err(|source| Error::Json {
            what: "the referrer manifest",
            source,
        })?;
        Ok(Referrer {
            artifact_type: media_type.to_string(),
            digest: sha256_digest(&manifest),
            manifest,
            blobs: vec![
                (sha256_digest(EMPTY), EMPTY.to_vec()),
                (artifact_digest, artifact.to_vec()),
            ],
            subject: subject.manifest.digest.clone(),
        })
    }

    /// The descriptor an index lists it by.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": self.digest,
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
        })
    }

    /// The fallback tag its subject's referrers are listed under.
    pub fn fallback_tag(&self) -> String {
        self.subject.replacen(':', "-", 1)
    }

    /// `existing` (an index, or nothing) with this referrer listed once. Others of the same
    /// type stay: each push's provenance of the same image is listed, as `cosign attest`
    /// appends (a service's builds of one image each keep theirs until retention takes them).
    pub fn listed_in(&self, existing: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut index = existing
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
            .filter(|i| i["manifests"].is_array())
            .unwrap_or_else(
                || json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [] }),
            );
        let manifests = index["manifests"].as_array_mut().expect("checked above");
        manifests.retain(|m| m["digest"] != self.digest.as_str());
        manifests.push(self.descriptor());
        super::canonical_json(&index).map_err(|source| Error::Json {
            what: "the referrers index",
            source,
        })
    }
}

/// The descriptors of the referrers of `subject` (a manifest digest) in the layout at `dir`:
/// every manifest among its blobs whose `subject` is that digest, sorted by digest.
pub fn in_layout(dir: &std::path::Path, subject: &str) -> Result<Vec<serde_json::Value>> {
    let mut found = Vec::new();
    for (digest, bytes) in small_json_blobs(&dir.join("blobs/sha256"))? {
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if manifest["mediaType"] == MANIFEST_MEDIA_TYPE && manifest["subject"]["digest"] == subject
        {
            found.push(json!({
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": digest,
                "size": bytes.len(),
                "artifactType": manifest["artifactType"],
            }));
        }
    }
    found.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    Ok(found)
}

/// Removes from the layout at `dir` the referrers `referrer` supersedes (its subject's, of its
/// artifact type, but another manifest: a rebuild's provenance replaces the last one's, so a
/// layout rebuilt in a loop does not gather one per run), and their blobs no other manifest
/// in the layout names.
pub fn supersede_in_layout(dir: &std::path::Path, referrer: &Referrer) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    let mut manifests = Vec::new();
    for (digest, bytes) in small_json_blobs(&blobs)? {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            manifests.push((digest, json));
        }
    }
    let superseded = |(digest, m): &(String, serde_json::Value)| {
        *digest != referrer.digest
            && m["subject"]["digest"] == referrer.subject.as_str()
            && m["artifactType"] == referrer.artifact_type.as_str()
    };
    let named = |m: &serde_json::Value| -> Vec<String> {
        std::iter::once(&m["config"])
            .chain(m["layers"].as_array().into_iter().flatten())
            .chain(m["manifests"].as_array().into_iter().flatten())
            .filter_map(|d| d["digest"].as_str().map(str::to_string))
            .collect()
    };
    let kept: std::collections::BTreeSet<String> = manifests
        .iter()
        .filter(|m| !superseded(m))
        .flat_map(|(_, m)| named(m))
        .collect();
    let remove = |digest: &str| {
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::remove_file(&path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(Error::io(format!("removing {}", path.display())))
    };
    for (digest, manifest) in manifests.iter().filter(|m| superseded(m)) {
        remove(digest)?;
        for blob in named(manifest).iter().filter(|b| !kept.contains(*b)) {
            remove(blob)?;
        }
    }
    Ok(())
}

/// The blobs of a layout small enough to be manifests, as (digest, bytes).
fn small_json_blobs(blobs: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>> {
    let entries =
        std::fs::read_dir(blobs).map_err(Error::io(format!("reading {}", blobs.display())))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(Error::io(format!("reading {}", blobs.display())))?
            .path();
        // Manifests are small; layers are not worth reading.
        let small = std::fs::metadata(&path).is_ok_and(|m| m.len() <= 4 * 1024 * 1024);
        let Some(bytes) = small.then(|| std::fs::read(&path).ok()).flatten() else {
            continue;
        };
        if bytes.first() == Some(&b'{') {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            found.push((format!("sha256:{name}"), bytes));
        }
    }
    Ok(found)
}
