//! SLSA provenance: every image gets an in-toto Statement v1 in a DSSE envelope as an OCI 1.1
//! referrer, signed with `--sign-key`. in-toto's own crypto library (securesystemslib, from
//! PyPI) verifies the signature with the public key and reads the Statement; the image's
//! digest is the same with, without and with another provenance; a service signs its builds
//! with its own key.

mod common;
mod guards;
mod registries;
#[allow(unused_macros)]
#[macro_use]
mod service;

use std::path::Path;

use common::*;

const DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// The referrers of `image` in `layout`: (artifact type, manifest, blob).
fn referrers(layout: &Path, image: &str) -> Vec<(String, serde_json::Value, Vec<u8>)> {
    let blob = |digest: &str| {
        std::fs::read(layout.join("blobs").join(digest.replacen(':', "/", 1))).unwrap()
    };
    ruchy_image::pipeline::oci::referrer::in_layout(layout, image)
        .unwrap()
        .iter()
        .map(|entry| {
            let manifest: serde_json::Value =
                serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
            let artifact = blob(manifest["layers"][0]["digest"].as_str().unwrap());
            let kind = manifest["artifactType"].as_str().unwrap().to_string();
            (kind, manifest, artifact)
        })
        .collect()
}

/// securesystemslib's verdict on `envelope` with `public`: the statement, or the failure.
fn in_toto_verify(envelope: &[u8], public: &Path) -> Result<serde_json::Value, String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), envelope).unwrap();
    let script = fixture("attest/verify_dsse.py");
    let run = tool(
        "python3",
        &[
            script.to_str().unwrap(),
            file.path().to_str().unwrap(),
            public.to_str().unwrap(),
        ],
    );
    match run.code {
        Some(0) => Ok(serde_json::from_str(&run.stdout).unwrap()),
        Some(1) => Err(run.stderr),
        _ => panic!(
            "the verifier did not run (`bash .ci/setup` installs securesystemslib): {}",
            run.stderr
        ),
    }
}

#[test]
fn a_signed_provenance_is_verified_by_in_toto_s_library_and_names_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "key");
    let (_, other_public) = key_pair(dir.path(), "other");
    let layout = dir.path().join("layout");
    let run = ruchy_image([
        "build",
        &fib(),
        "-O",
        "aggressive",
        "--tag",
        "fib:prov",
        "--no-load",
        "--oci-layout",
        layout.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok();
    let record = run.metrics();
    let image = record["image"]["digest"].as_str().unwrap();
    let found = referrers(&layout, image);
    let (_, manifest, envelope) = found
        .iter()
        .find(|(kind, _, _)| kind == DSSE)
        .unwrap_or_else(|| panic!("no provenance among {found:?}"));
    assert_eq!(
        manifest["layers"][0]["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(
        record["provenance"]["referrer"],
        ruchy_image::pipeline::oci::referrer::in_layout(&layout, image)
            .unwrap()
            .iter()
            .find(|r| r["artifactType"] == DSSE)
            .unwrap()["digest"]
    );

    let verified = in_toto_verify(envelope, &public).expect("the signature verifies");
    assert_eq!(verified["keyid"], record["provenance"]["signed_by"]);
    let statement = &verified["statement"];
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        image.trim_start_matches("sha256:")
    );
    assert!(statement["subject"][0]["name"]
        .as_str()
        .unwrap()
        .ends_with("fib:prov"));
    let predicate = &statement["predicate"];
    let external = &predicate["buildDefinition"]["externalParameters"];
    assert_eq!(external["preset"], "aggressive");
    assert_eq!(
        external["optimizationFlags"], record["optimization_flags"],
        "{external:#}"
    );
    assert_eq!(external["request"]["presets"][0], "aggressive");
    let resolved = predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let named = |name: &str| resolved.iter().find(|r| r["name"] == name);
    assert!(named("source").unwrap()["digest"]["sha256"].is_string());
    assert!(named("rustc").unwrap()["uri"]
        .as_str()
        .unwrap()
        .starts_with("pkg:generic/rustc@1."));
    let run_details = &predicate["runDetails"];
    assert!(run_details["builder"]["id"]
        .as_str()
        .unwrap()
        .contains("ruchy-image"));
    let (started, finished) = (
        run_details["metadata"]["startedOn"].as_str().unwrap(),
        run_details["metadata"]["finishedOn"].as_str().unwrap(),
    );
    assert!(
        started <= finished && started.ends_with('Z'),
        "{started} {finished}"
    );

    // Another key's public half does not verify it.
    let refused = in_toto_verify(envelope, &other_public).unwrap_err();
    assert!(refused.contains("not verified"), "{refused}");
}

#[test]
fn the_image_is_the_same_with_any_provenance_or_none_and_unsigned_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key_pair(dir.path(), "key");
    let build = |name: &str, extra: &[&str]| {
        let layout = dir.path().join(name);
        let fib = fib();
        let mut args = vec!["build", fib.as_str(), "-O", "aggressive"];
        let layout_arg = layout.to_str().unwrap().to_string();
        args.extend(["--oci-layout", &layout_arg, "--json", "-"]);
        let owned: Vec<String> = args
            .iter()
            .map(|a| a.to_string())
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let record = ruchy_image(&owned).ok().metrics();
        let image = record["image"]["digest"].as_str().unwrap().to_string();
        let kinds: Vec<(String, Vec<u8>)> = referrers(&layout, &image)
            .into_iter()
            .map(|(kind, _, blob)| (kind, blob))
            .collect();
        (image, record, kinds)
    };
    let (signed, _, _) = build("signed", &["--sign-key", key.to_str().unwrap()]);
    let (unsigned, record, kinds) = build("unsigned", &[]);
    let (none, bare_record, bare) = build("none", &["--no-provenance"]);
    assert_eq!(
        signed, unsigned,
        "a provenance is a referrer, not the image"
    );
    assert_eq!(signed, none);

    let (_, envelope) = kinds.iter().find(|(k, _)| k == DSSE).unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"], serde_json::json!([]));
    assert!(record["provenance"]["signed_by"].is_null(), "{record:#}");

    assert!(bare.iter().all(|(k, _)| k != DSSE), "--no-provenance");
    assert_eq!(bare.len(), 1, "the SBOM stays");
    assert!(bare_record.get("provenance").is_none());
}

#[test]
fn a_key_that_does_not_read_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let (_, public) = key_pair(dir.path(), "key");
    let missing = dir.path().join("missing.pem");
    for key in [&garbage, &public, &missing] {
        let layout = dir.path().join("layout");
        let run = ruchy_image([
            "build",
            &fib(),
            "-O",
            "aggressive",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(run.code, Some(2), "{}: {}", key.display(), run.stderr);
        assert!(run.stderr.contains("signing key"), "{}", run.stderr);
        assert!(run.stderr.contains(key.to_str().unwrap()), "{}", run.stderr);
        assert!(!layout.exists(), "nothing is written");
    }
    // --no-provenance and --sign-key contradict each other.
    let run = ruchy_image([
        "build",
        &fib(),
        "--no-provenance",
        "--sign-key",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn a_service_signs_its_builds_with_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "service");
    let (data, _leftovers) = service::data_dir(dir.path());

    // A key that does not read stops the start.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let refused = service::serve_command(&data, &["--sign-key", garbage.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("signing key"), "{stderr}");

    let server = service::start(&data, &["--sign-key", key.to_str().unwrap()]);
    let context = service::fibonacci_context(&dir.path().join("fib"));
    let accepted = service::submit(&server, context.path(), "optimize=size");
    let id = accepted["id"].as_str().unwrap().to_string();
    let done = service::wait_for(
        &server,
        &id,
        std::time::Duration::from_secs(600),
        service::ended,
    );
    assert_eq!(done["status"], "success", "{done:#}");
    let tarball = dir.path().join("image.tar");
    let download = service::curl(
        &server,
        "GET",
        &format!("/v1/builds/{id}/image"),
        &["-o", tarball.to_str().unwrap()],
        true,
    );
    assert_eq!(download.status, 200, "{}", download.body);
    let verified = ruchy_image([
        "verify",
        &format!("docker-archive:{}", tarball.display()),
        "--key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(
        verified.code,
        Some(0),
        "{}\n{}",
        verified.stdout,
        verified.stderr
    );
    assert!(
        verified.stdout.contains("✓ signature"),
        "{}",
        verified.stdout
    );
}
