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
mod failure;
mod options;
mod remote;
mod render;
mod request;
mod summary;
mod usage;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[cfg(feature = "serve")]
pub use args::ServeArgs;
pub use args::{
    BuildArgs, BuilderCommand, CompareArgs, DockerfileArgs, DoctorArgs, Format, ImageCommand,
    ImportHostArgs, LambdaArgs, PruneArgs, PullArgs, RunArgs, EXIT_CODES,
};
use failure::Failure;
pub use options::Builder;
use render::{Journal, Mode, Terminal};
pub use usage::parse;

use crate::adapters::engine::Engine;
use crate::core::error::Error;
use crate::core::metrics::{BuildRecord, Built};
use crate::pipeline::plan::Plan;
use crate::pipeline::report;

/// Runs one command as the `ruchy-image` binary would: progress and errors on stderr, results
/// on stdout, and the exit code (0 success, 1 failed, 2 invalid input, or a container's own
/// code for `run`). SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the command and clean up after
/// it; the exit code is then 128 + the signal's number.
pub async fn run(command: ImageCommand) -> ExitCode {
    // The service handles its own signals: it drains instead of stopping at once.
    #[cfg(feature = "serve")]
    if let ImageCommand::Serve(args) = command {
        return match serve(*args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", options::with_flag_names(error));
                ExitCode::from(2)
            }
        };
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
        ImageCommand::Build(args) => build(*args, journal).await,
        ImageCommand::Compare(args) => compare(*args, journal).await,
        ImageCommand::Run(args) => run_image(args).await,
        ImageCommand::Builder(BuilderCommand::ImportHost(args)) => import_host(args, journal).await,
        ImageCommand::Builder(BuilderCommand::Prune(args)) => prune(args).await,
        ImageCommand::Builder(BuilderCommand::Pull(args)) => builder_pull(args, journal).await,
        ImageCommand::Lambda(args) => lambda(*args, journal).await,
        ImageCommand::Doctor(args) => doctor(args).await,
        ImageCommand::Dockerfile(args) => {
            let text = crate::commands::dockerfile::render(&args.to_lib()?)?;
            Ok(print_stdout("the Dockerfile", text.as_bytes())?)
        }
        #[cfg(feature = "serve")]
        ImageCommand::Serve(_) => unreachable!("run() serves before dispatching"),
    }
}

/// `ruchy-image serve`: runs until SIGINT or SIGTERM, then drains.
#[cfg(feature = "serve")]
async fn serve(args: args::ServeArgs) -> Result<(), Error> {
    let token = match &args.token_file {
        Some(file) => {
            let token = std::fs::read_to_string(file).map_err(Error::io(format!(
                "reading the token file {}",
                file.display()
            )))?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(Error::InvalidInput {
                    what: "token file",
                    value: file.display().to_string(),
                    reason: "it is empty; put a long random token in it".into(),
                });
            }
            Some(token)
        }
        None => None,
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        dirs::data_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("ruchy-image")
    });
    let artifacts = args
        .artifacts
        .as_deref()
        .map(|repository| {
            let registry = crate::pipeline::publish::RegistryOptions {
                credentials: None,
                insecure: args.insecure_registry.clone(),
                ca_files: args.registry_ca.clone(),
            };
            crate::shells::serve::artifacts::Artifacts::new(repository, registry)
        })
        .transpose()?;
    let options = crate::shells::serve::ServeOptions {
        data_dir,
        listen: args.listen,
        token,
        insecure_no_auth: args.insecure_no_auth,
        workers: args.workers as usize,
        timeout: args.timeout,
        queue_ttl: args.queue_ttl,
        max_upload: args.max_upload,
        max_uploads: args.max_uploads as usize,
        read_timeout: args.read_timeout,
        shutdown_timeout: args.shutdown_timeout,
        builder_image: args.builder_image.clone(),
        database: args.database.clone(),
        worker_name: args.worker_name.clone(),
        advertise_url: args.advertise_url.clone(),
        heartbeat_timeout: args.heartbeat_timeout,
        artifacts,
        keep_artifacts: args.keep_artifacts,
    };
    let events = crate::core::event::Events::new(|event| match event {
        crate::core::event::Event::Note { message }
        | crate::core::event::Event::Step { message } => {
            eprintln!("ℹ {message}")
        }
        crate::core::event::Event::Warning { message } => eprintln!("warning: {message}"),
        _ => {}
    });
    let data = options.data_dir.display().to_string();
    crate::shells::serve::serve(
        options,
        events,
        |address| {
            // On stdout, one line, for scripts and tests that started us with port 0.
            println!("ruchy-image serve: listening on http://{address} (data in {data})");
            let _ = std::io::stdout().flush();
        },
        async {
            stop_signal().await;
        },
    )
    .await
}

/// `ruchy-image build`: the summary (or JSON), then the budgets' verdict. A build that fails
/// (not bad input, which writes nothing) still gets its `--json` record, with the error.
async fn build(args: BuildArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let result = build_and_report(&args, journal).await;
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

async fn build_and_report(args: &BuildArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let mut request = args.to_lib()?;
    let budgets = args.budget.to_lib()?;
    request.budgets = budgets.clone();
    if let Some(json) = args.json.as_deref().filter(|j| *j != Path::new("-")) {
        // Checked now so a long compile does not end in an unwritable path.
        crate::adapters::fsutil::check_writable("the metrics JSON", json)?;
        let outputs = [&request.outputs.oci_layout, &request.outputs.archive];
        let taken: Vec<_> = outputs.into_iter().flatten().cloned().collect();
        request.check_output("metrics JSON", json, &taken)?;
    }
    request.compiler_output.color = Terminal::color();
    request.compiler_output.quiet = args.quiet;
    let (terminal, events) = Terminal::new(journal, Mode::Build, args.verbose, args.quiet);
    let result = async {
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
    .await;
    terminal.lock().expect("terminal").finish();
    // Over budget, nothing was published; the record is still reported, then the verdict.
    report(args, result?, &budgets)
}

fn report(
    args: &BuildArgs,
    built: Built,
    budgets: &crate::core::budget::Budgets,
) -> Result<(), Failure> {
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
    budgets: &crate::core::budget::Budgets,
) -> Result<(), Failure> {
    if let Some(path) = &args.json {
        write_json(path, record)?;
    }
    if !args.quiet {
        let summary = summary::index(record);
        match args.json.as_deref() == Some(Path::new("-")) {
            true => eprint!("{summary}"),
            false => print!("{summary}"),
        }
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

/// `ruchy-image lambda`: the zip (and image), then what it made and how to deploy it.
async fn lambda(args: LambdaArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
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

/// The end of a build, local or remote: the JSON, the summary, then the budgets' verdict.
fn report_build(
    args: &BuildArgs,
    record: &BuildRecord,
    budgets: &crate::core::budget::Budgets,
) -> Result<(), Failure> {
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if let Some(path) = &args.json {
        write_json(path, record)?;
    }
    if !args.quiet {
        let summary = summary::build(record);
        if json_to_stdout {
            eprint!("{summary}");
        } else {
            print!("{summary}");
        }
    }
    // Checked last: CI logs then show the summary and the metrics that broke the budget.
    let exceeded = budgets.check(record);
    if !exceeded.is_empty() {
        return Err(Failure::OverBudget(exceeded));
    }
    Ok(())
}

/// `ruchy-image compare`: the comparison on stdout, then the verdict.
async fn compare(args: CompareArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let mut request = args.to_lib()?;
    let budgets = args.budget.to_lib()?;
    request.budgets = budgets.clone();
    if let Some(chart) = &args.chart {
        crate::adapters::fsutil::check_writable("the chart", chart)?;
        request.check_output("chart", chart, &[])?;
    }
    request.compiler_output.color = Terminal::color();
    // cargo's progress lines only with --verbose: one line per preset is the progress here.
    request.compiler_output.quiet = !args.verbose;
    let (terminal, events) = Terminal::new(journal, Mode::Compare, args.verbose, args.quiet);
    let result = async {
        match &args.service.server {
            Some(server) => remote::compare(request, &args.service, server, args.quiet, &events)
                .await
                .map(|comparison| vec![(String::new(), comparison)]),
            None => {
                Plan::resolve(request, &events)
                    .await?
                    .compare(&events)
                    .await
            }
        }
    }
    .await;
    terminal.lock().expect("terminal").finish();
    let comparisons = result?;

    let format = match args.format {
        Format::Table => report::Format::Table,
        Format::Markdown => report::Format::Markdown,
        Format::Csv => report::Format::Csv,
        Format::Json => report::Format::Json,
    };
    let output = match (args.bases.is_empty(), args.options.flags.platform.len() > 1) {
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

/// `ruchy-image run`: exits with the container's exit code.
async fn run_image(args: RunArgs) -> Result<(), Failure> {
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
        let memory = report
            .peak_memory_bytes
            .map(crate::core::metrics::human_size)
            .unwrap_or_else(|| {
                "not reported by the engine (the container exited before its first stats sample)"
                    .into()
            });
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
        }
        .into());
    }
    Ok(())
}

/// `ruchy-image doctor`: one line per check, exit 1 when the default build cannot run.
async fn doctor(args: DoctorArgs) -> Result<(), Failure> {
    let options = crate::commands::doctor::Options {
        builder_image: args.builder_image,
        ruchy: args.ruchy,
        cache_dir: args
            .cache_dir
            .unwrap_or_else(crate::pipeline::build::default_cache_dir),
        artifacts: args.artifacts,
        registry: crate::pipeline::publish::RegistryOptions {
            credentials: None,
            insecure: args.insecure_registry,
            ca_files: args.registry_ca,
        },
    };
    let report = crate::commands::doctor::diagnose(&options).await;
    match args.json {
        true => print_stdout("the checks", &to_json("the checks", &report)?)?,
        false => print_stdout("the checks", summary::doctor(&report).as_bytes())?,
    }
    match report.ready {
        true => Ok(()),
        false => Err(Failure::NotReady(
            report
                .checks
                .iter()
                .filter(|c| c.required && !c.ok)
                .map(|c| c.name)
                .collect(),
        )),
    }
}

/// `ruchy-image builder prune`: the cache volumes, removed unless --dry-run.
async fn prune(args: PruneArgs) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let volumes =
        crate::adapters::cache_volumes::prune(&engine, &args.prefix, !args.dry_run).await?;
    if args.json {
        return Ok(print_stdout(
            "the cache volumes",
            &to_json("the cache volumes", &volumes)?,
        )?);
    }
    if volumes.is_empty() {
        println!("no cache volumes");
        return Ok(());
    }
    let size = |v: &crate::adapters::cache_volumes::CacheVolume| {
        v.size.map(crate::core::metrics::human_size)
    };
    for v in &volumes {
        let what = if v.removed {
            "removed".to_string()
        } else if !v.used_by.is_empty() {
            format!("kept: in use by {}", v.used_by.join(", "))
        } else if let Some(error) = &v.error {
            format!("kept: {error}")
        } else {
            "kept (--dry-run)".to_string()
        };
        println!(
            "{:<40} {:>10}  {:<40} {what}",
            v.name,
            size(v).unwrap_or_else(|| "?".into()),
            v.owner
        );
    }
    let total = |removed: bool| -> u64 {
        volumes
            .iter()
            .filter(|v| v.removed == removed)
            .filter_map(|v| v.size)
            .sum()
    };
    if args.dry_run {
        println!(
            "{} in {} volume(s)",
            crate::core::metrics::human_size(total(false)),
            volumes.len()
        );
    } else {
        println!("freed {}", crate::core::metrics::human_size(total(true)));
    }
    Ok(())
}

/// `ruchy-image builder pull`: the image pulled and what its toolchain is.
async fn builder_pull(args: PullArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let cache_dir = crate::pipeline::build::default_cache_dir();
    let (terminal, events) = Terminal::new(journal, Mode::Build, false, false);
    let pulled =
        crate::commands::builder_images::pull(&engine, args.image.as_deref(), &cache_dir, &events)
            .await;
    terminal.lock().expect("terminal").finish();
    let image = pulled?;
    println!(
        "✓ Pulled {} ({}, target {})",
        image.reference,
        image.toolchain.version(),
        image.target
    );
    Ok(())
}

async fn import_host(args: ImportHostArgs, journal: &Arc<Mutex<Journal>>) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let tag = args
        .tag
        .as_deref()
        .map(str::parse::<crate::pipeline::oci::ImageRef>)
        .transpose()?;
    let scratch = args
        .cache_dir
        .unwrap_or_else(crate::pipeline::build::default_cache_dir);
    let (terminal, events) = Terminal::new(journal, Mode::Build, false, false);
    let imported = crate::commands::builder_images::import_host(
        &engine,
        tag.as_ref().map(|t| t.full.as_str()),
        args.rustc.as_deref(),
        &scratch,
        &events,
    )
    .await;
    terminal.lock().expect("terminal").finish();
    let imported = imported?;
    if args.json {
        print_stdout(
            "the import result",
            &to_json("the import result", &imported)?,
        )?;
    } else {
        let mut targets = match &imported.musl {
            Some(musl) => format!(
                "targets {musl} (default for static binaries) and {}",
                imported.target
            ),
            None => format!("target {}", imported.target),
        };
        for cross in &imported.cross_musl {
            targets.push_str(&format!(", cross {cross}"));
        }
        if imported.reused {
            println!(
                "✓ {} is up to date ({}, {targets})",
                imported.tag, imported.rustc
            );
        } else {
            println!(
                "✓ Imported {} ({}, {} MB, {targets})",
                imported.tag,
                imported.rustc,
                imported.size / 1_000_000,
            );
        }
    }
    Ok(())
}

/// Pretty JSON with a final newline.
fn to_json(what: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    let mut json =
        serde_json::to_vec_pretty(value).map_err(|source| Error::Json { what, source })?;
    json.push(b'\n');
    Ok(json)
}

fn write_json(path: &Path, record: &impl serde::Serialize) -> Result<(), Error> {
    let json = to_json("the build metrics", record)?;
    if path == Path::new("-") {
        return print_stdout("the metrics", &json);
    }
    crate::adapters::fsutil::write_file_atomically("the metrics JSON", path, &json)
}

/// Writes a result to stdout, where a closed pipe is an error worth reporting.
fn print_stdout(what: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(Error::io(format!("writing {what} to stdout")))
}
