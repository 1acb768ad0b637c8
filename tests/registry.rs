//! Pushing without a daemon to real registries: Debian's `docker-registry` (distribution
//! 2.8) started by each test from its own config, over plain HTTP on loopback and over TLS
//! (a throwaway CA from `openssl`) with htpasswd users (`htpasswd -B`). What was pushed is read
//! back by skopeo and by the engine (`docker pull`, `docker run`).

mod common;
mod guards;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use guards::Images;

/// A running registry, stopped when dropped.
struct Registry {
    child: Child,
    /// `host:port` as clients name it.
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The TLS and htpasswd parts of a registry's config.
struct Secure {
    cert: PathBuf,
    key: PathBuf,
    htpasswd: PathBuf,
}

/// Starts `docker-registry serve` listening on `listen_host`, reached as `reach_host`.
fn start_registry(listen_host: &str, reach_host: &str, secure: Option<&Secure>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {listen_host}:{port}\n",
        dir.path().join("data").display()
    );
    if let Some(secure) = secure {
        config += &format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: ruchy-image-test\n    path: {}\n",
            secure.cert.display(),
            secure.key.display(),
            secure.htpasswd.display()
        );
    }
    let config_file = dir.path().join("config.yml");
    std::fs::write(&config_file, config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry runs; `bash .ci/setup` installs it");
    let started = Instant::now();
    while std::net::TcpStream::connect((listen_host.replace("0.0.0.0", "127.0.0.1").as_str(), port))
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        address: format!("{reach_host}:{port}"),
        _dir: dir,
    }
}

/// A CA, a server certificate for 127.0.0.1 and `ip` signed by it, and an htpasswd file with
/// `alice` / `correct horse`.
fn secure_parts(dir: &Path, ip: &str) -> (Secure, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=ruchy-image test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=registry",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        format!("subjectAltName=IP:127.0.0.1,IP:{ip}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", "alice", "correct horse"])
        .output()
        .expect("htpasswd runs; `bash .ci/setup` installs apache2-utils");
    std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).unwrap();
    (
        Secure {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            htpasswd: dir.join("htpasswd"),
        },
        dir.join("ca.pem"),
    )
}

/// `ruchy-image build fibonacci -O size ARGS --json -` with `stdin` as its standard input.
fn push(args: &[&str], stdin: &str) -> Run {
    let fib = example("fibonacci.rs");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.args(["build", fib.to_str().unwrap(), "-O", "size", "--json", "-"])
        .args(args)
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", "docker")
        // No credentials of the machine's own.
        .env(
            "DOCKER_CONFIG",
            "/nonexistent/ruchy-image-test-docker-config",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

fn pushed(record: &serde_json::Value, index: usize) -> &serde_json::Value {
    let output = &record["outputs"][index];
    assert_eq!(output["kind"], "registry", "{record}");
    output
}

#[test]
fn a_push_over_http_is_what_was_built_and_the_second_uploads_nothing() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let first = format!("{}/ruchy-image-test/fib:size", registry.address);
    let second = format!("{}/ruchy-image-test/other:size", registry.address);
    let record = push(&["--push", &first, "--push", &second], "")
        .ok()
        .metrics();
    let digest = record["image"]["digest"].as_str().unwrap();
    let one = pushed(&record, 0);
    assert_eq!(one["location"], format!("{first}@{digest}"));
    assert_eq!(one["push"]["uploaded_blobs"], 3, "{record}");
    // The second repository mounts what the first uploaded.
    assert_eq!(pushed(&record, 1)["push"]["mounted_blobs"], 3, "{record}");

    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{first}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);

    let again = push(&["--push", &first], "").ok().metrics();
    assert_eq!(again["image"]["digest"], digest);
    let stats = &pushed(&again, 0)["push"];
    assert_eq!(
        (
            stats["uploaded_blobs"].as_u64(),
            stats["skipped_blobs"].as_u64()
        ),
        (Some(0), Some(3))
    );

    let _images = Images(vec![first.clone()]);
    tool("docker", &["pull", "-q", &first]).ok();
    let run = tool("docker", &["run", "--rm", &first]).ok();
    assert_eq!(run.stdout, "fibonacci(30) = 832040\nuid=65532 gid=65532\n");
}

#[test]
fn a_push_over_tls_with_a_password_and_what_goes_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ip = String::from_utf8(Command::new("hostname").arg("-I").output().unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .unwrap_or("127.0.0.1")
        .to_string();
    let (secure, ca) = secure_parts(dir.path(), &ip);
    let registry = start_registry("0.0.0.0", "127.0.0.1", Some(&secure));
    let port = registry.address.rsplit(':').next().unwrap().to_string();
    let reference = format!("{}/secure/fib:size", registry.address);
    let ca_arg = ca.to_str().unwrap();

    let record = push(
        &[
            "--push",
            &reference,
            "--registry-ca",
            ca_arg,
            "--registry-user",
            "alice",
            "--registry-password-stdin",
        ],
        "correct horse\n",
    )
    .ok()
    .metrics();
    let digest = record["image"]["digest"].as_str().unwrap().to_string();
    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:correct horse",
            &format!("docker://{reference}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);

    // A wrong password: who failed where, and no new tag.
    let other = format!("{}/secure/fib:wrong", registry.address);
    let wrong = push(
        &[
            "--push",
            &other,
            "--registry-ca",
            ca_arg,
            "--registry-user",
            "alice",
            "--registry-password-stdin",
        ],
        "battery staple\n",
    );
    assert_eq!(wrong.code, Some(1), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!(
            "authentication failed for {} as alice",
            registry.address
        )),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("battery"),
        "the password is never printed"
    );
    let tag = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:correct horse",
            &format!("docker://{other}"),
        ],
    );
    assert_ne!(tag.code, Some(0), "the failed push left a tag");

    // An unknown CA: the error says so and names the option that fixes it.
    let untrusted = push(&["--push", &format!("{ip}:{port}/secure/fib:ca")], "");
    assert_eq!(untrusted.code, Some(1), "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains("TLS certificate is not trusted"),
        "{}",
        untrusted.stderr
    );
    assert!(
        untrusted.stderr.contains("--registry-ca"),
        "{}",
        untrusted.stderr
    );
}

#[test]
fn unreachable_registries_and_bad_references_are_clear_errors() {
    let port = free_port();
    let unreachable = push(&["--push", &format!("127.0.0.1:{port}/app:1")], "");
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .contains(&format!("registry 127.0.0.1:{port}")),
        "{}",
        unreachable.stderr
    );
    let invalid = push(&["--push", "UPPER/Case:1"], "");
    assert_eq!(invalid.code, Some(2), "{}", invalid.stderr);
    assert!(
        invalid.stderr.contains("invalid push reference"),
        "{}",
        invalid.stderr
    );
    let by_digest = push(
        &["--push", "127.0.0.1:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"],
        "",
    );
    assert_eq!(by_digest.code, Some(2), "{}", by_digest.stderr);
}
