//! Outputs add to what is there and destroy nothing: an OCI layout is a store of many images.

mod common;

use common::*;

fn index(layout: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn tags(layout: &std::path::Path) -> Vec<String> {
    let mut tags: Vec<String> = index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        // Images are tagged; the SBOM referrers beside them are not.
        .filter(|m| m.get("artifactType").is_none())
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    tags
}

#[test]
fn an_existing_layout_keeps_its_other_images_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("store");
    let fib = example("fibonacci.rs");
    let build = |preset: &str, epoch: &str| {
        ruchy_image_with(
            [
                "build",
                fib.to_str().unwrap(),
                "-O",
                preset,
                "--oci-layout",
                layout.to_str().unwrap(),
                "--json",
                "-",
            ],
            |cmd| {
                cmd.env("SOURCE_DATE_EPOCH", epoch);
            },
        )
        .ok()
        .metrics()
    };
    let none = build("none", "0");
    std::fs::write(layout.join("README"), "ours, not the tool's").unwrap();
    let aggressive = build("aggressive", "0");
    assert_eq!(tags(&layout), ["aggressive", "none"]);
    assert_eq!(
        std::fs::read_to_string(layout.join("README")).unwrap(),
        "ours, not the tool's"
    );
    // Both images are whole, as a third-party reader sees them.
    for (tag, metrics) in [("none", &none), ("aggressive", &aggressive)] {
        let (summary, _) = skopeo_inspect(&layout, tag);
        assert_eq!(summary["Digest"], metrics["image"]["digest"], "{tag}");
    }
    umoci_unpack(&layout, "none");

    // The same tag again replaces its entry and keeps the other.
    let again = build("aggressive", "86400");
    assert_ne!(again["image"]["digest"], aggressive["image"]["digest"]);
    assert_eq!(tags(&layout), ["aggressive", "none"]);
    let (summary, _) = skopeo_inspect(&layout, "aggressive");
    assert_eq!(summary["Digest"], again["image"]["digest"]);
    let leftovers: Vec<String> = entries(&layout)
        .into_iter()
        .filter(|name| name.starts_with(".ruchy-image"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
