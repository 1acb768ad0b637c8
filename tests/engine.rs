//! The `--output` archive in a real Docker engine (started by `.ci/setup`): `docker load`
//! accepts it, the container runs as the non-root user, and `docker inspect` agrees with us.

mod common;
mod guards;

use common::*;
use guards::Images;

#[test]
fn archive_loads_into_docker_and_runs_as_non_root() {
    const TAG: &str = "ruchy-image-test/fibonacci:load";
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("fib.tar");
    let metrics = ruchy_image([
        "build",
        example("fibonacci.rs").to_str().unwrap(),
        "-O",
        "aggressive",
        "--tag",
        TAG,
        "--output",
        archive.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();

    let _guard = Images(vec![TAG.into()]);
    let loaded = tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(
        loaded.stdout.contains(&format!("Loaded image: {TAG}")),
        "{}",
        loaded.stdout
    );

    let run = tool("docker", &["run", "--rm", TAG, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");

    let inspect = tool(
        "docker",
        &[
            "inspect",
            "--format",
            "{{.Id}} {{.Config.User}} {{len .RootFS.Layers}} {{.Size}}",
            TAG,
        ],
    )
    .ok();
    let fields: Vec<&str> = inspect.stdout.split_whitespace().collect();
    assert_eq!(fields[0], metrics["image"]["config_digest"]);
    assert_eq!(fields[1], "65532:65532");
    assert_eq!(fields[2], "2");
    // The engine counts file bytes; our unpacked size also counts tar headers.
    let engine_size: u64 = fields[3].parse().unwrap();
    let binary = metrics["binary_size"].as_u64().unwrap();
    let unpacked = metrics["image"]["uncompressed_size"].as_u64().unwrap();
    assert!(
        binary <= engine_size && engine_size <= unpacked,
        "{binary} <= {engine_size} <= {unpacked}"
    );
}

/// The engine reached over loopback TCP, as a remote engine is (`DOCKER_HOST=tcp://…`): a
/// forwarder of the test's own passes each connection on to the engine's socket, so the main
/// engine is neither stopped nor reconfigured.
struct TcpEngine {
    host: String,
}

impl TcpEngine {
    fn start() -> TcpEngine {
        use std::os::unix::net::UnixStream;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("tcp://{}", listener.local_addr().unwrap());
        // The forwarder lives as long as the test process; nothing of it outlives that.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    break;
                };
                let (mut up_from, mut up_to) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_from, &mut up_to);
                    let _ = up_to.shutdown(std::net::Shutdown::Write);
                });
                let (mut down_from, mut down_to) = (engine, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_from, &mut down_to);
                    let _ = down_to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        TcpEngine { host }
    }
}

#[test]
fn an_engine_on_loopback_tcp_loads_and_runs_the_build() {
    const TAG: &str = "ruchy-image-test/fibonacci:tcp";
    let _guard = Images(vec![TAG.into()]);
    let engine = TcpEngine::start();
    let on_tcp = |cmd: &mut std::process::Command| {
        cmd.env("DOCKER_HOST", &engine.host);
    };
    let metrics = ruchy_image_with(
        [
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            "balanced",
            "--tag",
            TAG,
            "--json",
            "-",
        ],
        on_tcp,
    )
    .ok()
    .metrics();
    let seen = &metrics["outputs"][0]["engine"];
    assert_eq!(seen["id"], metrics["image"]["config_digest"]);
    assert_eq!(seen["layer_count"], 2);
    let run = ruchy_image_with(["run", TAG, "--", "12"], on_tcp).ok();
    assert_eq!(run.stdout, "fibonacci(12) = 144\nuid=65532 gid=65532\n");
    // The engine behind it is the one the unix socket reaches.
    let id = tool("docker", &["image", "inspect", "--format", "{{.Id}}", TAG]).ok();
    assert_eq!(id.stdout.trim(), metrics["image"]["config_digest"]);
}
