//! A single `.rs` file's own manifest: cargo-script's frontmatter (`---` … `---` at the top,
//! after an optional `#!` line) or rust-script's `//! ```cargo` block in the leading doc
//! comment. Its `[package]` fields, dependencies, features and profiles go into the project
//! generated for the file, so a one-file program can use crates.
//!
//! Neither rustc here (1.95 stable, Debian's 1.96) accepts frontmatter (`frontmatters are
//! experimental`), so the block's lines are blanked in the source the compiler sees: line
//! numbers in diagnostics stay those of the user's file.

use std::path::Path;

use crate::error::{Error, Result};

/// Which form the file's manifest had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestForm {
    /// cargo-script frontmatter (`---` … `---`).
    CargoScript,
    /// rust-script's `//! ```cargo` block.
    RustScript,
}

impl ManifestForm {
    /// How the record and summary name it.
    pub fn describe(self) -> &'static str {
        match self {
            ManifestForm::CargoScript => "cargo-script frontmatter",
            ManifestForm::RustScript => "rust-script manifest",
        }
    }
}

/// The manifest found in a file and the code the compiler is given.
#[derive(Debug)]
pub struct Embedded {
    /// The file's manifest, checked, with path dependencies made absolute.
    pub manifest: Option<(ManifestForm, toml::Table)>,
    /// The source with a frontmatter block's lines blanked (unchanged otherwise).
    pub code: String,
}

/// Tables of the file's manifest that go into the generated project; anything else is refused
/// (a `[[bin]]` or `[workspace]` would fight the project we generate around the file).
const ALLOWED: &[&str] = &[
    "package",
    "dependencies",
    "dev-dependencies",
    "build-dependencies",
    "target",
    "features",
    "profile",
    "lints",
    "patch",
];

/// Finds and checks the manifest embedded in `code`, the contents of `path`.
pub fn extract(path: &Path, code: &str) -> Result<Embedded> {
    let lines: Vec<&str> = code.split_inclusive('\n').collect();
    if let Some((open, close, toml)) = frontmatter(path, &lines)? {
        let table = parse(path, &toml, open + 2)?;
        let mut stripped = String::with_capacity(code.len());
        for (i, line) in lines.iter().enumerate() {
            if (open..=close).contains(&i) {
                stripped.push_str(if line.ends_with('\n') { "\n" } else { "" });
            } else {
                stripped.push_str(line);
            }
        }
        return Ok(Embedded {
            manifest: Some((ManifestForm::CargoScript, table)),
            code: stripped,
        });
    }
    let manifest = match rust_script(&lines) {
        Some((first, toml)) => Some((ManifestForm::RustScript, parse(path, &toml, first)?)),
        None => None,
    };
    Ok(Embedded {
        manifest,
        code: code.to_string(),
    })
}

/// The frontmatter's opening and closing line indexes and its TOML, if the file has one.
fn frontmatter(path: &Path, lines: &[&str]) -> Result<Option<(usize, usize, String)>> {
    let mut i = 0;
    // A shebang, but not an inner attribute (`#![...]`).
    if lines
        .first()
        .is_some_and(|l| l.starts_with("#!") && !l.starts_with("#!["))
    {
        i = 1;
    }
    while lines.get(i).is_some_and(|l| l.trim().is_empty()) {
        i += 1;
    }
    let Some(open) = lines.get(i) else {
        return Ok(None);
    };
    let fence_len = open.chars().take_while(|&c| c == '-').count();
    if fence_len < 3 {
        return Ok(None);
    }
    let info = open[fence_len..].trim();
    if !info.is_empty() && info != "cargo" {
        return Err(invalid(
            path,
            i + 1,
            format!("frontmatter info string `{info}`: only `cargo` (or none) is understood"),
        ));
    }
    let fence = &open[..fence_len];
    let close = (i + 1..lines.len()).find(|&j| lines[j].trim_end() == fence);
    let Some(close) = close else {
        return Err(invalid(
            path,
            i + 1,
            format!("the frontmatter opened here is never closed (no `{fence}` line)"),
        ));
    };
    Ok(Some((i, close, lines[i + 1..close].concat())))
}

/// rust-script's manifest: the first line's number and the TOML of a `//! ```cargo` block
/// in the leading `//!` comment.
fn rust_script(lines: &[&str]) -> Option<(usize, String)> {
    let start = usize::from(
        lines
            .first()
            .is_some_and(|l| l.starts_with("#!") && !l.starts_with("#![")),
    );
    let doc: Vec<&str> = lines[start.min(lines.len())..]
        .iter()
        .map(|l| l.trim_start())
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l["//!".len()..]
                .strip_prefix(' ')
                .unwrap_or(&l["//!".len()..])
        })
        .collect();
    let open = doc.iter().position(|l| l.trim_end() == "```cargo")?;
    let close = (open + 1..doc.len()).find(|&j| doc[j].trim_end() == "```")?;
    let toml = doc[open + 1..close].concat();
    Some((start + open + 2, toml))
}

/// Parses and checks the TOML whose first line is line `first` of the user's file.
fn parse(path: &Path, toml: &str, first: usize) -> Result<toml::Table> {
    let table: toml::Table = toml.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| toml[..span.start].matches('\n').count())
            .unwrap_or(0);
        invalid(path, first + line, e.message().to_string())
    })?;
    for key in table.keys() {
        if !ALLOWED.contains(&key.as_str()) {
            let reason = match key.as_str() {
                "bin" | "workspace" | "lib" | "example" | "test" | "bench" => format!(
                    "`{key}` is not allowed in a single file's manifest: the file is the one binary"
                ),
                _ => format!("unknown manifest table `{key}`"),
            };
            return Err(invalid(path, first, reason));
        }
    }
    Ok(table)
}

/// Makes the path dependencies of the file's manifest absolute (they are relative to the
/// file's directory, the generated project is elsewhere) and checks that they exist.
pub fn resolve_paths(path: &Path, table: &mut toml::Table) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut sections: Vec<&mut toml::Table> = Vec::new();
    let (deps, rest): (Vec<_>, Vec<_>) = table
        .iter_mut()
        .partition(|(k, _)| k.ends_with("dependencies"));
    for (_, value) in deps {
        if let Some(t) = value.as_table_mut() {
            sections.push(t);
        }
    }
    for (key, value) in rest {
        if key != "target" {
            continue;
        }
        for (_, target) in value.as_table_mut().into_iter().flatten() {
            for (k, v) in target.as_table_mut().into_iter().flatten() {
                if k.ends_with("dependencies") {
                    if let Some(t) = v.as_table_mut() {
                        sections.push(t);
                    }
                }
            }
        }
    }
    for deps in sections {
        for (name, dep) in deps.iter_mut() {
            let Some(rel) = dep.get_mut("path") else {
                continue;
            };
            let Some(rel_str) = rel.as_str() else {
                continue;
            };
            let full = dir.join(rel_str);
            let resolved = std::fs::canonicalize(&full)
                .ok()
                .filter(|p| p.join("Cargo.toml").is_file())
                .ok_or_else(|| Error::InvalidInput {
                    what: "path dependency",
                    value: format!("{name} = {{ path = \"{rel_str}\" }}"),
                    reason: format!(
                        "{} has no Cargo.toml (paths are relative to {})",
                        full.display(),
                        path.display()
                    ),
                })?;
            *rel = toml::Value::String(resolved.display().to_string());
        }
    }
    Ok(())
}

/// The dependency names the manifest declares (for the record and summary).
pub fn dependency_names(table: &toml::Table) -> Vec<String> {
    let mut names: Vec<String> = table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The `[profile.NAME]` keys the manifest sets, as `NAME.key`.
pub fn profile_keys(table: &toml::Table) -> Vec<String> {
    let profiles = table.get("profile").and_then(|p| p.as_table());
    profiles
        .into_iter()
        .flatten()
        .flat_map(|(profile, keys)| {
            let keys = keys.as_table().into_iter().flat_map(|k| k.keys());
            keys.map(move |key| format!("{profile}.{key}"))
        })
        .collect()
}

fn invalid(path: &Path, line: usize, reason: String) -> Error {
    Error::InvalidInput {
        what: "manifest in",
        value: format!("{}:{line}", path.display()),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract_str(code: &str) -> Result<Embedded> {
        extract(Path::new("main.rs"), code)
    }

    #[test]
    fn frontmatter_is_parsed_and_blanked_keeping_lines() {
        let code =
            "#!/usr/bin/env cargo\n---\n[dependencies]\nserde_json = \"1\"\n---\nfn main() {}\n";
        let e = extract_str(code).unwrap();
        let (form, table) = e.manifest.unwrap();
        assert_eq!(form, ManifestForm::CargoScript);
        assert_eq!(dependency_names(&table), ["serde_json"]);
        assert_eq!(e.code, "#!/usr/bin/env cargo\n\n\n\n\nfn main() {}\n");
    }

    #[test]
    fn rust_script_manifest_is_parsed_and_code_kept() {
        let code = "//! A tool.\n//! ```cargo\n//! [dependencies]\n//! regex = \"1\"\n//! ```\nfn main() {}\n";
        let e = extract_str(code).unwrap();
        let (form, table) = e.manifest.unwrap();
        assert_eq!(form, ManifestForm::RustScript);
        assert_eq!(dependency_names(&table), ["regex"]);
        assert_eq!(e.code, code);
    }

    #[test]
    fn plain_file_and_inner_attribute_have_no_manifest() {
        let code = "#![allow(dead_code)]\nfn main() {}\n";
        let e = extract_str(code).unwrap();
        assert!(e.manifest.is_none());
        assert_eq!(e.code, code);
    }

    #[test]
    fn bad_manifests_name_the_line_in_the_file() {
        let unclosed = extract_str("---cargo\n[dependencies]\nfn main() {}\n").unwrap_err();
        assert!(unclosed.to_string().contains("main.rs:1"), "{unclosed}");
        assert!(unclosed.to_string().contains("never closed"), "{unclosed}");
        let toml =
            extract_str("#!/x\n---\n[dependencies]\nserde = \n---\nfn main() {}\n").unwrap_err();
        assert!(toml.to_string().contains("main.rs:4"), "{toml}");
        let bin = extract_str("---\n[[bin]]\nname = \"x\"\n---\n").unwrap_err();
        assert!(bin.to_string().contains("`bin` is not allowed"), "{bin}");
        let ws = extract_str("---\n[workspace]\n---\n").unwrap_err();
        assert!(
            ws.to_string().contains("`workspace` is not allowed"),
            "{ws}"
        );
        assert!(bin.is_usage() && ws.is_usage() && toml.is_usage() && unclosed.is_usage());
    }

    #[test]
    fn missing_path_dependency_is_refused() {
        let e =
            extract_str("---\n[dependencies]\nmine = { path = \"no/such/dir\" }\n---\n").unwrap();
        let (_, mut table) = e.manifest.unwrap();
        let err = resolve_paths(Path::new("/tmp/main.rs"), &mut table).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        assert!(err.is_usage());
    }
}
