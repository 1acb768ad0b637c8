//! Rust toolchains on this machine: a rustc, the cargo beside it, and which standard
//! libraries they have. A toolchain can make a target when its sysroot holds std for it, or
//! when it carries the standard library's sources, from which [`crate::adapters::stdlib`] builds std
//! once (Debian's `rustc-web` with `rust-web-src` has no musl std but can build one).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::error::{Error, Result};

/// A rustc and the cargo that goes with it.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The compiler binary (not a rustup proxy).
    pub rustc: PathBuf,
    /// The cargo beside it.
    pub cargo: PathBuf,
    /// `rustc -vV`, whole: it names the exact compiler a std must come from.
    pub verbose_version: String,
    /// Its sysroot (`/usr` for Debian's, a rustup toolchain's directory otherwise).
    pub sysroot: PathBuf,
}

impl Toolchain {
    /// The toolchain of `$RUSTC`, else of `rustc` on PATH.
    pub fn from_env() -> Result<Toolchain> {
        let rustc = std::env::var_os("RUSTC")
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("rustc"));
        Toolchain::probe(&rustc)
    }

    /// Asks `rustc` who it is. A rustup proxy is resolved to the toolchain's own binaries, so
    /// the result names one compiler, whatever the directory it is later run from.
    pub fn probe(rustc: &Path) -> Result<Toolchain> {
        let run = |args: &[&str]| -> Result<String> {
            let out = Command::new(rustc)
                .args(args)
                .output()
                .map_err(|source| Error::Spawn {
                    program: rustc.display().to_string(),
                    source,
                })?;
            if !out.status.success() {
                return Err(Error::Spawn {
                    program: format!("{} {}", rustc.display(), args.join(" ")),
                    source: std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ),
                });
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let verbose_version = run(&["-vV"])?;
        let sysroot = PathBuf::from(run(&["--print", "sysroot"])?);
        let sysroot = std::fs::canonicalize(&sysroot).unwrap_or(sysroot);
        let own = |name: &str| {
            let path = sysroot.join("bin").join(name);
            path.is_file().then_some(path)
        };
        let rustc_path = own("rustc").unwrap_or_else(|| rustc.to_path_buf());
        let cargo = own("cargo").unwrap_or_else(|| {
            rustc
                .parent()
                .map(|dir| dir.join("cargo"))
                .filter(|c| c.is_file())
                .unwrap_or_else(|| PathBuf::from("cargo"))
        });
        Ok(Toolchain {
            rustc: rustc_path,
            cargo,
            verbose_version,
            sysroot,
        })
    }

    fn field(&self, name: &str) -> String {
        field(&self.verbose_version, name)
    }

    /// The first line of `rustc -vV`: `rustc 1.96.0 (ac68faa20 2026-05-25)`.
    pub fn version(&self) -> &str {
        self.verbose_version.lines().next().unwrap_or_default()
    }

    /// The release number, `1.96.0`.
    pub fn release(&self) -> String {
        self.field("release:")
    }

    /// The host triple, which is also its default target.
    pub fn host(&self) -> String {
        self.field("host:")
    }

    /// Changes whenever the compiler does: its version text and where it lives.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(&self.verbose_version);
        hasher.update(self.sysroot.as_os_str().as_encoded_bytes());
        hex(&hasher.finalize())[..16].to_string()
    }

    /// Whether the sysroot ships std for `target`.
    pub fn has_std(&self, target: &str) -> bool {
        has_std(&self.sysroot, target)
    }

    /// The standard library's sources, when the toolchain carries them (rustup's `rust-src`
    /// component, Debian's `rust-web-src`).
    pub fn std_sources(&self) -> Option<PathBuf> {
        let library = self.sysroot.join("lib/rustlib/src/rust/library");
        library.join("std/Cargo.toml").is_file().then_some(library)
    }

    /// Whether `target` is a target this rustc knows.
    pub fn knows_target(&self, target: &str) -> Result<bool> {
        let out = Command::new(&self.rustc)
            .args(["--print", "target-list"])
            .output()
            .map_err(|source| Error::Spawn {
                program: self.rustc.display().to_string(),
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|t| t == target))
    }
}

/// A field of `rustc -vV` output (`release:`, `host:`, `commit-hash:`).
pub fn field(verbose_version: &str, name: &str) -> String {
    verbose_version
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether the sysroot at `sysroot` has `libstd` for `target`.
pub fn has_std(sysroot: &Path, target: &str) -> bool {
    std::fs::read_dir(sysroot.join("lib/rustlib").join(target).join("lib")).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") && name.ends_with(".rlib")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_rustc_vv() {
        let vv = "rustc 1.96.0 (ac68faa20 2026-05-25)\nbinary: rustc\ncommit-hash: ac68faa\nhost: x86_64-unknown-linux-gnu\nrelease: 1.96.0\n";
        assert_eq!(field(vv, "host:"), "x86_64-unknown-linux-gnu");
        assert_eq!(field(vv, "commit-hash:"), "ac68faa");
    }

    #[test]
    fn the_active_toolchain_is_found() {
        let toolchain = Toolchain::from_env().unwrap();
        assert!(toolchain.rustc.is_file(), "{:?}", toolchain.rustc);
        assert!(toolchain.version().starts_with("rustc "));
        assert!(toolchain.has_std(&toolchain.host()));
        assert!(toolchain.knows_target("x86_64-unknown-linux-musl").unwrap());
        assert!(!toolchain.knows_target("x86_64-unknown-linux-mars").unwrap());
    }
}
