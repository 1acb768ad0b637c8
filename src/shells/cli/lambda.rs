//! `ruchy-image lambda`: a Lambda deployment zip (and image).

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::{print_stdout, to_json};
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
    if let Some(json) = args.json.as_deref().filter(|j| *j != Path::new("-")) {
        crate::adapters::fsutil::check_writable("the record JSON", json)?;
        request.check_output("record JSON", json, &taken)?;
    }
    request.compiler_output.color = Terminal::color();
    request.compiler_output.quiet = args.quiet;
    let (terminal, events) = Terminal::new(journal, Mode::Build, args.verbose, args.quiet);
    let result = async {
        let plan = Plan::resolve(request, &events).await?;
        plan.lambda(&args.output, args.lambda_image, &events).await
    }
    .await;
    terminal.lock().expect("terminal").finish();
    let record = result?;
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if let Some(path) = &args.json {
        let json = to_json("the Lambda record", &record)?;
        match path == Path::new("-") {
            true => print_stdout("the Lambda record", &json)?,
            false => {
                crate::adapters::fsutil::write_file_atomically("the record JSON", path, &json)?
            }
        }
    }
    if !args.quiet {
        let summary = summary::lambda(&record);
        match json_to_stdout {
            true => eprint!("{summary}"),
            false => print!("{summary}"),
        }
    }
    Ok(())
}
