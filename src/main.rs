//! The `ruchy-image` command: the library's command line on a tokio runtime.

use std::process::ExitCode;

use ruchy_image::cli::{ImageCommand, EXIT_CODES};

/// Compile a Ruchy or Rust program with an optimization preset into a small, reproducible,
/// non-root container image, and report what each preset costs.
#[derive(Debug, clap::Parser)]
#[command(name = "ruchy-image", version, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: ImageCommand,
}

fn main() -> ExitCode {
    let cli: Cli = ruchy_image::cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(ruchy_image::cli::run(cli.command)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
