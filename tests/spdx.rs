//! `--sbom-format spdx`: an SPDX 2.3 JSON document of the binary's crates, validated by
//! spdx-tools (PyPI's `pyspdxtools`), with the same crates, checksums and licenses as the
//! CycloneDX one, and carried by the image's SBOM referrer with SPDX's media type.

mod common;

use common::*;

#[test]
fn the_spdx_sbom_validates_and_lists_what_the_cyclonedx_one_does() {
    let app = fixture("serde-app");
    let dir = tempfile::tempdir().unwrap();
    let build = |format: &str, layout: bool| {
        let file = dir.path().join(format!("app.{format}.json"));
        let layout_dir = dir.path().join(format!("layout-{format}"));
        let mut args = vec![
            "build".to_string(),
            app.display().to_string(),
            "-O".into(),
            "size".into(),
            "--sbom-format".into(),
            format.into(),
            "--sbom".into(),
            file.display().to_string(),
            "--json".into(),
            "-".into(),
        ];
        if layout {
            args.extend(["--oci-layout".into(), layout_dir.display().to_string()]);
        }
        let record = ruchy_image(&args).ok().metrics();
        let text = std::fs::read_to_string(&file).unwrap();
        (
            record,
            file,
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            layout_dir,
        )
    };
    let (record, file, spdx, layout) = build("spdx", true);
    let (_, _, cdx, _) = build("cyclonedx", false);

    let validated = tool("pyspdxtools", &["-i", file.to_str().unwrap()]);
    assert_eq!(
        validated.code,
        Some(0),
        "spdx-tools refuses it (`bash .ci/setup` installs it):\n{}\n{}",
        validated.stdout,
        validated.stderr
    );
    assert_eq!(record["sbom"]["format"], "spdx");
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");

    // The same crates, checksums and licenses as CycloneDX's, plus the binary's own package.
    let packages = spdx["packages"].as_array().unwrap();
    let components = cdx["components"].as_array().unwrap();
    assert_eq!(packages.len(), components.len() + 1);
    assert_eq!(record["sbom"]["components"], components.len());
    for component in components {
        let purl = component["purl"].as_str().unwrap();
        let package = packages
            .iter()
            .find(|p| p["externalRefs"][0]["referenceLocator"] == purl)
            .unwrap_or_else(|| panic!("{purl} is not in the SPDX document"));
        assert_eq!(
            package["externalRefs"][0]["referenceCategory"],
            "PACKAGE-MANAGER"
        );
        assert_eq!(
            package["checksums"][0]["checksumValue"], component["hashes"][0]["content"],
            "{purl}"
        );
        assert_eq!(
            package["licenseDeclared"].as_str().unwrap(),
            component["licenses"][0]["expression"]
                .as_str()
                .unwrap()
                .replace('/', " OR "),
            "{purl}"
        );
    }
    let relationships = spdx["relationships"].as_array().unwrap();
    let kind = |k: &str| {
        relationships
            .iter()
            .filter(|r| r["relationshipType"] == k)
            .count()
    };
    assert_eq!(kind("DESCRIBES"), 1);
    assert!(kind("DEPENDS_ON") > 0, "{relationships:?}");
    // serde_derive only builds (a proc-macro of serde's).
    assert!(relationships.iter().any(|r| {
        r["relationshipType"] == "BUILD_DEPENDENCY_OF"
            && r["spdxElementId"]
                .as_str()
                .unwrap()
                .starts_with("SPDXRef-Package-serde-derive")
    }));

    // The referrer carries SPDX.
    let image = record["image"]["digest"].as_str().unwrap();
    let found = ruchy_image::pipeline::oci::referrer::in_layout(&layout, image).unwrap();
    assert!(
        found
            .iter()
            .any(|f| f["artifactType"] == "application/spdx+json"),
        "{found:?}"
    );
    assert!(found
        .iter()
        .all(|f| f["artifactType"] != "application/vnd.cyclonedx+json"));
}
