//! What the terminal shows while a command runs: progress from the library's events (a
//! spinner on a terminal, plain lines otherwise). The summaries at the end are in
//! `summary.rs`, errors and their hints in `failure.rs`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;

use crate::core::event::{Event, Events, Stage};
use crate::core::preset::Flags;

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
    /// Inside a compiler warning that `--quiet` holds back (until the blank line after it).
    in_warning: bool,
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
            in_warning: false,
        }));
        let sink = terminal.clone();
        let events = Events::new(move |event| {
            if let Ok(mut terminal) = sink.lock() {
                terminal.show(event);
            }
        });
        (terminal, events)
    }

    /// Runs `work` with events this terminal renders, then clears what it drew: the one
    /// set-up and tear-down of every command that shows progress.
    pub(crate) async fn around<T, F>(
        journal: &Arc<Mutex<Journal>>,
        mode: Mode,
        verbose: bool,
        quiet: bool,
        work: impl FnOnce(Events) -> F,
    ) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let (terminal, events) = Terminal::new(journal, mode, verbose, quiet);
        let result = work(events).await;
        terminal.lock().expect("terminal").finish();
        result
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

    /// Shows one event: what is tracked and the compiler's diagnostics always, progress lines
    /// unless `--quiet`, one build's steps when [`Terminal::shows_steps`].
    fn show(&mut self, event: Event) {
        match event {
            Event::StageStarted {
                stage: Stage::Compile,
            } if self.tty && self.shows_steps() => self.spin("compiling"),
            Event::StageFinished {
                stage: Stage::Compile,
                ..
            } => self.finish(),
            Event::StageStarted { .. } | Event::StageFinished { .. } => {}
            // A big blob's upload: a bar on a terminal; nothing more in a log.
            Event::Upload { sent, total, .. } if self.tty && !self.quiet => {
                self.upload(sent, total)
            }
            Event::Upload { .. } => {}
            Event::Writing { output } => self.writing(output),
            Event::Written { output } => self.written(output),
            Event::CompilerOutput { line } => self.compiler_output(&line),
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
            } => self.line(&compiling(&source, &bin, &flags, &builder, self.verbose)),
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

    /// Draws a spinner with `message`.
    fn spin(&mut self, message: &'static str) {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message(message);
        self.spinner = Some(bar);
    }

    /// A bar of the bytes of a blob's upload (the step line above names it), drawn from its
    /// first chunk and cleared with its last.
    fn upload(&mut self, sent: u64, total: u64) {
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

    /// An output being written: said with `--verbose`, and kept for an interruption's line.
    fn writing(&mut self, output: String) {
        if self.verbose && self.shows_steps() {
            self.line(&format!("→ Writing {output}..."));
        }
        self.journal.lock().expect("journal").writing = Some(output);
    }

    /// An output written, for an interruption's line.
    fn written(&mut self, output: String) {
        let mut journal = self.journal.lock().expect("journal");
        journal.writing = None;
        journal.written.push(output);
    }

    /// The compiler's diagnostics are always shown; its status lines go into the spinner
    /// when there is one.
    fn compiler_output(&mut self, line: &str) {
        // `--quiet` prints nothing but errors: a warning is a block of lines from its
        // `warning:` to the blank line that ends it (or the next error).
        if self.quiet {
            let plain = strip_ansi(line);
            if plain.starts_with("warning") {
                self.in_warning = true;
            } else if plain.starts_with("error") {
                self.in_warning = false;
            }
            if self.in_warning {
                self.in_warning = !plain.trim().is_empty();
                return;
            }
        }
        match &self.spinner {
            Some(bar) if is_status_line(line) => {
                bar.set_message(strip_ansi(line).trim().to_string())
            }
            _ => self.line(line),
        }
    }
}

/// The line that says a compile starts; with `verbose`, in the `ruchy compile --verbose`
/// format: the preset, LTO, target CPU, binary and every flag.
fn compiling(source: &Path, bin: &str, flags: &Flags, builder: &str, verbose: bool) -> String {
    let name = source
        .file_name()
        .unwrap_or(source.as_os_str())
        .to_string_lossy()
        .into_owned();
    if !verbose {
        let preset = flags.preset;
        return format!("→ Compiling {name} ({preset} preset, {builder} builder)...");
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
    text
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
