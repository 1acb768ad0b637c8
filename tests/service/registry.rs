//! The test run's artifact registry: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port, started on first use and shared by every PostgreSQL-backed service of the
//! run (each test's builds have IDs of their own, so their tags never meet). A watcher process
//! stops it and removes its storage when the test process ends, however it ends.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `host:port` of the run's registry.
pub fn shared_registry() -> &'static str {
    static REGISTRY: OnceLock<String> = OnceLock::new();
    REGISTRY.get_or_init(start)
}

/// A repository of the run's registry for the services of test `name`.
pub fn artifacts_repository(name: &str) -> String {
    format!("{}/{name}", shared_registry())
}

fn start() -> String {
    let dir = tempfile::Builder::new()
        .prefix("ruchy-image-registry-")
        .tempdir()
        .unwrap()
        .keep();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    // The registry and its watcher, both forked off: the registry outlives no test process.
    let script = format!(
        "docker-registry serve {config} >/dev/null 2>&1 & r=$!; while kill -0 {pid} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 1; done; kill -9 $r 2>/dev/null; rm -rf {dir}",
        config = config.display(),
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the registry's watcher starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "docker-registry did not start; `bash .ci/setup` installs it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("127.0.0.1:{port}")
}
