//! The crate list as an SPDX 2.3 JSON document: one package per crate (the binary's own
//! first), with its `Cargo.lock` SHA256, declared license and purl (`externalRefs`,
//! PACKAGE-MANAGER); the document DESCRIBES the binary's package, a crate DEPENDS_ON what it
//! links, and what only a build uses is a BUILD_DEPENDENCY_OF the crate that uses it (and
//! says so in its `comment`).

use serde_json::{json, Value};

use super::{purl, Extras, Properties};
use crate::pipeline::auditable::{DepInfo, DepKind, DepPackage};

/// What a build-only package's `comment` says.
pub const BUILD_ONLY: &str = "used only by the build (not linked into the binary)";

/// The SPDX document of `info`, whose binary's own package is `root`.
pub(super) fn document(
    info: &DepInfo,
    root: &DepPackage,
    extras: &Extras,
    properties: &Properties<'_>,
    epoch: u64,
) -> Value {
    let mut others: Vec<&DepPackage> = info.packages.iter().filter(|p| !p.root).collect();
    others.sort_by_key(|p| purl(p));
    let mut packages = vec![package(root, extras)];
    packages.extend(others.iter().map(|p| package(p, extras)));
    let mut relationships = vec![relationship(
        "SPDXRef-DOCUMENT",
        "DESCRIBES",
        &spdx_id(root),
    )];
    let mut edges = Vec::new();
    for from in &info.packages {
        for to in from
            .dependencies
            .iter()
            .filter_map(|&i| info.packages.get(i))
        {
            let (from_id, to_id) = (spdx_id(from), spdx_id(to));
            edges.push(match to.kind {
                DepKind::Build => relationship(&to_id, "BUILD_DEPENDENCY_OF", &from_id),
                DepKind::Runtime => relationship(&from_id, "DEPENDS_ON", &to_id),
            });
        }
    }
    edges.sort_by_key(|r| r.to_string());
    edges.dedup();
    relationships.extend(edges);
    let name = format!("{}-{}", root.name, root.version);
    let comment: Vec<String> = properties
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "creationInfo": {
            "created": super::created(epoch),
            "creators": [format!("Tool: ruchy-image-{}", env!("CARGO_PKG_VERSION"))],
            "comment": comment.join("; "),
        },
        "packages": packages,
        "relationships": relationships,
    });
    // A namespace from the content, so the same list gives the same document.
    document["documentNamespace"] = Value::String(format!(
        "{}/spdx/{name}-{}",
        env!("CARGO_PKG_REPOSITORY"),
        super::content_uuid(&document)
    ));
    document
}

/// A crate's SPDX identifier: `SPDXRef-Package-NAME-VERSION`, with what SPDX ids may not hold
/// (letters, digits, `.` and `-` only) as `-`.
fn spdx_id(package: &DepPackage) -> String {
    let clean: String = format!("{}-{}", package.name, package.version)
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

/// A crate as a package.
fn package(one: &DepPackage, extras: &Extras) -> Value {
    // Cargo's old `MIT/Apache-2.0` is `MIT OR Apache-2.0` in SPDX.
    let license = extras
        .license(one)
        .map(|l| l.split('/').map(str::trim).collect::<Vec<_>>().join(" OR "));
    let checksum = extras.checksum(one);
    let download = match (checksum, one.source.as_str()) {
        (Some(_), "crates.io") => format!(
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
        "primaryPackagePurpose": if one.root { "APPLICATION" } else { "LIBRARY" },
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(one),
        }],
    });
    if let Some(sum) = checksum {
        package["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sum }]);
    }
    if one.kind == DepKind::Build {
        package["comment"] = json!(BUILD_ONLY);
    }
    package
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, kind: DepKind, dependencies: Vec<usize>, root: bool) -> DepPackage {
        DepPackage {
            name: name.into(),
            version: "1.0.0+x".into(),
            source: if root { "local" } else { "crates.io" }.into(),
            kind,
            dependencies,
            root,
        }
    }

    #[test]
    fn packages_checksums_licenses_purls_and_relationships() {
        let info = DepInfo {
            packages: vec![
                one("app", DepKind::Runtime, vec![1, 2], true),
                one("serde", DepKind::Runtime, vec![], false),
                one("serde_derive", DepKind::Build, vec![], false),
            ],
            format: 1,
        };
        let key = |name: &str| (name.to_string(), "1.0.0+x".to_string());
        let extras = Extras {
            licenses: [(key("serde"), "MIT/Apache-2.0".to_string())].into(),
            checksums: [(key("serde"), "ab".repeat(32))].into(),
        };
        let properties = [(
            "ruchy-image:target",
            "x86_64-unknown-linux-musl".to_string(),
        )];
        let doc = document(&info, &info.packages[0], &extras, &properties, 0);
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
        assert_eq!(doc["packages"][2]["comment"], BUILD_ONLY);
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
                "SPDXRef-Package-serde-derive-1.0.0-x BUILD_DEPENDENCY_OF SPDXRef-Package-app-1.0.0-x",
                "SPDXRef-Package-app-1.0.0-x DEPENDS_ON SPDXRef-Package-serde-1.0.0-x",
            ]
        );
        let again = document(&info, &info.packages[0], &extras, &properties, 0);
        assert_eq!(again, doc, "the same list, the same document");
    }
}
