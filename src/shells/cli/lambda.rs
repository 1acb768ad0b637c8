//! `ruchy-image lambda`: a Lambda deployment zip (and image).

use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::{file, print_summary, write_json_as};
use super::render::{Journal, Mode, Terminal};
use super::{summary, LambdaArgs};
use crate::pipeline::plan::Plan;

/// `ruchy-image lambda`: the zip (and image), then what it made and how to deploy it.
pub(super) async fn lambda(args: LambdaArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let mut request = args.to_lib()?;
    let mut taken = Vec::new();
    if let Some(layout) = &request.outputs.oci_layout {
        taken.push(layout.clone());
    }
    request.check_output("Lambda zip", &args.output, &taken)?;
    taken.push(args.output.clone());
    if let Some(json) = file(args.json.as_deref()) {
        crate::adapters::fsutil::check_writable("the record JSON", json)?;
        request.check_output("record JSON", json, &taken)?;
    }
    request.compiler_output.color = Terminal::color();
    request.compiler_output.quiet = args.quiet;
    let args = &args;
    let result = Terminal::around(
        journal,
        Mode::Build,
        args.verbose,
        args.quiet,
        |events| async move {
            let plan = Plan::resolve(request, &events).await?;
            plan.lambda(&args.output, args.lambda_image, &events).await
        },
    )
    .await;
    let record = result?;
    if let Some(path) = &args.json {
        write_json_as(("the Lambda record", "the record JSON"), path, &record)?;
    }
    if !args.quiet {
        print_summary(&summary::lambda(&record), args.json.as_deref());
    }
    Ok(())
}
