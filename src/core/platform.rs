//! Platforms as OCI and Docker name them (`linux/amd64`, `linux/arm64`), and the Rust
//! architectures they stand for.

use crate::core::error::{Error, Result};

/// A Linux platform an image can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// `linux/amd64`: x86_64.
    Amd64,
    /// `linux/arm64`: aarch64 (Graviton, Apple silicon, Raspberry Pi 4/5).
    Arm64,
}

impl Platform {
    /// Every platform we build for.
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// The OCI architecture (`amd64`, `arm64`).
    pub fn architecture(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The Rust (and ELF, and Debian multiarch) architecture: `x86_64`, `aarch64`.
    pub fn rust_arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64",
            Platform::Arm64 => "aarch64",
        }
    }

    /// The platform a target triple builds for, if it is one of ours.
    pub fn of_target(triple: &str) -> Option<Platform> {
        let arch = arch(triple);
        Platform::ALL.into_iter().find(|p| p.rust_arch() == arch)
    }

    /// The platform of an OCI architecture name, if it is one of ours.
    pub fn of_architecture(architecture: &str) -> Option<Platform> {
        Platform::ALL
            .into_iter()
            .find(|p| p.architecture() == architecture)
    }
}

crate::core::text::serde_as_text!(Platform);

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "linux/{}", self.architecture())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    /// `linux/amd64`, `linux/arm64` (`linux/arm64/v8` too, its only variant), as docker takes
    /// them.
    fn from_str(value: &str) -> Result<Platform> {
        let platform = match value.trim() {
            "linux/amd64" => Some(Platform::Amd64),
            "linux/arm64" | "linux/arm64/v8" => Some(Platform::Arm64),
            _ => None,
        };
        platform.ok_or_else(|| Error::InvalidInput {
            what: "platform",
            value: value.to_string(),
            reason: "expected linux/amd64 or linux/arm64".into(),
        })
    }
}

/// The architecture of a target triple (`aarch64` of `aarch64-unknown-linux-musl`).
pub fn arch(triple: &str) -> &str {
    triple.split('-').next().unwrap_or_default()
}

/// The static musl target for the architecture of `triple` (`x86_64-unknown-linux-gnu` →
/// `x86_64-unknown-linux-musl`), when there is one.
pub fn musl_target(triple: &str) -> Option<String> {
    match arch(triple) {
        arch @ ("x86_64" | "aarch64" | "i686" | "riscv64gc") => {
            Some(format!("{arch}-unknown-linux-musl"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_print_and_map_to_rust_architectures() {
        let arm: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(arm, Platform::Arm64);
        assert_eq!(arm.to_string(), "linux/arm64");
        assert_eq!(
            Platform::of_target("aarch64-unknown-linux-musl"),
            Some(Platform::Arm64)
        );
        assert_eq!(
            Platform::of_target("x86_64-unknown-linux-gnu"),
            Some(Platform::Amd64)
        );
        assert_eq!(Platform::of_target("riscv64gc-unknown-linux-gnu"), None);
        assert_eq!(Platform::of_architecture("arm64"), Some(Platform::Arm64));
        let error = "linux/s390x".parse::<Platform>().unwrap_err().to_string();
        assert!(
            error.contains("expected linux/amd64 or linux/arm64"),
            "{error}"
        );
        assert!("windows/amd64".parse::<Platform>().is_err());
    }

    #[test]
    fn musl_targets_follow_the_architecture() {
        assert_eq!(
            musl_target("x86_64-unknown-linux-gnu").as_deref(),
            Some("x86_64-unknown-linux-musl")
        );
        assert_eq!(musl_target("wasm32-wasip1"), None);
    }
}
