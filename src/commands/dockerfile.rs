//! `ruchy-image dockerfile`: the same build as `ruchy-image build --builder docker`, written
//! as a multi-stage Dockerfile for places that want `docker build` (or a compose `build:`).
//!
//! One template, two final stages: [`Variant::Scratch`] (`dockerfiles/Dockerfile`: the binary,
//! `/etc/passwd` and `/etc/group` on `FROM scratch`, user 65532) and [`Variant::Alpine`]
//! (`dockerfiles/Dockerfile.alpine`: a base with a shell, the user made with `adduser` as the
//! book chapter does); and two ways of keeping compiled dependencies: [`Cache::Layer`] (any
//! builder, the classic one too: dependencies compile in a layer keyed on the manifests) and
//! [`Cache::Mounts`] (`dockerfiles/Dockerfile.buildkit`: BuildKit cache mounts for cargo's home
//! and the target dir). The files in the repository are exactly what this module prints; a
//! test keeps them that way.
//!
//! The stages and their shell steps are text in `src/dockerfile/stages.Dockerfile.in`; this
//! module fills them in. The preset mapping inside the Dockerfile (its `case` arms, the list of
//! presets) is generated from [`Preset::ALL`] and [`Flags::resolve`], so a preset means the
//! same cargo profile settings and RUSTFLAGS in both places.

use std::path::Path;

use crate::core::error::{Error, Result};
use crate::core::preset::{Flags, Overrides, Preset};
use crate::pipeline::compile::DEFAULT_BUILDER_IMAGE;
use crate::pipeline::oci::image::RuntimeUser;
use crate::pipeline::source::{self, SourceOptions};

/// Which final stage the Dockerfile has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// `FROM ${BASE}` (scratch by default) with `/etc/passwd` and `/etc/group` made in the
    /// build stage; runs as nonroot 65532:65532, like `ruchy-image build`.
    #[default]
    Scratch,
    /// `FROM ${BASE}` (alpine by default), a base with a shell: `adduser -D -u 1000 appuser`,
    /// as the book chapter does; runs as 1000:1000.
    Alpine,
}

impl Variant {
    /// The `BASE` build arg's default.
    pub fn default_base(self) -> &'static str {
        match self {
            Variant::Scratch => "scratch",
            Variant::Alpine => "alpine:3",
        }
    }
}

/// How a `docker build` of the Dockerfile keeps compiled dependencies between builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cache {
    /// Any builder, the classic one too: the dependencies compile in a layer of their own,
    /// from the manifests and stub targets only, so a source change reuses that layer.
    #[default]
    Layer,
    /// BuildKit only (`RUN --mount=type=cache`): cargo's home and the target dir are cache
    /// mounts kept across builds, so a build compiles only what changed, as `ruchy-image
    /// build` does with its volumes. The classic builder refuses the file
    /// ("the --mount option requires BuildKit").
    Mounts,
}

/// What the Dockerfile's build args default to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileOptions {
    /// `OPTIMIZE`.
    pub preset: Preset,
    /// `BIN`; none means the build must be given `--build-arg BIN=NAME`.
    pub bin: Option<String>,
    /// `TARGET`; none means musl when the builder has its std, else the builder's host.
    pub target: Option<String>,
    /// `BUILDER_IMAGE`.
    pub builder_image: String,
    /// `BASE`; none means the variant's default.
    pub base: Option<String>,
    /// The final stage.
    pub variant: Variant,
    /// Dependency layer or BuildKit cache mounts.
    pub cache: Cache,
}

impl Default for DockerfileOptions {
    /// What `ruchy-image dockerfile` prints without arguments: `dockerfiles/Dockerfile`.
    fn default() -> Self {
        DockerfileOptions {
            preset: Preset::Balanced,
            bin: None,
            target: None,
            builder_image: DEFAULT_BUILDER_IMAGE.to_string(),
            base: None,
            variant: Variant::Scratch,
            cache: Cache::Layer,
        }
    }
}

/// The binary target of the Cargo project at `source` (a directory or its `Cargo.toml`),
/// chosen as `ruchy-image build` chooses it. Single `.rs` and `.ruchy` files are refused: a
/// `docker build` context has to be a Cargo project.
pub fn project_bin(source: &Path, bin: Option<&str>) -> Result<String> {
    let is_project = source.is_dir() || source.file_name() == Some("Cargo.toml".as_ref());
    if !is_project {
        if !source.exists() {
            return Err(Error::SourceUnreadable {
                path: source.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        return Err(Error::InvalidInput {
            what: "source",
            value: source.display().to_string(),
            reason: "a Dockerfile builds a Cargo project (its directory is the build context); \
                     put a single .rs file in one as src/main.rs, or use `ruchy-image build`, \
                     which takes single files"
                .into(),
        });
    }
    let project = source::prepare(&SourceOptions {
        path: source.to_path_buf(),
        bin: bin.map(str::to_string),
        ruchy: None,
        cache_dir: std::env::temp_dir(),
        lambda: false,
        checkout: None,
    })?;
    Ok(project.bin)
}

/// Checks what goes into the Dockerfile unquoted: image references, a target, a binary name.
fn check(what: &'static str, value: &str, allowed: impl Fn(char) -> bool) -> Result<()> {
    if !value.is_empty() && value.chars().all(allowed) {
        return Ok(());
    }
    Err(Error::InvalidInput {
        what,
        value: value.to_string(),
        reason: "expected a non-empty name without spaces, quotes or shell characters".into(),
    })
}

fn image_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-/:@".contains(c)
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

/// The Dockerfile, with the build args' defaults from `options`.
pub fn render(options: &DockerfileOptions) -> Result<String> {
    let base = options
        .base
        .clone()
        .unwrap_or_else(|| options.variant.default_base().to_string());
    check("base", &base, image_char)?;
    check("builder image", &options.builder_image, image_char)?;
    if let Some(bin) = &options.bin {
        check("bin", bin, name_char)?;
    }
    if let Some(target) = &options.target {
        check("target", target, name_char)?;
    }
    let mut out = header(options, &base);
    out += &format!(
        "\nARG BUILDER_IMAGE={builder}\nARG BASE={base}\nARG OPTIMIZE={preset}\nARG BIN={bin}\nARG TARGET={target}\n",
        builder = options.builder_image,
        preset = options.preset,
        bin = options.bin.as_deref().unwrap_or(""),
        target = options.target.as_deref().unwrap_or(""),
    );
    match options.cache {
        Cache::Layer => {
            out += &recipe_stage();
            out += &build_stage("layer-build-stage");
        }
        Cache::Mounts => {
            out += "ARG CACHE_ID=ruchy-image\n";
            out += &build_stage("mounts-build-stage");
        }
    }
    out += &match options.variant {
        Variant::Scratch => fill_user("scratch-stage"),
        Variant::Alpine => fill("alpine-stage", &[]),
    };
    Ok(out)
}

fn header(options: &DockerfileOptions, base: &str) -> String {
    let what = match options.variant {
        Variant::Scratch => {
            "# Multi-stage build of a Cargo project into a FROM-scratch image that runs as nonroot\n\
             # 65532:65532, with the optimization presets of `ruchy-image build --optimize`.\n"
        }
        Variant::Alpine => {
            "# Multi-stage build of a Cargo project onto a base with a shell (alpine), the user made\n\
             # with `adduser -D -u 1000 appuser` as the book chapter does, with the optimization\n\
             # presets of `ruchy-image build --optimize`.\n"
        }
    };
    let bin_arg = match &options.bin {
        Some(_) => String::new(),
        None => " --build-arg BIN=NAME".to_string(),
    };
    let tag = options.bin.as_deref().unwrap_or("NAME");
    let (env, cache, cache_arg) = match options.cache {
        Cache::Layer => (
            "",
            "# Any builder, the classic one too. The dependencies compile in a layer of their own, made\n\
             # from the workspace's Cargo.toml files, Cargo.lock and .cargo/config with stub targets: a\n\
             # source change compiles only the workspace's own crates again. With BuildKit,\n\
             # `ruchy-image dockerfile --buildkit` (dockerfiles/Dockerfile.buildkit) also keeps cargo's\n\
             # home and target dir in cache mounts, so that even a manifest change compiles only what\n\
             # changed.\n",
            "",
        ),
        Cache::Mounts => (
            "DOCKER_BUILDKIT=1 ",
            "# Needs BuildKit (RUN --mount): DOCKER_BUILDKIT=1 docker build, docker buildx build, or\n\
             # Docker 23+ with buildx, where it is the default. The classic builder stops with \"the\n\
             # --mount option requires BuildKit\": there, use `ruchy-image dockerfile`\n\
             # (dockerfiles/Dockerfile). Cargo's home and target dir are cache mounts the engine keeps\n\
             # across builds: a change compiles only what changed, as `ruchy-image build` does.\n",
            "#   CACHE_ID       the cache mounts' id prefix: builds with the same one share crates\n\
             #                  downloaded and dependencies compiled\n",
        ),
    };
    format!(
        "{what}\
         # Generated by `ruchy-image dockerfile` (src/commands/dockerfile.rs): regenerate, do not edit.\n\
         #\n\
         #   {env}docker build -f Dockerfile{bin_arg} --build-arg OPTIMIZE=aggressive -t {tag} .\n\
         #\n\
         {cache}\
         #\n\
         # The context is the Cargo project (its workspace root), with a .dockerignore listing\n\
         # target, Dockerfile* and .dockerignore: editing this file then keeps the compile cached.\n\
         # Build args (defaults below):\n\
         #   OPTIMIZE       {presets} (as `ruchy-image build -O`)\n\
         #   BIN            the binary target to build{required}\n\
         #   TARGET         target triple [default: musl if the builder has its std, else its host]\n\
         #   BUILDER_IMAGE  the Rust toolchain image stage 1 compiles in (rust:1-alpine: musl)\n\
         #   BASE           the image the binary is laid on ({base_note})\n\
         {cache_arg}",
        presets = Preset::ALL.map(Preset::name).join(" | "),
        required = if options.bin.is_none() {
            " (required)"
        } else {
            ""
        },
        base_note = match options.variant {
            Variant::Scratch => "scratch: the binary must be static".to_string(),
            Variant::Alpine => format!("{base} or another with a shell"),
        },
    )
}

/// One `case` arm of the preset mapping, from the library's own resolution of the preset.
fn preset_arm(preset: Preset) -> String {
    let gnu = Flags::resolve(preset, &Overrides::default(), "x86_64-unknown-linux-gnu");
    let musl = Flags::resolve(preset, &Overrides::default(), "x86_64-unknown-linux-musl");
    let profile = gnu.inherits();
    let out_dir = if profile == "dev" { "debug" } else { "release" };
    let prefix = format!("CARGO_PROFILE_{}_", profile.to_uppercase());
    let env: Vec<String> = gnu
        .profile_settings()
        .into_iter()
        .filter(|(key, _)| *key != "INHERITS") // built-in profiles inherit nothing
        .map(|(key, value)| format!("{prefix}{key}={value}"))
        .collect();
    let mut arm = format!(
        "      {preset}) profile={profile} out={out_dir} std={std} \\\n        \
         gnu_rustflags=\"{gnu}\" \\\n        \
         musl_rustflags=\"{musl}\"; \\\n        export",
        std = gnu.std_variant().name(),
        gnu = gnu.rustflags().join(" "),
        musl = musl.rustflags().join(" "),
    );
    // Two settings a line, so each arm reads as a short table.
    for (i, pair) in env.chunks(2).enumerate() {
        if i > 0 {
            arm += " \\\n              ";
        }
        arm += " ";
        arm += &pair.join(" ");
    }
    arm += " ;; \\\n";
    arm
}

/// The stages and shell steps, in sections (see the file's preamble).
const TEMPLATE: &str = include_str!("dockerfile/stages.Dockerfile.in");

/// The template's section `name`, with its `@KEY@` markers filled in; a line that is only
/// `@KEY@` takes the value's lines, which end with a newline.
fn fill(name: &str, values: &[(&str, &str)]) -> String {
    let marker = format!("#@@ {name}\n");
    let start = TEMPLATE.find(&marker).expect("a section of the template") + marker.len();
    let end = TEMPLATE[start..]
        .find("#@@ ")
        .map_or(TEMPLATE.len(), |n| start + n);
    let mut text = TEMPLATE[start..end].to_string();
    for (key, value) in values {
        text = match value.ends_with('\n') {
            true => text.replace(&format!("@{key}@\n"), value),
            false => text.replace(&format!("@{key}@"), value),
        };
    }
    text
}

/// Shell for the preset: checks the build args, picks the target, sets the profile env and
/// RUSTFLAGS; leaves `profile`, `out` (cargo's output directory) and `target` set.
fn preset_setup() -> String {
    let arms: String = Preset::ALL.into_iter().map(preset_arm).collect();
    let names = Preset::ALL.map(Preset::name);
    let (last, rest) = names.split_last().expect("presets");
    let presets = format!("{} or {last}", rest.join(", "));
    fill("preset-setup", &[("ARMS", &arms), ("PRESETS", &presets)])
}

/// Shell that makes cargo compile the workspace's own crates again. COPY keeps the sources'
/// mtimes, which can be older than the artifacts already there (the stubs' build, another
/// project's build in a shared cache, a context with fixed mtimes): cargo would take those
/// as up to date. Touching every target's root file makes them older than their sources.
fn touch_roots() -> String {
    fill("touch-roots", &[("METADATA_PATHS", &metadata_paths())])
}

/// Shell that lists the workspace's files from `cargo metadata --no-deps` (offline, no
/// lockfile needed) with only what every builder image has (a minimal Debian one has no grep,
/// sed or find): `paths FIELD` prints each `"FIELD":"…"` value, relative to /src.
fn metadata_paths() -> String {
    fill("metadata-paths", &[])
}

/// The runtime user's name, uid and gid, as the template's `@NAME@`, `@UID@`, `@GID@`.
fn user_values(user: &RuntimeUser) -> [(&'static str, String); 3] {
    [
        ("NAME", user.name.clone()),
        ("UID", user.uid.to_string()),
        ("GID", user.gid.to_string()),
    ]
}

/// Fills a section with the default runtime user (see [`user_values`]).
fn fill_user(name: &str) -> String {
    let values = user_values(&RuntimeUser::default());
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill(name, &values)
}

/// [`Cache::Layer`]'s first stage: the inputs of the dependency build.
fn recipe_stage() -> String {
    fill("recipe-stage", &[("METADATA_PATHS", &metadata_paths())])
}

/// A build stage ([`Cache::Layer`]'s dependency layer, or [`Cache::Mounts`]' one step), with
/// the preset setup, the touch of the roots and the build and layout (which copies the
/// binary out of the target dir: a cache mount under BuildKit, so it has to happen in that
/// RUN) filled in.
fn build_stage(name: &str) -> String {
    fill(
        name,
        &[
            ("PRESET_COMMENT", &fill("preset-comment", &[])),
            ("PRESET_SETUP", &preset_setup()),
            ("TOUCH_ROOTS", &touch_roots()),
            ("BUILD_AND_LAYOUT", &fill_user("build-and-layout")),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's Dockerfiles are exactly what `ruchy-image dockerfile` prints.
    #[test]
    fn the_checked_in_dockerfiles_are_the_generated_ones() {
        let scratch = render(&DockerfileOptions::default()).unwrap();
        assert_eq!(scratch, include_str!("../../dockerfiles/Dockerfile"));
        let alpine = render(&DockerfileOptions {
            variant: Variant::Alpine,
            ..DockerfileOptions::default()
        })
        .unwrap();
        assert_eq!(alpine, include_str!("../../dockerfiles/Dockerfile.alpine"));
        let buildkit = render(&DockerfileOptions {
            cache: Cache::Mounts,
            ..DockerfileOptions::default()
        })
        .unwrap();
        assert_eq!(
            buildkit,
            include_str!("../../dockerfiles/Dockerfile.buildkit")
        );
    }

    /// The default has no `RUN --mount` (the classic builder refuses it) and builds the
    /// dependencies before the sources come in; the BuildKit variant copies the binary out of
    /// the target cache mount in the RUN that mounts it.
    #[test]
    fn the_dependency_layer_comes_before_the_sources_and_mounts_need_buildkit() {
        let layer = render(&DockerfileOptions::default()).unwrap();
        assert!(!layer.contains("--mount"));
        let recipe = layer.find("COPY --from=recipe /recipe/ ./").unwrap();
        let dependencies = layer.find("dependencies: cargo build").unwrap();
        let sources = layer.rfind("COPY . .").unwrap();
        assert!(recipe < dependencies && dependencies < sources, "{layer}");
        let mounts = render(&DockerfileOptions {
            cache: Cache::Mounts,
            ..DockerfileOptions::default()
        })
        .unwrap();
        let run = mounts.find("RUN --mount=type=cache,").unwrap();
        let step = &mounts[run..run + mounts[run..].find("\n\n").unwrap()];
        for part in [
            "id=${CACHE_ID}-target,target=/target,sharing=locked",
            "id=${CACHE_ID}-cargo-home,target=/ruchy-image/cargo-home",
            "cargo build --bin",
            "cp \"/target/$target/$out/$BIN\"",
        ] {
            assert!(step.contains(part), "{part} in {step}");
        }
        assert!(mounts.contains("DOCKER_BUILDKIT=1 docker build"));
        assert!(!mounts.contains("# syntax="));
    }

    /// The build stage is the same text in both variants, so `docker build` of one reuses the
    /// other's compile from its layer cache.
    #[test]
    fn both_variants_share_the_build_stage() {
        let scratch = render(&DockerfileOptions::default()).unwrap();
        let alpine = render(&DockerfileOptions {
            variant: Variant::Alpine,
            ..DockerfileOptions::default()
        })
        .unwrap();
        let stage = |text: &str| {
            let start = text.find("FROM ${BUILDER_IMAGE}").unwrap();
            let end = text.find("# Stage 2").unwrap();
            text[start..end].to_string()
        };
        assert_eq!(stage(&scratch), stage(&alpine));
    }

    /// Every preset's arm sets exactly the keys and flags `ruchy-image build` uses.
    #[test]
    fn every_preset_maps_to_the_library_flags() {
        let text = render(&DockerfileOptions::default()).unwrap();
        for preset in Preset::ALL {
            let arm_start = text
                .find(&format!("      {preset}) profile="))
                .unwrap_or_else(|| panic!("no arm for {preset}"));
            let arm = &text[arm_start..arm_start + text[arm_start..].find(";;").unwrap()];
            let flags = Flags::resolve(preset, &Overrides::default(), "x86_64-unknown-linux-gnu");
            let profile = flags.inherits().to_uppercase();
            for (key, value) in flags.profile_settings() {
                let setting = format!("CARGO_PROFILE_{profile}_{key}={value}");
                assert_eq!(
                    arm.contains(&setting),
                    key != "INHERITS",
                    "{setting} in {arm}"
                );
            }
            let gnu = format!("gnu_rustflags=\"{}\"", flags.rustflags().join(" "));
            assert!(arm.contains(&gnu), "{gnu} in {arm}");
        }
        let nasa = Flags::resolve(
            Preset::Nasa,
            &Overrides::default(),
            "x86_64-unknown-linux-musl",
        );
        assert!(text.contains(&format!(
            "musl_rustflags=\"{}\"",
            nasa.rustflags().join(" ")
        )));
        assert!(text.contains("-Ctarget-cpu=native -Cembed-bitcode=yes"));
    }

    /// Every `@KEY@` of the template is filled in, in every variant.
    #[test]
    fn no_template_marker_is_left() {
        for variant in [Variant::Scratch, Variant::Alpine] {
            for cache in [Cache::Layer, Cache::Mounts] {
                let text = render(&DockerfileOptions {
                    variant,
                    cache,
                    ..DockerfileOptions::default()
                })
                .unwrap();
                let left = text.match_indices('@').find(|(at, _)| {
                    let rest = &text[at + 1..];
                    let key = rest
                        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                        .unwrap_or(rest.len());
                    key > 0 && rest[key..].starts_with('@')
                });
                assert_eq!(left, None, "a marker left in {variant:?} {cache:?}");
                assert!(!text.contains("#@@"), "{text}");
            }
        }
    }

    #[test]
    fn options_fill_in_the_build_arg_defaults() {
        let text = render(&DockerfileOptions {
            preset: Preset::Aggressive,
            bin: Some("fib".into()),
            target: Some("x86_64-unknown-linux-musl".into()),
            builder_image: "ruchy-image-builder:1.95.0".into(),
            base: Some("gcr.io/distroless/static:nonroot".into()),
            variant: Variant::Scratch,
            cache: Cache::Layer,
        })
        .unwrap();
        for line in [
            "ARG BUILDER_IMAGE=ruchy-image-builder:1.95.0\n",
            "ARG BASE=gcr.io/distroless/static:nonroot\n",
            "ARG OPTIMIZE=aggressive\n",
            "ARG BIN=fib\n",
            "ARG TARGET=x86_64-unknown-linux-musl\n",
            "#   docker build -f Dockerfile --build-arg OPTIMIZE=aggressive -t fib .\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn names_that_would_break_the_dockerfile_are_refused() {
        for (bin, base) in [
            (Some("a b"), None),
            (Some("x\"y"), None),
            (None, Some("alpine;rm")),
            (None, Some("")),
        ] {
            let error = render(&DockerfileOptions {
                bin: bin.map(String::from),
                base: base.map(String::from),
                ..DockerfileOptions::default()
            })
            .unwrap_err();
            assert!(error.is_usage(), "{error}");
        }
    }
}
