//! Leaving nothing behind, even after SIGKILL: every container and temp path we make carries
//! its owner (this process), and every run sweeps away what an owner that is gone left.
//!
//! An owner is `PID.START`: the process ID and its start time in clock ticks since boot
//! (`/proc/PID/stat`), so a reused PID is never taken for the process that made a leftover.
//! Containers also carry the host name, since the engine may be shared by several machines'
//! processes; only leftovers of this host are judged.

use std::path::Path;
use std::sync::OnceLock;

/// Label on containers: the owner, as `HOST/PID.START`.
pub const OWNER_LABEL: &str = "dev.ruchy.image.owner";
/// What temp files and dirs are named with: `.ruchy-image.PID.START.KIND.RANDOM`.
const TEMP_PREFIX: &str = ".ruchy-image.";

/// A process: its ID and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Process ID.
    pub pid: u32,
    /// Start time, in clock ticks since boot.
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    /// Whether the process still runs (and is the same one, not a reused PID).
    pub fn is_alive(self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// `PID.START`.
    fn token(self) -> String {
        format!("{}.{}", self.pid, self.start)
    }

    fn parse(token: &str) -> Option<Owner> {
        let (pid, start) = token.split_once('.')?;
        Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

/// Field 22 of `/proc/PID/stat`, after the command name (which may hold spaces and parens).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

/// This machine's name, as the kernel knows it.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    })
}

/// The owner label's value for this process.
pub fn owner_label() -> String {
    format!("{}/{}", host(), Owner::current().token())
}

/// The owner a label names, when it is a process of this host.
fn local_owner(label: &str) -> Option<Owner> {
    let (label_host, token) = label.rsplit_once('/')?;
    (label_host == host())
        .then(|| Owner::parse(token))
        .flatten()
}

/// The prefix of a temp file or dir of this process: `.ruchy-image.PID.START.KIND.`.
pub fn temp_prefix(kind: &str) -> String {
    format!("{TEMP_PREFIX}{}.{kind}.", Owner::current().token())
}

/// The owner of a temp path named by [`temp_prefix`].
fn temp_owner(name: &str) -> Option<Owner> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let mut parts = rest.splitn(3, '.');
    let (pid, start) = (parts.next()?, parts.next()?);
    Owner::parse(&format!("{pid}.{start}"))
}

/// Removes the temp files and dirs in `dir` whose owner is gone; returns how many.
pub fn sweep_temp(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = temp_owner(&name.to_string_lossy()) else {
            continue;
        };
        if owner.is_alive() {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

/// Whether a container's owner label names a process of this host that is gone.
pub fn is_orphan(label: &str) -> bool {
    local_owner(label).is_some_and(|owner| !owner.is_alive())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = Owner::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        assert!(
            !Owner {
                start: me.start + 1,
                ..me
            }
            .is_alive(),
            "a reused PID"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Owner { pid, start: 1 }.is_alive());
    }

    #[test]
    fn temp_names_carry_their_owner_and_dead_ones_are_swept() {
        let prefix = temp_prefix("archive");
        assert_eq!(temp_owner(&format!("{prefix}Xy12")), Some(Owner::current()));
        assert_eq!(
            temp_owner(".ruchy-image-archive-Xy12"),
            None,
            "no owner: kept"
        );

        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join(format!("{prefix}a1"));
        std::fs::write(&mine, b"in use").unwrap();
        let dead = Owner {
            start: Owner::current().start + 1,
            ..Owner::current()
        };
        let stale = dir
            .path()
            .join(format!("{TEMP_PREFIX}{}.layout.b2", dead.token()));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("index.json"), b"{}").unwrap();
        let user_file = dir.path().join("out.tar");
        std::fs::write(&user_file, b"keep").unwrap();
        assert_eq!(sweep_temp(dir.path()), 1);
        assert!(mine.exists() && user_file.exists() && !stale.exists());
    }

    #[test]
    fn only_this_hosts_owners_are_judged() {
        assert_eq!(local_owner(&owner_label()), Some(Owner::current()));
        assert_eq!(local_owner("some-other-host/1.2"), None);
        assert!(!is_orphan(&owner_label()));
        assert!(
            !is_orphan("some-other-host/1.2"),
            "another host's: not ours to judge"
        );
        assert!(is_orphan(&format!("{}/1.2", host())));
    }
}
