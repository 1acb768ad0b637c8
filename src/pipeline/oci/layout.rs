//! The OCI image layout (image-spec `image-layout.md`): `oci-layout`, `index.json` and
//! `blobs/sha256/*`, as a directory or as entries of an archive.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::{ImageIndexBuilder, MediaType};

use super::index::ImageOrIndex;
use super::{canonical_json, ImageRef};
use crate::core::error::{Error, Result};

/// The files of a layout, as (relative path, bytes); blobs are borrowed from the image.
pub type Files<'a> = Vec<(String, Cow<'a, [u8]>)>;

/// The `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `DIR[:TAG]` of an `oci:DIR[:TAG]` reference: the tag is what follows the last `:` when
/// it holds no `/` (a directory may hold `:`s). `None` when there is no directory.
pub fn dir_and_tag(rest: &str) -> Option<(&str, Option<String>)> {
    let (dir, tag) = match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag.to_string())),
        _ => (rest, None),
    };
    (!dir.is_empty()).then_some((dir, tag))
}

/// Where the blob with `digest` (`sha256:HEX`) is in a layout: `blobs/sha256/HEX`.
pub fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The files of a layout holding one image or one index (and its images), in a fixed
/// order. An index is listed in `index.json` by its own descriptor, as buildx writes it, the
/// form skopeo and containerd read.
pub fn files<'a>(content: &'a ImageOrIndex, reference: &ImageRef) -> Result<Files<'a>> {
    let index = index_json(content.descriptor(name_annotations(reference)))?;
    let mut files = vec![
        ("oci-layout".to_string(), Cow::Borrowed(OCI_LAYOUT)),
        ("index.json".to_string(), Cow::Owned(index)),
    ];
    if let ImageOrIndex::Index(index) = content {
        files.push((
            blob_path(&index.blob.digest),
            Cow::Borrowed(&index.blob.bytes[..]),
        ));
    }
    let manifests = content
        .images()
        .iter()
        .map(|i| (i.manifest.digest.as_str(), &i.manifest.bytes[..]));
    files.extend(
        manifests
            .chain(content.blobs())
            .map(|(digest, bytes)| (blob_path(digest), Cow::Borrowed(bytes))),
    );
    Ok(files)
}

/// What a layout's `index.json` says of its entry for `reference`: its tag, and the name
/// containerd and Docker 25+ give the image when they load an OCI archive.
pub fn name_annotations(reference: &ImageRef) -> HashMap<String, String> {
    [
        (
            "org.opencontainers.image.ref.name".to_string(),
            reference.tag.clone(),
        ),
        (
            "io.containerd.image.name".to_string(),
            reference.full.clone(),
        ),
    ]
    .into()
}

/// `index.json` listing one image or index by its descriptor (which carries
/// [`name_annotations`]).
pub fn index_json(root: oci_spec::image::Descriptor) -> Result<Vec<u8>> {
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![root])
        .build()
        .expect("index has all required fields");
    canonical_json(&index).map_err(|source| Error::Json {
        what: "the OCI index",
        source,
    })
}

/// The index of an existing layout with `ours` (the index of a layout holding only our image)
/// merged in: an entry named like ours is replaced, every other entry and field is kept but
/// the unnamed referrers earlier versions listed beside images (which made skopeo ask which
/// image was meant).
pub fn merged_index(existing: &[u8], ours: &[u8]) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidInput {
        what: "OCI layout",
        value: "index.json".into(),
        reason,
    };
    let mut index: serde_json::Value = serde_json::from_slice(existing)
        .map_err(|e| invalid(format!("the existing index.json is not JSON: {e}")))?;
    let ours: serde_json::Value = serde_json::from_slice(ours).expect("our index is JSON");
    let entry = ours["manifests"][0].clone();
    let name =
        |e: &serde_json::Value| e["annotations"]["org.opencontainers.image.ref.name"].clone();
    let manifests = index
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| invalid("the existing index.json has no manifests list".into()))?;
    let unnamed_referrer =
        |e: &serde_json::Value| e.get("artifactType").is_some() && name(e).is_null();
    manifests.retain(|e| name(e) != name(&entry) && !unnamed_referrer(e));
    manifests.push(entry);
    canonical_json(&index).map_err(|source| Error::Json {
        what: "the OCI index",
        source,
    })
}

/// Writes the layout files into `dir`, which must exist and be empty.
pub fn write_dir(dir: &Path, files: &Files<'_>) -> Result<()> {
    for (path, bytes) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(Error::io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, bytes).map_err(Error::io(format!("writing {}", path.display())))?;
    }
    Ok(())
}
