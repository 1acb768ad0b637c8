//! The library driven as another program would: a request, a plan, events, a record. Tests
//! run on tokio's default current-thread runtime, which the library must not need more than.

mod common;

use common::*;
use ruchy_image::event::{Event, Events};
use ruchy_image::plan::{BuilderChoice, Plan, Request};
use ruchy_image::preset::Preset;

fn request(source: &std::path::Path, builder: BuilderChoice) -> Request {
    let mut request = Request::new(source);
    request.source.cache_dir = cache_dir();
    request.presets = vec![Preset::Aggressive];
    request.builder = builder;
    request
}

#[tokio::test]
async fn a_docker_build_runs_on_a_current_thread_runtime_and_reports_events() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("fib");
    let mut request = request(&example("fibonacci.rs"), BuilderChoice::Docker);
    request.outputs.oci_layout = Some(layout.clone());
    let (seen, events) = recorder();
    let plan = Plan::resolve(request, &events).await.unwrap();
    assert_eq!(plan.builder(), "docker");
    let record = plan.build(&events).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(
        stages(&seen),
        [
            "prepare started",
            "prepare finished",
            "compile started",
            "compile finished",
            "assemble started",
            "assemble finished",
            "publish started",
            "publish finished"
        ]
    );
    let compiling = seen.iter().find_map(|e| match e {
        Event::Compiling { flags, builder, .. } => Some((flags.preset, builder.clone())),
        _ => None,
    });
    assert_eq!(compiling, Some((Preset::Aggressive, "docker".to_string())));
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Compiled { size, .. } if *size == record.binary_size)));
    // Every event is plain data a service can store.
    for event in seen.iter() {
        serde_json::to_value(event).unwrap();
    }
    let (summary, _) = skopeo_inspect(&layout, "aggressive");
    assert_eq!(
        summary["Digest"].as_str(),
        Some(record.image.digest.as_str())
    );
    assert_eq!(record.outputs[0].kind, "oci-layout");
}

#[tokio::test]
async fn a_comparison_reports_each_preset_and_writes_nothing() {
    let mut request = request(&example("fibonacci.rs"), BuilderChoice::Local);
    request.presets = vec![Preset::None, Preset::Aggressive];
    let (seen, events) = recorder();
    let plan = Plan::resolve(request, &events).await.unwrap();
    let comparisons = plan.compare(&events).await.unwrap();
    assert_eq!(comparisons.len(), 1);
    let (base, comparison) = &comparisons[0];
    assert_eq!(base, "scratch");
    let built: Vec<Preset> = comparison.records().map(|r| r.optimization_level).collect();
    assert_eq!(built, [Preset::None, Preset::Aggressive]);
    assert!(comparison.records().all(|r| r.outputs.is_empty()));
    let started: Vec<(usize, Preset)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::PresetStarted { index, preset, .. } => Some((*index, *preset)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(1, Preset::None), (2, Preset::Aggressive)]);
    let table = ruchy_image::report::presets(comparison, ruchy_image::report::Format::Markdown);
    assert!(table.unwrap().contains("| aggressive "));
}

#[tokio::test]
async fn a_build_takes_one_preset_and_bad_input_fails_before_any_stage() {
    let mut request = request(&example("fibonacci.rs"), BuilderChoice::Local);
    request.presets = vec![Preset::None, Preset::Nasa];
    let (seen, events) = recorder();
    let plan = Plan::resolve(request, &events).await.unwrap();
    assert!(plan.build(&events).await.unwrap_err().is_usage());

    let missing = request_for_missing_source();
    let error = Plan::resolve(missing, &events).await.unwrap_err();
    assert!(
        error.to_string().starts_with("cannot read source"),
        "{error}"
    );
    assert!(stages(&seen.lock().unwrap()).is_empty());
}

fn request_for_missing_source() -> Request {
    request(
        std::path::Path::new("/no/such/app.rs"),
        BuilderChoice::Docker,
    )
}

/// A remote URL with a token goes into labels without it: anyone who pulls reads labels.
#[tokio::test]
async fn git_credentials_never_reach_the_image() {
    let checkout = tempfile::tempdir().unwrap();
    let source = checkout.path().join("fib.rs");
    std::fs::copy(example("fibonacci.rs"), &source).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(checkout.path())
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://builder:s3cr3t-token@example.com/team/fib.git",
    ]);
    let layout = checkout.path().join("layout");
    let mut request = request(&source, BuilderChoice::Local);
    request.outputs.oci_layout = Some(layout.clone());
    let events = Events::none();
    let plan = Plan::resolve(request, &events).await.unwrap();
    plan.build(&events).await.unwrap();

    let (summary, config) = skopeo_inspect(&layout, "aggressive");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.source"],
        "https://example.com/team/fib.git"
    );
    assert_eq!(
        summary["Labels"]["org.opencontainers.image.source"],
        "https://example.com/team/fib.git"
    );
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(blob.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cr3t"), "a blob holds the token");
    }
}

/// The docker builder's cache key covers inherited RUSTFLAGS: changing them compiles again.
#[test]
fn a_changed_rustflags_rebuilds_in_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("flagged.rs");
    std::fs::write(
        &source,
        "fn main() { println!(\"{}\", if cfg!(ruchy_test_flag) { \"flag\" } else { \"plain\" }); }\n",
    )
    .unwrap();
    let build = |rustflags: Option<&str>| {
        let run = ruchy_image_with(
            [
                "build",
                source.to_str().unwrap(),
                "-O",
                "aggressive",
                "--builder",
                "docker",
                "--json",
                "-",
            ],
            |cmd| {
                cmd.env_remove("RUSTFLAGS")
                    .env_remove("CARGO_ENCODED_RUSTFLAGS");
                if let Some(flags) = rustflags {
                    cmd.env("RUSTFLAGS", flags);
                }
            },
        )
        .ok();
        run.metrics()["image"]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plain = build(None);
    let flagged = build(Some("--cfg ruchy_test_flag"));
    assert_ne!(plain, flagged, "the second build reused the first binary");
    assert_eq!(
        plain,
        build(None),
        "and the first comes back when the flags do"
    );
}
