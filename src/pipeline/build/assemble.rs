//! Stage 3: the binary checked against the platform and the base (architecture, place,
//! loader), and laid into an image with its config, labels and record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::fsutil::blocking;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events, Stage};
use crate::core::metrics::{BaseRecord, BuildRecord, ImageRecord};
use crate::core::preset::Flags;
use crate::pipeline::base::Base;
use crate::pipeline::oci::image::{self, Image, ImageSpec};
use crate::pipeline::oci::ImageRef;

use super::{BuildOptions, Program, Timer};

/// An assembled image, not yet published, with its record (no outputs yet).
pub(super) struct Assembled {
    pub(super) image: Arc<Image>,
    pub(super) reference: ImageRef,
    pub(super) record: BuildRecord,
    pub(super) sbom: Option<Vec<u8>>,
    /// The provenance's DSSE envelope, when the build attests.
    pub(super) provenance: Option<Vec<u8>>,
    /// How long assembling took (publishing adds to the record's `assemble_time_ms`).
    pub(super) took: Duration,
}

/// Checks that the binary fits the platform and the base (its architecture, its place, its
/// loader), and says how it is linked.
fn fits(
    options: &BuildOptions,
    program: &Program,
    info: &crate::pipeline::elf::BinaryInfo,
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
pub(super) async fn assemble(
    options: &BuildOptions,
    mut program: Program,
    events: &Events,
) -> Result<Assembled> {
    let started = Instant::now();
    let stage = Timer::new(events, Stage::Assemble);
    let info = crate::pipeline::elf::inspect(&program.binary, &program.bytes)?;
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
        let bytes = std::mem::take(&mut program.bytes);
        blocking(move || {
            let app =
                crate::pipeline::oci::layer_cache::cached_app_layer(&cache_dir, &bytes, &spec)?;
            image::assemble_layers(app, &spec, base.as_deref().map(Base::underlay))
        })
        .await?
    };
    let image = Arc::new(image);
    let provenance = super::attestation::provenance(options, &program, &image, &reference)?;
    stage.finish();
    let binary_layer_size = image.binary_layer().size();
    let base_size = base.map_or(0, Base::size);
    let record = BuildRecord {
        schema: crate::core::metrics::SCHEMA_VERSION,
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
        provenance: None,
        embedded_deps: program.embedded_deps,
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
        over_budget: Vec::new(),
        error: None,
        server: None,
        settings: options.settings.clone(),
    };
    Ok(Assembled {
        image,
        reference,
        record,
        sbom: program.sbom.map(|(bytes, _)| bytes),
        provenance,
        took: started.elapsed(),
    })
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
            .unwrap_or(options.image.compression.level_for(options.preset)),
    }
}
