//! `ruchy-image verify REF`: an image's SBOM and provenance referrers checked against it, one
//! line per check, in layouts, docker-archives and a real registry (Debian's
//! `docker-registry`, distribution 2.8, which finds referrers through the fallback tag). A
//! good image passes; another key, a changed byte, an old provenance on a rebuilt image and a
//! missing referrer each fail with their own line; bad input is exit 2.

mod common;
mod registries;

use std::path::{Path, PathBuf};

use common::*;
use registries::start_registry;

/// `build fibonacci -O PRESET --tag fib:1 ARGS --json -`: the image's digest.
fn build(preset: &str, args: &[&str]) -> String {
    let fib = fib();
    let mut all = vec!["build", fib.as_str(), "-O", preset, "--tag", "fib:1"];
    all.extend(["--no-load", "--json", "-"]);
    all.extend(args);
    let record = ruchy_image(&all).ok().metrics();
    record["image"]["digest"].as_str().unwrap().to_string()
}

/// `verify ARGS`: the exit code and the lines (or the JSON).
fn verify(args: &[&str]) -> Run {
    let mut all = vec!["verify"];
    all.extend(args);
    ruchy_image(&all)
}

/// The line of check `name` in `run`'s output.
fn line<'a>(run: &'a Run, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line:\n{}\n{}", run.stdout, run.stderr))
}

#[test]
fn a_good_image_passes_and_each_fault_fails_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "key");
    let (_, other) = key_pair(dir.path(), "other");
    let layout = dir.path().join("layout");
    let archive = dir.path().join("fib.tar");
    let at = |p: &Path| p.to_str().unwrap().to_string();
    let signed = ["--sign-key", &at(&key)];
    let image = build(
        "aggressive",
        &[
            &signed[..],
            &["--oci-layout", &at(&layout), "-o", &at(&archive)],
        ]
        .concat(),
    );
    let oci = format!("oci:{}:1", layout.display());
    let key_arg = ["--key", public.to_str().unwrap()];

    // Good: every check holds, in the layout and the archive.
    let good = verify(&[&[oci.as_str()][..], &key_arg].concat());
    assert_eq!(good.code, Some(0), "{}\n{}", good.stdout, good.stderr);
    for name in ["sbom", "provenance", "signature", "flags"] {
        assert!(line(&good, name).starts_with('✓'), "{}", good.stdout);
    }
    assert!(
        line(&good, "embedded-crates").starts_with('✓'),
        "{}",
        good.stdout
    );
    let tar = format!("docker-archive:{}", archive.display());
    let from_archive = verify(&[&[tar.as_str()][..], &key_arg].concat());
    assert_eq!(from_archive.code, Some(0), "{}", from_archive.stdout);
    let json = verify(&[oci.as_str(), "--json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let report = json.metrics();
    assert_eq!(report["verified"], true);
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["image"] == image.as_str()));
    let signature = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "signature")
        .unwrap();
    assert_eq!(
        signature["status"], "skip",
        "no --key: reported, not checked"
    );

    // Another key: the signature line fails, the rest holds.
    let wrong = verify(&[oci.as_str(), "--key", other.to_str().unwrap()]);
    assert_eq!(wrong.code, Some(1), "{}", wrong.stdout);
    assert!(
        line(&wrong, "signature").starts_with('✗'),
        "{}",
        wrong.stdout
    );
    assert!(
        line(&wrong, "provenance").starts_with('✓'),
        "{}",
        wrong.stdout
    );

    // One changed byte in the provenance blob (a copy of the layout).
    let changed = dir.path().join("changed");
    copy_dir(&layout, &changed);
    let found = ruchy_image::pipeline::oci::referrer::in_layout(&changed, &image).unwrap();
    let provenance = found
        .iter()
        .find(|f| f["artifactType"] == "application/vnd.dsse.envelope.v1+json")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&changed, provenance["digest"].as_str().unwrap())).unwrap();
    let envelope_path = blob_path(&changed, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = std::fs::read(&envelope_path).unwrap();
    let at_payload = find(&bytes, b"\"payload\":\"").unwrap() + 40;
    bytes[at_payload] = if bytes[at_payload] == b'A' {
        b'B'
    } else {
        b'A'
    };
    std::fs::write(&envelope_path, bytes).unwrap();
    let run = verify(
        &[
            &[format!("oci:{}:1", changed.display()).as_str()][..],
            &key_arg,
        ]
        .concat(),
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(line(&run, "provenance").starts_with('✗'), "{}", run.stdout);
    assert!(
        line(&run, "provenance").contains("changed"),
        "{}",
        run.stdout
    );
    assert!(line(&run, "signature").starts_with('✗'), "{}", run.stdout);
    assert!(line(&run, "sbom").starts_with('✓'), "{}", run.stdout);

    // Rebuilt with other flags under the same tag, and the first build's provenance attached
    // to it: it names another manifest, and its flags are not the image's.
    let rebuilt = build("size", &["--no-provenance", "--oci-layout", &at(&layout)]);
    assert_ne!(rebuilt, image);
    let missing = verify(&[&[oci.as_str()][..], &key_arg].concat());
    assert_eq!(missing.code, Some(1), "{}", missing.stdout);
    assert!(line(&missing, "provenance").contains("no provenance referrer"));
    assert!(
        line(&missing, "sbom").starts_with('✓'),
        "{}",
        missing.stdout
    );
    let rebuilt_manifest = blob(&layout, &rebuilt);
    let mut moved: serde_json::Value =
        serde_json::from_slice(&blob(&layout, provenance["digest"].as_str().unwrap())).unwrap();
    moved["subject"]["digest"] = rebuilt.clone().into();
    moved["subject"]["size"] = rebuilt_manifest.len().into();
    let moved = serde_json::to_vec(&moved).unwrap();
    std::fs::write(blob_path(&layout, &sha256(&moved)), &moved).unwrap();
    let run = verify(&[&[oci.as_str()][..], &key_arg].concat());
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let subject = line(&run, "provenance");
    assert!(
        subject.starts_with('✗') && subject.contains(&image),
        "{subject}"
    );
    let flags = line(&run, "flags");
    assert!(
        flags.starts_with('✗') && flags.contains("preset"),
        "{flags}"
    );
    assert!(line(&run, "signature").starts_with('✓'), "{}", run.stdout);

    // No SBOM: its own line fails.
    let bare = dir.path().join("bare");
    build("aggressive", &["--no-sbom", "--oci-layout", &at(&bare)]);
    let run = verify(&[format!("oci:{}", bare.display()).as_str()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(line(&run, "sbom").starts_with('✗'), "{}", run.stdout);
    assert!(line(&run, "provenance").starts_with('✓'), "{}", run.stdout);
    // Unsigned, with --key: fails; without: reported.
    assert!(
        line(&run, "signature").contains("unsigned"),
        "{}",
        run.stdout
    );
    let keyed = verify(&[&[format!("oci:{}", bare.display()).as_str()][..], &key_arg].concat());
    assert!(
        line(&keyed, "signature").starts_with('✗'),
        "{}",
        keyed.stdout
    );
}

#[test]
fn bad_input_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, "not a key").unwrap();
    let missing = format!("oci:{}", dir.path().join("none").display());
    for args in [
        vec!["fib"],
        vec!["oci:"],
        vec![missing.as_str()],
        vec!["docker-archive:/nonexistent/fib.tar"],
        vec!["oci:examples:1", "--key", garbage.to_str().unwrap()],
    ] {
        let run = verify(&args);
        assert_eq!(
            run.code,
            Some(2),
            "{args:?}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    }
    // A layout without that tag names the ones it has.
    let layout = dir.path().join("layout");
    build(
        "aggressive",
        &["--no-sbom", "--oci-layout", layout.to_str().unwrap()],
    );
    let run = verify(&[format!("oci:{}:nope", layout.display()).as_str()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("the layout's tags are: 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_signed_push_verifies_from_the_registry() {
    let registry = start_registry("127.0.0.1", "127.0.0.1", None);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "key");
    let (_, other) = key_pair(dir.path(), "other");
    let reference = format!("{}/verify/fib:1", registry.address);
    let image = build(
        "aggressive",
        &["--sign-key", key.to_str().unwrap(), "--push", &reference],
    );
    let run = verify(&[reference.as_str(), "--key", public.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(&image), "{}", run.stdout);
    for name in ["sbom", "provenance", "signature", "flags"] {
        assert!(line(&run, name).starts_with('✓'), "{}", run.stdout);
    }
    let by_digest = format!("{}/verify/fib@{image}", registry.address);
    let run = verify(&[by_digest.as_str(), "--key", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(line(&run, "signature").starts_with('✗'), "{}", run.stdout);

    // Pushed again, signed with the other key: both provenances are listed (as `cosign
    // attest` appends), and each key finds its own.
    let other_key = dir.path().join("other.pem");
    let again = build(
        "aggressive",
        &[
            "--sign-key",
            other_key.to_str().unwrap(),
            "--push",
            &reference,
        ],
    );
    assert_eq!(again, image);
    for public in [&public, &other] {
        let run = verify(&[by_digest.as_str(), "--key", public.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    }
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs").join(digest.replacen(':', "/", 1))
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(blob_path(layout, digest)).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    ruchy_image::adapters::fsutil::sha256_digest(bytes)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + needle.len())
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}
