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

/// `docker-compose -f compose/docker-compose.yml -p PROJECT ARGS` with `env`.
fn compose(project: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new("docker-compose");
    cmd.args(["-f", &compose_file(), "-p", project]).args(args);
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

/// `docker-compose down -v` of a project, however the test ends.
struct Down {
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
        let _ = compose(&self.project, &env, &["down", "-v", "--remove-orphans"]);
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
