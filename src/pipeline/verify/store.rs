//! Where `verify` reads an image and its referrers: an OCI layout (`oci:DIR[:TAG]`), a
//! docker-archive (`docker-archive:FILE`), or a registry (`REGISTRY/REPO:TAG|@DIGEST`, its
//! referrers through the OCI 1.1 fallback tag, as distribution 2.8 lists them). Every blob
//! read is checked against its digest.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::adapters::fsutil::sha256_digest;
use crate::core::error::{Error, Result};
use crate::pipeline::publish::{auth_for, client_for, RegistryOptions};

/// What `verify` was given to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An OCI layout and the tag in it (the only image when none is named).
    Layout(PathBuf, Option<String>),
    /// A docker-archive tarball.
    Archive(PathBuf),
    /// A registry reference.
    Registry(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Layout(dir, Some(tag)) => write!(f, "oci:{}:{tag}", dir.display()),
            Target::Layout(dir, None) => write!(f, "oci:{}", dir.display()),
            Target::Archive(file) => write!(f, "docker-archive:{}", file.display()),
            Target::Registry(reference) => f.write_str(reference),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = Error;
    fn from_str(text: &str) -> Result<Target> {
        let invalid = |reason: &str| Error::InvalidInput {
            what: "image reference",
            value: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = text.strip_prefix("oci:") {
            let (dir, tag) = crate::pipeline::oci::layout::dir_and_tag(rest)
                .ok_or_else(|| invalid("expected oci:DIR[:TAG]"))?;
            return Ok(Target::Layout(PathBuf::from(dir), tag));
        }
        if let Some(file) = text.strip_prefix("docker-archive:") {
            if file.is_empty() {
                return Err(invalid("expected docker-archive:FILE"));
            }
            return Ok(Target::Archive(PathBuf::from(file)));
        }
        let plain = text.strip_prefix("docker://").unwrap_or(text);
        if !plain.contains('/') {
            return Err(invalid(
                "expected oci:DIR[:TAG], docker-archive:FILE or REGISTRY/REPOSITORY:TAG|@DIGEST",
            ));
        }
        plain
            .parse::<Reference>()
            .map_err(|e| invalid(&format!("{e}; expected REGISTRY/REPOSITORY:TAG|@DIGEST")))?;
        Ok(Target::Registry(plain.to_string()))
    }
}

/// Where the blobs are.
pub(super) enum Store {
    Layout(PathBuf),
    /// An archive's blobs, and its referrers by subject.
    Memory(HashMap<String, Vec<u8>>, BTreeMap<String, Vec<String>>),
    Registry {
        client: Client,
        auth: RegistryAuth,
        reference: Reference,
    },
}

const ACCEPTED: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

impl Store {
    /// Opens `target` and finds its top manifest (an image's or an index's): the store, and
    /// that manifest's digest.
    pub(super) async fn open(
        target: &Target,
        registry: &RegistryOptions,
    ) -> Result<(Store, String)> {
        match target {
            Target::Layout(dir, tag) => {
                let index = dir.join("index.json");
                let bytes = std::fs::read(&index).map_err(|e| Error::InvalidInput {
                    what: "image layout",
                    value: dir.display().to_string(),
                    reason: format!("cannot read its index.json: {e}"),
                })?;
                let index: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidInput {
                        what: "image layout",
                        value: dir.display().to_string(),
                        reason: format!("its index.json is not JSON: {e}"),
                    })?;
                let entries = index["manifests"].as_array().cloned().unwrap_or_default();
                let name = |e: &serde_json::Value| {
                    e["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                };
                let chosen = match tag {
                    Some(tag) => entries.iter().find(|e| name(e) == *tag),
                    None if entries.len() == 1 => entries.first(),
                    None => None,
                };
                let Some(entry) = chosen else {
                    let tags: Vec<String> = entries.iter().map(name).collect();
                    return Err(Error::InvalidInput {
                        what: "image layout tag",
                        value: format!("{}:{}", dir.display(), tag.as_deref().unwrap_or("")),
                        reason: format!("the layout's tags are: {}", tags.join(", ")),
                    });
                };
                let digest = entry["digest"].as_str().unwrap_or_default().to_string();
                Ok((Store::Layout(dir.clone()), digest))
            }
            Target::Archive(file) => {
                let bytes = std::fs::read(file).map_err(|e| Error::InvalidInput {
                    what: "docker-archive",
                    value: file.display().to_string(),
                    reason: format!("cannot read it: {e}"),
                })?;
                let contents = crate::pipeline::oci::archive::read(&bytes)?;
                let mut blobs = HashMap::new();
                for image in contents.content.images() {
                    blobs.insert(image.manifest.digest.clone(), image.manifest.bytes.to_vec());
                    blobs.insert(image.config.digest.clone(), image.config.bytes.to_vec());
                    for layer in &image.layers {
                        blobs.insert(layer.digest.clone(), layer.blob.clone());
                    }
                }
                let root = contents.content.root();
                blobs.insert(root.digest.clone(), root.bytes.to_vec());
                let mut referrers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for referrer in contents.referrers {
                    referrers
                        .entry(referrer.subject.clone())
                        .or_default()
                        .push(referrer.digest.clone());
                    blobs.insert(referrer.digest, referrer.manifest);
                    blobs.extend(referrer.blobs);
                }
                Ok((Store::Memory(blobs, referrers), root.digest.clone()))
            }
            Target::Registry(text) => {
                let reference: Reference = text.parse().map_err(|e| Error::InvalidInput {
                    what: "image reference",
                    value: text.clone(),
                    reason: format!("{e}"),
                })?;
                let client = client_for(&reference, registry)?;
                let auth = auth_for(&reference, registry).await?;
                let (_, digest) = client
                    .pull_manifest_raw(&reference, &auth, ACCEPTED)
                    .await
                    .map_err(|e| Error::InvalidInput {
                        what: "image reference",
                        value: text.clone(),
                        reason: format!("the registry does not give its manifest: {e}"),
                    })?;
                Ok((
                    Store::Registry {
                        client,
                        auth,
                        reference,
                    },
                    digest,
                ))
            }
        }
    }

    /// A manifest or blob by digest, checked against it.
    pub(super) async fn get(&self, digest: &str) -> std::result::Result<Vec<u8>, String> {
        let bytes = match self {
            Store::Layout(dir) => {
                let path = dir.join("blobs").join(digest.replacen(':', "/", 1));
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Store::Memory(blobs, _) => blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| format!("{digest} is not in the archive"))?,
            Store::Registry {
                client,
                auth,
                reference,
            } => {
                let at = reference.clone_with_digest(digest.to_string());
                match client.pull_manifest_raw(&at, auth, ACCEPTED).await {
                    Ok((bytes, _)) => bytes.to_vec(),
                    Err(_) => {
                        let mut bytes = Vec::new();
                        client
                            .pull_blob(reference, digest, &mut bytes)
                            .await
                            .map_err(|e| format!("{digest}: {e}"))?;
                        bytes
                    }
                }
            }
        };
        match sha256_digest(&bytes) == digest {
            true => Ok(bytes),
            false => Err(format!(
                "its blob {digest} does not match its digest (it was changed)"
            )),
        }
    }

    /// The manifest digests of `subject`'s referrers.
    pub(super) async fn referrers(&self, subject: &str) -> Result<Vec<String>> {
        let digests = |list: &serde_json::Value| -> Vec<String> {
            list["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["digest"].as_str().map(str::to_string))
                .collect()
        };
        Ok(match self {
            Store::Layout(dir) => {
                let found = crate::pipeline::oci::referrer::in_layout(dir, subject)?;
                found
                    .iter()
                    .filter_map(|m| m["digest"].as_str().map(str::to_string))
                    .collect()
            }
            Store::Memory(_, referrers) => referrers.get(subject).cloned().unwrap_or_default(),
            Store::Registry {
                client,
                auth,
                reference,
            } => {
                // No referrers API in distribution 2.8: the fallback tag lists them.
                let tag = Reference::with_tag(
                    reference.registry().to_string(),
                    reference.repository().to_string(),
                    subject.replacen(':', "-", 1),
                );
                match client
                    .pull_manifest_raw(&tag, auth, &[OCI_IMAGE_INDEX_MEDIA_TYPE])
                    .await
                {
                    Ok((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                        .map(|list| digests(&list))
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_as_their_kind() {
        let parse = |text: &str| text.parse::<Target>();
        assert_eq!(
            parse("oci:out/fib:size").unwrap(),
            Target::Layout("out/fib".into(), Some("size".into()))
        );
        assert_eq!(
            parse("oci:out/fib").unwrap(),
            Target::Layout("out/fib".into(), None)
        );
        assert_eq!(
            parse("docker-archive:fib.tar").unwrap(),
            Target::Archive("fib.tar".into())
        );
        assert_eq!(
            parse("127.0.0.1:5000/app:1").unwrap(),
            Target::Registry("127.0.0.1:5000/app:1".into())
        );
        for bad in ["fib", "oci:", "docker-archive:", "127.0.0.1:5000/App:@@"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
