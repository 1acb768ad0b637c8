//! The graph as a CycloneDX 1.5 document: the crates the binary links with scope
//! `required`, the ones only its build uses `excluded`; the application and our properties
//! (target, transpiler) in `metadata`; a serial number from the content.

use serde_json::{json, Value};

use super::{Crate, Graph};

/// The CycloneDX document of `graph`.
pub(super) fn document(graph: &Graph) -> Value {
    let components: Vec<Value> = graph.crates.iter().map(component).collect();
    let dependencies: Vec<Value> = graph
        .edges
        .iter()
        .map(|(from, on)| {
            let on: Vec<&String> = on.iter().map(|(purl, _)| purl).collect();
            json!({ "ref": from, "dependsOn": on })
        })
        .collect();
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": metadata(graph),
        "components": components,
        "dependencies": dependencies,
    });
    bom["serialNumber"] = Value::String(format!("urn:uuid:{}", super::content_uuid(&bom)));
    bom
}

/// One crate as a component, with its license and `Cargo.lock` checksum.
fn component(one: &Crate) -> Value {
    let mut component = json!({
        "type": "library",
        "bom-ref": one.purl(),
        "name": one.name,
        "version": one.version,
        "purl": one.purl(),
        "scope": if one.build_only { "excluded" } else { "required" },
    });
    if let Some(license) = &one.license {
        component["licenses"] = json!([{ "expression": license }]);
    }
    if let Some(sum) = &one.checksum {
        component["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
    }
    component
}

/// The SBOM's `metadata`: its time, the tool, the application (the root) and our
/// properties (the target, and the transpiler when one made the Rust).
fn metadata(graph: &Graph) -> Value {
    let root = &graph.root;
    let mut application = json!({
        "type": "application",
        "bom-ref": root.purl(),
        "name": root.name,
        "version": root.version,
        "purl": root.purl(),
    });
    if let Some(license) = &root.license {
        application["licenses"] = json!([{ "expression": license }]);
    }
    let mut properties = vec![json!({ "name": "ruchy-image:target", "value": graph.target })];
    if let Some(ruchy) = &graph.ruchy {
        properties.push(json!({ "name": "ruchy-image:ruchy-version", "value": ruchy }));
    }
    json!({
        "timestamp": graph.created(),
        "tools": { "components": [{
            "type": "application",
            "name": "ruchy-image",
            "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": application,
        "properties": properties,
    })
}
