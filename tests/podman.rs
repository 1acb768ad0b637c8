//! Podman as the engine: a Podman service of the tests' own (`podman system service` on a unix
//! socket in a temp dir, with a containers.conf and a storage root of its own) reached through
//! `DOCKER_HOST`, as users reach it. Builds compile in a builder container there, load, read
//! back and run with limits; interrupted builds leave no builder; the service builds with it;
//! and a second Podman service on loopback TCP is a remote engine (`DOCKER_HOST=tcp://`).
//!
//! One service and one builder image (made by `builder import-host` through the socket) serve
//! every test. The storage is the machine's, as the Docker engine's is: the builder image
//! stays for the next run (import-host finds it up to date instead of loading a gigabyte
//! again); the service stops, and the containers and other images go, when the test process
//! ends.

mod common;
mod guards;
mod service;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;

/// The tests' Podman: its config, storage and sockets live in `dir`.
struct Podman {
    dir: PathBuf,
    /// The service (tini, and podman under it); stopped by the watcher when we have gone.
    _service: std::sync::Mutex<std::process::Child>,
    /// `unix://…/podman.sock`.
    host: String,
}

impl Podman {
    /// The environment every `podman` command of ours runs with.
    fn env(&self) -> [(&'static str, PathBuf); 2] {
        env_of(&self.dir)
    }

    /// Another service on the tests' storage, at `address`.
    fn serve(&self, address: &str, log: &str) -> std::process::Child {
        serve(&self.dir, address, log)
    }

    /// Runs the `podman` CLI on the tests' storage.
    fn cli(&self, args: &[&str]) -> Run {
        Run::from(
            Command::new("podman")
                .args(args)
                .envs(self.env())
                .output()
                .expect("podman runs"),
        )
    }

    /// IDs of the containers with `label` (`key=value`), in any state.
    fn containers_with(&self, label: &str) -> Vec<String> {
        let out = self
            .cli(&["ps", "-a", "-q", "--filter", &format!("label={label}")])
            .ok();
        out.stdout.lines().map(str::to_string).collect()
    }

    /// Builder containers of the project or file at `source`.
    fn builders_for(&self, source: &Path) -> Vec<String> {
        let source = std::fs::canonicalize(source).unwrap();
        self.containers_with(&format!("dev.ruchy.image.source={}", source.display()))
    }
}

/// The environment of a Podman whose config and storage are in `dir`.
fn env_of(dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("CONTAINERS_CONF", dir.join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf")),
    ]
}

/// Starts `podman system service` on `address`, under `tini -s`: Podman's conmon processes
/// become orphans when their container exits, and an init that reaps them late (as on some
/// VMs) makes every wait for a container take Podman's 20 s timeout.
fn serve(dir: &Path, address: &str, log: &str) -> std::process::Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new("tini")
        .args([
            "-s", "--", "podman", "system", "service", "--time=0", address,
        ])
        .envs(env_of(dir))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start podman under tini ({e}); `bash .ci/setup` installs them")
        })
}

/// The highest limits a process of ours may ask for: the hard limit of open files, and of
/// processes (at most `pid_max`, which Podman lowers its own limit to).
fn ulimits() -> (u64, u64) {
    let hard = |resource| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct we own.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut limit) }, 0);
        limit.rlim_max
    };
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    (
        hard(libc::RLIMIT_NOFILE),
        hard(libc::RLIMIT_NPROC).min(pid_max),
    )
}

/// The tests' Podman service, started on first use.
/// One test at a time on the one Podman service: four at once on a busy 2-core machine made
/// it miss the engine's answer time (seen in a full run).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the tests' Podman keeps its config and storage between runs (Podman's database
/// remembers its paths, so they stay the same). One test process at a time uses it.
fn podman_dir() -> PathBuf {
    let dir = std::env::var_os("RUCHY_IMAGE_TEST_PODMAN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/ruchy-image-test-podman"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn podman() -> &'static Podman {
    static PODMAN: OnceLock<Podman> = OnceLock::new();
    PODMAN.get_or_init(|| {
        let dir = podman_dir();
        let (files, processes) = ulimits();
        // Podman as root gives containers 1048576 open files and processes unless told
        // otherwise; where root cannot raise a hard limit (no CAP_SYS_RESOURCE), runc then
        // fails with "error setting rlimit type 7". No systemd here: cgroupfs and a file for
        // events. Its own temp and network config dirs keep it apart from any other Podman.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile={files}:{files}\", \"nproc={processes}:{processes}\"]\n\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{tmp}\"\n\n\
             [network]\nnetwork_config_dir = \"{net}\"\n",
            tmp = dir.join("tmp").display(),
            net = dir.join("net").display(),
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("run").display()
        );
        std::fs::write(dir.join("storage.conf"), storage).unwrap();
        let socket = dir.join("podman.sock");
        let _ = std::fs::remove_file(&socket);
        let host = format!("unix://{}", socket.display());
        let child = serve(&dir, &host, "service.log");
        let service = child.id();
        let podman = Podman {
            _service: std::sync::Mutex::new(child),
            host,
            dir,
        };
        // What a killed run left: its containers (a sweep test counts the ones it leaves).
        podman.cli(&["container", "rm", "--all", "--force"]).ok();
        // Stops the service and removes the containers and every image but the builder once
        // this process has gone (a watcher that outlives it, as the PostgreSQL cluster's does).
        let env: Vec<String> = podman
            .env()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .collect();
        let watcher = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {service}; sleep 1; \
             export {env}; podman container rm --all --force; \
             podman images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep -v -e '/ruchy-image-builder:' -e '<none>' | xargs -r podman rmi --force; \
             podman image prune --force; rm -f {dir}/podman.sock {dir}/*.log",
            pid = std::process::id(),
            env = env.join(" "),
            dir = podman.dir.display(),
        );
        Command::new("setsid")
            .args(["-f", "sh", "-c", &watcher])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the service's watcher starts");
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podman system service did not start: {}",
                std::fs::read_to_string(podman.dir.join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        podman
    })
}

/// `ruchy-image ARGS` with `DOCKER_HOST` naming the tests' Podman (or `host`).
fn ruchy_on(host: &str, args: &[&str]) -> Run {
    ruchy_image_with(args, |cmd| {
        cmd.env("DOCKER_HOST", host);
    })
}

fn ruchy(args: &[&str]) -> Run {
    ruchy_on(&podman().host, args)
}

/// The builder image, made in Podman by `builder import-host` once for every test.
fn builder() -> &'static str {
    static BUILDER: OnceLock<String> = OnceLock::new();
    BUILDER.get_or_init(|| {
        let out = ruchy(&["builder", "import-host", "--json"]).ok();
        let imported: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        imported["tag"].as_str().unwrap().to_string()
    })
}

#[test]
fn a_build_compiles_in_a_podman_builder_loads_reads_back_and_runs_with_limits() {
    let _serial = serial();
    let podman = podman();
    let tag = "ruchy-image-test/podman-fib:1";
    // A cache of its own: the build compiles (and so makes its cache volumes) every run.
    let cache = tempfile::tempdir().unwrap();
    let metrics = ruchy(&[
        "build",
        example("fibonacci.rs").to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "-O",
        "aggressive",
        "--builder",
        "docker",
        "--builder-image",
        builder(),
        "--tag",
        tag,
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(metrics["builder"], "docker");
    assert_eq!(metrics["libc"], "musl");

    // Podman's own view, read back after the load, matches what we built.
    let engine = &metrics["outputs"][0]["engine"];
    assert_eq!(metrics["outputs"][0]["kind"], "engine");
    assert_eq!(engine["id"], metrics["image"]["config_digest"]);
    assert_eq!(engine["layer_count"], 2);
    assert_eq!(engine["user"], "65532:65532");
    let inspect = podman
        .cli(&["image", "inspect", "--format", "{{.Id}} {{.User}}", tag])
        .ok();
    let digest = metrics["image"]["config_digest"].as_str().unwrap();
    assert_eq!(
        inspect.stdout.trim(),
        format!("{} 65532:65532", digest.trim_start_matches("sha256:"))
    );
    // Podman names it under localhost/, and finds it by the name we gave.
    let names = podman
        .cli(&["image", "inspect", "--format", "{{.RepoTags}}", tag])
        .ok();
    assert!(
        names.stdout.contains(&format!("localhost/{tag}")),
        "{}",
        names.stdout
    );

    // Run with its limits: output, report, exit code, nothing left.
    let run = ruchy(&[
        "run", tag, "--memory", "64m", "--cpus", "0.5", "--json", "--", "20",
    ])
    .ok();
    assert_eq!(run.stderr, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["memory_limit_bytes"], 64 << 20);
    assert_eq!(report["cpus"], 0.5);
    assert_eq!(report["exit_code"], 0);
    let failed = ruchy(&["run", tag, "--", "not-a-number"]);
    assert_eq!(failed.code, Some(2), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("usage: fibonacci [N]"),
        "{}",
        failed.stderr
    );
    // The limit reaches the runtime: 1 MiB is less than the container needs to start.
    let starved = ruchy(&["run", tag, "--memory", "1m"]);
    assert_eq!(starved.code, Some(1), "{}", starved.stderr);
    assert!(
        starved.stderr.contains("memory limit to 1048576"),
        "{}",
        starved.stderr
    );
    let runs = podman.containers_with(&format!("dev.ruchy.image.image={tag}"));
    assert!(runs.is_empty(), "{runs:?}");

    // The project's target volume the build made and filled (its generated project is in the
    // build's own cache), with the size Podman's disk-usage report gives. (The shared volume
    // stays empty: fibonacci has no dependencies to share.)
    let prune = ruchy(&["builder", "prune", "--dry-run", "--json"]).ok();
    let volumes: serde_json::Value = serde_json::from_str(&prune.stdout).unwrap();
    let cache = std::fs::canonicalize(cache.path()).unwrap();
    let target = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            let owner = v["owner"].as_str().unwrap_or_default();
            owner.starts_with("project target for ") && owner.contains(cache.to_str().unwrap())
        })
        .unwrap_or_else(|| panic!("no target volume of this build's project: {volumes}"));
    assert!(
        target["name"]
            .as_str()
            .unwrap()
            .starts_with("ruchy-image-shared-"),
        "{target}"
    );
    assert!(target["size"].as_u64().unwrap() > 0, "{target}");
}

/// `ruchy-image ARGS` through the tests' Podman, in the background.
fn start(args: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.args(args)
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("DOCKER_HOST", &podman().host)
        .env_remove("CARGO_TARGET_DIR");
    Running::spawn(cmd)
}

#[test]
fn ctrl_c_and_sigkill_during_a_podman_compile_leave_no_builder() {
    let _serial = serial();
    let podman = podman();
    let slow = fixture("slow-build");
    let args = [
        "build",
        slow.to_str().unwrap(),
        "--builder",
        "docker",
        "--builder-image",
        builder(),
    ];
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let mut build = start(&args);
        // The build script sleeps for a minute: the container is busy compiling.
        build.wait_for("Compiling slow-build v");
        std::thread::sleep(Duration::from_millis(500));
        build.signal(signal);
        let (code, stderr) = build.finish();
        if signal == libc::SIGINT {
            assert_eq!(code, Some(130), "{stderr}");
            assert!(
                stderr.contains("interrupted: nothing was written"),
                "{stderr}"
            );
        } else {
            assert_eq!(code, None, "{stderr}");
            // Nothing could clean up: the container runs on, owned by a dead process...
            assert_eq!(podman.builders_for(&slow).len(), 1, "{stderr}");
            // ...until the next run through the engine sweeps it.
            let next = ruchy(&[
                "build",
                example("fibonacci.rs").to_str().unwrap(),
                "-O",
                "none",
                "--tag",
                "ruchy-image-test/podman-sweep:1",
            ])
            .ok();
            assert!(
                next.stderr
                    .contains("removed 1 container(s) left by a run that did not finish"),
                "{}",
                next.stderr
            );
        }
        let left = podman.builders_for(&slow);
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn the_service_compiles_with_a_podman_engine_and_its_image_runs_there() {
    let _serial = serial();
    use service::*;
    let podman = podman();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--builder-image", builder()])
        .arg("--token-file")
        .arg(token_file(&data))
        .env("DOCKER_HOST", &podman.host)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("serve did not start: {line}"))
        .to_string();
    let server = Server { child, url };

    let tag = "ruchy-image-test/podman-served:1";
    let context = fibonacci_context(&dir.path().join("fib"));
    let accepted = submit(&server, context.path(), &format!("optimize=size&tag={tag}"));
    let id = accepted["id"].as_str().unwrap();
    let done = wait_for(&server, id, Duration::from_secs(300), ended);
    assert_eq!(done["status"], "success", "{done}");
    let result = &done["results"][0];
    assert_eq!(result["builder"], "docker", "{result}");
    // Its image, loaded into Podman, runs there.
    let tarball = dir.path().join("image.tar");
    let download = curl(
        &server,
        "GET",
        &format!("/v1/builds/{id}/image"),
        &["-o", tarball.to_str().unwrap()],
        true,
    );
    assert_eq!(download.status, 200, "{}", download.body);
    podman.cli(&["load", "-i", tarball.to_str().unwrap()]).ok();
    let run = ruchy(&["run", tag, "--", "10"]).ok();
    assert_eq!(run.stdout, "fibonacci(10) = 55\nuid=65532 gid=65532\n");
}

#[test]
fn a_second_engine_on_loopback_tcp_loads_and_runs_the_image() {
    let _serial = serial();
    let podman = podman();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let host = format!("tcp://127.0.0.1:{port}");
    let _stop = Stop(podman.serve(&host, "tcp-service.log"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no engine on {host}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let tag = "ruchy-image-test/podman-tcp:1";
    let metrics = ruchy_on(
        &host,
        &[
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            "balanced",
            // Podman 4.3 reads zstd layers (Docker does from 23 on only).
            "--compression",
            "zstd",
            "--tag",
            tag,
            "--json",
            "-",
        ],
    )
    .ok()
    .metrics();
    assert_eq!(
        metrics["outputs"][0]["engine"]["id"],
        metrics["image"]["config_digest"]
    );
    let run = ruchy_on(&host, &["run", tag, "--", "12"]).ok();
    assert_eq!(run.stdout, "fibonacci(12) = 144\nuid=65532 gid=65532\n");
    // The disk-usage report is read over TCP too.
    let prune = ruchy_on(&host, &["builder", "prune", "--dry-run", "--json"]).ok();
    assert!(
        prune.stdout.trim_start().starts_with('['),
        "{}",
        prune.stdout
    );
}

/// Stops a service we started when the test ends: SIGTERM, which tini passes on to podman.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: a plain kill(2) of our own child, not reaped yet.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
