//! The library's front door: a plain-data [`Request`] is resolved into a [`Plan`] (which
//! engine, which compiler, which bases, which outputs) and then run, as one build or as a
//! comparison of presets. Everything the run has to say goes out as [`Event`]s; what it
//! produced comes back as records.
//!
//! ```no_run
//! # async fn example() -> ruchy_image::Result<()> {
//! use ruchy_image::plan::{Plan, Request};
//! use ruchy_image::preset::Preset;
//!
//! let mut request = Request::new("examples/fibonacci.rs");
//! request.presets = vec![Preset::Aggressive];
//! request.outputs.oci_layout = Some("out/fib".into());
//! let events = ruchy_image::event::Events::new(|event| eprintln!("{event:?}"));
//! let record = Plan::resolve(request, &events).await?.build(&events).await?;
//! println!("{} bytes stored", record.image.compressed_size);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::{Base, BaseRef};
use crate::build::{build, default_cache_dir, BuildOptions, ImageOptions};
use crate::compare::{compare, ColdStartProbe, Comparison};
use crate::compile::{BuilderImage, Compiler, DockerCompiler, LocalCompiler};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::metrics::{BuildRecord, IndexRecord};
use crate::oci::layer::Codec;
use crate::oci::ImageRef;
use crate::platform::Platform;
use crate::preset::{Overrides, Panic, Preset};
use crate::publish::{
    parse_reference, ArchivePublisher, EnginePublisher, OciLayoutPublisher, Publisher,
    RegistryOptions, RegistryPublisher,
};
use crate::source::SourceOptions;

/// Where to compile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuilderChoice {
    /// A builder container when an engine answers, else the host's cargo.
    #[default]
    Auto,
    /// A builder container; an engine is required.
    Docker,
    /// The host's cargo and rustc.
    Local,
}

/// Whether the image goes into the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Load {
    /// Never.
    #[default]
    Never,
    /// When an engine answers; without one the build goes on and says so.
    IfEngine,
    /// Always; an engine is required.
    Always,
}

/// Where the image is written.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Load into the engine.
    pub load: Load,
    /// An OCI image layout directory.
    pub oci_layout: Option<PathBuf>,
    /// One tarball that `docker load`, skopeo and umoci accept.
    pub archive: Option<PathBuf>,
    /// Registry references to push to (`REGISTRY/REPOSITORY[:TAG]`), without a daemon.
    pub push: Vec<String>,
    /// A CycloneDX SBOM of the binary's crates.
    pub sbom: Option<PathBuf>,
    /// No SBOM referrer in layouts and registries.
    pub no_sbom: bool,
}

/// How the compiler's own output should look.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompilerOutput {
    /// Ask cargo for coloured diagnostics (for a terminal).
    pub color: bool,
    /// Ask cargo for no status lines, only diagnostics.
    pub quiet: bool,
}

/// Everything that describes a build or a comparison, as plain data.
#[derive(Debug, Clone)]
pub struct Request {
    /// The program: a Cargo project, a `.rs` or a `.ruchy` file.
    pub source: SourceOptions,
    /// The presets: one for a build, any number for a comparison (each once).
    pub presets: Vec<Preset>,
    /// Per-flag overrides on top of every preset.
    pub overrides: Overrides,
    /// The target triple; the compiler's own when unset.
    pub target: Option<String>,
    /// The platforms: none for the builder's own; one; or several, published as an OCI image
    /// index over one image per platform. Each gets its static target when no target is given.
    pub platforms: Vec<Platform>,
    /// Of several platforms, the one the engine loads (and a docker-archive holds); the
    /// host's when it is built, else the first.
    pub load_platform: Option<Platform>,
    /// What goes into the image besides the binary.
    pub image: ImageOptions,
    /// The bases: one for a build; a comparison builds every preset on each.
    pub bases: Vec<BaseRef>,
    /// The image's name; `BIN:PRESET` when unset.
    pub tag: Option<ImageRef>,
    /// Timestamp of everything in the image (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// Where to compile.
    pub builder: BuilderChoice,
    /// The builder image for the docker builder; `rust:1-alpine`, or one made by
    /// `builder import-host`, when unset.
    pub builder_image: Option<String>,
    /// Where the image goes.
    pub outputs: Outputs,
    /// Cold starts to time per preset of a comparison (images loaded into the engine).
    pub cold_start_runs: u32,
    /// How the compiler's output should look.
    pub compiler_output: CompilerOutput,
    /// Credentials and plain-HTTP hosts for pushes.
    pub registry: RegistryOptions,
}

impl Request {
    /// A request for `source` with the defaults: balanced, on scratch, compiled wherever an
    /// engine allows, written nowhere.
    pub fn new(source: impl Into<PathBuf>) -> Request {
        Request {
            source: SourceOptions {
                path: source.into(),
                bin: None,
                ruchy: None,
                cache_dir: default_cache_dir(),
                lambda: false,
            },
            presets: vec![Preset::Balanced],
            overrides: Overrides::default(),
            target: None,
            platforms: Vec::new(),
            load_platform: None,
            image: ImageOptions::default(),
            bases: vec![BaseRef::Scratch],
            tag: None,
            source_date_epoch: 0,
            builder: BuilderChoice::Auto,
            builder_image: None,
            outputs: Outputs::default(),
            cold_start_runs: 0,
            compiler_output: CompilerOutput::default(),
            registry: RegistryOptions::default(),
        }
    }

    /// Checks what can be checked without touching anything.
    pub fn validate(&self) -> Result<()> {
        let listed = || {
            self.presets
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        let invalid = |what, reason: String| Error::InvalidInput {
            what,
            value: listed(),
            reason,
        };
        if self.presets.is_empty() {
            let reason = "list at least one of none, balanced, aggressive, nasa, size".into();
            return Err(invalid("presets", reason));
        }
        for (i, preset) in self.presets.iter().enumerate() {
            if self.presets[..i].contains(preset) {
                return Err(invalid("presets", format!("{preset} is listed twice")));
            }
        }
        // size exists to drop the unwinding machinery; asking it to unwind defeats it.
        if self.presets.contains(&Preset::Size) && self.overrides.panic == Some(Panic::Unwind) {
            return Err(invalid(
                "panic strategy for these presets",
                "size aborts on a panic (immediate-abort, with a std built for it; or abort) and cannot unwind; for a small binary that unwinds, use aggressive with an opt-level of z".into(),
            ));
        }
        for reference in &self.outputs.push {
            parse_reference(reference)?;
        }
        if self.bases.is_empty() {
            return Err(Error::InvalidInput {
                what: "bases",
                value: String::new(),
                reason: "list at least one base (scratch for none)".into(),
            });
        }
        // Beyond 9999-12-31T23:59:59Z, no RFC 3339 time: the image's `created` could not be
        // written.
        if self.source_date_epoch > 253_402_300_799 {
            return Err(Error::InvalidInput {
                what: "source date epoch",
                value: self.source_date_epoch.to_string(),
                reason: "expected seconds since 1970 up to 253402300799 (the end of year 9999)"
                    .into(),
            });
        }
        if let Some(path) = &self.image.path {
            let name = path.rsplit('/').next().unwrap_or_default();
            if !path.starts_with('/') || name.is_empty() || name == "." || name == ".." {
                return Err(Error::InvalidInput {
                    what: "binary path",
                    value: path.clone(),
                    reason: "expected the absolute path of a file in the image, such as /usr/local/bin/app".into(),
                });
            }
        }
        self.validate_platforms()?;
        if let (Some(target), &[platform]) = (&self.target, self.platforms.as_slice()) {
            if Platform::of_target(target) != Some(platform) {
                return Err(Error::InvalidInput {
                    what: "target for the platform",
                    value: target.clone(),
                    reason: format!(
                        "--platform {platform} builds for {}-* targets; leave out --target to get its static one",
                        platform.rust_arch()
                    ),
                });
            }
        }
        if let Some(level) = self.image.compression_level {
            self.image.compression.check_level(level)?;
        }
        // The source first: a missing one should not wait for an engine or a pull.
        std::fs::metadata(&self.source.path).map_err(|source| Error::SourceUnreadable {
            path: self.source.path.clone(),
            source,
        })?;
        let outputs = [
            ("OCI layout", &self.outputs.oci_layout),
            ("image archive", &self.outputs.archive),
        ];
        let mut taken = Vec::new();
        for (what, path) in outputs {
            if let Some(path) = path {
                self.check_output(what, path, &taken)?;
                taken.push(path.clone());
            }
        }
        Ok(())
    }

    /// Checks that an output at `path` destroys nothing of the user's: it is not the source,
    /// does not hold it, and is not an output already `taken`. Shells call this for their
    /// own outputs too (a metrics file, a chart) before anything runs.
    pub fn check_output(&self, what: &'static str, path: &Path, taken: &[PathBuf]) -> Result<()> {
        let refuse = |reason: String| Error::InvalidInput {
            what,
            value: path.display().to_string(),
            reason,
        };
        let absolute = |p: &Path| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let output = absolute(path);
        let source = absolute(&self.source.path);
        if source.starts_with(&output) {
            let reason = match source == output {
                true => "it is the source".to_string(),
                false => format!("it holds the source {}", self.source.path.display()),
            };
            return Err(refuse(reason));
        }
        if let Some(other) = taken.iter().find(|t| absolute(t) == output) {
            return Err(refuse(format!(
                "{} is already an output of this build",
                other.display()
            )));
        }
        Ok(())
    }

    /// Several platforms make one image each and an index over them: what names one
    /// architecture, or holds one image, cannot apply. (Part of [`Request::validate`].)
    pub fn validate_platforms(&self) -> Result<()> {
        let listed = || {
            let names: Vec<String> = self.platforms.iter().map(|p| p.to_string()).collect();
            names.join(",")
        };
        let refuse = |reason: String| Error::InvalidInput {
            what: "platforms",
            value: listed(),
            reason,
        };
        for (i, platform) in self.platforms.iter().enumerate() {
            if self.platforms[..i].contains(platform) {
                return Err(refuse(format!("{platform} is listed twice")));
            }
        }
        if let Some(load) = self.load_platform {
            if !self.platforms.contains(&load) {
                return Err(refuse(format!(
                    "--load-platform {load} is not one of them; load one that is built"
                )));
            }
        }
        if self.platforms.len() < 2 {
            return Ok(());
        }
        let single = [
            (
                self.target.is_some(),
                "--target names one architecture; leave it out and each platform gets its static target",
            ),
            (
                self.outputs.sbom.is_some(),
                "an SBOM describes one binary; build each platform on its own with --sbom",
            ),
            (
                self.bases.iter().any(|b| !matches!(b, BaseRef::Scratch)),
                "a base is one platform's image; several platforms are built FROM scratch (or build each platform on its own base)",
            ),
            (
                self.is_prebuilt(),
                "a prebuilt binary is for one platform; package each with its own --platform",
            ),
        ];
        match single.iter().find(|(given, _)| *given) {
            Some((_, reason)) => Err(refuse(reason.to_string())),
            None => Ok(()),
        }
    }

    /// Whether the source is a binary built elsewhere, which is packaged without a compile.
    pub fn is_prebuilt(&self) -> bool {
        crate::source::is_prebuilt(&self.source.path)
    }

    /// A prebuilt binary is packaged as it is: what would change its compile cannot apply.
    /// (Where a compile would run, `--builder`, is moot rather than wrong: a service sets it.)
    fn check_prebuilt(&self) -> Result<()> {
        let overrides = &self.overrides;
        let compile_options = [
            ("--target", self.target.is_some()),
            ("--opt-level", overrides.opt_level.is_some()),
            ("--lto", overrides.lto.is_some()),
            ("--codegen-units", overrides.codegen_units.is_some()),
            ("--strip/--no-strip", overrides.strip.is_some()),
            ("--panic", overrides.panic.is_some()),
            ("--target-cpu", overrides.target_cpu.is_some()),
            ("--static/--no-static", overrides.static_link.is_some()),
        ];
        let given: Vec<&str> = compile_options
            .iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| *name)
            .collect();
        if !given.is_empty() {
            return Err(Error::InvalidInput {
                what: "options for a prebuilt binary",
                value: given.join(" "),
                reason: format!(
                    "{} is a prebuilt executable, packaged as it is: options that change a compile do not apply (build it with them where it is built, or give ruchy-image its source)",
                    self.source.path.display()
                ),
            });
        }
        if self.presets.len() > 1 {
            return Err(Error::InvalidInput {
                what: "presets for a prebuilt binary",
                value: self
                    .presets
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(","),
                reason: format!(
                    "{} is a prebuilt executable: there is one binary, so no presets to compare (compare takes a source)",
                    self.source.path.display()
                ),
            });
        }
        Ok(())
    }

    fn wants_engine(&self) -> bool {
        (self.builder != BuilderChoice::Local && !self.is_prebuilt())
            || self.outputs.load != Load::Never
            || self.bases.iter().any(|b| matches!(b, BaseRef::Engine(_)))
    }

    fn needs_engine(&self) -> bool {
        (self.builder == BuilderChoice::Docker && !self.is_prebuilt())
            || self.outputs.load == Load::Always
    }
}

/// A request resolved: the engine connected, the bases read, the compiler and the outputs
/// chosen. Resolving fails fast, before any compile, on bad input and unwritable outputs.
pub struct Plan {
    request: Request,
    engine: Option<Engine>,
    /// `None` for a prebuilt binary, which needs no compile.
    compiler: Option<Box<dyn Compiler>>,
    bases: Vec<(String, Option<Arc<Base>>)>,
    publishers: Vec<Box<dyn Publisher>>,
    probe: Option<ColdStartProbe>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("request", &self.request)
            .field("engine", &self.engine.as_ref().map(|e| &e.host))
            .field("compiler", &self.builder())
            .field("publishers", &self.publishers.len())
            .finish()
    }
}

impl Plan {
    /// Resolves `request`: connects to the engine if one is wanted, reads every base, finds
    /// the builder image, and chooses the outputs (each build checks they can be written
    /// before it compiles).
    pub async fn resolve(request: Request, events: &Events) -> Result<Plan> {
        request.validate()?;
        crate::source::check_transpiler(&request.source)?;
        let prebuilt = request.is_prebuilt();
        if prebuilt {
            request.check_prebuilt()?;
        }
        let engine = connect(&request).await?;
        check_engine_reads(&request, engine.as_ref())?;
        sweep_leftovers(&request, engine.as_ref(), events).await;
        if request.outputs.load == Load::IfEngine && engine.is_none() && request.tag.is_some() {
            events.emit(Event::Warning {
                message: "no Docker engine answers: the image is not loaded".into(),
            });
        }

        let mut bases = Vec::with_capacity(request.bases.len());
        for reference in &request.bases {
            let base = crate::base::load(
                reference,
                engine.as_ref(),
                &request.registry,
                &request.source.cache_dir,
                events,
            )
            .await?;
            bases.push((reference.to_string(), base.map(Arc::new)));
        }

        let output = request.compiler_output;
        let compiler: Option<Box<dyn Compiler>> = match (&engine, request.builder) {
            _ if prebuilt => None,
            (Some(engine), BuilderChoice::Auto | BuilderChoice::Docker) => {
                let cache_dir = &request.source.cache_dir;
                let requested = request.builder_image.as_deref();
                let image = BuilderImage::resolve(engine, requested, cache_dir, events).await?;
                Some(Box::new(DockerCompiler::new(
                    engine.clone(),
                    image,
                    cache_dir.clone(),
                    output.color,
                    output.quiet,
                )))
            }
            _ => {
                let cache_dir = request.source.cache_dir.clone();
                let (color, quiet) = (output.color, output.quiet);
                Some(Box::new(
                    crate::fsutil::blocking(move || LocalCompiler::new(cache_dir, color, quiet))
                        .await?,
                ))
            }
        };

        let mut publishers: Vec<Box<dyn Publisher>> = Vec::new();
        let loads = request.outputs.load != Load::Never;
        if let Some(dir) = &request.outputs.oci_layout {
            publishers.push(Box::new(OciLayoutPublisher { dir: dir.clone() }));
        }
        if let Some(file) = &request.outputs.archive {
            publishers.push(Box::new(ArchivePublisher {
                file: file.clone(),
                mtime: request.source_date_epoch,
            }));
        }
        // Registries after the files: a push puts a tag others see, but only once every blob
        // is up (and a failure before leaves the files uncommitted too).
        for (index, reference) in request.outputs.push.iter().enumerate() {
            publishers.push(Box::new(RegistryPublisher {
                reference: reference.clone(),
                options: request.registry.clone(),
                mount_from: request.outputs.push[..index].to_vec(),
                tag_per_image: request.presets.len() > 1 || request.bases.len() > 1,
                events: events.clone(),
            }));
        }
        // The engine last: a load moves a tag that other programs see at once, so it is the
        // step an interruption should be least likely to cut off from the rest.
        if let (Some(engine), true) = (&engine, loads) {
            publishers.push(Box::new(EnginePublisher {
                engine: engine.clone(),
                mtime: request.source_date_epoch,
            }));
        }
        // Cold starts run what the engine publisher loaded.
        let probe = match (&engine, loads, request.cold_start_runs) {
            (Some(engine), true, runs) if runs > 0 => Some(ColdStartProbe {
                engine: engine.clone(),
                runs,
            }),
            _ => None,
        };
        Ok(Plan {
            request,
            engine,
            compiler,
            bases,
            publishers,
            probe,
        })
    }

    /// The engine in use, if any.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The compile backend (`local`, `docker`), or `prebuilt` when there is nothing to compile.
    pub fn builder(&self) -> &'static str {
        self.compiler.as_ref().map_or("prebuilt", |c| c.name())
    }

    /// Whether this builds several platforms (an index; see [`Plan::build_index`]).
    pub fn is_multi_platform(&self) -> bool {
        self.request.platforms.len() > 1
    }

    /// The build options of `preset` on the base at `base`, for the first platform (or the
    /// builder's own).
    fn options(&self, preset: Preset, base: usize) -> BuildOptions {
        self.options_for(preset, base, self.request.platforms.first().copied())
    }

    /// The build options of `preset` on the base at `base` for `platform`.
    fn options_for(&self, preset: Preset, base: usize, platform: Option<Platform>) -> BuildOptions {
        let request = &self.request;
        BuildOptions {
            source: request.source.clone(),
            preset,
            overrides: request.overrides.clone(),
            target: request.target.clone(),
            platform,
            platform_in_tag: false,
            image: request.image.clone(),
            tag: request.tag.clone(),
            base: self.bases[base].1.clone(),
            source_date_epoch: request.source_date_epoch,
            sbom: request.outputs.sbom.clone(),
            no_sbom_referrer: request.outputs.no_sbom,
        }
    }

    /// Builds the one preset on the one base for one platform and writes the image to every
    /// output.
    pub async fn build(&self, events: &Events) -> Result<BuildRecord> {
        if self.is_multi_platform() {
            return Err(Error::InvalidInput {
                what: "request",
                value: format!("{} platforms", self.request.platforms.len()),
                reason: "several platforms make an image index: use build_index".into(),
            });
        }
        let (&[preset], [_]) = (self.request.presets.as_slice(), self.bases.as_slice()) else {
            return Err(Error::InvalidInput {
                what: "request",
                value: format!(
                    "{} presets on {} bases",
                    self.request.presets.len(),
                    self.bases.len()
                ),
                reason: "a build takes one preset and one base; compare takes several".into(),
            });
        };
        let options = self.options(preset, 0);
        build(&options, self.compiler.as_deref(), &self.publishers, events).await
    }

    /// Builds the one preset for every platform and writes an OCI image index over their
    /// images to every output (the engine gets the load platform's image).
    pub async fn build_index(&self, events: &Events) -> Result<IndexRecord> {
        let request = &self.request;
        let (&[preset], [_]) = (request.presets.as_slice(), self.bases.as_slice()) else {
            return Err(Error::InvalidInput {
                what: "request",
                value: format!("{} presets", request.presets.len()),
                reason: "a multi-platform build takes one preset and one base".into(),
            });
        };
        let each: Vec<BuildOptions> = request
            .platforms
            .iter()
            .map(|p| self.options_for(preset, 0, Some(*p)))
            .collect();
        let host = Platform::of_target(std::env::consts::ARCH);
        let load = request
            .load_platform
            .or(host.filter(|h| request.platforms.contains(h)))
            .unwrap_or(request.platforms[0]);
        crate::build::build_index(
            &each,
            load.architecture(),
            self.compiler.as_deref(),
            &self.publishers,
            events,
        )
        .await
    }

    /// Builds a Lambda deployment zip at `zip` (see [`crate::build::lambda_zip`]); with
    /// `image`, also the container-image function of the same binary, written to the outputs:
    /// `bootstrap` at Lambda's path, the function's directory as the working directory. The
    /// zip is written last, so a failed image leaves none.
    pub async fn lambda(
        &self,
        zip: &Path,
        image: bool,
        events: &Events,
    ) -> Result<crate::metrics::LambdaRecord> {
        let (&[preset], [_]) = (self.request.presets.as_slice(), self.bases.as_slice()) else {
            return Err(Error::InvalidInput {
                what: "request",
                value: format!("{} presets", self.request.presets.len()),
                reason: "a Lambda package takes one preset".into(),
            });
        };
        if self.is_multi_platform() {
            return Err(Error::InvalidInput {
                what: "platforms",
                value: format!("{} platforms", self.request.platforms.len()),
                reason: "a Lambda function runs on one architecture: package each platform with its own --platform and -o".into(),
            });
        }
        let mut options = self.options(preset, 0);
        let compiler = self.compiler.as_deref();
        let (zipped, mut record) =
            crate::build::lambda_zip(&options, compiler, zip, events).await?;
        if image {
            options.image.path = Some(crate::lambda::IMAGE_BOOTSTRAP.into());
            options.image.workdir = crate::lambda::IMAGE_TASK_DIR.into();
            let built = build(&options, compiler, &self.publishers, events).await?;
            record.image = Some(built.image);
            record.outputs = built.outputs;
        }
        crate::fsutil::write_file_atomically("the Lambda zip", zip, &zipped)?;
        Ok(record)
    }

    /// Builds every preset on every base (or for every platform), in order; a failed preset
    /// is recorded and the others still run. Each preset's image goes to the outputs (under
    /// its own `BIN:PRESET` unless a tag is set) and, when asked, its cold start is timed.
    pub async fn compare(&self, events: &Events) -> Result<Vec<(String, Comparison)>> {
        let preset = self.request.presets[0];
        let mut comparisons = Vec::new();
        // Several platforms are built FROM scratch only (see validate_platforms): one
        // comparison per platform, each image under its own BIN:PRESET-ARCH.
        if self.is_multi_platform() {
            for platform in &self.request.platforms {
                events.emit(Event::PlatformStarted {
                    platform: platform.to_string(),
                });
                let mut options = self.options_for(preset, 0, Some(*platform));
                options.platform_in_tag = true;
                let comparison = self.compare_presets(&options, events).await?;
                comparisons.push((platform.to_string(), comparison));
            }
            return Ok(comparisons);
        }
        for (index, (base, _)) in self.bases.iter().enumerate() {
            if self.bases.len() > 1 {
                events.emit(Event::BaseStarted { base: base.clone() });
            }
            let options = self.options(preset, index);
            let comparison = self.compare_presets(&options, events).await?;
            comparisons.push((base.clone(), comparison));
        }
        Ok(comparisons)
    }

    /// Every preset with `options` otherwise.
    async fn compare_presets(&self, options: &BuildOptions, events: &Events) -> Result<Comparison> {
        compare(
            options,
            &self.request.presets,
            self.compiler.as_deref(),
            &self.publishers,
            self.probe.as_ref(),
            events,
        )
        .await
    }
}

/// Removes what runs that did not finish (killed, or cut off from the engine) left behind:
/// their builder containers, and temp files beside this request's outputs and in the cache.
/// A sweep that fails only costs disk space, so it is a warning, not an error.
async fn sweep_leftovers(request: &Request, engine: Option<&Engine>, events: &Events) {
    if let Some(engine) = engine {
        match engine.remove_orphans().await {
            Ok(removed) if !removed.is_empty() => events.note(format!(
                "removed {} container(s) left by a run that did not finish",
                removed.len()
            )),
            Ok(_) => {}
            Err(e) => events.emit(Event::Warning {
                message: format!("leftover containers were not removed: {e}"),
            }),
        }
    }
    let cache = &request.source.cache_dir;
    let mut dirs = vec![cache.join("layers"), cache.join("metadata")];
    if let Ok(artifacts) = std::fs::read_dir(cache.join("artifacts")) {
        dirs.extend(artifacts.flatten().map(|e| e.path()));
    }
    // An existing layout gets its index and blobs written in place.
    if let Some(layout) = &request.outputs.oci_layout {
        dirs.extend([layout.clone(), layout.join("blobs/sha256")]);
    }
    let outputs = [&request.outputs.oci_layout, &request.outputs.archive];
    for output in outputs.into_iter().flatten() {
        if let Some(parent) = std::path::absolute(output)
            .ok()
            .and_then(|p| p.parent().map(Into::into))
        {
            dirs.push(parent);
        }
    }
    let removed = crate::fsutil::blocking(move || {
        dirs.iter()
            .map(|d| crate::cleanup::sweep_temp(d))
            .sum::<usize>()
    })
    .await;
    if removed > 0 {
        events.note(format!(
            "removed {removed} temp file(s) left by a run that did not finish"
        ));
    }
}

/// Refuses, before anything runs, a load of zstd layers into an engine that cannot read them:
/// Docker reads zstd layers from 23.0 on; Podman does (4.3 does).
fn check_engine_reads(request: &Request, engine: Option<&Engine>) -> Result<()> {
    let (Some(engine), Codec::Zstd) = (engine, request.image.compression) else {
        return Ok(());
    };
    let loads = request.outputs.load != Load::Never;
    let major: u32 = engine
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if loads && !engine.podman && major < 23 {
        return Err(Error::InvalidInput {
            what: "compression for this engine",
            value: "zstd".into(),
            reason: format!(
                "the engine at {} is Docker {}, which cannot load zstd layers (Docker 23 and later, and containerd, can): add --no-load to write zstd only to layouts, archives and registries, or leave the compression gzip",
                engine.host, engine.version
            ),
        });
    }
    Ok(())
}

/// Connects to the engine when the request wants one. `None` when it is only wanted (the
/// default builder, a load if possible) and does not answer.
async fn connect(request: &Request) -> Result<Option<Engine>> {
    if !request.wants_engine() {
        return Ok(None);
    }
    // An engine named in DOCKER_HOST is one the user means: not answering is an error, not a
    // reason to quietly build without it.
    let named = std::env::var_os("DOCKER_HOST").is_some_and(|host| !host.is_empty());
    match Engine::connect().await {
        Ok(engine) => Ok(Some(engine)),
        Err(e) if request.needs_engine() || named => Err(e),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_listed_once_each() {
        let mut request = Request::new("Cargo.toml");
        request.presets = vec![Preset::None, Preset::Nasa, Preset::None];
        let error = request.validate().unwrap_err();
        assert!(error.is_usage());
        assert_eq!(
            error.to_string(),
            "invalid presets `none,nasa,none`: none is listed twice"
        );
        request.presets.clear();
        assert!(request.validate().unwrap_err().is_usage());
        request.presets = vec![Preset::Aggressive];
        request.validate().unwrap();
    }

    #[test]
    fn outputs_never_overwrite_the_source_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("app.rs");
        std::fs::write(&source, "fn main() {}").unwrap();
        let mut request = Request::new(&source);
        request.outputs.archive = Some(source.clone());
        let error = request.validate().unwrap_err().to_string();
        assert!(error.ends_with("it is the source"), "{error}");
        request.outputs.archive = None;
        request.outputs.oci_layout = Some(dir.path().to_path_buf());
        let error = request.validate().unwrap_err().to_string();
        assert!(error.contains("it holds the source"), "{error}");
        let out = dir.path().join("out");
        request.outputs.oci_layout = Some(out.clone());
        request.outputs.archive = Some(dir.path().join("./out"));
        let error = request.validate().unwrap_err().to_string();
        assert!(
            error.contains("is already an output of this build"),
            "{error}"
        );
        request.outputs.archive = Some(dir.path().join("out.tar"));
        request.validate().unwrap();
    }

    #[test]
    fn a_missing_source_is_reported_before_anything_runs() {
        let request = Request::new("/no/such/app.rs");
        assert!(matches!(
            request.validate(),
            Err(Error::SourceUnreadable { .. })
        ));
    }

    #[test]
    fn only_a_docker_builder_or_a_required_load_needs_an_engine() {
        let mut request = Request::new("app.rs");
        assert!(request.wants_engine() && !request.needs_engine());
        request.builder = BuilderChoice::Local;
        assert!(!request.wants_engine());
        request.bases = vec!["alpine:3.20".parse().unwrap()];
        assert!(request.wants_engine() && !request.needs_engine());
        request.outputs.load = Load::Always;
        assert!(request.needs_engine());
    }
}
