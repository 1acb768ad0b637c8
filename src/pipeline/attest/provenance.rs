//! SLSA provenance v1 of one image: an in-toto Statement v1 whose subject is the image's
//! manifest, with a `https://slsa.dev/provenance/v1` predicate saying how ruchy-image built
//! it (the resolved preset, flags and request; the source, builder image and rustc it used;
//! when it ran). The statement is the payload of a DSSE envelope, signed or not.
//!
//! The image does not depend on it (it is a referrer, not part of the image), and its
//! `startedOn`/`finishedOn` are the real times of this run, so two runs of a reproducible
//! build give one image and two provenances that both name it: a provenance records an
//! invocation (BuildKit's choice too; moby/buildkit#3421).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::dsse::{Envelope, Signer};
use crate::core::error::{Error, Result};

/// The in-toto Statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance predicate's type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The envelope's `payloadType`: an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Our build type: what `externalParameters` and `internalParameters` hold
/// (docs/provenance.md describes it).
pub const BUILD_TYPE: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/blob/main/docs/provenance.md#build-type-v1"
);
/// The builder's id: this tool at this version.
pub const BUILDER_ID: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "@v",
    env!("CARGO_PKG_VERSION")
);

/// A resolved dependency of the build (SLSA's ResourceDescriptor): the source, the builder
/// image, the compiler, the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What it is to the build (`source`, `builder-image`, `rustc`, `base`).
    pub name: String,
    /// Where it is, as a URI (`docker-image://rust:1-alpine`, `pkg:generic/rustc@1.95.0`).
    pub uri: Option<String>,
    /// `sha256:<hex>`, when it has one.
    pub digest: Option<String>,
    /// Anything more (the compiler's full version line).
    pub annotations: Value,
}

impl Resolved {
    fn json(&self) -> Value {
        let mut out = json!({ "name": self.name });
        if let Some(uri) = &self.uri {
            out["uri"] = json!(uri);
        }
        if let Some((algorithm, hex)) = self.digest.as_deref().and_then(|d| d.split_once(':')) {
            out["digest"] = json!({ algorithm: hex });
        }
        if self.annotations.as_object().is_some_and(|a| !a.is_empty()) {
            out["annotations"] = self.annotations.clone();
        }
        out
    }
}

/// What the provenance of one image says.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The image's name (`name:tag`), the subject's `name`.
    pub subject_name: String,
    /// The image manifest's digest (`sha256:<hex>`).
    pub subject_digest: String,
    /// What the user asked for, resolved: preset, flags, target, platform, the request.
    pub external: Value,
    /// What the builder decided on its own: the compile backend, the std, the transpiler.
    pub internal: Value,
    /// The source, the builder image, the compiler, the base.
    pub dependencies: Vec<Resolved>,
    /// When the build started and finished.
    pub started: SystemTime,
    /// When it finished (the image assembled).
    pub finished: SystemTime,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

impl Provenance {
    /// The in-toto Statement.
    pub fn statement(&self) -> Value {
        let (algorithm, hex) = self
            .subject_digest
            .split_once(':')
            .unwrap_or(("sha256", &self.subject_digest));
        json!({
            "_type": STATEMENT_TYPE,
            "subject": [{ "name": self.subject_name, "digest": { algorithm: hex } }],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": self.external,
                    "internalParameters": self.internal,
                    "resolvedDependencies": self.dependencies.iter().map(Resolved::json).collect::<Vec<_>>(),
                },
                "runDetails": {
                    "builder": {
                        "id": BUILDER_ID,
                        "version": { "ruchy-image": env!("CARGO_PKG_VERSION") },
                    },
                    "metadata": {
                        "startedOn": rfc3339(self.started),
                        "finishedOn": rfc3339(self.finished),
                    },
                },
            },
        })
    }

    /// The DSSE envelope of the statement as the referrer's blob: signed by `signer`, or
    /// with no signatures.
    pub fn envelope(&self, signer: Option<&Signer>) -> Result<Vec<u8>> {
        let json_error = |source| Error::Json {
            what: "the provenance",
            source,
        };
        let payload = serde_json::to_vec(&self.statement()).map_err(json_error)?;
        let envelope = match signer {
            Some(signer) => signer.sign(PAYLOAD_TYPE, &payload),
            None => Envelope::unsigned(PAYLOAD_TYPE, &payload),
        };
        serde_json::to_vec(&envelope).map_err(json_error)
    }
}

/// An envelope's bytes read back: the envelope and its statement, or why they do not read.
pub fn read(bytes: &[u8]) -> std::result::Result<(Envelope, Value), String> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "its payloadType is {}, not {PAYLOAD_TYPE}",
            envelope.payload_type
        ));
    }
    let payload = envelope
        .payload_bytes()
        .map_err(|e| format!("its payload is not base64: {e}"))?;
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("its payload is not an in-toto Statement: {e}"))?;
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        return Err(format!(
            "its statement is {} with predicate {}, not SLSA provenance v1",
            statement["_type"], statement["predicateType"]
        ));
    }
    Ok((envelope, statement))
}

/// The digests (`sha256:<hex>`) a statement's subjects name.
pub fn subject_digests(statement: &Value) -> Vec<String> {
    statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .map(|hex| format!("sha256:{hex}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Provenance {
        Provenance {
            subject_name: "docker.io/library/fib:aggressive".into(),
            subject_digest: format!("sha256:{}", "ab".repeat(32)),
            external: json!({ "preset": "aggressive", "flags": ["-C lto=fat"] }),
            internal: json!({ "builder": "local" }),
            dependencies: vec![
                Resolved {
                    name: "source".into(),
                    uri: None,
                    digest: Some(format!("sha256:{}", "cd".repeat(32))),
                    annotations: json!({}),
                },
                Resolved {
                    name: "rustc".into(),
                    uri: Some("pkg:generic/rustc@1.95.0".into()),
                    digest: None,
                    annotations: json!({ "version": "rustc 1.95.0" }),
                },
            ],
            started: SystemTime::UNIX_EPOCH,
            finished: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(61),
        }
    }

    #[test]
    fn the_statement_has_slsa_v1s_shape() {
        let s = example().statement();
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["predicateType"], PREDICATE_TYPE);
        assert_eq!(s["subject"][0]["digest"]["sha256"], "ab".repeat(32));
        assert_eq!(s["subject"][0]["name"], "docker.io/library/fib:aggressive");
        let definition = &s["predicate"]["buildDefinition"];
        assert!(definition["buildType"]
            .as_str()
            .unwrap()
            .starts_with("https://"));
        assert_eq!(definition["externalParameters"]["preset"], "aggressive");
        assert_eq!(
            definition["resolvedDependencies"][0],
            json!({ "name": "source", "digest": { "sha256": "cd".repeat(32) } })
        );
        assert_eq!(
            definition["resolvedDependencies"][1]["uri"],
            "pkg:generic/rustc@1.95.0"
        );
        let run = &s["predicate"]["runDetails"];
        assert_eq!(run["builder"]["id"], BUILDER_ID);
        assert_eq!(run["metadata"]["startedOn"], "1970-01-01T00:00:00Z");
        assert_eq!(run["metadata"]["finishedOn"], "1970-01-01T00:01:01Z");
        assert_eq!(subject_digests(&s), [format!("sha256:{}", "ab".repeat(32))]);
    }

    #[test]
    fn an_unsigned_envelope_reads_back() {
        let bytes = example().envelope(None).unwrap();
        let (envelope, statement) = read(&bytes).unwrap();
        assert!(envelope.signatures.is_empty());
        assert_eq!(statement, example().statement());
        assert!(read(b"{}").is_err());
    }
}
