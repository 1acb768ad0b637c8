//! Builds that cannot reach each other, with the real service and engine: a project's build
//! script runs as a user that is not root, sees no other project's crates it could write,
//! only loopback, numeric memory and
//! process limits, no capabilities and no-new-privileges; a build over a limit fails naming
//! it while another on the same worker succeeds; dependencies still come from crates.io, and
//! the image is the one a build with a fresh cargo home and shared volume makes. And the
//! tampering a shared target once allowed (a build script that rewrites every crate it can
//! reach) leaves another project's rebuild byte-identical.

mod common;
mod guards;
mod registries;
#[macro_use]
mod service;

use std::path::Path;
use std::time::Duration;

use common::*;
use guards::builder_image;
use service::*;

/// A Cargo project `name` using `itoa` (from crates.io), with `build` as its build script.
fn project(dir: &Path, name: &str, build: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nitoa = \"1\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("build.rs"), build).unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { println!(\"{}\", itoa::Buffer::new().format(42)); }\n",
    )
    .unwrap();
}

/// The walk every probe below makes: every `.rlib` under `/` outside the kernel's files and
/// the builder image's own toolchain (a copy-on-write layer of this container alone).
const WALK: &str = r#"
fn rlibs(dir: &std::path::Path, skip: &[std::path::PathBuf], found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && !skip.iter().any(|s| path.starts_with(s)) {
            rlibs(&path, skip, found);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rlib") {
            found.push(path);
        }
    }
}

fn reachable() -> Vec<std::path::PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = std::process::Command::new(rustc).args(["--print", "sysroot"]).output().unwrap();
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let skip: Vec<std::path::PathBuf> =
        ["/proc", "/sys", "/dev", "/usr/lib/rustlib", &sysroot].iter().map(Into::into).collect();
    let mut found = Vec::new();
    rlibs(std::path::Path::new("/"), &skip, &mut found);
    found
}

fn writable(path: &std::path::Path) -> bool {
    std::fs::OpenOptions::new().append(true).open(path).is_ok()
}
"#;

/// A build script that reports what it can reach as one `cargo:warning`.
fn probe_script() -> String {
    format!(
        r#"{WALK}
fn read(path: &str) -> String {{
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}}

fn main() {{
    // Another project's crates: any rlib not of this build's own (itoa, this package).
    let foreign: Vec<_> = reachable()
        .into_iter()
        .filter(|p| {{
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("libitoa-") && !name.starts_with("libprobe-")
        }})
        .collect();
    let writable = foreign.iter().filter(|p| writable(p)).count();
    let mut interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    interfaces.sort();
    let first = |paths: &[&str]| paths.iter().map(|p| read(p)).find(|v| !v.is_empty()).unwrap_or_default();
    let memory = first(&["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
    let pids = first(&["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]);
    let status = read("/proc/self/status");
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_string();
    println!(
        "cargo:warning=probe foreign={{}} writable={{}} net={{}} memory={{}} pids={{}} capeff={{}} nnp={{}} uid={{}}",
        foreign.len(), writable, interfaces.join(","), memory, pids, field("CapEff:"), field("NoNewPrivs:"),
        field("Uid:").split_whitespace().next().unwrap_or("")
    );
}}
"#
    )
}

/// `key=value` pairs of the probe's line in `log`.
fn probe_report(log: &str) -> std::collections::BTreeMap<String, String> {
    let line = log
        .lines()
        .find_map(|l| l.split_once("probe foreign=").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no probe line in the log:\n{log}"));
    format!("foreign={line}")
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A cargo home and target volumes (`NAME-0`, `NAME-project-…`) of a test's own, removed
/// at the end.
struct OwnVolumes(String);

impl OwnVolumes {
    fn new(test: &str) -> OwnVolumes {
        OwnVolumes(format!("ruchy-image-test-{test}-{}", std::process::id()))
    }

    fn cargo(&self) -> String {
        format!("{}-cargo", self.0)
    }
}

impl Drop for OwnVolumes {
    fn drop(&mut self) {
        let filter = format!("name={}", self.0);
        let listed = tool("docker", &["volume", "ls", "-q", "-f", &filter]).stdout;
        for volume in listed.lines().filter(|v| v.starts_with(&self.0)) {
            let _ = tool("docker", &["volume", "rm", "-f", volume]);
        }
    }
}

/// Sends `dir` to the service as a build's source; the build's ID.
fn send(server: &Server, dir: &Path, query: &str) -> String {
    let context = context_of(dir);
    let accepted = submit(server, context.path(), query);
    accepted["id"].as_str().unwrap().to_string()
}

fn finished(server: &Server, id: &str) -> serde_json::Value {
    wait_for(server, id, Duration::from_secs(600), ended)
}

/// The record of build `id`, which must have succeeded (its log shown if not).
fn succeeded(server: &Server, id: &str) -> serde_json::Value {
    let record = finished(server, id);
    assert_eq!(record["status"], "success", "{record}\n{}", log(server, id));
    record
}

fn log(server: &Server, id: &str) -> String {
    curl(server, "GET", &format!("/v1/builds/{id}/log"), &[], true).body
}

#[test]
fn a_build_script_sees_no_writable_crate_of_another_project_no_network_and_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--build-memory", "1GiB", "--build-pids", "512"]);

    // Another project first, so the shared volume holds crates that are not the probe's
    // (memchr, serde_json's).
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("other.rs"),
        "---\n[dependencies]\nserde_json = \"1\"\n---\nfn main() { println!(\"{}\", serde_json::json!({\"a\": 1})); }\n",
    )
    .unwrap();
    let id = send(&server, &other, "optimize=none");
    succeeded(&server, &id);

    let probe = dir.path().join("probe");
    project(&probe, "probe", &probe_script());
    let id = send(&server, &probe, "optimize=none");
    let record = finished(&server, &id);
    let text = log(&server, &id);
    assert_eq!(record["status"], "success", "{record}\n{text}");
    let seen = probe_report(&text);
    eprintln!("the probe saw {seen:?}");
    let number = |key: &str| -> u64 {
        seen[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number: {seen:?}"))
    };
    assert!(
        number("foreign") > 0,
        "the probe found no crate of the other project to try: {seen:?}"
    );
    assert_eq!(number("writable"), 0, "{seen:?}");
    assert_eq!(seen["net"], "lo", "{seen:?}");
    assert_eq!(number("memory"), 1 << 30, "{seen:?}");
    assert_eq!(number("pids"), 512, "{seen:?}");
    assert_eq!(
        u64::from_str_radix(&seen["capeff"], 16).unwrap(),
        0,
        "{seen:?}"
    );
    assert_eq!(seen["nnp"], "1", "{seen:?}");
    assert_ne!(number("uid"), 0, "the build script ran as root: {seen:?}");
    // The log says where itoa came from: the fetch, the only step with a network.
    assert!(text.contains("fetching dependencies"), "{text}");

    // And the service said what isolation it runs builds in when it started.
    let mut server = server;
    let mut stderr = server.child.stderr.take().unwrap();
    server.child.kill().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    assert!(
        said.contains("isolation: no network while compiling"),
        "{said}"
    );
    assert!(
        said.contains("isolation: limits: memory 1.0 GiB, 512 processes, 2 CPUs"),
        "{said}"
    );
}

#[test]
fn a_build_over_a_limit_fails_naming_it_while_another_on_the_worker_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(
        &data,
        &[
            "--workers",
            "2",
            "--build-memory",
            "512MiB",
            "--build-pids",
            "256",
        ],
    );
    let hog = dir.path().join("hog");
    project(
        &hog,
        "hog",
        "fn main() {\n    let mut memory = vec![0u8; 2 << 30];\n    \
         for i in (0..memory.len()).step_by(4096) { memory[i] = 1; }\n    \
         println!(\"{}\", std::hint::black_box(memory).len());\n}\n",
    );
    let forks = dir.path().join("forks");
    project(
        &forks,
        "forks",
        "fn main() {\n    let threads: Vec<_> = (0..2000)\n        \
         .map(|_| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(3))))\n        \
         .collect();\n    for t in threads { t.join().unwrap(); }\n}\n",
    );
    let fine = dir.path().join("fine");
    std::fs::create_dir_all(&fine).unwrap();
    std::fs::copy(example("fibonacci.rs"), fine.join("fibonacci.rs")).unwrap();

    for (over, limit, flag) in [
        (&hog, "memory limit (512.0 MiB)", "--build-memory"),
        (&forks, "process limit (256 processes)", "--build-pids"),
    ] {
        let over = send(&server, over, "optimize=none");
        let beside = send(&server, &fine, "optimize=none");
        let failed = finished(&server, &over);
        assert_eq!(failed["status"], "failure", "{failed}");
        let error = failed["error"].to_string();
        assert!(error.contains(limit), "{error}\n{}", log(&server, &over));
        assert!(error.contains(flag), "{error}");
        let succeeded = finished(&server, &beside);
        assert_eq!(succeeded["status"], "success", "{succeeded}");
    }
    // Each build's own target went with it.
    let volumes = tool("docker", &["volume", "ls", "-q"]).ok().stdout;
    assert!(
        !volumes.contains(&format!("-build-ruchy-image.{}.", server_pid(&server))),
        "{volumes}"
    );
}

/// The service's process ID (its builds' target volumes are named with it).
fn server_pid(server: &Server) -> u32 {
    server.child.id()
}

#[test]
fn a_build_script_that_rewrites_every_crate_it_reaches_changes_no_other_project() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let builder = builder_image();
    // A cargo home and shared volume of the test's own: were they writable, the tampering
    // would reach no other test.
    let volumes = OwnVolumes::new("tamper");
    let build = |source: &Path| {
        ruchy_image_with(
            [
                "build",
                source.to_str().unwrap(),
                "--builder",
                "docker",
                "--builder-image",
                &builder,
                "-O",
                "none",
                "--json",
                "-",
            ],
            |cmd| {
                cmd.env("RUCHY_IMAGE_CACHE", &cache)
                    .env("RUCHY_IMAGE_CARGO_VOLUME", volumes.cargo())
                    .env("RUCHY_IMAGE_TARGET_VOLUME", &volumes.0);
            },
        )
    };
    let binary = |run: Run| {
        let record = run.ok().metrics();
        std::fs::read(record["binary_path"].as_str().unwrap()).unwrap()
    };

    let victim = dir.path().join("victim");
    project(&victim, "victim", "fn main() {}\n");
    let clean = binary(build(&victim));

    // Its build script flips 64 bytes of every rlib it can open for writing.
    let tamper = dir.path().join("tamper");
    let script = format!(
        r#"{WALK}
fn main() {{
    let mut rewritten = 0;
    for path in reachable() {{
        if let Ok(mut bytes) = std::fs::read(&path) {{
            if bytes.len() > 256 && writable(&path) {{
                let at = bytes.len() / 2;
                for b in &mut bytes[at..at + 64] {{ *b ^= 0xff; }}
                if std::fs::write(&path, &bytes).is_ok() {{ rewritten += 1; }}
            }}
        }}
    }}
    println!("cargo:warning=tamper rewrote {{rewritten}} rlibs");
}}
"#
    );
    project(&tamper, "tamper", &script);
    let tampered = build(&tamper);
    assert!(
        tampered.stderr.contains("tamper rewrote"),
        "{}",
        tampered.stderr
    );

    // The victim's one-line change (a comment): compiled again, the same bytes.
    let main = victim.join("src/main.rs");
    let mut source = std::fs::read_to_string(&main).unwrap();
    source.push_str("// a one-line change\n");
    std::fs::write(&main, source).unwrap();
    let again = build(&victim);
    assert!(
        again
            .stderr
            .lines()
            .any(|l| l.contains("ℹ cargo:") && l.ends_with(", victim")),
        "{}",
        again.stderr
    );
    assert!(binary(again) == clean, "the victim's binary changed");

    // And a new project with the same dependency builds and runs.
    let fresh = dir.path().join("fresh");
    project(&fresh, "fresh", "fn main() {}\n");
    let record = build(&fresh).ok().metrics();
    let out = tool(record["binary_path"].as_str().unwrap(), &[]).ok();
    assert_eq!(out.stdout.trim(), "42");
}

#[test]
fn dependencies_come_from_crates_io_and_the_image_is_the_one_fresh_caches_make() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let app = dir.path().join("app");
    project(&app, "app", "fn main() {}\n");
    let id = send(&server, &app, "optimize=aggressive");
    let record = succeeded(&server, &id);
    let served = record["results"][0]["image"]["digest"].clone();
    assert!(served.is_string(), "{record}");

    // The same project on the command line, with a cargo home and a shared volume of its
    // own, both empty: itoa is downloaded from crates.io and compiled from nothing.
    let volumes = OwnVolumes::new("fresh");
    let cold = ruchy_image_with(
        [
            "build",
            app.to_str().unwrap(),
            "--builder",
            "docker",
            "--builder-image",
            &builder_image(),
            "-O",
            "aggressive",
            "--json",
            "-",
        ],
        |cmd| {
            cmd.env("RUCHY_IMAGE_CARGO_VOLUME", volumes.cargo())
                .env("RUCHY_IMAGE_TARGET_VOLUME", &volumes.0)
                .env("RUCHY_IMAGE_CACHE", dir.path().join("cache"));
        },
    )
    .ok();
    assert!(cold.stderr.contains("Downloaded itoa"), "{}", cold.stderr);
    assert_eq!(cold.metrics()["image"]["digest"], served);
}
