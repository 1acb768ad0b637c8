//! `--sbom FILE`: a CycloneDX 1.5 SBOM of the crates in the binary, from cargo's resolved
//! graph and `Cargo.lock`, checked against the fixture's own lock file.

mod common;

use common::*;

/// `Cargo.lock`'s (name, version, checksum) of registry packages.
fn locked(lock: &str) -> Vec<(String, String, String)> {
    lock.split("[[package]]")
        .filter_map(|block| {
            let field = |key: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(&format!("{key} = "))
                        .map(|v| v.trim_matches('"').to_string())
                })
            };
            Some((field("name")?, field("version")?, field("checksum")?))
        })
        .collect()
}

#[test]
fn the_sbom_lists_the_locked_crates_and_which_only_the_build_uses() {
    let app = fixture("serde-app");
    let dir = tempfile::tempdir().unwrap();
    let sbom = |name: &str| {
        let file = dir.path().join(name);
        let record = ruchy_image([
            "build",
            app.to_str().unwrap(),
            "-O",
            "aggressive",
            "--sbom",
            file.to_str().unwrap(),
            "--json",
            "-",
        ])
        .ok()
        .metrics();
        let text = std::fs::read_to_string(&file).unwrap();
        (record, text)
    };
    let (record, text) = sbom("app.cdx.json");
    let bom: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(bom["serialNumber"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    assert_eq!(
        bom["metadata"]["component"]["purl"],
        "pkg:cargo/serde-app@1.2.3"
    );
    assert_eq!(bom["metadata"]["timestamp"], "1970-01-01T00:00:00Z");

    let lock = locked(&std::fs::read_to_string(app.join("Cargo.lock")).unwrap());
    let components = bom["components"].as_array().unwrap();
    assert_eq!(record["sbom"]["components"], components.len());
    for component in components {
        let (name, version) = (
            component["name"].as_str().unwrap(),
            component["version"].as_str().unwrap(),
        );
        assert_eq!(component["purl"], format!("pkg:cargo/{name}@{version}"));
        let (_, _, checksum) = lock
            .iter()
            .find(|(n, v, _)| n == name && v == version)
            .unwrap_or_else(|| panic!("{name} {version} is not in Cargo.lock"));
        assert_eq!(
            component["hashes"][0]["content"],
            checksum.as_str(),
            "{name}"
        );
        assert_eq!(component["hashes"][0]["alg"], "SHA-256");
        assert!(component["licenses"][0]["expression"].is_string(), "{name}");
    }
    let scope = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["scope"].as_str().unwrap().to_string())
    };
    // serde and serde_json are linked; the derive macro and its parser only build.
    assert_eq!(scope("serde").as_deref(), Some("required"));
    assert_eq!(scope("serde_json").as_deref(), Some("required"));
    assert_eq!(scope("serde_derive").as_deref(), Some("excluded"));
    assert_eq!(scope("syn").as_deref(), Some("excluded"));
    assert_eq!(
        record["sbom"]["build_only"].as_u64().unwrap(),
        components
            .iter()
            .filter(|c| c["scope"] == "excluded")
            .count() as u64
    );
    let app_deps = bom["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ref"] == "pkg:cargo/serde-app@1.2.3")
        .unwrap();
    assert!(app_deps["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d.as_str().unwrap().starts_with("pkg:cargo/serde@")));

    // The same input, the same document.
    let (_, again) = sbom("again.cdx.json");
    assert_eq!(again, text);
}

/// `name version` of every package `cargo tree -e normal` lists for the project at `dir`,
/// its root left out.
fn cargo_tree(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let tree = tool(
        "cargo",
        &[
            "tree",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--manifest-path",
            dir.join("Cargo.toml").to_str().unwrap(),
        ],
    )
    .ok();
    let mut lines = tree.stdout.lines();
    lines.next(); // the root
    lines
        .map(|l| {
            let mut words = l.split_whitespace();
            let (name, version) = (words.next().unwrap(), words.next().unwrap());
            format!("{name} {}", version.trim_start_matches('v'))
        })
        .collect()
}

#[test]
fn every_sbom_we_write_is_valid_cyclonedx_1_5_and_lists_what_cargo_tree_does() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        ("rust-file", example("fibonacci.rs")),
        ("cargo-project", fixture("serde-app")),
        ("ruchy-file", example("fibonacci.ruchy")),
    ];
    for (name, source) in &sources {
        let file = dir.path().join(format!("{name}.cdx.json"));
        ruchy_image([
            "build",
            source.to_str().unwrap(),
            "-O",
            "aggressive",
            "--sbom",
            file.to_str().unwrap(),
        ])
        .ok();
        assert_valid_cyclonedx_1_5(&file);
        let bom: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let listed: std::collections::BTreeSet<String> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect();
        if *name == "cargo-project" {
            // Linked crates and the proc-macros they build with, as cargo resolves them.
            let tree = cargo_tree(source);
            assert!(tree.len() >= 10, "{tree:?}");
            assert_eq!(listed, tree);
        } else {
            // A lone file's program uses the standard library only.
            assert!(listed.is_empty(), "{name}: {listed:?}");
        }
    }

    // The validator is no rubber stamp: a component without its name is refused.
    let broken = dir.path().join("broken.cdx.json");
    let mut bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("cargo-project.cdx.json")).unwrap())
            .unwrap();
    bom["components"][0].as_object_mut().unwrap().remove("name");
    std::fs::write(&broken, serde_json::to_vec(&bom).unwrap()).unwrap();
    let refused = std::panic::catch_unwind(|| assert_valid_cyclonedx_1_5(&broken));
    assert!(refused.is_err(), "a component without a name passed");
}
