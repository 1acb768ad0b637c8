//! The service under test: `ruchy-image serve` started on a free loopback port with the
//! tests' builder image, curl against it, contexts to send, and the guard that removes what
//! its builds left in the engine.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::guards::builder_image;

/// Every test named runs against both backends: `sqlite::NAME` and `postgres::NAME`.
#[allow(unused_macros)] // not every test file that uses the service runs on both
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                crate::service::on(crate::service::Backend::Sqlite, super::$name)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                crate::service::on(crate::service::Backend::Postgres, super::$name)
            })*
        }
    };
}

pub mod postgres;
pub mod registry;

/// The database the servers a test starts keep their state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: SQLite in the data dir.
    Sqlite,
    /// A database of the test's own in the test run's PostgreSQL cluster.
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// Runs `test` with every server it starts keeping its state on `backend` (tests run on
/// threads of their own).
pub fn on(backend: Backend, test: impl FnOnce()) {
    BACKEND.with(|b| b.set(backend));
    test()
}

/// The backend of this test.
pub fn backend() -> Backend {
    BACKEND.with(|b| b.get())
}

/// The PostgreSQL database of the service in `data` (made on first use, the same across its
/// restarts, and shared by workers started with `database_for` of the same key).
pub fn database_for(key: &Path) -> String {
    static MADE: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap();
    if let Some((_, url)) = made.iter().find(|(k, _)| k == key) {
        return url.clone();
    }
    let name = format!("test_{}", made.len() + 1);
    let url = postgres::cluster().database(&format!("{name}_{}", std::process::id()));
    made.push((key.to_path_buf(), url.clone()));
    url
}

/// The artifact registry of an in-process service on PostgreSQL (`shared`): the run's.
pub fn artifacts_for(shared: bool) -> Option<ruchy_image::shells::serve::artifacts::Artifacts> {
    shared.then(|| {
        ruchy_image::shells::serve::artifacts::Artifacts::new(
            &registry::artifacts_repository("builds"),
            Default::default(),
        )
        .expect("the run's registry is a repository")
    })
}

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `ruchy-image serve`, killed (SIGKILL) when dropped if still running.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token_file(data: &Path) -> PathBuf {
    let file = data.with_extension("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    file
}

/// The `serve` command for `data`, on a free loopback port, with the tests' builder image.
pub fn serve_command(data: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.args(["serve", "--data-dir", data.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--builder-image",
            &builder_image(),
        ])
        .arg("--token-file")
        .arg(token_file(data));
    if backend() == Backend::Postgres && !extra.contains(&"--database") {
        cmd.arg("--database").arg(database_for(data));
    }
    // Workers on PostgreSQL keep images in the run's registry.
    let shared = backend() == Backend::Postgres || extra.contains(&"--database");
    if shared && !extra.contains(&"--artifacts") {
        cmd.arg("--artifacts")
            .arg(registry::artifacts_repository("builds"));
    }
    cmd.args(extra)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the service and waits for the line that says where it listens.
pub fn start(data: &Path, extra: &[&str]) -> Server {
    let mut child = serve_command(data, extra).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr);
            panic!("serve did not start: {line}{stderr}")
        })
        .to_string();
    Server { child, url }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `curl` with the token (unless `token` is false), returning status, headers and body.
pub fn curl(server: &Server, method: &str, path: &str, args: &[&str], token: bool) -> Answer {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-D"])
        .arg(headers.path())
        .args(["-w", "\n%{http_code}"]);
    if token {
        cmd.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
    }
    cmd.args(args).arg(format!("{}{path}", server.url));
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Answer {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        headers: std::fs::read_to_string(headers.path()).unwrap_or_default(),
    }
}

/// A gzip'd tar of `dir`'s contents, as a client sends it.
pub fn context_of(dir: &Path) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".tar.gz")
        .tempfile()
        .unwrap();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(file.path())
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    file
}

/// Submits `context` with `query`; the accepted record.
pub fn submit(server: &Server, context: &Path, query: &str) -> serde_json::Value {
    let data = format!("@{}", context.display());
    let answer = curl(
        server,
        "POST",
        &format!("/v1/builds?{query}"),
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/gzip",
        ],
        true,
    );
    assert_eq!(answer.status, 202, "{}", answer.body);
    let record = answer.json();
    let id = record["id"].as_str().unwrap();
    assert!(
        answer
            .headers
            .to_lowercase()
            .contains(&format!("location: /v1/builds/{id}")),
        "{}",
        answer.headers
    );
    record
}

pub fn record(server: &Server, id: &str) -> serde_json::Value {
    let answer = curl(server, "GET", &format!("/v1/builds/{id}"), &[], true);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

/// Polls the record until `until` says yes (or fails after `limit`).
pub fn wait_for(
    server: &Server,
    id: &str,
    limit: Duration,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let current = record(server, id);
        if until(&current) {
            return current;
        }
        assert!(
            started.elapsed() < limit,
            "waited {limit:?} for {id}: {current}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn ended(record: &serde_json::Value) -> bool {
    !matches!(record["status"].as_str(), Some("queued" | "working"))
}

/// A single-file context holding the fibonacci example.
pub fn fibonacci_context(dir: &Path) -> tempfile::NamedTempFile {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(example("fibonacci.rs"), dir.join("fibonacci.rs")).unwrap();
    context_of(dir)
}

/// A Cargo project whose build script sleeps `seconds`: a build that is still working when
/// the test acts on it.
pub fn slow_project(dir: &Path, name: &str, seconds: u64) -> tempfile::NamedTempFile {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("build.rs"),
        format!("fn main() {{ std::thread::sleep(std::time::Duration::from_secs({seconds})); }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { println!(\"slow\"); }\n",
    )
    .unwrap();
    context_of(dir)
}

/// `docker ps`/`docker volume ls` of objects whose label `label` names a path under `data`.
pub fn labelled_under(kind: &str, label: &str, data: &Path) -> Vec<String> {
    let data = std::fs::canonicalize(data).unwrap().display().to_string();
    let format = format!("{{{{.ID}}}}\t{{{{.Label \"{label}\"}}}}");
    let format = if kind == "volume" {
        format.replace(".ID", ".Name")
    } else {
        format
    };
    let mut args = vec![kind, "ls", "--filter"];
    let filter = format!("label={label}");
    args.push(&filter);
    if kind == "container" {
        args.push("-a");
    }
    args.extend(["--format", &format]);
    let out = tool("docker", &args).ok().stdout;
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, path)| path.starts_with(&data))
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Builder containers compiling a build of the service in `data` (`build` is its ID, or ""
/// for any).
pub fn builders_in(data: &Path, build: &str) -> Vec<String> {
    let workspace = std::fs::canonicalize(data)
        .unwrap()
        .join("workspaces")
        .join(build);
    let all = labelled_under("container", "dev.ruchy.image.source", data);
    if build.is_empty() {
        return all;
    }
    let prefix = workspace.display().to_string();
    all.into_iter()
        .filter(|id| {
            let label = tool(
                "docker",
                &[
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"dev.ruchy.image.source\"}}",
                    id,
                ],
            )
            .stdout;
            label.trim().starts_with(&prefix)
        })
        .collect()
}

/// Removes the builder containers and cache volumes the service in `data` made, however the
/// test ends.
pub struct Leftovers(pub PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        if !self.0.exists() {
            return;
        }
        for id in labelled_under("container", "dev.ruchy.image.source", &self.0) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
        for name in labelled_under("volume", "dev.ruchy.image.cache", &self.0) {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &name])
                .output();
        }
    }
}

/// A data dir for a test's service, and the guard that cleans up after it.
pub fn data_dir(dir: &Path) -> (PathBuf, Leftovers) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    (data.clone(), Leftovers(data))
}
