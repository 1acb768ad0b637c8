//! The `local` backend: the host's cargo, driven through its JSON messages.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use cargo_metadata::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{Artifact, Compiler};
use crate::error::{Error, Result};
use crate::preset::Flags;
use crate::source::Project;

/// Compiles with the host's `cargo`.
#[derive(Debug, Clone)]
pub struct LocalCompiler {
    cargo: PathBuf,
    color: bool,
    quiet: bool,
}

impl LocalCompiler {
    /// Uses `$CARGO` (set when run from cargo) or `cargo` on PATH. `color` asks cargo to
    /// colour its diagnostics; `quiet` keeps its progress lines (not its errors) out.
    pub fn new(color: bool, quiet: bool) -> LocalCompiler {
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cargo"));
        LocalCompiler {
            cargo,
            color,
            quiet,
        }
    }
}

/// `CARGO_ENCODED_RUSTFLAGS` for the build: the user's own flags first, then ours.
fn encoded_rustflags(flags: &Flags, project: &Project) -> String {
    let mut all: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) if !encoded.is_empty() => encoded.split('\x1f').map(String::from).collect(),
        _ => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    all.extend(flags.rustflags());
    // Debug info records absolute paths; map the workspace to `.` so the binary (and so the
    // image digest) does not depend on where the project sits.
    all.push(format!(
        "--remap-path-prefix={}=.",
        project.workspace_root.display()
    ));
    all.join("\x1f")
}

#[async_trait::async_trait]
impl Compiler for LocalCompiler {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn default_target(&self) -> Result<String> {
        let out = Command::new("rustc")
            .arg("-vV")
            .output()
            .await
            .map_err(|source| Error::Spawn {
                program: "rustc".into(),
                source,
            })?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .map(str::to_string)
            .ok_or_else(|| Error::Spawn {
                program: "rustc -vV".into(),
                source: std::io::Error::other("it printed no host triple"),
            })
    }

    async fn compile(&self, project: &Project, flags: &Flags) -> Result<Artifact> {
        let started = Instant::now();
        let mut cmd = Command::new(&self.cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(&project.manifest_path)
            .args(["--package", &project.package, "--bin", &project.bin])
            .args(["--profile", &flags.profile(), "--target", &flags.target])
            .arg("--message-format=json-render-diagnostics")
            .args(["--color", if self.color { "always" } else { "never" }])
            .envs(flags.cargo_env())
            .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(flags, project))
            .env_remove("RUSTFLAGS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so an interrupted build can stop cargo, rustc and build
            // scripts together (see `ProcessGroup`).
            .process_group(0);
        if self.quiet {
            cmd.arg("--quiet");
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: self.cargo.display().to_string(),
            source,
        })?;

        let group = ProcessGroup(child.id());
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut binary = None;
        let mut fresh = true;
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(Error::io("reading cargo's output"))?
        {
            match serde_json::from_str::<Message>(&line) {
                Ok(Message::CompilerArtifact(artifact)) => {
                    fresh &= artifact.fresh;
                    let is_our_bin =
                        artifact.target.is_bin() && artifact.target.name == project.bin;
                    if is_our_bin {
                        binary = artifact.executable.map(PathBuf::from);
                    }
                }
                // Anything that is not a JSON message (a build script's println) is passed on.
                Err(_) => eprintln!("{line}"),
                Ok(_) => {}
            }
        }
        let status = child.wait().await.map_err(Error::io("waiting for cargo"))?;
        group.finished();
        if !status.success() {
            return Err(Error::CompileFailed {
                package: project.package.clone(),
                status,
            });
        }
        let binary = binary.ok_or_else(|| Error::NoExecutable {
            bin: project.bin.clone(),
        })?;
        Ok(Artifact {
            binary,
            compile_time: started.elapsed(),
            fresh,
        })
    }
}

/// Kills and reaps cargo's whole process group when dropped before [`finished`]: the build
/// future is dropped on Ctrl-C or on an error, and no rustc or build script may outlive it.
///
/// [`finished`]: ProcessGroup::finished
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        // SAFETY: plain syscalls on a process group and child we created and have not reaped.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}
