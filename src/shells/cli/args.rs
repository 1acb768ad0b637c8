//! The `ruchy-image` commands and their own arguments, as clap types. The option groups
//! several commands share are in `options.rs`; `to_lib`, which turns a command line into the
//! library's request, is in `request.rs`.
//!
//! Doc comments here are the `--help` text: `NAME[:TAG]` is a usage pattern, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::options::{
    base_parser, preset_parser, AttestArgs, BudgetArgs, BuildOptions, Given, ImageArgs,
    RegistryArgs, ServiceArgs,
};
use crate::core::preset::Preset;
use crate::pipeline::base::BaseRef;

/// What `after_help` says of exit codes, for the program that mounts [`ImageCommand`].
pub const EXIT_CODES: &str = "Exit codes: 0 success, 1 build failed, 2 invalid input, 130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (after cleaning up); `run` exits with the container's own code.";

/// SOURCE where it is compiled (`compare`, `lambda`); `build` also packages an executable.
const SOURCE_TO_COMPILE: &str = "A Cargo project directory, a .rs file, or a .ruchy file";

/// The `ruchy-image` commands, as a clap subcommand another program can mount
/// (`#[command(subcommand)] Image(ImageCommand)`) and hand to [`run`](super::run).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Compile SOURCE with a preset and assemble a FROM-scratch OCI image for it (a prebuilt
    /// executable is packaged as it is).
    #[command(after_long_help = BUILD_EXAMPLES)]
    Build(Box<BuildArgs>),
    /// Build SOURCE with several presets and compare binary size, image size and compile time.
    #[command(after_long_help = COMPARE_EXAMPLES, mut_arg("source", |a| a.help(SOURCE_TO_COMPILE)))]
    Compare(Box<CompareArgs>),
    /// Build SOURCE, run its image, and on every save build again and swap the running
    /// container (or compose service) for the new one.
    #[command(after_long_help = super::dev::DEV_EXAMPLES)]
    Dev(Box<super::dev::DevArgs>),
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
    #[command(after_long_help = LAMBDA_EXAMPLES, mut_arg("source", |a| a.help(SOURCE_TO_COMPILE)))]
    Lambda(Box<LambdaArgs>),
    /// Check what builds need on this machine (engine, builder image and its stds, local
    /// toolchain, ruchy, arm64 emulation, registry logins, cache volumes), each with its fix.
    #[command(after_long_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
    /// Check an image's SBOM and provenance referrers: they name this manifest, the
    /// provenance is signed with --key and records the image's flags.
    #[command(after_long_help = super::verify::EXAMPLES)]
    Verify(super::verify::VerifyArgs),
    /// Run the builder as a service: an HTTP API that takes build contexts, a durable queue,
    /// build records, logs and images.
    #[cfg(feature = "serve")]
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(Box<ServeArgs>),
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

    /// Uploads received at once (429 above it): each is streamed to disk and kept in the
    /// database a chunk at a time.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_uploads: u32,

    /// How long a client may take to send a request's headers, or between two parts of an
    /// upload, before it is cut off.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_parser)]
    pub read_timeout: std::time::Duration,

    /// How long a shutdown waits for running builds before cancelling them.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration_parser)]
    pub shutdown_timeout: std::time::Duration,

    /// The image builds compile in [default: rust:1-alpine, else the newest image made by
    /// `builder import-host`; without an engine, the local toolchain].
    #[arg(long, value_name = "IMAGE", env = "RUCHY_IMAGE_BUILDER_IMAGE")]
    pub builder_image: Option<String>,

    /// Limits of each build's containers.
    #[command(flatten)]
    pub limits: crate::shells::cli::options::LimitArgs,

    /// Sign every build's SLSA provenance with this ECDSA P-256 private key (PEM, SEC1 or
    /// PKCS#8) [default: unsigned].
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

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

    /// The registry repository (REGISTRY/REPOSITORY) every build's images go to, as
    /// REPOSITORY:<build id>-<preset> with their SBOMs, and any worker serves them from;
    /// credentials from Docker's config and credential helpers. Required with --database
    /// [default: images stay in the data dir].
    #[arg(long, value_name = "REGISTRY/REPO", env = "RUCHY_IMAGE_ARTIFACTS")]
    pub artifacts: Option<String>,

    /// Speak plain HTTP to this registry host[:port] (repeatable; loopback may, unless a
    /// --registry-ca says it speaks TLS).
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,

    /// Trust this CA (PEM) for registries, besides the system's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,

    /// Delete the images of builds that finished longer ago than this (from the artifact
    /// registry by digest, keeping what newer builds share; or the data dir's archives) and
    /// mark them expired: their records stay, their images answer 410 [default: keep].
    #[arg(long, value_name = "DURATION", value_parser = duration_parser)]
    pub keep_artifacts: Option<std::time::Duration>,
}

#[cfg(feature = "serve")]
fn duration_parser(value: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (e.g. 90s, 30m, 2h)"))
}

#[cfg(feature = "serve")]
fn size_parser(value: &str) -> std::result::Result<u64, String> {
    crate::core::metrics::parse_size(value)
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
    /// Pull a builder image through the engine (the default one, rust:1-alpine, unless
    /// named) and check that it has a Rust toolchain. Builds pull only a missing image,
    /// unless given --pull always.
    Pull(PullArgs),
    /// Remove the cache volumes builds through the engine keep (or, with --dry-run, only list
    /// them), with their sizes as the engine reports them. `ruchy-image-cargo-home` holds
    /// downloaded crates, shared by every build; `ruchy-image-shared-<builder image>-<n>` hold
    /// compiled registry dependencies, shared by every project built with that builder image
    /// (one per build running at once), and `…-project-<hash>` each project's own target.
    /// Volumes a container uses, running or stopped, are kept and named. The next build fills the caches again: it downloads and compiles every
    /// dependency once more.
    Prune(PruneArgs),
}

const DOCTOR_EXAMPLES: &str = "\
Exits 1 when something the default build needs is missing (the engine, a builder image, its musl
std), else 0; the other checks say which builds need them.

Examples:
  ruchy-image doctor
  ruchy-image doctor --json | jq '.checks[] | select(.ok | not)'
  ruchy-image doctor --artifacts registry.internal:5000/ruchy-builds   # on a service host
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

    /// On a service host: check that this artifact registry repository (`serve --artifacts`)
    /// answers and takes a push from this user (required when given).
    #[arg(long, value_name = "REGISTRY/REPO")]
    pub artifacts: Option<String>,

    /// Speak plain HTTP to this registry host[:port] (repeatable), as `serve` does.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,

    /// Trust this CA (PEM) for registries, besides the system's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
}

/// `ruchy-image builder prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// List the cache volumes and their sizes; remove nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Only volumes whose name starts with PREFIX (e.g. `ruchy-image-shared-` to keep the
    /// downloaded crates).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,

    /// Print the volumes as JSON on stdout: name, owner, size (bytes, null when the engine
    /// does not know), used_by, removed, error.
    #[arg(long)]
    pub json: bool,
}

/// `ruchy-image builder pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image to pull [default: rust:1-alpine].
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,

    /// Where the builder's probe is remembered.
    #[arg(long, value_name = "DIR", env = "RUCHY_IMAGE_CACHE")]
    pub cache_dir: Option<PathBuf>,
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

Project settings: every long option above (but --registry-user and --registry-password-stdin)
may be kept with the project, named as the option, in [package.metadata.ruchy-image] of its
Cargo.toml (or of a .rs file's own manifest), or in a ruchy-image.toml beside the file or in
the project directory (top level). A list where the option repeats, true for one that takes
no value, paths relative to the file; [presets.NAME] tables hold one preset's overrides
(opt-level, lto, codegen-units, strip, panic, target-cpu, static-link). Options given here
(or by their environment variable) win over the file, the file over the defaults; a list
given here replaces the file's. --verbose and the record's `settings` say where each came
from. `compare` reads them too, except build's own: optimize and the outputs.
  [package.metadata.ruchy-image]
  optimize = \"aggressive\"
  port = [\"8080\"]
  env = [\"GREETING=hi\"]
  [package.metadata.ruchy-image.presets.size]
  panic = \"abort\"

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

/// `ruchy-image lambda`
#[derive(Debug, Args)]
pub struct LambdaArgs {
    /// Optimization preset (aggressive, as the chapter advises for Lambda).
    #[arg(short = 'O', long, value_name = "LEVEL", default_value = "aggressive", value_parser = preset_parser())]
    pub optimize: Preset,

    /// What to build: a single .rs or .ruchy file defining `handle_request(event) ->
    /// response`, wrapped in a small blocking Runtime API loop; or a Cargo project or a
    /// prebuilt executable that serves the Runtime API itself (lambda_runtime, …); and the
    /// flags on top of the preset.
    #[command(flatten)]
    pub options: BuildOptions,

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

/// `ruchy-image build`
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Which options the command line gave (first: it reads the matches before the others).
    #[command(flatten)]
    pub given: Given,

    /// Optimization preset.
    #[arg(short = 'O', long, value_name = "LEVEL", default_value = "balanced", value_parser = preset_parser())]
    pub optimize: Preset,

    /// What to build, and the flags on top of the preset.
    #[command(flatten)]
    pub options: BuildOptions,

    /// What goes into the image.
    #[command(flatten)]
    pub image: ImageArgs,

    /// Size limits.
    #[command(flatten)]
    pub budget: BudgetArgs,

    /// Print the resolved flags and each step, in `ruchy compile --verbose` form.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing but errors (and the JSON, with --json -).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

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

    /// The SBOM and the provenance attached to the image.
    #[command(flatten)]
    pub attest: AttestArgs,

    /// The service to build on instead, if any.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `ruchy-image compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Which options the command line gave (first: it reads the matches before the others).
    #[command(flatten)]
    pub given: Given,

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

    /// What to build, and the flags on top of every preset.
    #[command(flatten)]
    pub options: BuildOptions,

    /// What goes into the images.
    #[command(flatten)]
    pub image: ImageArgs,

    /// Size limits, checked for every preset.
    #[command(flatten)]
    pub budget: BudgetArgs,

    /// Show each preset's resolved flags and cargo's progress.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print nothing but errors and the comparison.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Where each preset's image is pushed.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// The service to compare on instead (one build with every preset), if any.
    #[command(flatten)]
    pub service: ServiceArgs,
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
    #[arg(long, value_name = "IMAGE", default_value = crate::pipeline::compile::DEFAULT_BUILDER_IMAGE)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ImageCommand,
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Each heading of a command's `--help` with its options' long names, in the order
    /// shown: the groups shared through `#[command(flatten)]` keep their place.
    fn help_groups(command: &str) -> Vec<String> {
        let mut cli = Cli::command();
        let command = cli.find_subcommand_mut(command).expect("a subcommand");
        let help = command.render_long_help().to_string();
        // The examples after the options are not options.
        let after = command.get_after_long_help().map(|a| a.to_string());
        let options = match after.and_then(|a| help.find(&a)) {
            Some(end) => &help[..end],
            None => &help,
        };
        let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
        for line in options.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                groups.push((line, Vec::new()));
            } else if let Some(at) = line.find("--").filter(|at| (2..=6).contains(at)) {
                let name = line[at + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                groups.last_mut().expect("under a heading").1.push(name);
            }
        }
        groups
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(heading, names)| format!("{heading} {}", names.join(" ")))
            .collect()
    }

    #[test]
    fn the_options_keep_their_order_and_headings() {
        let flags = "Flag overrides: opt-level lto codegen-units strip no-strip panic target-cpu \
                     static-link no-static-link target platform load-platform";
        let image = "Image: base user allow-root env port label workdir path source-date-epoch \
                     compression compression-level";
        let budgets = "Size budgets: max-binary-size max-image-size";
        let registries = "Registries: push registry-user registry-password-stdin \
                          insecure-registry registry-ca";
        let service = "Service: server token-file";
        let input = "bin ruchy builder builder-image pull cache-dir no-embed-deps verbose quiet";
        let limits = "Builder limits: build-memory build-pids build-cpus";
        assert_eq!(
            help_groups("build"),
            [
                &format!("Options: optimize {input} help"),
                limits,
                flags,
                image,
                budgets,
                "Outputs: oci-layout output tag load no-load json sbom no-sbom sbom-format \
                 no-provenance sign-key",
                registries,
                service,
            ]
        );
        assert_eq!(
            help_groups("compare"),
            [
                &format!("Options: presets bases cold-start-runs format chart {input} help"),
                limits,
                flags,
                image,
                budgets,
                registries,
                service,
            ]
        );
        assert_eq!(
            help_groups("lambda"),
            [
                &format!("Options: optimize {input} source-date-epoch help"),
                limits,
                flags,
                "Outputs: output lambda-image tag oci-layout base json",
            ]
        );
    }
}
