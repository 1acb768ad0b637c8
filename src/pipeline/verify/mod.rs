//! `verify`: an image's referrers checked against the image. For each image (each platform
//! of an index): its SBOM and its provenance are there and name this manifest, the
//! provenance's signature is the key's, the flags it records are the image's labels, and the
//! crates embedded in the binary are the SBOM's. Each check is one line of the report.

mod store;

use serde::Serialize;
use serde_json::Value;

use crate::core::error::Result;
use crate::pipeline::attest::provenance;
use crate::pipeline::attest::{Verifier, ENVELOPE_MEDIA_TYPE};
use crate::pipeline::publish::RegistryOptions;
use crate::pipeline::sbom::SbomFormat;
use store::Store;
pub use store::Target;

/// What to verify, and with what.
#[derive(Debug)]
pub struct Options {
    /// The image.
    pub target: Target,
    /// The public key the provenance must be signed with; without one, a signature is
    /// reported and not checked.
    pub key: Option<Verifier>,
    /// How registries are reached.
    pub registry: RegistryOptions,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It holds.
    Pass,
    /// It does not.
    Fail,
    /// It was not checked (said why): it fails nothing.
    Skip,
}

/// One check of one image.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The image's manifest digest.
    pub image: String,
    /// Its platform (`linux/amd64`).
    pub platform: String,
    /// `sbom`, `provenance`, `signature`, `flags` or `embedded-crates`.
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
}

/// Every check of every image under a reference.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The top manifest's digest (an image's or an index's).
    pub digest: String,
    /// Whether no check failed.
    pub verified: bool,
    /// The checks, image by image.
    pub checks: Vec<Check>,
}

/// A referrer read back: its artifact type, the subject its manifest names, its blob.
struct Found {
    artifact_type: String,
    subject: String,
    blob: std::result::Result<Vec<u8>, String>,
}

/// Checks the image at `options.target`. Bad input (no such layout, tag or reference) is an
/// error; everything found wrong with the image is a failed check in the report.
pub async fn verify(options: &Options) -> Result<Report> {
    let (store, root) = Store::open(&options.target, &options.registry).await?;
    let top = json(store.get(&root).await, &options.target)?;
    let images: Vec<String> = match top["manifests"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(|m| m["digest"].as_str().map(str::to_string))
            .collect(),
        None => vec![root.clone()],
    };
    let mut checks = Vec::new();
    for image in images {
        let manifest = json(store.get(&image).await, &options.target)?;
        let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
        let config = json(store.get(config_digest).await, &options.target)?;
        let platform = format!(
            "{}/{}",
            config["os"].as_str().unwrap_or("linux"),
            config["architecture"].as_str().unwrap_or("?")
        );
        let mut found = Vec::new();
        for referrer in store.referrers(&image).await? {
            let Ok(bytes) = store.get(&referrer).await else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let layer = manifest["layers"][0]["digest"].as_str().unwrap_or_default();
            found.push(Found {
                artifact_type: manifest["artifactType"].as_str().unwrap_or_default().into(),
                subject: manifest["subject"]["digest"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                blob: store.get(layer).await,
            });
        }
        let labels = &config["config"]["Labels"];
        for (check, status, detail) in image_checks(&image, &found, labels, options.key.as_ref()) {
            checks.push(Check {
                image: image.clone(),
                platform: platform.clone(),
                check,
                status,
                detail,
            });
        }
    }
    Ok(Report {
        digest: root,
        verified: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    })
}

fn json(bytes: std::result::Result<Vec<u8>, String>, target: &Target) -> Result<Value> {
    let invalid = |reason: String| crate::core::error::Error::InvalidInput {
        what: "image",
        value: format!("{target:?}"),
        reason,
    };
    serde_json::from_slice(&bytes.map_err(invalid)?).map_err(|e| invalid(e.to_string()))
}

type Line = (&'static str, Status, String);

/// The checks of one image, given its referrers and labels.
fn image_checks(image: &str, found: &[Found], labels: &Value, key: Option<&Verifier>) -> Vec<Line> {
    let mut lines = vec![sbom_check(image, found)];
    let provenance = found
        .iter()
        .find(|f| f.artifact_type == ENVELOPE_MEDIA_TYPE && f.subject == image);
    let read = provenance.map(|p| {
        let blob = p.blob.as_deref().map_err(|e| e.to_string());
        let parsed = blob.clone().and_then(provenance::read);
        (blob, parsed)
    });
    lines.push(match &read {
        None => ("provenance", Status::Fail, "no provenance referrer".into()),
        Some((_, Err(e))) => ("provenance", Status::Fail, format!("provenance: {e}")),
        Some((_, Ok((_, statement)))) => {
            let named = provenance::subject_digests(statement);
            match named.iter().any(|d| d == image) {
                true => (
                    "provenance",
                    Status::Pass,
                    "provenance (SLSA v1) names this manifest".into(),
                ),
                false => (
                    "provenance",
                    Status::Fail,
                    format!("provenance names {}, not this manifest", named.join(", ")),
                ),
            }
        }
    });
    lines.push(signature_check(read.as_ref().map(|(blob, _)| blob), key));
    lines.push(match &read {
        Some((_, Ok((_, statement)))) => flags_check(statement, labels),
        _ => (
            "flags",
            Status::Fail,
            "no provenance to compare the labels with".into(),
        ),
    });
    lines.push((
        "embedded-crates",
        Status::Skip,
        "not checked (no reader of the binary's .dep-v0 section yet)".into(),
    ));
    lines
}

fn sbom_check(image: &str, found: &[Found]) -> Line {
    let Some(sbom) = found
        .iter()
        .find(|f| SbomFormat::is_sbom(&f.artifact_type) && f.subject == image)
    else {
        return ("sbom", Status::Fail, "no SBOM referrer".into());
    };
    let format = match sbom.artifact_type == SbomFormat::Spdx.media_type() {
        true => "SPDX",
        false => "CycloneDX",
    };
    match &sbom.blob {
        Ok(bytes) if serde_json::from_slice::<Value>(bytes).is_ok() => (
            "sbom",
            Status::Pass,
            format!("SBOM ({format}) names this manifest"),
        ),
        Ok(_) => ("sbom", Status::Fail, format!("SBOM ({format}) is not JSON")),
        Err(e) => ("sbom", Status::Fail, format!("SBOM: {e}")),
    }
}

fn signature_check(
    blob: Option<&std::result::Result<&[u8], String>>,
    key: Option<&Verifier>,
) -> Line {
    let Some(Ok(bytes)) = blob else {
        return ("signature", Status::Fail, "no provenance to check".into());
    };
    let Ok(envelope) = serde_json::from_slice::<crate::pipeline::attest::Envelope>(bytes) else {
        return (
            "signature",
            Status::Fail,
            "the provenance is not a DSSE envelope".into(),
        );
    };
    let keyids: Vec<&str> = envelope
        .signatures
        .iter()
        .map(|s| s.keyid.as_str())
        .collect();
    match (key, keyids.is_empty()) {
        (None, true) => ("signature", Status::Skip, "provenance is unsigned".into()),
        (None, false) => (
            "signature",
            Status::Skip,
            format!(
                "signed by key {}, not checked (no --key)",
                keyids.join(", ")
            ),
        ),
        (Some(_), true) => (
            "signature",
            Status::Fail,
            "provenance is unsigned, and --key was given".into(),
        ),
        (Some(key), false) if key.verifies(&envelope) => (
            "signature",
            Status::Pass,
            format!("signature verifies with key {}", key.keyid),
        ),
        (Some(key), false) => (
            "signature",
            Status::Fail,
            format!(
                "no signature verifies with key {} (signed by {})",
                key.keyid,
                keyids.join(", ")
            ),
        ),
    }
}

/// The provenance's preset, target and flags against the image's labels.
fn flags_check(statement: &Value, labels: &Value) -> Line {
    let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
    let label = |name: &str| labels[name].as_str().map(str::to_string);
    let flags = external["flags"].as_array().map(|list| {
        list.iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    });
    let prebuilt = external["prebuilt"].as_bool().unwrap_or(false);
    let pairs = [
        (
            "preset",
            external["preset"].as_str().map(str::to_string),
            label("dev.ruchy.image.preset"),
        ),
        (
            "target",
            external["target"].as_str().map(str::to_string),
            label("dev.ruchy.image.target"),
        ),
        ("flags", flags, label("dev.ruchy.image.flags")),
        (
            "prebuilt",
            prebuilt.then(|| "true".to_string()),
            label("dev.ruchy.image.prebuilt"),
        ),
    ];
    let differ: Vec<String> = pairs
        .iter()
        .filter(|(_, recorded, labelled)| recorded != labelled)
        .map(|(what, recorded, labelled)| {
            format!(
                "{what}: provenance {}, label {}",
                recorded.as_deref().unwrap_or("(none)"),
                labelled.as_deref().unwrap_or("(none)")
            )
        })
        .collect();
    match differ.is_empty() {
        true => (
            "flags",
            Status::Pass,
            format!(
                "provenance's preset {} and flags match the image's labels",
                pairs[0].1.as_deref().unwrap_or("?")
            ),
        ),
        false => ("flags", Status::Fail, differ.join("; ")),
    }
}
