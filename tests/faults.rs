//! The fault suite: real `--builder docker` builds interrupted by SIGINT, SIGTERM and SIGKILL
//! while they compile, assemble and load, cut off from the engine mid-build, and run two at a
//! time. After each: no container, no temp file, no tag the output does not report, and the
//! next build succeeds with the same digest.
//!
//! Trials run one at a time (they count containers and temp files) with a cache of their own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::*;

/// One trial at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The suite's own cache: its temp files are counted, so no other test may write there.
/// Binaries an earlier run compiled are forgotten once, so every trial really compiles.
fn cache() -> PathBuf {
    static FRESH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FRESH
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-cache");
            let _ = std::fs::remove_dir_all(cache.join("artifacts"));
            cache
        })
        .clone()
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.args(args)
        .env("RUCHY_IMAGE_CACHE", cache())
        .env_remove("RUCHY_IMAGE_BUILDER")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// Runs `ruchy-image ARGS` with the suite's cache to the end.
fn run(args: &[&str]) -> Run {
    let out = command(args).output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ruchy-image ARGS` with `env`, in the background.
fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = command(args);
    cmd.envs(env.iter().copied());
    Running::spawn(cmd)
}

/// Our temp files and dirs in `dir`.
fn temps_in(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|name| name.starts_with(".ruchy-image"))
        .collect()
}

/// Temp paths in the suite's cache where interrupted writes land.
fn cache_temps() -> Vec<String> {
    let mut found = temps_in(&cache().join("layers"));
    for dir in std::fs::read_dir(cache().join("artifacts"))
        .into_iter()
        .flatten()
    {
        found.extend(temps_in(&dir.unwrap().path()));
    }
    found
}

/// The image ID a tag names, if any.
fn image_id(tag: &str) -> Option<String> {
    let out = tool("docker", &["image", "inspect", "--format", "{{.Id}}", tag]);
    (out.code == Some(0)).then(|| out.stdout.trim().to_string())
}

fn remove_image(tag: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}

const SIGNALS: [(i32, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGKILL, "SIGKILL"),
];

/// What a signal's exit looks like: 128 + N when handled, no code when it killed.
fn expected_code(signal: i32) -> Option<i32> {
    (signal != libc::SIGKILL).then_some(128 + signal)
}

/// A build that connects to the engine sweeps what dead runs left behind.
fn sweep() {
    run(&[
        "build",
        example("fibonacci.rs").to_str().unwrap(),
        "-O",
        "none",
        "-q",
    ])
    .ok();
}

#[test]
fn signals_during_the_compile_leave_no_container() {
    let _serial = serial();
    let slow = fixture("slow-build");
    let tag = "ruchy-image-test/faults:compile";
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("slow.tar");
    remove_image(tag);
    for (signal, name) in SIGNALS {
        let mut build = start(
            &[
                "build",
                slow.to_str().unwrap(),
                "--builder",
                "docker",
                "--tag",
                tag,
                "--output",
                archive.to_str().unwrap(),
            ],
            &[],
        );
        // The build script sleeps for a minute: the container is busy compiling.
        build.wait_for("Compiling slow-build v");
        std::thread::sleep(Duration::from_millis(500));
        build.signal(signal);
        let (code, stderr) = build.finish();
        assert_eq!(code, expected_code(signal), "{name}: {stderr}");
        if signal == libc::SIGKILL {
            // Nothing could clean up: the container runs on, owned by a dead process...
            assert_eq!(builders_for(&slow).len(), 1, "{name}");
            // ...until the next run sweeps it.
            sweep();
        } else {
            assert!(
                stderr.contains("interrupted: nothing was written"),
                "{name}: {stderr}"
            );
        }
        assert!(builders_for(&slow).is_empty(), "{name}: a builder is left");
        assert_eq!(temps_in(out.path()), Vec::<String>::new(), "{name}");
        assert!(!archive.exists(), "{name}");
        assert_eq!(image_id(tag), None, "{name}: tagged");
    }
}

#[test]
fn signals_during_assembly_leave_no_temp_file() {
    let _serial = serial();
    let fib = example("fibonacci.rs");
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("fib.tar");
    let layout = out.path().join("layout");
    let args = |epoch: &str| {
        vec![
            "build".to_string(),
            fib.display().to_string(),
            "-O".into(),
            "none".into(),
            "--builder".into(),
            "docker".into(),
            // glibc's none binary (5 MB) takes long enough to compress for the signal to
            // land during assembly; musl's (650 KB) would be done before it.
            "--target".into(),
            "x86_64-unknown-linux-gnu".into(),
            "--output".into(),
            archive.display().to_string(),
            "--oci-layout".into(),
            layout.display().to_string(),
            "--source-date-epoch".into(),
            epoch.into(),
            "--json".into(),
            "-".into(),
        ]
    };
    for (i, (signal, name)) in SIGNALS.into_iter().enumerate() {
        // A new timestamp each time: the binary's layer is not in the cache, so it is
        // compressed while the signal comes.
        let owned = args(&(1_700_000_000 + i).to_string());
        let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mut build = start(&argv, &[]);
        build.wait_for("→ Assembling image");
        std::thread::sleep(Duration::from_millis(150));
        build.signal(signal);
        let (code, stderr) = build.finish();
        assert_eq!(code, expected_code(signal), "{name}: {stderr}");
        if signal != libc::SIGKILL {
            assert!(
                stderr.contains("interrupted: nothing was written"),
                "{name}: {stderr}"
            );
            assert_eq!(temps_in(out.path()), Vec::<String>::new(), "{name}");
            assert_eq!(cache_temps(), Vec::<String>::new(), "{name}");
        }
        assert!(
            !archive.exists() && !layout.exists(),
            "{name}: half an output"
        );

        // The next build sweeps what a killed one left and makes the image it would have.
        let next = run(&argv).ok().metrics();
        assert_eq!(temps_in(out.path()), Vec::<String>::new(), "{name}");
        assert_eq!(cache_temps(), Vec::<String>::new(), "{name}");
        let again = run(&argv).ok().metrics();
        assert_eq!(next["image"]["digest"], again["image"]["digest"], "{name}");
        std::fs::remove_file(&archive).unwrap();
        std::fs::remove_dir_all(&layout).unwrap();
    }
}

#[test]
fn signals_during_the_load_say_what_was_written() {
    let _serial = serial();
    let fib = example("fibonacci.rs");
    let tag = "ruchy-image-test/faults:load";
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("fib.tar");
    let argv = [
        "build",
        fib.to_str().unwrap(),
        "-O",
        "aggressive",
        "--builder",
        "docker",
        "--tag",
        tag,
        "--output",
        archive.to_str().unwrap(),
        "--verbose",
    ];
    let built = run(&[&argv[..], &["--json", "-"]].concat()).ok().metrics();
    let new_id = built["image"]["config_digest"]
        .as_str()
        .unwrap()
        .to_string();
    for (signal, name) in SIGNALS {
        remove_image(tag);
        std::fs::remove_file(&archive).unwrap();
        let mut build = start(&argv, &[]);
        build.wait_for(&format!("→ Writing engine {tag}"));
        build.signal(signal);
        let (code, stderr) = build.finish();
        // The archive is written before the load, whole.
        assert!(archive.exists(), "{name}: {stderr}");
        let id = image_id(tag);
        assert!(
            id.is_none() || id.as_deref() == Some(new_id.as_str()),
            "{name}: {id:?}"
        );
        match code {
            // The load finished before the signal was handled: a normal success.
            Some(0) => assert_eq!(id.as_deref(), Some(new_id.as_str()), "{name}"),
            code => {
                assert_eq!(code, expected_code(signal), "{name}: {stderr}");
                if signal != libc::SIGKILL {
                    let said = format!(
                        "interrupted after writing archive {}; engine {tag} was being written and may or may not be there now",
                        archive.display()
                    );
                    assert!(stderr.contains(&said), "{name}: {stderr}");
                }
            }
        }
        assert_eq!(temps_in(out.path()), Vec::<String>::new(), "{name}");
    }
    remove_image(tag);
}

/// A unix socket that passes every connection on to the engine's, until it is cut.
struct EngineProxy {
    path: PathBuf,
    streams: std::sync::Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
    _dir: tempfile::TempDir,
}

impl EngineProxy {
    fn start() -> EngineProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let streams = std::sync::Arc::new(Mutex::new(Vec::new()));
        let kept = streams.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    break;
                };
                let mut all = kept.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(engine.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                    (engine, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        EngineProxy {
            path,
            streams,
            _dir: dir,
        }
    }

    /// Cuts every connection and stops answering new ones.
    fn cut(&self) {
        let _ = std::fs::remove_file(&self.path);
        for stream in self.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn losing_the_engine_reports_the_build_error_and_the_next_run_removes_the_container() {
    let _serial = serial();
    let slow = fixture("slow-build");
    let proxy = EngineProxy::start();
    let host = format!("unix://{}", proxy.path.display());
    let mut build = start(
        &["build", slow.to_str().unwrap(), "--builder", "docker"],
        &[("DOCKER_HOST", &host)],
    );
    build.wait_for("Compiling slow-build v");
    std::thread::sleep(Duration::from_millis(500));
    proxy.cut();
    let (code, stderr) = build.finish();
    assert_eq!(code, Some(1), "{stderr}");
    // The build's own failure comes first; the cleanup's is beside it, not instead of it.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(!error.contains("removing container"), "{stderr}");
    assert!(stderr.contains("cleaning up failed too"), "{stderr}");
    // The engine never heard the build stop: its container runs on until the next run.
    assert_eq!(builders_for(&slow).len(), 1, "{stderr}");
    sweep();
    assert!(builders_for(&slow).is_empty());
}

/// A copy of the benchmarks' deps-app (clap, serde, regex, tokio, chrono: enough crates for
/// two downloads at once to collide) under another package name, at a path of its own.
fn deps_project(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("benchmarks/apps/deps-app");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::copy(fixture.join("src/main.rs"), dir.path().join("src/main.rs")).unwrap();
    std::fs::copy(fixture.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace("name = \"deps-app\"", &format!("name = \"{name}\""));
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    let lock = std::fs::read_to_string(dir.path().join("Cargo.lock")).unwrap();
    let lock = lock.replace("name = \"deps-app\"", &format!("name = \"{name}\""));
    std::fs::write(dir.path().join("Cargo.lock"), lock).unwrap();
    dir
}

/// Removes a test's own cargo-home and target volumes.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for label in &self.0 {
            let list = tool("docker", &["volume", "ls", "-q", "-f", label]);
            for volume in list.stdout.lines() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f", volume])
                    .output();
            }
        }
    }
}

#[test]
fn two_projects_and_two_builds_of_one_project_at_once() {
    let _serial = serial();
    let (one, two) = (deps_project("deps-one"), deps_project("deps-two"));
    // An empty cargo home: both builds download the same crates at the same time.
    let cargo_volume = format!("ruchy-image-test-cargo-{}", std::process::id());
    // And a target volume of the test's own, which both projects share.
    let target_volume = format!("ruchy-image-test-target-{}", std::process::id());
    let _volumes = Volumes(vec![
        format!("name={cargo_volume}"),
        format!("name={target_volume}"),
    ]);
    let start = |project: &Path| {
        let mut cmd = command(&[
            "build",
            project.to_str().unwrap(),
            "--builder",
            "docker",
            "-O",
            "none",
            "--json",
            "-",
        ]);
        cmd.env("RUCHY_IMAGE_CARGO_VOLUME", &cargo_volume)
            .env("RUCHY_IMAGE_TARGET_VOLUME", &target_volume)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let digest = |child: Child| {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        metrics["image"]["digest"].as_str().unwrap().to_string()
    };
    let (a, b) = (start(one.path()), start(two.path()));
    let (one_digest, _) = (digest(a), digest(b));

    // One project twice at once: the same image.
    std::fs::write(one.path().join("src/extra.rs"), "// a change\n").unwrap();
    let (a, b) = (start(one.path()), start(one.path()));
    let (first, second) = (digest(a), digest(b));
    assert_eq!(first, second);
    assert_eq!(
        first, one_digest,
        "an unused file changes no byte of the image"
    );
}
