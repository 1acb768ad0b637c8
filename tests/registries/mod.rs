//! Real registries for tests: Debian's `docker-registry` (distribution 2.8), started from a
//! config of the test's own, plain HTTP or TLS (a throwaway CA from openssl) with htpasswd users.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry, stopped when dropped.
pub struct Registry {
    pub child: Child,
    /// `host:port` as clients name it.
    pub address: String,
    /// Its storage, kept across restarts.
    pub storage: PathBuf,
    config: PathBuf,
    port: u16,
    listen_host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Kills it (SIGKILL: no graceful end) and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.child = serve(&self.config, &self.listen_host, self.port)
            .expect("the registry's port was taken while it was down");
    }
}

/// Starts docker-registry with `config_file` and waits until it answers on `port`; `None` when
/// it exits instead: the port was taken since it was found free (tests run side by side, and
/// another test's registry may be the one answering there).
fn serve(config_file: &Path, listen_host: &str, port: u16) -> Option<Child> {
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry runs; `bash .ci/setup` installs it");
    let started = Instant::now();
    let exited = |child: &mut Child| child.try_wait().ok().flatten().is_some();
    while std::net::TcpStream::connect((listen_host.replace("0.0.0.0", "127.0.0.1").as_str(), port))
        .is_err()
    {
        if exited(&mut child) {
            return None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One that cannot listen exits at once: then what answered is someone else's.
    std::thread::sleep(Duration::from_millis(200));
    match exited(&mut child) {
        true => None,
        false => Some(child),
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::common::free_port;

/// The TLS and htpasswd parts of a registry's config.
pub struct Secure {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub htpasswd: PathBuf,
}

/// Starts `docker-registry serve` listening on `listen_host`, reached as `reach_host`.
pub fn start_registry(listen_host: &str, reach_host: &str, secure: Option<&Secure>) -> Registry {
    for _ in 0..5 {
        let port = free_port();
        if let Some(registry) = start_on(port, listen_host, reach_host, secure) {
            return registry;
        }
    }
    panic!("no registry could listen: five free ports were taken before it started")
}

/// [`start_registry`] on `port`; `None` when the port was taken meanwhile.
fn start_on(
    port: u16,
    listen_host: &str,
    reach_host: &str,
    secure: Option<&Secure>,
) -> Option<Registry> {
    let dir = tempfile::tempdir().unwrap();
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
    let child = serve(&config_file, listen_host, port)?;
    Some(Registry {
        child,
        address: format!("{reach_host}:{port}"),
        storage: dir.path().join("data"),
        config: config_file,
        port,
        listen_host: listen_host.to_string(),
        _dir: dir,
    })
}

/// A CA, a server certificate for 127.0.0.1 and `ip` signed by it, and an htpasswd file with
/// `alice` / `correct horse`.
pub fn secure_parts(dir: &Path, ip: &str) -> (Secure, PathBuf) {
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
