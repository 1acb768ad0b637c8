//! A prebuilt binary as SOURCE: an executable built elsewhere is packaged as it is, with the
//! same checks and image rules as a compiled one, and no compile (no builder, no cargo).
//! The binary is Debian's static busybox (installed by .ci/setup): glibc, not ours, not Rust.

mod common;
mod guards;

use std::path::{Path, PathBuf};

use common::*;
use guards::Images;

/// A copy of the static busybox in `dir`, named `name`.
fn busybox_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/busybox", &path).expect("Debian's busybox-static at /bin/busybox");
    path
}

#[test]
fn a_prebuilt_static_binary_is_packaged_as_it_is_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let binary = busybox_in(dir.path(), "busybox");
    let bytes = std::fs::read(&binary).unwrap();
    let tag = format!("ruchy-image-test/prebuilt:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    let layout = dir.path().join("layout");
    let run = ruchy_image([
        "build",
        binary.to_str().unwrap(),
        "--tag",
        &tag,
        "--oci-layout",
        layout.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    assert!(
        run.stderr.contains("no compile (prebuilt)"),
        "{}",
        run.stderr
    );
    let record = run.metrics();
    assert_eq!(record["builder"], "prebuilt");
    assert_eq!(record["compile_time_ms"], 0);
    assert_eq!(record["binary_size"], bytes.len() as u64);
    assert_eq!(record["linkage"], "static");
    // Debian's static busybox carries glibc's ABI note.
    assert_eq!(record["libc"], "glibc");
    // No flags and no std: we did not compile it, so we do not claim how it was compiled.
    assert!(record.get("optimization_flags").is_none(), "{record:#}");
    assert!(record.get("std").is_none(), "{record:#}");
    assert!(record["assemble_time_ms"].as_u64().is_some(), "{record:#}");

    // The image holds the very bytes, where a compiled binary would go, run as non-root.
    let bundle = umoci_unpack(&layout, tag.rsplit(':').next().unwrap());
    let rootfs = bundle.path().join("bundle/rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("usr/local/bin/busybox")).unwrap(),
        bytes
    );
    let labels = tool(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &tag,
        ],
    )
    .ok();
    let labels: serde_json::Value = serde_json::from_str(&labels.stdout).unwrap();
    assert_eq!(labels["dev.ruchy.image.prebuilt"], "true", "{labels:#}");
    assert!(labels.get("dev.ruchy.image.flags").is_none(), "{labels:#}");
    let user = tool(
        "docker",
        &["image", "inspect", "--format", "{{.Config.User}}", &tag],
    )
    .ok();
    assert_eq!(user.stdout.trim(), "65532:65532");
    let echo = tool("docker", &["run", "--rm", &tag, "echo", "packaged"]).ok();
    assert_eq!(echo.stdout.trim(), "packaged");

    // Reproducible like any build: the same file gives the same image.
    let again = ruchy_image([
        "build",
        binary.to_str().unwrap(),
        "--no-load",
        "--json",
        "-",
    ])
    .ok();
    assert_eq!(
        again.metrics()["image"]["digest"],
        record["image"]["digest"]
    );
}

#[test]
fn a_prebuilt_binary_s_problems_are_clear_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let binary = busybox_in(dir.path(), "app");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let fails = |args: &[&str], expected: &str| {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.extend(["--no-load", "--oci-layout", layout.to_str().unwrap()]);
        let run = ruchy_image(&all);
        assert_eq!(run.code, Some(2), "{args:?}:\n{}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{}",
            run.stderr
        );
        assert!(
            entries(out.path()).is_empty(),
            "{args:?} left {:?}",
            entries(out.path())
        );
    };
    let app = binary.to_str().unwrap();
    // What would change a compile cannot apply to a binary that is already built.
    fails(
        &[
            app,
            "--opt-level",
            "z",
            "--target",
            "x86_64-unknown-linux-musl",
        ],
        "invalid options for a prebuilt binary `--target --opt-level`",
    );
    fails(&[app, "--bin", "server"], "server");
    let sbom = out.path().join("sbom.json");
    fails(
        &[app, "--sbom", sbom.to_str().unwrap()],
        "is a prebuilt binary: its SBOM comes from the build that made it",
    );
    // A dynamically linked one needs its loader: scratch has none, and the hint is about
    // where it is built, not our compile flags.
    let dynamic = std::env::current_exe().unwrap();
    let run = ruchy_image([
        "build",
        dynamic.to_str().unwrap(),
        "--no-load",
        "--oci-layout",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("is dynamically linked"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("link it statically where it is built"),
        "{}",
        run.stderr
    );
    assert!(
        entries(out.path()).is_empty(),
        "left {:?}",
        entries(out.path())
    );
    // A file that is neither a source nor an executable.
    let script = dir.path().join("run");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fails(
        &[script.to_str().unwrap()],
        "or a Linux executable (ELF) built elsewhere",
    );
    // compare has nothing to compare: one binary, whatever the preset.
    let run = ruchy_image(["compare", app, "--presets", "none,size"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("there is one binary, so no presets to compare"),
        "{}",
        run.stderr
    );
}
