//! The `local` backend: the host's cargo, driven through its JSON messages.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{cargo_args, encoded_rustflags, parse_message, Artifact, CargoLine, Compiler};
use crate::error::{Error, Result};
use crate::event::{Event, Events};
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

    async fn compile(&self, project: &Project, flags: &Flags, events: &Events) -> Result<Artifact> {
        let started = Instant::now();
        let manifest = project.manifest_path.display().to_string();
        let mut cmd = Command::new(&self.cargo);
        cmd.args(cargo_args(&manifest, project, flags, self.color))
            .envs(flags.cargo_env())
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                encoded_rustflags(flags, &project.workspace_root.display().to_string()),
            )
            .env_remove("RUSTFLAGS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        let output = |line: String| events.emit(Event::CompilerOutput { line });
        // stdout carries cargo's JSON messages; stderr its status lines and diagnostics.
        let mut messages = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut diagnostics = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let read_messages = async {
            let mut binary = None;
            let mut fresh = true;
            while let Some(line) = messages.next_line().await? {
                match parse_message(&line, &project.bin) {
                    CargoLine::Artifact {
                        executable,
                        fresh: was_fresh,
                    } => {
                        fresh &= was_fresh;
                        binary = executable.or(binary);
                    }
                    // Anything that is not a JSON message (a build script's println) is passed on.
                    CargoLine::Text => output(line),
                    CargoLine::Other => {}
                }
            }
            Ok::<_, std::io::Error>((binary, fresh))
        };
        let read_diagnostics = async {
            while let Some(line) = diagnostics.next_line().await? {
                output(line);
            }
            Ok::<_, std::io::Error>(())
        };
        let (read, _) = tokio::try_join!(read_messages, read_diagnostics)
            .map_err(Error::io("reading cargo's output"))?;
        let (binary, fresh) = read;
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
