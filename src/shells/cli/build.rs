//! `ruchy-image build`: the request, the build (here or on a server), and its report.

use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::{file, print_summary, write_json};
use super::render::{Journal, Mode, Terminal};
use super::{read_stdin, remote, summary, BuildArgs};
use crate::core::budget::Budgets;
use crate::core::metrics::{BuildRecord, Built};
use crate::pipeline::plan::settings::Settings;
use crate::pipeline::plan::Plan;
use crate::pipeline::report;

/// `ruchy-image build`: the summary (or JSON), then the budgets' verdict. A build that fails
/// (not bad input, which writes nothing) still gets its `--json` record, with the error.
pub(super) async fn build(
    mut args: BuildArgs,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let settings = Settings::find(&args.options.input.source)?;
    if let Some(settings) = &settings {
        args.take_settings(settings);
    }
    let result = build_and_report(&args, settings.as_ref(), journal).await;
    if let (Err(Failure::Error(error)), Some(path)) = (&result, &args.json) {
        if !error.is_usage() {
            let source = args.options.input.source.display().to_string();
            let record = report::json::FailedBuild::new(source, args.optimize, error);
            if let Err(unwritten) = write_json(path, &record) {
                eprintln!("warning: {unwritten}");
            }
        }
    }
    result
}

async fn build_and_report(
    args: &BuildArgs,
    settings: Option<&Settings>,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let (built, budgets) = build_here_or_there(args, settings, journal).await?;
    // Over budget, nothing was published; the record is still reported, then the verdict.
    report(args, built, &budgets)
}

/// The request the flags and `settings` make, built here or on a server (with progress on
/// the terminal): its record, not yet reported, and the budgets it is held to.
pub(super) async fn build_here_or_there(
    args: &BuildArgs,
    settings: Option<&Settings>,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(Built, Budgets), Failure> {
    let mut request = args.resolve(settings)?;
    if args.verbose {
        eprintln!("{}", summary::settings(settings, &request));
    }
    request.registry.credentials = args.registry.login(read_stdin)?;
    let budgets = request.budgets.clone();
    if let Some(json) = file(args.json.as_deref()) {
        // Checked now so a long compile does not end in an unwritable path.
        crate::adapters::fsutil::check_writable("the metrics JSON", json)?;
        let outputs = [&request.outputs.oci_layout, &request.outputs.archive];
        let taken: Vec<_> = outputs.into_iter().flatten().cloned().collect();
        request.check_output("metrics JSON", json, &taken)?;
    }
    request.compiler_output.color = Terminal::color();
    request.compiler_output.quiet = args.quiet;
    let result = Terminal::around(journal, Mode::Build, args.verbose, args.quiet, |events| {
        async move {
            // On a server, the same request: built there, written here.
            if let Some(server) = &args.service.server {
                return remote::build(request, &args.service, server, args.quiet, &events).await;
            }
            let plan = Plan::resolve(request, &events).await?;
            match plan.is_multi_platform() {
                true => plan
                    .build_index(&events)
                    .await
                    .map(|r| Built::Index(Box::new(r))),
                false => plan.build(&events).await.map(|r| Built::Image(Box::new(r))),
            }
        }
    })
    .await;
    Ok((result?, budgets))
}

fn report(args: &BuildArgs, built: Built, budgets: &Budgets) -> Result<(), Failure> {
    match built {
        Built::Image(record) => report_build(args, &record, budgets),
        Built::Index(record) => report_index(args, &record, budgets),
    }
}

/// A multi-platform build's record and summary; every platform's image is held to the
/// budgets.
fn report_index(
    args: &BuildArgs,
    record: &crate::core::metrics::IndexRecord,
    budgets: &Budgets,
) -> Result<(), Failure> {
    if let Some(path) = &args.json {
        write_json(path, record)?;
    }
    if !args.quiet {
        print_summary(&summary::index(record), args.json.as_deref());
    }
    let exceeded: Vec<_> = record
        .platforms
        .iter()
        .flat_map(|r| budgets.check(r))
        .collect();
    if !exceeded.is_empty() {
        return Err(Failure::OverBudget(exceeded));
    }
    Ok(())
}

/// The end of a build, local or remote: the JSON, the summary, then the budgets' verdict.
fn report_build(args: &BuildArgs, record: &BuildRecord, budgets: &Budgets) -> Result<(), Failure> {
    if let Some(path) = &args.json {
        write_json(path, record)?;
    }
    if !args.quiet {
        print_summary(&summary::build(record), args.json.as_deref());
    }
    // Checked last: CI logs then show the summary and the metrics that broke the budget.
    let exceeded = budgets.check(record);
    if !exceeded.is_empty() {
        return Err(Failure::OverBudget(exceeded));
    }
    Ok(())
}
