//! One error type for the library: every variant carries what a user needs to act on it.
//!
//! Messages say what went wrong in the library's own terms; they name no command-line flag.
//! Each shell adds its own advice (the CLI's `hint:` lines name its flags).

use std::path::PathBuf;

/// Everything that can go wrong while turning a source into an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source path does not exist or cannot be read.
    #[error("cannot read source {path}: {source}")]
    SourceUnreadable {
        /// The path given by the user.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The source is neither a Cargo project, a `.rs` file, a `.ruchy` file nor an executable.
    #[error("don't know how to build {path}: expected a Cargo project directory, a .rs file, a .ruchy file or a Linux executable (ELF) built elsewhere")]
    UnknownSourceKind {
        /// The path given by the user.
        path: PathBuf,
    },
    /// A `.ruchy` source was given but no transpiler could be run.
    #[error("cannot run the Ruchy transpiler `{program}`: {reason}")]
    RuchyNotFound {
        /// The program we tried to run.
        program: PathBuf,
        /// Why it could not be run.
        reason: String,
    },
    /// `ruchy transpile` ran and failed.
    #[error("`ruchy transpile {path}` failed ({status}):\n{stderr}")]
    TranspileFailed {
        /// The `.ruchy` file.
        path: PathBuf,
        /// Exit status of the transpiler.
        status: std::process::ExitStatus,
        /// What the transpiler printed.
        stderr: String,
    },
    /// `cargo metadata` failed for a project.
    #[error("cannot read the Cargo project at {manifest}: {message}")]
    CargoMetadata {
        /// The manifest we asked about.
        manifest: PathBuf,
        /// Cargo's message.
        message: String,
    },
    /// The project has no binary target of the requested name, or none at all.
    #[error("{}", bin_not_found_message(.requested.as_deref(), .available))]
    BinNotFound {
        /// The `--bin` given, if any.
        requested: Option<String>,
        /// The binaries the project does have.
        available: Vec<String>,
    },
    /// The project has several binaries and `--bin` was not given.
    #[error("the project has several binaries ({})", .available.join(", "))]
    BinAmbiguous {
        /// The binaries the project has.
        available: Vec<String>,
    },
    /// A command we depend on (cargo, rustc) could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Cargo ran and the compile failed; its diagnostics were already shown.
    #[error(
        "compiling {package} failed (cargo exited with {status}); cargo's diagnostics are above"
    )]
    CompileFailed {
        /// Package that was being built.
        package: String,
        /// Cargo's exit status.
        status: std::process::ExitStatus,
    },
    /// Cargo ran and a crate's build script could not find a program it runs: a C compiler
    /// for the target, make, perl, cmake...
    #[error("compiling {package} failed: the build script of {krate} runs `{tool}`, and {builder} does not have it")]
    BuildToolMissing {
        /// Package that was being built.
        package: String,
        /// The crate whose build script failed (`ring v0.17.14`).
        krate: String,
        /// The program it could not find.
        tool: String,
        /// Where it compiled: `the builder image X`, `this machine (--builder local)`.
        builder: String,
        /// Whether the build ran in a builder container (so the fix is a builder image).
        in_container: bool,
    },
    /// The build reached a limit of its builder container: its memory (a process was killed)
    /// or its process count (a fork or a thread failed).
    #[error("compiling {package} failed: the build reached the builder's {limit} limit ({value}); raise it with {flag}, or make the build need less")]
    LimitReached {
        /// Package that was being built.
        package: String,
        /// `memory`, `process`.
        limit: &'static str,
        /// The limit as set (`3 GiB`, `1024 processes`).
        value: String,
        /// The flag that sets it (`--build-memory`).
        flag: &'static str,
    },
    /// Cargo finished but named no executable for the binary target.
    #[error("cargo reported no executable for binary `{bin}`")]
    NoExecutable {
        /// The binary target.
        bin: String,
    },
    /// The binary is not an ELF executable we can put into a Linux image.
    #[error("{path} is not a Linux executable: {reason}")]
    NotElf {
        /// The binary.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// A dynamically linked binary was going to be put on a base without its loader.
    #[error("{path} is dynamically linked (it needs the loader {interpreter}), and a FROM scratch image has no loader: the container would fail with `exec: no such file or directory`")]
    DynamicBinary {
        /// The binary.
        path: PathBuf,
        /// Its `PT_INTERP`.
        interpreter: String,
        /// Whether it was built elsewhere (so the fix is not a flag of ours).
        prebuilt: bool,
    },
    /// A value in the request is not valid.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidInput {
        /// Which value (`user`, `base image`, ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime user would be root, and root was not allowed.
    #[error("refusing to run the image as root (uid 0)")]
    RootUser,
    /// An output cannot be written where the user asked.
    #[error("cannot write {what} to {path}: {reason}")]
    OutputNotWritable {
        /// Which output.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No Docker engine answered.
    #[error("no Docker engine answers at {host}: {reason}")]
    EngineUnavailable {
        /// Where we looked.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The engine refused a request; its own message says why.
    #[error("{context}: the Docker engine said: {message}")]
    Engine {
        /// What we asked for.
        context: String,
        /// The engine's message.
        message: String,
    },
    /// The engine's view of a loaded image differs from what we built.
    #[error("the engine's view of {reference} disagrees with what was built: {difference}")]
    EngineDisagrees {
        /// The image.
        reference: String,
        /// What differs.
        difference: String,
    },
    /// The builder image is not in the engine and could not be pulled.
    #[error("builder image {image} is not available: {reason}")]
    BuilderImageUnavailable {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
    /// The builder image is not in the engine, and pulling it was turned off.
    #[error("builder image {image} is not in the engine, and pulling is turned off (pull never)")]
    BuilderImageMissing {
        /// The image.
        image: String,
    },
    /// The builder image runs, but has no Rust toolchain.
    #[error(
        "builder image {image} has no Rust toolchain: `rustc -vV` does not run in it ({reason})"
    )]
    BuilderNotRust {
        /// The image, as named.
        image: String,
        /// What happened when `rustc -vV` was run.
        reason: String,
    },
    /// The builder cannot compile for the target asked for (or chosen).
    #[error("the {builder} builder cannot compile for {target}: {reason}")]
    TargetUnsupported {
        /// The target triple.
        target: String,
        /// The builder (`local`, or the builder image).
        builder: String,
        /// What it lacks.
        reason: String,
    },
    /// A standard library the build would link was made by another compiler.
    #[error("the standard library for {target} in {location} was built by {built_by}, but the compiler is {compiler}; it has to be rebuilt by this compiler")]
    StdMismatch {
        /// The target triple.
        target: String,
        /// Where that std is (a directory, or a builder image).
        location: String,
        /// The compiler that built it.
        built_by: String,
        /// The compiler in use.
        compiler: String,
    },
    /// Building a standard library from source failed.
    #[error("cannot build the standard library for {target}: {reason}")]
    StdBuildFailed {
        /// The target triple.
        target: String,
        /// Why.
        reason: String,
    },
    /// A base image is malformed or unsafe to read.
    #[error("cannot use the base image: {reason}")]
    InvalidBase {
        /// What is wrong with it.
        reason: String,
    },
    /// The base image cannot be found or read.
    #[error("cannot find base image {reference}: {reason}")]
    BaseNotFound {
        /// The `--base` given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A dynamically linked binary was going to be put on a base without its loader.
    #[error("{path} is dynamically linked and needs the loader {interpreter}, which base {base} does not have")]
    MissingLoader {
        /// The binary.
        path: std::path::PathBuf,
        /// Its `PT_INTERP`.
        interpreter: String,
        /// The base.
        base: String,
        /// Whether it was built elsewhere (so the fix is not a flag of ours).
        prebuilt: bool,
    },
    /// A measured run did not exit in time.
    #[error("{image} did not exit within {seconds} s (a server? cold start is measured to exit)")]
    RunTimedOut {
        /// The image.
        image: String,
        /// The limit.
        seconds: u64,
    },
    /// A container run by `ruchy-image run` exited non-zero.
    #[error("{image} exited with code {code}")]
    ContainerFailed {
        /// The image.
        image: String,
        /// Its exit code.
        code: i64,
    },
    /// A step failed, and cleaning up after it failed too: both are reported, the step's
    /// error first, since it is what the user came for.
    #[error("{error}\n  and cleaning up failed too: {cleanup}")]
    CleanupFailed {
        /// What failed first.
        error: Box<Error>,
        /// The cleanup's own error.
        cleanup: Box<Error>,
    },
    /// A registry refused or failed a push or a pull.
    #[error("registry {registry}: {message}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// What went wrong, in the registry's words where it gave some.
        message: String,
    },
    /// A build on a `ruchy-image serve` failed, or the server refused it; its message, as
    /// the server gave it. A refusal of the user's input reads as a local build's would.
    #[error("{message}{}", if *usage { "" } else { " (on the server)" })]
    Remote {
        /// The server's message.
        message: String,
        /// Whether the server found the user's input wrong (exit 2, as locally).
        usage: bool,
    },
    /// A project setting (`[package.metadata.ruchy-image]` in Cargo.toml, or
    /// `ruchy-image.toml`) is unknown, of the wrong type, or a value its flag refuses.
    #[error("{at}: {message}")]
    Setting {
        /// `FILE:LINE:COLUMN` of the key or value.
        at: String,
        /// What is wrong, in the flag's own words.
        message: String,
    },
    /// Any other I/O failure, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// JSON could not be produced.
    #[error("cannot serialize {what}: {source}")]
    Json {
        /// What was being serialized.
        what: &'static str,
        /// Serializer error.
        source: serde_json::Error,
    },
}

fn bin_not_found_message(requested: Option<&str>, available: &[String]) -> String {
    match (requested, available.is_empty()) {
        (_, true) => "the project has no binary target to put into an image".to_string(),
        (Some(bin), false) => format!(
            "the project has no binary named `{bin}`; it has: {}",
            available.join(", ")
        ),
        (None, false) => format!(
            "no binary selected; the project has: {}",
            available.join(", ")
        ),
    }
}

impl Error {
    /// The result of a step followed by a cleanup: the step's error wins, and a cleanup that
    /// failed as well is reported beside it, never instead of it.
    pub fn with_cleanup<T>(result: Result<T>, cleanup: Result<()>) -> Result<T> {
        match (result, cleanup) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(cleanup)) => Err(cleanup),
            (Err(error), Ok(())) => Err(error),
            (Err(error), Err(cleanup)) => Err(Error::CleanupFailed {
                error: Box::new(error),
                cleanup: Box::new(cleanup),
            }),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The exit code for this error: a failed container's own code, 2 for bad input, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CleanupFailed { error, .. } => error.exit_code(),
            Error::ContainerFailed { code, .. } => u8::try_from(*code).unwrap_or(1).max(1),
            e if e.is_usage() => 2,
            _ => 1,
        }
    }

    /// Whether the error is the user's input (exit code 2) rather than a failed build (exit 1).
    pub fn is_usage(&self) -> bool {
        if let Error::CleanupFailed { error, .. } = self {
            return error.is_usage();
        }
        matches!(
            self,
            Error::SourceUnreadable { .. }
                | Error::UnknownSourceKind { .. }
                | Error::RuchyNotFound { .. }
                | Error::BinNotFound { .. }
                | Error::BinAmbiguous { .. }
                | Error::InvalidInput { .. }
                | Error::RootUser
                | Error::BuilderNotRust { .. }
                | Error::BuilderImageMissing { .. }
                | Error::TargetUnsupported { .. }
                | Error::OutputNotWritable { .. }
                | Error::BaseNotFound { .. }
                | Error::Remote { usage: true, .. }
                | Error::Setting { .. }
        )
    }
}

/// An error and its causes, `: `-separated, each said once (libraries such as tar and
/// reqwest keep the reason that matters in a source).
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
