//! Shared dependency builds through the engine: projects built with the same builder image
//! share one target volume, so a second project finds its dependencies compiled; projects
//! with the same package and binary name, one after the other or at once, each get their own
//! binary; `builder prune` lists and removes the cache volumes. Each test uses its own target
//! volume (`RUCHY_IMAGE_TARGET_VOLUME`) and artifact cache, and removes them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A target volume name (base) for one test, and the volumes made from it removed at the end.
struct TargetVolumes(String);

impl TargetVolumes {
    fn new(test: &str) -> TargetVolumes {
        TargetVolumes(format!("ruchy-image-test-{test}-{}", std::process::id()))
    }
}

impl Drop for TargetVolumes {
    fn drop(&mut self) {
        let list = tool(
            "docker",
            &["volume", "ls", "-q", "-f", &format!("name={}", self.0)],
        );
        for volume in list.stdout.lines().filter(|v| v.starts_with(&self.0)) {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", volume])
                .output();
        }
    }
}

/// `ruchy-image build DIR --builder docker -O none --json -` with the test's target volume
/// and artifact cache.
fn build(dir: &Path, volumes: &TargetVolumes, cache: &Path) -> Run {
    ruchy_image_with(
        [
            "build",
            dir.to_str().unwrap(),
            "--builder",
            "docker",
            "-O",
            "none",
            "--json",
            "-",
        ],
        |cmd| {
            cmd.env("RUCHY_IMAGE_TARGET_VOLUME", &volumes.0)
                .env("RUCHY_IMAGE_CACHE", cache);
        },
    )
    .ok()
}

/// A note the docker builder prints from cargo's JSON, of the shared dependency phase
/// (`shared dependencies: `) or of the project's compile (`cargo: `): (units fresh, units
/// compiled, names of the compiled ones).
fn units_of(run: &Run, note: &str) -> (usize, usize, Vec<String>) {
    let line = run
        .stderr
        .lines()
        .find_map(|l| l.split_once(note).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("no `{note}` unit summary:\n{}", run.stderr));
    // "N of M units fresh; compiled: a, b"
    let (counts, names) = line.split_once("; compiled: ").unwrap();
    let mut numbers = counts.split_whitespace().filter_map(|w| w.parse().ok());
    let (fresh, total) = (numbers.next().unwrap(), numbers.next().unwrap());
    let names = names
        .split(", ")
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    (fresh, total - fresh, names)
}

/// The project's compile's units.
fn cargo_units(run: &Run) -> (usize, usize, Vec<String>) {
    units_of(run, "ℹ cargo: ")
}

fn run_binary(record: &serde_json::Value) -> String {
    let binary = record["binary_path"].as_str().expect("binary_path");
    tool(binary, &[]).ok().stdout
}

#[test]
fn a_second_project_with_matching_dependencies_finds_them_compiled() {
    let volumes = TargetVolumes::new("shared-deps");
    let cache = tempfile::tempdir().unwrap();
    let apps = repo().join("benchmarks/apps");
    let first = build(&apps.join("deps-app"), &volumes, cache.path());
    let (_, compiled, _) = units_of(&first, "shared dependencies: ");
    assert!(
        compiled > 40,
        "deps-app's dependencies compiled only {compiled} units in an empty volume"
    );
    // The project itself compiles in its own target, from copies of them.
    let (fresh, _, names) = cargo_units(&first);
    assert_eq!(names, ["deps-app"], "{}", first.stderr);
    assert!(fresh > 40, "only {fresh} units copied:\n{}", first.stderr);

    // report-app: another app, the same dependencies at the same versions: the shared phase
    // compiles only its stand-in.
    let second = build(&apps.join("report-app"), &volumes, cache.path());
    let (fresh, _, names) = units_of(&second, "shared dependencies: ");
    assert_eq!(
        names,
        ["report-app"],
        "the shared phase compiled more than the stand-in:\n{}",
        second.stderr
    );
    assert!(fresh > 40, "only {fresh} units fresh:\n{}", second.stderr);
    let (fresh, _, names) = cargo_units(&second);
    assert_eq!(names, ["report-app"], "{}", second.stderr);
    assert!(fresh > 40, "only {fresh} units copied:\n{}", second.stderr);
    let record = second.metrics();
    let binary = record["binary_path"].as_str().unwrap();
    let out = Command::new(binary)
        .args(["--top", "1"])
        .stdin(std::fs::File::open(apps.join("report-app/Cargo.toml")).unwrap())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"top\":[{\"word\":"));
}

/// A project whose package and binary are both `app`, printing `message`.
fn app_project(message: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        format!("fn main() {{ println!(\"{message}\"); }}\n"),
    )
    .unwrap();
    dir
}

#[test]
fn projects_with_the_same_binary_name_each_get_their_own_binary() {
    let volumes = TargetVolumes::new("same-name");
    let cache = tempfile::tempdir().unwrap();
    // Both written before either builds: with their real mtimes, the second would look
    // older than the first's unit of the same name in the shared volume.
    let (one, two) = (app_project("one"), app_project("two"));
    let first = build(one.path(), &volumes, cache.path());
    let second = build(two.path(), &volumes, cache.path());
    assert_eq!(run_binary(&first.metrics()), "one\n");
    assert_eq!(run_binary(&second.metrics()), "two\n");

    // At once, several times: the one that finishes first must not hand over the other's
    // uplifted binary.
    for round in 0..3 {
        let messages = [format!("one {round}"), format!("two {round}")];
        let projects = messages.clone().map(|m| app_project(&m));
        let records: Vec<serde_json::Value> = std::thread::scope(|scope| {
            let handles: Vec<_> = projects
                .iter()
                .map(|p| scope.spawn(|| build(p.path(), &volumes, cache.path()).metrics()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (record, message) in records.iter().zip(&messages) {
            assert_eq!(run_binary(record), format!("{message}\n"));
        }
    }
}

#[test]
fn builder_prune_lists_sizes_keeps_volumes_in_use_and_removes_the_rest() {
    let prefix = format!("ruchy-image-test-prune-{}-", std::process::id());
    let (idle, busy) = (format!("{prefix}idle"), format!("{prefix}busy"));
    let image = tool("docker", &["image", "ls", "-q", "ruchy-image-builder"]).ok();
    let image = image
        .stdout
        .lines()
        .next()
        .expect("a builder image (`.ci/setup` makes one)");
    for volume in [&idle, &busy] {
        tool(
            "docker",
            &[
                "volume",
                "create",
                "--label",
                "dev.ruchy.image.cache=prune test",
                volume,
            ],
        )
        .ok();
    }
    struct Cleanup(Vec<String>, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.1]).output();
            for v in &self.0 {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f", v])
                    .output();
            }
        }
    }
    let container = format!("{prefix}sleeper");
    let _cleanup = Cleanup(vec![idle.clone(), busy.clone()], container.clone());
    // 3 MiB in the idle one; the busy one is mounted by a running container.
    tool(
        "docker",
        &[
            "run",
            "--rm",
            "-v",
            &format!("{idle}:/v"),
            "--entrypoint",
            "dd",
            image,
            "if=/dev/zero",
            "of=/v/data",
            "bs=1M",
            "count=3",
        ],
    )
    .ok();
    tool(
        "docker",
        &[
            "run",
            "-d",
            "--name",
            &container,
            "-v",
            &format!("{busy}:/v"),
            "--entrypoint",
            "sleep",
            image,
            "300",
        ],
    )
    .ok();

    let listed = ruchy_image([
        "builder",
        "prune",
        "--dry-run",
        "--json",
        "--prefix",
        &prefix,
    ])
    .ok();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    let names: Vec<&str> = listed.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, [busy.as_str(), idle.as_str()]);
    assert!(listed[1]["size"].as_u64().unwrap() >= 3 << 20, "{listed:?}");
    assert!(listed.iter().all(|v| v["removed"] == false));
    assert!(listed[0]["used_by"][0]
        .as_str()
        .unwrap()
        .contains(&container));

    let table = ruchy_image(["builder", "prune", "--prefix", &prefix]).ok();
    assert!(
        table
            .stdout
            .contains(&format!("kept: in use by {container} (running)")),
        "{}",
        table.stdout
    );
    let left = tool(
        "docker",
        &["volume", "ls", "-q", "-f", &format!("name={prefix}")],
    )
    .ok();
    assert_eq!(left.stdout.trim(), busy);
    assert!(ruchy_image(["builder", "prune", "--help"])
        .ok()
        .stdout
        .contains("--dry-run"));
}
