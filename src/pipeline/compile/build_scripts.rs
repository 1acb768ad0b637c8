//! Why a build script failed, read from cargo's output as it goes by: which crate's build
//! script failed, and which program it could not find (a C compiler for the target, make,
//! perl, cmake...). cargo only says "failed to run custom build command"; the tool's name is
//! buried in the script's own output, in the words of cc-rs, cmake-rs, openssl-src, autoconf
//! or the shell.

use std::sync::Mutex;

use crate::core::error::Error;

/// A program a crate's build script needed and did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTool {
    /// The crate whose build script failed (`tikv-jemalloc-sys v0.6.1`).
    pub krate: String,
    /// The program it could not run (`x86_64-linux-musl-gcc`, `make`, `perl`).
    pub tool: String,
}

/// The Debian package(s) that have `tool`, and the Alpine ones (empty when unknown), for
/// the error's hint.
pub fn packages_for(tool: &str) -> (String, &'static str) {
    if let Some(arch) = tool.strip_suffix("-linux-musl-gcc") {
        if arch == std::env::consts::ARCH {
            return ("musl-tools".into(), "musl-dev");
        }
        let deb = crate::adapters::stdlib::debian_arch(arch);
        return (
            format!("musl-dev:{deb} (after `dpkg --add-architecture {deb}`)"),
            "",
        );
    }
    let (debian, alpine) = match tool {
        "musl-gcc" => ("musl-tools", "musl-dev"),
        "cc" | "gcc" | "a C compiler" => ("gcc", "gcc musl-dev"),
        "c++" | "g++" => ("g++", "g++"),
        "make" => ("make", "make"),
        "perl" => ("perl", "perl"),
        "cmake" => ("cmake", "cmake"),
        "pkg-config" => ("pkg-config", "pkgconf"),
        "sed" | "grep" | "awk" => ("sed grep mawk", "sed grep gawk"),
        "bash" => ("bash", "bash"),
        other if other.starts_with("perl module ") => ("perl", "perl"),
        // A cross tool: `aarch64-linux-gnu-gcc` is in gcc-aarch64-linux-gnu.
        other if other.ends_with("-gcc") || other.ends_with("-ar") => {
            let prefix = other.rsplit_once('-').map_or(other, |(prefix, _)| prefix);
            return (format!("gcc-{prefix}"), "");
        }
        other => return (other.to_string(), ""),
    };
    (debian.to_string(), alpine)
}

/// Watches compiler output lines for a failed build script and the tool it missed.
#[derive(Debug, Default)]
pub struct BuildScriptWatch {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    krate: Option<String>,
    tool: Option<String>,
    /// The program openssl-src was about to run (`Command: "perl" ...`).
    command: Option<String>,
}

impl BuildScriptWatch {
    /// Looks at one line of cargo's output (colors and all).
    pub fn observe(&self, line: &str) {
        let line = strip_ansi(line);
        let line = line.trim();
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(rest) = line.strip_prefix("error: failed to run custom build command for `") {
            if state.krate.is_none() {
                state.krate = rest.split('`').next().map(short_version);
            }
            return;
        }
        if let Some(rest) = line.strip_prefix("Command: \"") {
            state.command = rest.split('"').next().map(str::to_string);
        }
        if state.tool.is_none() {
            state.tool = missing_tool(line, state.command.as_deref());
        }
    }

    /// The error for cargo's failure: a missing tool when a build script said which, else
    /// the compile failure. `builder` says where it compiled (`the builder image X`).
    pub fn error(
        &self,
        package: &str,
        status: std::process::ExitStatus,
        builder: String,
        in_container: bool,
    ) -> Error {
        match self.finding() {
            Some(missing) => Error::BuildToolMissing {
                package: package.to_string(),
                krate: missing.krate,
                tool: missing.tool,
                builder,
                in_container,
            },
            None => Error::CompileFailed {
                package: package.to_string(),
                status,
            },
        }
    }

    /// What went missing, once a build script has failed for it.
    pub fn finding(&self) -> Option<MissingTool> {
        let state = self.state.lock().expect("not poisoned");
        Some(MissingTool {
            krate: state.krate.clone()?,
            tool: state.tool.clone()?,
        })
    }
}

/// `tikv-jemalloc-sys v0.6.1+5.3.0-...` as `tikv-jemalloc-sys v0.6.1` (build metadata is noise).
fn short_version(spec: &str) -> String {
    spec.split('+').next().unwrap_or(spec).trim().to_string()
}

/// The program a line says is missing, in the words of the tools that say it.
fn missing_tool(line: &str, command: Option<&str>) -> Option<String> {
    // cc-rs: `failed to find tool "x86_64-linux-musl-gcc": No such file or directory`
    if let Some(rest) = after(line, "failed to find tool \"") {
        return rest.split('"').next().map(str::to_string);
    }
    // cmake-rs and others: "is `cmake` not installed?"
    if let Some(rest) = after(line, "is `") {
        if let Some((tool, tail)) = rest.split_once('`') {
            if tail.starts_with(" not installed") {
                return Some(tool.to_string());
            }
        }
    }
    // pkg-config-rs: "The pkg-config command could not be found."
    if line.contains("pkg-config command could not be found") {
        return Some("pkg-config".into());
    }
    // perl: "Can't locate FindBin.pm in @INC"
    if let Some(rest) = after(line, "Can't locate ") {
        if let Some((module, _)) = rest.split_once(" in @INC") {
            return Some(format!("perl module {module}"));
        }
    }
    // openssl-src: `Command: "perl" ...` then `Failed to execute: No such file or directory`.
    if line.starts_with("Failed to execute: No such file or directory") {
        return command.map(str::to_string);
    }
    // autoconf's configure.
    if line.contains("no acceptable C compiler found in $PATH") {
        return Some("a C compiler".into());
    }
    if line.contains("rerun with a POSIX shell") || line.contains("cannot create configure.lineno")
    {
        return Some("sed".into());
    }
    if line.contains("no acceptable grep could be found") {
        return Some("grep".into());
    }
    if line.contains("no acceptable sed could be found") {
        return Some("sed".into());
    }
    // The shell: "sh: 1: make: not found", "/bin/sh: make: command not found",
    // "./configure: line 3: awk: command not found"
    for suffix in [": not found", ": command not found"] {
        if let Some(head) = line.strip_suffix(suffix) {
            let tool = head.rsplit(": ").next()?.trim();
            let plain = !tool.is_empty()
                && tool
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+/".contains(c));
            if plain && (head.contains("sh: ") || head.contains("line ")) {
                return Some(tool.rsplit('/').next().unwrap_or(tool).to_string());
            }
        }
    }
    None
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

/// `line` without terminal color codes (`--color always` puts them in cargo's output).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(lines: &[&str]) -> Option<MissingTool> {
        let watch = BuildScriptWatch::default();
        for line in lines {
            watch.observe(line);
        }
        watch.finding()
    }

    fn found(krate: &str, tool: &str) -> Option<MissingTool> {
        Some(MissingTool {
            krate: krate.into(),
            tool: tool.into(),
        })
    }

    #[test]
    fn cc_rs_without_a_c_compiler_for_the_target() {
        // What ring printed in the builder before it had musl-gcc.
        let lines = [
            "\u{1b}[1m\u{1b}[91merror\u{1b}[0m\u{1b}[1m: failed to run custom build command for `ring v0.17.14`\u{1b}[0m",
            "  --- stderr",
            "  ToolExecError: failed to find tool \"x86_64-linux-musl-gcc\": No such file or directory (os error 2)",
        ];
        assert_eq!(
            watch(&lines),
            found("ring v0.17.14", "x86_64-linux-musl-gcc")
        );
    }

    #[test]
    fn the_shell_names_the_program_it_could_not_find() {
        let lines = [
            "error: failed to run custom build command for `tikv-jemalloc-sys v0.6.1+5.3.0-1-ge13ca993e8ccb9ba9847cc330696e02839f328f7`",
            "  sh: 1: make: not found",
        ];
        assert_eq!(watch(&lines), found("tikv-jemalloc-sys v0.6.1", "make"));
        assert_eq!(
            watch(&[
                "./configure: line 3: awk: command not found",
                "error: failed to run custom build command for `x v1.0.0`"
            ]),
            found("x v1.0.0", "awk")
        );
    }

    #[test]
    fn openssl_src_and_cmake_and_autoconf() {
        let openssl = [
            "error: failed to run custom build command for `openssl-sys v0.9.109`",
            "  Error configuring OpenSSL build:",
            "      Command: \"perl\" \"./Configure\" \"--prefix=/out\"",
            "      Failed to execute: No such file or directory (os error 2)",
        ];
        assert_eq!(watch(&openssl), found("openssl-sys v0.9.109", "perl"));
        let cmake = [
            "error: failed to run custom build command for `libgit2-sys v0.18.0`",
            "  failed to execute command: No such file or directory (os error 2)",
            "  is `cmake` not installed?",
        ];
        assert_eq!(watch(&cmake), found("libgit2-sys v0.18.0", "cmake"));
        let configure = [
            "error: failed to run custom build command for `tikv-jemalloc-sys v0.6.1`",
            "  configure: error: cannot create configure.lineno; rerun with a POSIX shell",
        ];
        assert_eq!(watch(&configure), found("tikv-jemalloc-sys v0.6.1", "sed"));
    }

    #[test]
    fn a_failure_without_a_missing_tool_is_no_finding() {
        let lines = [
            "error: failed to run custom build command for `foo v1.0.0`",
            "  thread 'main' panicked at build.rs:3:5: the build script's own assertion",
        ];
        assert_eq!(watch(&lines), None);
        // A missing tool in a build that did not fail in a build script is no finding either.
        assert_eq!(watch(&["sh: 1: make: not found"]), None);
    }

    #[test]
    fn packages_name_where_to_get_each_tool() {
        assert_eq!(packages_for("make"), ("make".into(), "make"));
        assert_eq!(
            packages_for("aarch64-linux-musl-gcc").0,
            "musl-dev:arm64 (after `dpkg --add-architecture arm64`)"
        );
        assert_eq!(packages_for("x86_64-linux-musl-gcc").0, "musl-tools");
        assert_eq!(packages_for("perl module FindBin.pm").0, "perl");
    }
}
