//! Single `.rs` files with their own manifest: cargo-script frontmatter and rust-script's
//! `//! ```cargo` block, each built with both builders, run in its image, and checked for its
//! SBOM and record. words.rs has its path dependency beside it (and that one's own beside
//! that); scripts/script.rs names two outside its directory.

mod common;
mod guards;

use std::path::Path;

use common::*;
use guards::Images;

/// Builds a fixture with `builder` into a loaded image with an SBOM, runs the image, and
/// returns the record, the SBOM and what the program printed.
fn build_and_run(
    name: &str,
    builder: &str,
    cache: &Path,
) -> (serde_json::Value, serde_json::Value, String) {
    let out = tempfile::tempdir().unwrap();
    let sbom = out.path().join("app.cdx.json");
    let stem = Path::new(name).file_stem().unwrap().to_str().unwrap();
    let tag = format!("ruchy-image-test/frontmatter-{stem}:{builder}");
    let _image = Images(vec![tag.clone()]);
    let record = ruchy_image([
        "build",
        fixture(&format!("frontmatter/{name}")).to_str().unwrap(),
        "--builder",
        builder,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--tag",
        &tag,
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    let bom = serde_json::from_str(&std::fs::read_to_string(&sbom).unwrap()).unwrap();
    let printed = tool("docker", &["run", "--rm", &tag]).ok().stdout;
    (record, bom, printed)
}

fn component_names(bom: &serde_json::Value) -> Vec<String> {
    let components = bom["components"].as_array().unwrap();
    components
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn assert_lists(bom: &serde_json::Value, crates: &[&str]) {
    let names = component_names(bom);
    for name in crates {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
}

/// The Cargo.lock kept beside the project generated for `stem` in `cache`.
fn kept_lock(cache: &Path, stem: &str) -> String {
    let projects = cache.join("projects");
    let dir = entries(&projects)
        .into_iter()
        .find(|e| e.starts_with(&format!("{stem}-")))
        .unwrap_or_else(|| panic!("no project for {stem} in {}", projects.display()));
    std::fs::read_to_string(projects.join(dir).join("Cargo.lock")).unwrap()
}

fn cargo_script(builder: &str) {
    // A cache of its own, so the lock found is the one this builder kept.
    let cache = tempfile::tempdir().unwrap();
    let (record, bom, printed) = build_and_run("words.rs", builder, cache.path());
    assert_eq!(
        printed.trim(),
        r#"{"found":"42","greeting":"hello please"}"#
    );
    assert_lists(&bom, &["serde_json", "regex", "greet", "polite"]);
    assert_eq!(record["dependencies_from"]["form"], "cargo-script");
    assert_eq!(
        record["dependencies_from"]["dependencies"],
        serde_json::json!(["greet", "regex", "serde_json"])
    );
    // The file's [package] version is the program's.
    assert!(bom.to_string().contains("pkg:cargo/words@0.3.0"), "{bom}");
    let lock = kept_lock(cache.path(), "words");
    for name in ["regex", "serde_json", "polite"] {
        assert!(lock.contains(&format!("name = \"{name}\"")), "{lock}");
    }
    // The rebuild sends that lock with the sources, and finds its binary kept: nothing goes
    // to a builder, and the image is the same.
    let again = ruchy_image([
        "build",
        fixture("frontmatter/words.rs").to_str().unwrap(),
        "--builder",
        builder,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--no-load",
        "--json",
        "-",
    ])
    .ok();
    assert!(!again.stderr.contains("to the builder"), "{}", again.stderr);
    assert_eq!(
        again.metrics()["image"]["digest"],
        record["image"]["digest"]
    );
}

fn rust_script(builder: &str) {
    let cache = tempfile::tempdir().unwrap();
    let (record, bom, printed) = build_and_run("scripts/script.rs", builder, cache.path());
    assert_eq!(
        printed.trim(),
        r#"{"form":"rust-script","greeting":"hello please"}"#
    );
    assert_lists(&bom, &["serde_json", "regex", "greet", "polite"]);
    assert_eq!(record["dependencies_from"]["form"], "rust-script");
}

#[test]
fn cargo_script_frontmatter_builds_with_the_local_toolchain() {
    cargo_script("local");
}

#[test]
fn cargo_script_frontmatter_builds_in_the_builder_container() {
    cargo_script("docker");
}

#[test]
fn rust_script_manifest_builds_with_the_local_toolchain() {
    rust_script("local");
}

#[test]
fn rust_script_manifest_builds_in_the_builder_container() {
    rust_script("docker");
}
