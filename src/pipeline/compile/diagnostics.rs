//! Compiler output as the user reads it. A single file compiles as the generated project's
//! `src/main.rs`, whose lines are the file's lines: a diagnostic there is shown in the user's
//! file. A `.ruchy` file's Rust is the transpiler's, so its diagnostics name that Rust by its
//! full path on this machine and the file it came from. cargo's suggestion to run `cargo fix`
//! on the generated package is dropped: the user has no such package.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::pipeline::source::{Project, SourceKind};

/// Rewrites compiler output lines for one project.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// What `src/main.rs:` becomes, for a generated project.
    main_rs: Option<String>,
    /// Said before the first location in a `.ruchy` file's Rust: where it came from.
    transpiled: Option<String>,
    noted: AtomicBool,
}

/// The location prefix cargo prints for the generated project's only source file.
const MAIN_RS: &str = "src/main.rs:";

impl Diagnostics {
    /// The rewriting for `project`'s compiler output.
    pub fn for_project(project: &Project) -> Diagnostics {
        let main_rs = match project.kind {
            SourceKind::RustFile => Some(format!("{}:", project.source.display())),
            SourceKind::RuchyFile => Some(format!(
                "{}:",
                project.workspace_root.join("src/main.rs").display()
            )),
            SourceKind::CargoProject | SourceKind::Binary => None,
        };
        let transpiled = (project.kind == SourceKind::RuchyFile).then(|| {
            format!(
                "note: {} compiles as the Rust `ruchy transpile` made of it, {}: the locations below are in that Rust",
                project.source.display(),
                project.workspace_root.join("src/main.rs").display()
            )
        });
        Diagnostics {
            main_rs,
            transpiled,
            noted: AtomicBool::new(false),
        }
    }

    /// The line as the user should see it.
    pub fn rewrite(&self, line: &str) -> String {
        let Some(main_rs) = &self.main_rs else {
            return line.to_string();
        };
        let mut rewritten = replace_locations(line, main_rs);
        if let Some(at) = rewritten.find(" (run `cargo fix") {
            if let Some(end) = rewritten[at..].find(')') {
                rewritten.replace_range(at..at + end + 1, "");
            }
        }
        match &self.transpiled {
            Some(note)
                if rewritten.contains(main_rs.as_str())
                    && !self.noted.swap(true, Ordering::Relaxed) =>
            {
                format!("{note}\n{rewritten}")
            }
            _ => rewritten,
        }
    }
}

/// `line` with each `src/main.rs:LINE` location (after a space or the end of a color code,
/// as cargo prints `--> src/main.rs:6:20`) naming `main_rs` instead.
fn replace_locations(line: &str, main_rs: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(MAIN_RS) {
        let before = rest[..at].chars().last();
        let after = rest[at + MAIN_RS.len()..].chars().next();
        let location = matches!(before, None | Some(' ') | Some('m'))
            && after.is_some_and(|c| c.is_ascii_digit());
        out.push_str(&rest[..at]);
        out.push_str(if location { main_rs } else { MAIN_RS });
        rest = &rest[at + MAIN_RS.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostics(main_rs: &str) -> Diagnostics {
        Diagnostics {
            main_rs: Some(format!("{main_rs}:")),
            ..Diagnostics::default()
        }
    }

    #[test]
    fn a_single_file_s_diagnostics_name_the_file() {
        let d = diagnostics("examples/bad.rs");
        assert_eq!(
            d.rewrite("  --> src/main.rs:6:20"),
            "  --> examples/bad.rs:6:20"
        );
        // Colored, as cargo prints it with --color always.
        assert_eq!(
            d.rewrite("\u{1b}[1m\u{1b}[94m--> \u{1b}[0msrc/main.rs:6:20"),
            "\u{1b}[1m\u{1b}[94m--> \u{1b}[0mexamples/bad.rs:6:20"
        );
        // Not a location: left as it is.
        assert_eq!(
            d.rewrite("let path = \"src/main.rs: here\";"),
            "let path = \"src/main.rs: here\";"
        );
    }

    #[test]
    fn the_generated_package_s_cargo_fix_is_dropped() {
        let d = diagnostics("warn.rs");
        assert_eq!(
            d.rewrite("warning: `warn` (bin \"warn\") generated 1 warning (run `cargo fix --bin \"warn\" -p warn` to apply 1 suggestion)"),
            "warning: `warn` (bin \"warn\") generated 1 warning"
        );
    }

    #[test]
    fn a_ruchy_file_s_rust_is_named_once_with_where_it_came_from() {
        let d = Diagnostics {
            main_rs: Some("/cache/app/src/main.rs:".into()),
            transpiled: Some("note: app.ruchy compiles as ...".into()),
            noted: AtomicBool::new(false),
        };
        assert_eq!(
            d.rewrite(" --> src/main.rs:4:28"),
            "note: app.ruchy compiles as ...\n --> /cache/app/src/main.rs:4:28"
        );
        assert_eq!(
            d.rewrite(" --> src/main.rs:9:1"),
            " --> /cache/app/src/main.rs:9:1"
        );
    }

    #[test]
    fn a_cargo_project_s_output_is_untouched() {
        let d = Diagnostics::default();
        let line = "  --> src/main.rs:1:1 (run `cargo fix --bin x` to apply)";
        assert_eq!(d.rewrite(line), line);
    }
}
