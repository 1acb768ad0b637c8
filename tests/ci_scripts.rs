//! `benchmarks/docker-size-comparison.sh`, the CI size check: it prints the comparison, passes
//! the chapter's 400,000-byte budget by default, and passes at a budget equal to the biggest
//! measured size, fails one byte below it. The sizes come from `ruchy-image compare --format
//! json` of the same source, never from this file. Builds go through the docker builder
//! (the musl one `.ci/setup` makes), as they do in CI.

mod common;

use std::process::Command;

use common::*;

/// The presets the script checks by default: the ones people ship.
const SHIPPED: [&str; 3] = ["aggressive", "nasa", "size"];

/// Runs the script on the fibonacci example with `env`, through the binary under test and the
/// tests' shared cache (each preset compiles once for every test).
fn size_check(env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("benchmarks/docker-size-comparison.sh"))
        .env("RUCHY_IMAGE", env!("CARGO_BIN_EXE_ruchy-image"))
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", "docker")
        // Sizes only: no images loaded into the engine for cold starts.
        .env("RUCHY_IMAGE_COLD_START_RUNS", "0")
        .env_remove("MAX_BINARY_SIZE")
        .env_remove("MAX_IMAGE_SIZE")
        .env_remove("PRESETS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("CARGO_TARGET_DIR");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The biggest binary and stored image over the shipped presets, as `compare` measures them.
fn biggest() -> (u64, u64) {
    let fib = example("fibonacci.rs");
    let presets = SHIPPED.join(",");
    let args = ["compare", fib.to_str().unwrap(), "--presets", &presets];
    let report = ruchy_image_with(args.into_iter().chain(["--format", "json"]), |cmd| {
        cmd.env("RUCHY_IMAGE_BUILDER", "docker");
    })
    .ok()
    .metrics();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), SHIPPED.len(), "{report}");
    let max = |field: &dyn Fn(&serde_json::Value) -> u64| results.iter().map(field).max().unwrap();
    (
        max(&|r| r["binary_size"].as_u64().unwrap()),
        max(&|r| r["image"]["compressed_size"].as_u64().unwrap()),
    )
}

fn assert_table(run: &Run) {
    assert!(run.stdout.starts_with("| Preset "), "{}", run.stdout);
    for preset in SHIPPED {
        assert!(
            run.stdout.contains(&format!("| {preset} ")),
            "{preset} row in:\n{}",
            run.stdout
        );
    }
}

#[test]
fn the_size_check_passes_at_the_budget_and_fails_below_it() {
    let (binary, image) = biggest();
    let (binary_text, image_text) = (binary.to_string(), image.to_string());

    let at = size_check(&[
        ("MAX_BINARY_SIZE", &binary_text),
        ("MAX_IMAGE_SIZE", &image_text),
    ]);
    assert_eq!(at.code, Some(0), "{}", at.stderr);
    assert_table(&at);

    let below = (binary - 1).to_string();
    let over = size_check(&[("MAX_BINARY_SIZE", &below), ("MAX_IMAGE_SIZE", &image_text)]);
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    assert_table(&over);
    assert!(
        over.stderr.contains(&format!(
            "binary is {binary} bytes, over the budget of {below} bytes"
        )),
        "{}",
        over.stderr
    );

    let below = (image - 1).to_string();
    let over = size_check(&[("MAX_IMAGE_SIZE", &below)]);
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    assert!(
        over.stderr.contains(&format!(
            "image is {image} bytes stored, over the budget of {below} bytes"
        )),
        "{}",
        over.stderr
    );
}

#[test]
fn the_chapter_s_budget_is_the_default_and_passes() {
    let defaults = size_check(&[]);
    assert_eq!(defaults.code, Some(0), "{}", defaults.stderr);
    assert!(
        defaults.stderr.contains("--max-binary-size 400000"),
        "{}",
        defaults.stderr
    );
    assert_table(&defaults);
    let (binary, _) = biggest();
    assert!(binary <= 400_000, "{binary}");
}

#[test]
fn bad_budgets_are_input_errors() {
    let unreadable = size_check(&[("MAX_BINARY_SIZE", "40XB")]);
    assert_eq!(unreadable.code, Some(2), "{}", unreadable.stderr);
    assert!(unreadable.stdout.is_empty(), "{}", unreadable.stdout);
}

#[test]
fn the_table_also_goes_to_the_github_job_summary() {
    let summary = tempfile::NamedTempFile::new().unwrap();
    let path = summary.path().to_str().unwrap();
    let run = size_check(&[("GITHUB_STEP_SUMMARY", path), ("PRESETS", "aggressive")]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let written = std::fs::read_to_string(summary.path()).unwrap();
    assert_eq!(written, run.stdout);
    assert!(written.contains("| aggressive "), "{written}");
}
