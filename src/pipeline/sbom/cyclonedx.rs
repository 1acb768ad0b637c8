//! The crate list as a CycloneDX 1.5 document: the crates the binary links with scope
//! `required`, the ones only its build uses `excluded`; the application and our properties
//! in `metadata`; a serial number from the content.

use serde_json::{json, Value};

use super::{purl, Extras, Properties};
use crate::pipeline::auditable::{DepInfo, DepKind, DepPackage};

/// The CycloneDX document of `info`, whose binary's own package is `root`.
pub(super) fn document(
    info: &DepInfo,
    root: &DepPackage,
    extras: &Extras,
    properties: &Properties<'_>,
    epoch: u64,
) -> Value {
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": metadata(root, extras, properties, epoch),
        "components": components(info, extras),
        "dependencies": dependencies(info),
    });
    bom["serialNumber"] = Value::String(format!("urn:uuid:{}", super::content_uuid(&bom)));
    bom
}

/// The components, sorted: the crates the binary links (`required`) and the ones only its
/// build uses (`excluded`), with their licenses and `Cargo.lock` checksums.
fn components(info: &DepInfo, extras: &Extras) -> Vec<Value> {
    let mut components = Vec::new();
    for package in info.packages.iter().filter(|p| !p.root) {
        let mut component = json!({
            "type": "library",
            "bom-ref": purl(package),
            "name": package.name,
            "version": package.version,
            "purl": purl(package),
            "scope": match package.kind {
                DepKind::Build => "excluded",
                DepKind::Runtime => "required",
            },
        });
        if let Some(license) = extras.license(package) {
            component["licenses"] = json!([{ "expression": license }]);
        }
        if let Some(sum) = extras.checksum(package) {
            component["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
        }
        components.push(component);
    }
    components.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    components
}

/// The dependency graph (dev dependencies left out), sorted by ref.
fn dependencies(info: &DepInfo) -> Vec<Value> {
    let mut dependencies: Vec<Value> = info
        .packages
        .iter()
        .map(|package| {
            let mut on: Vec<String> = package
                .dependencies
                .iter()
                .filter_map(|&i| info.packages.get(i))
                .map(purl)
                .collect();
            on.sort();
            on.dedup();
            json!({ "ref": purl(package), "dependsOn": on })
        })
        .collect();
    dependencies.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    dependencies
}

/// The `metadata`: its time (`epoch`), the tool, the application (`root`) and our
/// `properties`.
fn metadata(root: &DepPackage, extras: &Extras, properties: &Properties<'_>, epoch: u64) -> Value {
    let mut application = json!({
        "type": "application",
        "bom-ref": purl(root),
        "name": root.name,
        "version": root.version,
        "purl": purl(root),
    });
    if let Some(license) = extras.license(root) {
        application["licenses"] = json!([{ "expression": license }]);
    }
    let properties: Vec<Value> = properties
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    json!({
        "timestamp": super::created(epoch),
        "tools": { "components": [{
            "type": "application",
            "name": "ruchy-image",
            "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": application,
        "properties": properties,
    })
}
