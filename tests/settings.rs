//! Project settings end to end: `[package.metadata.ruchy-image]` in a Cargo project and a
//! `ruchy-image.toml` beside a single file reach real builds' images (read back with skopeo)
//! and records, flags win over them, and a service build takes them from the upload (a local
//! machine's own settings ignored there, a bad one refused with its file and line). The
//! refusals of the command line are in bad_input.rs, the merge's rules in the library's
//! unit tests (src/pipeline/plan/settings.rs).

mod common;
mod guards;
#[macro_use]
mod service;

use std::path::Path;
use std::time::Duration;

use common::*;
use service::*;

/// A Cargo project whose Cargo.toml holds settings: scalars, lists, a flag without a value
/// and a preset's table.
fn project(dir: &Path) -> std::path::PathBuf {
    let project = dir.join("app");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        r#"[package]
name = "settings-app"
version = "0.1.0"
edition = "2021"

[workspace]

[package.metadata.ruchy-image]
optimize = "none"
env = ["GREETING=hi", "MODE=file"]
label = ["team=web"]
port = ["8080"]
user = "web:1000:1000"
workdir = "/srv"
tag = "settings-app:dev"
no-load = true
oci-layout = "out/layout"

[package.metadata.ruchy-image.presets.none]
strip = "symbols"
"#,
    )
    .unwrap();
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() { println!(\"{}\", std::env::var(\"GREETING\").unwrap_or_default()); }\n",
    )
    .unwrap();
    project
}

fn env_of(config: &serde_json::Value) -> Vec<String> {
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cargo_toml_settings_reach_the_image_and_flags_win_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = project(dir.path());
    let run = ruchy_image(["build", app.to_str().unwrap(), "--verbose", "--json", "-"]).ok();
    let record = run.metrics();
    assert_eq!(record["optimization_level"], "none");
    // The preset's own table: none keeps symbols by default.
    assert_eq!(record["optimization_flags"]["strip_level"], "symbols");
    let settings = &record["settings"];
    assert_eq!(settings["optimize"], "Cargo.toml:9", "{settings:#}");
    assert_eq!(settings["env"], "Cargo.toml:10");
    assert_eq!(settings["presets.none.strip"], "Cargo.toml:20");
    assert_eq!(settings["builder"], "env RUCHY_IMAGE_BUILDER");
    assert_eq!(settings["json"], serde_json::Value::Null, "the shell's own");
    assert_eq!(settings["base"], "default");
    assert!(
        run.stderr.contains("settings from")
            && run
                .stderr
                .contains("Cargo.toml (the command line wins over it")
            && run.stderr.contains("    label ")
            && run.stderr.contains("Cargo.toml:11"),
        "{}",
        run.stderr
    );

    // The layout where the file says, relative to it; the image as the settings say.
    let layout = app.join("out/layout");
    let (summary, config) = skopeo_inspect(&layout, "dev");
    assert_eq!(summary["Labels"]["team"], "web");
    let c = &config["config"];
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/srv");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    let env = env_of(&config);
    assert!(env.contains(&"GREETING=hi".into()) && env.contains(&"MODE=file".into()));

    // Flags win, and a list given replaces the file's.
    let other = dir.path().join("other");
    let run = ruchy_image([
        "build",
        app.to_str().unwrap(),
        "--env",
        "GREETING=flag",
        "--label",
        "team=cli",
        "--oci-layout",
        other.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let record = run.metrics();
    assert_eq!(record["settings"]["env"], "flag");
    assert_eq!(record["settings"]["port"], "Cargo.toml:12");
    let (summary, config) = skopeo_inspect(&other, "dev");
    assert_eq!(summary["Labels"]["team"], "cli");
    let env = env_of(&config);
    assert!(env.contains(&"GREETING=flag".into()), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("MODE=")), "{env:?}");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
}

#[test]
fn a_settings_file_beside_a_single_file_reaches_its_image() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("fibonacci.rs");
    std::fs::copy(example("fibonacci.rs"), &source).unwrap();
    std::fs::write(
        dir.path().join("ruchy-image.toml"),
        "# what every build of this directory's files gets\noptimize = \"none\"\nlabel = [\"kind=single-file\"]\noutput = \"fibonacci.tar\"\n",
    )
    .unwrap();
    let record = ruchy_image(["build", source.to_str().unwrap(), "--json", "-"])
        .ok()
        .metrics();
    assert_eq!(record["optimization_level"], "none");
    assert_eq!(record["settings"]["label"], "ruchy-image.toml:3");
    assert_eq!(record["settings"]["output"], "ruchy-image.toml:4");
    let archive = format!(
        "docker-archive:{}",
        dir.path().join("fibonacci.tar").display()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &archive]).ok().stdout).unwrap();
    assert_eq!(summary["Labels"]["kind"], "single-file");
}

/// The service reads the upload's settings for what the request does not say; the flags it
/// was sent with win; the asking machine's own settings (an output path) are ignored and
/// said to be; a bad setting is refused with its file and line.
#[test]
fn a_service_build_takes_the_settings_of_its_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let upload = dir.path().join("upload");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::copy(example("fibonacci.rs"), upload.join("fibonacci.rs")).unwrap();
    std::fs::write(
        upload.join("ruchy-image.toml"),
        "optimize = \"size\"\nenv = [\"FROM=settings\"]\nlabel = [\"team=service\"]\noci-layout = \"out\"\n",
    )
    .unwrap();
    let context = context_of(&upload);

    let accepted = submit(&server, context.path(), "optimize=aggressive");
    let request = &accepted["request"];
    assert_eq!(request["presets"], serde_json::json!(["aggressive"]));
    assert_eq!(request["settings"]["optimize"], "request");
    assert_eq!(request["settings"]["env"], "ruchy-image.toml:2");
    assert_eq!(
        request["settings"]["oci-layout"],
        "ruchy-image.toml:4 (ignored by the service)"
    );
    let id = accepted["id"].as_str().unwrap().to_string();
    let done = wait_for(&server, &id, Duration::from_secs(600), ended);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        done["results"][0]["settings"]["label"],
        "ruchy-image.toml:3"
    );
    let log = curl(&server, "GET", &format!("/v1/builds/{id}/log"), &[], true).body;
    assert!(
        log.contains("`oci-layout` (ruchy-image.toml:4)") && log.contains("the service ignores it"),
        "{log}"
    );

    let tarball = dir.path().join("image.tar");
    let download = curl(
        &server,
        "GET",
        &format!("/v1/builds/{id}/image?preset=aggressive"),
        &["-o", tarball.to_str().unwrap()],
        true,
    );
    assert_eq!(download.status, 200, "{}", download.body);
    let archive = format!("docker-archive:{}", tarball.display());
    let config: serde_json::Value = serde_json::from_str(
        &tool("skopeo", &["inspect", "--config", &archive])
            .ok()
            .stdout,
    )
    .unwrap();
    assert!(
        env_of(&config).contains(&"FROM=settings".into()),
        "{config}"
    );
    assert_eq!(config["config"]["Labels"]["team"], "service");

    // A bad setting: 400, with the upload's file and line, and nothing queued.
    std::fs::write(upload.join("ruchy-image.toml"), "port = [\"http\"]\n").unwrap();
    let bad = context_of(&upload);
    let answer = curl(
        &server,
        "POST",
        "/v1/builds",
        &[
            "--data-binary",
            &format!("@{}", bad.path().display()),
            "-H",
            "Content-Type: application/gzip",
        ],
        true,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("./ruchy-image.toml:1:9: invalid port `http`"),
        "{}",
        answer.body
    );
    let list = curl(&server, "GET", "/v1/builds", &[], true).json();
    assert_eq!(list["builds"].as_array().unwrap().len(), 1);
}
