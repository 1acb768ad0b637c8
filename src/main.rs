//! The `ruchy-image` command: parse, run the library on a tokio runtime, report, exit.

mod cli;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::{BuildArgs, Cli, Command, CompareArgs, Format};
use ruchy_image::build::{build, Event};
use ruchy_image::compare::{compare, CompareEvent};
use ruchy_image::compile::LocalCompiler;
use ruchy_image::metrics::BuildRecord;
use ruchy_image::publish::{ArchivePublisher, OciLayoutPublisher, Publisher};
use ruchy_image::{Error, Result};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C drops the running build: its guards kill cargo and remove temp outputs.
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
        None => {
            eprintln!("interrupted: nothing was written");
            ExitCode::from(130)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => run_build(args).await,
        Command::Compare(args) => run_compare(args).await,
    }
}

async fn run_build(args: BuildArgs) -> Result<()> {
    let options = args.to_lib()?;
    let budgets = args.budget.to_lib()?;
    let mut publishers: Vec<Box<dyn Publisher>> = Vec::new();
    if let Some(dir) = &args.oci_layout {
        publishers.push(Box::new(OciLayoutPublisher { dir: dir.clone() }));
    }
    if let Some(file) = &args.output {
        publishers.push(Box::new(ArchivePublisher {
            file: file.clone(),
            mtime: options.source_date_epoch,
        }));
    }
    if let Some(json) = &args.json {
        if json != Path::new("-") {
            // Checked now so a long compile does not end in an unwritable path.
            ruchy_image::publish::check_writable("the metrics JSON", json)?;
        }
    }
    let compiler = LocalCompiler::new(std::io::stderr().is_terminal(), args.quiet);
    let (verbose, quiet) = (args.verbose, args.quiet);
    let mut report = move |event: Event<'_>| report(event, verbose, quiet);
    let record = build(&options, &compiler, &publishers, &mut report).await?;

    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if let Some(path) = &args.json {
        write_json(path, &record)?;
    }
    if !quiet {
        let summary = record.summary();
        if json_to_stdout {
            eprint!("{summary}");
        } else {
            print!("{summary}");
        }
    }
    // Checked last: CI logs then show the summary and the metrics that broke the budget.
    let exceeded = budgets.check(&record);
    if !exceeded.is_empty() {
        return Err(Error::OverBudget { exceeded });
    }
    Ok(())
}

async fn run_compare(args: CompareArgs) -> Result<()> {
    let (options, presets) = args.to_lib()?;
    let budgets = args.budget.to_lib()?;
    if let Some(chart) = &args.chart {
        ruchy_image::publish::check_writable("the chart", chart)?;
    }
    // cargo's progress lines only with --verbose: one line per preset is the progress here.
    let compiler = LocalCompiler::new(std::io::stderr().is_terminal(), !args.verbose);
    let (verbose, quiet) = (args.verbose, args.quiet);
    let mut report = move |event: CompareEvent<'_>| match event {
        CompareEvent::Starting {
            index,
            total,
            preset,
        } if !quiet => eprintln!("→ [{index}/{total}] {preset}..."),
        CompareEvent::Build(event) if verbose => report(event, true, false),
        CompareEvent::Failed { preset, error } => eprintln!("✗ {preset}: {error}"),
        _ => {}
    };
    let comparison = compare(&options, &presets, &compiler, &mut report).await?;

    let output = match args.format {
        Format::Table => comparison.table(),
        Format::Markdown => comparison.markdown(),
        Format::Csv => comparison.csv(),
        Format::Json => comparison.json()?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(Error::io("writing the comparison to stdout"))?;
    if let Some(chart) = &args.chart {
        let svg = ruchy_image::chart::svg(&comparison);
        ruchy_image::publish::write_file_atomically("the chart", chart, svg.as_bytes())?;
    }
    // Failed presets and exceeded budgets fail the command after everything is reported.
    comparison.verdict(&budgets)
}

/// Progress on stderr; `--verbose` uses the `ruchy compile --verbose` format.
fn report(event: Event<'_>, verbose: bool, quiet: bool) {
    if quiet {
        return;
    }
    match event {
        Event::Compiling {
            source,
            bin,
            flags,
            builder,
        } => {
            let name = source
                .file_name()
                .unwrap_or(source.as_os_str())
                .to_string_lossy();
            if !verbose {
                eprintln!(
                    "→ Compiling {name} ({} preset, {builder} builder)...",
                    flags.preset
                );
                return;
            }
            eprintln!("→ Compiling {name}...");
            eprintln!("ℹ Optimization level: {}", flags.preset);
            eprintln!("ℹ LTO: {}", flags.metrics().lto);
            if let Some(cpu) = &flags.target_cpu {
                eprintln!("ℹ target-cpu: {cpu}");
            }
            eprintln!("ℹ Binary: {bin} for {} ({builder} builder)", flags.target);
            eprintln!("ℹ Optimization flags:");
            for flag in flags.listing() {
                eprintln!("  {flag}");
            }
        }
        Event::Compiled {
            binary,
            size,
            time,
            fresh,
        } => {
            if verbose {
                eprintln!("✓ Successfully compiled to: {}", binary.display());
                eprintln!("ℹ Binary size: {size} bytes");
                let note = if fresh { " (up to date)" } else { "" };
                eprintln!("ℹ Compile time: {} ms{note}", time.as_millis());
            }
        }
        Event::Assembling { reference } => {
            eprintln!("→ Assembling image {reference}...");
        }
    }
}

fn write_json(path: &Path, record: &BuildRecord) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
        what: "the build metrics",
        source,
    })?;
    json.push(b'\n');
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(&json)
            .and_then(|_| stdout.flush())
            .map_err(Error::io("writing the metrics to stdout"));
    }
    ruchy_image::publish::write_file_atomically("the metrics JSON", path, &json)
}
