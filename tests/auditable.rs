//! The crates in the binary: every binary ruchy-image compiles carries its resolved
//! dependency list in cargo-auditable's `.dep-v0` section. Read back from the binary taken
//! out of the image by third-party readers: cargo-auditable's own `rust-audit-info`, and
//! RustSec's `cargo audit bin` against an advisory database the test writes (installed by
//! .ci/setup); and it equals the list `cargo auditable build` links into the same project.
//! `--no-embed-deps` (flag or setting) leaves it out; a prebuilt binary is read, not changed,
//! and its list makes its SBOM.

mod common;
mod guards;

use std::path::{Path, PathBuf};

use common::*;
use guards::builder_image;
use serde_json::Value;

/// The advisory the test database holds, for serde_json.
const ADVISORY: &str = "RUSTSEC-2099-0001";

/// Builds `source` with `args` into an OCI layout in `out`, and returns the record and the
/// binary `bin` taken out of the image (umoci), copied to `out/<label>`.
fn build(source: &Path, bin: &str, args: &[&str], out: &Path, label: &str) -> (Value, PathBuf) {
    let layout = out.join(format!("layout-{label}"));
    let mut all = vec![
        "build",
        source.to_str().unwrap(),
        "--oci-layout",
        layout.to_str().unwrap(),
        "--tag",
        "auditable:test",
        "--no-load",
        "--json",
        "-",
    ];
    all.extend(args);
    let record = ruchy_image(&all).ok().metrics();
    let bundle = umoci_unpack(&layout, "test");
    let binary = out.join(label);
    std::fs::copy(
        bundle.path().join("bundle/rootfs/usr/local/bin").join(bin),
        &binary,
    )
    .unwrap();
    (record, binary)
}

/// What `rust-audit-info` reads from `binary`: the JSON, or `None` when it finds no list.
fn audit_info(binary: &Path) -> Option<Value> {
    let run = tool("rust-audit-info", &[binary.to_str().unwrap()]);
    match run.code {
        Some(0) => Some(serde_json::from_str(&run.stdout).expect("rust-audit-info prints JSON")),
        _ => {
            assert!(
                run.stderr.contains("No audit data found"),
                "rust-audit-info failed otherwise: {}",
                run.stderr
            );
            None
        }
    }
}

/// The packages of a list by name: (version, source, kind).
fn packages(list: &Value) -> Vec<(String, String, String, String)> {
    list["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("version"), s("source"), s("kind"))
        })
        .collect()
}

/// The one root package's name and version.
fn root(list: &Value) -> (String, String) {
    let roots: Vec<_> = list["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["root"] == true)
        .collect();
    assert_eq!(roots.len(), 1, "{list:#}");
    let s = |k: &str| roots[0][k].as_str().unwrap().to_string();
    (s("name"), s("version"))
}

/// Cargo.lock's version of `name`.
fn locked_version(lock: &str, name: &str) -> String {
    lock.split("[[package]]")
        .find(|block| block.contains(&format!("name = \"{name}\"\n")))
        .and_then(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"')))
        })
        .unwrap_or_else(|| panic!("{name} is not in the lock"))
        .to_string()
}

/// A RustSec advisory database in a fresh git repository: one made-up advisory against every
/// version of `krate` below 99.
fn advisory_db(dir: &Path, krate: &str) -> PathBuf {
    let db = dir.join("advisory-db");
    let crate_dir = db.join("crates").join(krate);
    std::fs::create_dir_all(&crate_dir).unwrap();
    std::fs::write(
        crate_dir.join(format!("{ADVISORY}.md")),
        format!(
            "```toml\n[advisory]\nid = \"{ADVISORY}\"\npackage = \"{krate}\"\ndate = \"2026-01-01\"\nurl = \"https://example.invalid/{ADVISORY}\"\ncategories = [\"memory-corruption\"]\nkeywords = []\n\n[versions]\npatched = [\">= 99.0.0\"]\n```\n\n# A made-up advisory for ruchy-image's tests\n\nNothing is wrong with {krate}; the test needs an advisory to find.\n"
        ),
    )
    .unwrap();
    let git = |args: &[&str]| {
        let mut all = vec!["-C", db.to_str().unwrap()];
        all.extend(args);
        tool("git", &all).ok();
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.invalid",
        "commit",
        "-q",
        "-m",
        "a made-up advisory",
    ]);
    db
}

/// `cargo audit bin` of `binary` with the database at `db`, offline: the advisories' ids it
/// reports. A binary without the list is audited from the crate paths in its panic messages
/// (cargo-audit's fallback); where it finds none, it says so and exits 2: nothing reported.
fn cargo_audit(db: &Path, binary: &Path) -> Vec<String> {
    let run = tool(
        "cargo",
        &[
            "audit",
            "--no-fetch",
            "--db",
            db.to_str().unwrap(),
            "--json",
            "bin",
            binary.to_str().unwrap(),
        ],
    );
    if run.code == Some(2) && run.stderr.contains("No dependency information found") {
        return Vec::new();
    }
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("cargo audit bin printed no report ({e}): {run:?}"));
    report["vulnerabilities"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{report:#}"))
        .iter()
        .map(|v| {
            format!(
                "{} {}@{}",
                v["advisory"]["id"].as_str().unwrap(),
                v["package"]["name"].as_str().unwrap(),
                v["package"]["version"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_cargo_projects_crates_are_read_from_the_image_by_rust_audit_info_and_cargo_audit() {
    let builder = builder_image();
    let app = fixture("serde-app");
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let docker = ["-O", "aggressive", "--builder", "docker", "--builder-image"];
    let mut args = docker.to_vec();
    args.push(&builder);
    let (record, binary) = build(&app, "serde-app", &args, out.path(), "embedded");

    // cargo-auditable's reader finds the list, and it is cargo's graph for the binary.
    let list = audit_info(&binary).expect("the binary carries its crates");
    assert_eq!(root(&list), ("serde-app".into(), "1.2.3".into()));
    let listed = packages(&list);
    for (name, kind) in [("serde", ""), ("serde_json", ""), ("serde_derive", "build")] {
        let version = locked_version(&lock, name);
        assert!(
            listed.contains(&(name.into(), version, "crates.io".into(), kind.into())),
            "{name} {kind} not in {listed:?}"
        );
    }
    for (name, version, source, _) in &listed {
        if source != "local" {
            assert_eq!(&locked_version(&lock, name), version, "{name}");
        }
    }
    // The record says what is in it; our reader agrees with cargo-auditable's.
    let build_only = listed.iter().filter(|p| p.3 == "build").count();
    assert_eq!(
        record["embedded_deps"]["crates"],
        listed.len() - 1,
        "{record:#}"
    );
    assert_eq!(record["embedded_deps"]["build_only"], build_only);
    let ours = ruchy_image::pipeline::auditable::read(&std::fs::read(&binary).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(serde_json::to_value(ours).unwrap(), list);

    // cargo audit reads it too: the made-up advisory against serde_json is found in it.
    let db = advisory_db(out.path(), "serde_json");
    let serde_json = locked_version(&lock, "serde_json");
    assert_eq!(
        cargo_audit(&db, &binary),
        [format!("{ADVISORY} serde_json@{serde_json}")]
    );

    // Without the list, neither finds anything; the record says none is there.
    args.push("--no-embed-deps");
    let (record, bare) = build(&app, "serde-app", &args, out.path(), "bare");
    assert!(record.get("embedded_deps").is_none(), "{record:#}");
    assert_eq!(audit_info(&bare), None);
    assert_eq!(cargo_audit(&db, &bare), Vec::<String>::new());
    let (with, without) = (
        std::fs::metadata(&binary).unwrap().len(),
        std::fs::metadata(&bare).unwrap().len(),
    );
    assert!(with > without && with - without < 1024, "{with} {without}");
}

#[test]
fn an_arm64_ruchy_programs_binary_carries_its_list() {
    let builder = builder_image();
    let out = tempfile::tempdir().unwrap();
    let (record, binary) = build(
        &example("fibonacci.ruchy"),
        "fibonacci",
        &[
            "-O",
            "size",
            "--platform",
            "linux/arm64",
            "--builder",
            "docker",
            "--builder-image",
            &builder,
        ],
        out.path(),
        "arm64",
    );
    assert_eq!(record["image"]["architecture"], "arm64");
    assert!(tool("file", &["-b", binary.to_str().unwrap()])
        .ok()
        .stdout
        .contains("aarch64"));
    let list = audit_info(&binary).expect("the binary carries its list");
    // A program of std alone: the list is the program.
    assert_eq!(root(&list), ("fibonacci".into(), "0.1.0".into()));
    assert_eq!(packages(&list).len(), 1, "{list:#}");
    assert_eq!(record["embedded_deps"]["crates"], 0);
}

#[test]
fn a_single_files_crates_with_the_local_builder_and_a_prebuilt_binarys_sbom() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("digits.rs");
    std::fs::write(
        &file,
        "---\n[dependencies]\nitoa = \"1\"\n---\nfn main() {\n    println!(\"{}\", itoa::Buffer::new().format(42u8));\n}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let local = ["-O", "balanced", "--builder", "local"];
    let (record, binary) = build(&file, "digits", &local, &out, "local");
    assert_eq!(record["builder"], "local");
    let list = audit_info(&binary).expect("the binary carries its crates");
    assert_eq!(root(&list).0, "digits");
    let listed = packages(&list);
    assert!(
        listed.iter().any(|(name, _, source, kind)| name == "itoa"
            && source == "crates.io"
            && kind.is_empty()),
        "{listed:?}"
    );

    // A prebuilt binary is packaged as it is, and the list it carries makes its SBOM.
    let sbom = out.join("prebuilt.cdx.json");
    let (prebuilt, packaged) = build(
        &binary,
        "local",
        &["--sbom", sbom.to_str().unwrap()],
        &out,
        "prebuilt",
    );
    assert_eq!(prebuilt["builder"], "prebuilt");
    assert_eq!(
        std::fs::read(&packaged).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    assert_eq!(prebuilt["embedded_deps"], record["embedded_deps"]);
    assert_valid_cyclonedx_1_5(&sbom);
    let bom: Value = serde_json::from_str(&std::fs::read_to_string(&sbom).unwrap()).unwrap();
    let itoa = listed.iter().find(|p| p.0 == "itoa").unwrap();
    assert_eq!(
        bom["components"][0]["purl"],
        format!("pkg:cargo/itoa@{}", itoa.1),
        "{bom:#}"
    );
    assert_eq!(bom["metadata"]["component"]["name"], "digits");
    assert_eq!(prebuilt["sbom"]["components"], listed.len() - 1);

    // The project's settings leave it out as the flag does, and the record says where from.
    std::fs::write(
        dir.path().join("ruchy-image.toml"),
        "no-embed-deps = true\n",
    )
    .unwrap();
    let (record, bare) = build(&file, "digits", &local, &out, "bare");
    assert!(record.get("embedded_deps").is_none(), "{record:#}");
    assert_eq!(record["settings"]["no-embed-deps"], "ruchy-image.toml:1");
    assert_eq!(audit_info(&bare), None);
}

#[test]
fn a_changed_lock_is_a_new_list_in_the_docker_builders_binary() {
    let builder = builder_image();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("lockdemo");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"lockdemo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"1\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() {\n    println!(\"{}\", itoa::Buffer::new().format(7u8));\n}\n",
    )
    .unwrap();
    let canonical = std::fs::canonicalize(&project).unwrap();
    let _volumes = guards::Volumes(format!(
        "project target for {}:{}",
        ruchy_image::adapters::cleanup::host(),
        canonical.display()
    ));
    let manifest = project.join("Cargo.toml");
    let cargo = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--manifest-path", manifest.to_str().unwrap()]);
        tool("cargo", &all).ok();
    };
    let itoa = |binary: &Path| {
        let list = audit_info(binary).expect("the binary carries its crates");
        packages(&list)
            .into_iter()
            .find(|p| p.0 == "itoa")
            .map(|p| p.1)
            .unwrap()
    };
    let docker = [
        "-O",
        "balanced",
        "--builder",
        "docker",
        "--builder-image",
        &builder,
    ];
    cargo(&["update", "-p", "itoa", "--precise", "1.0.10"]);
    let (_, first) = build(&project, "lockdemo", &docker, dir.path(), "first");
    assert_eq!(itoa(&first), "1.0.10");
    // Only the lock changes: the build is not the one kept, and its list is the new lock's.
    cargo(&["update", "-p", "itoa", "--precise", "1.0.11"]);
    let (_, second) = build(&project, "lockdemo", &docker, dir.path(), "second");
    assert_eq!(itoa(&second), "1.0.11");
}

#[test]
fn the_list_is_the_one_cargo_auditable_writes_for_the_same_project() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("serde-app");
    std::fs::create_dir_all(app.join("src")).unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        std::fs::copy(fixture("serde-app").join(file), app.join(file)).unwrap();
    }
    // cargo-auditable's own build of the project, for the host.
    tool(
        "cargo",
        &[
            "auditable",
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            app.join("Cargo.toml").to_str().unwrap(),
            "--target-dir",
            app.join("target").to_str().unwrap(),
        ],
    )
    .ok();
    let theirs = audit_info(&app.join("target/release/serde-app")).expect("cargo auditable's list");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let local = ["-O", "balanced", "--builder", "local"];
    let (_, ours) = build(&app, "serde-app", &local, &out, "ours");
    assert_eq!(audit_info(&ours).expect("our list"), theirs);
}
