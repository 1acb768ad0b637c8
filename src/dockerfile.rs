//! `ruchy-image dockerfile`: the same build as `ruchy-image build --builder docker`, written
//! as a multi-stage Dockerfile for places that want `docker build` (or a compose `build:`).
//!
//! One template, two variants: [`Variant::Scratch`] (`dockerfiles/Dockerfile`: the binary,
//! `/etc/passwd` and `/etc/group` on `FROM scratch`, user 65532) and [`Variant::Alpine`]
//! (`dockerfiles/Dockerfile.alpine`: a base with a shell, the user made with `adduser` as the
//! book chapter does). Both files in the repository are exactly what this module prints with
//! the default options; a test keeps them that way.
//!
//! The preset mapping inside the Dockerfile is generated from [`Flags::resolve`], so a preset
//! means the same cargo profile settings and RUSTFLAGS in both places.

use std::fmt::Write as _;
use std::path::Path;

use crate::compile::DEFAULT_BUILDER_IMAGE;
use crate::error::{Error, Result};
use crate::oci::image::RuntimeUser;
use crate::preset::{Flags, Overrides, Preset};
use crate::source::{self, SourceOptions};

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
    out += &build_stage();
    out += match options.variant {
        Variant::Scratch => scratch_stage(),
        Variant::Alpine => ALPINE_STAGE.to_string(),
    }
    .as_str();
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
    format!(
        "{what}\
         # Generated by `ruchy-image dockerfile` (src/dockerfile.rs): regenerate, do not edit.\n\
         #\n\
         #   docker build -f Dockerfile{bin_arg} --build-arg OPTIMIZE=aggressive -t {tag} .\n\
         #\n\
         # The context is the Cargo project (its workspace root), with a .dockerignore listing\n\
         # target, Dockerfile* and .dockerignore: editing this file then keeps the compile cached.\n\
         # Build args (defaults below):\n\
         #   OPTIMIZE       none | balanced | aggressive | nasa | size (as `ruchy-image build -O`)\n\
         #   BIN            the binary target to build{required}\n\
         #   TARGET         target triple [default: musl if the builder has its std, else its host]\n\
         #   BUILDER_IMAGE  the Rust toolchain image stage 1 compiles in (rust:1-alpine: musl)\n\
         #   BASE           the image the binary is laid on ({base_note})\n",
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

fn build_stage() -> String {
    let user = RuntimeUser::default();
    let (name, uid, gid) = (&user.name, user.uid, user.gid);
    let mut arms = String::new();
    for preset in Preset::ALL {
        arms += &preset_arm(preset);
    }
    let mut stage = String::new();
    let _ = write!(
        stage,
        r#"
# Stage 1: compile in the builder image.
FROM ${{BUILDER_IMAGE}} AS build
ARG OPTIMIZE
ARG BIN
ARG TARGET
WORKDIR /src
COPY . .
# The preset as `ruchy-image build --optimize` resolves it (src/preset.rs): settings of the
# built-in profile it starts from (dev for none, release for the others) through
# CARGO_PROFILE_* env, so no [profile] table in Cargo.toml can change what a preset means,
# and RUSTFLAGS, which reach only the target because cargo gets an explicit --target (build
# scripts and proc-macros build without them). The target is musl (static by nature) when
# the builder has its std, else the builder's host with +crt-static. The size preset links
# the panic=immediate-abort std that `ruchy-image builder import-host` puts in its builders.
RUN set -eu; \
    if [ -z "$BIN" ]; then echo "set --build-arg BIN=NAME, the binary to build" >&2; exit 2; fi; \
    sysroot="$(rustc --print sysroot)"; \
    target="$TARGET"; \
    if [ -z "$target" ]; then \
      target="$(rustc -vV | while read -r key value; do if [ "$key" = host: ]; then echo "$value"; fi; done)"; \
      musl="${{target%%-*}}-unknown-linux-musl"; \
      set -- "$sysroot/lib/rustlib/$musl/lib/"libstd-*.rlib; \
      if [ -e "$1" ]; then target="$musl"; fi; \
    fi; \
    case "$OPTIMIZE" in \
{arms}      *) echo "OPTIMIZE=$OPTIMIZE: expected none, balanced, aggressive, nasa or size" >&2; exit 2 ;; \
    esac; \
    case "$target" in \
      *-musl*) RUSTFLAGS="$musl_rustflags" ;; \
      *) RUSTFLAGS="$gnu_rustflags" ;; \
    esac; \
    if [ "$std" != unwind ]; then \
      sysroot="/usr/local/lib/ruchy-image/std/$target-$std"; \
      if [ ! -d "$sysroot" ]; then echo "OPTIMIZE=$OPTIMIZE needs a $std std for $target, which builders made by ruchy-image builder import-host have" >&2; exit 2; fi; \
      RUSTFLAGS="$RUSTFLAGS --sysroot=$sysroot"; export RUSTC_BOOTSTRAP=1; \
    fi; \
    export RUSTFLAGS CARGO_TARGET_DIR=/target; \
    echo "OPTIMIZE=$OPTIMIZE: cargo build --profile $profile --target $target, RUSTFLAGS=$RUSTFLAGS"; \
    cargo build --bin "$BIN" --profile "$profile" --target "$target"; \
    mkdir -p /image/system/etc /image/system/tmp /image/system/home/{name} /image/app/usr/local/bin; \
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
      '{name}:x:{uid}:{gid}:{name}:/home/{name}:/sbin/nologin' > /image/system/etc/passwd; \
    printf '%s\n' 'root:x:0:' '{name}:x:{gid}:' > /image/system/etc/group; \
    chmod 1777 /image/system/tmp; \
    chmod 700 /image/system/home/{name}; \
    chown {uid}:{gid} /image/system/home/{name}; \
    cp "/target/$target/$out/$BIN" "/image/app/usr/local/bin/$BIN"; \
    ln -s "usr/local/bin/$BIN" /image/app/entrypoint
"#
    );
    stage
}

fn scratch_stage() -> String {
    let user = RuntimeUser::default();
    format!(
        r#"
# Stage 2: the binary, /etc/passwd and /etc/group on the base, as user {name}.
FROM ${{BASE}}
ARG OPTIMIZE
ARG BIN
COPY --from=build /image/system/ /
COPY --from=build /image/app/ /
USER {uid}:{gid}
# An exec-form ENTRYPOINT does not expand build args: /entrypoint links to /usr/local/bin/${{BIN}}.
ENTRYPOINT ["/entrypoint"]
LABEL org.opencontainers.image.title="${{BIN}}" \
      dev.ruchy.image.preset="${{OPTIMIZE}}"
"#,
        name = user.name,
        uid = user.uid,
        gid = user.gid,
    )
}

const ALPINE_STAGE: &str = r#"
# Stage 2: the binary on a base with a shell, run as appuser (1000), made as the chapter makes
# it. Debian's busybox has no adduser applet: there the same entries are written directly.
FROM ${BASE}
ARG OPTIMIZE
ARG BIN
RUN if command -v adduser >/dev/null 2>&1; then \
      adduser -D -u 1000 appuser; \
    else \
      echo 'appuser:x:1000:1000:Linux User,,,:/home/appuser:/bin/sh' >> /etc/passwd; \
      echo 'appuser:x:1000:' >> /etc/group; \
      mkdir -p /home/appuser; \
      chown 1000:1000 /home/appuser; \
    fi
COPY --from=build /image/app/ /
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# An exec-form ENTRYPOINT does not expand build args: /entrypoint links to /usr/local/bin/${BIN}.
ENTRYPOINT ["/entrypoint"]
LABEL org.opencontainers.image.title="${BIN}" \
      dev.ruchy.image.preset="${OPTIMIZE}"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's Dockerfiles are exactly what `ruchy-image dockerfile` prints.
    #[test]
    fn the_checked_in_dockerfiles_are_the_generated_ones() {
        let scratch = render(&DockerfileOptions::default()).unwrap();
        assert_eq!(scratch, include_str!("../dockerfiles/Dockerfile"));
        let alpine = render(&DockerfileOptions {
            variant: Variant::Alpine,
            ..DockerfileOptions::default()
        })
        .unwrap();
        assert_eq!(alpine, include_str!("../dockerfiles/Dockerfile.alpine"));
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

    #[test]
    fn options_fill_in_the_build_arg_defaults() {
        let text = render(&DockerfileOptions {
            preset: Preset::Aggressive,
            bin: Some("fib".into()),
            target: Some("x86_64-unknown-linux-musl".into()),
            builder_image: "ruchy-image-builder:1.95.0".into(),
            base: Some("gcr.io/distroless/static:nonroot".into()),
            variant: Variant::Scratch,
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
