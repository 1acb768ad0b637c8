//! `ruchy-image build` end to end: real cargo builds, images read back by skopeo and umoci,
//! binaries run from the unpacked rootfs.

mod common;

use std::path::Path;

use common::*;

/// Builds fibonacci with `preset` into a layout and checks the image with third-party tools.
fn check_preset(preset: &str, out: &Path) {
    let layout = out.join(preset);
    let run = ruchy_image([
        "build",
        example("fibonacci.rs").to_str().unwrap(),
        "--optimize",
        preset,
        "--oci-layout",
        layout.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let metrics = run.metrics();
    assert_eq!(metrics["optimization_level"], preset);
    assert_eq!(metrics["image"]["layer_count"], 2);
    assert!(run.stderr.contains("✓ Built fibonacci:"), "{}", run.stderr);

    // skopeo reads what we wrote, and agrees with our numbers.
    let (summary, config) = skopeo_inspect(&layout, preset);
    assert_eq!(summary["Digest"], metrics["image"]["digest"]);
    assert_eq!(summary["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(summary["Architecture"], host_arch());
    assert_eq!(summary["Labels"]["dev.ruchy.image.preset"], preset);
    let user = config["config"]["User"].as_str().unwrap();
    assert_eq!(user, "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"][0],
        "/usr/local/bin/fibonacci"
    );

    // umoci unpacks it; the rootfs is what a container would see.
    let bundle = umoci_unpack(&layout, preset);
    let rootfs = bundle.path().join("bundle/rootfs");
    let binary = rootfs.join("usr/local/bin/fibonacci");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(
        std::fs::metadata(&binary).unwrap().len(),
        metrics["binary_size"].as_u64().unwrap()
    );
    assert_eq!(mode(&rootfs.join("tmp")), 0o1777);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.contains("nonroot:x:65532:"), "{group}");

    let output = tool(binary.to_str().unwrap(), &["20"]).ok();
    assert!(
        output.stdout.starts_with("fibonacci(20) = 6765\n"),
        "{}",
        output.stdout
    );
}

#[test]
fn every_preset_builds_a_runnable_non_root_image() {
    let out = tempfile::tempdir().unwrap();
    for preset in ["none", "balanced", "aggressive", "nasa"] {
        check_preset(preset, out.path());
    }
}

#[test]
fn presets_shrink_the_binary_and_overhead_stays_under_2_kib() {
    let size = |preset: &str| {
        let m = ruchy_image([
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            preset,
            "--json",
            "-",
        ])
        .ok()
        .metrics();
        let overhead = m["image"]["overhead_size"].as_u64().unwrap();
        assert!(
            overhead <= 2048,
            "{preset}: image overhead {overhead} bytes"
        );
        m["binary_size"].as_u64().unwrap()
    };
    let (none, aggressive) = (size("none"), size("aggressive"));
    assert!(
        aggressive * 2 < none,
        "aggressive {aggressive} bytes vs none {none} bytes"
    );
}

#[test]
fn same_input_gives_the_same_digest_in_any_directory() {
    let build = |source: &Path| {
        ruchy_image([
            "build",
            source.to_str().unwrap(),
            "-O",
            "aggressive",
            // Named, not loaded: these tests read files, not the engine.
            "--no-load",
            "--tag",
            "fib:same",
            "--json",
            "-",
        ])
        .ok()
        .metrics()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        std::fs::copy(example("fibonacci.rs"), dir.path().join("fibonacci.rs")).unwrap();
    }
    let first = build(&a.path().join("fibonacci.rs"));
    let again = build(&a.path().join("fibonacci.rs"));
    let elsewhere = build(&b.path().join("fibonacci.rs"));
    assert_eq!(first["image"]["digest"], again["image"]["digest"]);
    assert_eq!(first["image"]["digest"], elsewhere["image"]["digest"]);

    // A different SOURCE_DATE_EPOCH is a different image, with the same binary.
    let later = ruchy_image_with(
        [
            "build",
            a.path().join("fibonacci.rs").to_str().unwrap(),
            "-O",
            "aggressive",
            // Named, not loaded: these tests read files, not the engine.
            "--no-load",
            "--tag",
            "fib:same",
            "--json",
            "-",
        ],
        |cmd| {
            cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        },
    )
    .ok()
    .metrics();
    assert_ne!(first["image"]["digest"], later["image"]["digest"]);
    assert_eq!(first["binary_size"], later["binary_size"]);
}

#[test]
fn ruchy_source_is_transpiled_and_built() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let run = ruchy_image([
        "build",
        example("fibonacci.ruchy").to_str().unwrap(),
        "--optimize",
        "nasa",
        "--verbose",
        "--oci-layout",
        layout.to_str().unwrap(),
    ])
    .ok();
    // The chapter's --verbose format.
    for line in [
        "→ Compiling fibonacci.ruchy...",
        "ℹ Optimization level: nasa",
        "ℹ LTO: fat",
        "ℹ target-cpu: native",
        "  -C embed-bitcode=yes",
        "✓ Successfully compiled to: ",
        "ℹ Binary size: ",
    ] {
        assert!(
            run.stderr.contains(line),
            "missing {line:?} in:\n{}",
            run.stderr
        );
    }
    let bundle = umoci_unpack(&layout, "nasa");
    let binary = bundle.path().join("bundle/rootfs/usr/local/bin/fibonacci");
    let output = tool(binary.to_str().unwrap(), &[]).ok();
    assert_eq!(output.stdout, "fibonacci(30) = 832040\n");

    // The record and the SBOM name the transpiler that made the Rust.
    let sbom = out.path().join("sbom.json");
    let record = ruchy_image([
        "build",
        example("fibonacci.ruchy").to_str().unwrap(),
        "--optimize",
        "nasa",
        "--sbom",
        sbom.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    let version = tool("ruchy", &["--version"]).ok().stdout.trim().to_string();
    assert_eq!(record["transpiled_by"], version.as_str());
    let bom: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sbom).unwrap()).unwrap();
    let properties = bom["metadata"]["properties"].as_array().unwrap();
    assert!(
        properties
            .iter()
            .any(|p| p["name"] == "ruchy-image:ruchy-version" && p["value"] == version.as_str()),
        "{bom}"
    );
}

#[test]
fn cargo_project_with_a_proc_macro_dependency_links_statically() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("serde-app.tar");
    let metrics = ruchy_image_with(
        [
            "build",
            fixture("serde-app").to_str().unwrap(),
            "-O",
            "aggressive",
            "--output",
            archive.to_str().unwrap(),
            // Named, not loaded: these tests read files, not the engine.
            "--no-load",
            "--tag",
            "serde-app:test",
            "--json",
            "-",
        ],
        // Keep the fixture's build out of the source tree.
        |cmd| {
            cmd.env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-target"),
            );
        },
    )
    .ok()
    .metrics();
    assert_eq!(metrics["linkage"], "static");
    assert_eq!(metrics["optimization_flags"]["static_link"], true);

    // The archive is an OCI archive too.
    let inspected = tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", archive.display())],
    )
    .ok();
    let summary: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(summary["Digest"], metrics["image"]["digest"]);
    assert_eq!(
        summary["Labels"]["org.opencontainers.image.version"],
        "1.2.3"
    );

    let binary = metrics["binary_path"].as_str().unwrap();
    let output = tool(binary, &[]).ok();
    assert_eq!(
        output.stdout,
        "{\"message\":\"hello from serde\",\"answer\":42}\n"
    );
}

#[test]
fn workspace_binaries_are_chosen_with_bin() {
    let workspace = fixture("workspace");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-target");
    let with_target = |cmd: &mut std::process::Command| {
        cmd.env("CARGO_TARGET_DIR", &target);
    };
    let ambiguous = ruchy_image_with(["build", workspace.to_str().unwrap()], with_target);
    assert_eq!(ambiguous.code, Some(2), "{}", ambiguous.stderr);
    assert!(
        ambiguous
            .stderr
            .contains("several binaries (alpha, beta, gamma)\n  hint: choose one with --bin NAME"),
        "{}",
        ambiguous.stderr
    );
    let missing = ruchy_image_with(
        ["build", workspace.to_str().unwrap(), "--bin", "delta"],
        with_target,
    );
    assert_eq!(missing.code, Some(2));
    assert!(
        missing
            .stderr
            .contains("no binary named `delta`; it has: alpha, beta, gamma"),
        "{}",
        missing.stderr
    );
    let chosen = ruchy_image_with(
        [
            "build",
            workspace.to_str().unwrap(),
            "--bin",
            "gamma",
            "-O",
            "none",
            "--json",
            "-",
        ],
        with_target,
    )
    .ok()
    .metrics();
    assert_eq!(chosen["image"]["reference"], "gamma:none");
    let output = tool(chosen["binary_path"].as_str().unwrap(), &[]).ok();
    assert_eq!(output.stdout, "gamma\n");
}

#[test]
fn image_options_reach_the_config_and_the_rootfs() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("nested/dirs/layout");
    ruchy_image([
        "build",
        example("http-server.rs").to_str().unwrap(),
        "-O",
        "aggressive",
        // Named, not loaded: these tests read files, not the engine.
        "--no-load",
        "--tag",
        "registry.example:5000/team/server:1.0",
        "--user",
        "web:1000:1001",
        "--env",
        "RUST_LOG=info",
        "--port",
        "8080",
        "--label",
        "team=core",
        "--workdir",
        "/data",
        "--path",
        "/app/server",
        "--oci-layout",
        layout.to_str().unwrap(),
    ])
    .ok();
    let (summary, config) = skopeo_inspect(&layout, "1.0");
    assert_eq!(summary["Labels"]["team"], "core");
    let c = &config["config"];
    assert_eq!(c["User"], "1000:1001");
    assert_eq!(c["Entrypoint"][0], "/app/server");
    assert_eq!(c["WorkingDir"], "/data");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("RUST_LOG=info")));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "registry.example:5000/team/server:1.0"
    );

    let bundle = umoci_unpack(&layout, "1.0");
    let rootfs = bundle.path().join("bundle/rootfs");
    assert!(rootfs.join("app/server").is_file());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("web:x:1000:1001:web:/home/web:"),
        "{passwd}"
    );
    use std::os::unix::fs::MetadataExt;
    let data = std::fs::metadata(rootfs.join("data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 1001));
}

#[test]
fn a_rebuilt_layout_replaces_the_old_one() {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    for preset in ["none", "aggressive"] {
        ruchy_image([
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            preset,
            // Named, not loaded: these tests read files, not the engine.
            "--no-load",
            "--tag",
            "fib:current",
            "--oci-layout",
            layout.to_str().unwrap(),
        ])
        .ok();
    }
    let (summary, _) = skopeo_inspect(&layout, "current");
    assert_eq!(summary["Labels"]["dev.ruchy.image.preset"], "aggressive");
    assert_eq!(entries(out.path()), ["layout"], "no temp dirs left behind");
}

#[test]
fn a_new_binary_file_is_seen_despite_the_metadata_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"grows\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let project = dir.path().to_str().unwrap();
    ruchy_image(["build", project, "-O", "none"]).ok();
    std::fs::create_dir_all(dir.path().join("src/bin")).unwrap();
    std::fs::write(dir.path().join("src/bin/second.rs"), "fn main() {}\n").unwrap();
    let run = ruchy_image(["build", project, "-O", "none"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("several binaries (grows, second)"),
        "{}",
        run.stderr
    );
}

#[test]
fn quiet_prints_nothing_but_errors_not_even_compiler_warnings() {
    // A copy with content of its own, so neither build finds a cached binary: cargo compiles
    // (and warns) in both, one per preset.
    let out = tempfile::tempdir().unwrap();
    let source = out.path().join("warn.rs");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let text = std::fs::read_to_string(fixture("warn.rs")).unwrap();
    std::fs::write(&source, format!("{text}// {nonce}\n")).unwrap();
    let build = |preset: &str, quiet: bool| {
        let layout = out.path().join(preset);
        let mut args = vec![
            "build",
            source.to_str().unwrap(),
            "-O",
            preset,
            "--oci-layout",
            layout.to_str().unwrap(),
        ];
        if quiet {
            args.push("-q");
        }
        ruchy_image(args).ok()
    };
    let loud = build("none", false);
    assert!(
        loud.stderr.contains("warning: unused variable: `unused`"),
        "{}",
        loud.stderr
    );
    let quiet = build("balanced", true);
    assert_eq!(quiet.stdout, "");
    assert_eq!(quiet.stderr, "", "-q printed:\n{}", quiet.stderr);
}
