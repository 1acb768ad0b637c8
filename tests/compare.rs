//! `ruchy-image compare` and the size budgets, end to end: real cargo builds of the fibonacci
//! example (in the shared cache, so presets built once are reused), checked against what
//! `build --json` reports for the same presets.

mod common;

use common::*;
use ruchy_image::metrics::human_size;

const PRESETS: [&str; 5] = ["none", "balanced", "aggressive", "nasa", "size"];

/// `build SOURCE -O PRESET --json -`, as JSON.
fn build_json(source: &str, preset: &str) -> serde_json::Value {
    ruchy_image(["build", source, "-O", preset, "--json", "-"])
        .ok()
        .metrics()
}

/// A record without what differs from run to run (wall times) and from command to command
/// (where the settings came from).
fn without_times(mut record: serde_json::Value) -> serde_json::Value {
    let object = record.as_object_mut().expect("a record is an object");
    object.remove("compile_time_ms");
    object.remove("assemble_time_ms");
    // Where each setting came from: each command's own (build's -O, compare's --presets).
    object.remove("settings");
    record
}

/// The table row that starts with `preset`.
/// The preset's rows in the table's two parts (sizes; times and reductions), one per line.
fn row(table: &str, preset: &str) -> String {
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(preset))
        .collect();
    assert_eq!(rows.len(), 2, "{preset} rows in:\n{table}");
    rows.join("\n")
}

#[test]
fn compare_reports_what_build_reports_for_every_preset() {
    let json = ruchy_image(["compare", &fib(), "--format", "json"]).ok();
    for (i, preset) in PRESETS.iter().enumerate() {
        let line = format!("→ [{}/5] {preset}...", i + 1);
        assert!(json.stderr.contains(&line), "{line} in:\n{}", json.stderr);
    }
    let report = json.metrics();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{report}");
    for (preset, result) in PRESETS.iter().zip(results) {
        let built = build_json(&fib(), preset);
        assert_eq!(result["optimization_level"], *preset);
        assert_eq!(result["binary_size"], built["binary_size"], "{preset}");
        assert_eq!(
            result["image"]["digest"], built["image"]["digest"],
            "{preset}"
        );
        assert_eq!(
            result["image"]["compressed_size"], built["image"]["compressed_size"],
            "{preset}"
        );
        assert_eq!(result["settings"]["lto"], "default", "{preset}");
        assert_eq!(result["settings"]["builder"], "env RUCHY_IMAGE_BUILDER");
        // The whole record is the same, but for the wall times of this run.
        assert_eq!(
            without_times(result.clone()),
            without_times(built),
            "{preset}"
        );
    }

    // Reductions are against none, from the same numbers.
    assert_eq!(report["baseline"], "none");
    let size = |i: usize| results[i]["binary_size"].as_u64().unwrap() as f64;
    let aggressive = &report["reductions"][2];
    assert_eq!(aggressive["preset"], "aggressive");
    let factor = (size(0) / size(2) * 10.0).round() / 10.0;
    let percent = ((1.0 - size(2) / size(0)) * 1000.0).round() / 10.0;
    assert_eq!(aggressive["binary_reduction_factor"].as_f64(), Some(factor));
    assert_eq!(
        aggressive["binary_reduction_percent"].as_f64(),
        Some(percent)
    );
    assert!(factor > 2.0, "aggressive is {factor}x smaller than none");

    // The table shows those numbers, one row per preset.
    let table = ruchy_image(["compare", &fib()]).ok().stdout;
    assert!(
        table.contains("Binary reduction") && table.contains("Image stored"),
        "{table}"
    );
    // Five presets with reductions fit an 80-column terminal (characters, not bytes).
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "{line}\n{table}");
    }
    for (preset, result) in PRESETS.iter().zip(results) {
        let row = row(&table, preset);
        let binary = human_size(result["binary_size"].as_u64().unwrap());
        let stored = human_size(result["image"]["compressed_size"].as_u64().unwrap());
        let unpacked = human_size(result["image"]["uncompressed_size"].as_u64().unwrap());
        for cell in [binary, stored, unpacked] {
            assert!(row.contains(&cell), "{preset}: {cell} not in {row}");
        }
    }
    assert!(row(&table, "none").contains("baseline"), "{table}");
    let aggressive_row = row(&table, "aggressive");
    assert!(
        aggressive_row.contains(&format!("{percent:.1}% ({factor:.1}x)")),
        "{aggressive_row}"
    );

    // CSV: exact numbers, same again.
    let csv = ruchy_image(["compare", &fib(), "--format", "csv"])
        .ok()
        .stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    for (line, result) in lines[1..].iter().zip(results) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], result["optimization_level"]);
        assert_eq!(fields[1], "ok");
        assert_eq!(fields[2], result["binary_size"].to_string());
        assert_eq!(fields[3], result["image"]["compressed_size"].to_string());
    }

    // Markdown: a header, a rule, five rows.
    let markdown = ruchy_image(["compare", &fib(), "--format", "markdown"])
        .ok()
        .stdout;
    let lines: Vec<&str> = markdown.lines().collect();
    assert_eq!(lines.len(), 7, "{markdown}");
    assert!(
        lines[1].starts_with("|---") && lines[1].ends_with(":|"),
        "{markdown}"
    );
}

#[test]
fn binary_budget_fails_compare_after_the_table() {
    let measured = build_json(&fib(), "aggressive")["binary_size"]
        .as_u64()
        .unwrap();
    let over = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "aggressive",
        "--max-binary-size",
        &(measured - 1).to_string(),
    ]);
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    assert!(
        over.stderr.contains(&format!(
            "error: aggressive: binary is {measured} bytes, over the budget of {} bytes (--max-binary-size {})",
            measured - 1,
            measured - 1
        )),
        "{}",
        over.stderr
    );
    // The table is still printed.
    assert!(row(&over.stdout, "aggressive").contains(&human_size(measured)));

    // With a unit, and both budgets over: both named.
    let both = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "aggressive",
        "--max-binary-size",
        "1kb",
        "--max-image-size",
        "1KiB",
    ]);
    assert_eq!(both.code, Some(1), "{}", both.stderr);
    assert!(
        both.stderr.contains(&format!(
            "aggressive: binary is {measured} bytes, over the budget of 1000 bytes (--max-binary-size 1kb)"
        )) && both
            .stderr
            .contains("over the budget of 1024 bytes (--max-image-size 1KiB)"),
        "{}",
        both.stderr
    );

    // A budget equal to the size passes.
    ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "aggressive",
        "--max-binary-size",
        &measured.to_string(),
    ])
    .ok();
}

#[test]
fn image_budget_fails_build_after_the_summary() {
    let stored = build_json(&fib(), "aggressive")["image"]["compressed_size"]
        .as_u64()
        .unwrap();
    let budget = (stored - 1).to_string();
    let over = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--max-image-size",
        &budget,
    ]);
    assert_eq!(over.code, Some(1), "{}", over.stderr);
    assert!(
        over.stdout.contains("✓ Built fibonacci:aggressive"),
        "{}",
        over.stdout
    );
    assert!(
        over.stderr.contains(&format!(
            "error: aggressive: image is {stored} bytes stored, over the budget of {budget} bytes (--max-image-size {budget})"
        )),
        "{}",
        over.stderr
    );

    // Just enough passes, and so does a roomy budget with a unit.
    for budget in [stored.to_string(), "1.5MB".to_string(), "1MiB".to_string()] {
        ruchy_image([
            "build",
            &fib(),
            "-O",
            "aggressive",
            "--max-image-size",
            &budget,
        ])
        .ok();
    }

    // The binary budget on build, too.
    let binary = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--max-binary-size",
        "400KB",
    ]);
    assert_eq!(binary.code, Some(1), "{}", binary.stderr);
    assert!(
        binary
            .stderr
            .contains("over the budget of 400000 bytes (--max-binary-size 400KB)"),
        "{}",
        binary.stderr
    );
}

#[test]
fn bad_sizes_and_presets_are_usage_errors() {
    for (args, expected) in [
        (
            vec!["build", "--max-binary-size", "40XB"],
            "invalid --max-binary-size `40XB`: unknown unit `XB`",
        ),
        (
            vec!["compare", "--max-image-size", "40XB"],
            "invalid --max-image-size `40XB`: unknown unit `XB`",
        ),
        (
            vec!["compare", "--max-binary-size", "big"],
            "invalid --max-binary-size `big`: expected a number",
        ),
        // One line of ours, not the parser's text; no unit past the ones help lists.
        (
            vec!["build", "--max-binary-size", "99999999999999999999"],
            "invalid --max-binary-size `99999999999999999999`: too large: sizes go up to 9007199254740992 bytes (8 PiB)",
        ),
        (
            vec!["build", "--max-binary-size", "1e30"],
            "invalid --max-binary-size `1e30`: unknown unit `e30`",
        ),
        (
            vec!["build", "--max-image-size", "1PB"],
            "invalid --max-image-size `1PB`: unknown unit `PB`",
        ),
        (
            vec!["compare", "--presets", "none,fast"],
            "[possible values: none, balanced, aggressive, nasa, size]",
        ),
        (
            vec!["compare", "--presets", "nasa,none,nasa"],
            "invalid --presets `nasa,none,nasa`: nasa is listed twice",
        ),
    ] {
        let source = fib();
        let mut all = args.clone();
        all.push(&source);
        let run = ruchy_image(&all);
        assert_eq!(run.code, Some(2), "{args:?}:\n{}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{}",
            run.stderr
        );
        // Refused before anything was built.
        assert!(!run.stderr.contains("→"), "{args:?}:\n{}", run.stderr);
    }
}

#[test]
fn a_failing_preset_is_named_and_the_others_still_build() {
    // release-only.rs fails under none (debug assertions) and builds under aggressive.
    let source = fixture("release-only.rs").display().to_string();
    let json = ruchy_image([
        "compare",
        &source,
        "--presets",
        "none,aggressive",
        "--format",
        "json",
    ]);
    assert_eq!(json.code, Some(1), "{}", json.stderr);
    assert!(
        json.stderr.contains("→ [2/2] aggressive..."),
        "{}",
        json.stderr
    );
    assert!(
        json.stderr
            .contains("error: none: compiling release-only failed"),
        "{}",
        json.stderr
    );
    let report = json.metrics();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["preset"], "none");
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("compiling release-only failed"),
        "{report}"
    );
    assert_eq!(results[1]["optimization_level"], "aggressive");
    assert!(results[1]["binary_size"].as_u64().unwrap() > 0);
    // No none, no reductions.
    assert_eq!(report["baseline"], serde_json::Value::Null);
    assert_eq!(report["reductions"], serde_json::json!([]));

    let table = ruchy_image(["compare", &source, "--presets", "none,aggressive"]);
    assert_eq!(table.code, Some(1));
    assert!(
        row(&table.stdout, "none").contains("failed"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("\nnone failed: compiling release-only failed"),
        "{}",
        table.stdout
    );
    let size = results[1]["binary_size"].as_u64().unwrap();
    assert!(row(&table.stdout, "aggressive").contains(&human_size(size)));
}

#[test]
fn every_failure_is_named_when_nothing_builds() {
    let run = ruchy_image([
        "compare",
        fixture("broken.rs").to_str().unwrap(),
        "--presets",
        "none,balanced",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for preset in ["none", "balanced"] {
        assert!(
            row(&run.stdout, preset).contains("failed"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("\n{preset} failed: compiling broken failed")),
            "{}",
            run.stdout
        );
        assert!(
            run.stderr
                .contains(&format!("\n  {preset}: compiling broken failed")),
            "{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("error: the comparison failed:"),
        "{}",
        run.stderr
    );
}

#[test]
fn chart_is_an_svg_naming_every_preset() {
    let out = tempfile::tempdir().unwrap();
    let chart = out.path().join("charts/fib.svg");
    let run = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "none,aggressive",
        "--chart",
        chart.to_str().unwrap(),
        "--format",
        "json",
    ])
    .ok();
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    let document = roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let texts: Vec<String> = root
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            n.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect()
        })
        .collect();
    // Each preset is labelled in each of the three groups.
    for preset in ["none", "aggressive"] {
        let labels = texts.iter().filter(|t| t.as_str() == preset).count();
        assert_eq!(labels, 3, "{preset} in {texts:?}");
    }
    // The smaller binary is labelled with its real size and marked.
    let aggressive = run.metrics()["results"][1]["binary_size"].as_u64().unwrap();
    let label = format!("{} ({aggressive} bytes) · smallest", human_size(aggressive));
    assert!(texts.contains(&label), "{label} not in {texts:?}");
    assert_eq!(entries(out.path()), ["charts"], "no temp files left");
}

#[test]
fn unwritable_chart_fails_before_building() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("chart.svg");
    let run = ruchy_image(["compare", &fib(), "--chart", under_a_file.to_str().unwrap()]);
    // The user's path: a usage error.
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot write the chart"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("→"), "{}", run.stderr);
}
