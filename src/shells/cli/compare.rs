//! `ruchy-image compare`: every preset (or base, or platform), their report and verdict.

use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::print_stdout;
use super::render::{Journal, Mode, Terminal};
use super::{read_stdin, remote, CompareArgs, Format};
use crate::pipeline::plan::settings::Settings;
use crate::pipeline::plan::Plan;
use crate::pipeline::report;

/// `ruchy-image compare`: the comparison on stdout, then the verdict.
pub(super) async fn compare(
    mut args: CompareArgs,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let settings = Settings::find(&args.options.input.source)?;
    if let Some(settings) = &settings {
        args.take_settings(settings);
    }
    let mut request = args.resolve(settings.as_ref())?;
    if args.verbose {
        eprintln!("{}", super::summary::settings(settings.as_ref(), &request));
    }
    request.registry.credentials = args.registry.login(read_stdin)?;
    let budgets = request.budgets.clone();
    let several_platforms = request.platforms.len() > 1;
    if let Some(chart) = &args.chart {
        crate::adapters::fsutil::check_writable("the chart", chart)?;
        request.check_output("chart", chart, &[])?;
    }
    request.compiler_output.color = Terminal::color();
    // cargo's progress lines only with --verbose: one line per preset is the progress here.
    request.compiler_output.quiet = !args.verbose;
    let shown = (args.verbose, args.quiet);
    let service = &args.service;
    let result = Terminal::around(
        journal,
        Mode::Compare,
        shown.0,
        shown.1,
        |events| async move {
            match &service.server {
                Some(server) => remote::compare(request, service, server, shown.1, &events)
                    .await
                    .map(|comparison| vec![(String::new(), comparison)]),
                None => {
                    Plan::resolve(request, &events)
                        .await?
                        .compare(&events)
                        .await
                }
            }
        },
    )
    .await;
    let comparisons = result?;

    let format = match args.format {
        Format::Table => report::Format::Table,
        Format::Markdown => report::Format::Markdown,
        Format::Csv => report::Format::Csv,
        Format::Json => report::Format::Json,
    };
    let output = match (args.bases.is_empty(), several_platforms) {
        (_, true) => report::platforms(&comparisons, format)?,
        (true, false) => report::presets(&comparisons[0].1, format)?,
        (false, false) => report::bases(&comparisons, format)?,
    };
    print_stdout("the comparison", output.as_bytes())?;
    if let Some(chart) = &args.chart {
        let svg = report::chart::svg(&comparisons[0].1);
        crate::adapters::fsutil::write_file_atomically("the chart", chart, svg.as_bytes())?;
    }
    // Failed presets and exceeded budgets fail the command after everything is reported.
    let mut verdict = crate::pipeline::compare::Verdict::default();
    for (_, comparison) in &comparisons {
        let one = comparison.verdict(&budgets);
        verdict.failed.extend(one.failed);
        verdict.exceeded.extend(one.exceeded);
    }
    match (verdict.passed(), verdict.failed.is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(Failure::OverBudget(verdict.exceeded)),
        (false, false) => Err(Failure::Comparison(verdict)),
    }
}
