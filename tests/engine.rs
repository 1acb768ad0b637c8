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
