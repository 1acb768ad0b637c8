//! Standard libraries built once per compiler, for what a toolchain ships no std for: a
//! target (musl, with Debian's rustc) or a panic strategy (`immediate-abort`, for the `size`
//! preset). Built from the toolchain's own sources with `-Zbuild-std` the way rustup's std is
//! (opt-level 3, one codegen unit, bitcode embedded so fat LTO reaches into std), and laid
//! out as a sysroot with rustup's `self-contained` objects, so rustc links a static musl
//! binary with plain `cc` and no per-project std build is ever needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::adapters::toolchain::{field, Toolchain};
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};

use crate::core::preset::StdVariant;

/// What a built std was made from, written beside its libraries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// `rustc -vV` of the compiler that built it; only that compiler can use it.
    pub rustc: String,
    /// Target triple.
    pub target: String,
    /// Which std.
    pub variant: StdVariant,
}

/// The stamp's file name, in `lib/rustlib/<target>/`.
pub const STAMP: &str = "ruchy-image-std.json";

/// Reads the stamp of the std for `target` in `sysroot`, if there is one.
pub fn read_stamp(sysroot: &Path, target: &str) -> Option<Stamp> {
    let path = sysroot.join("lib/rustlib").join(target).join(STAMP);
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether a std stamped `stamp` can be used by the compiler whose `rustc -vV` is `rustc`.
/// The commit and the version line both count: a distribution's rebuild of the same
/// release keeps the version number but not the crate hashes.
pub fn matches(stamp: &Stamp, rustc: &str) -> bool {
    field(&stamp.rustc, "commit-hash:") == field(rustc, "commit-hash:")
        && stamp.rustc.lines().next() == rustc.lines().next()
        && field(&stamp.rustc, "host:") == field(rustc, "host:")
}

/// Where the std for (`target`, `variant`) of `toolchain` is kept under `cache_dir`.
pub fn cached_sysroot(
    cache_dir: &Path,
    toolchain: &Toolchain,
    target: &str,
    variant: StdVariant,
) -> PathBuf {
    cache_dir
        .join("std")
        .join(toolchain.fingerprint())
        .join(format!("{target}-{}", variant.name()))
}

/// The sysroot holding std for (`target`, `variant`), built now when it is not in the cache.
pub fn ensure(
    toolchain: &Toolchain,
    target: &str,
    variant: StdVariant,
    cache_dir: &Path,
    events: &Events,
) -> Result<PathBuf> {
    let sysroot = cached_sysroot(cache_dir, toolchain, target, variant);
    let wanted = Stamp {
        rustc: toolchain.verbose_version.clone(),
        target: target.to_string(),
        variant,
    };
    if read_stamp(&sysroot, target).as_ref() == Some(&wanted) {
        return Ok(sysroot);
    }
    build(toolchain, &wanted, &sysroot, events)?;
    Ok(sysroot)
}

/// The carrier crate's manifest: a library (nothing is linked) whose profile is rust-lang's
/// `dist` profile for std. `panic_abort` is always compiled with `panic=abort`, or a
/// program using that strategy would not link against an unwind std.
fn carrier_manifest(variant: StdVariant) -> String {
    let opt_level = match variant {
        StdVariant::Unwind => "3",
        StdVariant::ImmediateAbort => "\"z\"",
    };
    let panic = match variant {
        StdVariant::Unwind => "unwind",
        StdVariant::ImmediateAbort => "abort",
    };
    format!(
        r#"cargo-features = ["profile-rustflags"]

[package]
name = "ruchy-image-std"
version = "0.0.0"
edition = "2021"

[lib]
path = "lib.rs"

[workspace]

[profile.release]
opt-level = {opt_level}
codegen-units = 1
debug = false
panic = "{panic}"
lto = false

[profile.release.package]
addr2line = {{ debug = 0, opt-level = "s" }}
adler2 = {{ debug = 0 }}
gimli = {{ debug = 0, opt-level = "s" }}
miniz_oxide = {{ debug = 0, opt-level = "s" }}
object = {{ debug = 0 }}
rustc-demangle = {{ debug = 0, opt-level = "s" }}

[profile.release.package.panic_abort]
rustflags = ["-Cpanic=abort"]
"#
    )
}

/// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`, the variable cargo reads target-only flags from.
pub fn target_rustflags_var(target: &str) -> String {
    format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace(['-', '.'], "_")
    )
}

fn run_checked(command: &mut Command, what: &str) -> Result<String> {
    let out = command.output().map_err(|source| Error::Spawn {
        program: what.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Spawn {
            program: what.to_string(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What linking a static musl binary needs from the host, besides std: musl's C library and
/// start files, gcc's crtbegin/crtend, and an LLVM libunwind (Debian's `musl-tools` and
/// `libunwind-14-dev`; for another architecture, its cross gcc, its `musl-dev` from Debian's
/// multiarch, and its libunwind.a in `/usr/local/lib/<arch>-linux-musl`).
struct MuslParts {
    musl_lib: PathBuf,
    gcc_lib: PathBuf,
    libunwind: PathBuf,
    /// The C compiler for the `__fprintf_chk` shim: `musl-gcc`, or `<arch>-linux-musl-gcc`.
    musl_gcc: String,
}

/// Debian's name for a Rust architecture (`aarch64` is `arm64`).
pub fn debian_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether this machine has what linking a static musl binary for `target` needs (checked
/// before choosing to build its std): see [`MuslParts`].
pub fn musl_parts_present(target: &str) -> bool {
    MuslParts::find(target).is_ok()
}

/// The Debian packages (and the one extracted file) a static musl build for `arch` needs on
/// this machine, for messages.
pub fn musl_packages(arch: &str) -> String {
    if arch == std::env::consts::ARCH {
        return "Debian's musl-tools and libunwind-14-dev".to_string();
    }
    let deb = debian_arch(arch);
    format!(
        "Debian's gcc-{arch}-linux-gnu and musl-dev:{deb} (after `dpkg --add-architecture {deb}`), and LLVM's libunwind.a for {arch} in /usr/local/lib/{arch}-linux-musl (from libunwind-14-dev:{deb}, which cannot be installed beside the host's: .ci/setup extracts it)"
    )
}

impl MuslParts {
    fn find(target: &str) -> Result<MuslParts> {
        let arch = crate::core::platform::arch(target);
        let cross = arch != std::env::consts::ARCH;
        let packages = musl_packages(arch);
        let missing = |what: &str| Error::StdBuildFailed {
            target: target.to_string(),
            reason: format!("{what} is missing; install {packages}"),
        };
        let musl_lib = PathBuf::from(format!("/usr/lib/{arch}-linux-musl"));
        if !musl_lib.join("libc.a").is_file() {
            return Err(missing(&format!("{}/libc.a", musl_lib.display())));
        }
        let gcc = match cross {
            false => "gcc".to_string(),
            true => format!("{arch}-linux-gnu-gcc"),
        };
        let libgcc = run_checked(
            Command::new(&gcc).arg("-print-libgcc-file-name"),
            &format!("{gcc} -print-libgcc-file-name"),
        )
        .map_err(|_| missing(&gcc))?;
        let gcc_lib = Path::new(&libgcc)
            .parent()
            .map(Path::to_path_buf)
            .filter(|dir| dir.join("crtbeginS.o").is_file())
            .ok_or_else(|| missing("gcc's crtbeginS.o"))?;
        let mut unwinds = vec![PathBuf::from(format!(
            "/usr/local/lib/{arch}-linux-musl/libunwind.a"
        ))];
        if !cross {
            // The host's LLVM, newest last.
            let mut llvm: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
                .map_err(Error::io("reading /usr/lib"))?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
                .map(|e| e.path().join("lib/libunwind.a"))
                .collect();
            llvm.sort();
            unwinds.extend(llvm.into_iter().rev());
        }
        let libunwind = unwinds
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| missing(&format!("LLVM's libunwind.a for {arch}")))?;
        Ok(MuslParts {
            musl_lib,
            gcc_lib,
            libunwind,
            musl_gcc: match cross {
                false => "musl-gcc".into(),
                true => format!("{arch}-linux-musl-gcc"),
            },
        })
    }

    /// Fills `lib` (the target's library directory) the way rustup's musl std comes:
    /// `libunwind.a` beside the rlibs and a `self-contained` directory with musl's libc and
    /// start files, which rustc uses when it links a musl binary itself.
    fn install(&self, lib: &Path, scratch: &Path) -> Result<()> {
        let io = |what: &Path| Error::io(format!("installing {}", what.display()));
        let own = lib.join("self-contained");
        std::fs::create_dir_all(&own).map_err(io(&own))?;
        for name in ["crt1.o", "crti.o", "crtn.o", "rcrt1.o", "Scrt1.o", "libc.a"] {
            let from = self.musl_lib.join(name);
            std::fs::copy(&from, own.join(name)).map_err(io(&from))?;
        }
        for name in ["crtbegin.o", "crtbeginS.o", "crtend.o", "crtendS.o"] {
            let from = self.gcc_lib.join(name);
            std::fs::copy(&from, own.join(name)).map_err(io(&from))?;
        }
        // Debian's libunwind is built against glibc with _FORTIFY_SOURCE and calls
        // `__fprintf_chk`, which musl lacks: an object forwarding it to vfprintf goes into
        // the archive.
        let shim_c = scratch.join("fprintf_chk.c");
        let shim_o = scratch.join("fprintf_chk.o");
        std::fs::write(&shim_c, FPRINTF_CHK).map_err(io(&shim_c))?;
        run_checked(
            Command::new(&self.musl_gcc)
                .args(["-O2", "-c"])
                .arg(&shim_c)
                .arg("-o")
                .arg(&shim_o),
            &self.musl_gcc,
        )?;
        let archive = lib.join("libunwind.a");
        std::fs::copy(&self.libunwind, &archive).map_err(io(&self.libunwind))?;
        run_checked(
            Command::new("ar").arg("rcs").arg(&archive).arg(&shim_o),
            "ar",
        )?;
        std::fs::copy(&archive, own.join("libunwind.a")).map_err(io(&archive))?;
        Ok(())
    }
}

const FPRINTF_CHK: &str = r#"#include <stdio.h>
#include <stdarg.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    (void)flag;
    va_list ap; va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}
"#;

/// Builds std as `stamp` says into `sysroot` (replacing what is there, all at once).
pub fn build(toolchain: &Toolchain, stamp: &Stamp, sysroot: &Path, events: &Events) -> Result<()> {
    let target = stamp.target.as_str();
    if toolchain.std_sources().is_none() {
        return Err(std_failed(
            target,
            format!(
                "{} has no standard library sources (rustup's rust-src component, Debian's rust-web-src)",
                toolchain.version()
            ),
        ));
    }
    let musl = if target.contains("-musl") {
        Some(MuslParts::find(target)?)
    } else {
        None
    };
    let parent = sysroot.parent().unwrap_or(sysroot);
    std::fs::create_dir_all(parent).map_err(Error::io(format!("creating {}", parent.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(&crate::adapters::cleanup::temp_prefix("std"))
        .tempdir_in(parent)
        .map_err(Error::io(format!(
            "creating a temp dir in {}",
            parent.display()
        )))?;
    let carrier = write_carrier(scratch.path(), stamp.variant)?;

    events.emit(Event::Step {
        message: format!(
            "building the standard library for {target} ({}) once for {}; about a minute",
            stamp.variant.name(),
            toolchain.version()
        ),
    });
    build_std(toolchain, stamp, &carrier, &scratch.path().join("target"))?;
    let staged = scratch.path().join("sysroot");
    let copied = stage_sysroot(stamp, scratch.path(), &staged, musl.as_ref())?;

    // Swap in whole: a reader sees the old sysroot or the new one, never half of one.
    if sysroot.exists() {
        let old = scratch.path().join("old");
        std::fs::rename(sysroot, &old)
            .map_err(Error::io(format!("replacing {}", sysroot.display())))?;
    }
    std::fs::rename(&staged, sysroot)
        .map_err(Error::io(format!("installing {}", sysroot.display())))?;
    events.note(format!(
        "standard library for {target} ({}) ready: {copied} libraries in {}",
        stamp.variant.name(),
        sysroot.display()
    ));
    Ok(())
}

/// The error for a std that could not be built for `target`.
fn std_failed(target: &str, reason: String) -> Error {
    Error::StdBuildFailed {
        target: target.to_string(),
        reason,
    }
}

/// Writes the empty `no_std` crate that cargo builds std for, in `scratch`; returns its
/// directory.
fn write_carrier(scratch: &Path, variant: StdVariant) -> Result<PathBuf> {
    let carrier = scratch.join("carrier");
    std::fs::create_dir_all(&carrier).map_err(Error::io("creating the std carrier crate"))?;
    std::fs::write(carrier.join("Cargo.toml"), carrier_manifest(variant))
        .and_then(|_| std::fs::write(carrier.join("lib.rs"), "#![no_std]\n"))
        .map_err(Error::io("writing the std carrier crate"))?;
    Ok(carrier)
}

/// Runs `cargo -Zbuild-std` on the carrier crate into `target_dir`, with the stamp's variant's
/// crates, features and flags; a failure carries the end of cargo's output.
fn build_std(
    toolchain: &Toolchain,
    stamp: &Stamp,
    carrier: &Path,
    target_dir: &Path,
) -> Result<()> {
    let target = stamp.target.as_str();
    let mut std_flags = vec!["-Cembed-bitcode=yes"];
    std_flags.extend(stamp.variant.consumer_rustflags());
    let (crates, features) = match stamp.variant {
        StdVariant::Unwind => ("std,panic_abort,test", None),
        StdVariant::ImmediateAbort => ("std,panic_abort", Some("optimize_for_size")),
    };
    let mut cargo = Command::new(&toolchain.cargo);
    cargo
        .current_dir(carrier)
        .args(["build", "--release", "--quiet", "--target", target])
        .arg(format!("-Zbuild-std={crates}"))
        .env("RUSTC", &toolchain.rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir)
        .env(target_rustflags_var(target), std_flags.join(" "))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null());
    if let Some(features) = features {
        cargo.arg(format!("-Zbuild-std-features={features}"));
    }
    let out = cargo.output().map_err(|source| Error::Spawn {
        program: toolchain.cargo.display().to_string(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(std_failed(
            target,
            format!(
                "cargo -Zbuild-std exited with {}:\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    Ok(())
}

/// Lays out the sysroot at `staged`: the rlibs cargo built in `scratch`'s target directory,
/// musl's parts for a musl target, and the stamp. Returns how many libraries it holds.
fn stage_sysroot(
    stamp: &Stamp,
    scratch: &Path,
    staged: &Path,
    musl: Option<&MuslParts>,
) -> Result<usize> {
    let target = stamp.target.as_str();
    let lib = staged.join("lib/rustlib").join(target).join("lib");
    std::fs::create_dir_all(&lib).map_err(Error::io(format!("creating {}", lib.display())))?;
    let deps = scratch.join("target").join(target).join("release/deps");
    let mut copied = 0;
    for entry in std::fs::read_dir(&deps)
        .map_err(Error::io(format!("reading {}", deps.display())))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rlib") && !name.starts_with("libruchy_image_std-") {
            std::fs::copy(entry.path(), lib.join(&name))
                .map_err(Error::io(format!("installing {name}")))?;
            copied += 1;
        }
    }
    if copied == 0 {
        return Err(std_failed(target, "cargo built no libraries".into()));
    }
    if let Some(musl) = musl {
        musl.install(&lib, scratch)?;
    }
    let stamp_json = serde_json::to_vec_pretty(stamp).map_err(|source| Error::Json {
        what: "the std stamp",
        source,
    })?;
    let stamp_path = staged.join("lib/rustlib").join(target).join(STAMP);
    std::fs::write(&stamp_path, stamp_json)
        .map_err(Error::io(format!("writing {}", stamp_path.display())))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_std_matches_only_its_own_compiler() {
        let debian = "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)\ncommit-hash: ac68faa20c58\nhost: x86_64-unknown-linux-gnu\n";
        let rustup = "rustc 1.95.0 (59807616e 2026-04-14)\ncommit-hash: 59807616e1fa\nhost: x86_64-unknown-linux-gnu\n";
        let stamp = Stamp {
            rustc: debian.into(),
            target: "x86_64-unknown-linux-musl".into(),
            variant: StdVariant::Unwind,
        };
        assert!(matches(&stamp, debian));
        assert!(!matches(&stamp, rustup));
        assert_eq!(
            target_rustflags_var("x86_64-unknown-linux-musl"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS"
        );
    }
}
