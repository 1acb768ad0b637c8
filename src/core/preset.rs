//! The four optimization presets of the book chapter, our `size` preset beyond them, and the
//! per-flag overrides on top of them,
//! turned into what cargo understands: a named profile set through `CARGO_PROFILE_<P>_*`
//! environment variables, plus target-only RUSTFLAGS for what profiles cannot say.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

/// An optimization preset, as `ruchy compile --optimize` defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// opt-level=0, debug info kept: fastest compile, biggest binary.
    None,
    /// opt-level=2, thin LTO: the production default.
    Balanced,
    /// opt-level=3, fat LTO, one codegen unit, symbols stripped: smallest portable binary.
    Aggressive,
    /// aggressive plus target-cpu=native and embedded bitcode: not portable to other CPUs.
    Nasa,
    /// Beyond the chapter: opt-level=z, fat LTO, one codegen unit, stripped, and
    /// panic=immediate-abort against a std rebuilt with `optimize_for_size`. A panic aborts
    /// with no message, and code is slower than aggressive's.
    Size,
}

impl Preset {
    /// All presets, from least to most optimized.
    pub const ALL: [Preset; 5] = [
        Preset::None,
        Preset::Balanced,
        Preset::Aggressive,
        Preset::Nasa,
        Preset::Size,
    ];

    /// The preset's name as used on the command line and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Preset::None => "none",
            Preset::Balanced => "balanced",
            Preset::Aggressive => "aggressive",
            Preset::Nasa => "nasa",
            Preset::Size => "size",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::InvalidInput {
                what: "preset",
                value: s.to_string(),
                reason: format!("valid presets are {}", names(&Preset::ALL, Preset::name)),
            })
    }
}

/// The one table of a setting's names: `ALL`, `name`, `Display` and `FromStr` (whose error
/// lists the valid names) for the CLI's flags, the service's parameters and the Dockerfile.
macro_rules! names {
    ($type:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every value, in the order `--help` lists them.
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            /// The value's name, as cargo and rustc spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $type {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $type::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| Error::InvalidInput {
                        what: $what,
                        value: s.to_string(),
                        reason: format!("valid: {}", names($type::ALL, $type::name)),
                    })
            }
        }
    };
}

/// The names of `values`, comma-separated, for messages that list the valid ones.
pub fn names<T: Copy>(values: &[T], name: fn(T) -> &'static str) -> String {
    values
        .iter()
        .map(|v| name(*v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Link-time optimization, as cargo's `lto` profile key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lto {
    /// No LTO across crates (`lto = "off"`).
    Off,
    /// Thin LTO.
    Thin,
    /// Fat (whole-program) LTO.
    Fat,
}

names!(Lto, "lto", { Off => "off", Thin => "thin", Fat => "fat" });

/// What to strip from the binary, as cargo's `strip` profile key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strip {
    /// Keep everything.
    None,
    /// Strip debug info only.
    Debuginfo,
    /// Strip debug info and symbols.
    Symbols,
}

names!(Strip, "strip", { None => "none", Debuginfo => "debuginfo", Symbols => "symbols" });

/// Panic strategy, as rustc's `-C panic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Panic {
    /// Unwind the stack on panic (Rust's default).
    Unwind,
    /// Abort on panic: smaller binaries, no unwinding tables needed.
    Abort,
    /// Abort at once, printing nothing: needs a std built for it (the `size` preset's).
    ImmediateAbort,
}

names!(Panic, "panic", {
    Unwind => "unwind",
    Abort => "abort",
    ImmediateAbort => "immediate-abort",
});

/// An optimization level accepted by rustc: 0-3, `s` or `z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct OptLevel(String);

impl From<OptLevel> for String {
    fn from(level: OptLevel) -> String {
        level.0
    }
}

impl TryFrom<String> for OptLevel {
    type Error = Error;
    fn try_from(level: String) -> Result<OptLevel> {
        level.parse()
    }
}

impl OptLevel {
    /// Every level rustc accepts, in the order `--help` lists them.
    pub const ALL: [&'static str; 6] = ["0", "1", "2", "3", "s", "z"];
}

impl FromStr for OptLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match OptLevel::ALL.contains(&s) {
            true => Ok(OptLevel(s.to_string())),
            false => Err(Error::InvalidInput {
                what: "opt-level",
                value: s.to_string(),
                reason: format!("valid levels are {}", OptLevel::ALL.join(", ")),
            }),
        }
    }
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-flag overrides applied on top of a preset; `None` keeps the preset's choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// `--opt-level`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_level: Option<OptLevel>,
    /// `--lto`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lto: Option<Lto>,
    /// `--codegen-units`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codegen_units: Option<u32>,
    /// `--strip` / `--no-strip`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip: Option<Strip>,
    /// `--panic`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panic: Option<Panic>,
    /// `--target-cpu`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<String>,
    /// `--static-link` / `--no-static-link`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_link: Option<bool>,
}

impl Overrides {
    /// The codegen-units `--codegen-units` and the settings take.
    pub const CODEGEN_UNITS: std::ops::RangeInclusive<u32> = 1..=256;

    /// These overrides, each unset one taken from `under` (a preset's own table over the
    /// overrides of every preset).
    pub fn over(&self, under: &Overrides) -> Overrides {
        Overrides {
            opt_level: self.opt_level.clone().or_else(|| under.opt_level.clone()),
            lto: self.lto.or(under.lto),
            codegen_units: self.codegen_units.or(under.codegen_units),
            strip: self.strip.or(under.strip),
            panic: self.panic.or(under.panic),
            target_cpu: self.target_cpu.clone().or_else(|| under.target_cpu.clone()),
            static_link: self.static_link.or(under.static_link),
        }
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }
}

/// The complete, resolved set of compiler settings for one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// The preset the settings started from.
    pub preset: Preset,
    /// rustc `opt-level`.
    pub opt_level: OptLevel,
    /// Whether full debug info is generated.
    pub debug: bool,
    /// Link-time optimization.
    pub lto: Lto,
    /// `codegen-units`, when the preset or the user fixes it.
    pub codegen_units: Option<u32>,
    /// What is stripped.
    pub strip: Strip,
    /// Panic strategy, when set.
    pub panic: Option<Panic>,
    /// `-C target-cpu`, when set.
    pub target_cpu: Option<String>,
    /// `-C embed-bitcode=yes`.
    pub embed_bitcode: bool,
    /// Statically link the C runtime (needed for FROM scratch).
    pub static_link: bool,
    /// The target triple compiled for.
    pub target: String,
    /// Link the list of the crates the binary is made of into it (a `.dep-v0` section, as
    /// `cargo auditable` does); off with `--no-embed-deps`.
    #[serde(default = "yes")]
    pub embed_deps: bool,
}

fn yes() -> bool {
    true
}

impl Flags {
    /// Resolves a preset plus overrides for a target triple.
    pub fn resolve(preset: Preset, overrides: &Overrides, target: &str) -> Flags {
        let optimized = preset != Preset::None;
        let small = matches!(preset, Preset::Aggressive | Preset::Nasa | Preset::Size);
        let default_opt = match preset {
            Preset::None => "0",
            Preset::Balanced => "2",
            Preset::Aggressive | Preset::Nasa => "3",
            Preset::Size => "z",
        };
        Flags {
            preset,
            opt_level: overrides
                .opt_level
                .clone()
                .unwrap_or_else(|| OptLevel(default_opt.to_string())),
            debug: !optimized,
            lto: overrides.lto.unwrap_or(match preset {
                Preset::None => Lto::Off,
                Preset::Balanced => Lto::Thin,
                Preset::Aggressive | Preset::Nasa | Preset::Size => Lto::Fat,
            }),
            codegen_units: overrides.codegen_units.or(small.then_some(1)),
            strip: overrides
                .strip
                .unwrap_or(if small { Strip::Symbols } else { Strip::None }),
            panic: overrides
                .panic
                .or((preset == Preset::Size).then_some(Panic::ImmediateAbort)),
            target_cpu: overrides
                .target_cpu
                .clone()
                .or((preset == Preset::Nasa).then(|| "native".to_string())),
            embed_bitcode: preset == Preset::Nasa,
            static_link: overrides.static_link.unwrap_or(true),
            target: target.to_string(),
            embed_deps: true,
        }
    }

    /// The cargo profile the build uses. Each preset has its own, so presets never overwrite
    /// each other's artifacts in a shared target directory.
    pub fn profile(&self) -> String {
        format!("ruchy-{}", self.preset)
    }

    /// The built-in profile ours inherits from.
    pub fn inherits(&self) -> &'static str {
        if self.preset == Preset::None {
            "dev"
        } else {
            "release"
        }
    }

    /// `CARGO_PROFILE_<P>_*` settings for the profile: every key is set, so a user's own
    /// `[profile.*]` tables cannot make a preset mean something else.
    pub fn cargo_env(&self) -> Vec<(String, String)> {
        let prefix = format!(
            "CARGO_PROFILE_{}_",
            self.profile().to_uppercase().replace('-', "_")
        );
        self.profile_settings()
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect()
    }

    /// The profile's keys as cargo's environment spells them (`OPT_LEVEL`, `LTO`...), without
    /// the `CARGO_PROFILE_<P>_` prefix, starting with `INHERITS`: [`Flags::cargo_env`] for our
    /// own profile, and `ruchy-image dockerfile` for the built-in one it inherits from.
    pub fn profile_settings(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("INHERITS", self.inherits().to_string()),
            ("OPT_LEVEL", self.opt_level.to_string()),
            (
                "DEBUG",
                if self.debug { "true" } else { "false" }.to_string(),
            ),
            ("LTO", self.lto.name().to_string()),
            ("STRIP", self.strip.name().to_string()),
        ];
        if let Some(units) = self.codegen_units {
            env.push(("CODEGEN_UNITS", units.to_string()));
        }
        if let Some(panic) = self.panic {
            // Cargo knows two strategies; immediate-abort is abort plus a rustc flag.
            let name = match panic {
                Panic::Unwind => "unwind",
                Panic::Abort | Panic::ImmediateAbort => "abort",
            };
            env.push(("PANIC", name.to_string()));
        }
        env
    }

    /// Codegen flags that cargo profiles cannot express; passed as target-only RUSTFLAGS.
    pub fn rustflags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(cpu) = &self.target_cpu {
            flags.push(format!("-Ctarget-cpu={cpu}"));
        }
        if self.embed_bitcode {
            flags.push("-Cembed-bitcode=yes".to_string());
        }
        if self.panic == Some(Panic::ImmediateAbort) {
            flags.extend(
                self.std_variant()
                    .consumer_rustflags()
                    .iter()
                    .map(|f| f.to_string()),
            );
        }
        let musl = self.target.contains("-musl");
        match (self.static_link, musl) {
            (true, false) => flags.push("-Ctarget-feature=+crt-static".to_string()),
            (false, true) => flags.push("-Ctarget-feature=-crt-static".to_string()),
            _ => {}
        }
        flags
    }

    /// The standard library the build links against: the immediate-abort one when the
    /// panic strategy asks for it.
    pub fn std_variant(&self) -> StdVariant {
        match self.panic {
            Some(Panic::ImmediateAbort) => StdVariant::ImmediateAbort,
            _ => StdVariant::Unwind,
        }
    }

    /// Whether rustc must accept unstable flags (`RUSTC_BOOTSTRAP=1`).
    pub fn needs_bootstrap(&self) -> bool {
        self.rustflags().iter().any(|f| f.starts_with("-Z"))
    }

    /// The C library the target links (`glibc`, `musl`), from its triple; `unknown` for a
    /// target that names neither.
    pub fn libc(&self) -> &'static str {
        let environment = self.target.rsplit('-').next().unwrap_or_default();
        match environment {
            e if e.starts_with("musl") => "musl",
            e if e.starts_with("gnu") => "glibc",
            _ => "unknown",
        }
    }

    /// The effective rustc flags, in the order `ruchy compile --verbose` lists them.
    pub fn listing(&self) -> Vec<String> {
        let mut list = Vec::new();
        if self.lto != Lto::Off {
            list.push(format!("-C lto={}", self.lto.name()));
        }
        if let Some(units) = self.codegen_units {
            list.push(format!("-C codegen-units={units}"));
        }
        if self.strip != Strip::None {
            list.push(format!("-C strip={}", self.strip.name()));
        }
        if let Some(cpu) = &self.target_cpu {
            list.push(format!("-C target-cpu={cpu}"));
        }
        if self.embed_bitcode {
            list.push("-C embed-bitcode=yes".to_string());
        }
        if let Some(panic @ (Panic::Abort | Panic::ImmediateAbort)) = self.panic {
            list.push(format!("-C panic={}", panic.name()));
        }
        if self.debug {
            list.push("-C debuginfo=2".to_string());
        }
        if self.static_link {
            list.push("-C target-feature=+crt-static".to_string());
        }
        list.push(format!("-C opt-level={}", self.opt_level));
        list
    }

    /// The chapter's `optimization_flags` record, extended with the rest of the settings.
    pub fn metrics(&self) -> FlagsRecord {
        FlagsRecord {
            opt_level: self.opt_level.to_string(),
            strip: self.strip != Strip::None,
            static_link: self.static_link,
            lto: self.lto.name().to_string(),
            target_cpu: self.target_cpu.clone(),
            codegen_units: self.codegen_units,
            strip_level: self.strip,
            panic: self.panic,
            embed_bitcode: self.embed_bitcode,
            debug: self.debug,
            target: self.target.clone(),
        }
    }
}

/// `optimization_flags` in the metrics JSON: the chapter's fields first, then ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagsRecord {
    /// rustc opt-level, as a string (`"3"`, `"z"`).
    pub opt_level: String,
    /// Whether anything is stripped.
    pub strip: bool,
    /// Whether the C runtime is statically linked.
    pub static_link: bool,
    /// `off`, `thin` or `fat`.
    pub lto: String,
    /// `-C target-cpu`, null when not set.
    pub target_cpu: Option<String>,
    /// codegen-units, null when cargo's default applies.
    pub codegen_units: Option<u32>,
    /// What is stripped: none, debuginfo, symbols.
    pub strip_level: Strip,
    /// Panic strategy, null for the default (unwind).
    pub panic: Option<Panic>,
    /// Whether bitcode is embedded.
    pub embed_bitcode: bool,
    /// Whether debug info is generated.
    pub debug: bool,
    /// Target triple.
    pub target: String,
}

/// Which std: the usual one, or one for `panic=immediate-abort`, built with the
/// `optimize_for_size` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdVariant {
    /// panic=unwind std (`panic_abort` too, so either strategy links), like rustup's.
    Unwind,
    /// Everything compiled with `panic=immediate-abort` and `optimize_for_size`: a panic
    /// aborts with no message, and the formatting machinery panics need is gone.
    ImmediateAbort,
}

impl StdVariant {
    /// The variant's name, as it appears in paths and labels.
    pub fn name(self) -> &'static str {
        match self {
            StdVariant::Unwind => "unwind",
            StdVariant::ImmediateAbort => "immediate-abort",
        }
    }

    /// rustc flags every crate linking against this std must be compiled with (they need
    /// `RUSTC_BOOTSTRAP=1` when not empty).
    pub fn consumer_rustflags(self) -> &'static [&'static str] {
        match self {
            StdVariant::Unwind => &[],
            StdVariant::ImmediateAbort => &["-Zunstable-options", "-Cpanic=immediate-abort"],
        }
    }
}

/// Which standard library a binary links, and where that std came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdInfo {
    /// `toolchain`: the one the toolchain ships; `rebuilt`: built from the toolchain's
    /// sources by ruchy-image, once per compiler (when the builder image was made, or on the
    /// first local build that needed it).
    pub source: StdSource,
    /// `unwind` (the usual std) or `immediate-abort` (built with `optimize_for_size`).
    pub variant: StdVariant,
}

/// Where a standard library came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdSource {
    /// Shipped with the toolchain.
    Toolchain,
    /// Rebuilt from the toolchain's sources by ruchy-image.
    Rebuilt,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GNU: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn presets_match_the_chapter() {
        let none = Flags::resolve(Preset::None, &Overrides::default(), GNU);
        assert_eq!(none.opt_level.to_string(), "0");
        assert!(none.debug);
        assert_eq!(none.lto, Lto::Off);

        let balanced = Flags::resolve(Preset::Balanced, &Overrides::default(), GNU);
        assert_eq!(
            (balanced.opt_level.to_string(), balanced.lto),
            ("2".into(), Lto::Thin)
        );
        assert_eq!(balanced.strip, Strip::None);

        let aggressive = Flags::resolve(Preset::Aggressive, &Overrides::default(), GNU);
        assert_eq!(
            aggressive.listing(),
            [
                "-C lto=fat",
                "-C codegen-units=1",
                "-C strip=symbols",
                "-C target-feature=+crt-static",
                "-C opt-level=3"
            ]
        );
        assert_eq!(aggressive.target_cpu, None);

        let nasa = Flags::resolve(Preset::Nasa, &Overrides::default(), GNU);
        assert_eq!(
            nasa.listing(),
            [
                "-C lto=fat",
                "-C codegen-units=1",
                "-C strip=symbols",
                "-C target-cpu=native",
                "-C embed-bitcode=yes",
                "-C target-feature=+crt-static",
                "-C opt-level=3"
            ]
        );
    }

    #[test]
    fn overrides_win_over_the_preset() {
        let overrides = Overrides {
            opt_level: Some("z".parse().unwrap()),
            lto: Some(Lto::Thin),
            codegen_units: Some(4),
            strip: Some(Strip::None),
            panic: Some(Panic::Abort),
            target_cpu: Some("x86-64-v3".into()),
            static_link: Some(false),
        };
        let flags = Flags::resolve(Preset::Nasa, &overrides, GNU);
        let env = flags.cargo_env();
        let get = |k: &str| {
            env.iter()
                .find(|(name, _)| name == &format!("CARGO_PROFILE_RUCHY_NASA_{k}"))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("OPT_LEVEL"), Some("z"));
        assert_eq!(get("LTO"), Some("thin"));
        assert_eq!(get("CODEGEN_UNITS"), Some("4"));
        assert_eq!(get("STRIP"), Some("none"));
        assert_eq!(get("PANIC"), Some("abort"));
        assert_eq!(get("INHERITS"), Some("release"));
        assert_eq!(
            flags.rustflags(),
            ["-Ctarget-cpu=x86-64-v3", "-Cembed-bitcode=yes"]
        );
    }

    #[test]
    fn static_linking_follows_the_target() {
        let musl = Flags::resolve(
            Preset::Aggressive,
            &Overrides::default(),
            "x86_64-unknown-linux-musl",
        );
        assert!(musl.rustflags().is_empty(), "musl is static by default");
        let dynamic = Overrides {
            static_link: Some(false),
            ..Overrides::default()
        };
        let musl_dynamic =
            Flags::resolve(Preset::Aggressive, &dynamic, "x86_64-unknown-linux-musl");
        assert_eq!(musl_dynamic.rustflags(), ["-Ctarget-feature=-crt-static"]);
        let gnu = Flags::resolve(Preset::Aggressive, &Overrides::default(), GNU);
        assert_eq!(gnu.rustflags(), ["-Ctarget-feature=+crt-static"]);
        assert_eq!((musl.libc(), gnu.libc()), ("musl", "glibc"));
        let arm = Flags::resolve(
            Preset::None,
            &Overrides::default(),
            "armv7-unknown-linux-gnueabihf",
        );
        assert_eq!(arm.libc(), "glibc");
        let wasm = Flags::resolve(Preset::None, &Overrides::default(), "wasm32-wasip1");
        assert_eq!(wasm.libc(), "unknown");
    }

    #[test]
    fn bad_values_name_the_valid_ones() {
        let err = "fast".parse::<Preset>().unwrap_err().to_string();
        assert!(err.contains("none, balanced, aggressive, nasa"), "{err}");
        let err = "4".parse::<OptLevel>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid opt-level `4`: valid levels are 0, 1, 2, 3, s, z"
        );
        let err = "max".parse::<Lto>().unwrap_err().to_string();
        assert_eq!(err, "invalid lto `max`: valid: off, thin, fat");
    }

    /// One table names each value: parsing, printing and the JSON record agree on it.
    #[test]
    fn names_parse_print_and_serialize_alike() {
        fn check<T>(all: &[T])
        where
            T: Copy + fmt::Display + FromStr<Err = Error> + Serialize + PartialEq + fmt::Debug,
        {
            for value in all {
                let name = value.to_string();
                assert_eq!(name.parse::<T>().unwrap(), *value);
                assert_eq!(serde_json::to_value(value).unwrap(), name.as_str());
            }
        }
        check(Lto::ALL);
        check(Strip::ALL);
        check(Panic::ALL);
        check(&Preset::ALL);
        assert_eq!(
            names(Panic::ALL, Panic::name),
            "unwind, abort, immediate-abort"
        );
    }
}
