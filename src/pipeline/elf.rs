//! Reads what the image needs to know about a binary from its ELF headers: the architecture
//! for the image config, and whether it needs a dynamic loader (`PT_INTERP`).

use std::path::Path;

use goblin::elf::{header, Elf};

use crate::core::error::{Error, Result};

/// What the ELF headers say about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    /// The dynamic loader it asks for; `None` for a static executable.
    pub interpreter: Option<String>,
    /// OCI architecture name (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// The C library it was linked against, as far as the headers tell: `musl` or `glibc`
    /// from the loader's name, `glibc` for a static binary with glibc's ABI note, else
    /// `unknown` (static musl, Go, or no libc at all look alike).
    pub libc: &'static str,
}

impl BinaryInfo {
    /// Whether the binary runs without a loader or shared libraries.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }
}

/// Parses the headers of `bytes`, the contents of the file at `path`.
pub fn inspect(path: &Path, bytes: &[u8]) -> Result<BinaryInfo> {
    let not_elf = |reason: String| Error::NotElf {
        path: path.to_path_buf(),
        reason,
    };
    let elf = Elf::parse(bytes).map_err(|e| not_elf(e.to_string()))?;
    if !matches!(elf.header.e_type, header::ET_EXEC | header::ET_DYN) {
        return Err(not_elf("it is not an executable".into()));
    }
    let architecture = match elf.header.e_machine {
        header::EM_X86_64 => "amd64",
        header::EM_AARCH64 => "arm64",
        header::EM_386 => "386",
        header::EM_ARM => "arm",
        header::EM_RISCV => "riscv64",
        header::EM_PPC64 => "ppc64le",
        header::EM_S390 => "s390x",
        other => return Err(not_elf(format!("unsupported machine type {other}"))),
    };
    let libc = match elf.interpreter {
        Some(loader) if loader.contains("ld-musl") => "musl",
        Some(loader) if loader.contains("ld-linux") => "glibc",
        Some(_) => "unknown",
        None if has_gnu_abi_tag(&elf, bytes) => "glibc",
        None => "unknown",
    };
    Ok(BinaryInfo {
        interpreter: elf.interpreter.map(str::to_string),
        architecture: architecture.to_string(),
        libc,
    })
}

/// Whether the binary carries glibc's `NT_GNU_ABI_TAG` note (`.note.ABI-tag`, what `file`
/// reads as "for GNU/Linux"): glibc's startup files put it in; musl's do not.
fn has_gnu_abi_tag(elf: &Elf, bytes: &[u8]) -> bool {
    elf.iter_note_headers(bytes)
        .into_iter()
        .flatten()
        .flatten()
        .any(|note| note.n_type == goblin::elf::note::NT_GNU_ABI_TAG && note.name == "GNU")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_is_dynamic() {
        // cargo links test binaries dynamically on the host: a real ELF with PT_INTERP.
        let exe = std::env::current_exe().unwrap();
        let info = inspect(&exe, &std::fs::read(&exe).unwrap()).unwrap();
        assert!(!info.is_static(), "{info:?}");
        assert!(info.interpreter.unwrap().contains("ld"));
        assert_eq!(info.libc, "glibc");
    }

    #[test]
    fn text_is_not_an_executable() {
        let err = inspect(Path::new("x.sh"), b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(err.to_string().contains("not a Linux executable"), "{err}");
    }
}
