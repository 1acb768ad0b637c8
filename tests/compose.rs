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

impl Down {
    /// Takes the stack of `file` under `project` (with `env`) down when dropped.
    fn new(file: &str, project: &str, env: &[(&str, &str)]) -> Down {
        Down {
            file: file.to_string(),
            project: project.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// `compose/build-service-image.sh` with this test run's binary on `builder`, tagged `image`.
fn build_service_image(image: &str, builder: &str) {
    let built = Command::new("bash")
        .arg(repo().join("compose/build-service-image.sh"))
        .env("RUCHY_IMAGE", env!("CARGO_BIN_EXE_ruchy-image"))
        .env("RUCHY_IMAGE_SERVICE_IMAGE", image)
        .env("BASE", builder)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
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

    let _down = Down::new(&compose_file(), &project, &env);
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
    let _down = Down::new(&compose_file(), &project, &env);

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
    build_service_image(&image, &builder);

    let file = repo().join("compose/service.yml").display().to_string();
    let _down = Down::new(&file, &project, &env);
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

/// `curl` with the token against 127.0.0.1:`port`: status, headers and body.
fn curl_at(port: u16, token: &str, path: &str, args: &[&str]) -> (u16, String, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-D"])
        .arg(headers.path())
        .args(["-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        status.trim().parse().unwrap_or(0),
        std::fs::read_to_string(headers.path()).unwrap_or_default(),
        body.to_string(),
    )
}

/// The image `compose/SCRIPT` makes from this host's Debian packages, under the tag
/// `ruchy-image-test/NAME:<digest of the files it is made with>` (passed to the script as
/// `variable`): built once, then kept for later runs until one of those files changes.
fn host_image(name: &str, script: &str, inputs: &[&str], variable: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for file in std::iter::once(&script).chain(inputs) {
        hash.update(std::fs::read(repo().join("compose").join(file)).unwrap());
    }
    let digest: String = hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let image = format!("ruchy-image-test/{name}:{digest}");
    if tool("docker", &["image", "inspect", &image]).code == Some(0) {
        return image;
    }
    let built = Command::new("bash")
        .arg(repo().join("compose").join(script))
        .env(variable, &image)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    image
}

/// The PostgreSQL image `compose/build-postgres-image.sh` makes (PostgreSQL from the host's
/// packages), kept until the script or the entrypoint changes.
fn postgres_image() -> String {
    host_image(
        "postgres",
        "build-postgres-image.sh",
        &["postgres-entrypoint.sh"],
        "RUCHY_IMAGE_POSTGRES_IMAGE",
    )
}

/// The registry image `compose/build-registry-image.sh` makes (the host's docker-registry),
/// kept until the script changes.
fn registry_image() -> String {
    host_image(
        "registry",
        "build-registry-image.sh",
        &[],
        "RUCHY_IMAGE_REGISTRY_IMAGE",
    )
}

#[test]
fn the_cluster_stack_shares_one_queue_between_two_workers() {
    let id = std::process::id();
    let project = format!("ruchy-image-test-cluster-{id}");
    let image = format!("ruchy-image-test/service:cluster-{id}");
    let postgres = postgres_image();
    let registry = registry_image();
    let (port_one, port_two) = (free_port().to_string(), free_port().to_string());
    let dir = tempfile::tempdir().unwrap();
    let token = "cluster-test-token-42";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    // The password with characters a URL would need escaped: it never is in one.
    let password_file = dir.path().join("postgres.password");
    std::fs::write(&password_file, format!("p@ss:w/rd+{id}\n")).unwrap();
    // Root-only, as a secret should be: the entrypoints read it as root.
    for file in [&token_file, &password_file] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let token_path = token_file.display().to_string();
    let password_path = password_file.display().to_string();
    let builder = guards::builder_image();
    let env = [
        ("RUCHY_IMAGE_SERVICE_IMAGE", image.as_str()),
        ("RUCHY_IMAGE_POSTGRES_IMAGE", postgres.as_str()),
        ("RUCHY_IMAGE_REGISTRY_IMAGE", registry.as_str()),
        ("RUCHY_IMAGE_PORT", port_one.as_str()),
        ("RUCHY_IMAGE_PORT_TWO", port_two.as_str()),
        ("RUCHY_IMAGE_TOKEN_FILE", token_path.as_str()),
        ("RUCHY_IMAGE_POSTGRES_PASSWORD_FILE", password_path.as_str()),
        ("RUCHY_IMAGE_BUILDER_IMAGE", builder.as_str()),
    ];
    let _images = Images(vec![image.clone()]);
    let _volumes = ServiceVolumes;
    build_service_image(&image, &builder);

    let file = repo().join("compose/cluster.yml").display().to_string();
    let _down = Down::new(&file, &project, &env);
    let logs = || {
        let logs = compose_file_run(&file, &project, &env, &["logs", "--no-color"]);
        format!("{}{}", logs.stdout, logs.stderr)
    };
    // `up` waits for PostgreSQL and the registry to be healthy before it starts the workers.
    let up = compose_file_run(&file, &project, &env, &["up", "-d"]);
    assert_eq!(up.code, Some(0), "{}{}\n{}", up.stdout, up.stderr, logs());
    let ports: [u16; 2] = [port_one.parse().unwrap(), port_two.parse().unwrap()];
    let started = Instant::now();
    for port in ports {
        while !get(port, "/healthz").is_ok_and(|r| r.ends_with("ok\n")) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "a worker did not come up:\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // Either worker lists both, alive, each with the URL the other reaches it at.
    let workers = |port: u16| {
        let (status, _, body) = curl_at(port, token, "/v1/workers", &[]);
        assert_eq!(status, 200, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut workers: Vec<(String, String, String, String)> = listed["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let field = |k: &str| w[k].as_str().unwrap_or_default().to_string();
                (field("name"), field("state"), field("url"), field("id"))
            })
            .collect();
        workers.sort();
        workers
    };
    let known = workers(ports[0]);
    let summary: Vec<_> = known
        .iter()
        .map(|(name, state, url, _)| (name.as_str(), state.as_str(), url.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("worker-one", "alive", "http://worker-one:7878"),
            ("worker-two", "alive", "http://worker-two:7878"),
        ],
        "{known:?}"
    );
    assert_eq!(workers(ports[1]), known);
    // The password is in no container's configuration (environment, command, labels).
    let password = std::fs::read_to_string(&password_file).unwrap();
    for service in ["postgres", "worker-one", "worker-two"] {
        let container = compose_file_run(&file, &project, &env, &["ps", "-q", service]).ok();
        let config = tool(
            "docker",
            &[
                "inspect",
                "--format",
                "{{json .Config}}",
                container.stdout.trim(),
            ],
        )
        .ok();
        assert!(config.stdout.contains("/run/secrets/postgres-password"));
        assert!(!config.stdout.contains(password.trim()), "{service}");
    }
    let name_of = |id: &str| {
        known
            .iter()
            .find(|w| w.3 == id)
            .map(|w| w.0.clone())
            .unwrap_or_else(|| panic!("no worker {id} in {known:?}"))
    };

    // Four projects (a file each), sent alternately to either worker's port; both workers are
    // idle and take a project each at once, so both build some.
    let mut ids = Vec::new();
    for (n, name) in ["alpha", "beta", "gamma", "delta"].iter().enumerate() {
        let sources = dir.path().join(name);
        std::fs::create_dir_all(&sources).unwrap();
        std::fs::copy(example("fibonacci.rs"), sources.join(format!("{name}.rs"))).unwrap();
        let context = dir.path().join(format!("{name}.tar"));
        let tar = Command::new("tar")
            .arg("-cf")
            .arg(&context)
            .arg("-C")
            .arg(&sources)
            .arg(format!("{name}.rs"))
            .status()
            .unwrap();
        assert!(tar.success());
        let (status, _, body) = curl_at(
            ports[n % 2],
            token,
            "/v1/builds?optimize=aggressive",
            &["--data-binary", &format!("@{}", context.display())],
        );
        assert_eq!(status, 202, "{body}");
        let accepted: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(accepted["id"].as_str().unwrap().to_string());
    }
    let mut built_by = std::collections::BTreeMap::<String, Vec<String>>::new();
    for build in &ids {
        let started = Instant::now();
        let record = loop {
            let (status, _, body) = curl_at(ports[0], token, &format!("/v1/builds/{build}"), &[]);
            assert_eq!(status, 200, "{body}");
            let record: serde_json::Value = serde_json::from_str(&body).unwrap();
            if !matches!(record["status"].as_str(), Some("queued" | "working")) {
                break record;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "{record}\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(record["status"], "success", "{record}\n{}", logs());
        assert_eq!(record["attempts"], 1, "{record}");
        assert_eq!(record["results"][0]["builder"], "docker");
        let worker = name_of(record["worker"].as_str().unwrap());
        built_by.entry(worker).or_default().push(build.clone());
    }
    assert_eq!(
        built_by.keys().collect::<Vec<_>>(),
        ["worker-one", "worker-two"],
        "both workers built some: {built_by:?}"
    );

    // Each build's log and image through both ports: the log from PostgreSQL, the image from
    // the registry, whichever worker built it. The same image either way, where the record
    // says it is.
    let image_at = |port: u16, build: &str| {
        let (status, headers, _) = curl_at(
            port,
            token,
            &format!("/v1/builds/{build}/image"),
            &["-o", "/dev/null"],
        );
        assert_eq!(status, 200, "{headers}");
        let header = |name: &str| {
            headers
                .lines()
                .find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    key.eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name}: {headers}"))
        };
        let digest = header("docker-content-digest");
        assert_eq!(
            header("ruchy-image-location"),
            format!("registry:5000/ruchy-image-artifacts@{digest}")
        );
        digest
    };
    let mut digests = std::collections::BTreeMap::new();
    for build in &ids {
        for port in ports {
            let (status, _, log) = curl_at(port, token, &format!("/v1/builds/{build}/log"), &[]);
            assert_eq!(status, 200, "{log}");
            assert!(log.contains(&format!("→ build {build} started")), "{log}");
        }
        let digest = image_at(ports[0], build);
        assert_eq!(image_at(ports[1], build), digest, "{build}");
        digests.insert(build.clone(), digest);
    }
    // With worker-one stopped, worker-two still serves the images worker-one built.
    compose_file_run(&file, &project, &env, &["stop", "worker-one"]).ok();
    for build in &built_by["worker-one"] {
        assert_eq!(image_at(ports[1], build), digests[build], "{build}");
    }

    // The database is password-only: the workers got theirs from the secret, and a client
    // without it is refused.
    let refused = compose_file_run(
        &file,
        &project,
        &env,
        &[
            "exec",
            "-T",
            "postgres",
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "ruchy",
            "-d",
            "ruchy",
            "-w",
            "-c",
            "SELECT 1",
        ],
    );
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("password"),
        "{}{}",
        refused.stdout,
        refused.stderr
    );

    compose_file_run(&file, &project, &env, &["down", "-v"]).ok();
    let (containers, networks) = leftovers(&project);
    let label = format!("label=com.docker.compose.project={project}");
    let volumes = tool("docker", &["volume", "ls", "-q", "--filter", &label]).ok();
    assert!(
        containers.is_empty() && networks.is_empty() && volumes.stdout.is_empty(),
        "{containers} {networks} {}",
        volumes.stdout
    );
}
