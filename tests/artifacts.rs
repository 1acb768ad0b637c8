//! `serve --artifacts`: workers keep nothing that only they have. Two workers on one
//! PostgreSQL push every build's image to a real registry (Debian's docker-registry) and keep
//! its log in the database; one is SIGKILLed after finishing a build and while holding
//! another, and the survivor serves both, image and log, at the recorded digest; the dead one
//! comes back with its data dir wiped and serves them too. A registry that stops while a build
//! is on its way there fails the build with its address, and no success is recorded without
//! its image.

mod common;
mod guards;
mod registries;
mod service;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use registries::start_registry;
use service::*;

/// A worker on `database` with its images in `repository`, its data in `data`.
fn worker(data: &Path, database: &str, repository: &str, name: &str) -> Server {
    std::fs::create_dir_all(data).unwrap();
    start(
        data,
        &[
            "--database",
            database,
            "--artifacts",
            repository,
            "--worker-name",
            name,
            "--heartbeat-timeout",
            "3s",
        ],
    )
}

/// This worker's ID, as `/v1/workers` says it.
fn id_of(server: &Server) -> String {
    let answer = curl(server, "GET", "/v1/workers", &[], true).json();
    let this = answer["workers"].as_array().unwrap().iter();
    let mut this = this.filter(|w| w["this"] == true);
    this.next().unwrap()["id"].as_str().unwrap().to_string()
}

/// Downloads build `id`'s image from `server` and reads it back as `build --server` does:
/// the image at the record's digest, its SBOM referrer with it.
fn check_image(server: &Server, id: &str, dir: &Path) {
    let record = record(server, id);
    let wanted = record["results"][0]["image"]["digest"].as_str().unwrap();
    let file = dir.join(format!("{id}.tar"));
    let answer = curl(
        server,
        "GET",
        &format!("/v1/builds/{id}/image"),
        &["-o", file.to_str().unwrap()],
        true,
    );
    assert_eq!(answer.status, 200, "{}", answer.headers);
    let headers = answer.headers.to_lowercase();
    assert!(
        headers.contains(&format!("docker-content-digest: {wanted}")),
        "{headers}"
    );
    let bytes = std::fs::read(&file).unwrap();
    let contents = ruchy_image::pipeline::oci::archive::read(&bytes).unwrap();
    assert_eq!(contents.content.root().digest, wanted, "{record}");
    assert_eq!(
        contents.referrers.len(),
        2,
        "the SBOM and the provenance come with it"
    );
    assert!(contents.referrers.iter().all(|r| r.subject == wanted));
    std::fs::remove_file(file).unwrap();
}

/// Build `id`'s log from `server`: whole, and followed to its end.
fn check_log(server: &Server, id: &str, attempts: usize) {
    for path in [
        format!("/v1/builds/{id}/log"),
        format!("/v1/builds/{id}/log?follow=true"),
    ] {
        let log = curl(server, "GET", &path, &[], true);
        assert_eq!(log.status, 200, "{}", log.body);
        let starts = log.body.matches(&format!("→ build {id} started")).count();
        assert_eq!(starts, attempts, "{}", log.body);
        assert!(
            log.body
                .ends_with(&format!("→ build {id} ended: success\n")),
            "{}",
            log.body
        );
    }
}

#[test]
fn a_killed_worker_s_builds_stay_downloadable_from_the_survivor_and_after_a_wipe() {
    let dir = tempfile::tempdir().unwrap();
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let repository = format!("{}/scenario", registry.address);
    let database = database_for(dir.path());
    let (one_data, two_data) = (dir.path().join("one"), dir.path().join("two"));
    let _leftovers = (Leftovers(one_data.clone()), Leftovers(two_data.clone()));

    // Worker one alone: it finishes a build, then takes a slow one.
    let one = worker(&one_data, &database, &repository, "one");
    let sources = dir.path().join("quick");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::copy(example("fibonacci.rs"), sources.join("quick.rs")).unwrap();
    let quick = submit(&one, context_of(&sources).path(), "optimize=aggressive");
    let quick = quick["id"].as_str().unwrap().to_string();
    let done = wait_for(&one, &quick, Duration::from_secs(300), ended);
    assert_eq!(done["status"], "success", "{done}");
    let slow = slow_project(&dir.path().join("slow"), "slow", 8);
    let slow = submit(&one, slow.path(), "optimize=aggressive");
    let slow = slow["id"].as_str().unwrap().to_string();
    wait_for(&one, &slow, Duration::from_secs(120), |r| {
        r["status"] == "working"
    });
    let first = id_of(&one);

    // Worker two comes; worker one is SIGKILLed holding the slow build.
    let mut one = one;
    let two = worker(&two_data, &database, &repository, "two");
    one.child.kill().unwrap();
    one.child.wait().unwrap();
    let done = wait_for(&two, &slow, Duration::from_secs(240), ended);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_ne!(done["worker"], first.as_str(), "{done}");
    let quick_record = record(&two, &quick);
    assert_eq!(quick_record["attempts"], 1, "ran once: {quick_record}");
    assert_eq!(quick_record["worker"], first.as_str());

    // The survivor serves both: the dead worker's build and the one it took over.
    for (id, attempts) in [(&quick, 1), (&slow, 2)] {
        check_image(&two, id, dir.path());
        check_log(&two, id, attempts);
    }

    // Worker one comes back with nothing in its data dir, and serves every old build alone.
    drop(two);
    std::fs::remove_dir_all(&one_data).unwrap();
    let back = worker(&one_data, &database, &repository, "one");
    assert_ne!(id_of(&back), first, "a wiped data dir is a new worker");
    for (id, attempts) in [(&quick, 1), (&slow, 2)] {
        check_image(&back, id, dir.path());
        check_log(&back, id, attempts);
    }
}

#[test]
fn a_registry_that_stops_while_a_build_is_on_its_way_fails_the_build_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let repository = format!("{}/stopping", registry.address);
    let (data, _leftovers) = data_dir(dir.path());
    // SQLite, one machine, with its images in the registry.
    let server = start(&data, &["--artifacts", &repository]);
    let slow = slow_project(&dir.path().join("slow"), "slow", 6);
    let id = submit(&server, slow.path(), "optimize=aggressive")["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&server, &id, Duration::from_secs(120), |r| {
        r["status"] == "working"
    });
    registry.kill();
    let done = wait_for(&server, &id, Duration::from_secs(240), ended);
    assert_eq!(done["status"], "failure", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains(&registry.address), "{done}");
    assert_eq!(done["error"]["stage"], "publish", "{done}");
    // No image recorded, none served.
    let image = curl(&server, "GET", &format!("/v1/builds/{id}/image"), &[], true);
    assert_eq!(image.status, 404, "{}", image.body);
    // And the registry has no tag for it once it is back.
    registry.restart();
    let tags = std::process::Command::new("curl")
        .args([
            "-sS",
            &format!("http://{}/v2/stopping/tags/list", registry.address),
        ])
        .output()
        .unwrap();
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(!tags.contains(&id), "{tags}");
}

#[test]
fn workers_on_a_shared_database_need_an_artifact_registry() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let database = database_for(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("RUCHY_IMAGE_ARTIFACTS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("need --artifacts REGISTRY/REPOSITORY"),
        "{stderr}"
    );
    assert!(!data.join("ruchy-image.db").exists(), "nothing made");
    let out = serve_command(&data, &["--database", &database, "--artifacts", ""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REGISTRY/REPOSITORY"), "{stderr}");
    // A registry nobody answers at: refused at start, naming it.
    let nowhere = format!("127.0.0.1:{}/builds", registries::free_port());
    let out = serve_command(&data, &["--database", &database, "--artifacts", &nowhere])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(nowhere.split('/').next().unwrap()),
        "{stderr}"
    );
}

/// `curl` against the registry's own API: the status and the body.
fn registry_api(method: &str, url: &str) -> (u16, String) {
    // `-X HEAD` would wait for a body: `--head` knows there is none.
    let method: &[&str] = match method {
        "HEAD" => &["--head"],
        other => &["-X", other],
    };
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
        .args(method)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The blobs and manifests the image `digest` of `repository` (`host/name`) reaches: its
/// config and layers, its SBOM referrers' (listed under the fallback tag) and theirs.
fn reach(repository: &str, digest: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (host, name) = repository.split_once('/').unwrap();
    let manifest = |reference: &str| {
        let (status, body) = registry_api(
            "GET",
            &format!("http://{host}/v2/{name}/manifests/{reference}"),
        );
        assert_eq!(status, 200, "{reference}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let parts = |m: &serde_json::Value| -> Vec<String> {
        std::iter::once(&m["config"])
            .chain(m["layers"].as_array().unwrap())
            .map(|p| p["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let image = manifest(digest);
    let mut blobs: BTreeSet<String> = parts(&image).into_iter().collect();
    let mut manifests = BTreeSet::from([digest.to_string()]);
    let referrers = manifest(&digest.replacen(':', "-", 1));
    for entry in referrers["manifests"].as_array().unwrap() {
        let referrer = entry["digest"].as_str().unwrap();
        manifests.insert(referrer.to_string());
        blobs.extend(parts(&manifest(referrer)));
    }
    assert!(manifests.len() > 1, "the image has its SBOM referrer");
    (blobs, manifests)
}

/// The registry's status for a blob or manifest of `repository`.
fn head(repository: &str, kind: &str, digest: &str) -> u16 {
    let (host, name) = repository.split_once('/').unwrap();
    registry_api("HEAD", &format!("http://{host}/v2/{name}/{kind}/{digest}")).0
}

#[test]
fn an_expired_build_answers_410_and_leaves_the_registry_with_only_what_kept_builds_use() {
    let dir = tempfile::tempdir().unwrap();
    // The run's registry: it allows deletes.
    let repository = service::registry::artifacts_repository("retention");
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(
        &data,
        &["--artifacts", &repository, "--keep-artifacts", "20s"],
    );
    let context = fibonacci_context(&dir.path().join("fib"));
    let build = |preset: &str| {
        let id = submit(&server, context.path(), &format!("optimize={preset}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let done = wait_for(&server, &id, Duration::from_secs(300), ended);
        assert_eq!(done["status"], "success", "{done}");
        assert!(done["expired_at"].is_null(), "{done}");
        (
            id,
            done["results"][0]["image"]["digest"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    // Two builds of one program, ten seconds apart: their images share the system layer and
    // the SBOM's empty config, not the binary's layer. The newer one is kept for at least ten
    // seconds after the older one expires (retention waits while a build works).
    let (old, old_image) = build("aggressive");
    std::thread::sleep(Duration::from_secs(10));
    let (kept, kept_image) = build("balanced");
    let (old_blobs, old_manifests) = reach(&repository, &old_image);
    let (kept_blobs, kept_manifests) = reach(&repository, &kept_image);
    let shared: Vec<&String> = old_blobs.intersection(&kept_blobs).collect();
    let only_old: Vec<&String> = old_blobs.difference(&kept_blobs).collect();
    assert!(
        !shared.is_empty() && !only_old.is_empty(),
        "{old_blobs:?} {kept_blobs:?}"
    );

    let expired = wait_for(&server, &old, Duration::from_secs(60), |r| {
        !r["expired_at"].is_null()
    });
    assert_eq!(expired["status"], "success", "the record stays: {expired}");
    assert_eq!(expired["results"][0]["image"]["digest"], old_image.as_str());
    assert!(
        record(&server, &kept)["expired_at"].is_null(),
        "kept: {kept}"
    );
    let gone = curl(
        &server,
        "GET",
        &format!("/v1/builds/{old}/image"),
        &[],
        true,
    );
    assert_eq!(gone.status, 410, "{}", gone.body);
    let at = expired["expired_at"].as_str().unwrap();
    assert!(
        gone.json()["error"].as_str().unwrap().contains(at),
        "{}",
        gone.body
    );
    for blob in &only_old {
        assert_eq!(
            head(&repository, "blobs", blob),
            404,
            "{blob} is the old build's only"
        );
    }
    for manifest in &old_manifests {
        assert_eq!(head(&repository, "manifests", manifest), 404, "{manifest}");
    }
    let fallback = old_image.replacen(':', "-", 1);
    assert_eq!(
        head(&repository, "manifests", &fallback),
        404,
        "its referrers' tag"
    );
    for blob in &shared {
        assert_eq!(
            head(&repository, "blobs", blob),
            200,
            "{blob} is the kept build's too"
        );
    }
    for manifest in &kept_manifests {
        assert_eq!(head(&repository, "manifests", manifest), 200, "{manifest}");
    }
    check_image(&server, &kept, dir.path());

    // Once the kept build expires too, nothing of either is left.
    wait_for(&server, &kept, Duration::from_secs(60), |r| {
        !r["expired_at"].is_null()
    });
    for blob in old_blobs.union(&kept_blobs) {
        assert_eq!(head(&repository, "blobs", blob), 404, "{blob}");
    }
    let answer = curl(
        &server,
        "GET",
        &format!("/v1/builds/{kept}/image"),
        &[],
        true,
    );
    assert_eq!(answer.status, 410, "{}", answer.body);
}

/// A build's own push to the artifact registry's host is copied there from the artifact
/// copy (a cross-repository mount), not uploaded a second time.
#[test]
fn a_push_to_the_artifact_registry_mounts_what_the_artifact_copy_holds() {
    let dir = tempfile::tempdir().unwrap();
    let repository = service::registry::artifacts_repository("mounted");
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &["--artifacts", &repository]);
    let context = fibonacci_context(&dir.path().join("fib"));
    let target = format!("{}/pushed/fib:1", service::registry::shared_registry());
    let accepted = submit(
        &server,
        context.path(),
        &format!("optimize=size&push={target}"),
    );
    let id = accepted["id"].as_str().unwrap();
    let done = wait_for(&server, id, Duration::from_secs(240), ended);
    assert_eq!(done["status"], "success", "{done}");
    let push = done["results"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "registry" && o["location"].as_str().unwrap().contains("/pushed/"))
        .unwrap_or_else(|| panic!("no push to {target}: {done:#}"))["push"]
        .clone();
    assert!(push["mounted_blobs"].as_u64().unwrap() > 0, "{push}");
    assert_eq!(push["uploaded_blobs"], 0, "{push}");
}
