//! One tarball for every loader: the OCI layout files for OCI-aware tools (skopeo, umoci,
//! Docker 25+), plus the `manifest.json` that older `docker load` (20.10) reads.

use std::io::Write;

use serde::Serialize;

use super::image::FileImage;
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
    let layers = image.layers.iter().map(|l| l.digest.as_str());
    let docker_manifest = docker_manifest(&image.config.digest, layers, reference)?;
    let mut entries: Vec<(&str, Bytes<'_>)> = layout_files
        .iter()
        .map(|(p, b)| (p.as_str(), Bytes::Memory(b.as_ref())))
        .collect();
    entries.push(("manifest.json", Bytes::Memory(&docker_manifest)));
    write_entries(out, entries, mtime)
}

/// Writes the archive of an image whose layers are files, too big to hold in memory (a
/// builder's root filesystem), to `out` as [`write`] writes one: the same files, each layer
/// read from its file as it goes out, so the archive streams whatever its size.
pub fn write_files(
    out: impl Write,
    image: &FileImage,
    reference: &ImageRef,
    mtime: u64,
) -> Result<()> {
    let descriptor = super::image::manifest_descriptor(
        &image.manifest,
        &image.architecture,
        super::layout::name_annotations(reference),
    );
    let index = super::layout::index_json(descriptor)?;
    let layers = image.layers.iter().map(|(l, _)| l.digest.as_str());
    let docker_manifest = docker_manifest(&image.config.digest, layers, reference)?;
    let blob_path = super::layout::blob_path;
    let mut entries = vec![
        (
            "oci-layout".to_string(),
            Bytes::Memory(super::layout::OCI_LAYOUT),
        ),
        ("index.json".to_string(), Bytes::Memory(&index)),
        ("manifest.json".to_string(), Bytes::Memory(&docker_manifest)),
        (
            blob_path(&image.manifest.digest),
            Bytes::Memory(&image.manifest.bytes),
        ),
        (
            blob_path(&image.config.digest),
            Bytes::Memory(&image.config.bytes),
        ),
    ];
    for (layer, file) in &image.layers {
        entries.push((blob_path(&layer.digest), Bytes::File(file, layer.size)));
    }
    write_entries(
        out,
        entries.iter().map(|(p, b)| (p.as_str(), *b)).collect(),
        mtime,
    )
}

/// `manifest.json` of the docker-archive format: the config and layers of the one image an
/// engine loads from the archive, and its tag.
fn docker_manifest<'a>(
    config: &str,
    layers: impl Iterator<Item = &'a str>,
    reference: &ImageRef,
) -> Result<Vec<u8>> {
    let blob = super::layout::blob_path;
    serde_json::to_vec(&[DockerManifest {
        config: blob(config),
        repo_tags: [&reference.full],
        layers: layers.map(blob).collect(),
    }])
    .map_err(|source| Error::Json {
        what: "manifest.json",
        source,
    })
}

/// An archive entry's bytes: in memory, or a file of this size, read as the entry is written.
#[derive(Clone, Copy)]
enum Bytes<'a> {
    Memory(&'a [u8]),
    File(&'a std::fs::File, u64),
}

/// The one archive writer: `blobs/` and `blobs/sha256/`, then `entries` sorted by path, each
/// a root-owned file of mode 0644 dated `mtime`.
fn write_entries(out: impl Write, mut entries: Vec<(&str, Bytes<'_>)>, mtime: u64) -> Result<()> {
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let err = || Error::io("writing the image archive");
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut header, dir, std::io::empty())
            .map_err(err())?;
    }
    for (path, bytes) in entries {
        match bytes {
            Bytes::Memory(bytes) => {
                let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
                tar.append_data(&mut header, path, bytes).map_err(err())?;
            }
            Bytes::File(mut file, size) => {
                // A file shorter or longer than its layer said would make a broken archive.
                let len = file.metadata().map_err(err())?.len();
                if len != size {
                    return Err(Error::io(format!("writing the image archive: {path}"))(
                        std::io::Error::other(format!(
                            "the layer file has {len} bytes, not the {size} written"
                        )),
                    ));
                }
                std::io::Seek::rewind(&mut file).map_err(err())?;
                let mut header = header(tar::EntryType::Regular, 0o644, size, mtime);
                tar.append_data(&mut header, path, file).map_err(err())?;
            }
        }
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

/// What an archive holds, read back whole: the image or index its `index.json` names, the
/// name it was written under, and the artifacts (SBOMs) attached to its images.
#[derive(Debug)]
pub struct Contents {
    /// The image, or the index and its images.
    pub content: ImageOrIndex,
    /// The name it was written under.
    pub reference: ImageRef,
    /// Its images' referrers among the blobs.
    pub referrers: Vec<super::referrer::Referrer>,
}

/// Reads an archive this tool wrote (a service's download): every blob is checked against
/// its digest, so what is published from it is what was built.
pub fn read(archive: &[u8]) -> Result<Contents> {
    use std::collections::HashMap;
    use std::io::Read;

    let bad = |reason: String| Error::InvalidInput {
        what: "image archive",
        value: "the download".into(),
        reason,
    };
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tar = tar::Archive::new(archive);
    let err = || Error::io("reading the image archive");
    for entry in tar.entries().map_err(err())? {
        let mut entry = entry.map_err(err())?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(err())?.display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(err())?;
        files.insert(path, bytes);
    }
    let blob = |digest: &str| -> Result<Vec<u8>> {
        let bytes = files
            .get(&format!("blobs/{}", digest.replacen(':', "/", 1)))
            .ok_or_else(|| bad(format!("blob {digest} is missing")))?;
        match crate::adapters::fsutil::sha256_digest(bytes) == digest {
            true => Ok(bytes.clone()),
            false => Err(bad(format!("blob {digest} does not match its digest"))),
        }
    };
    let json = |bytes: &[u8], what: &str| -> Result<serde_json::Value> {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{what} is not JSON: {e}")))
    };
    let index = json(
        files
            .get("index.json")
            .ok_or_else(|| bad("it has no index.json".into()))?,
        "index.json",
    )?;
    let root = &index["manifests"][0];
    let reference: ImageRef = root["annotations"]["io.containerd.image.name"]
        .as_str()
        .ok_or_else(|| bad("index.json names no image".into()))?
        .parse()?;
    let root_digest = root["digest"].as_str().unwrap_or_default();
    let image = |digest: &str| -> Result<std::sync::Arc<super::image::Image>> {
        let manifest = blob(digest)?;
        let parsed = json(&manifest, "a manifest")?;
        let config = blob(parsed["config"]["digest"].as_str().unwrap_or_default())?;
        let settings = json(&config, "an image config")?;
        let diff_ids = settings["rootfs"]["diff_ids"].as_array().cloned();
        let mut layers = Vec::new();
        for (i, layer) in parsed["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let digest = layer["digest"].as_str().unwrap_or_default();
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            let blob = blob(digest)?;
            let diff_id = diff_ids.as_ref().and_then(|d| d.get(i)?.as_str());
            layers.push(super::layer::Layer {
                uncompressed_size: super::layer::unpacked_size(&blob, media_type)?,
                digest: digest.to_string(),
                diff_id: diff_id.unwrap_or_default().to_string(),
                media_type: media_type.into(),
                blob,
            });
        }
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(std::sync::Arc::new(super::image::Image {
            layers,
            user: text(&settings["config"]["User"]),
            entrypoint: settings["config"]["Entrypoint"]
                .as_array()
                .map(|e| e.iter().map(text).collect())
                .unwrap_or_default(),
            architecture: text(&settings["architecture"]),
            config: super::image::Blob::new(config),
            manifest: super::image::Blob::new(manifest),
        }))
    };
    let content = match root["mediaType"].as_str() {
        Some(super::referrer::INDEX_MEDIA_TYPE) => {
            let bytes = blob(root_digest)?;
            let images = json(&bytes, "the image index")?["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| image(m["digest"].as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>>>()?;
            // docker-archive's manifest.json names the image an engine loads.
            let docker = files.get("manifest.json").map(|m| json(m, "manifest.json"));
            let loaded_config = match docker {
                Some(docker) => docker?[0]["Config"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                None => String::new(),
            };
            let loaded = images
                .iter()
                .position(|i| {
                    loaded_config.ends_with(i.config.digest.trim_start_matches("sha256:"))
                })
                .unwrap_or(0);
            ImageOrIndex::Index(std::sync::Arc::new(super::index::Index {
                images,
                blob: super::image::Blob::new(bytes),
                loaded,
            }))
        }
        _ => ImageOrIndex::Image(image(root_digest)?),
    };
    let subjects: Vec<&str> = content
        .images()
        .iter()
        .map(|i| i.manifest.digest.as_str())
        .collect();
    let mut referrers = Vec::new();
    let mut paths: Vec<&String> = files.keys().filter(|p| p.starts_with("blobs/")).collect();
    paths.sort();
    for path in paths {
        let bytes = &files[path];
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            continue;
        };
        let subject = manifest["subject"]["digest"].as_str().unwrap_or_default();
        if !subjects.contains(&subject) {
            continue;
        }
        let parts = std::iter::once(&manifest["config"]).chain(
            manifest["layers"]
                .as_array()
                .map(|l| l.as_slice())
                .unwrap_or_default(),
        );
        let blobs = parts
            .map(|d| {
                let digest = d["digest"].as_str().unwrap_or_default();
                blob(digest).map(|bytes| (digest.to_string(), bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        referrers.push(super::referrer::Referrer {
            artifact_type: manifest["artifactType"].as_str().unwrap_or_default().into(),
            digest: crate::adapters::fsutil::sha256_digest(bytes),
            manifest: bytes.clone(),
            blobs,
            subject: subject.to_string(),
        });
    }
    Ok(Contents {
        content,
        reference,
        referrers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::oci::layer::LayerWriter;

    #[test]
    fn an_image_of_layer_files_is_archived_as_every_image_is_and_reads_back() {
        let file = tempfile::tempfile().unwrap();
        let mut tar = tar::Builder::new(LayerWriter::new(&file, None).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        tar.append_data(&mut header, "src/hello", &b"hello"[..])
            .unwrap();
        let (_, written) = tar.into_inner().unwrap().finish().unwrap();
        let mut config = oci_spec::image::Config::default();
        config.set_working_dir(Some("/src".into()));
        let image = FileImage::new(vec![(written, file)], config, Vec::new(), 0, "amd64").unwrap();
        let reference: ImageRef = "builder:1".parse().unwrap();
        let mut archive = Vec::new();
        write_files(&mut archive, &image, &reference, 0).unwrap();

        // Every blob checked against its digest, the tag where loaders look for it.
        let contents = read(&archive).unwrap();
        assert_eq!(contents.reference, reference);
        let read_back = contents.content.loaded();
        assert_eq!(read_back.manifest.digest, image.manifest.digest);
        let (written, _) = &image.layers[0];
        assert_eq!(read_back.layers[0].digest, written.digest);
        assert_eq!(read_back.layers[0].diff_id, written.diff_id);
        assert_eq!(read_back.layers[0].blob.len() as u64, written.size);
        let docker: serde_json::Value = {
            let mut tar = tar::Archive::new(&archive[..]);
            let entry = tar
                .entries()
                .unwrap()
                .map(|e| e.unwrap())
                .find(|e| e.path().unwrap().to_str() == Some("manifest.json"))
                .unwrap();
            serde_json::from_reader(entry).unwrap()
        };
        let layer = format!("blobs/{}", written.digest.replacen(':', "/", 1));
        assert_eq!(docker[0]["RepoTags"][0], "builder:1");
        assert_eq!(docker[0]["Layers"][0], layer.as_str());
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], written.diff_id.as_str());
        assert_eq!(config["config"]["WorkingDir"], "/src");
    }
}
