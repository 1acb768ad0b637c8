//! Single `.rs` files with their own manifest: cargo-script frontmatter and rust-script's
//! `//! ```cargo` block. One build per form, checked for its output, SBOM and record.

mod common;

use common::*;

/// Builds a fixture with the local builder, with an SBOM; returns the record and the SBOM.
fn build(name: &str) -> (serde_json::Value, serde_json::Value, String) {
    let out = tempfile::tempdir().unwrap();
    let sbom = out.path().join("app.cdx.json");
    let run = ruchy_image([
        "build",
        fixture(&format!("frontmatter/{name}")).to_str().unwrap(),
        "--output",
        out.path().join("app.tar").to_str().unwrap(),
        "--no-load",
        "--tag",
        &format!("frontmatter-{name}:test"),
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let bom = serde_json::from_str(&std::fs::read_to_string(&sbom).unwrap()).unwrap();
    (run.metrics(), bom, run.stderr)
}

fn component_names(bom: &serde_json::Value) -> Vec<String> {
    let components = bom["components"].as_array().unwrap();
    components
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn output_of(record: &serde_json::Value) -> String {
    let binary = record["binary_path"].as_str().unwrap();
    let run = tool(binary, &[]).ok();
    run.stdout
}

#[test]
fn cargo_script_frontmatter_brings_registry_and_path_dependencies() {
    let (record, bom, _) = build("words.rs");
    assert_eq!(
        output_of(&record).trim(),
        r#"{"found":"42","greeting":"hello"}"#
    );
    let names = component_names(&bom);
    for name in ["serde_json", "regex", "greet"] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert_eq!(record["dependencies_from"]["form"], "cargo-script");
    assert_eq!(
        record["dependencies_from"]["dependencies"],
        serde_json::json!(["greet", "regex", "serde_json"])
    );
    // The file's [package] version is the program's.
    assert!(bom.to_string().contains("pkg:cargo/words@0.3.0"), "{bom}");
}

#[test]
fn rust_script_manifest_brings_dependencies() {
    let (record, bom, _) = build("script.rs");
    assert_eq!(output_of(&record).trim(), r#"{"form":"rust-script"}"#);
    assert!(component_names(&bom).iter().any(|n| n == "serde_json"));
    assert_eq!(record["dependencies_from"]["form"], "rust-script");
}
