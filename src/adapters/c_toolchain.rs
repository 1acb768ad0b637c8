//! The C side of a Rust build for a Linux target: which C compiler, archiver and linker a
//! crate's build script gets (cc-rs and cmake-rs read `CC_<target>`, `CXX_<target>` and
//! `AR_<target>`; cargo reads `CARGO_TARGET_<TARGET>_LINKER`), as Debian names them. ring,
//! zstd, SQLite, OpenSSL and jemalloc compile C this way, so a builder without these fails
//! with cc-rs's `failed to find tool "x86_64-linux-musl-gcc"`.
//!
//! musl targets compile with Debian's `musl-gcc` wrapper (`musl-tools`, gcc with musl's
//! headers and libraries by a specs file) and, for another architecture, its
//! `<arch>-linux-musl-gcc` (`musl-dev:<arch>`) over the cross gcc. There is no C++ standard
//! library built for musl in Debian, so musl targets get no `CXX`.

use std::path::Path;

use crate::core::platform::arch;

/// The C tools for one target, as program names found on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CTools {
    /// The target triple.
    pub target: String,
    /// The C compiler.
    pub cc: String,
    /// The C++ compiler, where there is a C++ standard library for the target.
    pub cxx: Option<String>,
    /// The static archiver.
    pub ar: String,
    /// The linker cargo should give rustc, where the default (`cc`) is not right.
    pub linker: Option<String>,
}

impl CTools {
    /// The tools for `target` when compiling on `host` (both triples); `None` for a target
    /// that is not Linux gnu or musl.
    pub fn for_target(target: &str, host: &str) -> Option<CTools> {
        if !target.contains("-linux-") {
            return None;
        }
        let musl = target.ends_with("-musl");
        if !musl && !target.ends_with("-gnu") {
            return None;
        }
        let target_arch = arch(target);
        let native = target_arch == arch(host);
        let gnu_prefix = format!("{target_arch}-linux-gnu-");
        let (cc, cxx) = match (musl, native) {
            (true, true) => ("musl-gcc".to_string(), None),
            (true, false) => (format!("{target_arch}-linux-musl-gcc"), None),
            (false, true) => ("gcc".to_string(), Some("g++".to_string())),
            (false, false) => (format!("{gnu_prefix}gcc"), Some(format!("{gnu_prefix}g++"))),
        };
        Some(CTools {
            target: target.to_string(),
            cc,
            cxx,
            ar: if native {
                "ar".into()
            } else {
                format!("{gnu_prefix}ar")
            },
            linker: (!native).then(|| format!("{gnu_prefix}gcc")),
        })
    }

    /// The environment that hands these tools to build scripts and cargo.
    pub fn env(&self) -> Vec<(String, String)> {
        let underscored = self.target.replace('-', "_");
        let mut env = vec![
            (format!("CC_{underscored}"), self.cc.clone()),
            (format!("AR_{underscored}"), self.ar.clone()),
        ];
        if let Some(cxx) = &self.cxx {
            env.push((format!("CXX_{underscored}"), cxx.clone()));
        }
        if let Some(linker) = &self.linker {
            env.push((
                format!("CARGO_TARGET_{}_LINKER", underscored.to_uppercase()),
                linker.clone(),
            ));
        }
        env
    }

    /// Whether the user's environment already says what `name` (one of [`CTools::env`]'s)
    /// says: the variable itself, or the ones cc-rs reads for every target (`CC`,
    /// `TARGET_CC`, `CC_x86_64-unknown-linux-musl`).
    pub fn user_set(&self, name: &str) -> bool {
        let set = |name: &str| std::env::var_os(name).is_some();
        if set(name) {
            return true;
        }
        match name.split_once('_') {
            Some((tool @ ("CC" | "CXX" | "AR"), _)) => {
                set(tool)
                    || set(&format!("TARGET_{tool}"))
                    || set(&format!("{tool}_{}", self.target))
            }
            _ => false,
        }
    }

    /// Whether the C compiler is on this machine's `PATH`.
    pub fn cc_on_path(&self) -> bool {
        on_path(&self.cc)
    }
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The programs C build systems take for granted (autoconf's `configure`, OpenSSL's
/// `Configure`, cmake-rs), which a builder must have besides the C compiler.
pub const BUILD_SCRIPT_TOOLS: &[&str] = &[
    "sh",
    "bash",
    "sed",
    "grep",
    "awk",
    "make",
    "perl",
    "pkg-config",
    "cmake",
];

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn native_musl_compiles_with_the_musl_gcc_wrapper_and_no_cxx() {
        let tools = CTools::for_target("x86_64-unknown-linux-musl", HOST).unwrap();
        assert_eq!(
            tools.env(),
            [
                ("CC_x86_64_unknown_linux_musl".into(), "musl-gcc".into()),
                ("AR_x86_64_unknown_linux_musl".into(), "ar".into()),
            ]
        );
    }

    #[test]
    fn another_architecture_gets_its_cross_tools_and_linker() {
        let musl = CTools::for_target("aarch64-unknown-linux-musl", HOST).unwrap();
        assert_eq!(musl.cc, "aarch64-linux-musl-gcc");
        assert_eq!(musl.ar, "aarch64-linux-gnu-ar");
        assert!(musl.env().contains(&(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER".into(),
            "aarch64-linux-gnu-gcc".into()
        )));
        let gnu = CTools::for_target("aarch64-unknown-linux-gnu", HOST).unwrap();
        assert_eq!(gnu.cxx.as_deref(), Some("aarch64-linux-gnu-g++"));
    }

    #[test]
    fn non_linux_targets_have_none() {
        assert_eq!(CTools::for_target("wasm32-unknown-unknown", HOST), None);
        assert_eq!(
            CTools::for_target("x86_64-unknown-linux-musleabi", HOST),
            None
        );
    }
}
