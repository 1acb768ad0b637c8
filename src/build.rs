//! The pipeline: prepare → compile → check → assemble → publish, with a record of each step.
//!
//! Every stage is a plain function of plain data; this module only runs them in order, times
//! them, and tells the caller what is happening through [`Event`]s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base::Base;
use crate::compile::Compiler;
use crate::error::{Error, Result};
use crate::event::{Event, Events, Stage};
use crate::fsutil::blocking;
use crate::metrics::LambdaRecord;
use crate::metrics::{BaseRecord, BuildRecord, ImageRecord, IndexRecord, Published};
use crate::oci::image::{self, Image, ImageSpec, RuntimeUser};
use crate::oci::index::{ImageOrIndex, Index};
use crate::oci::layer::Codec;
use crate::oci::ImageRef;
use crate::platform::Platform;
use crate::preset::StdVariant;
use crate::preset::{Flags, Overrides, Panic, Preset};
use crate::publish::{publish_all, Publisher};
use crate::source::{self, SourceOptions};
use crate::toolchain::{arch, musl_target};

/// What goes into the image besides the binary.
#[derive(Debug, Clone)]
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
    /// Per-flag overrides.
    pub overrides: Overrides,
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
}

/// The target when none is asked for: for a static binary, musl when the builder can make
/// it (static by nature, no NSS surprises on scratch), else the builder's host triple (static
/// through crt-static); for another platform than the builder's, the same for its
/// architecture.
async fn default_target(
    compiler: &dyn Compiler,
    static_link: bool,
    platform: Option<Platform>,
) -> Result<String> {
    let host = compiler.host_target().await?;
    let native = match platform {
        Some(platform) if Platform::of_target(&host) != Some(platform) => {
            format!("{}-unknown-linux-gnu", platform.rust_arch())
        }
        _ => host,
    };
    match musl_target(&native) {
        Some(musl) if static_link && compiler.can_make(&musl, StdVariant::Unwind).await => Ok(musl),
        _ => Ok(native),
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
    std: Option<crate::preset::StdInfo>,
    sbom: Option<(Vec<u8>, crate::sbom::SbomRecord)>,
    /// The binary's name, for the image path, title and default tag.
    bin: String,
    /// The package version, for the image's version label.
    version: Option<String>,
    repository: Option<String>,
    revision: Option<String>,
    transpiler: Option<String>,
    embedded_manifest: Option<source::EmbeddedManifest>,
}

impl Program {
    /// The C library: the target's for what we compiled, the headers' guess for the rest.
    fn libc(&self, info: &crate::elf::BinaryInfo) -> String {
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
    let assembled = assemble(options, program, events).await?;
    publish(options, assembled, publishers, events).await
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
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Publish);
    let content = ImageOrIndex::Index(index.clone());
    let mut outputs = publish_all(publishers, &content, &reference, events).await?;
    // Each platform's image gets its own SBOM as its referrer, as a single build's does.
    for (options, a) in each.iter().zip(&assembled) {
        if let Some(bytes) = a.sbom.as_ref().filter(|_| !options.no_sbom_referrer) {
            let referrer = crate::oci::referrer::Referrer::new(
                &a.image,
                crate::sbom::MEDIA_TYPE,
                bytes,
                options.source_date_epoch,
            )?;
            outputs.extend(crate::publish::attach_all(publishers, &referrer).await?);
        }
    }
    stage.finish();
    let published_in = started.elapsed();
    let mut platforms: Vec<BuildRecord> = assembled
        .into_iter()
        .map(|a| {
            let mut record = a.record;
            record.assemble_time_ms = (a.took + published_in).as_millis() as u64;
            record
        })
        .collect();
    platforms.sort_by(|a, b| a.image.architecture.cmp(&b.image.architecture));
    Ok(IndexRecord {
        reference: reference.full,
        digest: index.blob.digest.clone(),
        media_type: content.media_type().to_string(),
        loaded_platform: format!("linux/{}", index.images[index.loaded].architecture),
        platforms,
        outputs,
    })
}

/// The binary: compiled from the source, or the prebuilt one as it is.
async fn produce(
    options: &BuildOptions,
    compiler: Option<&dyn Compiler>,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Program> {
    let path = options.source.path.clone();
    if blocking(move || Ok(source::is_prebuilt(&path))).await? {
        return take_prebuilt(options, events).await;
    }
    let compiler = compiler.ok_or_else(|| Error::InvalidInput {
        what: "builder",
        value: options.source.path.display().to_string(),
        reason: "a source needs a compiler (local or docker); only a prebuilt binary is packaged without one".into(),
    })?;
    compile(options, compiler, publishers, events).await
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
    crate::fsutil::check_writable("the Lambda zip", zip)?;
    let program = produce(options, compiler, &[], events).await?;
    let stage = Timer::new(events, Stage::Assemble);
    let info = crate::elf::inspect(&program.binary, &program.bytes)?;
    let libc = program.libc(&info);
    if let Some(interpreter) = &info.interpreter {
        return Err(Error::DynamicBinary {
            path: program.binary.clone(),
            interpreter: interpreter.clone(),
            prebuilt: program.flags.is_none(),
        });
    }
    let (bytes, epoch) = (program.bytes, options.source_date_epoch);
    let (zipped, binary_size) =
        blocking(move || Ok((crate::lambda::zip("bootstrap", &bytes, epoch), bytes.len()))).await?;
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
        zip_digest: crate::fsutil::sha256_digest(&zipped),
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

/// Stage 1 and 2 for a source: prepare it and compile it (and make its SBOM when wanted).
async fn compile(
    options: &BuildOptions,
    compiler: &dyn Compiler,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Program> {
    let stage = Timer::new(events, Stage::Prepare);
    let source = options.source.clone();
    let project = blocking(move || source::prepare(&source)).await?;
    stage.finish();

    let stage = Timer::new(events, Stage::Compile);
    let flags = resolve_flags(options, compiler, events).await?;
    if let Some(embedded) = &project.embedded_manifest {
        warn_profile_overrides(embedded, &flags, events);
    }
    events.emit(Event::Compiling {
        source: options.source.path.clone(),
        bin: project.bin.clone(),
        flags: flags.clone(),
        builder: compiler.name().to_string(),
    });
    let artifact = compiler.compile(&project, &flags, events).await?;
    let sbom = sbom_for(options, &project, &flags, publishers, events).await?;
    let bytes = read_binary(artifact.binary.clone(), "the compiled binary").await?;
    events.emit(Event::Compiled {
        binary: artifact.binary.clone(),
        size: bytes.len() as u64,
        time_ms: artifact.compile_time.as_millis() as u64,
        fresh: artifact.fresh,
    });
    stage.finish();
    Ok(Program {
        binary: artifact.binary,
        bytes,
        compile_time: artifact.compile_time,
        builder: compiler.name().to_string(),
        flags: Some(flags),
        std: Some(artifact.std),
        sbom,
        bin: project.bin,
        version: Some(project.version),
        repository: project.repository,
        revision: project.revision,
        transpiler: project.transpiler,
        embedded_manifest: project.embedded_manifest,
    })
}

/// The flags for this build: the preset with the overrides, for the target asked for or the
/// compiler's default, adjusted where the builder cannot do what the preset asks.
async fn resolve_flags(
    options: &BuildOptions,
    compiler: &dyn Compiler,
    events: &Events,
) -> Result<Flags> {
    let target = match &options.target {
        Some(target) => target.clone(),
        None => {
            let static_link = options.overrides.static_link != Some(false);
            default_target(compiler, static_link, options.platform).await?
        }
    };
    let mut flags = Flags::resolve(options.preset, &options.overrides, &target);
    // native is the compiling machine's CPU: for another architecture it names nothing (LLVM
    // ignores it, with a warning per feature), so the target's generic CPU is used.
    if flags.target_cpu.as_deref() == Some("native")
        && arch(&compiler.host_target().await?) != arch(&target)
    {
        flags.target_cpu = None;
        events.emit(Event::Note {
            message: format!(
                "target-cpu=native is the builder's CPU, not one {target} runs on: {} builds for its generic CPU (--target-cpu names one)",
                options.preset
            ),
        });
    }
    // size takes the floor where the builder has it, and the next best thing elsewhere.
    if flags.panic == Some(Panic::ImmediateAbort)
        && options.overrides.panic.is_none()
        && !compiler.can_make(&target, StdVariant::ImmediateAbort).await
    {
        flags.panic = Some(Panic::Abort);
        events.emit(Event::Warning {
            message: format!(
                "the {} builder has no standard library for {target} built for panic=immediate-abort, so {} uses panic=abort and the usual std: a bigger binary than it could be (a builder made by `ruchy-image builder import-host` from a toolchain with the standard library's sources has one; `ruchy-image doctor` says which builders here have one)",
                compiler.name(),
                options.preset
            ),
        });
    }
    Ok(flags)
}

/// The program's SBOM, when one is wanted.
async fn sbom_for(
    options: &BuildOptions,
    project: &source::Project,
    flags: &Flags,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Option<(Vec<u8>, crate::sbom::SbomRecord)>> {
    // An SBOM when asked for, and for every output that can hold it as a referrer (layouts,
    // registries); there, one that cannot be made is a warning, not a failed build.
    let wanted = options.sbom.is_some()
        || (!options.no_sbom_referrer && publishers.iter().any(|p| p.holds_referrers()));
    if !wanted {
        return Ok(None);
    }
    let (cache, manifest, package, target, ruchy) = (
        options.source.cache_dir.clone(),
        project.manifest_path.clone(),
        project.package.clone(),
        flags.target.clone(),
        project.transpiler.clone(),
    );
    let epoch = options.source_date_epoch;
    let made = blocking(move || {
        crate::sbom::generate_cached(
            &cache,
            &manifest,
            &package,
            &target,
            epoch,
            ruchy.as_deref(),
        )
    })
    .await;
    match (made, options.sbom.is_some()) {
        (Ok(sbom), _) => Ok(Some(sbom)),
        (Err(e), true) => Err(e),
        (Err(e), false) => {
            events.emit(Event::Warning {
                message: format!("no SBOM is attached to the image: {e}"),
            });
            Ok(None)
        }
    }
}

/// Stage 1 for a prebuilt binary: name it and read it; there is nothing to compile.
async fn take_prebuilt(options: &BuildOptions, events: &Events) -> Result<Program> {
    let stage = Timer::new(events, Stage::Prepare);
    let source = options.source.clone();
    let prebuilt = blocking(move || source::prebuilt(&source)).await?;
    // Its crates are unknown to us, so there is no SBOM to make.
    if let Some(path) = &options.sbom {
        return Err(Error::InvalidInput {
            what: "SBOM output",
            value: path.display().to_string(),
            reason: format!(
                "{} is a prebuilt binary: its SBOM comes from the build that made it (ruchy-image makes one from the Cargo project it compiles)",
                prebuilt.path.display()
            ),
        });
    }
    let bytes = read_binary(prebuilt.path.clone(), "the prebuilt binary").await?;
    events.note(format!(
        "packaging the prebuilt binary {} ({} bytes) as it is: no compile",
        prebuilt.path.display(),
        bytes.len()
    ));
    stage.finish();
    Ok(Program {
        binary: prebuilt.path,
        bytes,
        compile_time: Duration::ZERO,
        builder: "prebuilt".into(),
        flags: None,
        std: None,
        sbom: None,
        bin: prebuilt.bin,
        version: None,
        repository: prebuilt.repository,
        revision: prebuilt.revision,
        transpiler: None,
        embedded_manifest: None,
    })
}

async fn read_binary(path: PathBuf, what: &'static str) -> Result<Vec<u8>> {
    blocking(move || {
        std::fs::read(&path).map_err(Error::io(format!("reading {what} {}", path.display())))
    })
    .await
}

/// An assembled image, not yet published, with its record (no outputs yet).
struct Assembled {
    image: Arc<Image>,
    reference: ImageRef,
    record: BuildRecord,
    sbom: Option<Vec<u8>>,
    /// How long assembling took (publishing adds to the record's `assemble_time_ms`).
    took: Duration,
}

/// Checks that the binary fits the platform and the base (its architecture, its place, its
/// loader), and says how it is linked.
fn fits(
    options: &BuildOptions,
    program: &Program,
    info: &crate::elf::BinaryInfo,
    spec: &ImageSpec,
) -> Result<String> {
    if let Some(platform) = options.platform {
        if platform.architecture() != info.architecture {
            return Err(Error::InvalidInput {
                what: "binary for the platform",
                value: program.binary.display().to_string(),
                reason: format!(
                    "it is a Linux {} executable, and --platform is {platform}",
                    info.architecture
                ),
            });
        }
    }
    let base = options.base.as_deref();
    if let Some(base) = base {
        if base.architecture() != info.architecture {
            return Err(Error::InvalidBase {
                reason: format!(
                    "{} is for {}, and the binary is {}",
                    base.reference,
                    base.architecture(),
                    info.architecture
                ),
            });
        }
    }
    if let Some(base) = base {
        if let Some(conflict) = base.fs.file_conflict(&spec.binary_path) {
            return Err(Error::InvalidBase {
                reason: format!(
                    "the binary goes at {} and {} has no place for it there: {conflict}",
                    spec.binary_path, base.reference
                ),
            });
        }
    }
    // A dynamic binary needs its loader in the image: scratch has none, a base may.
    match (&info.interpreter, base) {
        (None, _) => Ok("static".to_string()),
        (Some(interpreter), None) => Err(Error::DynamicBinary {
            path: program.binary.clone(),
            interpreter: interpreter.clone(),
            prebuilt: program.flags.is_none(),
        }),
        (Some(interpreter), Some(base)) if !base.fs.exists(interpreter) => {
            Err(Error::MissingLoader {
                path: program.binary.clone(),
                interpreter: interpreter.clone(),
                base: base.reference.clone(),
                prebuilt: program.flags.is_none(),
            })
        }
        (Some(interpreter), Some(_)) => Ok(format!("dynamic ({interpreter})")),
    }
}

/// Stage 3: checks the binary against the platform and the base, and assembles the image.
async fn assemble(options: &BuildOptions, program: Program, events: &Events) -> Result<Assembled> {
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Assemble);
    let info = crate::elf::inspect(&program.binary, &program.bytes)?;
    let libc = program.libc(&info);
    let spec = image_spec(options, &program, &info.architecture);
    let linkage = fits(options, &program, &info, &spec)?;
    let base = options.base.as_deref();
    let reference = match &options.tag {
        Some(tag) => tag.clone(),
        None if options.platform_in_tag => {
            format!("{}:{}-{}", program.bin, options.preset, info.architecture).parse()?
        }
        None => format!("{}:{}", program.bin, options.preset).parse()?,
    };
    events.emit(Event::Assembling {
        reference: reference.full.clone(),
    });
    let binary_size = program.bytes.len() as u64;
    let image = {
        let (cache_dir, base) = (options.source.cache_dir.clone(), options.base.clone());
        let bytes = program.bytes;
        blocking(move || {
            let app = crate::oci::cache::cached_app_layer(&cache_dir, &bytes, &spec)?;
            image::assemble_layers(app, &spec, base.as_deref().map(Base::underlay))
        })
        .await?
    };
    let image = Arc::new(image);
    stage.finish();
    let binary_layer_size = image.binary_layer().size();
    let base_size = base.map_or(0, Base::size);
    let record = BuildRecord {
        source_file: options.source.path.display().to_string(),
        binary_path: program.binary.display().to_string(),
        optimization_level: options.preset,
        binary_size,
        compile_time_ms: program.compile_time.as_millis() as u64,
        optimization_flags: program.flags.as_ref().map(Flags::metrics),
        assemble_time_ms: 0,
        libc,
        builder: program.builder,
        linkage,
        std: program.std,
        sbom: program.sbom.as_ref().map(|(_, record)| record.clone()),
        transpiled_by: program.transpiler,
        dependencies_from: program.embedded_manifest,
        image: ImageRecord {
            reference: reference.full.clone(),
            digest: image.manifest.digest.clone(),
            config_digest: image.config.digest.clone(),
            manifest_digest: image.manifest.digest.clone(),
            layer_count: image.layers.len(),
            compressed_size: image.compressed_size(),
            uncompressed_size: image.uncompressed_size(),
            binary_layer_size,
            overhead_size: image.compressed_size() - binary_layer_size - base_size,
            base: base.map(|b| BaseRecord {
                reference: b.reference.clone(),
                digest: b.digest.clone(),
                layer_count: b.layers.len(),
                size: base_size,
            }),
            added_size: image.compressed_size() - base_size,
            architecture: image.architecture.clone(),
            user: image.user.clone(),
            entrypoint: image.entrypoint.clone(),
        },
        outputs: Vec::new(),
        cold_start: None,
    };
    Ok(Assembled {
        image,
        reference,
        record,
        sbom: program.sbom.map(|(bytes, _)| bytes),
        took: started.elapsed(),
    })
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
        took,
    } = assembled;
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Publish);
    let content = ImageOrIndex::Image(image.clone());
    let mut outputs = publish_all(publishers, &content, &reference, events).await?;
    if let Some(bytes) = &sbom {
        if let Some(path) = &options.sbom {
            crate::fsutil::write_file_atomically("the SBOM", path, bytes)?;
            outputs.push(Published {
                kind: "sbom".into(),
                location: path.display().to_string(),
                engine: None,
                push: None,
            });
        }
    }
    // And to every layout and registry the image went to, as its OCI 1.1 referrer.
    if let Some(bytes) = sbom.as_ref().filter(|_| !options.no_sbom_referrer) {
        let referrer = crate::oci::referrer::Referrer::new(
            &image,
            crate::sbom::MEDIA_TYPE,
            bytes,
            options.source_date_epoch,
        )?;
        outputs.extend(crate::publish::attach_all(publishers, &referrer).await?);
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

/// The image's filesystem and config for a program.
fn image_spec(options: &BuildOptions, program: &Program, architecture: &str) -> ImageSpec {
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(options.source_date_epoch),
    )
    .to_string();
    // Provenance goes on the manifest too; the rest only in labels, to keep the image small.
    let mut annotations = BTreeMap::new();
    if let Some(repository) = &program.repository {
        annotations.insert(
            "org.opencontainers.image.source".to_string(),
            repository.clone(),
        );
    }
    if let Some(revision) = &program.revision {
        annotations.insert("org.opencontainers.image.revision".into(), revision.clone());
    }
    if let Some(base) = &options.base {
        annotations.insert(
            "org.opencontainers.image.base.name".into(),
            base.reference.clone(),
        );
        annotations.insert(
            "org.opencontainers.image.base.digest".into(),
            base.digest.clone(),
        );
    }
    let mut labels = annotations.clone();
    labels.extend([
        ("org.opencontainers.image.created".to_string(), created),
        ("org.opencontainers.image.title".into(), program.bin.clone()),
        ("dev.ruchy.image.preset".into(), options.preset.to_string()),
    ]);
    if let Some(version) = &program.version {
        labels.insert("org.opencontainers.image.version".into(), version.clone());
    }
    match &program.flags {
        Some(flags) => labels.extend([
            ("dev.ruchy.image.flags".into(), flags.listing().join(" ")),
            ("dev.ruchy.image.target".into(), flags.target.clone()),
        ]),
        None => {
            labels.insert("dev.ruchy.image.prebuilt".into(), "true".into());
        }
    }
    labels.extend(options.image.labels.clone());

    let binary_path = options
        .image
        .path
        .clone()
        .unwrap_or_else(|| format!("/usr/local/bin/{}", program.bin));
    let env = options.image.env.clone();
    ImageSpec {
        created_by: match program.flags {
            Some(_) => format!("ruchy-image build -O {}", options.preset),
            None => format!("ruchy-image build (prebuilt, -O {})", options.preset),
        },
        binary_path,
        user: options.image.user.clone(),
        env,
        ports: options.image.ports.clone(),
        workdir: options.image.workdir.clone(),
        labels,
        annotations,
        created: options.source_date_epoch,
        architecture: architecture.to_string(),
        compression: options.image.compression,
        compression_level: options
            .image
            .compression_level
            .unwrap_or(options.preset.compression_level(options.image.compression)),
    }
}

/// The cache directory: `$RUCHY_IMAGE_CACHE`, else the platform cache dir.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("RUCHY_IMAGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("ruchy-image")))
        .unwrap_or_else(|| std::env::temp_dir().join("ruchy-image"))
}

/// The preset's profile inherits from `release` (or `dev`) and sets its own keys: a file's
/// manifest setting one of them there, or in the preset's profile, is overridden; say so.
fn warn_profile_overrides(embedded: &source::EmbeddedManifest, flags: &Flags, events: &Events) {
    let profiles = [flags.inherits().to_string(), flags.profile()];
    for (key, _) in flags.profile_settings().into_iter().skip(1) {
        let key = key.to_lowercase().replace('_', "-");
        for profile in &profiles {
            let named = format!("{profile}.{key}");
            if embedded.profile_keys.contains(&named) {
                events.emit(Event::Warning {
                    message: format!(
                        "[profile.{profile}] {key} in {} is overridden by the {} preset's",
                        embedded.form.describe(),
                        flags.profile().trim_start_matches("ruchy-")
                    ),
                });
            }
        }
    }
}
