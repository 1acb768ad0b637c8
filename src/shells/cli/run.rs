//! `ruchy-image run`: an image run in the engine, its cold start and peak memory.

use super::failure::Failure;
use super::output::{print_stdout, to_json};
use super::{summary, RunArgs};
use crate::adapters::engine::Engine;
use crate::core::error::Error;

/// `ruchy-image run`: exits with the container's exit code.
pub(super) async fn run_image(args: RunArgs) -> Result<(), Failure> {
    if !(args.cpus > 0.0 && args.cpus <= 1024.0) {
        return Err(Error::InvalidInput {
            what: "--cpus",
            value: args.cpus.to_string(),
            reason: "expected a number of CPUs above 0, such as 0.5".into(),
        }
        .into());
    }
    let memory = crate::pipeline::run_image::parse_memory(&args.memory)?;
    let options = crate::pipeline::run_image::RunOptions {
        image: args.image.clone(),
        args: args.args.clone(),
        iterations: args.iterations,
        memory: Some(memory),
        cpus: Some(args.cpus),
        timeout: None,
    };
    let engine = Engine::connect().await?;
    crate::pipeline::run_image::check_image(&engine, &args.image).await?;
    let json = args.json;
    // The container's output is the command's output, unless stdout is for the JSON.
    let mut output = move |stderr: bool, line: &str| {
        if stderr || json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let report = crate::pipeline::run_image::run(&engine, &options, &mut output).await?;
    if json {
        print_stdout("the run report", &to_json("the run report", &report)?)?;
    } else {
        eprint!("{}", summary::run(&report, &args.memory, args.cpus));
    }
    if report.exit_code != 0 {
        return Err(Error::ContainerFailed {
            image: args.image,
            code: report.exit_code,
        }
        .into());
    }
    Ok(())
}
