//! `ruchy-image doctor`: on this machine as `.ci/setup` leaves it (ready), with the engine
//! gone, and without ruchy; each missing item says its fix, `--json` parses, and the exit code
//! says whether the default build can run. A builder image without the musl std is checked
//! in tests/musl.rs, beside the other uses of that image. On a service host, `--artifacts`
//! checks the artifact registry against real registries: one that takes the push, one that
//! is not there, one behind TLS and a login.

mod common;
mod registries;

use common::*;
use registries::{free_port, secure_parts, start_registry};

/// `doctor --json`, with `tweak` on the command.
fn doctor_json(tweak: impl FnOnce(&mut std::process::Command)) -> (Run, serde_json::Value) {
    let run = ruchy_image_with(["doctor", "--json"], tweak);
    let report = run.metrics();
    (run, report)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn this_machine_is_ready_for_the_default_build() {
    let (run, report) = doctor_json(|_| {});
    assert_eq!(run.code, Some(0), "{report}\n{}", run.stderr);
    assert_eq!(report["ready"], true, "{report}");
    let engine = check(&report, "engine");
    assert_eq!(engine["ok"], true, "{report}");
    assert!(
        engine["detail"].as_str().unwrap().contains("API 1."),
        "{engine}"
    );
    // .ci/setup's builder image, made by import-host, with both stds.
    let builder = check(&report, "builder image");
    assert!(
        builder["detail"]
            .as_str()
            .unwrap()
            .starts_with("ruchy-image-builder:"),
        "{builder}"
    );
    for name in ["builder musl std", "builder size std", "ruchy", "isolation"] {
        assert_eq!(check(&report, name)["ok"], true, "{name}: {report}");
    }
    // What a builder container sees was checked, and is said.
    let isolation = check(&report, "isolation")["detail"].as_str().unwrap();
    assert!(
        isolation.contains("no network while compiling"),
        "{isolation}"
    );
    assert!(isolation.contains("4096 processes"), "{isolation}");
    assert!(
        check(&report, "ruchy")["detail"]
            .as_str()
            .unwrap()
            .starts_with("ruchy 3."),
        "{report}"
    );

    // The same in words: a ✓ line per check and the verdict.
    let text = ruchy_image(["doctor"]).ok().stdout;
    assert!(text.lines().any(|l| l.starts_with("✓ engine")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("✓ builder musl std")),
        "{text}"
    );
    assert!(text.contains("ready: the default build"), "{text}");
}

#[test]
fn no_engine_is_a_failure_with_its_fix() {
    let (run, report) = doctor_json(|cmd| {
        cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    });
    assert_eq!(run.code, Some(1), "{report}\n{}", run.stderr);
    assert_eq!(report["ready"], false);
    let engine = check(&report, "engine");
    assert_eq!(engine["ok"], false);
    assert_eq!(engine["required"], true);
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains("no Docker engine answers at unix:///nonexistent/docker.sock"),
        "{engine}"
    );
    assert!(
        engine["fix"].as_str().unwrap().contains("sudo dockerd"),
        "{engine}"
    );
    assert_eq!(check(&report, "builder image")["ok"], false);
    assert!(
        run.stderr
            .contains("the default build cannot run here: engine, builder image missing"),
        "{}",
        run.stderr
    );

    // In words: the ✗ line and its fix under it.
    let text = ruchy_image_with(["doctor"], |cmd| {
        cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    });
    assert_eq!(text.code, Some(1));
    let lines: Vec<&str> = text.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("✗ engine"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        lines[at + 1].trim_start().starts_with("fix: start one"),
        "{}",
        text.stdout
    );
}

#[test]
fn no_ruchy_is_reported_with_its_install_command_and_does_not_fail() {
    // PATH keeps cargo's directory (doctor also checks --builder local) but not ruchy.
    let bin = tempfile::tempdir().unwrap();
    let rustc =
        ruchy_image::adapters::toolchain::Toolchain::probe(std::path::Path::new("rustc")).unwrap();
    for tool in [rustc.rustc, rustc.cargo] {
        std::os::unix::fs::symlink(&tool, bin.path().join(tool.file_name().unwrap())).unwrap();
    }
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.path().display());
    let (run, report) = doctor_json(|cmd| {
        cmd.env("PATH", &path);
    });
    let ruchy = check(&report, "ruchy");
    assert_eq!(ruchy["ok"], false, "{report}");
    assert_eq!(ruchy["required"], false);
    assert!(
        ruchy["fix"]
            .as_str()
            .unwrap()
            .contains("cargo install ruchy --locked"),
        "{ruchy}"
    );
    // A .rs build does not need it: the machine is still ready.
    assert_eq!(run.code, Some(0), "{report}\n{}", run.stderr);
    assert_eq!(report["ready"], true);
    assert_eq!(check(&report, "local toolchain")["ok"], true, "{report}");

    let text = ruchy_image_with(["doctor"], |cmd| {
        cmd.env("PATH", &path);
    })
    .ok()
    .stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("✗ ruchy") && l.contains("(optional) ruchy does not run")),
        "{text}"
    );
}

#[test]
fn a_service_host_s_artifact_registry_is_checked_for_a_push_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    // No credentials of this machine's: pushes go as nobody.
    let anonymous = |cmd: &mut std::process::Command| {
        cmd.env("DOCKER_CONFIG", dir.path());
    };
    let artifacts = |repository: &str, extra: &[&str]| {
        let mut args = vec!["doctor", "--json", "--artifacts", repository];
        args.extend(extra);
        let run = ruchy_image_with(args, anonymous);
        let report = run.metrics();
        (run.code, check(&report, "artifact registry").clone())
    };
    let open = start_registry("127.0.0.1", "127.0.0.1", None);
    let (code, ok) = artifacts(&format!("{}/builds", open.address), &[]);
    assert_eq!(code, Some(0), "{ok}");
    assert_eq!((&ok["ok"], &ok["required"]), (&true.into(), &true.into()));
    assert!(
        ok["detail"].as_str().unwrap().contains("takes pushes"),
        "{ok}"
    );

    let nowhere = format!("127.0.0.1:{}", free_port());
    let (code, missing) = artifacts(&format!("{nowhere}/builds"), &[]);
    assert_eq!(code, Some(1), "required: {missing}");
    assert_eq!(missing["ok"], false);
    assert!(
        missing["detail"].as_str().unwrap().contains(&nowhere),
        "{missing}"
    );
    assert!(
        missing["fix"]
            .as_str()
            .unwrap()
            .contains("start the registry"),
        "{missing}"
    );

    // TLS and htpasswd: without the CA, loopback is spoken to over plain HTTP, which a TLS
    // registry refuses; with it, the login is what is missing.
    let (secure, ca) = secure_parts(dir.path(), "127.0.0.1");
    let locked = start_registry("127.0.0.1", "127.0.0.1", Some(&secure));
    let repository = format!("{}/builds", locked.address);
    let (_, untrusted) = artifacts(&repository, &[]);
    assert!(
        untrusted["fix"].as_str().unwrap().contains("--registry-ca"),
        "{untrusted}"
    );
    let (code, refused) = artifacts(&repository, &["--registry-ca", ca.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{refused}");
    assert!(
        refused["fix"].as_str().unwrap().contains("docker login"),
        "{refused}"
    );

    // In words: the ✓ line, and a ✗ line with its fix under it.
    let text = ruchy_image_with(
        ["doctor", "--artifacts", &format!("{}/builds", open.address)],
        anonymous,
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("✓ artifact registry")),
        "{}",
        text.stdout
    );
    let text = ruchy_image_with(
        ["doctor", "--artifacts", &format!("{nowhere}/builds")],
        anonymous,
    );
    let lines: Vec<&str> = text.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("✗ artifact registry"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(
        lines[at + 1]
            .trim_start()
            .starts_with("fix: start the registry"),
        "{}",
        text.stdout
    );
}
