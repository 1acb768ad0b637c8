//! `verify`: an image's referrers checked against the image. For each image (each platform
//! of an index): its SBOM and its provenance are there and name this manifest, the
//! provenance's signature is the key's, the flags it records are the image's labels, and the
//! crates embedded in the binary are the SBOM's ([`binary`]). Each check is one line of the
//! report.

mod binary;
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
        let mut lines = image_checks(&image, &found, labels, options.key.as_ref());
        let sbom = found
            .iter()
            .filter(|f| SbomFormat::is_sbom(&f.artifact_type) && f.subject == image)
            .find_map(|f| Some((f.artifact_type.as_str(), f.blob.as_deref().ok()?)));
        lines.push(binary::embedded_crates(&store, &manifest, &config, sbom).await);
        for (check, status, detail) in lines {
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
        value: target.to_string(),
        reason,
    };
    serde_json::from_slice(&bytes.map_err(invalid)?).map_err(|e| invalid(e.to_string()))
}

type Line = (&'static str, Status, String);

/// The checks of one image, given its referrers and labels.
fn image_checks(image: &str, found: &[Found], labels: &Value, key: Option<&Verifier>) -> Vec<Line> {
    let mut lines = vec![sbom_check(image, found)];
    // A registry lists every push's provenance of the image: the one the key signed, if any.
    let candidates: Vec<&Found> = found
        .iter()
        .filter(|f| f.artifact_type == ENVELOPE_MEDIA_TYPE && f.subject == image)
        .collect();
    let signed_by_key = |f: &&&Found| {
        let envelope = f
            .blob
            .as_deref()
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::pipeline::attest::Envelope>(b).ok());
        key.zip(envelope).is_some_and(|(k, e)| k.verifies(&e))
    };
    let provenance = candidates
        .iter()
        .find(signed_by_key)
        .or(candidates.first())
        .copied();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::attest::provenance::Provenance;
    use crate::pipeline::attest::Signer;
    use serde_json::json;

    /// A throwaway key (`openssl ecparam -name prime256v1 -genkey -noout`), for tests only.
    const TEST_KEY: &str = include_str!("../../../tests/fixtures/attest/test-key.pem");
    const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn envelope(subject: &str, flags: &[&str], signer: Option<&Signer>) -> Vec<u8> {
        Provenance {
            subject_name: "fib:1".into(),
            subject_digest: subject.into(),
            external: json!({ "preset": "size", "target": "x86_64-unknown-linux-musl", "flags": flags, "prebuilt": false }),
            internal: json!({}),
            dependencies: Vec::new(),
            started: std::time::SystemTime::UNIX_EPOCH,
            finished: std::time::SystemTime::UNIX_EPOCH,
        }
        .envelope(signer)
        .unwrap()
    }

    fn found(artifact_type: &str, blob: Vec<u8>) -> Found {
        Found {
            artifact_type: artifact_type.into(),
            subject: IMAGE.into(),
            blob: Ok(blob),
        }
    }

    fn statuses(lines: &[Line]) -> Vec<(&'static str, Status)> {
        lines
            .iter()
            .map(|(name, status, _)| (*name, *status))
            .collect()
    }

    fn labels(flags: &str) -> Value {
        json!({
            "dev.ruchy.image.preset": "size",
            "dev.ruchy.image.target": "x86_64-unknown-linux-musl",
            "dev.ruchy.image.flags": flags,
        })
    }

    #[test]
    fn each_fault_fails_its_own_check() {
        let signer = Signer::from_pem(TEST_KEY).unwrap();
        let sbom = found(MEDIA_TYPE_CDX, b"{}".to_vec());
        let good = found(
            ENVELOPE_MEDIA_TYPE,
            envelope(IMAGE, &["-C lto=fat"], Some(&signer)),
        );
        let verifier = signer.verifier();
        let lines = image_checks(IMAGE, &[sbom, good], &labels("-C lto=fat"), Some(&verifier));
        assert_eq!(
            statuses(&lines),
            [
                ("sbom", Status::Pass),
                ("provenance", Status::Pass),
                ("signature", Status::Pass),
                ("flags", Status::Pass),
            ]
        );

        // Another image's provenance, with other flags, and no SBOM.
        let other = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let moved = found(
            ENVELOPE_MEDIA_TYPE,
            envelope(other, &["-C lto=thin"], Some(&signer)),
        );
        let lines = image_checks(IMAGE, &[moved], &labels("-C lto=fat"), Some(&verifier));
        let statuses = statuses(&lines);
        assert_eq!(statuses[0], ("sbom", Status::Fail));
        assert_eq!(statuses[1], ("provenance", Status::Fail));
        assert_eq!(statuses[2], ("signature", Status::Pass));
        assert_eq!(statuses[3], ("flags", Status::Fail));
        assert!(lines[3].2.contains("-C lto=thin"), "{}", lines[3].2);

        // Unsigned: reported without a key, a failure with one.
        let unsigned = found(ENVELOPE_MEDIA_TYPE, envelope(IMAGE, &[], None));
        let lines = image_checks(IMAGE, std::slice::from_ref(&unsigned), &labels(""), None);
        assert_eq!(lines[2].1, Status::Skip);
        let lines = image_checks(IMAGE, &[unsigned], &labels(""), Some(&verifier));
        assert_eq!(lines[2].1, Status::Fail);
    }

    #[test]
    fn of_several_provenances_the_key_s_is_checked() {
        let signer = Signer::from_pem(TEST_KEY).unwrap();
        let unsigned = found(ENVELOPE_MEDIA_TYPE, envelope(IMAGE, &[], None));
        let signed = found(ENVELOPE_MEDIA_TYPE, envelope(IMAGE, &[], Some(&signer)));
        let verifier = signer.verifier();
        let lines = image_checks(IMAGE, &[unsigned, signed], &labels(""), Some(&verifier));
        assert_eq!(lines[2].1, Status::Pass, "{}", lines[2].2);
    }

    const MEDIA_TYPE_CDX: &str = crate::pipeline::sbom::MEDIA_TYPE;
}
