//! Why a command failed, as the terminal says it: the error with a hint that names this
//! command line's flags, budget overruns and failed presets, and the exit code.

use crate::core::budget::{Exceeded, Limit};
use crate::core::error::Error;
use crate::pipeline::compare::Verdict;
use crate::pipeline::compile::packages_for;

/// A budget overrun, naming the flag that set the budget.
pub(crate) fn exceeded(e: &Exceeded) -> String {
    let (what, how, flag) = match e.budget.limit {
        Limit::Binary => ("binary", "", "--max-binary-size"),
        Limit::Image => ("image", " stored", "--max-image-size"),
    };
    format!(
        "{}: {what} is {} bytes{how}, over the budget of {} bytes ({flag} {})",
        e.preset, e.size, e.budget.bytes, e.budget.spelled
    )
}

/// Why a command failed: the library's error, or a verdict the CLI turns into exit 1.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library failed.
    Error(Error),
    /// A build went over a size budget; its summary was already printed.
    OverBudget(Vec<Exceeded>),
    /// Presets of a comparison failed or went over a budget; the table was already printed.
    Comparison(Verdict),
    /// `doctor` found what the default build needs missing (these checks); its report was
    /// already printed.
    NotReady(Vec<&'static str>),
    /// `verify` found this many checks failing; its report was already printed.
    Unverified(usize),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Error(error)
    }
}

impl Failure {
    /// The exit code: the library's, or 1 for a verdict.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Error(error) => error.exit_code(),
            Failure::OverBudget(_)
            | Failure::Comparison(_)
            | Failure::NotReady(_)
            | Failure::Unverified(_) => 1,
        }
    }

    /// The message for stderr, with a hint when there is one.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Error(error) => {
                let mut message = error.to_string();
                if let Some(hint) = hint(error) {
                    message.push_str(&format!("\n  hint: {hint}"));
                }
                if doctor_knows(error) {
                    message.push_str(&format!("\n  {DOCTOR}"));
                }
                message
            }
            Failure::OverBudget(overruns) => {
                problems("size budgets exceeded", overruns.iter().map(exceeded))
            }
            Failure::Unverified(n) => format!("{n} check(s) failed: the image is not verified"),
            Failure::NotReady(missing) => format!(
                "the default build cannot run here: {} missing (the fixes are above)",
                missing.join(", ")
            ),
            Failure::Comparison(verdict) => problems(
                "the comparison failed",
                verdict
                    .failed
                    .iter()
                    .map(|(preset, error)| {
                        format!("{preset}: {}", error.lines().next().unwrap_or_default())
                    })
                    .chain(verdict.exceeded.iter().map(exceeded)),
            ),
        }
    }
}

/// One problem on its own line; several under a header, one per indented line.
fn problems(header: &str, lines: impl Iterator<Item = String>) -> String {
    let lines: Vec<String> = lines.collect();
    match lines.as_slice() {
        [one] => one.clone(),
        _ => format!("{header}:\n  {}", lines.join("\n  ")),
    }
}

/// Said after an error whose cause is this machine's setup, which `doctor` checks.
const DOCTOR: &str = "then: `ruchy-image doctor` checks everything else builds need here";

fn doctor_knows(error: &Error) -> bool {
    match error {
        Error::CleanupFailed { error, .. } => doctor_knows(error),
        Error::RuchyNotFound { .. }
        | Error::EngineUnavailable { .. }
        | Error::BuilderImageUnavailable { .. }
        | Error::BuilderImageMissing { .. }
        | Error::BuilderNotRust { .. }
        | Error::TargetUnsupported { .. }
        | Error::StdMismatch { .. }
        | Error::StdBuildFailed { .. }
        | Error::BuildToolMissing { .. } => true,
        _ => false,
    }
}

/// What to do about an error, in terms of this command line's flags.
fn hint(error: &Error) -> Option<String> {
    Some(match error {
        Error::RuchyNotFound { .. } => {
            "install it with `cargo install ruchy --locked`, or point to it with --ruchy PATH".into()
        }
        Error::BinAmbiguous { .. } => "choose one with --bin NAME".into(),
        Error::BuildToolMissing { in_container: true, tool, .. } => {
            let (debian, alpine) = packages_for(tool);
            let mut hint = format!("`sudo apt-get install {debian}` on this machine, then `ruchy-image builder import-host` makes a builder image that has it");
            if !alpine.is_empty() {
                hint.push_str(&format!("; from rust:1-alpine, a --builder-image whose Dockerfile adds `RUN apk add --no-cache {alpine}` (README: crates that build C)"));
            }
            hint
        }
        Error::BuildToolMissing { in_container: false, tool, .. } => {
            let (debian, _) = packages_for(tool);
            format!("`sudo apt-get install {debian}` (it must be on PATH), or build in the builder image (--builder docker)")
        }
        Error::BinNotFound {
            requested: None,
            available,
        } if !available.is_empty() => "choose one with --bin NAME".into(),
        Error::DynamicBinary { prebuilt: false, .. } => {
            "keep static linking on (the default; drop --no-static-link), or build for a musl target".into()
        }
        Error::DynamicBinary { prebuilt: true, .. } => {
            "link it statically where it is built (Rust: a musl target, or RUSTFLAGS=\"-C target-feature=+crt-static\"), or lay it on a base that has its loader and libraries with --base".into()
        }
        Error::MissingLoader { interpreter, prebuilt: false, .. } => format!(
            "build statically (the default; drop --no-static-link), or use a base that provides {interpreter}"
        ),
        Error::MissingLoader { interpreter, prebuilt: true, .. } => format!(
            "use a base that provides {interpreter} and the libraries `ldd` lists for the binary, or link it statically where it is built"
        ),
        Error::RootUser => {
            "drop --user to use the non-root default (nonroot, 65532), or pass --allow-root if you really need root".into()
        }
        Error::EngineUnavailable { .. } => {
            "start one (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at one;\n        without an engine, build with --builder local and write --oci-layout DIR or --output FILE.tar".into()
        }
        Error::BuilderNotRust { .. } => {
            "pass a Rust image with --builder-image (rust:1-alpine), or make one from this machine's toolchain with `ruchy-image builder import-host`".into()
        }
        Error::Registry { message, .. } if message.contains("TLS certificate") => {
            "pass the CA that signed it with --registry-ca FILE (or --insecure-registry HOST for plain HTTP)".into()
        }
        Error::Registry { message, .. } if message.contains("authentication failed") => {
            "check --registry-user and the password on stdin (--registry-password-stdin), or `docker login`".into()
        }
        Error::BuilderImageUnavailable { .. } => {
            "offline? `ruchy-image builder import-host` makes a builder image from this machine's toolchain; then pass --builder-image with the tag it prints (and --pull missing, the default)".into()
        }
        Error::BuilderImageMissing { image } => format!(
            "`ruchy-image builder pull {image}` pulls it, or `ruchy-image builder import-host` makes a builder image from this machine's toolchain (then pass --builder-image with the tag it prints); or drop --pull never"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::Budget;
    use crate::core::preset::Preset;

    #[test]
    fn overruns_name_preset_size_and_flag() {
        let binary = Exceeded {
            preset: Preset::Aggressive,
            size: 1_142_432,
            budget: Budget::parse(Limit::Binary, "400KB").unwrap(),
        };
        assert_eq!(
            exceeded(&binary),
            "aggressive: binary is 1142432 bytes, over the budget of 400000 bytes (--max-binary-size 400KB)"
        );
        let image = Exceeded {
            preset: Preset::None,
            size: 4_000_001,
            budget: Budget::parse(Limit::Image, "4MB").unwrap(),
        };
        assert_eq!(
            exceeded(&image),
            "none: image is 4000001 bytes stored, over the budget of 4000000 bytes (--max-image-size 4MB)"
        );
        let both = Failure::OverBudget(vec![binary, image]).message();
        assert!(
            both.starts_with("size budgets exceeded:\n  aggressive: binary"),
            "{both}"
        );
    }

    #[test]
    fn hints_name_flags_and_library_messages_do_not() {
        let error = Error::BinAmbiguous {
            available: vec!["a".into(), "b".into()],
        };
        assert!(!error.to_string().contains("--"), "{error}");
        assert_eq!(
            Failure::Error(error).message(),
            "the project has several binaries (a, b)\n  hint: choose one with --bin NAME"
        );
    }
}
