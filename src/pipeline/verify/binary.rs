//! The `embedded-crates` check: the binary taken out of the image (its entrypoint, from the
//! topmost layer that has it), the list of crates it carries (cargo-auditable's `.dep-v0`,
//! read by [`crate::pipeline::auditable`]) against the SBOM's crates the binary links.

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::Value;

use super::store::Store;
use super::{Line, Status};
use crate::pipeline::auditable::{self, DepKind};
use crate::pipeline::sbom::SbomFormat;

/// The binary at the image's entrypoint, from its layers (the topmost that holds it).
async fn binary(
    store: &Store,
    manifest: &Value,
    config: &Value,
) -> Result<(String, Vec<u8>), String> {
    let path = config["config"]["Entrypoint"][0]
        .as_str()
        .ok_or("the image has no entrypoint")?
        .to_string();
    let wanted = path.trim_start_matches('/');
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers.iter().rev() {
        let digest = layer["digest"].as_str().unwrap_or_default();
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        let blob = store.get(digest).await?;
        let reader: Box<dyn Read + '_> = match media_type {
            t if t.ends_with("+zstd") => {
                Box::new(zstd::stream::read::Decoder::new(&blob[..]).map_err(|e| e.to_string())?)
            }
            t if t.ends_with("gzip") => Box::new(flate2::read::MultiGzDecoder::new(&blob[..])),
            _ => Box::new(&blob[..]),
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            let name = entry
                .path()
                .map_err(|e| e.to_string())?
                .display()
                .to_string();
            if name.trim_start_matches("./") == wanted {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
                return Ok((path, bytes));
            }
        }
    }
    Err(format!("no layer holds the entrypoint {path}"))
}

/// The crates an SBOM says the binary links, as `name@version`.
fn sbom_runtime(artifact_type: &str, bytes: &[u8]) -> Option<BTreeSet<String>> {
    let document: Value = serde_json::from_slice(bytes).ok()?;
    let spdx = artifact_type == SbomFormat::Spdx.media_type();
    let (list, linked): (&str, fn(&Value) -> bool) = match spdx {
        true => ("packages", |p| {
            p["primaryPackagePurpose"] != "APPLICATION"
                && p["comment"] != crate::pipeline::sbom::SPDX_BUILD_ONLY
        }),
        false => ("components", |c| c["scope"] == "required"),
    };
    let version = if spdx { "versionInfo" } else { "version" };
    Some(
        document[list]
            .as_array()?
            .iter()
            .filter(|p| linked(p))
            .map(|p| {
                format!(
                    "{}@{}",
                    p["name"].as_str().unwrap_or("?"),
                    p[version].as_str().unwrap_or("?")
                )
            })
            .collect(),
    )
}

/// The check: the binary's embedded list of linked crates is the SBOM's (`sbom`: its
/// artifact type and bytes, when the image has one).
pub(super) async fn embedded_crates(
    store: &Store,
    manifest: &Value,
    config: &Value,
    sbom: Option<(&str, &[u8])>,
) -> Line {
    let name = "embedded-crates";
    let (path, bytes) = match binary(store, manifest, config).await {
        Ok(found) => found,
        Err(e) => return (name, Status::Fail, format!("the binary: {e}")),
    };
    let info = match auditable::read(&bytes) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return (
                name,
                Status::Skip,
                format!(
                "{path} carries no list of its crates (built with --no-embed-deps, or elsewhere)"
            ),
            )
        }
        Err(e) => return (name, Status::Fail, format!("{path}: {e}")),
    };
    let embedded: BTreeSet<String> = info
        .packages
        .iter()
        .filter(|p| !p.root && p.kind == DepKind::Runtime)
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    let Some(listed) = sbom.and_then(|(kind, bytes)| sbom_runtime(kind, bytes)) else {
        return (
            name,
            Status::Fail,
            "no SBOM to compare the binary's crates with".into(),
        );
    };
    if embedded == listed {
        return (
            name,
            Status::Pass,
            format!(
                "the {} crates {path} carries are the SBOM's",
                embedded.len()
            ),
        );
    }
    let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
        let list: Vec<&String> = a.difference(b).collect();
        match list.is_empty() {
            true => "none".to_string(),
            false => list
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    };
    (
        name,
        Status::Fail,
        format!(
            "{path} carries crates the SBOM does not list ({}) or lacks ones it lists ({})",
            only(&embedded, &listed),
            only(&listed, &embedded)
        ),
    )
}
