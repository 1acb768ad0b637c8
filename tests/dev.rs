//! `ruchy-image dev` with a real engine: the example HTTP server built, run and answering on
//! a published port; an edit answered by the new build; a broken edit that keeps the old
//! container answering; the compose form recreating the service of a real compose file; and
//! Ctrl-C or SIGTERM leaving no container, network or temp dir behind.

mod common;
mod guards;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use guards::Images;

const GREETING: &str = "Hello from ruchy-image!";

/// The body `GET /` answers on `port`, once the server answers (a minute at most).
fn greeting(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match answer {
            Ok(answer) if answer.contains("\r\n\r\n") => {
                return answer.split("\r\n\r\n").nth(1).unwrap().trim().to_string()
            }
            _ if Instant::now() > deadline => panic!("nothing answers on port {port}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A copy of the example server in `dir`.
fn server_in(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("http-server.rs");
    std::fs::copy(example("http-server.rs"), &file).unwrap();
    file
}

/// Replaces `from` with `to` in `file`, as an editor's save does.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} is not in {}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

/// `ruchy-image dev ARGS`, with the tests' cache and a temp dir of its own.
fn dev(args: &[&str], tmp: &Path, builder: &str, env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.arg("dev")
        .args(args)
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", builder)
        .env("TMPDIR", tmp)
        .env_remove("CARGO_TARGET_DIR");
    for (key, value) in env {
        cmd.env(key, value);
    }
    Running::spawn(cmd)
}

/// The containers `dev` said it ran (`… running as container ID`).
fn dev_containers(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split("running as container ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn dev_serves_rebuilds_on_save_keeps_the_old_one_on_a_broken_edit_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = server_in(dir.path());
    let tag = format!("ruchy-image-test/dev:{}", std::process::id());
    let _image = Images(vec![tag.clone()]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let json = dir.path().join("dev.json");
    let mut running = dev(
        &[
            file.to_str().unwrap(),
            "--tag",
            &tag,
            "--publish",
            &publish,
            "--json",
            json.to_str().unwrap(),
        ],
        tmp.path(),
        "docker",
        &[],
    );
    running.wait_for("running as container");
    assert_eq!(greeting(port), GREETING);
    // Each build's record, as `build --json` writes it.
    let digest = |json: &Path| {
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert!(record["compile_time_ms"].as_u64().is_some(), "{record}");
        record["image"]["digest"].as_str().unwrap().to_string()
    };
    let first_digest = digest(&json);

    // A save builds and swaps.
    edit(&file, GREETING, "Hello from the second build!");
    running.wait_for("changed: ");
    running.wait_for_nth("running as container", 2);
    assert_eq!(greeting(port), "Hello from the second build!");
    assert_ne!(
        digest(&json),
        first_digest,
        "the record is the first build's"
    );

    // A broken save prints the compiler's errors; the last good container keeps answering.
    edit(&file, "fn port() -> u16 {", "fn port() -> u16 { not rust");
    running.wait_for("the previous image keeps running");
    assert!(running.seen().contains("error"), "{}", running.seen());
    assert_eq!(greeting(port), "Hello from the second build!");
    assert_eq!(dev_containers(running.seen()).len(), 2);

    // A save while a build runs: that build finishes, and one more builds what was saved.
    edit(&file, "fn port() -> u16 { not rust", "fn port() -> u16 {");
    let builds = running.seen().matches("→ Compiling").count();
    running.wait_for_nth("→ Compiling", builds + 1);
    edit(
        &file,
        "Hello from the second build!",
        "Hello from a save during a build!",
    );
    running.wait_for_nth("running as container", 4);
    assert_eq!(greeting(port), "Hello from a save during a build!");
    // Each build says what started it: the saves above, and the one made during a build.
    assert_eq!(
        running.seen().matches("changed: ").count(),
        4,
        "{}",
        running.seen()
    );

    running.signal(libc::SIGINT);
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(130), "{stderr}");
    for id in dev_containers(&stderr) {
        let left = tool(
            "docker",
            &["ps", "-a", "-q", "--filter", &format!("id={id}")],
        )
        .ok();
        assert!(left.stdout.trim().is_empty(), "container {id} was left");
    }
    assert!(
        builders_for(&file).is_empty(),
        "builder containers were left"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still answers on {port}"
    );
    assert!(entries(tmp.path()).is_empty(), "temp files were left");
}

#[test]
fn dev_recreates_a_compose_service_and_takes_the_stack_down_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = server_in(dir.path());
    // The project is named after the compose file's directory: one of its own.
    let stack = dir.path().join(format!("devstack{}", std::process::id()));
    std::fs::create_dir(&stack).unwrap();
    let compose = stack.join("docker-compose.yml");
    std::fs::copy(repo().join("compose/docker-compose.yml"), &compose).unwrap();
    let image = format!("ruchy-image-test/dev-compose:{}", std::process::id());
    let _image = Images(vec![image.clone()]);
    let port = free_port().to_string();
    let env = [
        ("HTTP_SERVER_IMAGE", image.as_str()),
        ("HTTP_PORT", port.as_str()),
    ];
    let mut running = dev(
        &[
            file.to_str().unwrap(),
            "--compose",
            compose.to_str().unwrap(),
            "--service",
            "app",
        ],
        tmp.path(),
        "local",
        &env,
    );
    let port: u16 = port.parse().unwrap();
    running.wait_for("running as the service app");
    assert_eq!(greeting(port), GREETING);
    // The service runs the image dev loaded, under the file's name for it.
    let ps = |args: &[&str]| {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(&compose).args(args).envs(env);
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let first = ps(&["ps", "-q", "app"]);
    assert!(!first.trim().is_empty());

    edit(&file, GREETING, "Hello from compose!");
    running.wait_for_nth("running as the service app", 2);
    assert_eq!(greeting(port), "Hello from compose!");
    assert_ne!(
        ps(&["ps", "-q", "app"]),
        first,
        "the service was not recreated"
    );

    running.signal(libc::SIGTERM);
    let (code, stderr) = running.finish();
    assert_eq!(code, Some(143), "{stderr}");
    assert!(ps(&["ps", "-q"]).trim().is_empty(), "services were left");
    let network = format!("devstack{}_default", std::process::id());
    let networks = tool("docker", &["network", "ls", "--format", "{{.Name}}"]).ok();
    assert!(
        !networks.stdout.lines().any(|n| n == network),
        "{network} was left"
    );
    assert!(entries(tmp.path()).is_empty(), "temp files were left");
}

#[test]
fn dev_refuses_what_it_cannot_run_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let file = server_in(dir.path());
    let file = file.to_str().unwrap();
    let missing = dir.path().join("missing.yml");
    let stack = dir.path().join("docker-compose.yml");
    std::fs::copy(repo().join("compose/docker-compose.yml"), &stack).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                file,
                "--compose",
                missing.to_str().unwrap(),
                "--service",
                "app",
            ],
            "no such file",
        ),
        (
            &[
                file,
                "--compose",
                stack.to_str().unwrap(),
                "--service",
                "web",
            ],
            "has no such service; it has: app",
        ),
        (&[file, "--server", "http://127.0.0.1:9"], "drop --server"),
        (&[file, "--publish", "8080"], "HOST_PORT:CONTAINER_PORT"),
    ];
    for (args, says) in cases {
        let run = ruchy_image([&["dev"][..], args].concat());
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(builders_for(Path::new(file)).is_empty());
    }
}
