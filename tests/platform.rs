//! `--platform linux/arm64`: a static aarch64 musl binary from the builder (cross-compiled,
//! with the std `builder import-host` put in), in an image the engine runs under qemu through
//! binfmt_misc (set up by .ci/setup), and a Lambda bootstrap for arm64 that answers the
//! Runtime API emulator. Also what a platform cannot be.

mod common;
mod guards;
mod lambda_api;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use guards::{builder_image, Images};
use lambda_api::{Emulator, Outcome};

/// The ELF machine of a file, as `file` names it.
fn machine(path: &str) -> String {
    tool("file", &["-b", path]).ok().stdout
}

#[test]
fn an_arm64_image_from_the_builder_runs_under_qemu() {
    let builder = builder_image();
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("ruchy-image-test/arm64:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    let fib = example("fibonacci.rs");
    let record = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "-O",
        "aggressive",
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
    .ok()
    .metrics();
    assert_eq!(
        record["optimization_flags"]["target"],
        "aarch64-unknown-linux-musl"
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
    let run = tool(
        "docker",
        &["run", "--rm", "--platform", "linux/arm64", &tag],
    )
    .ok();
    assert!(
        run.stdout.contains("fibonacci(30) = 832040"),
        "{}",
        run.stdout
    );
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
    let emulator = Emulator::start(vec![r#"{"name": "NASA"}"#.to_string()]);
    let mut child = Command::new(&bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &emulator.address)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answer = emulator.result(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        answer.1,
        Outcome::Response(r#"{"body":"Hello, NASA!","statusCode":200}"#.to_string())
    );
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
    // A prebuilt binary must be for the platform asked for.
    let busybox = dir.path().join("busybox");
    std::fs::copy("/bin/busybox", &busybox).unwrap();
    fails(
        &[busybox.to_str().unwrap(), "--platform", "linux/arm64"],
        2,
        "is a Linux amd64 executable, and --platform is linux/arm64",
    );
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
