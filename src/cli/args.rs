//! Command-line types. clap stays here: `to_lib` turns them into the library's request,
//! validating what clap cannot, and errors about a value name the flag it came from.
//!
//! Doc comments here are the `--help` text: `NAME[:TAG]` is a usage pattern, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};

use crate::base::BaseRef;
use crate::budget::{Budget, Budgets, Limit};
use crate::build::{default_cache_dir, ImageOptions};
use crate::oci::image::RuntimeUser;
use crate::oci::layer::Codec;
use crate::plan::{BuilderChoice, Load, Request};
use crate::platform::Platform;
use crate::preset::{Lto, OptLevel, Overrides, Panic, Preset, Strip};
use crate::source::SourceOptions;
use crate::{Error, Result};

/// What `after_help` says of exit codes, for the program that mounts [`ImageCommand`].
pub const EXIT_CODES: &str = "Exit codes: 0 success, 1 build failed, 2 invalid input, 130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (after cleaning up); `run` exits with the container's own code.";

/// The `ruchy-image` commands, as a clap subcommand another program can mount
/// (`#[command(subcommand)] Image(ImageCommand)`) and hand to [`run`](super::run).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Compile SOURCE with a preset and assemble a FROM-scratch OCI image for it (a prebuilt
    /// executable is packaged as it is).
    #[command(after_long_help = BUILD_EXAMPLES)]
    Build(Box<BuildArgs>),
    /// Build SOURCE with several presets and compare binary size, image size and compile time.
    #[command(after_long_help = COMPARE_EXAMPLES)]
    Compare(Box<CompareArgs>),
    /// Run an image through the engine with Lambda-like limits; report cold start and memory.
    Run(RunArgs),
    /// Manage builder images (the images the docker builder compiles in).
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Print a multi-stage Dockerfile that builds a Cargo project with a preset, as `build` does.
    #[command(after_long_help = DOCKERFILE_EXAMPLES)]
    Dockerfile(DockerfileArgs),
    /// Package SOURCE as an AWS Lambda function: a deterministic zip holding `bootstrap`
    /// (and, with --lambda-image, a container image of it).
    #[command(after_long_help = LAMBDA_EXAMPLES)]
    Lambda(Box<LambdaArgs>),
    /// Check what builds need on this machine (engine, builder image and its stds, local
    /// toolchain, ruchy, arm64 emulation, registry logins, cache volumes), each with its fix.
    #[command(after_long_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
    /// Run the builder as a service: an HTTP API that takes build contexts, a durable queue,
    /// build records, logs and images.
    #[cfg(feature = "serve")]
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
}

#[cfg(feature = "serve")]
const SERVE_EXAMPLES: &str = "\
Examples:
  head -c 32 /dev/urandom | base64 > token && chmod 600 token
  ruchy-image serve --data-dir /var/lib/ruchy-image --listen 127.0.0.1:7878 --token-file token
  tar -czf - -C app . | curl -H \"Authorization: Bearer $(cat token)\" --data-binary @- \\
      -H 'Content-Type: application/gzip' 'http://127.0.0.1:7878/v1/builds?optimize=aggressive'

SIGTERM or Ctrl-C drains: no new build starts, running ones finish (or are cancelled after
--shutdown-timeout), then it exits 0. The API is described at /v1/openapi.json.";

/// `ruchy-image serve`
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the build database, sources, logs and images are kept.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,

    /// A file holding the bearer token every /v1 request must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Listen beyond loopback without a token (anyone who reaches the port can build).
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// Builds at once (each uses every core it can get).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// The longest a build may run, then it is stopped with status timeout.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = duration_parser)]
    pub timeout: std::time::Duration,

    /// The longest a build may wait in the queue, then it times out.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration_parser)]
    pub queue_ttl: std::time::Duration,

    /// The biggest upload taken (413 above it).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = size_parser)]
    pub max_upload: u64,

    /// How long a shutdown waits for running builds before cancelling them.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_parser)]
    pub shutdown_timeout: std::time::Duration,

    /// The image builds compile in [default: rust:1-alpine, else the newest image made by
    /// `builder import-host`; without an engine, the local toolchain].
    #[arg(long, value_name = "IMAGE", env = "RUCHY_IMAGE_BUILDER_IMAGE")]
    pub builder_image: Option<String>,

    /// A PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DB) that several
    /// `serve` workers share: one queue, one history, each worker building on its own engine
    /// [default: SQLite in the data dir, one service].
    #[arg(
        long,
        value_name = "URL",
        env = "RUCHY_IMAGE_DATABASE",
        hide_env_values = true
    )]
    pub database: Option<String>,

    /// This worker's name in `GET /v1/workers` and build records [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub worker_name: Option<String>,

    /// Where the other workers reach this one's API for the logs and images it keeps
    /// [default: http:// and the listen address; the host name when listening on 0.0.0.0].
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,

    /// How long a worker may miss heartbeats before the others take its builds over (once;
    /// a build interrupted twice fails). Heartbeats go every fifth of it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_parser)]
    pub heartbeat_timeout: std::time::Duration,
}

#[cfg(feature = "serve")]
fn duration_parser(value: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (e.g. 90s, 30m, 2h)"))
}

#[cfg(feature = "serve")]
fn size_parser(value: &str) -> std::result::Result<u64, String> {
    crate::metrics::parse_size(value)
}

/// `ruchy-image run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run (NAME[:TAG] or ID).
    pub image: String,

    /// Arguments passed to the image's entrypoint.
    #[arg(last = true)]
    pub args: Vec<String>,

    /// Cold starts to measure; the output of the first is shown.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub iterations: u32,

    /// Memory limit (Docker sizes: 128m, 1g).
    #[arg(long, default_value = "128m")]
    pub memory: String,

    /// CPU limit.
    #[arg(long, default_value_t = 0.5)]
    pub cpus: f64,

    /// Print the report as JSON on stdout (the container's output goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `ruchy-image builder ...`
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Lay this machine's Rust toolchain (without docs) and the C toolchain and libc it needs
    /// into a builder image, for machines that cannot pull rust:1-alpine. When the toolchain
    /// has the standard library's sources, musl std is built once (a minute or two) and put
    /// in too, so the builder makes static musl binaries and the size preset. Reused when
    /// nothing has changed.
    ImportHost(ImportHostArgs),
    /// Remove the cache volumes builds through the engine keep (or, with --dry-run, only list
    /// them), with their sizes as the engine reports them. `ruchy-image-cargo-home` holds
    /// downloaded crates, shared by every build; `ruchy-image-deps-<builder image>-<n>` hold
    /// compiled dependencies, shared by every project built with that builder image (one per
    /// build running at once). Volumes a container uses, running or stopped, are kept and
    /// named. The next build fills the caches again: it downloads and compiles every
    /// dependency once more.
    Prune(PruneArgs),
}

const DOCTOR_EXAMPLES: &str = "\
Exits 1 when something the default build needs is missing (the engine, a builder image, its musl
std), else 0; the other checks say which builds need them.

Examples:
  ruchy-image doctor
  ruchy-image doctor --json | jq '.checks[] | select(.ok | not)'
  DOCKER_HOST=tcp://build-host:2375 ruchy-image doctor --builder-image rust:1-alpine";

/// `ruchy-image doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The builder image builds would use [default: rust:1-alpine if present, else the newest
    /// made by `builder import-host`].
    #[arg(long, value_name = "IMAGE", env = "RUCHY_IMAGE_BUILDER_IMAGE")]
    pub builder_image: Option<String>,

    /// The Ruchy transpiler to check [default: ruchy on PATH].
    #[arg(long, value_name = "PATH")]
    pub ruchy: Option<PathBuf>,

    /// Print the checks as JSON on stdout: ready, and checks[] with name, ok, required,
    /// detail, fix.
    #[arg(long)]
    pub json: bool,

    /// Where builder probes are remembered.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

/// `ruchy-image builder prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// List the cache volumes and their sizes; remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Only volumes whose name starts with PREFIX (e.g. `ruchy-image-deps-` to keep the
    /// downloaded crates).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,

    /// Print the volumes as JSON on stdout: name, owner, size (bytes, null when the engine
    /// does not know), used_by, removed, error.
    #[arg(long)]
    pub json: bool,
}

/// `ruchy-image builder import-host`
#[derive(Debug, Args)]
pub struct ImportHostArgs {
    /// Tag for the image [default: ruchy-image-builder:RUSTC_VERSION].
    #[arg(short, long, value_name = "NAME[:TAG]")]
    pub tag: Option<String>,

    /// The compiler to import [default: $RUSTC or rustc on PATH if it can make musl, else
    /// Debian's /usr/bin/rustc if that can, else rustc on PATH].
    #[arg(long, value_name = "PATH")]
    pub rustc: Option<PathBuf>,

    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Where the temporary root filesystem and the standard libraries built are kept.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

const BUILD_EXAMPLES: &str = "\
Presets (--optimize):
  none        opt-level=0, debug info                        fastest compile, biggest binary
  balanced    opt-level=2, lto=thin                          production default
  aggressive  opt-level=3, lto=fat, codegen-units=1, strip   smallest portable binary
  nasa        aggressive + target-cpu=native, embed-bitcode  not portable to other CPUs
  size        opt-level=z, lto=fat, codegen-units=1, strip,  smallest binary there is; a panic
              panic=immediate-abort, std optimized for size  aborts with no message, slower code

A static binary for a scratch image is musl (x86_64-unknown-linux-musl) whenever the builder can
make one (its std installed, or built once from its sources), else glibc with crt-static.

Examples:
  ruchy-image build examples/fibonacci.rs --optimize aggressive --oci-layout out/fib
  ruchy-image build app.ruchy --optimize nasa --verbose --json metrics.json --output fib.tar
  ruchy-image build path/to/project --bin server --optimize balanced --tag server:dev
  ruchy-image build app.rs -O aggressive --max-binary-size 400KB --max-image-size 1MiB
  ruchy-image build target/x86_64-unknown-linux-musl/release/app --tag app:1.0";

const LAMBDA_EXAMPLES: &str = "\
A single-file handler:
  fn handle_request(event: BTreeMap<String, String>) -> BTreeMap<String, String>
event may also be a String (the event's JSON); the response a String (JSON), a map (values
that read as JSON numbers or booleans are sent as such), or a Result of either (an Err is
reported to Lambda as the invocation's error). A panic is reported too, then the process ends
(except with panic=immediate-abort, the size preset's, which reports nothing).

Examples:
  ruchy-image lambda examples/lambda/hello.rs -o function.zip
  ruchy-image lambda hello.ruchy -O nasa -o function.zip --json -
  ruchy-image lambda path/to/project --bin bootstrap -o function.zip --lambda-image --tag fn:1
  aws lambda create-function --function-name hello --runtime provided.al2023 \\
    --handler bootstrap --architectures x86_64 --zip-file fileb://function.zip --role ...";

const COMPARE_EXAMPLES: &str = "\
Examples:
  ruchy-image compare examples/fibonacci.rs
  ruchy-image compare app.ruchy --presets none,aggressive --format markdown >> report.md
  ruchy-image compare app.rs --format json --chart sizes.svg > sizes.json
  ruchy-image compare app.rs --presets aggressive,nasa --max-binary-size 1.5MB

Sizes: bytes (400000) or KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).";

/// `--format` of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for the terminal.
    Table,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    /// Every preset's full build record, plus the reductions.
    Json,
    /// One line per preset, exact bytes and milliseconds.
    Csv,
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

/// A parser for a setting named in src/preset.rs's table: `--help` lists the names, and the
/// value is the library's own parse of one.
fn named_parser<T>(
    names: impl IntoIterator<Item = &'static str>,
) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = Error> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().expect("only listed values get here"))
}

fn preset_parser() -> impl TypedValueParser<Value = Preset> {
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

/// `ruchy-image lambda`
#[derive(Debug, Args)]
pub struct LambdaArgs {
    /// Optimization preset (aggressive, as the chapter advises for Lambda).
    #[arg(short = 'O', long, value_name = "LEVEL", default_value = "aggressive", value_parser = preset_parser())]
    pub optimize: Preset,

    /// What to build: a single .rs or .ruchy file defining `handle_request(event) ->
    /// response`, wrapped in a small blocking Runtime API loop; or a Cargo project or a
    /// prebuilt executable that serves the Runtime API itself (lambda_runtime, …).
    #[command(flatten)]
    pub input: InputArgs,

    /// Flags on top of the preset.
    #[command(flatten)]
    pub flags: FlagArgs,

    /// Write the deployment zip (`bootstrap`, mode 0755, fixed time) to FILE.
    #[arg(short, long, value_name = "FILE.zip", help_heading = "Outputs")]
    pub output: PathBuf,

    /// Also make a container-image function: `bootstrap` at /var/runtime/bootstrap as the
    /// entrypoint, /var/task as the working directory, as Lambda's provided.al2023 images
    /// have them; written to --tag (the engine), --oci-layout, --push.
    #[arg(long, help_heading = "Outputs")]
    pub lambda_image: bool,

    /// Name the image NAME[:TAG] [default: BIN:PRESET] and load it into the engine.
    #[arg(
        short,
        long,
        value_name = "NAME[:TAG]",
        requires = "lambda_image",
        help_heading = "Outputs"
    )]
    pub tag: Option<String>,

    /// Write the image as an OCI image layout directory.
    #[arg(
        long,
        value_name = "DIR",
        requires = "lambda_image",
        help_heading = "Outputs"
    )]
    pub oci_layout: Option<PathBuf>,

    /// The image the container-image function is laid on [default: scratch]; its
    /// /var/runtime must be free for `bootstrap`.
    #[arg(long, value_name = "IMAGE", value_parser = base_parser, requires = "lambda_image", help_heading = "Outputs")]
    pub base: Option<BaseRef>,

    /// Write the record as JSON to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE", help_heading = "Outputs")]
    pub json: Option<PathBuf>,

    /// Show cargo's progress and the resolved flags.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Timestamp of the zip entry and the image (`SOURCE_DATE_EPOCH`; before 1980 is 1980
    /// in a zip).
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0
    )]
    pub source_date_epoch: u64,
}

impl LambdaArgs {
    /// The library's request for this command line.
    pub fn to_lib(&self) -> Result<Request> {
        let mut request = Request::new(&self.input.source);
        request.source = self.input.to_lib();
        request.source.lambda = true;
        request.presets = vec![self.optimize];
        request.overrides = self.flags.to_lib()?;
        request.target = self.flags.target.clone();
        request.platforms = self.flags.platform.clone();
        request.source_date_epoch = self.source_date_epoch;
        request.builder = self.input.builder_choice();
        request.builder_image = self.input.builder_image.clone();
        request.tag = self.tag.as_deref().map(str::parse).transpose()?;
        request.outputs.oci_layout = self.oci_layout.clone();
        if let Some(base) = &self.base {
            request.bases = vec![base.clone()];
        }
        request.outputs.load = match request.tag.is_some() {
            true => Load::Always,
            false => Load::Never,
        };
        Ok(request)
    }
}

/// `ruchy-image build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Optimization preset.
    #[arg(short = 'O', long, value_name = "LEVEL", default_value = "balanced", value_parser = preset_parser())]
    pub optimize: Preset,

    /// What to build.
    #[command(flatten)]
    pub input: InputArgs,

    /// Print the resolved flags and each step, in `ruchy compile --verbose` form.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing but errors (and the JSON, with --json -).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Flags on top of the preset.
    #[command(flatten)]
    pub flags: FlagArgs,

    /// What goes into the image.
    #[command(flatten)]
    pub image: ImageArgs,

    /// Size limits.
    #[command(flatten)]
    pub budget: BudgetArgs,

    /// Write an OCI image layout directory.
    #[arg(long, value_name = "DIR", help_heading = "Outputs")]
    pub oci_layout: Option<PathBuf>,

    /// Write one tarball that `docker load`, skopeo and umoci accept.
    #[arg(short, long, value_name = "FILE.tar", help_heading = "Outputs")]
    pub output: Option<PathBuf>,

    /// Name the image NAME[:TAG] [default: BIN:PRESET].
    #[arg(short, long, value_name = "NAME[:TAG]", help_heading = "Outputs")]
    pub tag: Option<String>,

    /// Load the tagged image into the engine (the default when --tag is given and an engine
    /// answers), then check the engine's view of it.
    #[arg(long, help_heading = "Outputs")]
    pub load: bool,

    /// Do not load the image into the engine.
    #[arg(long, conflicts_with = "load", help_heading = "Outputs")]
    pub no_load: bool,

    /// Write the build metrics as JSON to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE", help_heading = "Outputs")]
    pub json: Option<PathBuf>,

    /// Where the image is pushed.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Write a CycloneDX 1.5 SBOM of the binary's crates (from cargo's resolved graph and
    /// Cargo.lock) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Outputs")]
    pub sbom: Option<PathBuf>,

    /// Attach no SBOM to layouts and registries (by default each image gets its SBOM as an
    /// OCI 1.1 referrer there).
    #[arg(long, conflicts_with = "sbom", help_heading = "Outputs")]
    pub no_sbom: bool,

    /// The service to build on instead, if any.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `ruchy-image compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The presets to build, in this order (comma-separated).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "none,balanced,aggressive,nasa,size",
        value_parser = preset_parser()
    )]
    pub presets: Vec<Preset>,

    /// Compare on each of these bases (comma-separated, e.g. scratch,alpine:3.20): prints
    /// the size of every preset on every base.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = base_parser, conflicts_with = "base")]
    pub bases: Vec<BaseRef>,

    /// With an engine: load each preset's image as BIN:PRESET and time this many cold starts
    /// (128m, 0.5 CPU; images that do not exit within 10 s get none). 0 turns it off.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        env = "RUCHY_IMAGE_COLD_START_RUNS"
    )]
    pub cold_start_runs: u32,

    /// How to print the comparison on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,

    /// Also draw the comparison as bars in an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,

    /// What to build.
    #[command(flatten)]
    pub input: InputArgs,

    /// Show each preset's resolved flags and cargo's progress.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing but errors and the comparison.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Flags on top of every preset.
    #[command(flatten)]
    pub flags: FlagArgs,

    /// What goes into the images.
    #[command(flatten)]
    pub image: ImageArgs,

    /// Size limits, checked for every preset.
    #[command(flatten)]
    pub budget: BudgetArgs,

    /// Where each preset's image is pushed.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// The service to compare on instead (one build with every preset), if any.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// A `ruchy-image serve` to build on; shared by `build` and `compare`.
#[derive(Debug, Args)]
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

/// Registries to push to and how to reach them; shared by `build` and `compare`.
#[derive(Debug, Args)]
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

impl RegistryArgs {
    /// Fills the request's pushes and registry options (reading a password from stdin).
    fn apply(&self, request: &mut Request) -> Result<()> {
        request.outputs.push = self.push.clone();
        request.registry.insecure = self.insecure_registry.clone();
        request.registry.ca_files = self.registry_ca.clone();
        if let (Some(user), true) = (&self.registry_user, self.registry_password_stdin) {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)
                .map_err(crate::Error::io("reading the registry password from stdin"))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            request.registry.credentials = Some((user.clone(), password));
        }
        Ok(())
    }
}

/// The source and how to get at it; shared by `build` and `compare`.
#[derive(Debug, Args)]
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

    /// The image the docker builder compiles in [default: rust:1-alpine, or an image made by
    /// `builder import-host` when that cannot be pulled].
    #[arg(long, value_name = "IMAGE", env = "RUCHY_IMAGE_BUILDER_IMAGE")]
    pub builder_image: Option<String>,

    /// Where generated projects and caches live.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

/// Per-flag overrides of the preset; shared by `build` and `compare`.
#[derive(Debug, Args)]
pub struct FlagArgs {
    /// Override the preset's opt-level.
    #[arg(long, value_name = "N", help_heading = "Flag overrides", value_parser = ["0", "1", "2", "3", "s", "z"])]
    pub opt_level: Option<String>,

    /// Override the preset's link-time optimization.
    #[arg(long, help_heading = "Flag overrides", value_parser = lto_parser())]
    pub lto: Option<Lto>,

    /// Override the preset's codegen-units.
    #[arg(long, value_name = "N", help_heading = "Flag overrides", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub codegen_units: Option<u32>,

    /// Strip the binary (symbols, or only debuginfo).
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
    /// first].
    #[arg(long, value_name = "OS/ARCH", value_parser = platform_parser, help_heading = "Flag overrides")]
    pub load_platform: Option<Platform>,
}

/// The image's contents and config; shared by `build` and `compare`.
#[derive(Debug, Args)]
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
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(1..=19), help_heading = "Image")]
    pub compression_level: Option<u32>,
}

/// Size budgets for CI; shared by `build` and `compare`.
#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// Fail (exit 1, after the report) if a binary is bigger: bytes, or with KB, MB, KiB, MiB.
    #[arg(long, value_name = "SIZE", help_heading = "Size budgets")]
    pub max_binary_size: Option<String>,

    /// Fail (exit 1, after the report) if an image, as stored (compressed), is bigger.
    #[arg(long, value_name = "SIZE", help_heading = "Size budgets")]
    pub max_image_size: Option<String>,
}

fn platform_parser(value: &str) -> std::result::Result<Platform, String> {
    value.parse().map_err(|e: Error| e.to_string())
}

fn base_parser(value: &str) -> std::result::Result<BaseRef, String> {
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
        other => other,
    };
    Error::InvalidInput {
        what,
        value,
        reason,
    }
}

fn key_value(what: &'static str, value: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((key, v)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
            Ok((key.to_string(), v.to_string()))
        }
        _ => Err(Error::InvalidInput {
            what,
            value: value.to_string(),
            reason: "expected KEY=VALUE".into(),
        }),
    }
}

fn port(value: &str) -> Result<String> {
    let (number, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    match (number.parse::<u16>(), proto) {
        (Ok(n), "tcp" | "udp" | "sctp") if n > 0 => Ok(format!("{n}/{proto}")),
        _ => Err(Error::InvalidInput {
            what: "--port",
            value: value.to_string(),
            reason: "expected a port from 1 to 65535, optionally /tcp, /udp or /sctp".into(),
        }),
    }
}

fn absolute_image_path(what: &'static str, value: &str) -> Result<String> {
    let ok = value.starts_with('/') && !value.split('/').any(|c| c == "..");
    ok.then(|| value.to_string())
        .ok_or_else(|| Error::InvalidInput {
            what,
            value: value.to_string(),
            reason: "expected an absolute path inside the image, without ..".into(),
        })
}

impl InputArgs {
    fn to_lib(&self) -> SourceOptions {
        SourceOptions {
            path: self.source.clone(),
            bin: self.bin.clone(),
            ruchy: self.ruchy.clone(),
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            lambda: false,
        }
    }
}

impl FlagArgs {
    fn to_lib(&self) -> Result<Overrides> {
        let strip = if self.no_strip {
            Some(Strip::None)
        } else {
            self.strip
        };
        let static_link = match (self.static_link, self.no_static_link) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Overrides {
            opt_level: self
                .opt_level
                .as_deref()
                .map(str::parse::<OptLevel>)
                .transpose()?,
            lto: self.lto,
            codegen_units: self.codegen_units,
            strip,
            panic: self.panic,
            target_cpu: self.target_cpu.clone(),
            static_link,
        })
    }
}

impl ImageArgs {
    fn to_lib(&self) -> Result<ImageOptions> {
        let user = match &self.user {
            Some(spec) => RuntimeUser::parse(spec, self.allow_root)?,
            None => RuntimeUser::default(),
        };
        let env = self
            .env
            .iter()
            .map(|e| key_value("--env", e).map(|(k, v)| format!("{k}={v}")))
            .collect::<Result<Vec<_>>>()?;
        let labels = self
            .label
            .iter()
            .map(|l| key_value("--label", l))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(ImageOptions {
            user,
            env,
            ports: self.port.iter().map(|p| port(p)).collect::<Result<_>>()?,
            workdir: absolute_image_path("--workdir", &self.workdir)?,
            labels,
            path: self
                .path
                .as_deref()
                .map(|p| absolute_image_path("--path", p))
                .transpose()?,
            compression: match self.compression {
                CompressionArg::Gzip => Codec::Gzip,
                CompressionArg::Zstd => Codec::Zstd,
            },
            compression_level: self.compression_level,
        })
    }
}

impl BudgetArgs {
    /// The budgets, checked now so a bad size fails before any compile.
    pub fn to_lib(&self) -> Result<Budgets> {
        let parse = |limit, flag, text: &Option<String>| {
            let parse = |text: &str| {
                Budget::parse(limit, text).map_err(|reason| Error::InvalidInput {
                    what: flag,
                    value: text.to_string(),
                    reason,
                })
            };
            text.as_deref().map(parse).transpose()
        };
        Ok(Budgets {
            max_binary: parse(Limit::Binary, "--max-binary-size", &self.max_binary_size)?,
            max_image: parse(Limit::Image, "--max-image-size", &self.max_image_size)?,
        })
    }
}

/// The library's request for this source, flags and image; the caller fills in presets,
/// bases and outputs.
fn request(input: &InputArgs, flags: &FlagArgs, image: &ImageArgs) -> Result<Request> {
    Ok(Request {
        source: input.to_lib(),
        presets: Vec::new(),
        overrides: flags.to_lib()?,
        target: flags.target.clone(),
        platforms: flags.platform.clone(),
        load_platform: flags.load_platform,
        image: image.to_lib()?,
        bases: vec![image.base.clone()],
        tag: None,
        source_date_epoch: image.source_date_epoch,
        builder: input.builder_choice(),
        builder_image: input.builder_image.clone(),
        outputs: Default::default(),
        cold_start_runs: 0,
        compiler_output: Default::default(),
        registry: Default::default(),
    })
}

impl InputArgs {
    /// Where to compile, as the library names it.
    fn builder_choice(&self) -> BuilderChoice {
        match self.builder {
            None => BuilderChoice::Auto,
            Some(Builder::Docker) => BuilderChoice::Docker,
            Some(Builder::Local) => BuilderChoice::Local,
        }
    }
}

impl BuildArgs {
    /// The library's request for this command line.
    pub fn to_lib(&self) -> Result<Request> {
        let mut request = request(&self.input, &self.flags, &self.image)?;
        request.presets = vec![self.optimize];
        request.tag = self.tag.as_deref().map(str::parse).transpose()?;
        request.outputs.oci_layout = self.oci_layout.clone();
        request.outputs.archive = self.output.clone();
        request.outputs.sbom = self.sbom.clone();
        request.outputs.no_sbom = self.no_sbom;
        self.registry.apply(&mut request)?;
        // A tag means "I want it in the engine": loaded when one answers, unless told not to.
        request.outputs.load = match (self.load, self.no_load, request.tag.is_some()) {
            (true, _, _) => Load::Always,
            (_, true, _) | (_, _, false) => Load::Never,
            _ => Load::IfEngine,
        };
        Ok(request)
    }
}

impl CompareArgs {
    /// The library's request: every preset, on every base, loaded as `BIN:PRESET` into the
    /// engine only to time cold starts.
    pub fn to_lib(&self) -> Result<Request> {
        let mut request = request(&self.input, &self.flags, &self.image)?;
        request.presets = self.presets.clone();
        if !self.bases.is_empty() {
            request.bases = self.bases.clone();
        }
        request.cold_start_runs = self.cold_start_runs;
        self.registry.apply(&mut request)?;
        request.outputs.load = match self.cold_start_runs {
            0 => Load::Never,
            _ => Load::IfEngine,
        };
        Ok(request)
    }
}

const DOCKERFILE_EXAMPLES: &str = "\
Examples:
  ruchy-image dockerfile > Dockerfile                        # the same as dockerfiles/Dockerfile
  ruchy-image dockerfile path/to/project -O aggressive > path/to/project/Dockerfile
  ruchy-image dockerfile --variant alpine --bin server       # a base with a shell, adduser
  ruchy-image dockerfile --buildkit                          # dockerfiles/Dockerfile.buildkit

Build with `docker build --build-arg BIN=NAME --build-arg OPTIMIZE=nasa -t NAME .` in the
project; every default printed in the ARG lines can be overridden that way.

Without --buildkit the Dockerfile works with any builder, the classic one too: dependencies
compile in a layer of their own, keyed on the manifests, so a source change reuses them. With
--buildkit, cargo's home and target dir are BuildKit cache mounts (RUN --mount): a change
compiles only what changed, even in the manifests. Build it with `DOCKER_BUILDKIT=1 docker
build` (Docker 20.10), `docker buildx build`, or Docker 23+ with buildx; the classic builder
stops with \"the --mount option requires BuildKit\".";

/// `--variant` of `dockerfile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DockerfileVariant {
    /// FROM scratch (or --base): /etc/passwd made in the build stage, user 65532.
    Scratch,
    /// A base with a shell (alpine by default): `adduser -D -u 1000 appuser`.
    Alpine,
}

/// `ruchy-image dockerfile`
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// A Cargo project (directory or Cargo.toml) to name the binary from [default: none, the
    /// build then needs --build-arg BIN=NAME].
    pub source: Option<PathBuf>,

    /// The OPTIMIZE default.
    #[arg(short = 'O', long, value_name = "LEVEL", default_value = "balanced", value_parser = preset_parser())]
    pub optimize: Preset,

    /// The BIN default: the binary target to build [default: the project's only binary].
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,

    /// The BASE default: the final stage's base [default: scratch, alpine:3 for --variant alpine].
    #[arg(long, value_name = "scratch|IMAGE")]
    pub base: Option<String>,

    /// The BUILDER_IMAGE default: the Rust image stage 1 compiles in.
    #[arg(long, value_name = "IMAGE", default_value = crate::compile::DEFAULT_BUILDER_IMAGE)]
    pub builder_image: String,

    /// The TARGET default [default: the builder's host triple, detected during the build].
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,

    /// The final stage.
    #[arg(long, value_enum, default_value = "scratch")]
    pub variant: DockerfileVariant,

    /// Keep cargo's home and target dir in BuildKit cache mounts (needs BuildKit:
    /// DOCKER_BUILDKIT=1 or buildx) [default: a dependency layer, for any builder].
    #[arg(long)]
    pub buildkit: bool,
}

impl DockerfileArgs {
    /// The library's options: the binary is looked up in SOURCE when one is given.
    pub fn to_lib(&self) -> Result<crate::dockerfile::DockerfileOptions> {
        use crate::dockerfile::{project_bin, Cache, DockerfileOptions, Variant};
        let bin = match &self.source {
            Some(source) => Some(project_bin(source, self.bin.as_deref())?),
            None => self.bin.clone(),
        };
        Ok(DockerfileOptions {
            preset: self.optimize,
            bin,
            target: self.target.clone(),
            builder_image: self.builder_image.clone(),
            base: self.base.clone(),
            variant: match self.variant {
                DockerfileVariant::Scratch => Variant::Scratch,
                DockerfileVariant::Alpine => Variant::Alpine,
            },
            cache: match self.buildkit {
                true => Cache::Mounts,
                false => Cache::Layer,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ImageCommand,
    }

    fn parse(args: &[&str]) -> ImageCommand {
        let all = ["ruchy-image"].iter().chain(args);
        Cli::try_parse_from(all).unwrap().command
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ports_env_and_paths_are_checked() {
        assert_eq!(port("8080").unwrap(), "8080/tcp");
        assert_eq!(port("53/udp").unwrap(), "53/udp");
        for bad in ["0", "70000", "http", "80/xyz"] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert!(key_value("--env", "=x").is_err());
        assert_eq!(key_value("--env", "A=b=c").unwrap().1, "b=c");
        assert!(absolute_image_path("--path", "bin/app").is_err());
        assert!(absolute_image_path("--path", "/a/../etc").is_err());
    }

    fn compare_request(args: &[&str]) -> Request {
        let all: Vec<&str> = ["compare", "app.rs"].iter().chain(args).copied().collect();
        match parse(&all) {
            ImageCommand::Compare(args) => args.to_lib().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compare_takes_presets_in_order() {
        let request = compare_request(&[]);
        assert_eq!(request.presets, Preset::ALL);
        assert_eq!(request.tag, None, "each preset gets its own BIN:PRESET tag");
        assert_eq!(request.outputs.load, Load::IfEngine, "for cold starts");
        let request = compare_request(&["--presets", "nasa,none", "--cold-start-runs", "0"]);
        assert_eq!(request.presets, [Preset::Nasa, Preset::None]);
        assert_eq!(request.outputs.load, Load::Never);
        let unknown = Cli::try_parse_from(["ruchy-image", "compare", "a.rs", "--presets", "fast"]);
        assert!(unknown.is_err());
    }

    #[test]
    fn a_tag_loads_when_an_engine_answers() {
        let load = |args: &[&str]| {
            let all: Vec<&str> = ["build", "app.rs"].iter().chain(args).copied().collect();
            match parse(&all) {
                ImageCommand::Build(args) => args.to_lib().unwrap().outputs.load,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(load(&[]), Load::Never);
        assert_eq!(load(&["--tag", "a:1"]), Load::IfEngine);
        assert_eq!(load(&["--tag", "a:1", "--no-load"]), Load::Never);
        assert_eq!(load(&["--load"]), Load::Always);
    }

    #[test]
    fn budgets_are_parsed_for_both_commands() {
        let ImageCommand::Compare(args) = parse(&[
            "compare",
            "a.rs",
            "--max-binary-size",
            "1.5MB",
            "--max-image-size",
            "2KiB",
        ]) else {
            panic!("not compare")
        };
        let budgets = args.budget.to_lib().unwrap();
        assert_eq!(budgets.max_binary.unwrap().bytes, 1_500_000);
        assert_eq!(budgets.max_image.unwrap().bytes, 2048);
        let ImageCommand::Build(args) = parse(&["build", "a.rs", "--max-image-size", "4X"]) else {
            panic!("not build")
        };
        let error = args.budget.to_lib().unwrap_err();
        assert!(error.is_usage());
        assert!(
            error
                .to_string()
                .starts_with("invalid --max-image-size `4X`: unknown unit"),
            "{error}"
        );
    }
}
