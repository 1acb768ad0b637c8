//! Stages 1 and 2: the binary. A source is prepared and compiled with the flags resolved for
//! the builder (and its SBOM made when one is wanted); a prebuilt binary is read as it is.

use std::path::PathBuf;
use std::time::Duration;

use crate::adapters::fsutil::blocking;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events, Stage};
use crate::core::metrics::EmbeddedDeps;
use crate::core::platform::Platform;
use crate::core::platform::{arch, musl_target};
use crate::core::preset::StdVariant;
use crate::core::preset::{Flags, Panic};
use crate::pipeline::auditable;
use crate::pipeline::compile::Compiler;
use crate::pipeline::publish::Publisher;
use crate::pipeline::source;

use super::attestation::RunFacts;
use super::{BuildOptions, Program, Timer};

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

/// The binary: compiled from the source, or the prebuilt one as it is.
pub(super) async fn produce(
    options: &BuildOptions,
    compiler: Option<&dyn Compiler>,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Program> {
    let started = std::time::SystemTime::now();
    // A provenance for every output that can hold it as a referrer (layouts, registries).
    let attests = options.provenance.is_some() && publishers.iter().any(|p| p.holds_referrers());
    let path = options.source.path.clone();
    if blocking(move || Ok(source::is_prebuilt(&path))).await? {
        let mut program = take_prebuilt(options, publishers, events).await?;
        program.run = attests.then(|| RunFacts {
            started,
            source_digest: crate::adapters::fsutil::sha256_digest(&program.bytes),
            toolchain: Default::default(),
        });
        return Ok(program);
    }
    let compiler = compiler.ok_or_else(|| Error::InvalidInput {
        what: "builder",
        value: options.source.path.display().to_string(),
        reason: "a source needs a compiler (local or docker); only a prebuilt binary is packaged without one".into(),
    })?;
    let (mut program, project) = compile(options, compiler, publishers, events).await?;
    if attests {
        let source_digest =
            blocking(move || crate::pipeline::compile::source_digest(&project)).await?;
        program.run = Some(RunFacts {
            started,
            source_digest,
            toolchain: compiler.toolchain(),
        });
    }
    Ok(program)
}

/// Stage 1 and 2 for a source: prepare it and compile it (and make its SBOM when wanted).
async fn compile(
    options: &BuildOptions,
    compiler: &dyn Compiler,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<(Program, source::Project)> {
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
    let embedded_deps = embedded(&bytes)?.map(|(_, record)| record);
    events.emit(Event::Compiled {
        binary: artifact.binary.clone(),
        size: bytes.len() as u64,
        time_ms: artifact.compile_time.as_millis() as u64,
        fresh: artifact.fresh,
    });
    stage.finish();
    let program = Program {
        binary: artifact.binary,
        bytes,
        compile_time: artifact.compile_time,
        builder: compiler.name().to_string(),
        flags: Some(flags),
        std: Some(artifact.std),
        sbom,
        bin: project.bin.clone(),
        version: Some(project.version.clone()),
        repository: project.repository.clone(),
        revision: project.revision.clone(),
        transpiler: project.transpiler.clone(),
        embedded_manifest: project.embedded_manifest.clone(),
        embedded_deps,
        run: None,
    };
    Ok((program, project))
}

/// The flags for this build: the preset with the overrides, for the target asked for or the
/// compiler's default, adjusted where the builder cannot do what the preset asks.
async fn resolve_flags(
    options: &BuildOptions,
    compiler: &dyn Compiler,
    events: &Events,
) -> Result<Flags> {
    let overrides = options.resolved_overrides();
    let target = match &options.target {
        Some(target) => target.clone(),
        None => {
            let static_link = overrides.static_link != Some(false);
            default_target(compiler, static_link, options.platform).await?
        }
    };
    let mut flags = Flags::resolve(options.preset, &overrides, &target);
    flags.embed_deps = !options.no_embed_deps;
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
        && overrides.panic.is_none()
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

/// Whether a build makes an SBOM: when asked for, and for every output that can hold it as
/// a referrer (layouts, registries); there, one that cannot be made is a warning, not a
/// failed build.
fn sbom_wanted(options: &BuildOptions, publishers: &[Box<dyn Publisher>]) -> bool {
    options.sbom.is_some()
        || (!options.no_sbom_referrer && publishers.iter().any(|p| p.holds_referrers()))
}

/// The list of crates the binary `bytes` carries (see [`auditable`]), and what the record
/// says of it.
fn embedded(bytes: &[u8]) -> Result<Option<(auditable::DepInfo, EmbeddedDeps)>> {
    let Some(section) = auditable::section(bytes)? else {
        return Ok(None);
    };
    let info = auditable::DepInfo::decompress(section)?;
    let (crates, build_only) = info.counts();
    let record = EmbeddedDeps {
        crates,
        build_only,
        section_size: section.len() as u64,
    };
    Ok(Some((info, record)))
}

/// The program's SBOM, when one is wanted.
async fn sbom_for(
    options: &BuildOptions,
    project: &source::Project,
    flags: &Flags,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Option<(Vec<u8>, crate::core::metrics::SbomRecord)>> {
    if !sbom_wanted(options, publishers) {
        return Ok(None);
    }
    let (cache, manifest, package, target, ruchy) = (
        options.source.cache_dir.clone(),
        project.manifest_path.clone(),
        project.package.clone(),
        flags.target.clone(),
        project.transpiler.clone(),
    );
    let (epoch, format) = (options.source_date_epoch, options.sbom_format);
    let made = blocking(move || {
        let subject = crate::pipeline::sbom::Subject {
            manifest: &manifest,
            package: &package,
            target: &target,
            epoch,
            ruchy: ruchy.as_deref(),
            format,
        };
        crate::pipeline::sbom::generate_cached(&cache, &subject)
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

/// Stage 1 for a prebuilt binary: name it and read it; there is nothing to compile. Its
/// SBOM is made from the list of crates it carries, if it carries one (`cargo auditable`'s).
async fn take_prebuilt(
    options: &BuildOptions,
    publishers: &[Box<dyn Publisher>],
    events: &Events,
) -> Result<Program> {
    let stage = Timer::new(events, Stage::Prepare);
    let source = options.source.clone();
    let prebuilt = blocking(move || source::prebuilt(&source)).await?;
    let bytes = read_binary(prebuilt.path.clone(), "the prebuilt binary").await?;
    let deps = match embedded(&bytes) {
        Ok(deps) => deps,
        Err(e) => {
            events.emit(Event::Warning {
                message: format!("the list of crates in the prebuilt binary is unreadable: {e}"),
            });
            None
        }
    };
    // Without a list, its crates are unknown to us, so there is no SBOM to make.
    if let (Some(path), None) = (&options.sbom, &deps) {
        return Err(Error::InvalidInput {
            what: "SBOM output",
            value: path.display().to_string(),
            reason: format!(
                "{} is a prebuilt binary: its SBOM comes from the build that made it, and it carries no list of its crates to make one from (`cargo auditable build` links one in; ruchy-image makes one from the Cargo project it compiles)",
                prebuilt.path.display()
            ),
        });
    }
    let sbom = match &deps {
        Some((info, _)) if sbom_wanted(options, publishers) => {
            Some(crate::pipeline::sbom::from_embedded(
                info,
                options.source_date_epoch,
                options.sbom_format,
            )?)
        }
        _ => None,
    };
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
        sbom,
        bin: prebuilt.bin,
        version: None,
        repository: prebuilt.repository,
        revision: prebuilt.revision,
        transpiler: None,
        embedded_manifest: None,
        embedded_deps: deps.map(|(_, record)| record),
        run: None,
    })
}

async fn read_binary(path: PathBuf, what: &'static str) -> Result<Vec<u8>> {
    blocking(move || {
        std::fs::read(&path).map_err(Error::io(format!("reading {what} {}", path.display())))
    })
    .await
}

/// The preset's profile inherits from `release` (or `dev`) and sets its own keys: a file's
/// manifest setting one of them there, or in the preset's profile, is overridden; say so.
fn warn_profile_overrides(
    embedded: &crate::core::metrics::EmbeddedManifest,
    flags: &Flags,
    events: &Events,
) {
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
