//! The pipeline: prepare → compile → check → assemble → publish, with a record of each step.
//!
//! Every stage is a plain function of plain data; this module only runs them in order, times
//! them, and tells the caller what is happening through [`Event`]s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::fsutil::blocking;
use crate::core::budget::Exceeded;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events, Stage};
use crate::core::metrics::LambdaRecord;
use crate::core::metrics::{BuildRecord, IndexRecord, Published};
use crate::core::platform::Platform;
use crate::core::preset::{Flags, Overrides, Preset};
use crate::pipeline::base::Base;
use crate::pipeline::compile::Compiler;
use crate::pipeline::oci::image::RuntimeUser;
use crate::pipeline::oci::index::{ImageOrIndex, Index};
use crate::pipeline::oci::layer::Codec;
use crate::pipeline::oci::ImageRef;
use crate::pipeline::publish::{publish_all, Publisher};
use crate::pipeline::source::SourceOptions;

mod assemble;
mod attestation;
mod program;

pub use attestation::ProvenanceOptions;

use assemble::{assemble, Assembled};
use program::produce;

/// What goes into the image besides the binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageOptions {
    /// The runtime user.
    pub user: RuntimeUser,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Ports, as `8080/tcp`.
    pub ports: Vec<String>,
    /// Working directory.
    pub workdir: String,
    /// User labels; they win over ours.
    pub labels: BTreeMap<String, String>,
    /// Where the binary goes; `/usr/local/bin/<bin>` when unset.
    pub path: Option<String>,
    /// How the layers are compressed.
    pub compression: Codec,
    /// The codec's level; the preset's when unset.
    pub compression_level: Option<u32>,
}

impl ImageOptions {
    /// Checks the options as the image config needs them (the command line's flags are
    /// normalized to these forms: `KEY=VALUE`, `8080/tcp`, absolute paths).
    pub fn check(&self) -> Result<()> {
        let invalid = |what, value: &str, reason: &str| {
            Err(Error::InvalidInput {
                what,
                value: value.to_string(),
                reason: reason.to_string(),
            })
        };
        for env in &self.env {
            match env.split_once('=') {
                Some((key, _)) if !key.is_empty() && !key.contains(char::is_whitespace) => {}
                _ => return invalid("environment variable", env, "expected KEY=VALUE"),
            }
        }
        for port in &self.ports {
            let (number, proto) = port.split_once('/').unwrap_or((port, ""));
            if !matches!(
                (number.parse::<u16>(), proto),
                (Ok(1..), "tcp" | "udp" | "sctp")
            ) {
                return invalid(
                    "port",
                    port,
                    "expected a port from 1 to 65535 and /tcp, /udp or /sctp",
                );
            }
        }
        if !self.workdir.starts_with('/') || self.workdir.split('/').any(|c| c == "..") {
            return invalid(
                "working directory",
                &self.workdir,
                "expected an absolute path inside the image, without ..",
            );
        }
        if let Some(key) = self.labels.keys().find(|k| k.is_empty()) {
            return invalid("label", key, "a label needs a name");
        }
        if let Some(path) = &self.path {
            let name = path.rsplit('/').next().unwrap_or_default();
            if !path.starts_with('/') || name.is_empty() || name == "." || name == ".." {
                return invalid(
                    "binary path",
                    path,
                    "expected the absolute path of a file in the image, such as /usr/local/bin/app",
                );
            }
        }
        if let Some(level) = self.compression_level {
            self.compression.check_level(level)?;
        }
        Ok(())
    }
}

impl ImageOptions {
    /// A `KEY=VALUE` of `--env` or `--label` (and their settings), split; `what` names it in
    /// the error.
    pub fn key_value(what: &'static str, value: &str) -> Result<(String, String)> {
        match value.split_once('=') {
            Some((key, v)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
                Ok((key.to_string(), v.to_string()))
            }
            _ => Err(Error::InvalidInput {
                what,
                value: value.to_string(),
                reason: "expected KEY=VALUE".into(),
            }),
        }
    }

    /// A `--port` (N, N/tcp, N/udp or N/sctp) as the config holds it: `8080/tcp`.
    pub fn port(value: &str) -> Result<String> {
        let (number, proto) = value.split_once('/').unwrap_or((value, "tcp"));
        match (number.parse::<u16>(), proto) {
            (Ok(n), "tcp" | "udp" | "sctp") if n > 0 => Ok(format!("{n}/{proto}")),
            _ => Err(Error::InvalidInput {
                what: "port",
                value: value.to_string(),
                reason: "expected a port from 1 to 65535, optionally /tcp, /udp or /sctp".into(),
            }),
        }
    }

    /// An absolute path inside the image, without `..` (`--workdir`, `--path`).
    pub fn image_path(what: &'static str, value: &str) -> Result<String> {
        let ok = value.starts_with('/') && !value.split('/').any(|c| c == "..");
        ok.then(|| value.to_string())
            .ok_or_else(|| Error::InvalidInput {
                what,
                value: value.to_string(),
                reason: "expected an absolute path inside the image, without ..".into(),
            })
    }
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            user: RuntimeUser::default(),
            env: Vec::new(),
            ports: Vec::new(),
            workdir: "/".into(),
            labels: BTreeMap::new(),
            path: None,
            compression: Codec::Gzip,
            compression_level: None,
        }
    }
}

/// One build, fully described.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the program comes from.
    pub source: SourceOptions,
    /// The preset.
    pub preset: Preset,
    /// Per-flag overrides of every preset.
    pub overrides: Overrides,
    /// Per-flag overrides of one preset, over `overrides` (see
    /// [`BuildOptions::resolved_overrides`]).
    pub preset_overrides: BTreeMap<Preset, Overrides>,
    /// `--target`; the compiler's default when unset.
    pub target: Option<String>,
    /// `--platform`: its static target when no target is given; the binary must be for it.
    pub platform: Option<Platform>,
    /// The default tag names the architecture too (`BIN:PRESET-ARCH`): a comparison of
    /// several platforms loads each under its own.
    pub platform_in_tag: bool,
    /// Image contents and config.
    pub image: ImageOptions,
    /// `--tag`; `<bin>:<preset>` when unset.
    pub tag: Option<ImageRef>,
    /// The base image, read once by the caller; `None` is `FROM scratch`.
    pub base: Option<std::sync::Arc<Base>>,
    /// Timestamp for everything in the image (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// Where to write the CycloneDX SBOM of the binary's crates, if anywhere.
    pub sbom: Option<PathBuf>,
    /// Attach no SBOM referrer to layouts and registries (`--no-sbom`).
    pub no_sbom_referrer: bool,
    /// The SBOM's format, in the file and the referrer.
    pub sbom_format: crate::pipeline::sbom::SbomFormat,
    /// How images are attested to (SLSA provenance referrers); `None` with `--no-provenance`.
    pub provenance: Option<ProvenanceOptions>,
    /// Link no list of its crates into the binary (`--no-embed-deps`).
    pub no_embed_deps: bool,
    /// Size budgets, checked before anything is published.
    pub budgets: crate::core::budget::Budgets,
    /// Where each setting came from (the request's), for the record.
    pub settings: BTreeMap<String, String>,
}

impl BuildOptions {
    /// The overrides this preset builds with: its own over those of every preset.
    pub fn resolved_overrides(&self) -> Overrides {
        match self.preset_overrides.get(&self.preset) {
            Some(own) => own.over(&self.overrides),
            None => self.overrides.clone(),
        }
    }
}

/// A binary ready to lay into an image, and what the record says about how it was made.
struct Program {
    /// Where the binary is (cargo's output, or the prebuilt file).
    binary: PathBuf,
    bytes: Vec<u8>,
    compile_time: Duration,
    /// The compile backend, or `prebuilt`.
    builder: String,
    /// The flags it was compiled with; `None` for a prebuilt binary, whose flags we cannot know.
    flags: Option<Flags>,
    std: Option<crate::core::preset::StdInfo>,
    sbom: Option<(Vec<u8>, crate::core::metrics::SbomRecord)>,
    /// The binary's name, for the image path, title and default tag.
    bin: String,
    /// The package version, for the image's version label.
    version: Option<String>,
    repository: Option<String>,
    revision: Option<String>,
    transpiler: Option<String>,
    embedded_manifest: Option<crate::core::metrics::EmbeddedManifest>,
    /// What the provenance says of the run; `None` when nothing holds a provenance.
    run: Option<attestation::RunFacts>,
    /// The list of its crates the binary carries, if it carries one.
    embedded_deps: Option<crate::core::metrics::EmbeddedDeps>,
}

impl Program {
    /// The C library: the target's for what we compiled, the headers' guess for the rest.
    fn libc(&self, info: &crate::pipeline::elf::BinaryInfo) -> String {
        match &self.flags {
            Some(flags) => flags.libc().to_string(),
            None => info.libc.to_string(),
        }
    }
}

/// Runs one build: prepares the source, compiles it with `compiler` (a prebuilt binary needs
/// none), assembles the image and writes it to every publisher, reporting each stage to
/// `events`.
pub async fn build(
    options: &BuildOptions,
    compiler: Option<&dyn Compiler>,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<BuildRecord> {
    // Fail on unwritable outputs now, not after a long compile.
    for publisher in publishers {
        publisher.preflight()?;
    }
    let program = produce(options, compiler, publishers, events).await?;
    let mut assembled = assemble(options, program, events).await?;
    // The last gate: the platform, the loader and static linking were checked in assemble.
    // Over budget, the record is the answer: measured, with `over_budget` and `error` set
    // and no outputs (the caller gives the verdict).
    if !gate(&options.budgets, &mut assembled.record).is_empty() {
        assembled.record.assemble_time_ms = assembled.took.as_millis() as u64;
        return Ok(assembled.record);
    }
    publish(options, assembled, publishers, events).await
}

/// Holds `record` to `budgets` before anything is published; an overrun is written into the
/// record (which then publishes nothing) and returned.
fn gate(budgets: &crate::core::budget::Budgets, record: &mut BuildRecord) -> Vec<Exceeded> {
    let exceeded = budgets.check(record);
    if !exceeded.is_empty() {
        record.error = Some(crate::core::budget::Budgets::message(&exceeded));
        record.over_budget = exceeded.clone();
    }
    exceeded
}

/// Runs one build per platform (`each`: the same options but the platform) and publishes an
/// OCI image index over their images under the one tag; the engine and a docker-archive get
/// the `load` architecture's image. Nothing is published unless every platform built.
pub async fn build_index(
    each: &[BuildOptions],
    load: &str,
    compiler: Option<&dyn Compiler>,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<IndexRecord> {
    for publisher in publishers {
        publisher.preflight()?;
    }
    let mut assembled = Vec::with_capacity(each.len());
    for options in each {
        if let Some(platform) = options.platform {
            events.emit(Event::PlatformStarted {
                platform: platform.to_string(),
            });
        }
        let program = produce(options, compiler, publishers, events).await?;
        assembled.push(assemble(options, program, events).await?);
    }
    let reference = assembled[0].reference.clone();
    let images = assembled.iter().map(|a| a.image.clone()).collect();
    let index = Arc::new(Index::new(images, load)?);
    let content = ImageOrIndex::Index(index.clone());
    let record = |assembled: Vec<Assembled>, published_in: Duration, outputs| {
        let mut platforms: Vec<BuildRecord> = assembled
            .into_iter()
            .map(|a| {
                let mut record = a.record;
                record.assemble_time_ms = (a.took + published_in).as_millis() as u64;
                record
            })
            .collect();
        platforms.sort_by(|a, b| a.image.architecture.cmp(&b.image.architecture));
        IndexRecord {
            schema: crate::core::metrics::SCHEMA_VERSION,
            reference: reference.full.clone(),
            digest: index.blob.digest.clone(),
            media_type: content.media_type().to_string(),
            loaded_platform: format!("linux/{}", index.images[index.loaded].architecture),
            platforms,
            outputs,
            server: None,
        }
    };
    // Every platform is held to the budgets before the index is published anywhere.
    let mut exceeded = Vec::new();
    for (options, a) in each.iter().zip(&mut assembled) {
        exceeded.extend(gate(&options.budgets, &mut a.record));
    }
    if !exceeded.is_empty() {
        return Ok(record(assembled, Duration::ZERO, Vec::new()));
    }
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Publish);
    // Each platform's image gets its own SBOM and provenance, as a single build's does.
    let mut referrers = Vec::new();
    for (options, a) in each.iter().zip(&mut assembled) {
        let own = attestation::referrers(
            options,
            &a.image,
            a.sbom.as_deref(),
            a.provenance.as_deref(),
        )?;
        a.record.provenance = attestation::record(options, &own);
        referrers.extend(own);
    }
    let mut outputs = publish_all(publishers, &content, &reference, &referrers, events).await?;
    for referrer in &referrers {
        outputs.extend(crate::pipeline::publish::attach_all(publishers, referrer).await?);
    }
    stage.finish();
    Ok(record(assembled, started.elapsed(), outputs))
}

/// Makes a Lambda deployment zip (for the caller to write to `zip`): the binary (compiled
/// with the source's `handle_request` wrapped in the Runtime API loop when it is a single
/// file, or as it is) as `bootstrap`. It must be static: Lambda runs it on its own OS.
pub async fn lambda_zip(
    options: &BuildOptions,
    compiler: Option<&dyn Compiler>,
    zip: &std::path::Path,
    events: &Events,
) -> Result<(Vec<u8>, LambdaRecord)> {
    crate::adapters::fsutil::check_writable("the Lambda zip", zip)?;
    let program = produce(options, compiler, &[], events).await?;
    let stage = Timer::new(events, Stage::Assemble);
    let info = crate::pipeline::elf::inspect(&program.binary, &program.bytes)?;
    let libc = program.libc(&info);
    if let Some(interpreter) = &info.interpreter {
        return Err(Error::DynamicBinary {
            path: program.binary.clone(),
            interpreter: interpreter.clone(),
            prebuilt: program.flags.is_none(),
        });
    }
    let (bytes, epoch) = (program.bytes, options.source_date_epoch);
    let (zipped, binary_size) = blocking(move || {
        Ok((
            crate::pipeline::lambda::zip("bootstrap", &bytes, epoch),
            bytes.len(),
        ))
    })
    .await?;
    stage.finish();
    let single_file = matches!(
        std::path::Path::new(&options.source.path)
            .extension()
            .and_then(|e| e.to_str()),
        Some("rs" | "ruchy")
    );
    let record = LambdaRecord {
        source_file: options.source.path.display().to_string(),
        optimization_level: options.preset,
        zip: zip.display().to_string(),
        zip_size: zipped.len() as u64,
        zip_digest: crate::adapters::fsutil::sha256_digest(&zipped),
        binary_size: binary_size as u64,
        compile_time_ms: program.compile_time.as_millis() as u64,
        optimization_flags: program.flags.as_ref().map(Flags::metrics),
        libc,
        builder: program.builder,
        linkage: "static".into(),
        architecture: match info.architecture.as_str() {
            "amd64" => "x86_64".to_string(),
            other => other.to_string(),
        },
        runtime: match options.source.lambda && single_file {
            true => "template".into(),
            false => "own".into(),
        },
        image: None,
        outputs: Vec::new(),
    };
    Ok((zipped, record))
}

/// Stage 4: writes the image to every output, with its SBOM as a referrer where one is held.
async fn publish(
    options: &BuildOptions,
    assembled: Assembled,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<BuildRecord> {
    let Assembled {
        image,
        reference,
        mut record,
        sbom,
        provenance,
        took,
    } = assembled;
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Publish);
    let content = ImageOrIndex::Image(image.clone());
    // The SBOM and the provenance, as the image's OCI 1.1 referrers in every layout, archive
    // and registry.
    let referrers =
        attestation::referrers(options, &image, sbom.as_deref(), provenance.as_deref())?;
    record.provenance = attestation::record(options, &referrers);
    let mut outputs = publish_all(publishers, &content, &reference, &referrers, events).await?;
    if let Some(bytes) = &sbom {
        if let Some(path) = &options.sbom {
            crate::adapters::fsutil::write_file_atomically("the SBOM", path, bytes)?;
            outputs.push(Published {
                kind: "sbom".into(),
                location: path.display().to_string(),
                engine: None,
                push: None,
            });
        }
    }
    for referrer in &referrers {
        outputs.extend(crate::pipeline::publish::attach_all(publishers, referrer).await?);
    }
    stage.finish();
    record.assemble_time_ms = (took + started.elapsed()).as_millis() as u64;
    record.outputs = outputs;
    Ok(record)
}

/// Reports a stage's start now and its end (with its time) when [`Timer::finish`]ed; a stage
/// that fails reports no end, its error says enough.
struct Timer<'a> {
    events: &'a Events,
    stage: Stage,
    started: Instant,
}

impl<'a> Timer<'a> {
    fn new(events: &'a Events, stage: Stage) -> Timer<'a> {
        events.emit(Event::StageStarted { stage });
        Timer {
            events,
            stage,
            started: Instant::now(),
        }
    }

    fn finish(self) {
        self.events.emit(Event::StageFinished {
            stage: self.stage,
            time_ms: self.started.elapsed().as_millis() as u64,
        });
    }
}

/// The cache directory when none is given: the platform's (`~/.cache/ruchy-image`), else
/// one in the temp dir. The command line takes `$RUCHY_IMAGE_CACHE` (`--cache-dir`) first.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .map(|d| d.join("ruchy-image"))
        .unwrap_or_else(|| std::env::temp_dir().join("ruchy-image"))
}
