//! Pushing without a daemon to real registries: Debian's `docker-registry` (distribution
//! 2.8) started by each test from its own config, over plain HTTP on loopback and over TLS
//! (a throwaway CA from `openssl`) with htpasswd users (`htpasswd -B`). What was pushed is read
//! back by skopeo and by the engine (`docker pull`, `docker run`).

mod common;
mod guards;
mod registries;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::*;
use guards::Images;
use registries::*;

/// `ruchy-image` through the docker builder, with the tests' cache and no registry
/// credentials of the machine's own.
fn ruchy_image_command() -> Command {
    in_test_env(Command::new(env!("CARGO_BIN_EXE_ruchy-image")))
}

/// `cmd` with the tests' cache, the docker builder and no registry credentials.
fn in_test_env(mut cmd: Command) -> Command {
    cmd.env("RUCHY_IMAGE_CACHE", cache_dir())
        .env("RUCHY_IMAGE_BUILDER", "docker")
        .env(
            "DOCKER_CONFIG",
            "/nonexistent/ruchy-image-test-docker-config",
        );
    cmd
}

/// `ruchy-image build fibonacci -O size ARGS --json -` with `stdin` as its standard input.
fn push(args: &[&str], stdin: &str) -> Run {
    let fib = example("fibonacci.rs");
    let mut cmd = ruchy_image_command();
    cmd.args(["build", fib.to_str().unwrap(), "-O", "size", "--json", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

fn pushed(record: &serde_json::Value, index: usize) -> &serde_json::Value {
    let output = &record["outputs"][index];
    assert_eq!(output["kind"], "registry", "{record}");
    output
}

#[test]
fn a_push_over_http_is_what_was_built_and_the_second_uploads_nothing() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let first = format!("{}/ruchy-image-test/fib:size", registry.address);
    let second = format!("{}/ruchy-image-test/other:size", registry.address);
    let run = push(&["--push", &first, "--push", &second], "").ok();
    // The summary says what each push sent.
    assert!(
        run.stderr.contains("            pushed 3 blobs ("),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("0 pushed, 0 skipped, 3 mounted from another repository"),
        "{}",
        run.stderr
    );
    let record = run.metrics();
    let digest = record["image"]["digest"].as_str().unwrap();
    let one = pushed(&record, 0);
    assert_eq!(one["location"], format!("{first}@{digest}"));
    assert_eq!(one["push"]["uploaded_blobs"], 3, "{record}");
    // The second repository mounts what the first uploaded.
    assert_eq!(pushed(&record, 1)["push"]["mounted_blobs"], 3, "{record}");

    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{first}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);

    let again = push(&["--push", &first], "").ok();
    assert!(
        again
            .stderr
            .contains("            0 pushed, 3 skipped (already there)\n"),
        "{}",
        again.stderr
    );
    let again = again.metrics();
    assert_eq!(again["image"]["digest"], digest);
    let stats = &pushed(&again, 0)["push"];
    assert_eq!(
        (
            stats["uploaded_blobs"].as_u64(),
            stats["skipped_blobs"].as_u64()
        ),
        (Some(0), Some(3))
    );

    let _images = Images(vec![first.clone()]);
    tool("docker", &["pull", "-q", &first]).ok();
    let run = tool("docker", &["run", "--rm", &first]).ok();
    assert_eq!(run.stdout, "fibonacci(30) = 832040\nuid=65532 gid=65532\n");
}

#[test]
fn a_push_over_tls_with_a_password_and_what_goes_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ip = String::from_utf8(Command::new("hostname").arg("-I").output().unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .unwrap_or("127.0.0.1")
        .to_string();
    let (secure, ca) = secure_parts(dir.path(), &ip);
    let registry = start_registry("0.0.0.0", "127.0.0.1", Some(&secure));
    let port = registry.address.rsplit(':').next().unwrap().to_string();
    let reference = format!("{}/secure/fib:size", registry.address);
    let ca_arg = ca.to_str().unwrap();

    let record = push(
        &[
            "--push",
            &reference,
            "--registry-ca",
            ca_arg,
            "--registry-user",
            "alice",
            "--registry-password-stdin",
        ],
        "correct horse\n",
    )
    .ok()
    .metrics();
    let digest = record["image"]["digest"].as_str().unwrap().to_string();
    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:correct horse",
            &format!("docker://{reference}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);

    // Credentials from Docker's config: a credential helper for this registry.
    let config = dir.path().join("docker-config");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-ruchytest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread host\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"correct horse\"}' \"$host\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(
            "{{\"credHelpers\": {{\"{}\": \"ruchytest\"}}}}",
            registry.address
        ),
    )
    .unwrap();
    let helped = ruchy_image_command()
        .args([
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            "size",
            "--json",
            "-",
        ])
        .args(["--push", &format!("{}/secure/fib:helper", registry.address)])
        .args(["--registry-ca", ca_arg])
        .env("DOCKER_CONFIG", &config)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let helped = Run::from(helped).ok().metrics();
    assert_eq!(helped["image"]["digest"], digest.as_str());

    // A wrong password: who failed where, and no new tag.
    let other = format!("{}/secure/fib:wrong", registry.address);
    let wrong = push(
        &[
            "--push",
            &other,
            "--registry-ca",
            ca_arg,
            "--registry-user",
            "alice",
            "--registry-password-stdin",
        ],
        "battery staple\n",
    );
    assert_eq!(wrong.code, Some(1), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!(
            "authentication failed for {} as alice",
            registry.address
        )),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("battery"),
        "the password is never printed"
    );
    let tag = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:correct horse",
            &format!("docker://{other}"),
        ],
    );
    assert_ne!(tag.code, Some(0), "the failed push left a tag");

    // An unknown CA: the error says so and names the option that fixes it.
    let untrusted = push(&["--push", &format!("{ip}:{port}/secure/fib:ca")], "");
    assert_eq!(untrusted.code, Some(1), "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains("TLS certificate is not trusted"),
        "{}",
        untrusted.stderr
    );
    assert!(
        untrusted.stderr.contains("--registry-ca"),
        "{}",
        untrusted.stderr
    );

    // A CA given, but not the one that signed the registry's certificate: the same, no tag.
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other_ca) = secure_parts(other_dir.path(), &ip);
    let mismatched = format!("{}/secure/fib:other-ca", registry.address);
    let wrong_ca = push(
        &[
            "--push",
            &mismatched,
            "--registry-ca",
            other_ca.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(wrong_ca.code, Some(1), "{}", wrong_ca.stderr);
    assert!(
        wrong_ca.stderr.contains("TLS certificate is not trusted"),
        "{}",
        wrong_ca.stderr
    );
    let tag = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:correct horse",
            &format!("docker://{mismatched}"),
        ],
    );
    assert_ne!(tag.code, Some(0), "the refused push left a tag");
}

#[test]
fn unreachable_registries_and_bad_references_are_clear_errors() {
    let port = free_port();
    let unreachable = push(&["--push", &format!("127.0.0.1:{port}/app:1")], "");
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .contains(&format!("registry 127.0.0.1:{port}")),
        "{}",
        unreachable.stderr
    );
    let invalid = push(&["--push", "UPPER/Case:1"], "");
    assert_eq!(invalid.code, Some(2), "{}", invalid.stderr);
    assert!(
        invalid.stderr.contains("invalid push reference"),
        "{}",
        invalid.stderr
    );
    let by_digest = push(
        &["--push", "127.0.0.1:5000/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"],
        "",
    );
    assert_eq!(by_digest.code, Some(2), "{}", by_digest.stderr);
}

#[test]
fn a_base_pulled_from_a_registry_is_the_base_read_from_a_layout() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("base");
    let reference = format!("{}/bases/fib:size", registry.address);
    // The base: one of our own images, in a layout and in the registry, the same digest.
    let base = push(
        &[
            "--push",
            &reference,
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
        "",
    )
    .ok()
    .metrics();
    // The same program on that base, read both ways: the same layers, the same base digest
    // (only the base's name, an annotation, says where it came from).
    let on = |base: &str, out: &str| {
        let layout = dir.path().join(out);
        let run = ruchy_image_command()
            .args([
                "build",
                fixture("release-only.rs").to_str().unwrap(),
                "-O",
                "size",
            ])
            .args(["--base", base, "--user", "1000:1000", "--json", "-"])
            .arg("--oci-layout")
            .arg(&layout)
            .output()
            .unwrap();
        let record = Run::from(run).ok().metrics();
        let (summary, _) = skopeo_inspect(&layout, "size");
        (record, summary["Layers"].clone())
    };
    let (from_layout, layout_layers) = on(&format!("oci:{}:size", layout.display()), "a");
    let (from_registry, registry_layers) = on(&format!("docker://{reference}"), "b");
    assert_eq!(registry_layers, layout_layers);
    assert_eq!(registry_layers.as_array().unwrap().len(), 4);
    assert_eq!(
        from_registry["image"]["base"]["digest"],
        base["image"]["digest"]
    );
    assert_eq!(
        from_layout["image"]["base"]["digest"],
        base["image"]["digest"]
    );
    assert_eq!(
        from_registry["image"]["binary_layer_size"],
        from_layout["image"]["binary_layer_size"]
    );
    // By digest too (from the cache now).
    let by_digest = format!(
        "docker://{}/bases/fib@{}",
        registry.address,
        base["image"]["digest"].as_str().unwrap()
    );
    let (_, digest_layers) = on(&by_digest, "c");
    assert_eq!(digest_layers, layout_layers);

    let missing = ruchy_image_command()
        .args(["build", fixture("release-only.rs").to_str().unwrap()])
        .args([
            "--base",
            &format!("docker://{}/bases/none:1", registry.address),
        ])
        .output()
        .unwrap();
    let missing = Run::from(missing);
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains(&registry.address),
        "{}",
        missing.stderr
    );
}

#[test]
fn compare_pushes_each_preset_to_its_own_tag() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let repository = format!("{}/compared/fib", registry.address);
    let report = ruchy_image_with(
        [
            "compare",
            example("fibonacci.rs").to_str().unwrap(),
            "--presets",
            "aggressive,size",
            "--push",
            &repository,
            "--format",
            "json",
        ],
        |cmd| {
            cmd.env("RUCHY_IMAGE_BUILDER", "docker");
        },
    )
    .ok()
    .metrics();
    for result in report["results"].as_array().unwrap() {
        let preset = result["optimization_level"].as_str().unwrap();
        let digest = result["image"]["digest"].as_str().unwrap();
        let inspect = tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{repository}:{preset}"),
            ],
        )
        .ok();
        let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(inspected["Digest"], digest, "{preset}");
    }
}

#[test]
fn a_builder_image_missing_from_the_engine_is_pulled_from_a_registry_with_progress() {
    let builder = guards::builder_image();
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    // The import-host builder, pushed under the name the chapter uses, then untagged locally
    // so the engine has to pull it (its layers are there already: the pull is quick).
    let remote = format!("{}/rust:1-alpine", registry.address);
    let _images = Images(vec![remote.clone()]);
    tool("docker", &["tag", &builder, &remote]).ok();
    tool("docker", &["push", "-q", &remote]).ok();
    tool("docker", &["rmi", &remote]).ok();

    let run = ruchy_image_with(
        [
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "-O",
            "size",
            "--builder-image",
            &remote,
            "--json",
            "-",
        ],
        |cmd| {
            cmd.env("RUCHY_IMAGE_BUILDER", "docker");
        },
    )
    .ok();
    assert!(
        run.stderr.contains(&format!("{remote}: Pulling from rust")),
        "pull progress: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Downloaded newer image"),
        "{}",
        run.stderr
    );
    assert_eq!(run.metrics()["libc"], "musl");
}

#[test]
fn the_sbom_is_attached_as_a_referrer_in_the_layout_and_the_registry() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let dir = tempfile::tempdir().unwrap();
    let (layout, sbom) = (dir.path().join("layout"), dir.path().join("app.cdx.json"));
    let reference = format!("{}/sbom/app:1", registry.address);
    let run = ruchy_image_command()
        .args([
            "build",
            fixture("serde-app").to_str().unwrap(),
            "-O",
            "size",
        ])
        .args(["--push", &reference, "--json", "-"])
        .arg("--oci-layout")
        .arg(&layout)
        .arg("--sbom")
        .arg(&sbom)
        .output()
        .unwrap();
    let record = Run::from(run).ok().metrics();
    let image = record["image"]["digest"].as_str().unwrap().to_string();
    let sbom_bytes = std::fs::read(&sbom).unwrap();
    let sbom_digest = record["sbom"]["digest"].as_str().unwrap().to_string();
    let referrer_of = |manifest: &serde_json::Value| {
        assert_eq!(manifest["artifactType"], "application/vnd.cyclonedx+json");
        assert_eq!(manifest["subject"]["digest"], image.as_str());
        assert_eq!(manifest["layers"][0]["digest"], sbom_digest.as_str());
    };

    // The layout: one entry, the image, read without naming it; the referrer is found
    // through its subject.
    let (summary, _) = skopeo_inspect(&layout, "size");
    assert_eq!(summary["Digest"], image.as_str());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    let found = ruchy_image::pipeline::oci::referrer::in_layout(&layout, &image).unwrap();
    assert_eq!(found.len(), 2, "the SBOM and the provenance: {found:?}");
    let entry = found
        .iter()
        .find(|f| f["artifactType"] == "application/vnd.cyclonedx+json")
        .unwrap();
    let blob = |digest: &str| {
        std::fs::read(layout.join("blobs").join(digest.replacen(':', "/", 1))).unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    referrer_of(&manifest);
    assert_eq!(blob(&sbom_digest), sbom_bytes);

    // The registry: found through the fallback tag, the SBOM blob is the file's bytes and
    // lists the lock file's crates.
    let fallback = format!(
        "docker://{}/sbom/app:{}",
        registry.address,
        image.replacen(':', "-", 1)
    );
    let listed = tool(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &fallback],
    )
    .ok();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let sbom_entry = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        .unwrap_or_else(|| panic!("no SBOM listed: {listed}"));
    let referrer = sbom_entry["digest"].as_str().unwrap();
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/sbom/app@{referrer}", registry.address),
        ],
    )
    .ok();
    referrer_of(&serde_json::from_str(&raw.stdout).unwrap());
    let fetched = Command::new("curl")
        .args([
            "-sSf",
            &format!(
                "http://{}/v2/sbom/app/blobs/{sbom_digest}",
                registry.address
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(fetched.stdout, sbom_bytes);
    let bom: serde_json::Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert!(bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "serde_json"));
}

#[test]
fn a_base_index_without_this_platform_lists_the_ones_it_has() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let image = format!("{}/multi/fib:amd64", registry.address);
    let pushed = push(&["--push", &image], "").ok().metrics();
    let digest = pushed["image"]["digest"].as_str().unwrap();
    // An index that says its only image is linux/arm64 (and linux/riscv64).
    let manifest = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ],
    )
    .ok()
    .stdout;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": manifest.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": manifest.len(), "platform": {"os": "linux", "architecture": "riscv64"}},
        ],
    });
    let put = Command::new("curl")
        .args([
            "-sSf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
        ])
        .args(["--data-binary", &index.to_string()])
        .arg(format!(
            "http://{}/v2/multi/fib/manifests/other",
            registry.address
        ))
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let run = ruchy_image_command()
        .args(["build", fixture("release-only.rs").to_str().unwrap()])
        .args([
            "--base",
            &format!("docker://{}/multi/fib:other", registry.address),
        ])
        .output()
        .unwrap();
    let run = Run::from(run);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr
            .contains("no linux/amd64 image; it has: linux/arm64, linux/riscv64"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_registry_that_answers_with_other_bytes_is_refused() {
    // A registry that answers any manifest request with the same JSON, whatever the digest
    // asked for.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(20) {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let n = std::io::Read::read(&mut stream, &mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]).to_string();
            let body = if request.contains("/manifests/") {
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#
            } else {
                "{}"
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, response.as_bytes());
        }
    });
    let wanted = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let run = ruchy_image_command()
        .args(["build", fixture("release-only.rs").to_str().unwrap()])
        .args(["--base", &format!("docker://{address}/liar/app@{wanted}")])
        .output()
        .unwrap();
    let run = Run::from(run);
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("digest"), "{}", run.stderr);
    assert!(run.stderr.contains(wanted), "{}", run.stderr);
}

/// A proxy to `upstream` that cuts the connection the first time a blob's bytes are sent
/// (the PATCH or PUT of an upload): a push interrupted mid-layer.
fn cutting_proxy(upstream: String) -> String {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let cut = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let cut = cut.clone();
            let (mut client_in, mut server_out) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(n) = client_in.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let head = String::from_utf8_lossy(&buffer[..n.min(200)]).to_string();
                    let upload = (head.starts_with("PATCH ") || head.starts_with("PUT "))
                        && head.contains("/blobs/uploads/");
                    if upload && !cut.swap(true, Ordering::SeqCst) {
                        let _ = client_in.shutdown(std::net::Shutdown::Both);
                        let _ = server_out.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if server_out.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
            });
        }
    });
    address
}

#[test]
fn a_push_cut_off_mid_layer_leaves_no_tag_and_the_next_one_completes() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let proxy = cutting_proxy(registry.address.clone());
    let through_proxy = format!("{proxy}/cut/fib:1");
    let cut = push(&["--push", &through_proxy], "");
    assert_eq!(cut.code, Some(1), "{}", cut.stderr);
    assert!(
        cut.stderr.contains(&format!("registry {proxy}")),
        "{}",
        cut.stderr
    );
    let direct = format!("{}/cut/fib:1", registry.address);
    let tag = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{direct}"),
        ],
    );
    assert_ne!(tag.code, Some(0), "a cut push left a tag");

    // Again, through the same proxy (it cuts once): the upload starts over and completes.
    let record = push(&["--push", &through_proxy], "").ok().metrics();
    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{direct}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], record["image"]["digest"]);
}

/// Busybox with `mib` MiB of noise after it (gzip cannot shrink it): a big layer.
fn big_binary(dir: &std::path::Path, mib: usize) -> std::path::PathBuf {
    let mut bytes = std::fs::read("/bin/busybox").expect("Debian's busybox-static");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..mib * 1024 * 1024 / 8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    let path = dir.join("big");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The size of the biggest upload in progress in `storage`.
fn biggest_upload(storage: &std::path::Path) -> u64 {
    let repositories = storage.join("docker/registry/v2/repositories/killed/big/_uploads");
    entries(&repositories)
        .iter()
        .filter_map(|u| std::fs::metadata(repositories.join(u).join("data")).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_registry_stopped_or_killed_mid_layer_leaves_no_tag_nor_layout_and_the_next_push_completes() {
    let mut registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let dir = tempfile::tempdir().unwrap();
    let binary = big_binary(dir.path(), 48);
    let address = registry.address.clone();
    let reference = format!("{address}/killed/big:1");
    let build = |layout: &std::path::Path| {
        let mut cmd = ruchy_image_command();
        cmd.args(["build", binary.to_str().unwrap(), "--json", "-"])
            .args(["--push", &reference, "--oci-layout"])
            .arg(layout)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let refused = |run: &Run, layout: &std::path::Path| {
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("registry {address}")),
            "{}",
            run.stderr
        );
        // Nothing half-done: the layout is written only when every output took the image.
        assert!(!layout.exists(), "{}", layout.display());
        let leftovers: Vec<String> = entries(dir.path())
            .into_iter()
            .filter(|name| name.starts_with(".ruchy-image"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let tagged = || {
        tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ],
        )
    };

    // Stopped before the push.
    registry.kill();
    let layout = dir.path().join("stopped");
    let stopped = Run::from(build(&layout).wait_with_output().unwrap());
    refused(&stopped, &layout);

    // Killed (SIGKILL) while the big layer's bytes arrive.
    registry.restart();
    let layout = dir.path().join("killed");
    let pushing = build(&layout);
    let started = std::time::Instant::now();
    while biggest_upload(&registry.storage) < 1024 * 1024 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the big layer's upload never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    registry.kill();
    let partial = biggest_upload(&registry.storage);
    let killed = Run::from(pushing.wait_with_output().unwrap());
    refused(&killed, &layout);
    assert!(partial < 48 * 1024 * 1024, "the layer was whole: {partial}");
    registry.restart();
    assert_ne!(tagged().code, Some(0), "a cut push left a tag");

    // The next push completes, and the tag's image is whole: every blob reads back. On a
    // terminal (`script` gives it one), the big layer's bytes show as a bar.
    let (record_file, log) = (dir.path().join("again.json"), dir.path().join("tty.log"));
    let command_line = format!(
        "{} build {} --push {reference} --json {}",
        env!("CARGO_BIN_EXE_ruchy-image"),
        binary.display(),
        record_file.display()
    );
    let mut on_a_terminal = in_test_env(Command::new("script"));
    Run::from(
        on_a_terminal
            .args(["-qec", &command_line])
            .arg(&log)
            .output()
            .unwrap(),
    )
    .ok();
    let shown = std::fs::read_to_string(&log).unwrap();
    assert!(shown.contains("█") && shown.contains("MiB/s"), "{shown}");
    // The blobs before the big layer went up before the registry was killed.
    assert!(
        shown.contains("pushed 1 blob (49.0 MiB), 2 skipped"),
        "{shown}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    tagged().ok();
    let inspected = tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    )
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"], record["image"]["digest"]);
    let copy = dir.path().join("copy");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("dir:{}", copy.display()),
        ],
    )
    .ok();
}
