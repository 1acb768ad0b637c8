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
