//! A cache of binary layers: compressing a binary at the best level is the slowest part of
//! assembly, and an unchanged rebuild should not pay it again. Keyed by the binary's bytes
//! and everything else that goes into the layer; blobs are checked against their digest on
//! the way out, so a damaged cache costs a recompression, never a wrong image.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::image::{app_layer, ImageSpec};
use super::layer::Layer;
use crate::adapters::fsutil::{hex, sha256_digest, write_file_atomically};
use crate::core::error::Result;

/// Bumped whenever the layer format (tar headers, compressor) changes; the codec and level
/// are keyed separately.
const FORMAT: &str =
    "ruchy-image layer v4 (gnu tar, libdeflate gzip members or zstd frames of 512 KiB)";

#[derive(Serialize, Deserialize)]
struct Entry {
    digest: String,
    diff_id: String,
    uncompressed_size: u64,
}

/// The binary's layer, from `cache_dir` when it was made before.
pub fn cached_app_layer(cache_dir: &Path, binary: &[u8], spec: &ImageSpec) -> Result<Layer> {
    let mut key = Sha256::new();
    key.update(FORMAT);
    key.update(spec.compression.name());
    key.update(spec.compression_level.to_le_bytes());
    key.update(spec.binary_path.as_bytes());
    key.update(spec.created.to_le_bytes());
    key.update(binary);
    let key = hex(&key.finalize());
    let dir = cache_dir.join("layers");
    let (blob_path, entry_path) = (
        dir.join(format!("{key}.tar.{}", spec.compression.name())),
        dir.join(format!("{key}.json")),
    );
    let cached = std::fs::read(&entry_path)
        .ok()
        .and_then(|json| serde_json::from_slice::<Entry>(&json).ok())
        .zip(std::fs::read(&blob_path).ok())
        .filter(|(entry, blob)| sha256_digest(blob) == entry.digest);
    if let Some((entry, blob)) = cached {
        return Ok(Layer {
            blob,
            digest: entry.digest,
            diff_id: entry.diff_id,
            uncompressed_size: entry.uncompressed_size,
            media_type: spec.compression.media_type(),
        });
    }
    let layer = app_layer(binary, spec)?;
    // A cache that cannot be written is only a slower next build.
    let entry = Entry {
        digest: layer.digest.clone(),
        diff_id: layer.diff_id.clone(),
        uncompressed_size: layer.uncompressed_size,
    };
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = write_file_atomically("a cached layer", &blob_path, &layer.blob);
        if let Ok(json) = serde_json::to_vec(&entry) {
            let _ = write_file_atomically("a cached layer", &entry_path, &json);
        }
    }
    Ok(layer)
}
