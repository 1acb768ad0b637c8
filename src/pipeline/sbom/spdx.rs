//! The graph as an SPDX 2.3 JSON document: one package per crate (the binary's own first),
//! with its `Cargo.lock` SHA256, declared license and purl (`externalRefs`, PACKAGE-MANAGER);
//! the document DESCRIBES the binary's package, a crate DEPENDS_ON what it links, and what
//! only a build uses is a BUILD_DEPENDENCY_OF the crate that uses it.

use serde_json::{json, Value};

use super::{Crate, Graph};

/// The SPDX document of `graph`.
pub(super) fn document(graph: &Graph) -> Value {
    let root = spdx_id(&graph.root);
    let mut packages = vec![package(&graph.root, true)];
    packages.extend(graph.crates.iter().map(|c| package(c, false)));
    let id_of = |purl: &str| {
        std::iter::once(&graph.root)
            .chain(&graph.crates)
            .find(|c| c.purl() == purl)
            .map(spdx_id)
    };
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", &root)];
    for (from, on) in &graph.edges {
        let Some(from) = id_of(from) else { continue };
        for (to, build) in on {
            let Some(to) = id_of(to) else { continue };
            relationships.push(match build {
                true => relationship(&to, "BUILD_DEPENDENCY_OF", &from),
                false => relationship(&from, "DEPENDS_ON", &to),
            });
        }
    }
    let name = format!("{}-{}", graph.root.name, graph.root.version);
    let mut comment = format!("target: {}", graph.target);
    if let Some(ruchy) = &graph.ruchy {
        comment.push_str(&format!("; transpiled by {ruchy}"));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "creationInfo": {
            "created": graph.created(),
            "creators": [format!("Tool: ruchy-image-{}", env!("CARGO_PKG_VERSION"))],
            "comment": comment,
        },
        "packages": packages,
        "relationships": relationships,
    });
    // A namespace from the content, so the same graph gives the same document.
    document["documentNamespace"] = Value::String(format!(
        "{}/spdx/{name}-{}",
        env!("CARGO_PKG_REPOSITORY"),
        super::content_uuid(&document)
    ));
    document
}

/// A crate's SPDX identifier: `SPDXRef-Package-NAME-VERSION`, with what SPDX ids may not hold
/// (letters, digits, `.` and `-` only) as `-`.
fn spdx_id(one: &Crate) -> String {
    let clean: String = format!("{}-{}", one.name, one.version)
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                true => c,
                false => '-',
            },
        )
        .collect();
    format!("SPDXRef-Package-{clean}")
}

/// A crate as a package; `root` is the binary's own.
fn package(one: &Crate, root: bool) -> Value {
    // Cargo's old `MIT/Apache-2.0` is `MIT OR Apache-2.0` in SPDX.
    let license = one
        .license
        .as_deref()
        .map(|l| l.split('/').map(str::trim).collect::<Vec<_>>().join(" OR "));
    let download = match (&one.checksum, root) {
        (Some(_), false) => format!(
            "https://crates.io/api/v1/crates/{}/{}/download",
            one.name, one.version
        ),
        _ => "NOASSERTION".to_string(),
    };
    let mut package = json!({
        "SPDXID": spdx_id(one),
        "name": one.name,
        "versionInfo": one.version,
        "downloadLocation": download,
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": license.unwrap_or_else(|| "NOASSERTION".into()),
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": if root { "APPLICATION" } else { "LIBRARY" },
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": one.purl(),
        }],
    });
    if let Some(sum) = &one.checksum {
        package["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sum }]);
    }
    package
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, build_only: bool) -> Crate {
        Crate {
            name: name.into(),
            version: "1.0.0+x".into(),
            license: Some("MIT/Apache-2.0".into()),
            checksum: Some("ab".repeat(32)),
            build_only,
        }
    }

    #[test]
    fn packages_checksums_licenses_purls_and_relationships() {
        let graph = Graph {
            root: Crate {
                checksum: None,
                ..one("app", false)
            },
            crates: vec![one("serde", false), one("serde_derive", true)],
            edges: vec![(
                "pkg:cargo/app@1.0.0+x".into(),
                vec![
                    ("pkg:cargo/serde@1.0.0+x".into(), false),
                    ("pkg:cargo/serde_derive@1.0.0+x".into(), true),
                ],
            )],
            target: "x86_64-unknown-linux-musl".into(),
            ruchy: None,
            epoch: 0,
        };
        let doc = document(&graph);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let serde = &doc["packages"][1];
        assert_eq!(serde["SPDXID"], "SPDXRef-Package-serde-1.0.0-x");
        assert_eq!(serde["licenseDeclared"], "MIT OR Apache-2.0");
        assert_eq!(serde["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            serde["externalRefs"][0]["referenceLocator"],
            "pkg:cargo/serde@1.0.0+x"
        );
        assert_eq!(doc["packages"][0]["downloadLocation"], "NOASSERTION");
        let kinds: Vec<String> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["spdxElementId"].as_str().unwrap(),
                    r["relationshipType"].as_str().unwrap(),
                    r["relatedSpdxElement"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "SPDXRef-DOCUMENT DESCRIBES SPDXRef-Package-app-1.0.0-x",
                "SPDXRef-Package-app-1.0.0-x DEPENDS_ON SPDXRef-Package-serde-1.0.0-x",
                "SPDXRef-Package-serde_derive-1.0.0-x BUILD_DEPENDENCY_OF SPDXRef-Package-app-1.0.0-x"
                    .replace("serde_derive", "serde-derive")
                    .as_str(),
            ]
        );
        assert_eq!(document(&graph), doc, "the same graph, the same document");
    }
}
