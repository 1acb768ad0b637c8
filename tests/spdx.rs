//! `--sbom-format spdx`: an SPDX 2.3 JSON document of the binary's crates, validated by
//! spdx-tools (PyPI's `pyspdxtools`), with the same crates, checksums and licenses as the
//! CycloneDX one, and carried by the image's SBOM referrer with SPDX's media type; `verify`
//! finds the binary's embedded crates are the ones it lists, and not another build's.

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

    // verify reads the SPDX referrer: the crates the binary carries are the ones it lists.
    let run = ruchy_image(["verify", &format!("oci:{}", layout.display())]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let embedded = run
        .stdout
        .lines()
        .find(|l| l.contains("embedded-crates"))
        .unwrap();
    assert!(embedded.starts_with('✓'), "{}", run.stdout);
    let linked = packages.len() - 1 - record["sbom"]["build_only"].as_u64().unwrap() as usize;
    assert!(
        embedded.contains(&format!("the {linked} crates")),
        "{embedded}"
    );

    // Another build's SBOM on this image: the binary's crates are not the ones it lists.
    let fib = dir.path().join("fib");
    ruchy_image([
        "build",
        &common::fib(),
        "-O",
        "size",
        "--no-sbom",
        "--oci-layout",
        fib.to_str().unwrap(),
    ])
    .ok();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fib.join("index.json")).unwrap()).unwrap();
    let fib_image = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let spdx_referrer = found
        .iter()
        .find(|f| f["artifactType"] == "application/spdx+json")
        .unwrap();
    let blob =
        |dir: &std::path::Path, digest: &str| dir.join("blobs").join(digest.replacen(':', "/", 1));
    let mut moved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(&layout, spdx_referrer["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let sbom_blob = moved["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::copy(blob(&layout, &sbom_blob), blob(&fib, &sbom_blob)).unwrap();
    moved["subject"]["digest"] = fib_image.clone().into();
    let moved = serde_json::to_vec(&moved).unwrap();
    let digest = ruchy_image::adapters::fsutil::sha256_digest(&moved);
    std::fs::write(blob(&fib, &digest), moved).unwrap();
    let run = ruchy_image(["verify", &format!("oci:{}", fib.display())]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let embedded = run
        .stdout
        .lines()
        .find(|l| l.contains("embedded-crates"))
        .unwrap();
    assert!(
        embedded.starts_with('✗') && embedded.contains("serde@"),
        "{}",
        run.stdout
    );
}
