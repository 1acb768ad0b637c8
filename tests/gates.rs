//! Gates before publishing: a build over a size budget is measured and reported, and publishes
//! nothing: no archive, no OCI layout, no engine tag, no manifest in a registry (a real
//! `docker-registry`, read back by skopeo). The same command within budget publishes all four,
//! so the checks below can tell the difference.

mod common;
mod guards;
mod registries;

use std::path::Path;

use common::*;
use guards::Images;
use registries::*;

/// Whether the engine holds `tag`.
fn engine_has(tag: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .expect("docker runs")
        .status
        .success()
}

/// The registry's tags of `repository`, by skopeo; `None` when the registry knows no such
/// repository (nothing was ever pushed there).
fn registry_tags(registry: &Registry, repository: &str) -> Option<Vec<String>> {
    let reference = format!("docker://{}/{repository}", registry.address);
    let run = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false", &reference])
        .output()
        .expect("skopeo runs; `bash .ci/setup` installs it");
    if !run.status.success() {
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("404 (Not Found)") || stderr.contains("NAME_UNKNOWN"),
            "skopeo failed otherwise: {stderr}"
        );
        return None;
    }
    let listed: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let mut tags: Vec<String> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        // The SBOM referrer's fallback tag (`sha256-<digest>`) is not an image of ours.
        .filter(|t| !t.starts_with("sha256-"))
        .collect();
    tags.sort();
    Some(tags)
}

/// `build fibonacci -O aggressive --max-binary-size BUDGET` with every output: an archive, a
/// layout, an engine tag and a push, and the record on stdout.
fn build_everywhere(out: &Path, tag: &str, push: &str, budget: &str) -> Run {
    ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--output",
        out.join("image.tar").to_str().unwrap(),
        "--oci-layout",
        out.join("layout").to_str().unwrap(),
        "--tag",
        tag,
        "--push",
        push,
        "--max-binary-size",
        budget,
        "--json",
        "-",
    ])
}

#[test]
fn a_build_over_budget_publishes_nothing_and_reports_the_numbers() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let out = tempfile::tempdir().unwrap();
    let tag = "ruchy-image-test-gates:over";
    let _images = Images(vec![tag.to_string()]);
    let push = format!("{}/gates/fib:over", registry.address);

    let over = build_everywhere(out.path(), tag, &push, "1KB");
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    // The record is on stdout, with the numbers, the overrun and no outputs.
    let record = over.metrics();
    let binary = record["binary_size"].as_u64().unwrap();
    assert!(binary > 1000, "{record}");
    assert!(record["image"]["compressed_size"].as_u64().unwrap() > 0);
    assert_eq!(record["outputs"], serde_json::json!([]), "{record}");
    let overrun = &record["over_budget"][0];
    assert_eq!(overrun["budget"]["limit"], "binary", "{record}");
    assert_eq!(overrun["budget"]["bytes"], 1000, "{record}");
    assert_eq!(overrun["size"], binary, "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("nothing was published") && error.contains(&binary.to_string()),
        "{error}"
    );
    // The summary (on stderr, as the JSON takes stdout) says nothing went out, then the error.
    assert!(
        over.stderr
            .contains(&format!("✓ Built {tag} (aggressive preset)"))
            && over.stderr.contains(
                "output    none: over the size budget, nothing was written, tagged or pushed"
            ),
        "{}",
        over.stderr
    );
    assert!(
        over.stderr.contains(&format!(
            "error: aggressive: binary is {binary} bytes, over the budget of 1000 bytes (--max-binary-size 1KB)"
        )),
        "{}",
        over.stderr
    );
    assert!(!over.stderr.contains("Writing"), "{}", over.stderr);
    // Nothing anywhere: no file, no layout, no tag, no repository in the registry.
    assert_eq!(entries(out.path()), Vec::<String>::new(), "nothing written");
    assert!(!engine_has(tag), "{tag} was loaded");
    assert_eq!(registry_tags(&registry, "gates/fib"), None);

    // --json FILE gets the same record.
    let json = out.path().join("record.json");
    let to_file = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--tag",
        tag,
        "--max-image-size",
        "1KB",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(to_file.code, Some(1), "{}", to_file.stderr);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written["over_budget"][0]["budget"]["limit"], "image");
    assert_eq!(written["outputs"], serde_json::json!([]));
    assert!(!engine_has(tag), "{tag} was loaded");
    std::fs::remove_file(&json).unwrap();

    // Within budget, the same command publishes all four.
    let within = build_everywhere(out.path(), tag, &push, &binary.to_string()).ok();
    let record = within.metrics();
    assert_eq!(record["over_budget"], serde_json::Value::Null, "{record}");
    let kinds: Vec<&str> = record["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in ["oci-layout", "archive", "registry", "engine"] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }
    assert_eq!(entries(out.path()), ["image.tar", "layout"]);
    assert!(engine_has(tag));
    assert_eq!(
        registry_tags(&registry, "gates/fib"),
        Some(vec!["over".into()])
    );
}

#[test]
fn compare_publishes_only_the_presets_within_budget() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let aggressive = ruchy_image(["build", &fib(), "-O", "aggressive", "--json", "-"])
        .ok()
        .metrics()["binary_size"]
        .as_u64()
        .unwrap();
    let push = format!("{}/gates/compare", registry.address);
    let run = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "none,aggressive",
        "--push",
        &push,
        "--max-binary-size",
        &aggressive.to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("error: none: binary is")
            && run.stderr.contains(&format!(
                "over the budget of {aggressive} bytes (--max-binary-size {aggressive})"
            )),
        "{}",
        run.stderr
    );
    let report = run.metrics();
    let none = &report["results"][0];
    assert_eq!(none["optimization_level"], "none", "{report}");
    assert!(
        none["binary_size"].as_u64().unwrap() > aggressive,
        "{report}"
    );
    assert_eq!(none["outputs"], serde_json::json!([]), "{report}");
    assert_eq!(none["over_budget"][0]["preset"], "none", "{report}");
    let within = &report["results"][1];
    assert_eq!(within["outputs"][0]["kind"], "registry", "{report}");
    // Only aggressive reached the registry.
    assert_eq!(
        registry_tags(&registry, "gates/compare"),
        Some(vec!["aggressive".into()])
    );
}
