//! `ruchy-image lambda`: the chapter's handler packaged as a Lambda zip and a container-image
//! function, run against a Runtime API emulator on loopback (no AWS endpoint is reachable
//! here): the chapter's `{"name": "NASA"}`, a handler error, a panic, cold start to the first
//! `/next`, and the bad inputs.

mod common;
mod guards;
mod lambda_api;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use guards::Images;
use lambda_api::{Emulator, Outcome, NASA_ANSWER, NASA_EVENT};

const WAIT: Duration = Duration::from_secs(30);

/// `unzip`s the zip's `bootstrap` into `dir`; its path.
fn unzip_bootstrap(zip: &Path, dir: &Path) -> std::path::PathBuf {
    let listing = tool("unzip", &["-Z", "-l", zip.to_str().unwrap()]).ok();
    // One entry, an executable, at zip's first possible time (SOURCE_DATE_EPOCH 0).
    assert!(
        listing.stdout.contains("number of entries: 1"),
        "{}",
        listing.stdout
    );
    assert!(
        listing.stdout.contains("-rwxr-xr-x")
            && listing.stdout.contains("80-Jan-01 00:00 bootstrap"),
        "{}",
        listing.stdout
    );
    tool(
        "unzip",
        &[
            "-q",
            "-o",
            zip.to_str().unwrap(),
            "-d",
            dir.to_str().unwrap(),
        ],
    )
    .ok();
    dir.join("bootstrap")
}

/// Runs `bootstrap` against an emulator serving `events`; the emulator, the process and the
/// time from spawn to its first `/next`.
fn serve(bootstrap: &Path, events: &[&str]) -> (Emulator, std::process::Child, Duration) {
    let emulator = Emulator::start(events.iter().map(|e| e.to_string()).collect());
    let started = Instant::now();
    let child = Command::new(bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &emulator.address)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cold_start = emulator.first_next(WAIT) - started;
    (emulator, child, cold_start)
}

/// The answers of the chapter's handler (examples/lambda): a greeting, a handler error, and a
/// panic that is reported and ends the process.
fn check_handler(bootstrap: &Path) -> Duration {
    let events = [NASA_EVENT, r#"{"name": ""}"#, r#"{"name": "panic"}"#];
    let (emulator, mut child, cold_start) = serve(bootstrap, &events);
    assert_eq!(
        emulator.result(WAIT),
        (
            "req-0".to_string(),
            Outcome::Response(NASA_ANSWER.to_string())
        )
    );
    assert_eq!(
        emulator.result(WAIT),
        (
            "req-1".to_string(),
            Outcome::Error {
                kind: "Handler.Error".into(),
                document: r#"{"errorMessage":"the name is empty","errorType":"Handler.Error"}"#
                    .into()
            }
        )
    );
    let (id, outcome) = emulator.result(WAIT);
    assert_eq!(id, "req-2");
    let Outcome::Error { kind, document } = outcome else {
        panic!("a panic should be reported as an error: {outcome:?}");
    };
    assert_eq!(kind, "Runtime.Panic");
    assert!(document.contains("asked to panic"), "{document}");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "a panicking bootstrap must exit non-zero"
    );
    cold_start
}

#[test]
fn the_chapter_s_handler_is_a_zip_that_answers_the_runtime_api() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("function.zip");
    let hello = repo().join("examples/lambda/hello.rs");
    let record = ruchy_image([
        "lambda",
        hello.to_str().unwrap(),
        "-O",
        "aggressive",
        "-o",
        zip.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(record["runtime"], "template");
    assert_eq!(record["linkage"], "static");
    assert_eq!(record["zip_size"], std::fs::metadata(&zip).unwrap().len());
    assert!(
        record["zip_size"].as_u64() < record["binary_size"].as_u64(),
        "{record:#}"
    );
    let bootstrap = unzip_bootstrap(&zip, &dir.path().join("unzipped"));
    assert_eq!(
        record["binary_size"],
        std::fs::metadata(&bootstrap).unwrap().len()
    );
    let cold_start = check_handler(&bootstrap);
    eprintln!("cold start to the first /next: {cold_start:?}");

    // The same source gives the same zip, byte for byte.
    let again = dir.path().join("again.zip");
    ruchy_image([
        "lambda",
        hello.to_str().unwrap(),
        "-O",
        "aggressive",
        "-o",
        again.to_str().unwrap(),
        "-q",
    ])
    .ok();
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&zip).unwrap());

    // The Ruchy version of the handler answers the same.
    let ruchy_zip = dir.path().join("ruchy.zip");
    let hello_ruchy = repo().join("examples/lambda/hello.ruchy");
    ruchy_image([
        "lambda",
        hello_ruchy.to_str().unwrap(),
        "-o",
        ruchy_zip.to_str().unwrap(),
        "-q",
    ])
    .ok();
    let bootstrap = unzip_bootstrap(&ruchy_zip, &dir.path().join("ruchy"));
    let (emulator, mut child, _) = serve(&bootstrap, &[NASA_EVENT]);
    assert_eq!(
        emulator.result(WAIT).1,
        Outcome::Response(NASA_ANSWER.to_string())
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_container_image_function_runs_bootstrap_from_lambda_s_path() {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("ruchy-image-test/lambda:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    let hello = repo().join("examples/lambda/hello.rs");
    let record = ruchy_image([
        "lambda",
        hello.to_str().unwrap(),
        "-o",
        dir.path().join("function.zip").to_str().unwrap(),
        "--lambda-image",
        "--tag",
        &tag,
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(
        record["image"]["entrypoint"],
        serde_json::json!(["/var/runtime/bootstrap"])
    );
    let workdir = tool(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Config.WorkingDir}}",
            &tag,
        ],
    )
    .ok();
    assert_eq!(workdir.stdout.trim(), "/var/task");
    // The engine runs it against the emulator on the host's loopback.
    let emulator = Emulator::start(vec![NASA_EVENT.to_string()]);
    let name = format!("ruchy-image-test-lambda-{}", std::process::id());
    let mut container = Command::new("docker")
        .args(["run", "--rm", "--name", &name, "--network", "host", "-e"])
        .arg(format!("AWS_LAMBDA_RUNTIME_API={}", emulator.address))
        .arg(&tag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answer = emulator.result(WAIT);
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    container.wait().unwrap();
    assert_eq!(answer.1, Outcome::Response(NASA_ANSWER.to_string()));
}

#[test]
fn what_cannot_be_a_lambda_function_is_refused_and_leaves_no_zip() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("function.zip");
    let fails_with = |source: &Path, extra: &[&str], code: i32, expected: &str| {
        let mut args = vec![
            "lambda",
            source.to_str().unwrap(),
            "-o",
            zip.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = ruchy_image(args);
        assert_eq!(run.code, Some(code), "{}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "expected {expected:?}:\n{}",
            run.stderr
        );
        assert!(!zip.exists(), "a zip was left");
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    };
    let fails = |source: &Path, code: i32, expected: &str| fails_with(source, &[], code, expected);
    // A single file without a handler.
    fails(
        &example("fibonacci.rs"),
        2,
        "defines `fn handle_request(event) -> response`",
    );
    // A dynamically linked executable would not start on Lambda's OS.
    fails(
        &std::env::current_exe().unwrap(),
        1,
        "is dynamically linked",
    );
    // A base with a file where Lambda's runtime directory goes: no place for bootstrap.
    let base = format!("ruchy-image-test/lambda-base:{}", std::process::id());
    let _images = Images(vec![base.clone()]);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("runtime"), "a file, not a directory").unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY runtime /var/runtime\n",
    )
    .unwrap();
    tool(
        "docker",
        &["build", "-q", "-t", &base, context.path().to_str().unwrap()],
    )
    .ok();
    let layout = dir.path().join("layout");
    let run = ruchy_image([
        "lambda",
        repo().join("examples/lambda/hello.rs").to_str().unwrap(),
        "-o",
        zip.to_str().unwrap(),
        "--lambda-image",
        "--base",
        &base,
        "--oci-layout",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("/var/runtime is not a directory"),
        "{}",
        run.stderr
    );
    assert!(!layout.exists(), "a layout was left");
    assert!(!zip.exists(), "a zip was left");

    // --tag makes no sense without an image.
    let run = ruchy_image([
        "lambda",
        example("fibonacci.rs").to_str().unwrap(),
        "-o",
        zip.to_str().unwrap(),
        "--tag",
        "x:1",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--lambda-image"), "{}", run.stderr);

    // Nor --load-platform: a function is one platform, chosen with --platform.
    fails_with(
        &repo().join("examples/lambda/hello.rs"),
        &["--load-platform", "linux/amd64"],
        2,
        "a Lambda function is one platform: choose it with --platform",
    );
}
