//! A PostgreSQL cluster of the test run's own: made with Debian's `initdb` in a temp dir,
//! started with `pg_ctl` on a free loopback port (as the unprivileged `postgres` user when the
//! tests run as root, which initdb refuses), one database per test. A watcher process stops
//! the cluster and removes its dir when the test process ends, however it ends.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The cluster: where it listens.
pub struct Cluster {
    port: u16,
}

/// Debian's PostgreSQL programs, newest version.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed: run .ci/setup (Debian's postgresql package)")
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// `program args…` as the user that owns the cluster.
fn as_owner(program: PathBuf) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("ruchy-image-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            run(
                {
                    let mut cmd = Command::new("chown");
                    cmd.arg("postgres:postgres").arg(&dir);
                    cmd
                },
                "chown of the cluster dir",
            );
        }
        let data = dir.join("data");
        let mut initdb = as_owner(bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut pg_ctl = as_owner(bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=200",
                dir.display()
            ))
            .args(["-w", "start"]);
        run(pg_ctl, "pg_ctl start");
        // Stops and removes the cluster once this process has gone.
        let pg_ctl = bin.join("pg_ctl");
        let stop = if is_root() {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        };
        let watcher = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = dir.display()
        );
        // `setsid -f` forks the watcher off and returns: it outlives this process.
        Command::new("setsid")
            .args(["-f", "sh", "-c", &watcher])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the cluster's watcher starts");
        Cluster { port }
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut createdb = Command::new(bin_dir().join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]);
        run(createdb, "createdb");
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// `psql -At -c SQL` on database `name`.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args(["-At", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", name, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The test run's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}
