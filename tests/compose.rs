//! The compose dev stack, for real: `compose/build-images.sh` builds the example HTTP server
//! with ruchy-image, docker-compose 1.29 runs `compose/docker-compose.yml`, and the running
//! container is checked from the outside (HTTP on loopback, `docker inspect`, stop signal).
//! Each test uses its own compose project and image tag; guards take everything down.

mod common;
mod guards;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use guards::Images;

fn compose_file() -> String {
    repo()
        .join("compose/docker-compose.yml")
        .display()
        .to_string()
}

/// `docker-compose -f FILE -p PROJECT ARGS` with `env`.
fn compose_file_run(file: &str, project: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-f", file, "-p", project]).args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd
        .output()
        .expect("docker-compose runs; `bash .ci/setup` installs it");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `docker-compose -f compose/docker-compose.yml -p PROJECT ARGS` with `env`.
fn compose(project: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    compose_file_run(&compose_file(), project, env, args)
}

/// `docker-compose down -v` of a project, however the test ends.
struct Down {
    file: String,
    project: String,
    env: Vec<(String, String)>,
}

impl Drop for Down {
    fn drop(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = compose_file_run(
            &self.file,
            &self.project,
            &env,
            &["down", "-v", "--remove-orphans"],
        );
    }
}

/// Containers and networks compose made for `project`.
fn leftovers(project: &str) -> (String, String) {
    let label = format!("label=com.docker.compose.project={project}");
    let containers = tool("docker", &["ps", "-a", "-q", "--filter", &label]).ok();
    let networks = tool("docker", &["network", "ls", "-q", "--filter", &label]).ok();
    (containers.stdout, networks.stdout)
}

/// 8080, the stack's port, unless something on this machine has it already.
fn host_port() -> u16 {
    if TcpListener::bind(("127.0.0.1", 8080)).is_ok() {
        return 8080;
    }
    let port = TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    eprintln!("note: 127.0.0.1:8080 is taken; the stack publishes {port} instead");
    port
}

/// A plain HTTP/1.0 GET on loopback; the whole response.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn the_stack_runs_healthy_limited_and_non_root() {
    let id = std::process::id();
    let project = format!("ruchy-image-test-compose-{id}");
    let image = format!("ruchy-image-test/http-server:compose-{id}");
    let port = host_port().to_string();
    let env = [
        ("HTTP_SERVER_IMAGE", image.as_str()),
        ("HTTP_PORT", port.as_str()),
    ];
    let _images = Images(vec![image.clone()]);

    let built = Command::new("bash")
        .arg(repo().join("compose/build-images.sh"))
        .env("RUCHY_IMAGE", env!("CARGO_BIN_EXE_ruchy-image"))
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", "local")
        .env("HTTP_SERVER_IMAGE", &image)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let _down = Down {
        file: compose_file(),
        project: project.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    compose(&project, &env, &["up", "-d"]).ok();
    let container = compose(&project, &env, &["ps", "-q", "app"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(!container.is_empty(), "no app container");

    // Healthy means the binary's own --health mode ran in the container and reached the server.
    let started = Instant::now();
    let health = loop {
        let status = tool(
            "docker",
            &[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                &container,
            ],
        )
        .ok()
        .stdout
        .trim()
        .to_string();
        if status != "starting" || started.elapsed() > Duration::from_secs(120) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let logs = tool("docker", &["logs", &container]);
    assert_eq!(health, "healthy", "logs:\n{}{}", logs.stdout, logs.stderr);

    let response = get(port.parse().unwrap(), "/").unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nHello from ruchy-image!\n"),
        "{response}"
    );
    // RUST_LOG=info: the server logged the request.
    let logs = tool("docker", &["logs", &container]).ok();
    assert!(logs.stderr.contains("GET / -> 200 OK"), "{}", logs.stderr);

    let format = "{{.Config.User}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} \
                  {{.HostConfig.Init}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.RestartPolicy.Name}}";
    let inspect = tool("docker", &["inspect", "--format", format, &container]).ok();
    assert_eq!(
        inspect.stdout.trim(),
        format!(
            "65532:65532 {} {} true true unless-stopped",
            128 * 1024 * 1024,
            500_000_000
        )
    );
    let ports = tool(
        "docker",
        &[
            "inspect",
            "--format",
            "{{json .NetworkSettings.Ports}}",
            &container,
        ],
    )
    .ok();
    assert!(
        ports
            .stdout
            .contains(&format!("\"HostIp\":\"127.0.0.1\",\"HostPort\":\"{port}\"")),
        "published on loopback only: {}",
        ports.stdout
    );

    // SIGTERM reaches the server through init: it ends by that signal, not by SIGKILL.
    compose(&project, &env, &["stop"]).ok();
    let exit = tool(
        "docker",
        &["inspect", "--format", "{{.State.ExitCode}}", &container],
    )
    .ok();
    assert_eq!(exit.stdout.trim(), (128 + 15).to_string());

    compose(&project, &env, &["down", "-v"]).ok();
    let (containers, networks) = leftovers(&project);
    assert!(
        containers.is_empty() && networks.is_empty(),
        "{containers} {networks}"
    );
}

#[test]
fn a_missing_image_fails_and_the_wrapper_says_how_to_build_it() {
    let id = std::process::id();
    let project = format!("ruchy-image-test-compose-missing-{id}");
    let image = format!("ruchy-image-test/http-server:missing-{id}");
    let env = [("HTTP_SERVER_IMAGE", image.as_str()), ("HTTP_PORT", "8080")];
    let _down = Down {
        file: compose_file(),
        project: project.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };

    let wrapper = Command::new("bash")
        .arg(repo().join("compose/up.sh"))
        .env("HTTP_SERVER_IMAGE", &image)
        .env("COMPOSE_PROJECT_NAME", &project)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrapper.stderr);
    assert_eq!(wrapper.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "image {image} not found: run compose/build-images.sh first"
        )),
        "{stderr}"
    );
    let (containers, networks) = leftovers(&project);
    assert!(
        containers.is_empty() && networks.is_empty(),
        "the wrapper started nothing"
    );

    // docker-compose itself tries to pull the image, which no registry has, and fails.
    let up = compose(&project, &env, &["up", "-d"]);
    assert_ne!(up.code, Some(0), "{}", up.stderr);
    assert!(up.stderr.contains(&image), "{}", up.stderr);
    let (containers, _) = leftovers(&project);
    assert!(containers.is_empty(), "{containers}");
}

/// Cache volumes the service made inside its container (labelled with its data dir's paths).
struct ServiceVolumes;

impl Drop for ServiceVolumes {
    fn drop(&mut self) {
        let Ok(out) = Command::new("docker")
            .args([
                "volume",
                "ls",
                "--filter",
                "label=dev.ruchy.image.cache",
                "--format",
                "{{.Name}}\t{{.Label \"dev.ruchy.image.cache\"}}",
            ])
            .output()
        else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((name, "/var/lib/ruchy-image/")) = line
                .split_once('\t')
                .map(|(n, l)| (n, l.get(..21).unwrap_or(l)))
            {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f", name])
                    .output();
            }
        }
    }
}

#[test]
fn the_service_stack_builds_what_it_is_sent() {
    let id = std::process::id();
    let project = format!("ruchy-image-test-service-{id}");
    let image = format!("ruchy-image-test/service:compose-{id}");
    let port = TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "compose-test-token-42\n").unwrap();
    let token_path = token_file.display().to_string();
    let builder = guards::builder_image();
    let env = [
        ("RUCHY_IMAGE_SERVICE_IMAGE", image.as_str()),
        ("RUCHY_IMAGE_PORT", port.as_str()),
        ("RUCHY_IMAGE_TOKEN_FILE", token_path.as_str()),
        ("RUCHY_IMAGE_BUILDER_IMAGE", builder.as_str()),
    ];
    let _images = Images(vec![image.clone()]);
    let _volumes = ServiceVolumes;
    let built = Command::new("bash")
        .arg(repo().join("compose/build-service-image.sh"))
        .env("RUCHY_IMAGE", env!("CARGO_BIN_EXE_ruchy-image"))
        .env("RUCHY_IMAGE_SERVICE_IMAGE", &image)
        .env("BASE", &builder)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let file = repo().join("compose/service.yml").display().to_string();
    let _down = Down {
        file: file.clone(),
        project: project.clone(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    compose_file_run(&file, &project, &env, &["up", "-d"]).ok();
    let port: u16 = port.parse().unwrap();
    let started = Instant::now();
    while !get(port, "/healthz").is_ok_and(|r| r.ends_with("ok\n")) {
        let logs = compose_file_run(&file, &project, &env, &["logs"]);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service did not come up: {}{}",
            logs.stdout,
            logs.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A build through the stack, with the token from the secret.
    let context = dir.path().join("context.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&context)
        .arg("-C")
        .arg(repo().join("examples"))
        .arg("fibonacci.rs")
        .status()
        .unwrap();
    assert!(tar.success());
    let url = format!("http://127.0.0.1:{port}");
    let submit = tool(
        "curl",
        &[
            "-sS",
            "-H",
            "Authorization: Bearer compose-test-token-42",
            "--data-binary",
            &format!("@{}", context.display()),
            &format!("{url}/v1/builds?optimize=aggressive"),
        ],
    )
    .ok();
    let accepted: serde_json::Value = serde_json::from_str(&submit.stdout).unwrap();
    let build = accepted["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{accepted}"));
    let started = Instant::now();
    let record = loop {
        let answer = tool(
            "curl",
            &[
                "-sS",
                "-H",
                "Authorization: Bearer compose-test-token-42",
                &format!("{url}/v1/builds/{build}"),
            ],
        )
        .ok();
        let record: serde_json::Value = serde_json::from_str(&answer.stdout).unwrap();
        if !matches!(record["status"].as_str(), Some("queued" | "working")) {
            break record;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{record}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(record["status"], "success", "{record}");
    assert_eq!(record["results"][0]["libc"], "musl");
    assert_eq!(record["results"][0]["builder"], "docker");
    let anonymous = get(port, "/v1/builds").unwrap();
    assert!(
        anonymous.starts_with("HTTP/1.0 401") || anonymous.starts_with("HTTP/1.1 401"),
        "{anonymous}"
    );
}
