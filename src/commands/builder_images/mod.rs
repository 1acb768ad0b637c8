//! Builder images. `builder import-host` lays this machine's Rust toolchain (a rustup
//! sysroot without docs, or Debian's `rustc-web` packages) and the C toolchain and libc it
//! links with (Debian's `gcc` and `libc6-dev` with their dependencies) into an image, so
//! builds through the engine work on air-gapped machines, where `rust:1-alpine` cannot be
//! pulled. When the toolchain carries the standard library's sources, the image also gets
//! musl std, built once here (see [`crate::adapters::stdlib`]): the unwind one in the toolchain's
//! sysroot, as `rust:1-alpine` has it, and the `size` preset's beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::adapters::c_toolchain::CTools;
use crate::adapters::engine::{stream_to_engine, Engine};
use crate::adapters::fsutil::blocking;
use crate::adapters::fsutil::hex;
use crate::adapters::stdlib;
use crate::adapters::toolchain::Toolchain;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::core::platform::musl_target;
use crate::core::preset::StdVariant;
use crate::pipeline::compile::FINGERPRINT_LABEL;
use crate::pipeline::oci::image::FileImage;
use crate::pipeline::oci::layer::Written;
use crate::pipeline::oci::{archive, ImageRef};

mod rootfs;
use rootfs::write_rootfs;

/// Label naming the target triple a builder image compiles for by default.
pub const TARGET_LABEL: &str = "dev.ruchy.image.builder.target";
/// Where a rustup toolchain goes in the image.
const RUST_DIR: &str = "usr/local/rust";
/// Where stds that cannot go into the toolchain's sysroot go: one sysroot per target and
/// variant, `<target>-<variant>/lib/rustlib/<target>/lib` (the builder probe looks there).
const EXTRA_STDS: &str = "usr/local/lib/ruchy-image/std";
/// Bumped when what an image holds changes for the same inputs, so old images are remade.
const IMAGE_FORMAT: &str = "4: musl std rebuilt from the sources, in place of the toolchain's";
/// The other architectures a builder can make static musl binaries for, when this machine has
/// their cross gcc, musl and libunwind (see `.ci/setup`): (target, Debian's cross gcc package).
const CROSS_MUSL: &[(&str, &str)] = &[
    ("aarch64-unknown-linux-musl", "gcc-aarch64-linux-gnu"),
    ("x86_64-unknown-linux-musl", "gcc-x86-64-linux-gnu"),
];
/// Debian packages building musl std needs; their versions are part of the fingerprint.
const MUSL_PACKAGES: &[&str] = &["musl-tools", "musl-dev", "libunwind-14-dev"];
/// Debian packages the C side of a Rust build needs: the linker driver, libc headers and
/// static libraries (for crt-static), CA certificates for crates.io; C and C++ compilers and
/// musl's `musl-gcc` for the crates that build C (ring, zstd, SQLite, OpenSSL); and what
/// their build systems run (autoconf's configure: a POSIX sh, sed, grep, awk, cmp; make,
/// OpenSSL's perl Configure, pkg-config, cmake).
const PACKAGES: &[&str] = &[
    "gcc",
    "g++",
    "libc6-dev",
    "musl-tools",
    "musl-dev",
    "ca-certificates",
    "dash",
    "bash",
    "coreutils",
    "findutils",
    "diffutils",
    "sed",
    "grep",
    "mawk",
    "tar",
    "gzip",
    "make",
    "perl",
    "pkg-config",
    "cmake",
];
/// Host paths never worth copying into a builder.
const SKIP: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
];

/// What `builder import-host` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The image's tag.
    pub tag: String,
    /// Whether an image from the same toolchain already existed and was kept.
    pub reused: bool,
    /// `rustc --version` of the toolchain inside.
    pub rustc: String,
    /// Default target triple of the toolchain.
    pub target: String,
    /// The compiler imported.
    pub rustc_path: PathBuf,
    /// The static musl target the image can build for, when it can.
    pub musl: Option<String>,
    /// The static musl targets of other architectures it can cross-build for.
    pub cross_musl: Vec<String>,
    /// Bytes of the filesystem imported (0 when reused).
    pub size: u64,
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            program: program.into(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Spawn {
            program: format!("{program} {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which of Debian's packages `names` (`pkg` or `pkg:arch`) are installed here, each mapped
/// to its `pkg:arch` name (unambiguous for dpkg when several architectures have it). apt
/// lists alternatives (`libsystemd0 | libelogind0`) and wanted packages installed or not.
fn installed(names: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    let native = run("dpkg", &["--print-architecture"])?.trim().to_string();
    // dpkg-query exits 1 when some name is unknown, and still lists the others.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Architecture} ${Status}\n"])
        .args(names)
        .output()
        .map_err(|source| Error::Spawn {
            program: "dpkg-query".into(),
            source,
        })?;
    let mut installed = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split(' ');
        let (Some(name), Some(arch)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !line.ends_with(" installed") {
            continue;
        }
        let qualified = format!("{name}:{arch}");
        if arch == native || arch == "all" {
            installed.insert(name.to_string(), qualified.clone());
        }
        installed.insert(qualified.clone(), qualified);
    }
    Ok(installed)
}

/// Whether `toolchain` can make a static musl binary: std installed, or buildable.
fn can_make_musl(toolchain: &Toolchain) -> bool {
    musl_target(&toolchain.host())
        .is_some_and(|musl| toolchain.has_std(&musl) || toolchain.std_sources().is_some())
}

/// The toolchain to import: the one asked for; else the active one (`$RUSTC`, `rustc`) if it
/// can make musl, else Debian's `/usr/bin/rustc` if that can, else the active one.
pub fn choose_toolchain(requested: Option<&Path>) -> Result<Toolchain> {
    if let Some(rustc) = requested {
        return Toolchain::probe(rustc);
    }
    let active = Toolchain::from_env()?;
    if can_make_musl(&active) {
        return Ok(active);
    }
    let debian = Path::new("/usr/bin/rustc");
    match debian.is_file().then(|| Toolchain::probe(debian)) {
        Some(Ok(debian)) if can_make_musl(&debian) => Ok(debian),
        _ => Ok(active),
    }
}

/// The host's toolchain and the Debian packages (with versions) the image needs.
struct HostToolchain {
    toolchain: Toolchain,
    /// The toolchain is Debian's (its sysroot is `/usr`): its files come from its packages.
    packaged: bool,
    rustc_version: String,
    version_number: String,
    target: String,
    packages: Vec<String>,
    /// Musl targets of other architectures whose std goes into the image, with the cross gcc
    /// that links them.
    cross_musl: Vec<String>,
    /// Packages of [`PACKAGES`] this machine does not have, so the image lacks them too.
    not_installed: Vec<String>,
}

impl HostToolchain {
    fn detect(toolchain: Toolchain) -> Result<HostToolchain> {
        let packaged = toolchain.sysroot == Path::new("/usr");
        // What this machine lacks cannot go in: the image is made without it, and says so.
        let wanted: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
        let present = installed(&wanted)?;
        let (mut wanted, not_installed): (Vec<String>, Vec<String>) =
            wanted.into_iter().partition(|p| present.contains_key(p));
        let host = toolchain.host();
        let mut cross_musl = Vec::new();
        // Another architecture's musl (headers, libc.a, its `<arch>-linux-musl-gcc`) comes from
        // Debian's multiarch package, which apt lists under its `pkg:arch` name.
        let mut foreign = Vec::new();
        if toolchain.std_sources().is_some() {
            for (target, gcc) in CROSS_MUSL {
                if crate::core::platform::arch(target) != crate::core::platform::arch(&host)
                    && stdlib::musl_parts_present(target)
                {
                    cross_musl.push(target.to_string());
                    wanted.push(gcc.to_string());
                    let arch = crate::core::platform::arch(target);
                    let deb = stdlib::debian_arch(arch);
                    foreign.push(format!("musl-dev:{deb}"));
                    // The kernel's headers for that architecture (musl's include <linux/...>).
                    if Path::new(&format!("/usr/{arch}-linux-gnu/include/linux")).is_dir() {
                        wanted.push(format!("linux-libc-dev-{deb}-cross"));
                    }
                }
            }
        }
        if packaged {
            for program in [&toolchain.rustc, &toolchain.cargo] {
                let program = program.display().to_string();
                let owner = run("dpkg-query", &["-S", &program])?;
                if let Some((package, _)) = owner.trim().split_once(':') {
                    wanted.push(package.to_string());
                }
            }
        }
        let mut args = vec![
            "depends",
            "--recurse",
            "--installed",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ];
        args.extend(wanted.iter().map(String::as_str));
        // With a foreign architecture added (arm64, for its musl), apt also lists `pkg:arm64`
        // alternatives of dependencies; what is installed for us is listed by its plain name.
        let mut listed: Vec<String> = run("apt-cache", &args)?
            .lines()
            .filter(|l| !l.starts_with([' ', '<']) && !l.contains(':'))
            .map(str::to_string)
            .collect();
        listed.extend(foreign);
        let present = installed(&listed)?;
        let mut packages: Vec<String> = listed
            .iter()
            .filter_map(|p| present.get(p).cloned())
            .collect();
        packages.sort();
        packages.dedup();
        Ok(HostToolchain {
            rustc_version: toolchain.version().to_string(),
            version_number: toolchain.release(),
            target: toolchain.host(),
            packaged,
            toolchain,
            packages,
            cross_musl,
            not_installed,
        })
    }

    /// The toolchain's sysroot as it appears in the image.
    fn image_sysroot(&self) -> &'static str {
        if self.packaged {
            "usr"
        } else {
            RUST_DIR
        }
    }

    /// Changes whenever anything that goes into the image changes.
    fn fingerprint(&self) -> Result<String> {
        let mut args = vec!["-W", "-f", "${Package}=${Version}\n"];
        args.extend(self.packages.iter().map(String::as_str));
        let versions = run("dpkg-query", &args)?;
        // Installed or not, the packages musl std is built from count too.
        let mut musl_args = vec!["-W", "-f", "${Package}=${Version}:${Status}\n"];
        musl_args.extend(MUSL_PACKAGES);
        let musl_versions = run("dpkg-query", &musl_args).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(IMAGE_FORMAT);
        hasher.update(self.toolchain.sysroot.as_os_str().as_encoded_bytes());
        hasher.update(&self.toolchain.verbose_version);
        hasher.update([u8::from(self.toolchain.std_sources().is_some())]);
        hasher.update(versions);
        hasher.update(musl_versions);
        // Added only when there are some, so builders without them keep their fingerprint.
        if !self.cross_musl.is_empty() {
            hasher.update(self.cross_musl.join(","));
        }
        Ok(hex(&hasher.finalize())[..32].to_string())
    }

    /// The stds to add to the image (host sysroot built by [`stdlib`], where it goes in the
    /// image), built now when not in the cache. Empty when the toolchain has no sources.
    fn stds(&self, cache_dir: &Path, events: &Events) -> Result<Vec<(PathBuf, String)>> {
        let toolchain = &self.toolchain;
        let Some(musl) = musl_target(&self.target) else {
            return Ok(Vec::new());
        };
        if toolchain.std_sources().is_none() {
            return Ok(Vec::new());
        }
        let mut stds = Vec::new();
        for target in std::iter::once(&musl).chain(&self.cross_musl) {
            // Rebuilt even where the toolchain ships one (rustup's musl target): ours makes
            // smaller binaries (fibonacci.rs, aggressive, rustc 1.95: 373,600 B against
            // 402,136 B with rustup's), and every builder made here makes the same ones.
            for variant in [StdVariant::Unwind, StdVariant::ImmediateAbort] {
                let built = stdlib::ensure(toolchain, target, variant, cache_dir, events)?;
                let sysroot = match variant {
                    StdVariant::Unwind => self.image_sysroot().to_string(),
                    StdVariant::ImmediateAbort => {
                        format!("{EXTRA_STDS}/{target}-{}", variant.name())
                    }
                };
                let rustlib = format!("lib/rustlib/{target}");
                stds.push((built.join(&rustlib), format!("{sysroot}/{rustlib}")));
            }
        }
        Ok(stds)
    }
}

/// `builder pull`: pulls `image` (rust:1-alpine when none is named) through the engine, even
/// when the engine has it, and probes its toolchain. A failed pull is an error naming the
/// image; the engine's copy, if any, is left as it was.
pub async fn pull(
    engine: &Engine,
    image: Option<&str>,
    cache_dir: &Path,
    events: &Events,
) -> Result<crate::pipeline::compile::BuilderImage> {
    let image = image.or(Some(crate::pipeline::compile::DEFAULT_BUILDER_IMAGE));
    let always = crate::pipeline::compile::PullPolicy::Always;
    crate::pipeline::compile::BuilderImage::resolve_with(engine, image, always, cache_dir, events)
        .await
}

/// Makes (or reuses) a builder image from this machine's toolchain: `rustc` when given, else
/// the one [`choose_toolchain`] picks. Stds built for it are kept under `cache_dir`.
pub async fn import_host(
    engine: &Engine,
    tag: Option<&str>,
    rustc: Option<&Path>,
    cache_dir: &Path,
    events: &Events,
) -> Result<Imported> {
    let rustc = rustc.map(Path::to_path_buf);
    let host = Arc::new(
        blocking(move || HostToolchain::detect(choose_toolchain(rustc.as_deref())?)).await?,
    );
    let musl = musl_target(&host.target).filter(|_| can_make_musl(&host.toolchain));
    let tag = tag
        .map(str::to_string)
        .unwrap_or_else(|| format!("ruchy-image-builder:{}", host.version_number));
    let fingerprint = {
        let host = host.clone();
        blocking(move || host.fingerprint()).await?
    };
    let imported = |reused, size| Imported {
        tag: tag.clone(),
        reused,
        rustc: host.rustc_version.clone(),
        target: host.target.clone(),
        rustc_path: host.toolchain.rustc.clone(),
        musl: musl.clone(),
        cross_musl: host.cross_musl.clone(),
        size,
    };
    if let Ok(Some(existing)) = engine.inspect_image(&tag).await {
        if existing.labels.get(FINGERPRINT_LABEL) == Some(&fingerprint) {
            return Ok(imported(true, 0));
        }
    }

    if musl.is_none() {
        events.note(format!(
            "{} has no standard library sources, so this builder makes glibc binaries only; Debian's rustc-web, cargo-web, rust-web-src, musl-tools and libunwind-14-dev make one that builds static musl",
            host.rustc_version
        ));
    }
    if !host.not_installed.is_empty() {
        events.note(format!(
            "this machine lacks {0}, so the builder image does too, and crates whose build scripts run them fail in it; `sudo apt-get install {0}` and run `builder import-host` again",
            host.not_installed.join(" ")
        ));
    }
    let reference: ImageRef = tag.parse()?;
    let (layer, rootfs) = host_rootfs(&host, cache_dir, events).await?;
    let size = layer.size;
    events.emit(Event::Step {
        message: format!("loading {} MB into the engine as {tag}", size / 1_000_000),
    });
    let image = builder_image(&host, layer, rootfs, &fingerprint)?;
    load_archive(engine, reference, image).await?;
    Ok(imported(false, size))
}

/// The builder's root filesystem as one layer, written to a temp file under `cache_dir`:
/// the host's toolchain, its Debian packages and the stds built for it.
async fn host_rootfs(
    host: &Arc<HostToolchain>,
    cache_dir: &Path,
    events: &Events,
) -> Result<(Written, std::fs::File)> {
    let stds = {
        let (host, cache_dir, events) = (host.clone(), cache_dir.to_path_buf(), events.clone());
        blocking(move || host.stds(&cache_dir, &events)).await?
    };
    events.emit(Event::Step {
        message: format!(
            "collecting {} and {} Debian packages",
            host.rustc_version,
            host.packages.len()
        ),
    });
    std::fs::create_dir_all(cache_dir)
        .map_err(Error::io(format!("creating {}", cache_dir.display())))?;
    let rootfs = tempfile::tempfile_in(cache_dir).map_err(Error::io(format!(
        "creating a temp file in {}",
        cache_dir.display()
    )))?;
    let host = host.clone();
    blocking(move || write_rootfs(&host, &stds, &rootfs).map(|layer| (layer, rootfs))).await
}

/// The builder image: its one layer, the toolchain on `PATH`, `/src` to work in, and the
/// labels that say what it was made from. No user, entrypoint or command: root and a shell,
/// as the compile step runs it.
fn builder_image(
    host: &HostToolchain,
    layer: Written,
    rootfs: std::fs::File,
    fingerprint: &str,
) -> Result<FileImage> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut env = vec![
        format!("PATH=/{RUST_DIR}/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "CARGO_HOME=/usr/local/cargo".to_string(),
    ];
    // The C compiler, archiver and linker of each musl target, for build scripts (cc-rs,
    // cmake-rs) and cargo.
    let musl = musl_target(&host.target).filter(|_| can_make_musl(&host.toolchain));
    for target in musl.iter().chain(&host.cross_musl) {
        let tools = CTools::for_target(target, &host.target);
        env.extend(
            tools
                .iter()
                .flat_map(CTools::env)
                .map(|(k, v)| format!("{k}={v}")),
        );
    }
    let labels = [
        (FINGERPRINT_LABEL, fingerprint),
        (TARGET_LABEL, host.target.as_str()),
        ("dev.ruchy.image.builder.rustc", host.rustc_version.as_str()),
    ];
    let mut config = oci_spec::image::Config::default();
    config.set_env(Some(env));
    config.set_working_dir(Some("/src".into()));
    config.set_labels(Some(
        labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ));
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(now),
    );
    let history = oci_spec::image::HistoryBuilder::default()
        .created(created.to_string())
        .created_by("ruchy-image builder import-host")
        .build()
        .expect("history has no required fields");
    let architecture = crate::core::platform::Platform::of_target(&host.target)
        .map_or(crate::core::platform::arch(&host.target), |p| {
            p.architecture()
        });
    FileImage::new(
        vec![(layer, rootfs)],
        config,
        vec![history],
        now,
        architecture,
    )
}

/// Loads `image` into the engine as `reference`: its archive is written on a blocking thread
/// and streamed to the engine as it is written (the layer read from its file, never held
/// whole). A `docker save`-format archive (with the OCI layout beside it), as every engine
/// loads it the same way. (Podman's import API, which Docker's `import` would use, drops the
/// tag and every change: labels, env, working dir.)
async fn load_archive(engine: &Engine, reference: ImageRef, image: FileImage) -> Result<()> {
    let context = format!("loading the builder image {reference}");
    let write = move |out| archive::write_files(out, &image, &reference, 0);
    stream_to_engine("writing the builder image archive", write, |chunks| {
        engine.load_stream(chunks, &context)
    })
    .await
}
