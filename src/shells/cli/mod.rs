//! The command line, as a library: [`ImageCommand`] is the clap subcommand and [`run`] does
//! everything the `ruchy-image` binary does with it, so another program mounts the whole tool
//! with one enum variant and one call:
//!
//! ```no_run
//! #[derive(clap::Parser)]
//! #[command(name = "ruchy")]
//! enum Ruchy {
//!     /// Build small container images (ruchy-image).
//!     #[command(subcommand)]
//!     Image(ruchy_image::cli::ImageCommand),
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     // As `Ruchy::parse()`, but a usage line lists only what was typed, not options set
//!     // from the environment (RUCHY_IMAGE_CACHE, ...).
//!     match ruchy_image::cli::parse::<Ruchy>() {
//!         Ruchy::Image(command) => ruchy_image::cli::run(command).await,
//!     }
//! }
//! ```

mod args;
mod build;
mod builder;
mod compare;
mod dev;
mod doctor;
mod failure;
mod lambda;
mod options;
mod output;
mod remote;
mod render;
mod request;
mod run;
#[cfg(feature = "serve")]
mod serve;
mod summary;
mod usage;
mod verify;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[cfg(feature = "serve")]
pub use args::ServeArgs;
pub use args::{
    BuildArgs, BuilderCommand, CompareArgs, DockerfileArgs, DoctorArgs, Format, ImageCommand,
    ImportHostArgs, LambdaArgs, PruneArgs, PullArgs, RunArgs, EXIT_CODES,
};
pub use dev::DevArgs;
use failure::Failure;
pub use options::Builder;
use render::Journal;
pub use usage::parse;
pub use verify::VerifyArgs;

use crate::core::error::Error;

/// Runs one command as the `ruchy-image` binary would: progress and errors on stderr, results
/// on stdout, and the exit code (0 success, 1 failed, 2 invalid input, or a container's own
/// code for `run`). SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the command and clean up after
/// it; the exit code is then 128 + the signal's number.
pub async fn run(command: ImageCommand) -> ExitCode {
    // The service handles its own signals: it drains instead of stopping at once.
    #[cfg(feature = "serve")]
    if let ImageCommand::Serve(args) = command {
        return match serve::serve(*args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", options::with_flag_names(error));
                ExitCode::from(2)
            }
        };
    }
    // `dev` runs until a signal, then takes down what it started.
    if let ImageCommand::Dev(args) = command {
        return dev::dev(*args).await;
    }
    // A signal drops the running command: its guards kill cargo and remove temp outputs.
    let journal = Arc::new(Mutex::new(Journal::default()));
    let outcome = tokio::select! {
        result = dispatch(command, &journal) => Ok(result),
        signal = stop_signal() => Err(signal),
    };
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            let failure = match failure {
                Failure::Error(error) => Failure::Error(options::with_flag_names(error)),
                other => other,
            };
            eprintln!("error: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
        Err(signal) => {
            crate::adapters::engine::remove_leftovers().await;
            eprintln!("{}", journal.lock().expect("journal").interrupted());
            ExitCode::from(128 + signal)
        }
    }
}

/// All of stdin (a registry password), read by the shell.
fn read_stdin() -> crate::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(Error::io("reading the registry password from stdin"))?;
    Ok(text)
}

/// Waits for SIGINT, SIGTERM or SIGHUP and returns its number. A handler that cannot be
/// installed waits forever: the signal then keeps its default action.
async fn stop_signal() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let wait = |kind: SignalKind, number: u8| async move {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
                number
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        n = wait(SignalKind::interrupt(), libc::SIGINT as u8) => n,
        n = wait(SignalKind::terminate(), libc::SIGTERM as u8) => n,
        n = wait(SignalKind::hangup(), libc::SIGHUP as u8) => n,
    }
}

async fn dispatch(command: ImageCommand, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    match command {
        ImageCommand::Build(args) => build::build(*args, journal).await,
        ImageCommand::Compare(args) => compare::compare(*args, journal).await,
        ImageCommand::Run(args) => run::run_image(args).await,
        ImageCommand::Builder(BuilderCommand::ImportHost(args)) => {
            builder::import_host(args, journal).await
        }
        ImageCommand::Builder(BuilderCommand::Prune(args)) => builder::prune(args).await,
        ImageCommand::Builder(BuilderCommand::Pull(args)) => {
            builder::builder_pull(args, journal).await
        }
        ImageCommand::Lambda(args) => lambda::lambda(*args, journal).await,
        ImageCommand::Doctor(args) => doctor::doctor(args).await,
        ImageCommand::Verify(args) => verify::verify(args).await,
        ImageCommand::Dockerfile(args) => {
            let text = crate::commands::dockerfile::render(&args.to_lib()?)?;
            Ok(output::print_stdout("the Dockerfile", text.as_bytes())?)
        }
        #[cfg(feature = "serve")]
        ImageCommand::Serve(_) => unreachable!("run() serves before dispatching"),
        ImageCommand::Dev(_) => unreachable!("run() runs dev before dispatching"),
    }
}
