//! What a build's own code can reach in a builder container. A build runs the project's
//! build scripts and proc macros and every dependency's: in a service many CI jobs share,
//! the least trusted code in the system. So every builder container has no capabilities,
//! `no-new-privileges`, and memory, process and CPU limits; the one that downloads
//! dependencies (`cargo fetch`, which runs no build script) is the only one with a network;
//! and what one build's code can write, another project's compile never reads (see
//! [`TargetScope`] and the dependency phase in `deps.rs`).

use crate::adapters::engine::{ContainerSpec, Engine};
use crate::core::error::{Error, Result};
use crate::core::metrics::human_size;

/// The user the project's code runs as (build scripts, proc macros, rustc): not root. Cargo's
/// fetch, which runs none of it, stays root (without capabilities), the owner of cargo's home.
pub(super) const BUILDER_UID: u64 = 65532;

/// Limits of each builder container. `None` leaves one to the engine (unlimited).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Memory in bytes, swap included.
    pub memory: Option<u64>,
    /// Processes and threads together.
    pub pids: Option<u64>,
    /// CPUs (`1.5`: one and a half).
    pub cpus: Option<f64>,
}

impl Limits {
    /// A service's defaults: two builds at once fit a 2-core, 8 GiB worker with room for
    /// the service and the engine.
    pub const SERVICE: Limits = Limits {
        memory: Some(3 << 30),
        pids: Some(1024),
        cpus: Some(2.0),
    };

    /// The command line's defaults: a fork storm or a runaway allocation cannot take the
    /// machine down, and a build has what the machine has otherwise. The memory limit is
    /// three quarters of the engine's when none is given (see [`Limits::with_memory_of`]).
    pub const CLI: Limits = Limits {
        memory: None,
        pids: Some(4096),
        cpus: None,
    };

    /// These limits, with three quarters of `machine` bytes for memory when none is set.
    pub fn with_memory_of(self, machine: u64) -> Limits {
        Limits {
            memory: self.memory.or((machine > 0).then_some(machine / 4 * 3)),
            ..self
        }
    }

    /// One line for `doctor` and the service's startup log.
    pub fn describe(&self) -> String {
        let memory = self.memory.map_or("memory unlimited".into(), |m| {
            format!("memory {}", human_size(m))
        });
        let pids = self
            .pids
            .map_or("processes unlimited".into(), |p| format!("{p} processes"));
        let cpus = self
            .cpus
            .map_or("CPUs unlimited".into(), |c| format!("{c} CPUs"));
        format!("{memory}, {pids}, {cpus}")
    }
}

/// A memory limit as `--build-memory` takes it: a size of at least 64 MiB (less cannot start
/// cargo).
pub fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    let bytes = crate::core::metrics::parse_size(text)?;
    match bytes >= 64 << 20 {
        true => Ok(bytes),
        false => Err("a builder needs at least 64MiB".into()),
    }
}

/// A process limit as `--build-pids` takes it: at least 32 (cargo and rustc are threads too).
pub fn parse_pids(text: &str) -> std::result::Result<u64, String> {
    match text.parse::<u64>() {
        Ok(pids) if pids >= 32 => Ok(pids),
        _ => Err("a number of processes, at least 32".into()),
    }
}

/// A CPU limit as `--build-cpus` takes it: a positive number of CPUs.
pub fn parse_cpus(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus >= 0.01 => Ok(cpus),
        _ => Err("a number of CPUs, at least 0.01 (e.g. 1.5)".into()),
    }
}

/// Whose a build's target directory (its compiled crates, written by its own code) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetScope {
    /// The project's (the command line: one per project directory), kept between builds for
    /// incremental rebuilds.
    #[default]
    Project,
    /// The build's alone, removed after it (the service: no two builds share one).
    Build,
}

/// Where a build's code runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// The limits of each builder container.
    pub limits: Limits,
    /// Whose the target directory is.
    pub target: TargetScope,
    /// The cache volumes' names, where not the defaults.
    pub volumes: CacheVolumes,
}

/// Names for the cache volumes in place of the defaults (a test's or a benchmark's own, empty
/// ones: `RUCHY_IMAGE_CARGO_VOLUME` and `RUCHY_IMAGE_TARGET_VOLUME` to the shells).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheVolumes {
    /// Cargo's home [`ruchy-image-cargo-home`].
    pub cargo_home: Option<String>,
    /// The base of the target volumes' names: `BASE-0`... shared, `BASE-project-…` a
    /// project's [`ruchy-image-shared-<builder image ID>`].
    pub targets: Option<String>,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox {
            limits: Limits::CLI,
            target: TargetScope::Project,
            volumes: CacheVolumes::default(),
        }
    }
}

impl Sandbox {
    /// The service's: its defaults, and a target directory per build.
    pub fn service(limits: Limits) -> Sandbox {
        Sandbox {
            limits,
            target: TargetScope::Build,
            volumes: CacheVolumes::default(),
        }
    }

    /// What is in force, in a few lines, for `doctor` and the service's startup log.
    pub fn describe(&self) -> Vec<String> {
        let target = match self.target {
            TargetScope::Project => "a target directory per project",
            TargetScope::Build => "a target directory per build, removed after it",
        };
        vec![
            "no network while compiling (dependencies are downloaded first by `cargo fetch`, which runs no build script)".into(),
            format!("the project's code runs as user {BUILDER_UID}, with no capabilities and no-new-privileges"),
            format!("limits: {}", self.limits.describe()),
            format!("{target}; compiled registry dependencies shared read-only"),
        ]
    }
}

/// What a builder container's code sees of its sandbox, from inside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The user ID it runs as.
    pub uid: String,
    /// Its network interfaces.
    pub interfaces: Vec<String>,
    /// Its effective capabilities (`/proc/self/status`'s hex mask).
    pub capabilities: String,
    /// Whether `no-new-privileges` is set.
    pub no_new_privileges: bool,
    /// Its cgroup's memory limit, as the kernel says it (`max`: none).
    pub memory: String,
    /// Its cgroup's process limit (`max`: none).
    pub pids: String,
}

impl Seen {
    /// Whether it is what [`Sandbox`] promises: not root, loopback only, no capabilities,
    /// no-new-privileges, numeric limits.
    pub fn holds(&self) -> bool {
        self.uid.parse::<u64>().is_ok_and(|uid| uid != 0)
            && self.interfaces == ["lo"]
            && self.capabilities.trim_start_matches('0').is_empty()
            && self.no_new_privileges
            && self.memory.parse::<u64>().is_ok()
            && self.pids.parse::<u64>().is_ok()
    }
}

/// Runs a container of `image` as a compile's is run (the last phase's: no network) and
/// reports what it sees: `doctor`'s proof that the engine applies the sandbox.
pub async fn probe(engine: &Engine, image: &str, limits: Limits) -> Result<Seen> {
    const LOOK: &str = r#"echo "uid=$(id -u)"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d ' \t' | tr ':' '='
echo "memory=$(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null | head -n 1)"
echo "pids=$(cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null | head -n 1)""#;
    let spec = ContainerSpec {
        image: image.to_string(),
        entrypoint: Some(vec!["sh".into(), "-c".into(), LOOK.into()]),
        cmd: Some(Vec::new()),
        labels: [("dev.ruchy.image.role".to_string(), "probe".to_string())].into(),
        memory: limits.memory,
        cpus: limits.cpus,
        pids: limits.pids,
        user: Some(format!("{BUILDER_UID}:{BUILDER_UID}")),
        no_network: true,
        least_privilege: true,
        ..ContainerSpec::default()
    };
    let id = engine.create(spec).await?;
    let mut seen = Seen::default();
    let ran = engine
        .run_to_completion(&id, &mut |_, line| {
            let Some((key, value)) = line.split_once('=') else {
                return;
            };
            match key {
                "uid" => seen.uid = value.to_string(),
                "net" => seen.interfaces = value.split_whitespace().map(String::from).collect(),
                "CapEff" => seen.capabilities = value.to_string(),
                "NoNewPrivs" => seen.no_new_privileges = value == "1",
                "memory" => seen.memory = value.to_string(),
                "pids" => seen.pids = value.to_string(),
                _ => {}
            }
        })
        .await;
    let removed = engine.remove_container(&id).await;
    Error::with_cleanup(ran, removed)?;
    Ok(seen)
}

/// The line the builder prints after cargo fails: how often its cgroup's memory and process
/// limits were hit (cgroup v2's files, or v1's).
pub(super) const LIMIT_REPORT: &str = "ruchy-image-limits";

/// The shell that reports them, run when cargo has failed.
pub(super) const REPORT_LIMITS: &str = r#"oom=$(cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null | awk '$1 == "oom_kill" { print $2; exit }')
pids=$(cat /sys/fs/cgroup/pids.events /sys/fs/cgroup/pids/pids.events 2>/dev/null | awk '$1 == "max" { print $2; exit }')
echo "ruchy-image-limits oom_kill=${oom:-0} pids_max=${pids:-0}" >&2"#;

/// The limits a failed build hit, from the line [`REPORT_LIMITS`] printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LimitsHit {
    /// Processes the kernel killed for memory.
    pub oom_kills: u64,
    /// Forks refused for the process limit.
    pub pids_refused: u64,
}

impl LimitsHit {
    /// The report in `line`, if it is one.
    pub fn parse(line: &str) -> Option<LimitsHit> {
        let rest = line.strip_prefix(LIMIT_REPORT)?;
        let mut hit = LimitsHit::default();
        for pair in rest.split_whitespace() {
            match pair.split_once('=') {
                Some(("oom_kill", n)) => hit.oom_kills = n.parse().ok()?,
                Some(("pids_max", n)) => hit.pids_refused = n.parse().ok()?,
                _ => {}
            }
        }
        Some(hit)
    }

    /// The error for a build of `package` that hit a limit, if it did.
    pub fn error(&self, package: &str, limits: &Limits) -> Option<Error> {
        let (limit, value, flag) = if self.oom_kills > 0 {
            let value = limits.memory.map_or("the engine's".into(), human_size);
            ("memory", value, "--build-memory")
        } else if self.pids_refused > 0 {
            let value = limits
                .pids
                .map_or("the engine's".into(), |p| format!("{p} processes"));
            ("process", value, "--build-pids")
        } else {
            return None;
        };
        Some(Error::LimitReached {
            package: package.to_string(),
            limit,
            value,
            flag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_report_names_the_limit_and_its_flag() {
        let limits = Limits::SERVICE;
        let none = LimitsHit::parse("ruchy-image-limits oom_kill=0 pids_max=0").unwrap();
        assert_eq!(none.error("app", &limits).map(|e| e.to_string()), None);
        let memory = LimitsHit::parse("ruchy-image-limits oom_kill=1 pids_max=0").unwrap();
        let message = memory.error("app", &limits).unwrap().to_string();
        assert!(message.contains("memory limit (3.0 GiB)"), "{message}");
        assert!(message.contains("--build-memory"), "{message}");
        let pids = LimitsHit::parse("ruchy-image-limits oom_kill=0 pids_max=7").unwrap();
        let message = pids.error("app", &limits).unwrap().to_string();
        assert!(
            message.contains("process limit (1024 processes)"),
            "{message}"
        );
        assert!(message.contains("--build-pids"), "{message}");
        assert_eq!(LimitsHit::parse("warning: unused"), None);
    }

    #[test]
    fn the_command_line_takes_three_quarters_of_the_machine_unless_told() {
        assert_eq!(Limits::CLI.with_memory_of(8 << 30).memory, Some(6 << 30));
        let set = Limits {
            memory: Some(1 << 30),
            ..Limits::CLI
        };
        assert_eq!(set.with_memory_of(8 << 30).memory, Some(1 << 30));
        assert_eq!(Limits::CLI.with_memory_of(0).memory, None);
    }
}
