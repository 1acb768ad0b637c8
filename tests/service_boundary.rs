//! The service's boundary (issue #39), against the real `ruchy-image serve` on loopback: what a
//! hostile client holding a valid token sends is refused at acceptance (400, naming what is
//! wrong, recording nothing, reading nothing of the host), and builds never share or delete
//! each other's directories.

mod common;
mod guards;
#[macro_use]
mod service;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use service::*;

on_both_backends!(
    what_leads_out_of_the_upload_is_refused_and_reads_nothing_of_the_host,
    what_can_be_checked_is_checked_at_acceptance,
    the_http_edges_hold,
);

// Full builds: SQLite only (the queue's backend is not what is tested).
#[test]
fn sqlite_builds_never_share_or_delete_each_other_s_workspace() {
    service::on(
        service::Backend::Sqlite,
        builds_never_share_or_delete_each_other_s_workspace,
    )
}

/// A raw tar of `entries` (name, kind, data, link target), written without the tar crate's
/// checks so hostile names and links can be made.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// POSTs `body` (a file written under `dir`) with `query`.
fn post(server: &Server, dir: &Path, query: &str, body: &[u8]) -> Answer {
    let file = tempfile::NamedTempFile::new_in(dir).unwrap();
    std::fs::write(file.path(), body).unwrap();
    curl(
        server,
        "POST",
        &format!("/v1/builds?{query}"),
        &["--data-binary", &format!("@{}", file.path().display())],
        true,
    )
}

/// Asserts a 400 whose JSON error contains `expected` and names no path of the server's.
fn refused(answer: &Answer, data: &Path, expected: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains(expected), "{error}");
    let data = std::fs::canonicalize(data).unwrap();
    assert!(!error.contains(&*data.to_string_lossy()), "{error}");
}

fn what_leads_out_of_the_upload_is_refused_and_reads_nothing_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);

    // A host directory with a Cargo.toml (another project's, a checkout on the worker).
    let canary = format!("canary-{}", std::process::id());
    let host = dir.path().join("host-crate");
    std::fs::create_dir_all(host.join("src")).unwrap();
    std::fs::write(
        host.join("Cargo.toml"),
        "[package]\nname = \"secretcrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        host.join("src/lib.rs"),
        format!("pub const SECRET: &str = \"{canary}\";\n"),
    )
    .unwrap();
    let host = std::fs::canonicalize(&host).unwrap();
    let file = format!(
        "---\n[dependencies]\nsecret = {{ path = \"{}\" }}\n---\nfn main() {{ println!(\"{{}}\", secret::SECRET); }}\n",
        host.display()
    );
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, file.as_bytes(), None)]),
    );
    refused(&answer, &data, "`dependencies.secret.path");
    assert!(!answer.body.contains(&canary));
    // The CLI's --server client refuses it as a local build would: exit 2, the key named.
    let app = dir.path().join("cli/app.rs");
    std::fs::create_dir_all(app.parent().unwrap()).unwrap();
    std::fs::write(&app, &file).unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["build", app.to_str().unwrap(), "--server", &server.url])
        .arg("--token-file")
        .arg(token_file(&data))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`dependencies.secret.path"), "{stderr}");
    // The same directory reached with `..` from the upload.
    let climbing = "---\n[dependencies]\nsecret = { path = \"../../../../../../../../../../../../tmp\" }\n---\nfn main() {}\n";
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, climbing.as_bytes(), None)]),
    );
    refused(&answer, &data, "`dependencies.secret.path");
    // A Cargo project whose member names one outside.
    let member = format!(
        "[package]\nname = \"inner\"\nversion = \"0.1.0\"\n[build-dependencies]\nsecret = {{ path = \"{}\" }}\n",
        host.display()
    );
    let answer = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[
            (
                "Cargo.toml",
                tar::EntryType::Regular,
                b"[workspace]\nmembers = [\"inner\"]\n",
                None,
            ),
            (
                "inner/Cargo.toml",
                tar::EntryType::Regular,
                member.as_bytes(),
                None,
            ),
        ]),
    );
    refused(&answer, &data, "`build-dependencies.secret.path = \"");
    assert!(
        answer.body.contains("in inner/Cargo.toml"),
        "{}",
        answer.body
    );

    // The chain of links that each stay inside and together climb out to the host's files.
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut chain: Vec<(String, tar::EntryType, Option<String>)> = vec![
        ("a".into(), tar::EntryType::Directory, None),
        ("a/l".into(), tar::EntryType::Symlink, Some("..".into())),
        ("a/l/up1".into(), tar::EntryType::Symlink, Some("..".into())),
    ];
    for k in 2..=8 {
        let link = format!("up{}/..", k - 1);
        chain.push((format!("a/l/up{k}"), tar::EntryType::Symlink, Some(link)));
    }
    chain.push((
        "Cargo.toml".into(),
        tar::EntryType::Symlink,
        Some("a/l/up8/etc/hostname".into()),
    ));
    let entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = chain
        .iter()
        .map(|(n, k, l)| (n.as_str(), *k, &b""[..], l.as_deref()))
        .collect();
    let answer = post(&server, dir.path(), "", &raw_tar(&entries));
    refused(&answer, &data, "leads outside the build context");
    if !hostname.trim().is_empty() {
        assert!(!answer.body.contains(hostname.trim()), "{}", answer.body);
    }

    // Nothing was recorded, nothing is left unpacked, nothing of the host is anywhere.
    let list = curl(&server, "GET", "/v1/builds", &[], true);
    assert_eq!(
        list.json()["builds"],
        serde_json::json!([]),
        "{}",
        list.body
    );
    assert_eq!(std::fs::read_dir(data.join("sources")).unwrap().count(), 0);
    let store = tool("grep", &["-r", "-l", &canary, data.to_str().unwrap()]);
    assert!(store.stdout.trim().is_empty(), "{}", store.stdout);
}

fn what_can_be_checked_is_checked_at_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let fib = std::fs::read(example("fibonacci.rs")).unwrap();
    let one = |name: &str| raw_tar(&[(name, tar::EntryType::Regular, &fib, None)]);

    for (query, expected) in [
        ("target=garbage", "invalid target `garbage`"),
        (
            "target=riscv64gc-unknown-linux-gnu",
            "the builder has: x86_64",
        ),
        ("codegen_units=0", "expected a number of 1 or more"),
        ("codegen_units=-1", "expected a number of 1 or more"),
        ("target_cpu=not-a-cpu", "invalid target_cpu `not-a-cpu`"),
        ("target_cpu=%24%28id%29", "invalid target_cpu"),
        (
            "platform=linux/arm64&target_cpu=x86-64-v3",
            "invalid target_cpu `x86-64-v3`: not a CPU for aarch64",
        ),
    ] {
        let answer = post(&server, dir.path(), query, &one("app.rs"));
        refused(&answer, &data, expected);
    }
    // A name whose image name is not valid, and one that cannot go into a manifest.
    let answer = post(&server, dir.path(), "", &one("a   b.rs"));
    refused(&answer, &data, "pass tag=NAME:TAG");
    let answer = post(&server, dir.path(), "", &one("a\nb.rs"));
    refused(&answer, &data, "control characters");
    // A CPU rustc knows is taken; so is the odd name with a tag of its own.
    let answer = post(&server, dir.path(), "target_cpu=x86-64-v2", &one("app.rs"));
    assert_eq!(answer.status, 202, "{}", answer.body);
    let answer = post(&server, dir.path(), "tag=ab:1", &one("a   b.rs"));
    assert_eq!(answer.status, 202, "{}", answer.body);
    // Cancelled: the test is about acceptance, not the builds.
    let list = curl(&server, "GET", "/v1/builds", &[], true).json();
    for build in list["builds"].as_array().unwrap() {
        let id = build["id"].as_str().unwrap();
        curl(
            &server,
            "POST",
            &format!("/v1/builds/{id}/cancel"),
            &[],
            true,
        );
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else {
                found.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found
}

/// A Cargo project named `name` (anything, even what cargo refuses).
fn project_named(name: &str) -> Vec<u8> {
    let manifest =
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    raw_tar(&[
        (
            "Cargo.toml",
            tar::EntryType::Regular,
            manifest.as_bytes(),
            None,
        ),
        (
            "src/main.rs",
            tar::EntryType::Regular,
            b"fn main() {}\n",
            None,
        ),
    ])
}

fn builds_never_share_or_delete_each_other_s_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--workers", "2"]);
    let workspaces = data.join("workspaces");

    // `x y.rs` and `x+y.rs` at once, each its own program: both build.
    let program = |word: &str| format!("fn main() {{ println!(\"{word}\"); }}\n").into_bytes();
    let (space, plus) = (program("space"), program("plus"));
    let ids: Vec<String> = [("x y.rs", &space), ("x+y.rs", &plus)]
        .iter()
        .map(|(name, code)| {
            let answer = post(
                &server,
                dir.path(),
                "optimize=none&tag=xy:1",
                &raw_tar(&[(name, tar::EntryType::Regular, code, None)]),
            );
            assert_eq!(answer.status, 202, "{}", answer.body);
            answer.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &ids {
        let done = wait_for(&server, id, Duration::from_secs(300), ended);
        assert_eq!(done["status"], "success", "{done}");
    }

    // A build that is working, with its workspace on disk...
    let slow = slow_project(&dir.path().join("keeper"), "keeper", 600);
    let keeper = submit(&server, slow.path(), "optimize=none");
    let keeper = keeper["id"].as_str().unwrap().to_string();
    wait_for(&server, &keeper, Duration::from_secs(120), |r| {
        r["status"] == "working" && !builders_in(&data, &keeper).is_empty()
    });
    let before = files_under(&workspaces);
    assert!(!before.is_empty());
    // ... and packages named what a sanitised name turned into the workspaces dir itself.
    for name in ["...", ".", ""] {
        let answer = post(&server, dir.path(), "optimize=none", &project_named(name));
        if answer.status == 202 {
            let id = answer.json()["id"].as_str().unwrap().to_string();
            wait_for(&server, &id, Duration::from_secs(300), ended);
        } else {
            assert_eq!(answer.status, 400, "{name:?}: {}", answer.body);
        }
    }
    let after = files_under(&workspaces);
    for file in &before {
        assert!(after.contains(file), "{} went", file.display());
    }
    assert_eq!(record(&server, &keeper)["status"], "working");
    curl(
        &server,
        "POST",
        &format!("/v1/builds/{keeper}/cancel"),
        &[],
        true,
    );
    // Each build's directory goes with it.
    let started = Instant::now();
    while !files_under(&workspaces).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "workspaces left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn the_http_edges_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(
        &data,
        &[
            "--max-upload",
            "64KiB",
            "--read-timeout",
            "2s",
            "--max-uploads",
            "1",
        ],
    );
    let address = server.url.trim_start_matches("http://").to_string();

    // After logging in, only a visible path on this server.
    for next in [
        "/%09/evil.example/",
        "/%0a/x",
        "//evil.example/",
        "/%5Cevil.example",
    ] {
        let answer = curl(
            &server,
            "POST",
            "/login",
            &["--data-raw", &format!("token={TOKEN}&next={next}")],
            false,
        );
        assert_eq!(answer.status, 303, "{next}: {}", answer.body);
        assert!(
            answer.headers.to_lowercase().contains("location: /\r\n"),
            "{next}: {}",
            answer.headers
        );
    }

    // Errors are JSON, whoever answers them.
    let big = vec![7u8; 200 << 10];
    for (answer, status) in [
        (curl(&server, "GET", "/v1/no-such-thing", &[], true), 404),
        (curl(&server, "DELETE", "/v1/builds", &[], true), 405),
        (
            curl(&server, "GET", "/v1/builds?limit=many", &[], true),
            400,
        ),
        (post(&server, dir.path(), "", &big), 413),
        (
            post(&server, dir.path(), "", b"not a tar at all, only words"),
            400,
        ),
    ] {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(answer.json()["error"].is_string(), "{}", answer.body);
    }

    // A client that trickles its headers is cut off after the read timeout.
    let mut trickle = std::net::TcpStream::connect(&address).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(10), "still open");
        let mut buf = [0u8; 512];
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => break, // an answer (408) then the close
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if trickle.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // One upload at a time here: a second is told to come back (429); the first, stalled,
    // is refused after the read timeout (408).
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stalled,
        "POST /v1/builds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10000\r\n\r\nsome"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let fib = std::fs::read(example("fibonacci.rs")).unwrap();
    let busy = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, &fib, None)]),
    );
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert!(busy.json()["error"].is_string());
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("{\"error\":"), "{answer}");
    let later = post(
        &server,
        dir.path(),
        "",
        &raw_tar(&[("app.rs", tar::EntryType::Regular, &fib, None)]),
    );
    assert_eq!(later.status, 202, "{}", later.body);
    let id = later.json()["id"].as_str().unwrap().to_string();
    curl(
        &server,
        "POST",
        &format!("/v1/builds/{id}/cancel"),
        &[],
        true,
    );
}

// Memory: SQLite only (refused uploads never reach the database).
#[test]
fn sqlite_four_big_uploads_at_once_stay_under_the_memory_bound() {
    service::on(
        service::Backend::Sqlite,
        four_big_uploads_at_once_stay_under_the_memory_bound,
    )
}

/// POSTs a tar of one `size`-byte file named `name` (starting with `head`) straight onto a
/// socket, streamed a MiB at a time, never whole in this process; the answer's status.
fn stream_upload(address: &str, name: &str, head: &[u8], size: u64) -> u16 {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_size(size);
    header.set_path(name).unwrap();
    header.set_cksum();
    let padding = (512 - size % 512) % 512;
    let length = 512 + size + padding + 1024;
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let sent = (|| -> std::io::Result<()> {
        write!(
            socket,
            "POST /v1/builds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n"
        )?;
        socket.write_all(header.as_bytes())?;
        let mut chunk = vec![0u8; 1 << 20];
        chunk[..head.len()].copy_from_slice(head);
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            socket.write_all(&chunk[..n])?;
            chunk[..head.len()].fill(0);
            left -= n as u64;
        }
        socket.write_all(&vec![0u8; padding as usize + 1024])
    })();
    // A refusal can come before the body is all sent (429, 413): the answer is read anyway.
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(status != 0, "no answer ({sent:?}): {answer}");
    status
}

/// The issue's 4 × 250 MB at once (it measured 1.42 GB when uploads were held whole): two are
/// received, kept and built (each a different executable-looking file, so the database keeps
/// both), two are told to come back (429), and the process's peak resident memory (VmHWM) stays
/// under 800 MB. Measured: about 330 MB with the context streamed to disk and kept in 1 MiB
/// chunks; 1.85 GB before that, when the database was given each upload whole.
fn four_big_uploads_at_once_stay_under_the_memory_bound() {
    const SIZE: u64 = 250 << 20;
    const BOUND_KIB: u64 = 800 << 10;
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--max-upload", "300MiB", "--max-uploads", "2"]);
    let address = server.url.trim_start_matches("http://").to_string();
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let address = address.clone();
            std::thread::spawn(move || {
                // ELF's magic, then a byte of this upload's own.
                stream_upload(&address, "app", &[0x7f, b'E', b'L', b'F', 2, 1, 1, i], SIZE)
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [202, 202, 429, 429]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let hwm: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("VmHWM after 4 x 250 MB uploads: {hwm} kB");
    assert!(hwm < BOUND_KIB, "VmHWM {hwm} kB, over {BOUND_KIB} kB");
}
