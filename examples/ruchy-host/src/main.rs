//! A stand-in for the `ruchy` CLI: it mounts ruchy-image's whole command line as
//! `ruchy image ...` with one enum variant and one call, as the real `ruchy` can.
//! A current-thread runtime on purpose: the library must not need more.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Ruchy programming language (a stand-in with only `image`).
#[derive(Parser)]
#[command(name = "ruchy", after_help = ruchy_image::cli::EXIT_CODES)]
struct Ruchy {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build small, reproducible container images with optimization presets.
    #[command(subcommand)]
    Image(ruchy_image::cli::ImageCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Ruchy::parse().command {
        Command::Image(command) => ruchy_image::cli::run(command).await,
    }
}
