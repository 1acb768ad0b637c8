//! The `local` backend: the host's cargo, driven through its JSON messages. A target or
//! panic strategy the toolchain ships no std for is served by a std built once from its
//! sources into the cache (see [`crate::adapters::stdlib`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::build_scripts::BuildScriptWatch;
use super::diagnostics::Diagnostics;
use super::{
    cargo_args, encoded_rustflags, is_std_mismatch, parse_message, with_rustc_args, Artifact,
    CargoLine, Compiler, StdChoice, StdInfo, StdSource,
};
use crate::adapters::c_toolchain::{musl_cc_with_kernel_headers, CTools};
use crate::adapters::fsutil::blocking;
use crate::adapters::stdlib;
use crate::adapters::toolchain::Toolchain;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::core::preset::Flags;
use crate::core::preset::StdVariant;
use crate::pipeline::auditable;
use crate::pipeline::source::Project;

/// Compiles with the host's `cargo`.
#[derive(Debug, Clone)]
pub struct LocalCompiler {
    cargo: PathBuf,
    toolchain: Toolchain,
    cache_dir: PathBuf,
    color: bool,
    quiet: bool,
}

impl LocalCompiler {
    /// Uses `$CARGO` (set when run from cargo) or `cargo` on PATH, and the rustc of `$RUSTC`
    /// or PATH; stds it builds are kept under `cache_dir`. `color` asks cargo to colour its
    /// diagnostics; `quiet` keeps its progress lines (not its errors) out.
    pub fn new(cache_dir: PathBuf, color: bool, quiet: bool) -> Result<LocalCompiler> {
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cargo"));
        Ok(LocalCompiler {
            cargo,
            toolchain: Toolchain::from_env()?,
            cache_dir,
            color,
            quiet,
        })
    }

    /// The rustc in use.
    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    /// The std for the flags' target and panic strategy: the toolchain's own, or one built
    /// from its sources (now, the first time).
    async fn std_for(&self, flags: &Flags, events: &Events) -> Result<StdChoice> {
        let target = flags.target.clone();
        let variant = flags.std_variant();
        let toolchain = self.toolchain.clone();
        let known = {
            let (toolchain, target) = (toolchain.clone(), target.clone());
            blocking(move || toolchain.knows_target(&target)).await?
        };
        if !known {
            return Err(Error::InvalidInput {
                what: "target",
                value: target,
                reason: format!(
                    "{} does not know it; `rustc --print target-list` lists the ones it does",
                    toolchain.version()
                ),
            });
        }
        if variant == StdVariant::Unwind && toolchain.has_std(&target) {
            if let Some(stamp) = stdlib::read_stamp(&toolchain.sysroot, &target) {
                if !stdlib::matches(&stamp, &toolchain.verbose_version) {
                    return Err(mismatch(&target, &toolchain.sysroot, &stamp, &toolchain));
                }
            }
            return Ok(StdChoice {
                sysroot: None,
                info: StdInfo {
                    source: StdSource::Toolchain,
                    variant,
                },
            });
        }
        if toolchain.std_sources().is_none() {
            let what = match variant {
                StdVariant::Unwind => format!("no standard library for {target}"),
                StdVariant::ImmediateAbort => {
                    format!("no standard library for {target} built for panic=immediate-abort")
                }
            };
            return Err(Error::TargetUnsupported {
                target,
                builder: "local".into(),
                reason: format!(
                    "{} ({}) has {what}, and no standard library sources to build one from: add them (`rustup component add rust-src`, or Debian's rustc-web, cargo-web, rust-web-src, musl-tools and libunwind-14-dev with RUSTC=/usr/bin/rustc)",
                    toolchain.version(),
                    toolchain.rustc.display()
                ),
            });
        }
        let cache_dir = self.cache_dir.clone();
        let events = events.clone();
        let sysroot =
            blocking(move || stdlib::ensure(&toolchain, &target, variant, &cache_dir, &events))
                .await?;
        Ok(StdChoice {
            sysroot: Some(sysroot.display().to_string()),
            info: StdInfo {
                source: StdSource::Rebuilt,
                variant,
            },
        })
    }
}

impl LocalCompiler {
    /// The rustc arguments that link the list of the project's crates into its binary, as
    /// `cargo metadata` (run as the build runs cargo) resolves them for the target; the object
    /// is kept in the cache under its content's name. None (with a warning) for a target we
    /// write no object for.
    async fn deps_object(
        &self,
        project: &Project,
        flags: &Flags,
        std: &StdChoice,
        events: &Events,
    ) -> Result<Vec<String>> {
        let mut command = auditable::metadata_command(&project.manifest_path, &flags.target);
        command.cargo_path(&self.cargo);
        if std.sysroot.is_some() {
            command.env("RUSTC", &self.toolchain.rustc);
        }
        let (manifest, package, target) = (
            project.manifest_path.clone(),
            project.package.clone(),
            flags.target.clone(),
        );
        let dir = self.cache_dir.join("auditable");
        let made = blocking(move || {
            let metadata = auditable::metadata(&command, &manifest)?;
            let object = auditable::object_for(&metadata, &manifest, &package, &target)?;
            let Some((name, object)) = object else {
                return Ok(None);
            };
            let path = dir.join(name);
            if !path.is_file() {
                crate::adapters::fsutil::create_parent("the crates' object", &path)?;
                crate::adapters::fsutil::write_file_atomically(
                    "the crates' object",
                    &path,
                    &object,
                )?;
            }
            Ok(Some(path))
        })
        .await?;
        match made {
            Some(path) => Ok(auditable::link_args(&path.display().to_string())),
            None => {
                events.emit(Event::Warning {
                    message: auditable::unsupported(&flags.target),
                });
                Ok(Vec::new())
            }
        }
    }
}

fn mismatch(target: &str, sysroot: &Path, stamp: &stdlib::Stamp, toolchain: &Toolchain) -> Error {
    Error::StdMismatch {
        target: target.to_string(),
        location: sysroot.display().to_string(),
        built_by: stamp.rustc.lines().next().unwrap_or_default().to_string(),
        compiler: toolchain.version().to_string(),
    }
}

#[async_trait::async_trait]
impl Compiler for LocalCompiler {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn host_target(&self) -> Result<String> {
        Ok(self.toolchain.host())
    }

    fn toolchain(&self) -> super::ToolchainFacts {
        super::ToolchainFacts {
            rustc: self.toolchain.verbose_version.clone(),
            image: None,
        }
    }

    async fn can_make(&self, target: &str, variant: StdVariant) -> bool {
        (variant == StdVariant::Unwind && self.toolchain.has_std(target))
            || self.toolchain.std_sources().is_some()
    }

    async fn compile(&self, project: &Project, flags: &Flags, events: &Events) -> Result<Artifact> {
        let started = Instant::now();
        let std = self.std_for(flags, events).await?;
        let manifest = project.manifest_path.display().to_string();
        let mut args = cargo_args(&manifest, project, flags, self.color);
        if self.quiet {
            args.push("--quiet".into());
        }
        let link = match flags.embed_deps {
            true => self.deps_object(project, flags, &std, events).await?,
            false => Vec::new(),
        };
        let mut cmd = Command::new(&self.cargo);
        cmd.args(with_rustc_args(args, &link))
            .envs(flags.cargo_env())
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                encoded_rustflags(
                    flags,
                    &std,
                    &project.workspace_root.display().to_string(),
                    &self.toolchain.host(),
                ),
            )
            .env_remove("RUSTFLAGS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so an interrupted build can stop cargo, rustc and build
            // scripts together (see `ProcessGroup`).
            .process_group(0);
        if std.sysroot.is_some() {
            // A rebuilt std links only with the compiler that built it. (Otherwise cargo
            // runs `rustc` as usual, so a project's rust-toolchain.toml still counts.)
            cmd.env("RUSTC", &self.toolchain.rustc);
        }
        if flags.needs_bootstrap() {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        // The target's C tools for build scripts (musl-gcc for musl), as the builder image
        // sets them; what the user set already wins.
        let host = self.toolchain.host();
        let tools = CTools::for_target(&flags.target, &host)
            .filter(|tools| flags.target != host && tools.cc_on_path());
        if let Some(mut tools) = tools {
            if tools.target.ends_with("-musl") {
                let dir = self.cache_dir.join("c").join(&tools.target);
                let wrapper = musl_cc_with_kernel_headers(&tools, &dir).map_err(Error::io(
                    format!("writing a C compiler wrapper in {}", dir.display()),
                ))?;
                tools.cc = wrapper.display().to_string();
            }
            for (name, value) in tools.env() {
                if !tools.user_set(&name) {
                    cmd.env(name, value);
                }
            }
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: self.cargo.display().to_string(),
            source,
        })?;

        let group = ProcessGroup(child.id());
        let std_mismatch = AtomicBool::new(false);
        let build_scripts = BuildScriptWatch::default();
        let diagnostics = Diagnostics::for_project(project);
        let output = |line: String| {
            if is_std_mismatch(&line) {
                std_mismatch.store(true, Ordering::Relaxed);
            }
            build_scripts.observe(&line);
            events.emit(Event::CompilerOutput {
                line: diagnostics.rewrite(&line),
            })
        };
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
                        ..
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
            if std_mismatch.load(Ordering::Relaxed) {
                return Err(Error::StdMismatch {
                    target: flags.target.clone(),
                    location: std
                        .sysroot
                        .unwrap_or_else(|| self.toolchain.sysroot.display().to_string()),
                    built_by: "another compiler (rustc error E0514, above)".into(),
                    compiler: self.toolchain.version().to_string(),
                });
            }
            return Err(build_scripts.error(
                &project.package,
                status,
                "this machine (--builder local)".into(),
                false,
            ));
        }
        let binary = binary.ok_or_else(|| Error::NoExecutable {
            bin: project.bin.clone(),
        })?;
        Ok(Artifact {
            binary,
            compile_time: started.elapsed(),
            fresh,
            std: std.info,
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
