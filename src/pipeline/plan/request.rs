//! What a user asks for, as plain data: the source, the presets, where to compile, the
//! bases and the outputs. [`Request::check`] refuses bad input before anything runs, and
//! [`Request::validate`] adds what only this machine's files can tell.
//!
//! A request is also what a build asks of a `ruchy-image serve`: its JSON holds what the
//! build asks for (presets, overrides, image, bases, tag, budgets, pushes), never where this
//! machine keeps things (the source's path, the cache, output files, credentials, the
//! builder), which the machine that runs it fills in. The CLI, `build --server` and the HTTP
//! API read and check it with the same code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::platform::Platform;
use crate::core::preset::{Overrides, Panic, Preset};
use crate::pipeline::base::BaseRef;
use crate::pipeline::build::{default_cache_dir, ImageOptions};
use crate::pipeline::oci::ImageRef;
use crate::pipeline::publish::{parse_reference, RegistryOptions};
use crate::pipeline::source::SourceOptions;

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

/// Where the image is written. In a request's JSON, the pushes (made by whoever runs the
/// build, with its credentials) and whether to attach the SBOM; files and the engine are the
/// machine's that runs it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outputs {
    /// Load into the engine.
    #[serde(skip)]
    pub load: Load,
    /// An OCI image layout directory.
    #[serde(skip)]
    pub oci_layout: Option<PathBuf>,
    /// One tarball that `docker load`, skopeo and umoci accept.
    #[serde(skip)]
    pub archive: Option<PathBuf>,
    /// Registry references to push to (`REGISTRY/REPOSITORY[:TAG]`), without a daemon.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<String>,
    /// A CycloneDX SBOM of the binary's crates.
    #[serde(skip)]
    pub sbom: Option<PathBuf>,
    /// No SBOM referrer in layouts and registries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_sbom: bool,
    /// The SBOM's format (file and referrer).
    #[serde(skip_serializing_if = "is_default")]
    pub sbom_format: crate::pipeline::sbom::SbomFormat,
    /// No SLSA provenance referrer in layouts and registries.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_provenance: bool,
    /// The private key that signs the provenance (the machine's that runs the build: a
    /// service signs with its own).
    #[serde(skip)]
    pub sign_key: Option<PathBuf>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// How the compiler's own output should look.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompilerOutput {
    /// Ask cargo for coloured diagnostics (for a terminal).
    pub color: bool,
    /// Ask cargo for no status lines, only diagnostics.
    pub quiet: bool,
}

/// Everything that describes a build or a comparison, as plain data. Its JSON (see the
/// module's documentation) is what travels to a service; fields marked `skip` stay here.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    /// The program: a Cargo project, a `.rs` or a `.ruchy` file.
    pub source: SourceOptions,
    /// The presets: one for a build, any number for a comparison (each once).
    pub presets: Vec<Preset>,
    /// Per-flag overrides on top of every preset.
    pub overrides: Overrides,
    /// Per-flag overrides of one preset, over [`Request::overrides`] (a project's
    /// `[presets.NAME]` settings table).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub preset_overrides: BTreeMap<Preset, Overrides>,
    /// The target triple; the compiler's own when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The platforms: none for the builder's own; one; or several, published as an OCI image
    /// index over one image per platform. Each gets its static target when no target is given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// Of several platforms, the one the engine loads (and a docker-archive holds); the
    /// host's when it is built, else the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_platform: Option<Platform>,
    /// What goes into the image besides the binary.
    pub image: ImageOptions,
    /// The bases: one for a build; a comparison builds every preset on each.
    pub bases: Vec<BaseRef>,
    /// The image's name; `BIN:PRESET` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<ImageRef>,
    /// Timestamp of everything in the image (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// Where to compile.
    #[serde(skip)]
    pub builder: BuilderChoice,
    /// The builder image for the docker builder; `rust:1-alpine`, or one made by
    /// `builder import-host`, when unset.
    #[serde(skip)]
    pub builder_image: Option<String>,
    /// When the docker builder's image is pulled: by default only when it is missing.
    #[serde(skip)]
    pub pull: crate::pipeline::compile::PullPolicy,
    /// What the builder containers' code may reach and use (the docker builder's): the
    /// service sets its own.
    #[serde(skip)]
    pub sandbox: crate::pipeline::compile::Sandbox,
    /// Where the image goes.
    pub outputs: Outputs,
    /// Link no list of its crates into the binary (`--no-embed-deps`; see
    /// [`crate::pipeline::auditable`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_embed_deps: bool,
    /// Cold starts to time per preset of a comparison (images loaded into the engine).
    #[serde(skip)]
    pub cold_start_runs: u32,
    /// How the compiler's output should look.
    #[serde(skip)]
    pub compiler_output: CompilerOutput,
    /// Credentials and plain-HTTP hosts for pushes.
    #[serde(skip)]
    pub registry: RegistryOptions,
    /// Size budgets: a build over one is measured and publishes nothing.
    #[serde(skip_serializing_if = "crate::core::budget::Budgets::is_empty")]
    pub budgets: crate::core::budget::Budgets,
    /// Where each setting came from, by its flag's long name (`presets.NAME.KEY` for a
    /// preset's table): `flag`, `env NAME`, `request` (a service's parameters),
    /// `FILE:LINE` (the project's settings) or `default`. Empty until the settings are
    /// resolved ([`super::settings::resolve`]); a request that travels with it resolved is
    /// not resolved again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// What reading one layer of a base may cost: this machine's to bound.
    #[serde(skip)]
    pub base_limits: crate::pipeline::base::Limits,
}

impl Default for Request {
    /// What a request's JSON leaves out: [`Request::new`]'s defaults, with no source yet.
    fn default() -> Request {
        Request::new(PathBuf::new())
    }
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
                checkout: None,
            },
            presets: vec![Preset::Balanced],
            overrides: Overrides::default(),
            preset_overrides: BTreeMap::new(),
            target: None,
            platforms: Vec::new(),
            load_platform: None,
            image: ImageOptions::default(),
            bases: vec![BaseRef::Scratch],
            tag: None,
            source_date_epoch: 0,
            builder: BuilderChoice::Auto,
            builder_image: None,
            pull: crate::pipeline::compile::PullPolicy::Missing,
            sandbox: crate::pipeline::compile::Sandbox::default(),
            outputs: Outputs::default(),
            no_embed_deps: false,
            cold_start_runs: 0,
            compiler_output: CompilerOutput::default(),
            registry: RegistryOptions::default(),
            budgets: crate::core::budget::Budgets::default(),
            settings: BTreeMap::new(),
            base_limits: crate::pipeline::base::Limits::default(),
        }
    }

    /// The overrides `preset` builds with: its own table's over those of every preset.
    pub fn overrides_for(&self, preset: Preset) -> Overrides {
        match self.preset_overrides.get(&preset) {
            Some(own) => own.over(&self.overrides),
            None => self.overrides.clone(),
        }
    }

    /// Checks what can be checked without touching anything, then that the source is there
    /// and that no output would destroy it or another output.
    pub fn validate(&self) -> Result<()> {
        self.check()?;
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

    /// Checks what the request asks for (of the files, only whether the source is a prebuilt
    /// binary): what a service checks before it accepts a build, in a local build's words.
    pub fn check(&self) -> Result<()> {
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
        if self.presets.contains(&Preset::Size)
            && self.overrides_for(Preset::Size).panic == Some(Panic::Unwind)
        {
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
        // Caught here, not after a compile: scratch has no loader for a dynamic binary.
        let on_scratch = self.bases.iter().all(|b| matches!(b, BaseRef::Scratch));
        let dynamic = self
            .presets
            .iter()
            .any(|p| self.overrides_for(*p).static_link == Some(false));
        if dynamic && on_scratch && !self.is_prebuilt() {
            return Err(Error::InvalidInput {
                what: "static linking",
                value: "--no-static-link".into(),
                reason: "a dynamically linked binary needs its loader and libraries, which a FROM scratch image does not have; drop --no-static-link, or lay it on a base that has them with --base".into(),
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
        self.image.check()?;
        let mut each = self.presets.iter().map(|p| self.overrides_for(*p));
        if each.any(|o| o.codegen_units == Some(0)) {
            return Err(Error::InvalidInput {
                what: "codegen units",
                value: "0".into(),
                reason: "expected a number of 1 or more".into(),
            });
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
        crate::pipeline::source::is_prebuilt(&self.source.path)
    }

    /// A prebuilt binary is packaged as it is: what would change its compile cannot apply.
    /// (Where a compile would run, `--builder`, is moot rather than wrong: a service sets it.)
    pub(super) fn check_prebuilt(&self) -> Result<()> {
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
            (
                "per-preset overrides",
                self.preset_overrides.values().any(|o| !o.is_empty()),
            ),
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

    pub(super) fn wants_engine(&self) -> bool {
        (self.builder != BuilderChoice::Local && !self.is_prebuilt())
            || self.outputs.load != Load::Never
            || self.bases.iter().any(|b| matches!(b, BaseRef::Engine(_)))
    }

    pub(super) fn needs_engine(&self) -> bool {
        (self.builder == BuilderChoice::Docker && !self.is_prebuilt())
            || self.outputs.load == Load::Always
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

    /// The JSON a service gets holds what the build asks for and nothing of this machine:
    /// no paths, no credentials, no builder; read back, it is the same request.
    #[test]
    fn its_json_carries_the_build_and_nothing_of_this_machine() {
        let mut request = Request::new("/home/me/app/Cargo.toml");
        request.presets = vec![Preset::Size];
        request.source.bin = Some("server".into());
        request.source.cache_dir = "/home/me/.cache/ruchy-image".into();
        request.overrides.lto = Some(crate::core::preset::Lto::Thin);
        request.platforms = vec![Platform::Arm64];
        request.image.env = vec!["GREETING=hi".into()];
        request.bases = vec!["docker://registry.example/base:1".parse().unwrap()];
        request.tag = Some("app:1".parse().unwrap());
        request.outputs.oci_layout = Some("/home/me/out".into());
        request.outputs.push = vec!["registry.example/app:1".into()];
        request.registry.credentials = Some(("me".into(), "secret".into()));
        request.builder = BuilderChoice::Local;
        request.budgets.max_binary = Some(
            crate::core::budget::Budget::parse(crate::core::budget::Limit::Binary, "400KB")
                .unwrap(),
        );
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "source": {"bin": "server"},
                "presets": ["size"],
                "overrides": {"lto": "thin"},
                "platforms": ["linux/arm64"],
                "image": {
                    "user": "nonroot:65532:65532", "env": ["GREETING=hi"], "ports": [],
                    "workdir": "/", "labels": {}, "path": null, "compression": "gzip",
                    "compression_level": null
                },
                "bases": ["docker://registry.example/base:1"],
                "tag": "app:1",
                "source_date_epoch": 0,
                "outputs": {"push": ["registry.example/app:1"]},
                "budgets": {"max_binary": "400KB"},
            })
        );
        let back: Request = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert_eq!(back.budgets, request.budgets);
        assert!(back.registry.credentials.is_none() && back.outputs.oci_layout.is_none());
        // A value the command line would refuse is refused on the way in too.
        let error =
            serde_json::from_value::<Request>(serde_json::json!({"platforms": ["linux/s390x"]}))
                .unwrap_err();
        assert!(error.to_string().contains("linux/s390x"), "{error}");
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
