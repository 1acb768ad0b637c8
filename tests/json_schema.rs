//! The JSON records against `schemas/build-record.schema.json`: a successful build's, a
//! failed build's (`--json` still gets a record, with the error), an over-budget build's and
//! `compare --format json`'s, each as the binary writes it, checked by the `jsonschema` crate.

mod common;

use common::*;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schemas/build-record.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

/// Panics with every violation unless `json` is valid.
fn assert_valid(validator: &jsonschema::Validator, json: &serde_json::Value) {
    let errors: Vec<String> = validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\nin {json:#}");
}

#[test]
fn build_records_match_the_schema() {
    let validator = validator();
    let out = tempfile::tempdir().unwrap();
    let sbom = out.path().join("sbom.json");
    let layout = out.path().join("layout");
    let built = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--oci-layout",
        layout.to_str().unwrap(),
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(built["schema"], 1, "{built:#}");
    assert_valid(&validator, &built);

    // The schema is strict: an undocumented field or another version is refused.
    let mut unknown = built.clone();
    unknown["undocumented"] = serde_json::json!(1);
    assert!(!validator.is_valid(&unknown));
    let mut other = built.clone();
    other["schema"] = serde_json::json!(2);
    assert!(!validator.is_valid(&other));

    // Over a budget: measured, nothing published, the overrun and the error in the record.
    let over = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--max-binary-size",
        "1KB",
        "--json",
        "-",
    ]);
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    let over = over.metrics();
    assert_eq!(over["over_budget"][0]["budget"]["limit"], "binary");
    assert_valid(&validator, &over);
}

#[test]
fn a_failed_build_still_writes_its_record_and_bad_input_writes_none() {
    let validator = validator();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("record.json");
    let broken = fixture("broken.rs");
    let failed = ruchy_image([
        "build",
        broken.to_str().unwrap(),
        "-O",
        "none",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(record["schema"], 1);
    assert_eq!(record["optimization_level"], "none");
    assert_eq!(record["source_file"], broken.to_str().unwrap());
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .starts_with("compiling broken failed"),
        "{record:#}"
    );
    assert_valid(&validator, &record);

    // The same on stdout, with -q.
    let stdout = ruchy_image([
        "build",
        broken.to_str().unwrap(),
        "-O",
        "none",
        "-q",
        "--json",
        "-",
    ]);
    assert_eq!(stdout.code, Some(1), "{}", stdout.stderr);
    assert_eq!(stdout.metrics(), record);

    // Bad input is refused before anything runs, and writes nothing.
    let missing = out.path().join("missing.json");
    let bad = ruchy_image([
        "build",
        "/no/such/app.rs",
        "--json",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(!missing.exists());
}

#[test]
fn comparisons_match_the_schema() {
    let validator = validator();
    let report = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "none,aggressive",
        "--format",
        "json",
    ])
    .ok()
    .metrics();
    assert_eq!(report["schema"], 1, "{report:#}");
    assert_eq!(report["results"][1]["schema"], 1, "{report:#}");
    assert_valid(&validator, &report);

    // Failed presets are `{"preset", "error"}` entries.
    let broken = ruchy_image([
        "compare",
        fixture("broken.rs").to_str().unwrap(),
        "--presets",
        "none",
        "--format",
        "json",
    ]);
    assert_eq!(broken.code, Some(1), "{}", broken.stderr);
    let broken = broken.metrics();
    assert_eq!(broken["results"][0]["preset"], "none");
    assert_valid(&validator, &broken);
}
