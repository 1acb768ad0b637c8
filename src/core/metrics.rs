//! The build record: the book chapter's metrics JSON, extended with the image, and the size
//! and time formats people read.

use serde::{Deserialize, Serialize};

use crate::core::preset::StdInfo;
use crate::core::preset::{FlagsRecord, Preset};

/// The shape of the JSON records (`schema` in each; `schemas/build-record.schema.json`):
/// raised when a field changes meaning or goes away, not when one is added.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// What one build produced and what it cost. The six fields after `schema` are the chapter's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    /// [`SCHEMA_VERSION`] (records kept from before it was added read as it).
    #[serde(default = "schema_version")]
    pub schema: u32,
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
    /// The flags the preset and overrides resolved to; absent for a prebuilt binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimization_flags: Option<FlagsRecord>,
    /// Wall time of assembling and writing the image.
    pub assemble_time_ms: u64,
    /// The compile backend (`local`, `docker`), or `prebuilt` for a binary built elsewhere.
    pub builder: String,
    /// `static`, or `dynamic` with its loader.
    pub linkage: String,
    /// The C library the binary is built against (`glibc`, `musl`), from its target triple.
    pub libc: String,
    /// The standard library linked: `toolchain`'s own or `rebuilt` by ruchy-image, and which;
    /// absent for a prebuilt binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<StdInfo>,
    /// The transpiler that made the Rust (`ruchy 3.213.0`), for `.ruchy` sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transpiled_by: Option<String>,
    /// The manifest a single `.rs` file carried, its dependencies came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies_from: Option<EmbeddedManifest>,
    /// The SBOM written, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRecord>,
    /// The SLSA provenance attached to the image, when an output holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceRecord>,
    /// The list of its crates the binary carries (a `.dep-v0` section, cargo-auditable's
    /// format); absent when it carries none (`--no-embed-deps`, or a prebuilt binary without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_deps: Option<EmbeddedDeps>,
    /// The image.
    pub image: ImageRecord,
    /// Where the image was written.
    pub outputs: Vec<Published>,
    /// Cold start through the engine, when `compare` measured it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStart>,
    /// The size budgets this build went over. Budgets are checked before anything is
    /// published: when this is not empty, `outputs` is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_budget: Vec<Exceeded>,
    /// Why the build failed though it was measured (a gate, such as a size budget); nothing
    /// was published then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where it ran, when a `ruchy-image serve` built it (`build --server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerRun>,
    /// Where each setting came from, by its flag's long name: `flag`, `env NAME`, `request`
    /// (a service's parameters), `FILE:LINE` (the project's settings) or `default`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, String>,
}

/// Where a `build --server` ran: the service, the build's ID there, and its worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRun {
    /// The service's URL.
    pub url: String,
    /// The build's ID on it (`GET /v1/builds/{id}`).
    pub build_id: String,
    /// The worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// What a multi-platform build produced: an OCI image index under the tag, over one image
/// per platform, each with its own record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexRecord {
    /// [`SCHEMA_VERSION`].
    #[serde(default = "schema_version")]
    pub schema: u32,
    /// `name:tag`.
    pub reference: String,
    /// The index's digest: what the tag names in layouts and registries.
    pub digest: String,
    /// `application/vnd.oci.image.index.v1+json`.
    pub media_type: String,
    /// The platform an engine load (and a docker-archive) holds.
    pub loaded_platform: String,
    /// One record per platform, by architecture; their `outputs` are the index's.
    pub platforms: Vec<BuildRecord>,
    /// Where the index was written.
    pub outputs: Vec<Published>,
    /// Where it ran, when a `ruchy-image serve` built it (`build --server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerRun>,
}

/// What a build made: one image, or an index over one image per platform. As JSON it is the
/// record `build --json` writes for either, untagged; an index is the one with `platforms`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Built {
    /// One image's record.
    Image(Box<BuildRecord>),
    /// An index's record, with one record per platform.
    Index(Box<IndexRecord>),
}

impl Built {
    /// Why it failed though it was measured (a gate such as a size budget): the image's
    /// `error`, or the first platform's. Nothing was published then.
    pub fn gate_error(&self) -> Option<&str> {
        match self {
            Built::Image(one) => one.error.as_deref(),
            Built::Index(index) => index.platforms.iter().find_map(|p| p.error.as_deref()),
        }
    }
}

impl<'de> Deserialize<'de> for Built {
    /// Chooses the variant by `platforms` rather than trying each in turn, so a record that
    /// does not read says which field is wrong, not only that no variant matched.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Built, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        match value.get("platforms").is_some() {
            true => serde_json::from_value(value).map(Built::Index),
            false => serde_json::from_value(value).map(|record| Built::Image(Box::new(record))),
        }
        .map_err(D::Error::custom)
    }
}

/// Container create-to-exit wall time over several runs, with the chapter's Lambda-like
/// limits (128m, 0.5 CPU).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// Where an image went, for the summary and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// `oci-layout`, `archive`, `engine`.
    pub kind: String,
    /// Path or reference of the output.
    pub location: String,
    /// For `engine`: the engine's own view of the loaded image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineView>,
    /// For `registry`: what was uploaded and what the registry had already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushStats>,
}

/// Blobs uploaded and skipped by a push: pushing the same build again uploads nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushStats {
    /// Blobs sent.
    pub uploaded_blobs: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the same registry (not sent).
    pub mounted_blobs: u64,
    /// Blobs the registry had.
    pub skipped_blobs: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
}

/// The engine's view of a loaded image, reported beside ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineView {
    /// Image ID (the config digest).
    pub id: String,
    /// Size as the engine counts it (unpacked file bytes).
    pub size: u64,
    /// Number of layers.
    pub layer_count: usize,
    /// Config `User`.
    pub user: String,
    /// Config `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Engine version that loaded it.
    pub engine_version: String,
}

/// Sizes for people: exact below 10 KiB, else KiB/MiB/GiB with one decimal.
pub fn human_size(bytes: u64) -> String {
    if bytes < 10 * 1024 {
        format!("{bytes} B")
    } else {
        bytesize::ByteSize(bytes).display().iec().to_string()
    }
}

/// Parses a size: bytes (`400000`, `400B`) or a number with a unit, `KB`/`MB`/`GB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive, decimals allowed (`1.5MB`),
/// up to 2^53 bytes (8 PiB; beyond it no binary or image is, and decimals lose exactness).
/// The error says what is wrong, in one line.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const UNITS: [(&str, u64); 7] = [
        ("", 1),
        ("b", 1),
        ("kb", 1000),
        ("mb", 1000 * 1000),
        ("gb", 1000 * 1000 * 1000),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
    ];
    const GIB: (&str, u64) = ("gib", 1 << 30);
    const LARGEST: u128 = 1 << 53;
    let text = text.trim();
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if number.is_empty() || number == "." || fraction.contains('.') {
        return Err(
            "expected a number of bytes, optionally with a unit, like 400000, 400KB or 1.5MiB"
                .into(),
        );
    }
    let unit = unit.trim();
    let Some((_, multiplier)) = UNITS
        .into_iter()
        .chain([GIB])
        .find(|(name, _)| unit.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "unknown unit `{unit}`: use bytes, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
        ));
    };
    let too_large = || format!("too large: sizes go up to {LARGEST} bytes (8 PiB)");
    // Exact: whole * multiplier + fraction * multiplier / 10^digits, in integers.
    let whole: u128 = match whole {
        "" => 0,
        digits => digits.parse().map_err(|_| too_large())?,
    };
    let mut bytes = whole.checked_mul(multiplier.into()).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let digits = fraction.len().min(20) as u32;
        let fraction: u128 = fraction[..digits as usize]
            .parse()
            .map_err(|_| too_large())?;
        bytes += fraction * u128::from(multiplier) / 10u128.pow(digits);
    }
    if bytes > LARGEST {
        return Err(too_large());
    }
    Ok(bytes as u64)
}

/// Durations for people: milliseconds below a second, else seconds with one decimal.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// What `ruchy-image lambda` made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LambdaRecord {
    /// The source the user gave.
    pub source_file: String,
    /// The preset.
    pub optimization_level: Preset,
    /// Where the zip was written.
    pub zip: String,
    /// Its size in bytes.
    pub zip_size: u64,
    /// `sha256:` of the zip: the same binary gives the same zip.
    pub zip_digest: String,
    /// The `bootstrap` in it, in bytes.
    pub binary_size: u64,
    /// Wall time of the compile step (0 for a prebuilt binary).
    pub compile_time_ms: u64,
    /// The flags it was compiled with; absent for a prebuilt binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimization_flags: Option<FlagsRecord>,
    /// The compile backend, or `prebuilt`.
    pub builder: String,
    /// `static`: Lambda runs what the zip holds on its own OS.
    pub linkage: String,
    /// The C library it was built against.
    pub libc: String,
    /// The Lambda architecture: `x86_64` or `arm64`.
    pub architecture: String,
    /// `template` when ruchy-image wrapped a single-file `handle_request`; `own` when the
    /// program serves the Runtime API itself (a Cargo project, a prebuilt binary).
    pub runtime: String,
    /// With `--lambda-image`: the container image made of the same binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRecord>,
    /// Where that image was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Published>,
}

/// What the record says about the SBOM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SbomRecord {
    /// Crates in it, the binary's own excluded.
    pub components: usize,
    /// Of those, the ones only the build uses.
    pub build_only: usize,
    /// `sha256:` of the JSON.
    pub digest: String,
    /// Its format: `cyclonedx` or `spdx` (records from before it was recorded: cyclonedx).
    #[serde(default = "cyclonedx")]
    pub format: String,
}

fn cyclonedx() -> String {
    "cyclonedx".into()
}

/// What the record says about the provenance attached to the image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProvenanceRecord {
    /// The referrer's manifest digest.
    pub referrer: String,
    /// `sha256:` of the DSSE envelope.
    pub digest: String,
    /// The keyid of the key that signed it; absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// What the record says about the list of crates in the binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddedDeps {
    /// Crates in it, the binary's own excluded.
    pub crates: usize,
    /// Of those, the ones only the build uses.
    pub build_only: usize,
    /// Bytes of the section (compressed JSON).
    pub section_size: u64,
}

/// What a single file's own manifest brought into its generated project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmbeddedManifest {
    /// Which form it had.
    pub form: ManifestForm,
    /// The `[dependencies]` it named, sorted.
    pub dependencies: Vec<String>,
    /// The `[profile.NAME]` keys it set (`release.lto`), to warn where a preset overrides them.
    #[serde(skip)]
    pub profile_keys: Vec<String>,
}

/// Which form the file's manifest had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestForm {
    /// cargo-script frontmatter (`---` … `---`).
    CargoScript,
    /// rust-script's `//! ```cargo` block.
    RustScript,
}

impl ManifestForm {
    /// How the record and summary name it.
    pub fn describe(self) -> &'static str {
        match self {
            ManifestForm::CargoScript => "cargo-script frontmatter",
            ManifestForm::RustScript => "rust-script manifest",
        }
    }
}

/// A record with made-up numbers, for unit tests of what reads records.
#[cfg(test)]
pub(crate) fn sample_record(preset: Preset, binary_size: u64, compressed_size: u64) -> BuildRecord {
    let flags = crate::core::preset::Flags::resolve(
        preset,
        &crate::core::preset::Overrides::default(),
        "x86_64-unknown-linux-gnu",
    );
    BuildRecord {
        schema: SCHEMA_VERSION,
        source_file: "examples/fibonacci.rs".into(),
        binary_path: format!("/cache/target/ruchy-{preset}/fibonacci"),
        optimization_level: preset,
        binary_size,
        compile_time_ms: 1500,
        optimization_flags: Some(flags.metrics()),
        assemble_time_ms: 40,
        builder: "local".into(),
        linkage: "static".into(),
        libc: "glibc".into(),
        sbom: None,
        provenance: None,
        embedded_deps: None,
        transpiled_by: None,
        dependencies_from: None,
        std: Some(StdInfo {
            source: crate::core::preset::StdSource::Toolchain,
            variant: crate::core::preset::StdVariant::Unwind,
        }),
        image: ImageRecord {
            reference: format!("fibonacci:{preset}"),
            digest: "sha256:aa".into(),
            config_digest: "sha256:bb".into(),
            manifest_digest: "sha256:aa".into(),
            layer_count: 2,
            compressed_size,
            uncompressed_size: binary_size + 10_240,
            binary_layer_size: compressed_size.saturating_sub(1800),
            overhead_size: 1800,
            base: None,
            added_size: compressed_size,
            architecture: "amd64".into(),
            user: "65532:65532".into(),
            entrypoint: vec!["/usr/local/bin/fibonacci".into()],
        },
        outputs: Vec::new(),
        cold_start: None,
        over_budget: Vec::new(),
        error: None,
        server: None,
        settings: Default::default(),
    }
}

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// The compiled binary's size in bytes.
    Binary,
    /// The image as stored (`image.compressed_size`): gzip layers + config + manifest.
    Image,
}

impl Limit {
    /// The measured size this budget limits.
    pub fn measure(self, record: &BuildRecord) -> u64 {
        match self {
            Limit::Binary => record.binary_size,
            Limit::Image => record.image.compressed_size,
        }
    }
}

/// A maximum size, with the text the user wrote so messages can quote it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// What it limits.
    pub limit: Limit,
    /// The maximum, in bytes; a size equal to it passes.
    pub bytes: u64,
    /// As the user wrote it (`400KB`).
    pub spelled: String,
}

impl Budget {
    /// A budget for `limit` from a size such as `400000`, `400KB` or `1.5MiB`; the error
    /// says what is wrong with the text (see [`parse_size`]).
    pub fn parse(limit: Limit, text: &str) -> Result<Budget, String> {
        Ok(Budget {
            limit,
            bytes: parse_size(text)?,
            spelled: text.to_string(),
        })
    }

    /// The overrun, if `record` is over this budget.
    pub fn check(&self, record: &BuildRecord) -> Option<Exceeded> {
        let size = self.limit.measure(record);
        (size > self.bytes).then(|| Exceeded {
            preset: record.optimization_level,
            size,
            budget: self.clone(),
        })
    }
}

/// A build that went over a budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceeded {
    /// The preset that was built.
    pub preset: Preset,
    /// The measured size in bytes.
    pub size: u64,
    /// The budget it went over.
    pub budget: Budget,
}

impl std::fmt::Display for Exceeded {
    /// `aggressive: binary is 1142432 bytes, over the budget of 400000 bytes (400KB)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, how) = match self.budget.limit {
            Limit::Binary => ("binary", ""),
            Limit::Image => ("image", " stored"),
        };
        write!(
            f,
            "{}: {what} is {} bytes{how}, over the budget of {} bytes ({})",
            self.preset, self.size, self.budget.bytes, self.budget.spelled
        )
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

    #[test]
    fn sizes_with_and_without_units() {
        for (text, bytes) in [
            ("400000", 400_000),
            ("0", 0),
            ("512B", 512),
            ("400KB", 400_000),
            ("400kb", 400_000),
            ("400 kB", 400_000),
            ("1.5MB", 1_500_000),
            ("2GB", 2_000_000_000),
            ("400KiB", 409_600),
            ("400kib", 409_600),
            ("1.5MiB", 1_572_864),
            ("1MIB", 1_048_576),
            ("0.5KiB", 512),
            ("1GiB", 1 << 30),
            (".5KB", 500),
            ("0.1KB", 100),
            ("9007199254740992", 1 << 53),
            ("8GiB", 8 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, reason) in [
            ("40XB", "unknown unit `XB`"),
            ("400 bytes", "unknown unit `bytes`"),
            ("", "expected a number"),
            ("KB", "expected a number"),
            ("-5", "expected a number"),
            ("1.2.3MB", "expected a number"),
            ("inf", "expected a number"),
            ("1e5", "unknown unit `e5`"),
            ("1e30", "unknown unit `e30`"),
            ("1PB", "unknown unit `PB`"),
            ("99999999999GiB", "too large"),
            ("99999999999999999999", "too large"),
            ("999999999999999999999999999999999999999999", "too large"),
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
