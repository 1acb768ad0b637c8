//! A single `.rs` file's own manifest: cargo-script's frontmatter (`---` … `---` at the top,
//! after an optional `#!` line) or rust-script's `//! ```cargo` block in the leading doc
//! comment. Its `[package]` fields, dependencies, features and profiles go into the project
//! generated for the file, so a one-file program can use crates.
//!
//! Neither rustc here (1.95 stable, Debian's 1.96) accepts frontmatter (`frontmatters are
//! experimental`), so the block's lines are blanked in the source the compiler sees: line
//! numbers in diagnostics stay those of the user's file.

use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::metrics::ManifestForm;

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

/// The TOML of the manifest embedded in `code` and the number of its first line in the file,
/// unchecked (for the project settings in it); none when there is none or it is malformed,
/// which [`extract`] reports.
pub fn manifest_text(path: &Path, code: &str) -> Option<(String, usize)> {
    let lines: Vec<&str> = code.split_inclusive('\n').collect();
    match frontmatter(path, &lines) {
        Ok(Some((open, _, toml))) => Some((toml, open + 2)),
        Ok(None) => rust_script(&lines).map(|(first, toml)| (toml, first)),
        Err(_) => None,
    }
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

/// A path dependency the file's manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDependency {
    /// Its name in the manifest.
    pub name: String,
    /// Its directory on this machine, canonical.
    pub dir: PathBuf,
}

/// Every dependency table of a manifest (`[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]`, their `[target.*]` forms, `[patch.*]`), for the paths in them.
fn dependency_tables(table: &mut toml::Table) -> Vec<&mut toml::Table> {
    let mut tables = Vec::new();
    for (key, value) in table.iter_mut() {
        let Some(value) = value.as_table_mut() else {
            continue;
        };
        if key.ends_with("dependencies") {
            tables.push(value);
        } else if key == "target" || key == "patch" {
            for (_, inner) in value.iter_mut() {
                let Some(inner) = inner.as_table_mut() else {
                    continue;
                };
                if key == "patch" {
                    tables.push(inner);
                    continue;
                }
                for (k, v) in inner.iter_mut() {
                    if let Some(deps) = v.as_table_mut().filter(|_| k.ends_with("dependencies")) {
                        tables.push(deps);
                    }
                }
            }
        }
    }
    tables
}

/// The `path = "..."` values of a manifest's dependency tables, with their names.
fn path_values(table: &mut toml::Table) -> Vec<(String, &mut toml::Value)> {
    let mut found = Vec::new();
    for deps in dependency_tables(table) {
        for (name, dep) in deps.iter_mut() {
            if let Some(path) = dep.get_mut("path").filter(|p| p.is_str()) {
                found.push((name.clone(), path));
            }
        }
    }
    found
}

/// Makes the path dependencies of the file's manifest absolute (they are relative to the
/// file's directory, the generated project is elsewhere), checks that they exist, and returns
/// them.
pub fn resolve_paths(path: &Path, table: &mut toml::Table) -> Result<Vec<PathDependency>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut resolved = Vec::new();
    for (name, value) in path_values(table) {
        let rel = value.as_str().unwrap_or_default().to_string();
        let full = dir.join(&rel);
        let canonical = std::fs::canonicalize(&full)
            .ok()
            .filter(|p| p.join("Cargo.toml").is_file())
            .ok_or_else(|| Error::InvalidInput {
                what: "path dependency",
                value: format!("{name} = {{ path = \"{rel}\" }}"),
                reason: format!(
                    "{} has no Cargo.toml (paths are relative to {})",
                    full.display(),
                    path.display()
                ),
            })?;
        *value = toml::Value::String(canonical.display().to_string());
        if !resolved.iter().any(|d: &PathDependency| d.dir == canonical) {
            resolved.push(PathDependency {
                name,
                dir: canonical,
            });
        }
    }
    Ok(resolved)
}

/// Where a builder container gets the file's path dependencies: each directory under
/// `path-deps/`, laid out as on this machine below the closest directory holding them all, so
/// the paths between them still resolve. Their own path dependencies go too when they are in
/// the file's directory or the file names them; one anywhere else is refused (with
/// `--builder local` too, so both builders take the same files), saying what to add.
pub fn builder_paths(source: &Path, named: &[PathDependency]) -> Result<Vec<(PathBuf, String)>> {
    let file_dir = source.parent().unwrap_or(Path::new("/"));
    let mut sent: Vec<PathBuf> = named.iter().map(|d| d.dir.clone()).collect();
    let mut next = 0;
    while next < sent.len() {
        for inner in inner_paths(source, &sent[next], named, file_dir)? {
            if !sent.contains(&inner) {
                sent.push(inner);
            }
        }
        next += 1;
    }
    let parents: Vec<&Path> = sent.iter().filter_map(|d| d.parent()).collect();
    let Some(mut base) = parents.first().map(|p| p.to_path_buf()) else {
        return Ok(Vec::new());
    };
    for parent in &parents {
        while !parent.starts_with(&base) {
            base.pop();
        }
    }
    Ok(sent
        .into_iter()
        .map(|dir| {
            let under = format!(
                "path-deps/{}",
                dir.strip_prefix(&base).unwrap_or(&dir).display()
            );
            (dir, under)
        })
        .collect())
}

/// The path dependencies of the package in `dir`, each checked: in the file's directory or
/// named by the file.
fn inner_paths(
    source: &Path,
    dir: &Path,
    named: &[PathDependency],
    file_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(Error::io(format!("reading {}", manifest.display())))?;
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok(Vec::new()); // cargo reports a broken manifest better than we would.
    };
    // Cargo reads neither the patches nor the dev-dependencies of a dependency.
    table.remove("patch");
    table.remove("dev-dependencies");
    let targets = table.get_mut("target").and_then(|t| t.as_table_mut());
    for (_, target) in targets.into_iter().flatten() {
        if let Some(target) = target.as_table_mut() {
            target.remove("dev-dependencies");
        }
    }
    let mut found = Vec::new();
    for (name, value) in path_values(&mut table) {
        let rel = value.as_str().unwrap_or_default();
        let inner = std::fs::canonicalize(dir.join(rel)).unwrap_or(dir.join(rel));
        if inner.starts_with(file_dir) || named.iter().any(|n| inner.starts_with(&n.dir)) {
            found.push(inner);
            continue;
        }
        let file = source.file_name().unwrap_or_default().to_string_lossy();
        return Err(Error::InvalidInput {
            what: "path dependency",
            value: format!("{name} = {{ path = \"{rel}\" }} in {}", manifest.display()),
            reason: format!(
                "{} is outside {file}'s directory and not among the paths {file} names, so it \
                 would not go to the builder; add `{name} = {{ path = \"...\" }}` to {file}'s \
                 manifest",
                inner.display()
            ),
        });
    }
    Ok(found)
}

/// The manifest `table` (paths made absolute by [`resolve_paths`]) with each path dependency
/// where `paths` (from [`builder_paths`]) sends it, relative to the project root.
pub fn with_builder_paths(table: &toml::Table, paths: &[(PathBuf, String)]) -> toml::Table {
    let mut table = table.clone();
    for (_, value) in path_values(&mut table) {
        let dir = PathBuf::from(value.as_str().unwrap_or_default());
        if let Some((_, under)) = paths.iter().find(|(d, _)| *d == dir) {
            *value = toml::Value::String(under.clone());
        }
    }
    table
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

    #[test]
    fn path_dependencies_go_to_the_builder_laid_out_as_here() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for (krate, deps) in [
            ("app/near", "inner = { path = \"inner\" }"),
            ("lib/far", ""),
        ] {
            std::fs::create_dir_all(root.join(krate).join("inner")).unwrap();
            let manifest = format!("[package]\nname = \"x\"\n[dependencies]\n{deps}\n");
            std::fs::write(root.join(krate).join("Cargo.toml"), manifest).unwrap();
        }
        std::fs::write(root.join("app/near/inner/Cargo.toml"), "[package]\n").unwrap();
        let source = root.join("app/main.rs");
        let code = "---\n[dependencies]\nnear = { path = \"near\" }\nfar = { path = \"../lib/far\" }\n---\n";
        let (_, mut table) = extract_str(code).unwrap().manifest.unwrap();
        let named = resolve_paths(&source, &mut table).unwrap();
        let paths = builder_paths(&source, &named).unwrap();
        let under: Vec<&str> = paths.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(
            under,
            [
                "path-deps/lib/far",
                "path-deps/app/near",
                "path-deps/app/near/inner"
            ]
        );
        let sent = with_builder_paths(&table, &paths);
        assert_eq!(
            sent["dependencies"]["far"]["path"].as_str(),
            Some("path-deps/lib/far")
        );
        assert_eq!(
            sent["dependencies"]["near"]["path"].as_str(),
            Some("path-deps/app/near")
        );
    }
}
