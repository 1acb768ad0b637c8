//! What the terminal shows: progress from the library's events (a spinner on a terminal,
//! plain lines otherwise), the build summary, and errors with a hint that names our flags.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;

use crate::budget::{Exceeded, Limit};
use crate::compare::Verdict;
use crate::error::Error;
use crate::event::{Event, Events, Stage};
use crate::metrics::{human_ms, human_size, BuildRecord};
use crate::preset::{StdSource, StdVariant};

/// Which command's progress is shown: a build shows each step; a comparison one line per
/// preset, and each build's steps only with `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Build,
    Compare,
}

/// What a command has made visible so far, so that an interruption says the truth.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    written: Vec<String>,
    writing: Option<String>,
}

impl Journal {
    /// The line printed when a signal stops the command.
    pub(crate) fn interrupted(&self) -> String {
        let mut line = match self.written.as_slice() {
            [] => "interrupted: nothing was written".to_string(),
            written => format!("interrupted after writing {}", written.join(", ")),
        };
        if let Some(output) = &self.writing {
            line += &format!("; {output} was being written and may or may not be there now");
        }
        line
    }
}

/// Renders events on stderr.
pub(crate) struct Terminal {
    journal: Arc<Mutex<Journal>>,
    mode: Mode,
    verbose: bool,
    quiet: bool,
    tty: bool,
    spinner: Option<ProgressBar>,
}

impl Terminal {
    /// A renderer, and the events that feed it.
    pub(crate) fn new(
        journal: &Arc<Mutex<Journal>>,
        mode: Mode,
        verbose: bool,
        quiet: bool,
    ) -> (Arc<Mutex<Terminal>>, Events) {
        let terminal = Arc::new(Mutex::new(Terminal {
            journal: journal.clone(),
            mode,
            verbose,
            quiet,
            tty: std::io::stderr().is_terminal(),
            spinner: None,
        }));
        let sink = terminal.clone();
        let events = Events::new(move |event| {
            if let Ok(mut terminal) = sink.lock() {
                terminal.show(event);
            }
        });
        (terminal, events)
    }

    /// Whether cargo's diagnostics can be coloured.
    pub(crate) fn color() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Clears the spinner, if one is drawn.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
    }

    /// Whether one build's steps are shown.
    fn shows_steps(&self) -> bool {
        match self.mode {
            Mode::Build => !self.quiet,
            Mode::Compare => self.verbose,
        }
    }

    /// Prints a line above the spinner, or plainly.
    fn line(&self, text: &str) {
        match &self.spinner {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn show(&mut self, event: Event) {
        match event {
            Event::StageStarted {
                stage: Stage::Compile,
            } if self.tty && self.shows_steps() => {
                let bar = ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar.set_message("compiling");
                self.spinner = Some(bar);
            }
            Event::StageFinished {
                stage: Stage::Compile,
                ..
            } => self.finish(),
            Event::StageStarted { .. } | Event::StageFinished { .. } => {}
            // A big blob's upload: a bar of its bytes on a terminal (the step line above
            // names it); nothing more in a log.
            Event::Upload { sent, total, .. } if self.tty && !self.quiet => {
                if sent == 0 || self.spinner.is_none() {
                    self.finish();
                    let bar = ProgressBar::new(total);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "  {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .expect("a valid template"),
                    );
                    self.spinner = Some(bar);
                }
                if let Some(bar) = &self.spinner {
                    bar.set_position(sent);
                }
                if sent == total {
                    self.finish();
                }
            }
            Event::Upload { .. } => {}
            Event::Writing { output } => {
                if self.verbose && self.shows_steps() {
                    self.line(&format!("→ Writing {output}..."));
                }
                self.journal.lock().expect("journal").writing = Some(output);
            }
            Event::Written { output } => {
                let mut journal = self.journal.lock().expect("journal");
                journal.writing = None;
                journal.written.push(output);
            }
            // The compiler's diagnostics are always shown; its status lines go into the
            // spinner when there is one.
            Event::CompilerOutput { line } => match &self.spinner {
                Some(bar) if is_status_line(&line) => {
                    bar.set_message(strip_ansi(&line).trim().to_string())
                }
                _ => self.line(&line),
            },
            Event::PresetFailed { preset, error } => self.line(&format!("✗ {preset}: {error}")),
            _ if self.quiet => {}
            Event::Note { message } => self.line(&format!("ℹ {message}")),
            Event::Warning { message } => self.line(&format!("⚠ {message}")),
            Event::Pull { image, status } => self.line(&format!("ℹ {image}: {status}")),
            Event::Step { message } => self.line(&format!("→ {message}...")),
            Event::BaseStarted { base } => self.line(&format!("→ on {base}")),
            Event::PlatformStarted { platform } => self.line(&format!("→ for {platform}")),
            Event::PresetStarted {
                index,
                total,
                preset,
            } => self.line(&format!("→ [{index}/{total}] {preset}...")),
            _ if !self.shows_steps() => {}
            Event::Compiling {
                source,
                bin,
                flags,
                builder,
            } => {
                let name = source
                    .file_name()
                    .unwrap_or(source.as_os_str())
                    .to_string_lossy()
                    .into_owned();
                // `--verbose` uses the `ruchy compile --verbose` format.
                if !self.verbose {
                    let preset = flags.preset;
                    return self.line(&format!(
                        "→ Compiling {name} ({preset} preset, {builder} builder)..."
                    ));
                }
                let mut text = format!("→ Compiling {name}...\n");
                let _ = writeln!(text, "ℹ Optimization level: {}", flags.preset);
                let _ = writeln!(text, "ℹ LTO: {}", flags.metrics().lto);
                if let Some(cpu) = &flags.target_cpu {
                    let _ = writeln!(text, "ℹ target-cpu: {cpu}");
                }
                let _ = writeln!(
                    text,
                    "ℹ Binary: {bin} for {} ({builder} builder)",
                    flags.target
                );
                text.push_str("ℹ Optimization flags:");
                for flag in flags.listing() {
                    let _ = write!(text, "\n  {flag}");
                }
                self.line(&text);
            }
            Event::Compiled {
                binary,
                size,
                time_ms,
                fresh,
            } if self.verbose => {
                let note = if fresh { " (up to date)" } else { "" };
                self.line(&format!(
                    "✓ Successfully compiled to: {}\nℹ Binary size: {size} bytes\nℹ Compile time: {time_ms} ms{note}",
                    binary.display()
                ));
            }
            Event::Assembling { reference } => {
                self.line(&format!("→ Assembling image {reference}..."))
            }
            Event::Compiled { .. } => {}
        }
    }
}

/// Whether a cargo stderr line is a status line (`   Compiling foo v1.0`), shown in the
/// spinner rather than printed.
fn is_status_line(line: &str) -> bool {
    let line = strip_ansi(line);
    let bytes = line.as_bytes();
    bytes.len() > 13
        && bytes[12] == b' '
        && line[..12]
            .trim_start()
            .chars()
            .all(|c| c.is_ascii_alphabetic())
        && !line[..12].trim_start().is_empty()
}

/// The text of a line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The compile's part of the time line: its time and backend, or that there was none.
fn compile_time(ms: u64, builder: &str) -> String {
    match builder {
        "prebuilt" => "no compile (prebuilt)".into(),
        _ => format!("compile {} ({builder})", human_ms(ms)),
    }
}

/// What `ruchy-image lambda` made, and the command that deploys it.
pub(crate) fn lambda_summary(record: &crate::metrics::LambdaRecord) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "✓ Packaged {} for AWS Lambda ({} preset)",
        record.zip, record.optimization_level
    );
    let _ = writeln!(
        s,
        "  zip       {} ({} bytes), compressed from {} ({} bytes)",
        human_size(record.zip_size),
        record.zip_size,
        human_size(record.binary_size),
        record.binary_size
    );
    let runtime = match record.runtime.as_str() {
        "template" => "handle_request in ruchy-image's Runtime API loop",
        _ => "the program's own Runtime API client",
    };
    let _ = writeln!(
        s,
        "  bootstrap {}, {}, {}; {runtime}",
        record.linkage, record.libc, record.architecture
    );
    let compile = compile_time(record.compile_time_ms, &record.builder);
    let _ = writeln!(s, "  time      {compile}");
    if let Some(image) = &record.image {
        let _ = writeln!(
            s,
            "  image     {} ({} stored, entrypoint {})",
            image.reference,
            human_size(image.compressed_size),
            image.entrypoint.join(" ")
        );
        for out in &record.outputs {
            let _ = writeln!(s, "  output    {:<10} {}", out.kind, out.location);
        }
    }
    let _ = writeln!(
        s,
        "  deploy    aws lambda create-function --function-name NAME --runtime provided.al2023 --handler bootstrap --architectures {} --zip-file fileb://{} --role ROLE_ARN",
        record.architecture, record.zip
    );
    s
}

/// The one-screen summary printed at the end of a build.
pub(crate) fn summary(record: &BuildRecord) -> String {
    let i = &record.image;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "✓ Built {} ({} preset)",
        i.reference, record.optimization_level
    );
    let std = match record.std.map(|std| (std.source, std.variant)) {
        None | Some((StdSource::Toolchain, StdVariant::Unwind)) => "",
        Some((StdSource::Rebuilt, StdVariant::Unwind)) => ", std rebuilt from source",
        Some((_, StdVariant::ImmediateAbort)) => ", std for panic=immediate-abort",
    };
    let _ = writeln!(
        s,
        "  binary    {} ({} bytes, {}, {}{std}, {})",
        human_size(record.binary_size),
        record.binary_size,
        record.linkage,
        match record.libc.as_str() {
            "unknown" => "libc unknown",
            libc => libc,
        },
        i.architecture
    );
    let _ = writeln!(
        s,
        "  image     {} stored, {} unpacked, {} layers",
        human_size(i.compressed_size),
        human_size(i.uncompressed_size),
        i.layer_count
    );
    let _ = writeln!(
        s,
        "            {} binary layer + {} overhead",
        human_size(i.binary_layer_size),
        human_size(i.overhead_size)
    );
    if let Some(base) = &i.base {
        let _ = writeln!(
            s,
            "  base      {} ({} in {} layers, {} added)",
            base.reference,
            human_size(base.size),
            base.layer_count,
            human_size(i.added_size)
        );
    }
    if let Some(embedded) = &record.dependencies_from {
        let _ = writeln!(
            s,
            "  deps      {} (from the file's {})",
            match embedded.dependencies.as_slice() {
                [] => "none".to_string(),
                names => names.join(", "),
            },
            embedded.form.describe()
        );
    }
    let _ = writeln!(s, "  digest    {}", i.digest);
    let _ = writeln!(s, "  runs as   {} -> {}", i.user, i.entrypoint.join(" "));
    let compile = compile_time(record.compile_time_ms, &record.builder);
    let _ = writeln!(
        s,
        "  time      {compile}, assemble {}",
        human_ms(record.assemble_time_ms)
    );
    for out in &record.outputs {
        let _ = writeln!(s, "{}", output_line(out, record.sbom.as_ref()));
        if let Some(push) = &out.push {
            let _ = writeln!(s, "            {}", pushed(push));
        }
        if let Some(engine) = &out.engine {
            let _ = writeln!(
                s,
                "            engine {} sees {} unpacked, {} layers, user {}",
                engine.engine_version,
                human_size(engine.size),
                engine.layer_count,
                engine.user
            );
        }
    }
    if record.outputs.is_empty() {
        let _ = writeln!(
            s,
            "  output    none (add --oci-layout DIR or --output FILE.tar to keep the image)"
        );
    }
    s
}

/// An output's line; an SBOM attached as a referrer says so, with what it lists.
fn output_line(out: &crate::metrics::Published, sbom: Option<&crate::sbom::SbomRecord>) -> String {
    if out.kind != "referrer" {
        return format!("  output    {:<10} {}", out.kind, out.location);
    }
    let listing = sbom.map_or(String::new(), |s| format!(", {} crates", s.components));
    format!(
        "  sbom      attached as OCI referrer {} (CycloneDX{listing})",
        out.location
    )
}

/// What a push sent and what the registry already had, e.g. `pushed 3 blobs (181 KB), 0
/// skipped` or `0 pushed, 3 skipped (already there)`.
fn pushed(push: &crate::metrics::PushStats) -> String {
    let (n, skipped) = (push.uploaded_blobs, push.skipped_blobs);
    let sent = match n {
        0 => "0 pushed".to_string(),
        1 => format!("pushed 1 blob ({})", human_size(push.uploaded_bytes)),
        n => format!("pushed {n} blobs ({})", human_size(push.uploaded_bytes)),
    };
    let there = if n == 0 && skipped > 0 {
        " (already there)"
    } else {
        ""
    };
    let mounted = match push.mounted_blobs {
        0 => String::new(),
        m => format!(", {m} mounted from another repository"),
    };
    format!("{sent}, {skipped} skipped{there}{mounted}")
}

/// A multi-platform build: each platform's summary (without outputs), then the index and
/// where it went.
pub(crate) fn index_summary(record: &crate::metrics::IndexRecord) -> String {
    let mut s = String::new();
    for platform in &record.platforms {
        let mut one = platform.clone();
        one.outputs.clear();
        let text = summary(&one);
        // The "output none" hint belongs to the index below.
        let text = text
            .lines()
            .filter(|l| !l.starts_with("  output    none"))
            .collect::<Vec<_>>()
            .join("\n");
        let _ = writeln!(s, "{text}");
    }
    let platforms: Vec<String> = record
        .platforms
        .iter()
        .map(|r| format!("linux/{}", r.image.architecture))
        .collect();
    let _ = writeln!(
        s,
        "✓ Image index {} over {}",
        record.reference,
        platforms.join(", ")
    );
    let _ = writeln!(s, "  digest    {}", record.digest);
    for out in &record.outputs {
        let loaded = &record.loaded_platform;
        let note = match out.kind.as_str() {
            "engine" => format!(" ({loaded} only)"),
            "archive" => format!(" (docker load takes {loaded})"),
            _ => String::new(),
        };
        let _ = writeln!(s, "{}{note}", output_line(out, None));
        if let Some(push) = &out.push {
            let _ = writeln!(s, "            {}", pushed(push));
        }
    }
    if record.outputs.is_empty() {
        let _ = writeln!(
            s,
            "  output    none (add --oci-layout DIR or --push REF to keep the index)"
        );
    }
    s
}

/// A budget overrun, naming the flag that set the budget.
pub(crate) fn exceeded(e: &Exceeded) -> String {
    let (what, how, flag) = match e.budget.limit {
        Limit::Binary => ("binary", "", "--max-binary-size"),
        Limit::Image => ("image", " stored", "--max-image-size"),
    };
    format!(
        "{}: {what} is {} bytes{how}, over the budget of {} bytes ({flag} {})",
        e.preset, e.size, e.budget.bytes, e.budget.spelled
    )
}

/// Why a command failed: the library's error, or a verdict the CLI turns into exit 1.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library failed.
    Error(Error),
    /// A build went over a size budget; its summary was already printed.
    OverBudget(Vec<Exceeded>),
    /// Presets of a comparison failed or went over a budget; the table was already printed.
    Comparison(Verdict),
    /// `doctor` found what the default build needs missing (these checks); its report was
    /// already printed.
    NotReady(Vec<&'static str>),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Error(error)
    }
}

impl Failure {
    /// The exit code: the library's, or 1 for a verdict.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Error(error) => error.exit_code(),
            Failure::OverBudget(_) | Failure::Comparison(_) | Failure::NotReady(_) => 1,
        }
    }

    /// The message for stderr, with a hint when there is one.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Error(error) => {
                let mut message = error.to_string();
                if let Some(hint) = hint(error) {
                    message.push_str(&format!("\n  hint: {hint}"));
                }
                if doctor_knows(error) {
                    message.push_str(&format!("\n  {DOCTOR}"));
                }
                message
            }
            Failure::OverBudget(overruns) => {
                problems("size budgets exceeded", overruns.iter().map(exceeded))
            }
            Failure::NotReady(missing) => format!(
                "the default build cannot run here: {} missing (the fixes are above)",
                missing.join(", ")
            ),
            Failure::Comparison(verdict) => problems(
                "the comparison failed",
                verdict
                    .failed
                    .iter()
                    .map(|(preset, error)| {
                        format!("{preset}: {}", error.lines().next().unwrap_or_default())
                    })
                    .chain(verdict.exceeded.iter().map(exceeded)),
            ),
        }
    }
}

/// One problem on its own line; several under a header, one per indented line.
fn problems(header: &str, lines: impl Iterator<Item = String>) -> String {
    let lines: Vec<String> = lines.collect();
    match lines.as_slice() {
        [one] => one.clone(),
        _ => format!("{header}:\n  {}", lines.join("\n  ")),
    }
}

/// `doctor`'s report: a line per check, ✓ or ✗, and the fix under each ✗.
pub(crate) fn doctor(report: &crate::doctor::Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in &report.checks {
        let mark = if check.ok { '✓' } else { '✗' };
        let optional = match (check.ok, check.required) {
            (false, false) => "(optional) ",
            _ => "",
        };
        out.push_str(&format!(
            "{mark} {:<width$}  {optional}{}\n",
            check.name, check.detail
        ));
        if let Some(fix) = check.fix.as_ref().filter(|_| !check.ok) {
            out.push_str(&format!("  {:<width$}  fix: {fix}\n", ""));
        }
    }
    if report.ready {
        out.push_str("ready: the default build (a builder container, a static musl binary, loaded into the engine) can run here\n");
    }
    out
}

/// Said after an error whose cause is this machine's setup, which `doctor` checks.
const DOCTOR: &str = "then: `ruchy-image doctor` checks everything else builds need here";

fn doctor_knows(error: &Error) -> bool {
    match error {
        Error::CleanupFailed { error, .. } => doctor_knows(error),
        Error::RuchyNotFound { .. }
        | Error::EngineUnavailable { .. }
        | Error::BuilderImageUnavailable { .. }
        | Error::BuilderNotRust { .. }
        | Error::TargetUnsupported { .. }
        | Error::StdMismatch { .. }
        | Error::StdBuildFailed { .. } => true,
        _ => false,
    }
}

/// What to do about an error, in terms of this command line's flags.
fn hint(error: &Error) -> Option<String> {
    Some(match error {
        Error::RuchyNotFound { .. } => {
            "install it with `cargo install ruchy --locked`, or point to it with --ruchy PATH".into()
        }
        Error::BinAmbiguous { .. } => "choose one with --bin NAME".into(),
        Error::BinNotFound {
            requested: None,
            available,
        } if !available.is_empty() => "choose one with --bin NAME".into(),
        Error::DynamicBinary { prebuilt: false, .. } => {
            "keep static linking on (the default; drop --no-static-link), or build for a musl target".into()
        }
        Error::DynamicBinary { prebuilt: true, .. } => {
            "link it statically where it is built (Rust: a musl target, or RUSTFLAGS=\"-C target-feature=+crt-static\"), or lay it on a base that has its loader and libraries with --base".into()
        }
        Error::MissingLoader { interpreter, prebuilt: false, .. } => format!(
            "build statically (the default; drop --no-static-link), or use a base that provides {interpreter}"
        ),
        Error::MissingLoader { interpreter, prebuilt: true, .. } => format!(
            "use a base that provides {interpreter} and the libraries `ldd` lists for the binary, or link it statically where it is built"
        ),
        Error::RootUser => {
            "drop --user to use the non-root default (nonroot, 65532), or pass --allow-root if you really need root".into()
        }
        Error::EngineUnavailable { .. } => {
            "start one (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at one;\n        without an engine, build with --builder local and write --oci-layout DIR or --output FILE.tar".into()
        }
        Error::BuilderNotRust { .. } => {
            "pass a Rust image with --builder-image (rust:1-alpine), or make one from this machine's toolchain with `ruchy-image builder import-host`".into()
        }
        Error::Registry { message, .. } if message.contains("TLS certificate") => {
            "pass the CA that signed it with --registry-ca FILE (or --insecure-registry HOST for plain HTTP)".into()
        }
        Error::Registry { message, .. } if message.contains("authentication failed") => {
            "check --registry-user and the password on stdin (--registry-password-stdin), or `docker login`".into()
        }
        Error::BuilderImageUnavailable { .. } => {
            "offline? `ruchy-image builder import-host` makes a builder image from this machine's toolchain; then pass --builder-image with the tag it prints".into()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use crate::preset::Preset;

    #[test]
    fn cargo_status_lines_are_recognised_with_and_without_colour() {
        assert!(is_status_line("   Compiling serde v1.0.0"));
        assert!(is_status_line("    Finished `release` profile"));
        assert!(is_status_line("  Downloaded quote v1.0.47"));
        assert!(is_status_line(
            "\x1b[1m\x1b[32m   Compiling\x1b[0m serde v1.0.0"
        ));
        assert!(!is_status_line("error[E0308]: mismatched types"));
        assert!(!is_status_line("  --> src/main.rs:2:18"));
        assert_eq!(strip_ansi("\x1b[1m\x1b[32mok\x1b[0m"), "ok");
    }

    #[test]
    fn an_interruption_says_what_was_written() {
        let journal = Arc::new(Mutex::new(Journal::default()));
        let (_terminal, events) = Terminal::new(&journal, Mode::Build, false, true);
        let line = || journal.lock().unwrap().interrupted();
        assert_eq!(line(), "interrupted: nothing was written");
        events.emit(Event::Writing {
            output: "archive out.tar".into(),
        });
        events.emit(Event::Written {
            output: "archive out.tar".into(),
        });
        events.emit(Event::Writing {
            output: "engine fib:1".into(),
        });
        assert_eq!(
            line(),
            "interrupted after writing archive out.tar; engine fib:1 was being written and may or may not be there now"
        );
    }

    #[test]
    fn overruns_name_preset_size_and_flag() {
        let binary = Exceeded {
            preset: Preset::Aggressive,
            size: 1_142_432,
            budget: Budget::parse(Limit::Binary, "400KB").unwrap(),
        };
        assert_eq!(
            exceeded(&binary),
            "aggressive: binary is 1142432 bytes, over the budget of 400000 bytes (--max-binary-size 400KB)"
        );
        let image = Exceeded {
            preset: Preset::None,
            size: 4_000_001,
            budget: Budget::parse(Limit::Image, "4MB").unwrap(),
        };
        assert_eq!(
            exceeded(&image),
            "none: image is 4000001 bytes stored, over the budget of 4000000 bytes (--max-image-size 4MB)"
        );
        let both = Failure::OverBudget(vec![binary, image]).message();
        assert!(
            both.starts_with("size budgets exceeded:\n  aggressive: binary"),
            "{both}"
        );
    }

    #[test]
    fn a_push_says_what_it_sent_and_what_the_registry_had() {
        let first = crate::metrics::PushStats {
            uploaded_blobs: 3,
            uploaded_bytes: 185_548,
            ..Default::default()
        };
        assert_eq!(pushed(&first), "pushed 3 blobs (181.2 KiB), 0 skipped");
        let again = crate::metrics::PushStats {
            skipped_blobs: 3,
            skipped_bytes: 185_548,
            ..Default::default()
        };
        assert_eq!(pushed(&again), "0 pushed, 3 skipped (already there)");
        let mounted = crate::metrics::PushStats {
            uploaded_blobs: 1,
            uploaded_bytes: 900,
            mounted_blobs: 2,
            ..Default::default()
        };
        assert_eq!(
            pushed(&mounted),
            "pushed 1 blob (900 B), 0 skipped, 2 mounted from another repository"
        );
    }

    #[test]
    fn hints_name_flags_and_library_messages_do_not() {
        let error = Error::BinAmbiguous {
            available: vec!["a".into(), "b".into()],
        };
        assert!(!error.to_string().contains("--"), "{error}");
        assert_eq!(
            Failure::Error(error).message(),
            "the project has several binaries (a, b)\n  hint: choose one with --bin NAME"
        );
    }
}
