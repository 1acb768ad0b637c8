//! The option groups several commands share, flattened into them (`#[command(flatten)]`),
//! with the value parsers and the names of flags in errors.
//!
//! Doc comments here are the `--help` text: `NAME[:TAG]` is a usage pattern, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

use crate::core::platform::Platform;
use crate::core::preset::{Lto, OptLevel, Overrides, Panic, Preset, Strip};
use crate::pipeline::base::BaseRef;
use crate::pipeline::oci::layer::Codec;
use crate::Error;

/// Which options the command line gave, typed or set from their environment variable, by
/// long name: `flag` or `env NAME`. Read from the matches before the other fields take their
/// values (it must be the first field of the command's arguments); no arguments of its own.
/// The project's settings fill in what it does not hold.
#[derive(Debug, Clone, Default)]
pub struct Given(pub std::collections::BTreeMap<String, String>);

impl Given {
    /// Each option given and where it came from.
    pub fn iter(&self) -> impl Iterator<Item = (&str, String)> {
        self.0
            .iter()
            .map(|(name, from)| (name.as_str(), from.clone()))
    }

    /// Whether the command line gave `name`, or the flag that contradicts it (then it stands
    /// for both).
    pub fn has(&self, name: &str) -> bool {
        let partner = crate::pipeline::plan::settings::partner(name);
        self.0.contains_key(name) || partner.is_some_and(|p| self.0.contains_key(p))
    }
}

impl clap::FromArgMatches for Given {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::parser::ValueSource;
        let mut given = std::collections::BTreeMap::new();
        // Arguments' ids are their fields' names; the groups' (ImageArgs, ...) are not options.
        let options = matches.ids().filter(|id| {
            let id = id.as_str();
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        for id in options {
            let name = id.as_str().replace('_', "-");
            match matches.value_source(id.as_str()) {
                Some(ValueSource::CommandLine) => given.insert(name, "flag".to_string()),
                Some(ValueSource::EnvVariable) => {
                    given.insert(name.clone(), format!("env {}", env_name(&name)))
                }
                _ => None,
            };
        }
        Ok(Given(given))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Given::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for Given {
    fn augment_args(command: clap::Command) -> clap::Command {
        command
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        command
    }
}

/// The environment variable an option of `build` or `compare` is read from.
fn env_name(name: &str) -> String {
    let commands = [
        <super::args::BuildArgs as Args>::augment_args(clap::Command::new("build")),
        <super::args::CompareArgs as Args>::augment_args(clap::Command::new("compare")),
    ];
    let env = commands
        .iter()
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(name))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    env.unwrap_or_default()
}

/// What to build and the flags on top of the preset: the build options `build`, `compare`
/// and `lambda` share.
#[derive(Debug, Clone, Args)]
pub struct BuildOptions {
    /// The source and how to get at it.
    #[command(flatten)]
    pub input: InputArgs,

    /// Per-flag overrides of the preset.
    #[command(flatten)]
    pub flags: FlagArgs,
}

/// The source and how to get at it; part of [`BuildOptions`].
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// A Cargo project directory, a .rs file, or a .ruchy file; for `build`, also a Linux
    /// executable built elsewhere (ELF), packaged without a compile: the same checks (static
    /// on scratch, its loader on a base), the preset choosing only the layer compression.
    pub source: PathBuf,

    /// The binary to build, when the project has several.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,

    /// The Ruchy transpiler for .ruchy sources [default: ruchy on PATH].
    #[arg(long, value_name = "PATH")]
    pub ruchy: Option<PathBuf>,

    /// Where to compile [default: docker when an engine answers, else local].
    #[arg(long, value_enum, env = "RUCHY_IMAGE_BUILDER")]
    pub builder: Option<Builder>,

    /// The image the docker builder compiles in [default: rust:1-alpine when the engine has
    /// it, else the newest image made by `builder import-host`, else rust:1-alpine, pulled].
    #[arg(long, value_name = "IMAGE", env = "RUCHY_IMAGE_BUILDER_IMAGE")]
    pub builder_image: Option<String>,

    /// When to pull the builder image: missing (only when the engine has neither it nor,
    /// for the default, an image made by `builder import-host`), always (a failed pull fails
    /// the build, as `docker run --pull always` does), never (a missing image fails it).
    #[arg(long, value_enum, value_name = "WHEN", default_value = "missing")]
    pub pull: Pull,

    /// Where generated projects and caches live.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_CACHE")]
    pub cache_dir: Option<PathBuf>,

    /// Link no list of its crates into the binary (by default a `.dep-v0` section, as
    /// `cargo auditable` writes, which rust-audit-info, `cargo audit bin` and Trivy read).
    #[arg(long)]
    pub no_embed_deps: bool,

    /// Limits of each builder container.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The limits of each builder container (the docker builder's); `build`, `compare`,
/// `lambda` and `serve` take them. A build that reaches one fails, naming it.
#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory each builder container may use, swap included (e.g. 4GiB) [default: three
    /// quarters of the engine's memory; serve: 3GiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::pipeline::compile::parse_memory, help_heading = "Builder limits")]
    pub build_memory: Option<u64>,

    /// Processes and threads each builder container may run [default: 4096; serve: 1024].
    #[arg(long, value_name = "N", value_parser = crate::pipeline::compile::parse_pids, help_heading = "Builder limits")]
    pub build_pids: Option<u64>,

    /// CPUs each builder container may use (e.g. 1.5) [default: all; serve: 2].
    #[arg(long, value_name = "CPUS", value_parser = crate::pipeline::compile::parse_cpus, help_heading = "Builder limits")]
    pub build_cpus: Option<f64>,
}

impl LimitArgs {
    /// `defaults` with what the flags set.
    pub fn over(
        &self,
        defaults: crate::pipeline::compile::Limits,
    ) -> crate::pipeline::compile::Limits {
        crate::pipeline::compile::Limits {
            memory: self.build_memory.or(defaults.memory),
            pids: self.build_pids.or(defaults.pids),
            cpus: self.build_cpus.or(defaults.cpus),
        }
    }
}

/// Per-flag overrides of the preset; part of [`BuildOptions`].
#[derive(Debug, Clone, Args)]
pub struct FlagArgs {
    /// Override the preset's opt-level.
    #[arg(long, value_name = "N", help_heading = "Flag overrides", value_parser = OptLevel::ALL)]
    pub opt_level: Option<String>,

    /// Override the preset's link-time optimization.
    #[arg(long, help_heading = "Flag overrides", value_parser = lto_parser())]
    pub lto: Option<Lto>,

    /// Override the preset's codegen-units.
    #[arg(long, value_name = "N", help_heading = "Flag overrides", value_parser = range_parser(Overrides::CODEGEN_UNITS))]
    pub codegen_units: Option<u32>,

    /// Strip the binary: bare --strip removes symbols and debug info, --strip=debuginfo only
    /// debug info.
    #[arg(long, value_name = "WHAT", num_args = 0..=1, default_missing_value = "symbols", help_heading = "Flag overrides", value_parser = strip_parser())]
    pub strip: Option<Strip>,

    /// Keep symbols and debug info.
    #[arg(long, conflicts_with = "strip", help_heading = "Flag overrides")]
    pub no_strip: bool,

    /// Panic strategy (size uses immediate-abort, which needs its own std and prints
    /// nothing on a panic).
    #[arg(long, help_heading = "Flag overrides", value_parser = panic_parser())]
    pub panic: Option<Panic>,

    /// Override -C target-cpu (nasa uses native).
    #[arg(long, value_name = "CPU", help_heading = "Flag overrides")]
    pub target_cpu: Option<String>,

    /// Link the C runtime statically (the default: FROM scratch needs it).
    #[arg(long, help_heading = "Flag overrides")]
    pub static_link: bool,

    /// Link dynamically (refused for a scratch image).
    #[arg(long, conflicts_with = "static_link", help_heading = "Flag overrides")]
    pub no_static_link: bool,

    /// Target triple [default: the host's].
    #[arg(long, value_name = "TRIPLE", help_heading = "Flag overrides")]
    pub target: Option<String>,

    /// The platforms to build for, linux/amd64 and/or linux/arm64, comma-separated [default:
    /// the builder's]. Each gets its static musl target when the builder has its std (a
    /// builder from `builder import-host` on a machine with Debian's arm64 cross packages
    /// does), else its glibc one. Several make one image each and an OCI image index over
    /// them under the tag (layouts, registries); the engine and --output get one platform's
    /// image (see --load-platform). `compare` reports each platform on its own.
    #[arg(long, value_name = "OS/ARCH[,...]", value_delimiter = ',', value_parser = platform_parser, help_heading = "Flag overrides")]
    pub platform: Vec<Platform>,

    /// Of several platforms, the one the engine loads and --output's `docker load` part holds
    /// (Docker 20.10 keeps one image per tag) [default: this machine's, when built; else the
    /// first]. Not for `lambda`: a function is one platform.
    #[arg(long, value_name = "OS/ARCH", value_parser = platform_parser, help_heading = "Flag overrides")]
    pub load_platform: Option<Platform>,
}

/// The image's contents and config; shared by `build` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// The base image: scratch, an image in the engine (alpine:3.20), oci:DIR[:TAG] or
    /// docker-archive:FILE.
    #[arg(long, value_name = "REF", default_value = "scratch", value_parser = base_parser, help_heading = "Image")]
    pub base: BaseRef,

    /// The runtime user: NAME:UID:GID or UID[:GID] [default: nonroot:65532:65532].
    #[arg(long, value_name = "USER", help_heading = "Image")]
    pub user: Option<String>,

    /// Allow the runtime user to be root (uid 0).
    #[arg(long, help_heading = "Image")]
    pub allow_root: bool,

    /// Set an environment variable in the image (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", help_heading = "Image")]
    pub env: Vec<String>,

    /// Expose a port: N or N/tcp or N/udp (repeatable).
    #[arg(short, long = "port", value_name = "PORT", help_heading = "Image")]
    pub port: Vec<String>,

    /// Add a label to the image config (repeatable).
    #[arg(
        short,
        long = "label",
        value_name = "KEY=VALUE",
        help_heading = "Image"
    )]
    pub label: Vec<String>,

    /// Working directory of the container.
    #[arg(long, value_name = "DIR", default_value = "/", help_heading = "Image")]
    pub workdir: String,

    /// Where the binary goes in the image [default: /usr/local/bin/NAME].
    #[arg(long, value_name = "PATH", help_heading = "Image")]
    pub path: Option<String>,

    /// Timestamp of every file and of the image (seconds since 1970).
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        help_heading = "Image"
    )]
    pub source_date_epoch: u64,

    /// How the layers are compressed: gzip, which every engine reads, or zstd (smaller,
    /// faster to unpack; Docker 23+, containerd, skopeo, umoci; loading into an older Docker
    /// is refused).
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip, help_heading = "Image")]
    pub compression: CompressionArg,

    /// The compression level: gzip 1 (fastest) to 12 (smallest) [default: 6 for none and
    /// balanced, 9 for aggressive and nasa, 12 for size]; zstd 1 to 19 [default: 3, 9, 19].
    #[arg(long, value_name = "LEVEL", value_parser = range_parser(Codec::LEVELS), help_heading = "Image")]
    pub compression_level: Option<u32>,
}

/// Size budgets for CI; shared by `build` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct BudgetArgs {
    /// Fail (exit 1, after the report) if a binary is bigger: bytes, or with KB, MB, KiB, MiB.
    #[arg(long, value_name = "SIZE", help_heading = "Size budgets")]
    pub max_binary_size: Option<String>,

    /// Fail (exit 1, after the report) if an image, as stored (compressed), is bigger.
    #[arg(long, value_name = "SIZE", help_heading = "Size budgets")]
    pub max_image_size: Option<String>,
}

/// Registries to push to and how to reach them; shared by `build` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Push to a registry, without a daemon (repeatable): REGISTRY/REPO[:TAG]; `compare`
    /// pushes each preset to REPO:PRESET. Blobs the registry has are not sent again; the
    /// manifest goes last.
    #[arg(long, value_name = "REF", help_heading = "Registries")]
    pub push: Vec<String>,

    /// The registry user [default: from Docker's config.json or its credential helpers].
    #[arg(
        long,
        value_name = "USER",
        requires = "registry_password_stdin",
        help_heading = "Registries"
    )]
    pub registry_user: Option<String>,

    /// Read the registry password from stdin (never from an argument).
    #[arg(long, requires = "registry_user", help_heading = "Registries")]
    pub registry_password_stdin: bool,

    /// Speak plain HTTP to this registry host[:port] (repeatable; loopback may, unless a
    /// --registry-ca says it speaks TLS).
    #[arg(long, value_name = "HOST", help_heading = "Registries")]
    pub insecure_registry: Vec<String>,

    /// Trust this CA (PEM) for registries, besides the system's (repeatable).
    #[arg(long, value_name = "FILE", help_heading = "Registries")]
    pub registry_ca: Vec<PathBuf>,
}

/// A `ruchy-image serve` to build on; shared by `build` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Build on a `ruchy-image serve` at URL instead: the source is sent, the log followed,
    /// and the outputs written here (the server compiles in its own builder).
    #[arg(
        long,
        value_name = "URL",
        env = "RUCHY_IMAGE_SERVER",
        help_heading = "Service"
    )]
    pub server: Option<String>,

    /// The file holding the server's bearer token.
    #[arg(
        long,
        value_name = "FILE",
        env = "RUCHY_IMAGE_TOKEN_FILE",
        help_heading = "Service"
    )]
    pub token_file: Option<PathBuf>,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip by libdeflate: every engine and tool reads it.
    Gzip,
    /// zstd: Docker 23+, containerd, skopeo and umoci read it.
    Zstd,
}

/// The compile backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Builder {
    /// A builder container in the Docker engine (rust:1-alpine by default).
    Docker,
    /// The host's cargo and rustc.
    Local,
}

/// `--pull`: when the builder image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pull {
    /// Only when the engine does not have it.
    Missing,
    /// Before every build.
    Always,
    /// Never.
    Never,
}

/// A parser for a setting named in src/core/preset.rs's table: `--help` lists the names, and the
/// value is the library's own parse of one.
fn named_parser<T>(
    names: impl IntoIterator<Item = &'static str>,
) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = Error> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("only listed values get here"))
}

/// A number in `range` (the library's, which the settings take too).
fn range_parser(range: std::ops::RangeInclusive<u32>) -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(i64::from(*range.start())..=i64::from(*range.end()))
}

pub(super) fn preset_parser() -> impl TypedValueParser<Value = Preset> {
    named_parser(Preset::ALL.map(Preset::name))
}

fn lto_parser() -> impl TypedValueParser<Value = Lto> {
    named_parser(Lto::ALL.iter().map(|v| v.name()))
}

fn strip_parser() -> impl TypedValueParser<Value = Strip> {
    named_parser(Strip::ALL.iter().map(|v| v.name()))
}

fn panic_parser() -> impl TypedValueParser<Value = Panic> {
    named_parser(Panic::ALL.iter().map(|v| v.name()))
}

fn platform_parser(value: &str) -> std::result::Result<Platform, String> {
    value.parse().map_err(|e: Error| e.to_string())
}

pub(super) fn base_parser(value: &str) -> std::result::Result<BaseRef, String> {
    value
        .parse()
        .map_err(|e: Error| with_flag_names(e).to_string())
}

/// Names the flag in an error about a value the library rejected: `invalid user ...` becomes
/// `invalid --user ...`.
pub(crate) fn with_flag_names(error: Error) -> Error {
    let Error::InvalidInput {
        what,
        value,
        reason,
    } = error
    else {
        return error;
    };
    let what = match what {
        "user" => "--user",
        "base image" | "base" => "--base",
        "presets" => "--presets",
        "memory size" => "--memory",
        "opt-level" => "--opt-level",
        "builder image" => "--builder-image",
        "bin" => "--bin",
        "target" => "--target",
        "source" => "SOURCE",
        "source date epoch" => "--source-date-epoch (SOURCE_DATE_EPOCH)",
        "binary path" => "--path",
        "OCI layout" => "--oci-layout",
        "image archive" => "--output",
        "metrics JSON" => "--json",
        "chart" => "--chart",
        "port" => "--port",
        other => other,
    };
    Error::InvalidInput {
        what,
        value,
        reason,
    }
}

/// `build`'s supply-chain outputs: the SBOM and the provenance, as files and referrers.
#[derive(Debug, Clone, Args)]
pub struct AttestArgs {
    /// Write an SBOM of the binary's crates (from cargo's resolved graph and Cargo.lock) to
    /// FILE: CycloneDX 1.5, or SPDX 2.3 with --sbom-format spdx.
    #[arg(long, value_name = "FILE", help_heading = "Outputs")]
    pub sbom: Option<PathBuf>,

    /// Attach no SBOM to layouts and registries (by default each image gets its SBOM as an
    /// OCI 1.1 referrer there).
    #[arg(long, conflicts_with = "sbom", help_heading = "Outputs")]
    pub no_sbom: bool,

    /// The SBOM's format, in --sbom's file and the referrer.
    #[arg(long, value_name = "FORMAT", default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"], help_heading = "Outputs")]
    pub sbom_format: String,

    /// Attach no SLSA provenance to layouts and registries (by default each image gets an
    /// in-toto provenance in a DSSE envelope as an OCI 1.1 referrer there).
    #[arg(long, help_heading = "Outputs")]
    pub no_provenance: bool,

    /// Sign the provenance with this ECDSA P-256 private key (PEM, SEC1 or PKCS#8).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "no_provenance",
        help_heading = "Outputs"
    )]
    pub sign_key: Option<PathBuf>,
}
