//! `ruchy-image serve`, end to end: the real binary listening on loopback, real sources sent
//! with curl, real builds in the builder image, images downloaded and run by the engine, and
//! the process killed with SIGKILL and SIGTERM.

mod common;
mod guards;
mod registries;
#[macro_use]
mod service;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use guards::{builder_image, Images};
use service::*;

on_both_backends!(
    a_build_over_http_is_recorded_logged_and_its_image_runs,
    the_openapi_document_describes_what_the_server_answers,
    bad_requests_are_refused_clearly_and_record_nothing,
    failures_and_cancels_are_recorded_and_the_service_goes_on,
    killed_and_started_again_it_loses_no_build_and_leaves_no_container,
    sigterm_drains_running_builds_then_exits_zero,
    the_cli_builds_on_the_server_and_writes_the_outputs_here,
    the_queue_is_fair_between_projects_and_limits_time,
    a_build_that_waits_longer_than_the_queue_ttl_times_out,
    a_build_can_push_with_the_service_s_credentials,
);

fn a_build_over_http_is_recorded_logged_and_its_image_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let context = fibonacci_context(&dir.path().join("fib"));

    let accepted = submit(
        &server,
        context.path(),
        "optimize=aggressive,size&tag=ruchy-image-test/served:1",
    );
    assert_eq!(accepted["status"], "queued");
    assert_eq!(
        accepted["request"]["presets"],
        serde_json::json!(["aggressive", "size"])
    );
    assert!(accepted["source_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let id = accepted["id"].as_str().unwrap().to_string();

    // The log, followed live, ends when the build does.
    let follow = curl(
        &server,
        "GET",
        &format!("/v1/builds/{id}/log?follow=true"),
        &["-N"],
        true,
    );
    assert_eq!(follow.status, 200);
    assert!(
        follow.body.contains("→ [1/2] aggressive"),
        "{}",
        follow.body
    );
    assert!(
        follow.body.contains("Compiling fibonacci"),
        "{}",
        follow.body
    );
    assert!(follow.body.contains(": success"), "{}", follow.body);

    let done = record(&server, &id);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["attempts"], 1);
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(
            done[field].as_str().unwrap().ends_with('Z'),
            "{field}: {done}"
        );
    }
    assert!(done["stages"]["compile"].as_u64().is_some(), "{done}");
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    // Each result is what `build --json` writes for the same preset.
    let local = ruchy_image_with(
        [
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            "size",
            "--builder",
            "docker",
            "--builder-image",
            &builder_image(),
            "--tag",
            "ruchy-image-test/served:1",
            // An archive, as the service writes: it holds the SBOM, so the record lists it.
            "--output",
            dir.path().join("local.tar").to_str().unwrap(),
            "--json",
            "-",
        ],
        |_| {},
    )
    .ok()
    .metrics();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&results[1]), keys(&local));
    assert_eq!(keys(&results[1]["image"]), keys(&local["image"]));
    assert_eq!(results[1]["binary_size"], local["binary_size"]);
    assert_eq!(results[1]["libc"], "musl");

    // The image: a tarball docker load takes, that runs.
    let _images = Images(vec!["ruchy-image-test/served:1".into()]);
    let tarball = dir.path().join("image.tar");
    let download = curl(
        &server,
        "GET",
        &format!("/v1/builds/{id}/image?preset=size"),
        &["-o", tarball.to_str().unwrap()],
        true,
    );
    assert_eq!(download.status, 200, "{}", download.body);
    tool("docker", &["load", "-i", tarball.to_str().unwrap()]).ok();
    let run = tool("docker", &["run", "--rm", "ruchy-image-test/served:1"]).ok();
    assert_eq!(run.stdout, "fibonacci(30) = 832040\nuid=65532 gid=65532\n");
    let several = curl(&server, "GET", &format!("/v1/builds/{id}/image"), &[], true);
    assert_eq!(several.status, 400, "{}", several.body);

    // The same source again: a no-change rebuild, the same image blob.
    let again = submit(
        &server,
        context.path(),
        "optimize=size&tag=ruchy-image-test/served:1",
    );
    let again_id = again["id"].as_str().unwrap();
    let again = wait_for(&server, again_id, Duration::from_secs(120), ended);
    assert_eq!(again["status"], "success", "{again}");
    assert_eq!(
        again["results"][0]["image"]["digest"],
        results[1]["image"]["digest"]
    );
    // Without an artifact registry (SQLite), the data dir keeps the images, one blob each.
    if backend() == Backend::Sqlite {
        let blobs = std::fs::read_dir(data.join("blobs/sha256"))
            .unwrap()
            .count();
        // The rebuild's archive holds the same image with a provenance of its own run
        // (its start and finish), so it is a blob of its own.
        assert_eq!(blobs, 3, "aggressive, size, and the rebuild's size");
    }

    // Listing: newest first, filtered, paginated.
    let list = curl(&server, "GET", "/v1/builds?limit=1", &[], true).json();
    assert_eq!(list["builds"][0]["id"], again_id);
    assert_eq!(list["next_before"], again_id);
    let older = curl(
        &server,
        "GET",
        &format!("/v1/builds?before={again_id}"),
        &[],
        true,
    )
    .json();
    assert_eq!(older["builds"][0]["id"], id.as_str());
    let failed = curl(&server, "GET", "/v1/builds?status=failure", &[], true).json();
    assert_eq!(failed["builds"].as_array().unwrap().len(), 0);

    // Health and metrics need no token.
    let health = curl(&server, "GET", "/healthz", &[], false);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let metrics = curl(&server, "GET", "/metrics", &[], false).body;
    assert!(
        metrics.contains("ruchy_image_builds{status=\"success\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("ruchy_image_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("ruchy_image_build_duration_seconds_count 2"),
        "{metrics}"
    );
}

fn the_openapi_document_describes_what_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let document = curl(&server, "GET", "/v1/openapi.json", &[], true).json();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    // Every operation, asked about a build that does not exist (or with no body), answers
    // with a status its description lists.
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            let concrete = path.replace("{id}", "b000000000000000000000");
            let answer = curl(&server, &method.to_uppercase(), &concrete, &[], true);
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&answer.status.to_string()),
                "{method} {path} answered {} ({}), documented: {:?}",
                answer.status,
                answer.body,
                documented.keys().collect::<Vec<_>>()
            );
            if path.starts_with("/v1/") {
                let anonymous = curl(&server, &method.to_uppercase(), &concrete, &[], false);
                assert_eq!(anonymous.status, 401, "{method} {path}");
                assert!(documented.contains_key("401"), "{method} {path}");
            }
        }
    }
    // This server is a worker of its database: listed, alive, with every documented field.
    let workers = curl(&server, "GET", "/v1/workers", &[], true).json();
    let workers = workers["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    for field in document["components"]["schemas"]["Worker"]["required"]
        .as_array()
        .unwrap()
    {
        let field = field.as_str().unwrap();
        assert!(workers[0].get(field).is_some(), "{field}: {:?}", workers[0]);
    }
    assert_eq!(workers[0]["this"], true);
    assert_eq!(workers[0]["state"], "alive");
    assert_eq!(workers[0]["slots"], 1);
    let build = &document["components"]["schemas"]["Build"]["properties"];
    for status in [
        "queued",
        "working",
        "success",
        "failure",
        "cancelled",
        "timeout",
    ] {
        assert!(
            build["status"]["enum"]
                .as_array()
                .unwrap()
                .contains(&status.into()),
            "{status}"
        );
    }
}

/// A raw tar with one entry named `name` (no checks, so bad names can be made).
fn raw_tar(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let data = b"fn main() {}";
    header.set_size(if kind == tar::EntryType::Regular {
        data.len() as u64
    } else {
        0
    });
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    let body: &[u8] = if kind == tar::EntryType::Regular {
        data
    } else {
        &[]
    };
    builder.append(&header, body).unwrap();
    builder.into_inner().unwrap()
}

fn bad_requests_are_refused_clearly_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--max-upload", "64KiB"]);
    let context = fibonacci_context(&dir.path().join("fib"));
    let context_arg = format!("@{}", context.path().display());
    let post = |query: &str, body: &str, token: bool| {
        curl(
            &server,
            "POST",
            &format!("/v1/builds?{query}"),
            &["--data-binary", body],
            token,
        )
    };

    let no_token = post("optimize=aggressive", &context_arg, false);
    assert_eq!(no_token.status, 401);
    assert!(no_token
        .headers
        .to_lowercase()
        .contains("www-authenticate: bearer"));
    let wrong = curl(
        &server,
        "GET",
        "/v1/builds",
        &["-H", "Authorization: Bearer not-the-token"],
        false,
    );
    assert_eq!(wrong.status, 401);

    let not_tar = post("", "this is not a tar archive, only words", true);
    assert_eq!(not_tar.status, 400, "{}", not_tar.body);
    assert!(
        not_tar.json()["error"].as_str().unwrap().contains("tar"),
        "{}",
        not_tar.body
    );

    for (name, kind, link) in [
        ("../escape.rs", tar::EntryType::Regular, None),
        ("/tmp/absolute.rs", tar::EntryType::Regular, None),
        ("out", tar::EntryType::Symlink, Some("../../../etc")),
    ] {
        let file = dir.path().join("bad.tar");
        std::fs::write(&file, raw_tar(name, kind, link)).unwrap();
        let answer = post("", &format!("@{}", file.display()), true);
        assert_eq!(answer.status, 400, "{name}: {}", answer.body);
        assert!(
            answer.body.contains("outside the build context"),
            "{}",
            answer.body
        );
    }
    assert!(!dir.path().join("escape.rs").exists());

    // A gzip bomb: 16 MiB of zeros in a few KiB, over the 4 x 64 KiB it may unpack to.
    let bomb_dir = dir.path().join("bomb");
    std::fs::create_dir_all(&bomb_dir).unwrap();
    std::fs::write(bomb_dir.join("app.rs"), vec![b' '; 16 << 20]).unwrap();
    let bomb = context_of(&bomb_dir);
    assert!(std::fs::metadata(bomb.path()).unwrap().len() < 64 << 10);
    let answer = post("", &format!("@{}", bomb.path().display()), true);
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("size limit"), "{}", answer.body);

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 200 << 10]).unwrap();
    let too_big = post("", &format!("@{}", big.display()), true);
    assert_eq!(too_big.status, 413, "{}", too_big.body);

    let preset = post("optimize=fast", &context_arg, true);
    assert_eq!(preset.status, 400);
    assert!(
        preset
            .body
            .contains("none, balanced, aggressive, nasa, size"),
        "{}",
        preset.body
    );
    let flag = post("lto=max", &context_arg, true);
    assert_eq!(flag.status, 400);
    assert!(flag.body.contains("valid: off, thin, fat"), "{}", flag.body);
    let unknown = post("colour=red", &context_arg, true);
    assert_eq!(unknown.status, 400);
    assert!(
        unknown
            .body
            .contains("invalid query parameter `colour`: valid: request, optimize"),
        "{}",
        unknown.body
    );
    let unwind = post("optimize=size&panic=unwind", &context_arg, true);
    assert_eq!(unwind.status, 400);
    assert!(unwind.body.contains("cannot unwind"), "{}", unwind.body);

    let missing = curl(
        &server,
        "GET",
        "/v1/builds/b0000000000000000000000",
        &[],
        true,
    );
    assert_eq!(missing.status, 404);
    let status = curl(&server, "GET", "/v1/builds?status=nope", &[], true);
    assert_eq!(status.status, 400);
    assert!(
        status.body.contains("valid: queued, working"),
        "{}",
        status.body
    );

    // Nothing was recorded, and nothing was left unpacked.
    let list = curl(&server, "GET", "/v1/builds", &[], true).json();
    assert_eq!(list["builds"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(std::fs::read_dir(data.join("sources")).unwrap().count(), 0);
}

fn failures_and_cancels_are_recorded_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--workers", "2"]);

    let broken_dir = dir.path().join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    std::fs::copy(fixture("broken.rs"), broken_dir.join("broken.rs")).unwrap();
    let broken = submit(
        &server,
        context_of(&broken_dir).path(),
        "optimize=aggressive",
    );
    let slow = submit(
        &server,
        slow_project(&dir.path().join("slow"), "slow-cancel", 600).path(),
        "optimize=none",
    );
    let slow_id = slow["id"].as_str().unwrap();

    let broken = wait_for(
        &server,
        broken["id"].as_str().unwrap(),
        Duration::from_secs(120),
        ended,
    );
    assert_eq!(broken["status"], "failure", "{broken}");
    assert_eq!(broken["error"]["stage"], "compile", "{broken}");
    assert_eq!(broken["results"][0]["preset"], "aggressive");
    let log = curl(
        &server,
        "GET",
        &format!("/v1/builds/{}/log", broken["id"].as_str().unwrap()),
        &[],
        true,
    )
    .body;
    assert!(log.contains("mismatched types"), "{log}");

    // Cancel a running build: its builder container goes.
    wait_for(&server, slow_id, Duration::from_secs(120), |r| {
        r["status"] == "working" && !builders_in(&data, slow_id).is_empty()
    });
    let cancelled = curl(
        &server,
        "POST",
        &format!("/v1/builds/{slow_id}/cancel"),
        &[],
        true,
    );
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let started = Instant::now();
    while !builders_in(&data, slow_id).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "container left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = curl(
        &server,
        "POST",
        &format!("/v1/builds/{slow_id}/cancel"),
        &[],
        true,
    );
    assert_eq!(again.status, 409, "{}", again.body);

    let health = curl(&server, "GET", "/healthz", &[], false);
    assert_eq!(health.status, 200);
}

fn killed_and_started_again_it_loses_no_build_and_leaves_no_container() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let mut server = start(&data, &["--workers", "1"]);
    let slow = submit(
        &server,
        slow_project(&dir.path().join("slow"), "slow-restart", 10).path(),
        "optimize=none",
    );
    let fib = submit(
        &server,
        fibonacci_context(&dir.path().join("fib")).path(),
        "optimize=aggressive",
    );
    let slow_id = slow["id"].as_str().unwrap();
    wait_for(&server, slow_id, Duration::from_secs(120), |r| {
        r["status"] == "working" && !builders_in(&data, slow_id).is_empty()
    });
    assert_eq!(
        record(&server, fib["id"].as_str().unwrap())["status"],
        "queued"
    );

    // SIGKILL: the container is left behind, the build stays `working` in the database.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(!builders_in(&data, slow_id).is_empty());

    let server = start(&data, &["--workers", "1"]);
    let slow = wait_for(&server, slow_id, Duration::from_secs(180), ended);
    assert_eq!(slow["status"], "success", "{slow}");
    assert_eq!(slow["attempts"], 2);
    let fib = wait_for(
        &server,
        fib["id"].as_str().unwrap(),
        Duration::from_secs(180),
        ended,
    );
    assert_eq!(fib["status"], "success", "{fib}");
    assert!(builders_in(&data, "").is_empty());
}

fn sigterm_drains_running_builds_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let mut server = start(&data, &[]);
    let slow = submit(
        &server,
        slow_project(&dir.path().join("slow"), "slow-drain", 6).path(),
        "optimize=none",
    );
    let id = slow["id"].as_str().unwrap().to_string();
    wait_for(&server, &id, Duration::from_secs(120), |r| {
        r["status"] == "working"
    });
    let pid = server.child.id() as i32;
    // SAFETY: a signal to the child we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "serve did not exit"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status:?}");

    // The build finished before the exit.
    let server = start(&data, &[]);
    assert_eq!(record(&server, &id)["status"], "success");
}

#[test]
fn a_database_that_cannot_be_used_is_refused_clearly_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let other = serve_command(&data, &["--database", "mysql://ruchy:hunter2@db/ruchy"])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // Nothing listens on port 1.
    let absent = serve_command(
        &data,
        &["--database", "postgres://ruchy:hunter2@127.0.0.1:1/ruchy"],
    )
    .output()
    .unwrap();
    assert_ne!(absent.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&absent.stderr);
    assert!(
        stderr.contains("the build database: connecting to postgres://ruchy:***@127.0.0.1:1/ruchy"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn the_data_dir_is_one_service_s_and_must_be_writable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _first = start(&data, &[]);
    let second = serve_command(&data, &[]).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another `ruchy-image serve` uses it"),
        "{stderr}"
    );

    let unwritable = dir.path().join("unwritable");
    std::fs::create_dir_all(unwritable.join("ruchy-image.db")).unwrap();
    let run = serve_command(&unwritable, &[]).output().unwrap();
    assert_ne!(run.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("ruchy-image.db"), "{stderr}");

    let open = Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("open"))
        .output()
        .unwrap();
    assert_eq!(open.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(stderr.contains("needs a token file"), "{stderr}");
}

fn the_cli_builds_on_the_server_and_writes_the_outputs_here() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let token = data.with_extension("token");
    let layout = dir.path().join("layout");
    let archive = dir.path().join("image.tar");
    let fib = example("fibonacci.rs");
    let run = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "-O",
        "size",
        "--server",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
        "--oci-layout",
        layout.to_str().unwrap(),
        "--output",
        archive.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    assert!(
        run.stderr.contains("Compiling fibonacci"),
        "the log: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("✓ Built fibonacci:size"),
        "the summary: {}",
        run.stderr
    );
    let record = run.metrics();
    assert_eq!(record["optimization_level"], "size");
    assert_eq!(record["libc"], "musl");
    assert_eq!(record["outputs"][0]["kind"], "oci-layout");
    let (summary, _) = skopeo_inspect(&layout, "size");
    assert_eq!(summary["Digest"], record["image"]["digest"]);
    let loaded = tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(
        loaded.stdout.contains("fibonacci:size"),
        "{}",
        loaded.stdout
    );
    let _images = Images(vec!["fibonacci:size".into()]);

    // compare through the server: one build with both presets, the usual table.
    let table = ruchy_image([
        "compare",
        fib.to_str().unwrap(),
        "--presets",
        "aggressive,size",
        "--server",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
        "--format",
        "csv",
    ])
    .ok()
    .stdout;
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[1].starts_with("aggressive,ok,"), "{table}");
    assert!(rows[2].starts_with("size,ok,"), "{table}");
    assert!(rows[2].ends_with(",musl"), "{table}");

    // A prebuilt executable goes up as it is and comes back packaged, compiled by no one.
    let busybox = dir.path().join("busybox");
    std::fs::copy("/bin/busybox", &busybox).unwrap();
    let run = ruchy_image([
        "build",
        busybox.to_str().unwrap(),
        "--server",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let record = run.metrics();
    assert_eq!(record["builder"], "prebuilt", "{record:#}");
    assert_eq!(
        record["binary_size"],
        std::fs::metadata(&busybox).unwrap().len()
    );

    // A wrong token: the server's message, a non-zero exit, nothing written.
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "nope").unwrap();
    let refused = ruchy_image([
        "build",
        fib.to_str().unwrap(),
        "--server",
        &server.url,
        "--token-file",
        wrong.to_str().unwrap(),
        "--output",
        dir.path().join("no.tar").to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("bearer token is required"),
        "{}",
        refused.stderr
    );
    assert!(!dir.path().join("no.tar").exists());
}

fn the_queue_is_fair_between_projects_and_limits_time() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(
        &data,
        &["--workers", "1", "--timeout", "20s", "--queue-ttl", "60s"],
    );
    // Project a sends three builds, then project b one: b does not wait for all of a's.
    let a = slow_project(&dir.path().join("a"), "fair-a", 2);
    let b = slow_project(&dir.path().join("b"), "fair-b", 2);
    let a1 = submit(&server, a.path(), "optimize=none");
    let a2 = submit(&server, a.path(), "optimize=none");
    let a3 = submit(&server, a.path(), "optimize=none");
    let b1 = submit(&server, b.path(), "optimize=none");
    let ids: Vec<String> = [&a1, &a2, &a3, &b1]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let done: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| wait_for(&server, id, Duration::from_secs(240), ended))
        .collect();
    for record in &done {
        assert_eq!(record["status"], "success", "{record}");
    }
    let started = |i: usize| done[i]["started_at"].as_str().unwrap().to_string();
    assert!(
        started(3) < started(1),
        "b waited for a's second build: {done:?}"
    );
    assert!(started(1) < started(2));

    // A build that runs too long is stopped, and its container goes.
    let stuck = submit(
        &server,
        slow_project(&dir.path().join("stuck"), "fair-stuck", 600).path(),
        "optimize=none",
    );
    let stuck = wait_for(
        &server,
        stuck["id"].as_str().unwrap(),
        Duration::from_secs(120),
        ended,
    );
    assert_eq!(stuck["status"], "timeout", "{stuck}");
    assert!(stuck["error"]["message"]
        .as_str()
        .unwrap()
        .contains("timed out after 20s"));
    let started = Instant::now();
    while !builders_in(&data, stuck["id"].as_str().unwrap()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "container left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn a_build_that_waits_longer_than_the_queue_ttl_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--workers", "1", "--queue-ttl", "2s"]);
    let busy = submit(
        &server,
        slow_project(&dir.path().join("busy"), "ttl-busy", 600).path(),
        "optimize=none",
    );
    let busy_id = busy["id"].as_str().unwrap();
    wait_for(&server, busy_id, Duration::from_secs(120), |r| {
        r["status"] == "working"
    });
    let waiting = submit(
        &server,
        fibonacci_context(&dir.path().join("fib")).path(),
        "optimize=none",
    );
    let waiting = wait_for(
        &server,
        waiting["id"].as_str().unwrap(),
        Duration::from_secs(30),
        ended,
    );
    assert_eq!(waiting["status"], "timeout", "{waiting}");
    assert!(
        waiting["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue TTL"),
        "{waiting}"
    );
    assert!(waiting["started_at"].is_null());
    let cancelled = curl(
        &server,
        "POST",
        &format!("/v1/builds/{busy_id}/cancel"),
        &[],
        true,
    );
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
}

fn a_build_can_push_with_the_service_s_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let registry = registries::start_registry("127.0.0.1", "127.0.0.1", None);
    let server = start(&data, &[]);
    let reference = format!("{}/served/fib:1", registry.address);
    let accepted = submit(
        &server,
        fibonacci_context(&dir.path().join("fib")).path(),
        &format!("optimize=aggressive,size&push={reference}"),
    );
    let done = wait_for(
        &server,
        accepted["id"].as_str().unwrap(),
        Duration::from_secs(180),
        ended,
    );
    assert_eq!(done["status"], "success", "{done}");
    // Several presets: one tag each.
    for (index, preset) in ["aggressive", "size"].into_iter().enumerate() {
        let result = &done["results"][index];
        let digest = result["image"]["digest"].as_str().unwrap();
        // The client's push, after the data dir's archive or the artifact registry's push
        // (which the record leaves out: it is the service's own).
        let outputs = result["outputs"].as_array().unwrap();
        let pushed = outputs
            .iter()
            .find(|o| o["kind"] == "registry")
            .unwrap_or_else(|| panic!("{result}"));
        let tagged = format!("{reference}-{preset}");
        assert_eq!(pushed["location"], format!("{tagged}@{digest}"));
        let inspect = tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{tagged}"),
            ],
        )
        .ok();
        assert!(inspect.stdout.contains(digest), "{}", inspect.stdout);
    }
    let bad = curl(
        &server,
        "POST",
        "/v1/builds?push=UPPER/Case",
        &["--data-binary", "x"],
        true,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("invalid push reference"), "{}", bad.body);
}
