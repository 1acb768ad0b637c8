//! One tarball for every loader: the OCI layout files for OCI-aware tools (skopeo, umoci,
//! Docker 25+), plus the `manifest.json` that older `docker load` (20.10) reads.

use std::io::Write;

use serde::Serialize;

use super::index::ImageOrIndex;
use super::ImageRef;
use crate::core::error::{Error, Result};

/// `manifest.json` of the docker-archive format.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest<'a> {
    config: String,
    repo_tags: [&'a str; 1],
    layers: Vec<String>,
}

/// Writes the archive for `content` to `out`. `layout_files` come from
/// [`super::layout::files`]; the blobs are shared between both views of the archive. Of an
/// index, `manifest.json` names the image an engine loads: Docker 20.10 takes one per tag.
pub fn write(
    out: impl Write,
    content: &ImageOrIndex,
    reference: &ImageRef,
    layout_files: &super::layout::Files<'_>,
    mtime: u64,
) -> Result<()> {
    let image = content.loaded();
    let blob = |digest: &str| format!("blobs/{}", digest.replacen(':', "/", 1));
    let docker_manifest = serde_json::to_vec(&[DockerManifest {
        config: blob(&image.config.digest),
        repo_tags: [&reference.full],
        layers: image.layers.iter().map(|l| blob(&l.digest)).collect(),
    }])
    .map_err(|source| Error::Json {
        what: "manifest.json",
        source,
    })?;

    let mut entries: Vec<(&str, &[u8])> = layout_files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_ref()))
        .collect();
    entries.push(("manifest.json", &docker_manifest));
    entries.sort_by(|a, b| a.0.cmp(b.0));

    let err = || Error::io("writing the image archive");
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut header, dir, std::io::empty())
            .map_err(err())?;
    }
    for (path, bytes) in entries {
        let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
        tar.append_data(&mut header, path, bytes).map_err(err())?;
    }
    tar.into_inner().map_err(err())?.flush().map_err(err())?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header
}
