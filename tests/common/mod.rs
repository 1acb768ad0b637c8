//! Helpers for the integration tests: they run the real `ruchy-image` binary against real
//! cargo, and read its output with real third-party tools (skopeo, umoci, docker).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the command succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "command failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `--json -` record printed on stdout.
    pub fn metrics(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// One cache for every test, so generated projects and their targets are shared.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ruchy-image-cache")
}

/// Runs `ruchy-image ARGS` with the shared cache.
pub fn ruchy_image<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ruchy_image_with(args, |_| {})
}

/// Runs `ruchy-image ARGS` with the shared cache, after `tweak` adjusts the command.
pub fn ruchy_image_with<I, S>(args: I, tweak: impl FnOnce(&mut Command)) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ruchy-image"));
    cmd.args(args).env("RUCHY_IMAGE_CACHE", cache_dir());
    // The host toolchain unless a test asks for `--builder docker`: it is the faster one.
    cmd.env("RUCHY_IMAGE_BUILDER", "local");
    // `compare` times cold starts through the engine only where a test asks for it.
    cmd.env("RUCHY_IMAGE_COLD_START_RUNS", "0");
    // A target dir inherited from `cargo test` must not leak into the builds under test.
    cmd.env_remove("CARGO_TARGET_DIR");
    tweak(&mut cmd);
    Run::from(cmd.output().expect("ruchy-image runs"))
}

/// Runs a third-party tool; a missing tool fails the test with how to get it.
pub fn tool(program: &str, args: &[&str]) -> Run {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); `bash .ci/setup` installs the test tools")
        });
    Run::from(output)
}

/// CycloneDX's own validator (PyPI `cyclonedx-python-lib`, installed by `.ci/setup`): the
/// 1.5 JSON schema, strict. Panics with its complaint.
pub fn assert_valid_cyclonedx_1_5(sbom: &Path) {
    const VALIDATE: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if error is not None:
    sys.exit(f"not valid CycloneDX 1.5: {error}")
"#;
    let checked = tool("python3", &["-c", VALIDATE, sbom.to_str().unwrap()]);
    assert_eq!(
        checked.code,
        Some(0),
        "{}: {}",
        sbom.display(),
        checked.stderr
    );
}

/// `skopeo inspect --config oci:DIR:TAG` and `skopeo inspect oci:DIR:TAG`, as JSON.
pub fn skopeo_inspect(layout: &Path, tag: &str) -> (serde_json::Value, serde_json::Value) {
    let reference = format!("oci:{}:{tag}", layout.display());
    let summary = tool("skopeo", &["inspect", &reference]).ok();
    let config = tool("skopeo", &["inspect", "--config", &reference]).ok();
    (
        serde_json::from_str(&summary.stdout).unwrap(),
        serde_json::from_str(&config.stdout).unwrap(),
    )
}

/// `umoci unpack` of `DIR:TAG` into a fresh bundle; returns the bundle (rootfs inside).
pub fn umoci_unpack(layout: &Path, tag: &str) -> tempfile::TempDir {
    let bundle = tempfile::tempdir().unwrap();
    let target = bundle.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{tag}", layout.display()),
            target.to_str().unwrap(),
        ],
    )
    .ok();
    bundle
}

/// Entries of a directory, for "nothing was written" checks.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Unix mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// The host's architecture, as OCI names it (`amd64`, `arm64`, ...): what a binary built here
/// for the host is for.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An OCI architecture that is not the host's, for "a base for another architecture" checks.
pub fn foreign_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// The dynamic loader (ELF `PT_INTERP`) of the running test executable: the one a dynamically
/// linked binary built on this host for the host asks for (`/lib64/ld-linux-x86-64.so.2`, ...).
pub fn host_loader() -> String {
    let exe = std::env::current_exe().expect("the test executable's path");
    let bytes =
        std::fs::read(&exe).unwrap_or_else(|e| panic!("cannot read {}: {e}", exe.display()));
    let elf = goblin::elf::Elf::parse(&bytes)
        .unwrap_or_else(|e| panic!("{} is not an ELF file: {e}", exe.display()));
    elf.interpreter
        .unwrap_or_else(|| {
            panic!(
                "{} is statically linked: it names no loader to derive the host's from",
                exe.display()
            )
        })
        .to_string()
}

/// Containers with a label (`key` or `key=value`), running or not: parallel tests each look
/// at their own.
pub fn containers_with(label: &str) -> Vec<String> {
    let out = tool(
        "docker",
        &["ps", "-a", "-q", "--filter", &format!("label={label}")],
    )
    .ok();
    out.stdout.lines().map(str::to_string).collect()
}

/// Builder containers of the project or file at `source`.
pub fn builders_for(source: &Path) -> Vec<String> {
    let source = std::fs::canonicalize(source).unwrap();
    containers_with(&format!("dev.ruchy.image.source={}", source.display()))
}

/// A command running in the background (a build to interrupt), its stderr read line by line.
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: String,
}

impl Running {
    /// Starts `cmd` in a process group of its own, like a job a shell runs: signals sent to
    /// it reach it alone.
    pub fn spawn(mut cmd: Command) -> Running {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits (three minutes at most) until stderr shows `marker`.
    pub fn wait_for(&mut self, marker: &str) {
        self.wait_for_nth(marker, 1)
    }

    /// Waits (three minutes at most) until stderr has shown `marker` `n` times.
    pub fn wait_for_nth(&mut self, marker: &str, n: usize) {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while self.seen.matches(marker).count() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {marker:?} (×{n}) in:\n{}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before {marker:?} (×{n}):\n{}", self.seen)
                }
            }
        }
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: i32) {
        // SAFETY: a plain kill(2) of a child we have not reaped.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "kill failed");
    }

    /// What stderr has shown so far.
    pub fn seen(&self) -> &str {
        &self.seen
    }

    /// The exit code (`None` when a signal ended it) and all of stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        for line in self.lines.iter() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        (status.code(), self.seen)
    }
}

/// The chapter's fibonacci example, as a command-line argument.
pub fn fib() -> String {
    example("fibonacci.rs").display().to_string()
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Events, kept for the test to read.
pub fn recorder() -> (
    std::sync::Arc<std::sync::Mutex<Vec<ruchy_image::event::Event>>>,
    ruchy_image::event::Events,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    (
        seen,
        ruchy_image::event::Events::new(move |e| sink.lock().unwrap().push(e)),
    )
}

/// The stages in the order they started and finished.
pub fn stages(events: &[ruchy_image::event::Event]) -> Vec<String> {
    use ruchy_image::event::Event;
    events
        .iter()
        .filter_map(|e| match e {
            Event::StageStarted { stage } => Some(format!("{stage} started")),
            Event::StageFinished { stage, .. } => Some(format!("{stage} finished")),
            _ => None,
        })
        .collect()
}

/// The smallest static x86-64 Linux executable: one PT_LOAD segment whose code is
/// `exit(0)`. What a stand-in compiler hands over as "the binary", without any toolchain.
pub fn tiny_static_elf() -> Vec<u8> {
    // mov eax, 60 (exit); xor edi, edi; syscall
    let code = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    let (base, headers) = (0x40_0000u64, 64 + 56);
    let size = (headers + code.len()) as u64;
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, little-endian, SysV
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(62u16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes());
    elf.extend((base + headers as u64).to_le_bytes()); // entry: the code after the headers
    elf.extend(64u64.to_le_bytes()); // program headers right after this one
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    for half in [64u16, 56, 1, 64, 0, 0] {
        elf.extend(half.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // R+X
    for word in [0, base, base, size, size, 0x1000] {
        elf.extend(word.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    elf.extend(code);
    elf
}

/// A bollard client of the engine, at an API version it speaks, for what a test asks the
/// engine itself (`docker build`): the library keeps its client to itself.
pub async fn docker_client() -> bollard::Docker {
    bollard::Docker::connect_with_defaults()
        .expect("DOCKER_HOST names an engine")
        .negotiate_version()
        .await
        .expect("the engine answers")
        // A build takes minutes; bollard's default gives a request two.
        .with_timeout(std::time::Duration::from_secs(3600))
}

/// An ECDSA P-256 key pair as `openssl ecparam -name prime256v1 -genkey -noout` makes it, in
/// `dir`: (`NAME.pem`, SEC1 private; `NAME.pub`, SPKI public).
pub fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub")),
    );
    let p = private.to_str().unwrap();
    tool(
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            p,
        ],
    )
    .ok();
    let out = public.to_str().unwrap();
    tool("openssl", &["ec", "-in", p, "-pubout", "-out", out]).ok();
    (private, public)
}
