//! `doctor`: what this machine has for a build, one check at a time, each with the fix. The
//! default build (README's quick start) compiles in a builder container to a static musl
//! binary and loads the image into the engine, so the engine, a builder image and its musl
//! std are required; the rest (the `size` std, `--builder local`, ruchy, arm64, registry
//! logins) is reported for the builds that use it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::adapters::engine::Engine;
use crate::adapters::toolchain::Toolchain;
use crate::core::platform::musl_target;
use crate::core::preset::StdVariant;
use crate::pipeline::compile::BuilderImage;

/// One thing checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`engine`, `builder image`, ...).
    pub name: &'static str,
    /// Whether it is there and works.
    pub ok: bool,
    /// Whether the default build needs it: a missing required item makes `doctor` fail.
    pub required: bool,
    /// What was found, or what is wrong.
    pub detail: String,
    /// The command or step that fixes it, when it is not ok.
    pub fix: Option<String>,
}

/// Every check, in the order a build meets them.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether everything the default build needs is here.
    pub ready: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

/// What to check against.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--builder-image`: the image builds would use; the default lookup when unset.
    pub builder_image: Option<String>,
    /// `--ruchy`: the transpiler; `ruchy` on PATH when unset.
    pub ruchy: Option<PathBuf>,
    /// The cache directory (where builder probes are remembered).
    pub cache_dir: PathBuf,
    /// `--artifacts`: a service host's artifact registry repository, checked for a push.
    pub artifacts: Option<String>,
    /// How to reach it (CAs, plain-HTTP hosts), as `serve` has them.
    pub registry: crate::pipeline::publish::RegistryOptions,
}

const IMPORT_PACKAGES: &str =
    "sudo apt-get install rustc-web cargo-web rust-web-src musl-tools libunwind-14-dev g++ make perl cmake";

impl Check {
    fn ok(name: &'static str, required: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            required,
            detail: detail.into(),
            fix: None,
        }
    }

    fn missing(
        name: &'static str,
        required: bool,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            ok: false,
            required,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check. Nothing is changed: no pull, no build, no volume removed; a builder
/// image is run once (a probe of its toolchain, remembered by image ID like a build's).
pub async fn diagnose(options: &Options) -> Report {
    let mut checks = Vec::new();
    let engine = Engine::connect().await;
    checks.push(match &engine {
        Ok(engine) => Check::ok(
            "engine",
            true,
            format!(
                "{} answers: engine {}, API {}",
                engine.host, engine.version, engine.api_version
            ),
        ),
        Err(error) => Check::missing(
            "engine",
            true,
            error.to_string(),
            "start one (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at one; without an engine, --builder local with --oci-layout DIR or --output FILE.tar",
        ),
    });
    match &engine {
        Ok(engine) => checks.extend(builder_checks(engine, options).await),
        Err(_) => checks.push(Check::missing(
            "builder image",
            true,
            "not checked: no engine",
            "start the engine first",
        )),
    }
    let local = crate::adapters::fsutil::blocking(local_checks).await;
    checks.extend(local.unwrap_or_else(|error| {
        vec![Check::missing(
            "local toolchain",
            false,
            error.to_string(),
            "install Rust (rustup, or Debian's rustc-web and cargo-web) for --builder local",
        )]
    }));
    checks.push(ruchy_check(options.ruchy.as_deref()));
    checks.push(arm64_check());
    checks.push(credentials_check());
    if let Ok(engine) = &engine {
        checks.push(cache_check(engine).await);
    }
    if let Some(repository) = &options.artifacts {
        checks.push(artifacts_check(repository, &options.registry).await);
    }
    Report {
        ready: checks.iter().all(|c| c.ok || !c.required),
        checks,
    }
}

/// The builder image a build would take, and the stds in it.
async fn builder_checks(engine: &Engine, options: &Options) -> Vec<Check> {
    let requested = options.builder_image.as_deref();
    let image = match BuilderImage::find(engine, requested, &options.cache_dir).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            let wanted = requested.unwrap_or(crate::pipeline::compile::DEFAULT_BUILDER_IMAGE);
            return vec![Check::missing(
                "builder image",
                true,
                format!("{wanted} is not in the engine, and no image made by `builder import-host` is"),
                format!("`ruchy-image builder import-host` (from this machine's toolchain; it needs `{IMPORT_PACKAGES}`), or `docker pull {wanted}` where a registry is reachable"),
            )];
        }
        Err(error) => {
            return vec![Check::missing(
                "builder image",
                true,
                error.to_string(),
                "pass a Rust image with --builder-image, or make one with `ruchy-image builder import-host`",
            )]
        }
    };
    let version = image.toolchain.version().to_string();
    let mut checks = vec![
        Check::ok(
            "builder image",
            true,
            format!("{} ({version})", image.reference),
        ),
        isolation_check(engine, &image.id).await,
    ];
    let Some(musl) = musl_target(&image.target) else {
        checks.push(Check::missing(
            "builder musl std",
            true,
            format!(
                "{} builds for {}, which has no musl target",
                image.reference, image.target
            ),
            "use an x86_64 or aarch64 builder image",
        ));
        return checks;
    };
    let has = |target: &str, variant| image.toolchain.std_for(target, variant).is_some();
    let cross: Vec<String> = image
        .toolchain
        .stds
        .iter()
        .filter(|s| s.target.ends_with("-musl") && s.target != musl)
        .map(|s| s.target.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rebuild = format!(
        "`ruchy-image builder import-host` on a machine with the standard library's sources (`{IMPORT_PACKAGES}`) makes a builder image that has it"
    );
    checks.push(match has(&musl, StdVariant::Unwind) {
        true if cross.is_empty() => Check::ok("builder musl std", true, musl.clone()),
        true => Check::ok(
            "builder musl std",
            true,
            format!("{musl}; cross: {}", cross.join(", ")),
        ),
        false => Check::missing(
            "builder musl std",
            true,
            format!(
                "{} has no standard library for {musl}: binaries would not be static",
                image.reference
            ),
            rebuild.clone(),
        ),
    });
    checks.push(c_check(&image, &musl));
    checks.push(match has(&musl, StdVariant::ImmediateAbort) {
        true => Check::ok("builder size std", false, format!("{musl}, panic=immediate-abort")),
        false => Check::missing(
            "builder size std",
            false,
            format!("{} has no std built for panic=immediate-abort: the size preset falls back to panic=abort, about as big as aggressive", image.reference),
            rebuild,
        ),
    });
    checks
}

/// Whether the builder can compile the C in crates such as ring, zstd, SQLite and OpenSSL
/// for its default target, and has the tools their build systems run. Not required: a
/// pure-Rust program builds without.
fn c_check(image: &BuilderImage, musl: &str) -> Check {
    let toolchain = &image.toolchain;
    let missing = &toolchain.missing_tools;
    let fix = "`sudo apt-get install musl-tools g++ make perl cmake pkg-config` here, then `ruchy-image builder import-host`; from rust:1-alpine, a builder image with `RUN apk add --no-cache musl-dev gcc g++ make perl cmake pkgconf bash` (README: crates that build C)";
    match (&toolchain.c_compiler, missing.is_empty()) {
        (Ok(cc), true) => Check::ok("builder C toolchain", false, format!("{cc} for {musl}, and make, perl, cmake, pkg-config")),
        (Ok(cc), false) => Check::missing(
            "builder C toolchain",
            false,
            format!("{cc} compiles C for {musl}, but {} lacks {}: build scripts that run them fail", image.reference, missing.join(", ")),
            fix,
        ),
        (Err(why), _) => Check::missing(
            "builder C toolchain",
            false,
            format!("{} cannot compile C for {musl} ({why}): crates with C in their build (ring under rustls, zstd, SQLite, OpenSSL) fail", image.reference),
            fix,
        ),
    }
}

/// `--builder local`: the host's rustc, and whether it can make static musl binaries and the
/// `size` preset's std (rustup's toolchain without rust-src cannot).
fn local_checks() -> crate::Result<Vec<Check>> {
    let toolchain = Toolchain::from_env()?;
    let host = toolchain.host();
    let sources = toolchain.std_sources().is_some();
    let mut checks = vec![Check::ok(
        "local toolchain",
        false,
        format!("{} at {}", toolchain.version(), toolchain.rustc.display()),
    )];
    let debian = Path::new("/usr/bin/rustc");
    let other_rustc = match debian.is_file() && toolchain.rustc != debian {
        true => "RUSTC=/usr/bin/rustc (Debian's rustc-web has the sources with rust-web-src)",
        false => "Debian's rustc-web, cargo-web and rust-web-src with RUSTC=/usr/bin/rustc",
    };
    let fix = format!("`rustup component add rust-src`, or {other_rustc}");
    if let Some(musl) = musl_target(&host) {
        let made = toolchain.has_std(&musl) || sources;
        checks.push(match made {
            true => Check::ok(
                "local musl std",
                false,
                match toolchain.has_std(&musl) {
                    true => format!("{musl}, shipped with the toolchain"),
                    false => format!("{musl}, built once from the toolchain's sources"),
                },
            ),
            false => Check::missing(
                "local musl std",
                false,
                format!("{} has no std for {musl} and no sources to build one: --builder local makes static glibc binaries instead", toolchain.version()),
                format!("`rustup target add {musl}`, {fix}"),
            ),
        });
    }
    checks.push(match sources {
        true => Check::ok(
            "local size std",
            false,
            "built once from the toolchain's sources (panic=immediate-abort)",
        ),
        false => Check::missing(
            "local size std",
            false,
            format!("{} has no standard library sources: with --builder local the size preset cannot reach its floor (panic=abort instead; about as big as aggressive)", toolchain.version()),
            fix,
        ),
    });
    Ok(checks)
}

/// The transpiler `.ruchy` sources need.
fn ruchy_check(requested: Option<&Path>) -> Check {
    let program = crate::pipeline::source::ruchy_program(requested);
    match crate::pipeline::source::ruchy_version(&program) {
        Some(version) => Check::ok("ruchy", false, format!("{version} ({})", program.display())),
        None => Check::missing(
            "ruchy",
            false,
            format!("{} does not run: .ruchy sources cannot be transpiled (.rs files and Cargo projects do not need it)", program.display()),
            "`cargo install ruchy --locked` (a few minutes), or point to it with --ruchy PATH",
        ),
    }
}

/// `--platform linux/arm64` runs arm64 programs (cold starts, the tests' runs) through qemu.
fn arm64_check() -> Check {
    let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let fix = "`sudo apt-get install qemu-user-static binfmt-support && sudo update-binfmts --enable qemu-aarch64` (with binfmt_misc mounted: `sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`)";
    if std::env::consts::ARCH == "aarch64" {
        return Check::ok(
            "arm64 emulation",
            false,
            "not needed: this machine is arm64",
        );
    }
    match std::fs::read_to_string(entry) {
        Ok(text) if text.starts_with("enabled") => {
            let flags = text.lines().find_map(|l| l.strip_prefix("flags: "));
            match flags.is_some_and(|f| f.contains('F')) {
                true => Check::ok("arm64 emulation", false, "qemu-aarch64 in binfmt_misc (flag F: containers too)"),
                false => Check::missing(
                    "arm64 emulation",
                    false,
                    "qemu-aarch64 is registered without flag F: arm64 containers cannot find it",
                    "install Debian's qemu-user-static (it registers with F)",
                ),
            }
        }
        Ok(_) => Check::missing("arm64 emulation", false, "qemu-aarch64 is registered but disabled", fix),
        Err(_) => Check::missing(
            "arm64 emulation",
            false,
            "no qemu-aarch64 in binfmt_misc: --platform linux/arm64 builds, but its images cannot run here",
            fix,
        ),
    }
}

/// Where pushes find logins: Docker's config, as [`crate::pipeline::publish`] reads it.
fn credentials_check() -> Check {
    let file = crate::pipeline::publish::docker_config_file();
    let config: Option<serde_json::Value> = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|text| serde_json::from_slice(&text).ok());
    let mut found: Vec<String> = Vec::new();
    if let Some(config) = &config {
        if let Some(auths) = config["auths"].as_object() {
            found.extend(auths.keys().map(|k| format!("{k} (auths)")));
        }
        if let Some(helpers) = config["credHelpers"].as_object() {
            found.extend(helpers.iter().map(|(host, helper)| {
                format!(
                    "{host} (docker-credential-{})",
                    helper.as_str().unwrap_or("?")
                )
            }));
        }
        if let Some(store) = config["credsStore"].as_str() {
            found.push(format!("every other registry (docker-credential-{store})"));
        }
    }
    let place = file.map_or_else(|| "no Docker config".into(), |f| f.display().to_string());
    match found.is_empty() {
        false => Check::ok(
            "registry credentials",
            false,
            format!("{place}: {}", found.join(", ")),
        ),
        true => Check::missing(
            "registry credentials",
            false,
            format!("none in {place}: pushes go anonymously"),
            "`docker login HOST`, or --registry-user USER with --registry-password-stdin on a push",
        ),
    }
}

/// A service host's artifact registry (`serve --artifacts`): answers, and takes this user's
/// push (what `serve` checks before it takes a build). Required when asked for: workers on a
/// shared database do not start without it.
async fn artifacts_check(
    repository: &str,
    registry: &crate::pipeline::publish::RegistryOptions,
) -> Check {
    const NAME: &str = "artifact registry";
    let repository =
        match crate::pipeline::publish::parse_repository(repository) {
            Ok(repository) => repository,
            Err(e) => return Check::missing(
                NAME,
                true,
                e.to_string(),
                "pass --artifacts REGISTRY/REPOSITORY, e.g. registry.internal:5000/ruchy-builds",
            ),
        };
    let host = repository.split('/').next().unwrap_or_default().to_string();
    match crate::pipeline::publish::check_push(&repository, registry).await {
        Ok(()) => Check::ok(NAME, true, format!("{repository} takes pushes")),
        Err(e) => {
            let text = e.to_string();
            let fix = if text.contains("authentication failed") {
                format!(
                    "`docker login {host}` (or a credential helper) as a user who may push to {repository}"
                )
            } else if text.contains("400 Bad Request") && text.contains("http://") {
                // A TLS registry spoken to over plain HTTP (loopback is, unless given a CA).
                format!("{host} seems to speak TLS: pass --registry-ca FILE with the CA that signed its certificate")
            } else if text.contains("certificate") {
                format!("--registry-ca FILE with the CA that signed {host}'s certificate (or --insecure-registry {host} if it speaks plain HTTP)")
            } else {
                format!("start the registry at {host} (distribution: `docker-registry serve CONFIG.yml`) or fix the address; a registry beyond loopback that speaks plain HTTP needs --insecure-registry {host}")
            };
            Check::missing(NAME, true, text, fix)
        }
    }
}

/// What the build caches hold in the engine.
/// Whether the engine runs a builder container as builds ask: the sandbox's promises, as a
/// container of the builder image sees them.
async fn isolation_check(engine: &Engine, image: &str) -> Check {
    use crate::pipeline::compile::{probe_sandbox, Sandbox};
    let mut sandbox = Sandbox::default();
    let machine = engine.memory_total().await.unwrap_or(0);
    sandbox.limits = sandbox.limits.with_memory_of(machine);
    let promised = sandbox.describe().join("; ");
    match probe_sandbox(engine, image, sandbox.limits).await {
        Ok(seen) if seen.holds() => Check::ok("isolation", false, promised),
        Ok(seen) => Check::missing(
            "isolation",
            false,
            format!(
                "a builder container runs as user {} and sees interfaces {:?}, capabilities {}, no-new-privileges {}, memory limit {}, process limit {}",
                seen.uid, seen.interfaces, seen.capabilities, seen.no_new_privileges, seen.memory, seen.pids
            ),
            "an engine that applies network mode none, cap-drop, no-new-privileges and cgroup memory and pids limits (Docker, or Podman with cgroup v2 delegated)",
        ),
        Err(error) => Check::missing(
            "isolation",
            false,
            error.to_string(),
            "check that the engine can run the builder image",
        ),
    }
}

async fn cache_check(engine: &Engine) -> Check {
    match crate::adapters::cache_volumes::prune(engine, "", false).await {
        Ok(volumes) => {
            let total: u64 = volumes.iter().filter_map(|v| v.size).sum();
            Check::ok(
                "cache volumes",
                false,
                format!(
                    "{} in {} volume(s); `ruchy-image builder prune --dry-run` lists them",
                    crate::core::metrics::human_size(total),
                    volumes.len()
                ),
            )
        }
        Err(error) => Check::missing(
            "cache volumes",
            false,
            error.to_string(),
            "`ruchy-image builder prune --dry-run` lists them when the engine answers",
        ),
    }
}
