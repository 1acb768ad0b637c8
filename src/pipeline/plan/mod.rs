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

use std::path::Path;
use std::sync::Arc;

use crate::adapters::engine::Engine;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::core::metrics::{BuildRecord, IndexRecord};
use crate::core::platform::Platform;
use crate::core::preset::Preset;
use crate::pipeline::base::Base;
use crate::pipeline::build::{build, BuildOptions};
use crate::pipeline::compare::{compare, ColdStartProbe, Comparison};
use crate::pipeline::compile::{BuilderImage, Compiler, DockerCompiler, LocalCompiler};
use crate::pipeline::publish::Publisher;

mod request;
pub mod settings;
mod sinks;

pub use request::{BuilderChoice, CompilerOutput, Load, Outputs, Request};
use sinks::connect;
pub use sinks::Sinks;

/// What a plan runs on when the caller brings it, in place of what the request resolves to
/// (ko's `withBuilder`: the orchestration tested without a compiler or an engine).
#[derive(Default)]
pub struct Parts {
    /// The engine.
    pub engine: EngineChoice,
    /// The compiler; the request's builder (local cargo or a builder container) when unset.
    /// A prebuilt binary takes none either way.
    pub compiler: Option<Box<dyn Compiler>>,
}

/// Where a plan's engine comes from.
#[derive(Debug, Default)]
pub enum EngineChoice {
    /// Connected to as the request asks: when it wants one, and an error when it needs one
    /// that does not answer.
    #[default]
    Connect,
    /// This one, or none at all (`Given(None)`: a request that needs an engine then fails).
    Given(Option<Engine>),
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
    /// The key that signs provenance (`--sign-key`), read before anything runs.
    signer: Option<crate::pipeline::attest::Signer>,
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
    /// before it compiles). Resolving only decides: nothing is removed or written until a
    /// build runs.
    pub async fn resolve(request: Request, events: &Events) -> Result<Plan> {
        Plan::resolve_with(request, Parts::default(), events).await
    }

    /// [`Plan::resolve`] with the engine or the compiler the caller brings (a test's
    /// stand-in compiler, an engine already connected) in place of the ones the request
    /// would resolve to.
    pub async fn resolve_with(request: Request, parts: Parts, events: &Events) -> Result<Plan> {
        request.validate()?;
        crate::pipeline::source::check_transpiler(&request.source)?;
        let signer = match &request.outputs.sign_key {
            Some(path) => Some(crate::pipeline::attest::Signer::read(path)?),
            None => None,
        };
        let prebuilt = request.is_prebuilt();
        if prebuilt {
            request.check_prebuilt()?;
        }
        let engine = match parts.engine {
            EngineChoice::Connect => {
                connect(request.wants_engine(), request.needs_engine()).await?
            }
            EngineChoice::Given(None) if request.outputs.load == Load::Always => {
                return Err(Error::EngineUnavailable {
                    host: "none".into(),
                    reason: "the plan was given no engine, and the request loads into one".into(),
                })
            }
            EngineChoice::Given(engine) => engine,
        };
        let Sinks { publishers, .. } = Sinks::new(&request, engine.clone(), events)?;

        let mut bases = Vec::with_capacity(request.bases.len());
        for reference in &request.bases {
            let base = crate::pipeline::base::load(
                reference,
                engine.as_ref(),
                &request.registry,
                &request.source.cache_dir,
                request.base_limits,
                events,
            )
            .await?;
            bases.push((reference.to_string(), base.map(Arc::new)));
        }

        let output = request.compiler_output;
        let compiler: Option<Box<dyn Compiler>> = match (&engine, request.builder) {
            _ if prebuilt => None,
            _ if parts.compiler.is_some() => parts.compiler,
            (Some(engine), BuilderChoice::Auto | BuilderChoice::Docker) => {
                let cache_dir = &request.source.cache_dir;
                let requested = request.builder_image.as_deref();
                let image =
                    BuilderImage::resolve_with(engine, requested, request.pull, cache_dir, events)
                        .await?;
                // Unless told, a build may use three quarters of the engine's memory.
                let mut sandbox = request.sandbox.clone();
                let machine = engine.memory_total().await.unwrap_or(0);
                sandbox.limits = sandbox.limits.with_memory_of(machine);
                Some(Box::new(DockerCompiler::new(
                    engine.clone(),
                    image,
                    cache_dir.clone(),
                    sandbox,
                    output.color,
                    output.quiet,
                )))
            }
            _ => {
                let cache_dir = request.source.cache_dir.clone();
                let (color, quiet) = (output.color, output.quiet);
                Some(Box::new(
                    crate::adapters::fsutil::blocking(move || {
                        LocalCompiler::new(cache_dir, color, quiet)
                    })
                    .await?,
                ))
            }
        };

        let loads = request.outputs.load != Load::Never;
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
            signer,
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
            preset_overrides: request.preset_overrides.clone(),
            target: request.target.clone(),
            platform,
            platform_in_tag: false,
            image: request.image.clone(),
            tag: request.tag.clone(),
            base: self.bases[base].1.clone(),
            source_date_epoch: request.source_date_epoch,
            sbom: request.outputs.sbom.clone(),
            no_sbom_referrer: request.outputs.no_sbom,
            sbom_format: request.outputs.sbom_format,
            provenance: (!request.outputs.no_provenance).then(|| {
                crate::pipeline::build::ProvenanceOptions {
                    signer: self.signer.clone(),
                    request: serde_json::to_value(request).unwrap_or_default(),
                }
            }),
            no_embed_deps: request.no_embed_deps,
            budgets: request.budgets.clone(),
            settings: request.settings.clone(),
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
        self.sweep(events).await;
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
        self.sweep(events).await;
        crate::pipeline::build::build_index(
            &each,
            load.architecture(),
            self.compiler.as_deref(),
            &self.publishers,
            events,
        )
        .await
    }

    /// Builds a Lambda deployment zip at `zip` (see [`crate::pipeline::build::lambda_zip`]); with
    /// `image`, also the container-image function of the same binary, written to the outputs:
    /// `bootstrap` at Lambda's path, the function's directory as the working directory. The
    /// zip is written last, so a failed image leaves none.
    pub async fn lambda(
        &self,
        zip: &Path,
        image: bool,
        events: &Events,
    ) -> Result<crate::core::metrics::LambdaRecord> {
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
        self.sweep(events).await;
        let (zipped, mut record) =
            crate::pipeline::build::lambda_zip(&options, compiler, zip, events).await?;
        if image {
            options.image.path = Some(crate::pipeline::lambda::IMAGE_BOOTSTRAP.into());
            options.image.workdir = crate::pipeline::lambda::IMAGE_TASK_DIR.into();
            let built = build(&options, compiler, &self.publishers, events).await?;
            record.image = Some(built.image);
            record.outputs = built.outputs;
        }
        crate::adapters::fsutil::write_file_atomically("the Lambda zip", zip, &zipped)?;
        Ok(record)
    }

    /// Builds every preset on every base (or for every platform), in order; a failed preset
    /// is recorded and the others still run. Each preset's image goes to the outputs (under
    /// its own `BIN:PRESET` unless a tag is set) and, when asked, its cold start is timed.
    pub async fn compare(&self, events: &Events) -> Result<Vec<(String, Comparison)>> {
        let preset = self.request.presets[0];
        let mut comparisons = Vec::new();
        self.sweep(events).await;
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

    /// Removes what earlier runs that did not finish left behind, before this one writes
    /// beside it: part of the run, so that resolving a plan stays free of side effects.
    async fn sweep(&self, events: &Events) {
        sweep_leftovers(&self.request, self.engine.as_ref(), events).await;
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
        match crate::adapters::cache_volumes::remove_stale(engine).await {
            Ok(0) => {}
            Ok(removed) => events.note(format!(
                "removed {removed} target volume(s) of builds that did not finish or projects that are gone"
            )),
            Err(e) => events.emit(Event::Warning {
                message: format!("stale target volumes were not removed: {e}"),
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
    let removed = crate::adapters::fsutil::blocking(move || {
        dirs.iter()
            .map(|d| crate::adapters::cleanup::sweep_temp(d))
            .sum::<usize>()
    })
    .await;
    if removed > 0 {
        events.note(format!(
            "removed {removed} temp file(s) left by a run that did not finish"
        ));
    }
}
