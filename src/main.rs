//! The `ruchy-image` command: parse, run the library on a tokio runtime, report, exit.

mod cli;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::{
    BuildArgs, Builder, BuilderCommand, Cli, Command, CompareArgs, Format, ImportHostArgs,
    InputArgs, RunArgs,
};
use ruchy_image::base::BaseRef;
use ruchy_image::build::{build, Event};
use ruchy_image::compare::{compare, BaseComparison, ColdStartProbe, CompareEvent};
use ruchy_image::compile::{BuilderImage, Compiler, DockerCompiler, LocalCompiler};
use ruchy_image::engine::Engine;
use ruchy_image::metrics::BuildRecord;
use ruchy_image::publish::{ArchivePublisher, EnginePublisher, OciLayoutPublisher, Publisher};
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
        let outcome = tokio::select! {
            result = run(cli) => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        if outcome.is_none() {
            ruchy_image::engine::remove_leftovers().await;
        }
        outcome
    });
    match outcome {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        None => {
            eprintln!("interrupted: nothing was written");
            ExitCode::from(130)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Build(args) => run_build(*args).await,
        Command::Compare(args) => run_compare(*args).await,
        Command::Run(args) => run_image(args).await,
        Command::Builder(BuilderCommand::ImportHost(args)) => run_import_host(args).await,
        Command::Dockerfile(args) => run_dockerfile(&args),
    }
}

/// `ruchy-image dockerfile`: the Dockerfile on stdout.
fn run_dockerfile(args: &cli::DockerfileArgs) -> Result<()> {
    let text = ruchy_image::dockerfile::render(&args.to_lib()?)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(Error::io("writing the Dockerfile to stdout"))
}

/// `ruchy-image run`: exits with the container's exit code.
async fn run_image(args: RunArgs) -> Result<()> {
    if !(args.cpus > 0.0 && args.cpus <= 1024.0) {
        return Err(Error::InvalidInput {
            what: "--cpus",
            value: args.cpus.to_string(),
            reason: "expected a number of CPUs above 0, such as 0.5".into(),
        });
    }
    let options = ruchy_image::run::RunOptions {
        image: args.image.clone(),
        args: args.args.clone(),
        iterations: args.iterations,
        memory: Some(ruchy_image::run::parse_memory(&args.memory)?),
        cpus: Some(args.cpus),
        timeout: None,
    };
    let engine = Engine::connect().await?;
    ruchy_image::run::check_image(&engine, &args.image).await?;
    let json = args.json;
    let mut output = move |stderr: bool, line: &str| {
        if stderr || json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let report = ruchy_image::run::run(&engine, &options, &mut output).await?;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|source| Error::Json {
            what: "the run report",
            source,
        })?;
        println!("{text}");
    } else {
        let memory = report
            .peak_memory_bytes
            .map(ruchy_image::metrics::human_size)
            .unwrap_or_else(|| "not reported by the engine (the run was too short)".into());
        eprintln!(
            "ℹ cold start: median {:.1} ms (min {:.1}, max {:.1}) over {} run(s); limits {} memory, {} CPU",
            report.cold_start_median_ms,
            report.cold_start_min_ms,
            report.cold_start_max_ms,
            report.iterations,
            args.memory,
            args.cpus
        );
        eprintln!("ℹ peak memory: {memory}; exit code {}", report.exit_code);
    }
    if report.exit_code != 0 {
        return Err(Error::ContainerFailed {
            image: args.image,
            code: report.exit_code,
        });
    }
    Ok(())
}

async fn run_import_host(args: ImportHostArgs) -> Result<()> {
    let engine = Engine::connect().await?;
    let tag = args
        .tag
        .as_deref()
        .map(str::parse::<ruchy_image::oci::ImageRef>)
        .transpose()?;
    let scratch = args
        .cache_dir
        .unwrap_or_else(ruchy_image::build::default_cache_dir);
    let progress = |message: &str| eprintln!("→ {message}...");
    let imported = ruchy_image::builder::import_host(
        &engine,
        tag.as_ref().map(|t| t.full.as_str()),
        &scratch,
        &progress,
    )
    .await?;
    if args.json {
        let json = serde_json::to_string_pretty(&imported).map_err(|source| Error::Json {
            what: "the import result",
            source,
        })?;
        println!("{json}");
    } else if imported.reused {
        println!("✓ {} is up to date ({})", imported.tag, imported.rustc);
    } else {
        println!(
            "✓ Imported {} ({}, {} MB, target {})",
            imported.tag,
            imported.rustc,
            imported.size / 1_000_000,
            imported.target
        );
    }
    Ok(())
}

/// Prints a note on stderr unless quiet.
fn note(quiet: bool) -> impl FnMut(&str) + Send + Copy {
    move |message: &str| {
        if !quiet {
            eprintln!("ℹ {message}");
        }
    }
}

/// Connects to the engine when the builder or a load needs it. `None` when it is only
/// wanted (the default builder, a default load) and does not answer.
async fn connect_engine(
    input: &InputArgs,
    required_for_load: bool,
    wanted_for_load: bool,
) -> Result<Option<Engine>> {
    if input.builder == Some(Builder::Local) && !wanted_for_load {
        return Ok(None);
    }
    match Engine::connect().await {
        Ok(engine) => Ok(Some(engine)),
        Err(e) if input.builder == Some(Builder::Docker) || required_for_load => Err(e),
        Err(_) => Ok(None),
    }
}

/// Reads `--base` (before any compile, so a bad base fails fast).
async fn load_base(
    reference: &BaseRef,
    engine: Option<&Engine>,
    quiet: bool,
) -> Result<Option<std::sync::Arc<ruchy_image::base::Base>>> {
    let mut note = note(quiet);
    let base = ruchy_image::base::load(reference, engine, &mut note).await?;
    Ok(base.map(std::sync::Arc::new))
}

/// The docker builder when an engine is there (unless --builder local), else host cargo.
async fn compiler(
    engine: Option<&Engine>,
    input: &InputArgs,
    cache_dir: &Path,
    cargo_quiet: bool,
    quiet: bool,
) -> Result<Box<dyn Compiler>> {
    let color = std::io::stderr().is_terminal();
    Ok(match (engine, input.builder) {
        (Some(engine), None | Some(Builder::Docker)) => {
            let mut note = note(quiet);
            let image =
                BuilderImage::resolve(engine, input.builder_image.as_deref(), cache_dir, &mut note)
                    .await?;
            Box::new(DockerCompiler::new(
                engine.clone(),
                image,
                cache_dir.to_path_buf(),
                color,
                cargo_quiet,
            ))
        }
        _ => Box::new(LocalCompiler::new(color, cargo_quiet)),
    })
}

async fn run_build(args: BuildArgs) -> Result<()> {
    let options = args.to_lib()?;
    let budgets = args.budget.to_lib()?;
    let (verbose, quiet) = (args.verbose, args.quiet);

    // The engine is needed to compile in a container and to load a tagged image.
    let wants_load = args.load || (args.tag.is_some() && !args.no_load);
    let engine_base = matches!(args.image.base, BaseRef::Engine(_));
    let engine = connect_engine(&args.input, args.load, wants_load || engine_base).await?;
    let mut options = options;
    options.base = load_base(&args.image.base, engine.as_ref(), quiet).await?;
    if wants_load && engine.is_none() {
        note(quiet)("no Docker engine answers: the image is not loaded (--no-load silences this)");
    }

    let mut publishers: Vec<Box<dyn Publisher>> = Vec::new();
    // The engine first: if it rejects the image, no file output is committed either.
    if let (Some(engine), true) = (&engine, wants_load) {
        publishers.push(Box::new(EnginePublisher {
            engine: engine.clone(),
            mtime: options.source_date_epoch,
        }));
    }
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

    let compiler = compiler(
        engine.as_ref(),
        &args.input,
        &options.source.cache_dir,
        quiet,
        quiet,
    )
    .await?;
    let mut report = move |event: Event<'_>| report(event, verbose, quiet);
    let record = build(&options, compiler.as_ref(), &publishers, &mut report).await?;

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
    let (verbose, quiet) = (args.verbose, args.quiet);
    let bases = match args.bases.is_empty() {
        true => vec![args.image.base.clone()],
        false => args.bases.clone(),
    };
    let engine_base = bases.iter().any(|b| matches!(b, BaseRef::Engine(_)));
    // The engine, when there is one, also times cold starts.
    let wants_engine = engine_base || args.cold_start_runs > 0;
    let engine = connect_engine(&args.input, false, wants_engine).await?;
    // Every base is read before any compile, so a bad one fails fast.
    let mut loaded = Vec::new();
    for base in &bases {
        loaded.push((
            base.to_string(),
            load_base(base, engine.as_ref(), quiet).await?,
        ));
    }
    // cargo's progress lines only with --verbose: one line per preset is the progress here.
    let compiler = compiler(
        engine.as_ref(),
        &args.input,
        &options.source.cache_dir,
        !verbose,
        quiet,
    )
    .await?;
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
    let probe = engine
        .clone()
        .filter(|_| args.cold_start_runs > 0)
        .map(|engine| ColdStartProbe {
            engine,
            runs: args.cold_start_runs,
        });
    let mut comparisons = Vec::new();
    for (name, base) in loaded {
        if args.bases.len() > 1 && !quiet {
            eprintln!("→ on {name}");
        }
        let mut options = options.clone();
        options.base = base;
        comparisons.push((
            name,
            compare(
                &options,
                &presets,
                compiler.as_ref(),
                probe.as_ref(),
                &mut report,
            )
            .await?,
        ));
    }

    let by_base = !args.bases.is_empty();
    let output = if by_base {
        let sizes = BaseComparison {
            bases: &comparisons,
        };
        match args.format {
            Format::Table => sizes.table(),
            Format::Markdown => sizes.markdown(),
            Format::Csv => sizes.csv(),
            Format::Json => sizes.json()?,
        }
    } else {
        let comparison = &comparisons[0].1;
        match args.format {
            Format::Table => comparison.table(),
            Format::Markdown => comparison.markdown(),
            Format::Csv => comparison.csv(),
            Format::Json => comparison.json()?,
        }
    };
    print_stdout("the comparison", output.as_bytes())?;
    if let Some(chart) = &args.chart {
        let svg = ruchy_image::chart::svg(&comparisons[0].1);
        ruchy_image::publish::write_file_atomically("the chart", chart, svg.as_bytes())?;
    }
    // Failed presets and exceeded budgets fail the command after everything is reported.
    for (_, comparison) in &comparisons {
        comparison.verdict(&budgets)?;
    }
    Ok(())
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
        return print_stdout("the metrics", &json);
    }
    ruchy_image::publish::write_file_atomically("the metrics JSON", path, &json)
}

/// Writes a result to stdout, where a closed pipe is an error worth reporting.
fn print_stdout(what: &str, bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(Error::io(format!("writing {what} to stdout")))
}
