//! The build record: the book chapter's metrics JSON, extended with the image, and the
//! one-screen summary printed after every build.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::preset::{FlagsRecord, Preset};
use crate::publish::Published;

/// What one build produced and what it cost. The first six fields are the chapter's schema.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRecord {
    /// The source the user gave.
    pub source_file: String,
    /// The compiled binary, where cargo left it.
    pub binary_path: String,
    /// The preset.
    pub optimization_level: Preset,
    /// Size of the binary in bytes.
    pub binary_size: u64,
    /// Wall time of the compile step.
    pub compile_time_ms: u64,
    /// The flags the preset and overrides resolved to.
    pub optimization_flags: FlagsRecord,
    /// Wall time of assembling and writing the image.
    pub assemble_time_ms: u64,
    /// The compile backend (`local`).
    pub builder: String,
    /// `static`, or `dynamic` with its loader.
    pub linkage: String,
    /// The image.
    pub image: ImageRecord,
    /// Where the image was written.
    pub outputs: Vec<Published>,
    /// Cold start through the engine, when `compare` measured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStart>,
}

/// Container create-to-exit wall time over several runs, with the chapter's Lambda-like
/// limits (128m, 0.5 CPU).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColdStart {
    /// Runs measured.
    pub runs: u32,
    /// Median, in milliseconds.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The image part of the record. Sizes say what they measure: `compressed_size` is bytes as
/// stored (gzip layers + config + manifest); `uncompressed_size` is the layers' tar streams.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// `name:tag`.
    pub reference: String,
    /// The manifest digest: the image's identity in a registry or layout.
    pub digest: String,
    /// The config digest (what `docker images` shows as the image ID).
    pub config_digest: String,
    /// Same as `digest`, named for scripts that want both.
    pub manifest_digest: String,
    /// Number of layers.
    pub layer_count: usize,
    /// Bytes as stored.
    pub compressed_size: u64,
    /// Bytes of the unpacked layers (tar streams).
    pub uncompressed_size: u64,
    /// Compressed size of the binary's layer.
    pub binary_layer_size: u64,
    /// What we add besides the binary layer: system layer, config, manifest.
    pub overhead_size: u64,
    /// The base image, when not scratch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRecord>,
    /// Bytes as stored that this build added on top of the base (all of it on scratch).
    pub added_size: u64,
    /// OCI architecture.
    pub architecture: String,
    /// The config's `User` (`uid:gid`).
    pub user: String,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
}

/// The base an image was built on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseRecord {
    /// As `--base` named it.
    pub reference: String,
    /// Its manifest digest, or its image ID when it has no manifest of its own.
    pub digest: String,
    /// Its layers.
    pub layer_count: usize,
    /// Its layers' bytes as stored.
    pub size: u64,
}

/// Sizes for people: exact below 10 KiB, else KiB/MiB with one decimal.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 10 * 1024 {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / (KIB * KIB))
    }
}

/// Durations for people: milliseconds below a second, else seconds with one decimal.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl BuildRecord {
    /// The one-screen summary printed at the end of a build.
    pub fn summary(&self) -> String {
        let i = &self.image;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "✓ Built {} ({} preset)",
            i.reference, self.optimization_level
        );
        let _ = writeln!(
            s,
            "  binary    {} ({} bytes, {}, {})",
            human_size(self.binary_size),
            self.binary_size,
            self.linkage,
            i.architecture
        );
        let _ = writeln!(
            s,
            "  image     {} stored, {} unpacked, {} layers",
            human_size(i.compressed_size),
            human_size(i.uncompressed_size),
            i.layer_count
        );
        let _ = writeln!(
            s,
            "            {} binary layer + {} overhead",
            human_size(i.binary_layer_size),
            human_size(i.overhead_size)
        );
        if let Some(base) = &i.base {
            let _ = writeln!(
                s,
                "  base      {} ({} in {} layers, {} added)",
                base.reference,
                human_size(base.size),
                base.layer_count,
                human_size(i.added_size)
            );
        }
        let _ = writeln!(s, "  digest    {}", i.digest);
        let _ = writeln!(s, "  runs as   {} -> {}", i.user, i.entrypoint.join(" "));
        let _ = writeln!(
            s,
            "  time      compile {} ({}), assemble {}",
            human_ms(self.compile_time_ms),
            self.builder,
            human_ms(self.assemble_time_ms)
        );
        for out in &self.outputs {
            let _ = writeln!(s, "  output    {:<10} {}", out.kind, out.location);
            if let Some(engine) = &out.engine {
                let _ = writeln!(
                    s,
                    "            engine {} sees {} unpacked, {} layers, user {}",
                    engine.engine_version,
                    human_size(engine.size),
                    engine.layer_count,
                    engine.user
                );
            }
        }
        if self.outputs.is_empty() {
            let _ = writeln!(
                s,
                "  output    none (add --oci-layout DIR or --output FILE.tar to keep the image)"
            );
        }
        s
    }
}

/// A record with made-up numbers, for unit tests of what reads records.
#[cfg(test)]
pub(crate) fn sample_record(preset: Preset, binary_size: u64, compressed_size: u64) -> BuildRecord {
    let flags = crate::preset::Flags::resolve(
        preset,
        &crate::preset::Overrides::default(),
        "x86_64-unknown-linux-gnu",
    );
    BuildRecord {
        source_file: "examples/fibonacci.rs".into(),
        binary_path: format!("/cache/target/ruchy-{preset}/fibonacci"),
        optimization_level: preset,
        binary_size,
        compile_time_ms: 1500,
        optimization_flags: flags.metrics(),
        assemble_time_ms: 40,
        builder: "local".into(),
        linkage: "static".into(),
        image: ImageRecord {
            reference: format!("fibonacci:{preset}"),
            digest: "sha256:aa".into(),
            config_digest: "sha256:bb".into(),
            manifest_digest: "sha256:aa".into(),
            layer_count: 2,
            compressed_size,
            uncompressed_size: binary_size + 10_240,
            binary_layer_size: compressed_size - 1800,
            overhead_size: 1800,
            base: None,
            added_size: compressed_size,
            architecture: "amd64".into(),
            user: "65532:65532".into(),
            entrypoint: vec!["/usr/local/bin/fibonacci".into()],
        },
        outputs: Vec::new(),
        cold_start: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(612), "612 B");
        assert_eq!(human_size(315_824), "308.4 KiB");
        assert_eq!(human_size(3_984_588), "3.8 MiB");
        assert_eq!(human_ms(2457), "2.5 s");
    }
}
