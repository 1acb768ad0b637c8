//! `ruchy image build ...`: the stand-in `ruchy` CLI in examples/ruchy-host mounts our command
//! and runs it through `ruchy_image::cli::run` on a current-thread runtime.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// Builds examples/ruchy-host into this build's target directory (its dependencies are
/// ours, already compiled) and returns the `ruchy` binary.
fn ruchy_host() -> PathBuf {
    // The test binary is TARGET/debug/deps/ruchy_host-HASH.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "ruchy",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success(), "building examples/ruchy-host failed");
    profile_dir.join("ruchy")
}

#[test]
fn ruchy_image_build_works_mounted_in_the_ruchy_cli() {
    let ruchy = ruchy_host();
    let help = Command::new(&ruchy)
        .args(["image", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["build", "compare", "run", "builder", "dockerfile"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }

    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("fib");
    let run = Command::new(&ruchy)
        .args(["image", "build"])
        .arg(example("fibonacci.rs"))
        .args(["--optimize", "aggressive", "--oci-layout"])
        .arg(&layout)
        .args(["--json", "-"])
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let metrics: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(metrics["optimization_level"], "aggressive");
    // With an engine up (.ci/run starts one), the default builder is the container one.
    assert_eq!(metrics["builder"], "docker", "{stderr}");
    assert!(stderr.contains("→ Compiling fibonacci.rs (aggressive preset, docker builder)"));

    // A third-party reader takes the image, and it is the one the record names.
    let (summary, config) = skopeo_inspect(&layout, "aggressive");
    assert_eq!(summary["Digest"], metrics["image"]["digest"]);
    assert_eq!(config["config"]["User"], "65532:65532");

    // Errors and exit codes are the binary's own.
    let bad = Command::new(&ruchy)
        .args(["image", "build", "/no/such/app.rs"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .starts_with("error: cannot read source /no/such/app.rs"));
}
