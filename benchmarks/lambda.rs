//! The chapter's Lambda table, measured: `cargo bench --bench lambda` packages
//! examples/lambda/hello.rs with `ruchy-image lambda` at every preset and for every platform
//! in PLATFORMS (comma-separated, default `linux/amd64,linux/arm64`; the docker builder, this
//! machine's builder image), and runs each `bootstrap` against the Runtime API emulator the
//! tests use, RUNS times (default 20): cold start is process start to its first `/next`,
//! invoke the round trip of `{"name": "NASA"}` (sent at once) to its response. Medians; zip
//! and binary sizes in bytes.
//!
//! An arm64 `bootstrap` is executed directly and runs under qemu user emulation (binfmt_misc)
//! on an x86_64 host: its cold start and invoke times measure qemu, not Graviton. Its sizes
//! are those of the real arm64 binary and zip.

#[path = "../tests/lambda_api/mod.rs"]
mod lambda_api;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lambda_api::{Emulator, Outcome};

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let ruchy_image = env!("CARGO_BIN_EXE_ruchy-image");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let hello = repo.join("examples/lambda/hello.rs");
    let work = tempfile::tempdir().unwrap();
    let platforms =
        std::env::var("PLATFORMS").unwrap_or_else(|_| "linux/amd64,linux/arm64".to_string());
    println!("| preset | platform | zip | binary | cold start (median) | invoke (median) |");
    println!("|---|---|---:|---:|---:|---:|");
    for platform in platforms
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        for preset in ["none", "balanced", "aggressive", "nasa", "size"] {
            let name = format!("{preset}-{}", platform.replace('/', "-"));
            let zip = work.path().join(format!("{name}.zip"));
            let out = Command::new(ruchy_image)
                .args([
                    "lambda",
                    hello.to_str().unwrap(),
                    "-O",
                    preset,
                    "--platform",
                    platform,
                    "-q",
                    "--json",
                    "-",
                    "-o",
                ])
                .arg(&zip)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let dir = work.path().join(&name);
            let unzip = Command::new("unzip")
                .args(["-q", "-o"])
                .arg(&zip)
                .arg("-d")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(unzip.success());
            let (mut cold, mut invoke) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let emulator = Emulator::start(vec![r#"{"name": "NASA"}"#.to_string()]);
                let started = Instant::now();
                let mut child = Command::new(dir.join("bootstrap"))
                    .env_clear()
                    .env("AWS_LAMBDA_RUNTIME_API", &emulator.address)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let first = emulator.first_next(Duration::from_secs(10));
                let (_, outcome) = emulator.result(Duration::from_secs(10));
                let answered = Instant::now();
                assert!(matches!(outcome, Outcome::Response(_)), "{outcome:?}");
                child.kill().unwrap();
                child.wait().unwrap();
                cold.push(first - started);
                invoke.push(answered - first);
            }
            println!(
                "| {preset} | linux/{} | {} | {} | {:.2} ms | {:.0} µs |",
                record["architecture"].as_str().unwrap(),
                record["zip_size"],
                record["binary_size"],
                median(cold).as_secs_f64() * 1e3,
                median(invoke).as_secs_f64() * 1e6,
            );
        }
    }
}
