//! `--platform linux/arm64`: a static aarch64 musl binary from the builder (cross-compiled,
//! with the std `builder import-host` put in), in an image the engine runs under qemu through
//! binfmt_misc (set up by .ci/setup), and a Lambda bootstrap for arm64 that answers the
//! Runtime API emulator. Also what a platform cannot be.

mod common;
mod guards;
mod lambda_api;
mod registries;
mod service;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use guards::{builder_image, Images};
use lambda_api::{Emulator, Outcome, NASA_ANSWER, NASA_EVENT};
use registries::start_registry;

/// The ELF machine of a file, as `file` names it.
fn machine(path: &str) -> String {
    tool("file", &["-b", path]).ok().stdout
}

/// `docker run --platform linux/arm64` of the fibonacci image `image` prints its answer.
fn answers_under_qemu(image: &str) {
    let run = tool(
        "docker",
        &["run", "--rm", "--platform", "linux/arm64", image],
    )
    .ok();
    assert!(
        run.stdout.contains("fibonacci(30) = 832040"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_arm64_image_from_the_builder_runs_under_qemu() {
    let builder = builder_image();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("ruchy-image-test/arm64:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    let fib = example("fibonacci.rs");
    // nasa: its target-cpu=native is this machine's CPU, which aarch64 does not have.
    let run = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "-O",
        "nasa",
        "--platform",
        "linux/arm64",
        "--builder",
        "docker",
        "--builder-image",
        &builder,
        "--tag",
        &tag,
        "--oci-layout",
        dir.path().join("layout").to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let record = run.metrics();
    assert_eq!(
        record["optimization_flags"]["target"],
        "aarch64-unknown-linux-musl"
    );
    assert!(
        run.stderr.contains("nasa builds for its generic CPU"),
        "{}",
        run.stderr
    );
    assert!(
        !record["optimization_flags"].to_string().contains("native"),
        "{record}"
    );
    assert_eq!(record["libc"], "musl");
    assert_eq!(record["linkage"], "static");
    assert_eq!(record["image"]["architecture"], "arm64");
    let binary = record["binary_path"].as_str().unwrap();
    let file = machine(binary);
    assert!(
        file.contains("ARM aarch64") && file.contains("statically linked"),
        "{file}"
    );
    let arch = tool(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            &tag,
        ],
    )
    .ok();
    assert_eq!(arch.stdout.trim(), "linux/arm64");
    answers_under_qemu(&tag);
}

/// sha256 of `bytes`, as OCI writes digests.
fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The (architecture, manifest digest) pairs an image index lists.
fn platforms_of(index: &serde_json::Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux", "{m}");
            let arch = m["platform"]["architecture"].as_str().unwrap().to_string();
            (arch, m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn two_platforms_make_one_index_that_layouts_registries_and_engines_read() {
    let builder = builder_image();
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let dir = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let tag = format!("ruchy-image-test/multi:{id}");
    let pushed = format!("{}/ruchy-image-test/multi:{id}", registry.address);
    let _images = Images(vec![tag.clone(), pushed.clone()]);
    let (layout, archive) = (dir.path().join("layout"), dir.path().join("multi.tar"));
    let fib = example("fibonacci.rs");
    let build = |platforms: &str, extra: &[&str]| {
        let mut args = vec![
            "build",
            fib.to_str().unwrap(),
            "-O",
            "size",
            "--platform",
            platforms,
            "--builder",
            "docker",
            "--builder-image",
            &builder,
            "--json",
            "-",
        ];
        args.extend_from_slice(extra);
        ruchy_image(&args).ok().metrics()
    };
    let record = build(
        "linux/amd64,linux/arm64",
        &[
            "--tag",
            &tag,
            "--oci-layout",
            layout.to_str().unwrap(),
            "--output",
            archive.to_str().unwrap(),
            "--push",
            &pushed,
        ],
    );
    // One record per platform, each binary for its machine.
    let built: Vec<(String, String)> = record["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let arch = r["image"]["architecture"].as_str().unwrap().to_string();
            let machine = machine(r["binary_path"].as_str().unwrap());
            let expected = match arch.as_str() {
                "amd64" => "x86-64",
                _ => "ARM aarch64",
            };
            assert!(machine.contains(expected), "{arch}: {machine}");
            (arch, r["image"]["digest"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(built[0].0, "amd64");
    assert_eq!(built[1].0, "arm64");
    assert_eq!(
        record["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(record["loaded_platform"], "linux/amd64");
    let index_digest = record["digest"].as_str().unwrap();

    // The layout: skopeo reads the index with both platforms, and each platform's image.
    let oci = format!("oci:{}:{id}", layout.display());
    let raw = tool("skopeo", &["inspect", "--raw", &oci]).ok().stdout;
    assert_eq!(digest(raw.as_bytes()), index_digest);
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(platforms_of(&index), built);
    let arm = tool(
        "skopeo",
        &["--override-arch", "arm64", "inspect", "--config", &oci],
    )
    .ok()
    .stdout;
    let arm: serde_json::Value = serde_json::from_str(&arm).unwrap();
    assert_eq!(arm["architecture"], "arm64", "{arm}");
    // One entry: read without naming it, and listed by umoci; each platform's image has its
    // SBOM, found by its subject in the layout and by the fallback tag in the registry.
    let plain = format!("oci:{}", layout.display());
    let inspected = tool("skopeo", &["inspect", &plain]).ok().stdout;
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], index_digest);
    let listed = tool("umoci", &["ls", "--layout", layout.to_str().unwrap()]).ok();
    assert_eq!(listed.stdout.trim(), id.to_string());
    for (arch, image) in &built {
        let found = ruchy_image::pipeline::oci::referrer::in_layout(&layout, image).unwrap();
        let mut types: Vec<&str> = found
            .iter()
            .map(|f| f["artifactType"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(
            types,
            [
                "application/vnd.cyclonedx+json",
                "application/vnd.dsse.envelope.v1+json"
            ],
            "{arch}: the SBOM and the provenance"
        );
        let fallback = format!(
            "docker://{}/ruchy-image-test/multi:{}",
            registry.address,
            image.replacen(':', "-", 1)
        );
        let listed = tool(
            "skopeo",
            &["inspect", "--tls-verify=false", "--raw", &fallback],
        )
        .ok()
        .stdout;
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let mut digests: Vec<&serde_json::Value> = listed["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["digest"])
            .collect();
        digests.sort_by_key(|d| d.to_string());
        let ours: Vec<&serde_json::Value> = found.iter().map(|f| &f["digest"]).collect();
        assert_eq!(digests, ours, "{arch}");
    }

    // verify checks each platform's image of the index, in the layout and the registry.
    for reference in [plain.as_str(), pushed.as_str()] {
        let run = ruchy_image(["verify", reference, "--json"]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        let report = run.metrics();
        assert_eq!(report["digest"], index_digest);
        let mut checked: Vec<(String, String)> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["check"] == "provenance" && c["status"] == "pass")
            .map(|c| {
                let arch = c["platform"].as_str().unwrap().trim_start_matches("linux/");
                (arch.to_string(), c["image"].as_str().unwrap().to_string())
            })
            .collect();
        checked.sort();
        assert_eq!(checked, built, "{reference}");
    }

    // The registry holds the same index under the tag, as docker's own client reads it.
    let docker_ref = format!("docker://{pushed}");
    let raw = tool(
        "skopeo",
        &["inspect", "--tls-verify=false", "--raw", &docker_ref],
    )
    .ok()
    .stdout;
    assert_eq!(digest(raw.as_bytes()), index_digest);
    let manifest = tool("docker", &["manifest", "inspect", "--insecure", &pushed])
        .ok()
        .stdout;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(platforms_of(&manifest), built);
    // The engine pulls the arm64 image of the index and runs it under qemu.
    tool(
        "docker",
        &["pull", "-q", "--platform", "linux/arm64", &pushed],
    )
    .ok();
    answers_under_qemu(&pushed);

    // The engine load and the archive's docker part hold this machine's platform: the
    // amd64 image, whose ID is its config's digest.
    let amd64_config = r#"{{.Id}} {{.Architecture}}"#;
    let loaded = tool(
        "docker",
        &["image", "inspect", "--format", amd64_config, &tag],
    )
    .ok();
    tool("docker", &["rmi", &tag]).ok();
    tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    let reloaded = tool(
        "docker",
        &["image", "inspect", "--format", amd64_config, &tag],
    )
    .ok();
    assert_eq!(reloaded.stdout, loaded.stdout);
    assert!(
        loaded.stdout.trim().ends_with(" amd64"),
        "{}",
        loaded.stdout
    );
    let config = tool(
        "skopeo",
        &[
            "--override-arch",
            "amd64",
            "inspect",
            "--config",
            "--raw",
            &oci,
        ],
    )
    .ok()
    .stdout;
    let config = digest(config.as_bytes());
    assert!(
        loaded.stdout.starts_with(&config),
        "{} {config}",
        loaded.stdout
    );

    // The other order, the other load platform: the same index, byte for byte.
    let again = build(
        "linux/arm64,linux/amd64",
        &["--no-load", "--load-platform", "linux/arm64"],
    );
    assert_eq!(again["digest"], record["digest"]);
    assert_eq!(again["loaded_platform"], "linux/arm64");
}

#[test]
fn the_server_builds_an_index_and_the_cli_writes_it_here() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = service::data_dir(dir.path());
    let server = service::start(&data, &[]);
    let token = service::token_file(&data);
    let layout = dir.path().join("layout");
    let fib = example("fibonacci.rs");
    let record = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "-O",
        "size",
        "--platform",
        "linux/amd64,linux/arm64",
        "--server",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
        "--oci-layout",
        layout.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    let archs: Vec<&str> = record["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{record}");
    assert_eq!(record["outputs"][0]["kind"], "oci-layout");
    let oci = format!("oci:{}:size", layout.display());
    let raw = tool("skopeo", &["inspect", "--raw", &oci]).ok().stdout;
    assert_eq!(digest(raw.as_bytes()), record["digest"].as_str().unwrap());
    // The server compares one platform at a time.
    let run = ruchy_image([
        "compare",
        fib.to_str().unwrap(),
        "--platform",
        "linux/amd64,linux/arm64",
        "--server",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("compares one platform at a time"),
        "{}",
        run.stderr
    );
}

#[test]
fn compare_reports_each_platform_with_its_own_images() {
    let builder = builder_image();
    let dir = tempfile::tempdir().unwrap();
    // A name of the test's own: compare loads BIN:PRESET-ARCH into the engine.
    let bin = format!("fib-platforms-{}", std::process::id());
    let source = dir.path().join(format!("{bin}.rs"));
    std::fs::copy(example("fibonacci.rs"), &source).unwrap();
    let _images = Images(vec![
        format!("{bin}:size-amd64"),
        format!("{bin}:size-arm64"),
    ]);
    let run = ruchy_image([
        "compare",
        source.to_str().unwrap(),
        "--presets",
        "size",
        "--platform",
        "linux/amd64,linux/arm64",
        "--builder",
        "docker",
        "--builder-image",
        &builder,
        "--cold-start-runs",
        "2",
        "--format",
        "json",
    ])
    .ok();
    let report = run.metrics();
    let parts = report.as_array().unwrap();
    assert_eq!(parts.len(), 2, "{report}");
    for (part, arch) in parts.iter().zip(["amd64", "arm64"]) {
        assert_eq!(part["platform"], format!("linux/{arch}"));
        let result = &part["comparison"]["results"][0];
        assert_eq!(result["image"]["architecture"], arch, "{result}");
        assert_eq!(result["image"]["reference"], format!("{bin}:size-{arch}"));
        assert!(
            result["cold_start"]["median_ms"].as_f64().unwrap() > 0.0,
            "{result}"
        );
    }
}

#[test]
fn an_arm64_lambda_bootstrap_answers_the_runtime_api_under_qemu() {
    let builder = builder_image();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("function.zip");
    let hello = repo().join("examples/lambda/hello.rs");
    let record = ruchy_image([
        "lambda",
        hello.to_str().unwrap(),
        "--platform",
        "linux/arm64",
        "--builder",
        "docker",
        "--builder-image",
        &builder,
        "-o",
        zip.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(record["architecture"], "arm64");
    tool(
        "unzip",
        &[
            "-q",
            zip.to_str().unwrap(),
            "-d",
            dir.path().to_str().unwrap(),
        ],
    )
    .ok();
    let bootstrap = dir.path().join("bootstrap");
    assert!(machine(bootstrap.to_str().unwrap()).contains("ARM aarch64"));
    // binfmt_misc hands it to qemu-aarch64.
    let emulator = Emulator::start(vec![NASA_EVENT.to_string()]);
    let mut child = Command::new(&bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &emulator.address)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answer = emulator.result(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.1, Outcome::Response(NASA_ANSWER.to_string()));
}

#[test]
fn what_a_platform_cannot_be_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let fib = example("fibonacci.rs");
    let fails = |args: &[&str], code: i32, expected: &str| {
        let mut all = vec![
            "build",
            "--no-load",
            "--oci-layout",
            layout.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let run = ruchy_image(&all);
        assert_eq!(run.code, Some(code), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in\n{}",
            run.stderr
        );
        assert!(!layout.exists(), "{args:?} left a layout");
    };
    let fib = fib.to_str().unwrap();
    fails(
        &[fib, "--platform", "linux/s390x"],
        2,
        "expected linux/amd64 or linux/arm64",
    );
    fails(
        &[
            fib,
            "--platform",
            "linux/arm64",
            "--target",
            "x86_64-unknown-linux-musl",
        ],
        2,
        "--platform linux/arm64 builds for aarch64-* targets",
    );
    fails(
        &[fib, "--platform", "linux/arm64,linux/arm64"],
        2,
        "linux/arm64 is listed twice",
    );
    fails(
        &[
            fib,
            "--platform",
            "linux/amd64",
            "--load-platform",
            "linux/arm64",
        ],
        2,
        "--load-platform linux/arm64 is not one of them",
    );
    let both = "linux/amd64,linux/arm64";
    fails(
        &[
            fib,
            "--platform",
            both,
            "--target",
            "x86_64-unknown-linux-musl",
        ],
        2,
        "--target names one architecture",
    );
    let sbom = dir.path().join("sbom.json");
    fails(
        &[fib, "--platform", both, "--sbom", sbom.to_str().unwrap()],
        2,
        "an SBOM describes one binary",
    );
    fails(
        &[fib, "--platform", both, "--base", "oci:/nonexistent"],
        2,
        "a base is one platform's image",
    );
    // A prebuilt binary must be for the platform asked for.
    let busybox = dir.path().join("busybox");
    std::fs::copy("/bin/busybox", &busybox).unwrap();
    fails(
        &[busybox.to_str().unwrap(), "--platform", "linux/arm64"],
        2,
        "is a Linux amd64 executable, and --platform is linux/arm64",
    );
    fails(
        &[busybox.to_str().unwrap(), "--platform", both],
        2,
        "a prebuilt binary is for one platform",
    );
    // One zip is one architecture.
    let zip = dir.path().join("function.zip");
    let hello = repo().join("examples/lambda/hello.rs");
    let run = ruchy_image([
        "lambda",
        hello.to_str().unwrap(),
        "--platform",
        both,
        "-o",
        zip.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("a Lambda function runs on one architecture"),
        "{}",
        run.stderr
    );
    assert!(!zip.exists());
}

#[test]
fn a_builder_without_the_arm64_std_names_the_packages_that_make_one() {
    let builder = builder_image();
    let tag = format!("ruchy-image-test/no-arm64-std:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    // The builder with its aarch64 stds taken out: what a builder imported on a machine
    // without the cross packages has.
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {builder}\nRUN rm -rf \"$(rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-musl\" /usr/local/lib/ruchy-image/std/aarch64-unknown-linux-musl-*\n"
        ),
    )
    .unwrap();
    tool(
        "docker",
        &["build", "-q", "-t", &tag, context.path().to_str().unwrap()],
    )
    .ok();
    let layout = context.path().join("layout");
    let fib = example("fibonacci.rs");
    let run = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "--platform",
        "linux/arm64",
        "--builder",
        "docker",
        "--builder-image",
        &tag,
        "--no-load",
        "--oci-layout",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    // Without the musl std, the platform's glibc target is tried, and the image has no std
    // for that either.
    for expected in [
        "no standard library for aarch64-unknown-linux-gnu",
        "the std for aarch64-unknown-linux-musl",
        "gcc-aarch64-linux-gnu",
        "musl-dev:arm64",
        "libunwind",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    assert!(!layout.exists());
}
