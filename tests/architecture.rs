//! The shape of the library, checked: the layers of `src/` (core, adapters, pipeline,
//! commands, shells) import only those below them, no module imports one that imports it
//! back, nothing outside the `cli` module prints or looks at the terminal, clap stays in
//! `cli`, and `main.rs` stays a thin shell.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src`, with its module path (`oci::image`; `lib` for lib.rs).
fn modules() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // Templates (`*.rs.in`) are code of the programs we generate, not modules.
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src()).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            files.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (tests may use
/// anything).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file names through `crate::...` paths (`use crate::{a, b::c}` included),
/// resolved to the longest module path that exists.
fn imports(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let paths: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|p| p.trim().to_string())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_string()]
        };
        for path in paths {
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let module = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| known.contains(candidate));
            found.extend(module);
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let files = modules();
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let edges: BTreeMap<&String, BTreeSet<String>> = files
        .iter()
        .map(|(module, text)| {
            let mut to = imports(text, &known);
            // A module's own children and itself are not imports.
            to.retain(|m| m != module && !m.starts_with(&format!("{module}::")));
            (module, to)
        })
        .collect();
    assert!(
        edges[&"pipeline::build".to_string()].contains("pipeline::compile"),
        "the import scan finds imports: {edges:?}"
    );
    // Any path from a module back to itself is a circle.
    let mut circles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<String>> = vec![vec![start.to_string()]];
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in edges.get(last).into_iter().flatten() {
                if next == *start {
                    circles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );

    // The same at the level of each layer's modules (a directory counts as one).
    let top = |m: &str| m.split("::").take(2).collect::<Vec<_>>().join("::");
    let mut top_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in &edges {
        let entry = top_edges.entry(top(from)).or_default();
        entry.extend(to.iter().map(|m| top(m)).filter(|m| *m != top(from)));
    }
    for (from, to) in &top_edges {
        for other in to {
            assert!(
                !top_edges.get(other).is_some_and(|back| back.contains(from)),
                "{from} and {other} import each other"
            );
        }
    }
}

#[test]
fn only_the_cli_prints_or_knows_about_terminals_and_clap() {
    for (module, text) in modules() {
        if module == "main" || module == "shells::cli" || module.starts_with("shells::cli::") {
            continue;
        }
        let code = code(&text);
        for forbidden in [
            "println!",
            "eprintln!",
            "print!(",
            "eprint!(",
            "is_terminal",
            "indicatif",
            "clap::",
            "std::io::stdout",
            "std::io::stderr",
        ] {
            // Doc examples show how a caller prints; only code counts.
            let in_code = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains(forbidden));
            assert!(!in_code, "{module} uses {forbidden}");
        }
    }
}

#[test]
fn main_is_a_thin_shell() {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(
        main.lines().count() <= 150,
        "{} lines",
        main.lines().count()
    );
    assert!(main.contains("ruchy_image::cli::run"));
}

/// The layers of `src/`, lowest first. A module imports from its own layer and those below.
const LAYERS: [&str; 5] = ["core", "adapters", "pipeline", "commands", "shells"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module == *l || module.starts_with(&format!("{l}::")))
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let files = modules();
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut upward = Vec::new();
    for (module, text) in &files {
        let Some(layer) = layer_of(module) else {
            assert!(
                module == "lib" || module == "main",
                "{module} is in no layer"
            );
            continue;
        };
        for import in imports(text, &known) {
            let to = layer_of(&import).unwrap_or_else(|| panic!("{import} is in no layer"));
            if to > layer {
                upward.push(format!("{module} imports {import}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
    // And the scan sees the layers at all.
    let build = &files["pipeline::build"];
    assert!(imports(build, &known)
        .iter()
        .any(|m| layer_of(m) == Some(0)));
}

#[test]
fn code_names_modules_by_their_place_in_the_tree() {
    // lib.rs re-exports a few modules under their old names for library users; inside the
    // crate, a path starts with its layer, so the import scan (and a reader) sees where it goes.
    for (module, text) in modules() {
        if module == "lib" {
            continue;
        }
        let code = code(&text);
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
                .collect();
            // `#[macro_export]` macros (`crate::serde_as_text!`) live at the root, by Rust's rule.
            let is_macro = rest[first.len()..].starts_with('!');
            assert!(
                LAYERS.contains(&first.as_str())
                    || ["Error", "Result", "{Error"].contains(&first.as_str())
                    || is_macro,
                "{module} names crate::{first}"
            );
        }
    }
}

#[test]
fn only_the_engine_adapter_speaks_bollard() {
    // Everything else calls the engine through `adapters::engine::Engine`'s methods and types,
    // so a change of client (or a stand-in engine) touches one place. serve::startup still
    // asks the bollard client for the engine's version (Engine::version holds it); it is the
    // one caller of `docker()` left outside the adapters.
    let mut speakers = Vec::new();
    for (module, text) in modules() {
        if module.starts_with("adapters") {
            continue;
        }
        let code = code(&text);
        let client = code.contains(".docker()") && module != "shells::serve::startup";
        if code.contains("bollard") || client {
            speakers.push(module);
        }
    }
    assert!(
        speakers.is_empty(),
        "bollard outside src/adapters: {speakers:?}"
    );
    // And the scan sees bollard where it is.
    assert!(modules()["adapters::engine"].contains("bollard"));
}

#[test]
fn only_the_shells_read_our_settings_from_the_environment() {
    // `RUCHY_IMAGE_*` settings are read by the command line and the service and passed in
    // (`--cache-dir`, `Request::base_limits`, ...), so the library does what it is told and a
    // test sets a value without touching the process's environment.
    let mut readers = Vec::new();
    for (module, text) in modules() {
        if module.starts_with("shells") {
            continue;
        }
        let code = code(&text);
        if code.contains("var(\"RUCHY_IMAGE_") || code.contains("var_os(\"RUCHY_IMAGE_") {
            readers.push(module);
        }
    }
    assert!(
        readers.is_empty(),
        "RUCHY_IMAGE_* read outside src/shells: {readers:?}"
    );
    // And the scan sees a read where there is one.
    assert!(code(&modules()["shells::cli::request"]).contains("var(\"RUCHY_IMAGE_"));
}
