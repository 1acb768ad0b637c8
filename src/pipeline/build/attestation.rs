//! The image's referrers: its SBOM, and its SLSA provenance in a DSSE envelope (signed with
//! the plan's key, if it has one), each an OCI 1.1 artifact whose subject is the image.

use std::time::SystemTime;

use serde_json::json;

use crate::core::error::Result;
use crate::core::metrics::ProvenanceRecord;
use crate::pipeline::attest::provenance::{Provenance, PREDICATE_TYPE};
use crate::pipeline::attest::{Resolved, Signer, ENVELOPE_MEDIA_TYPE};
use crate::pipeline::compile::ToolchainFacts;
use crate::pipeline::oci::image::Image;
use crate::pipeline::oci::referrer::Referrer;
use crate::pipeline::oci::ImageRef;

use super::{BuildOptions, Program};

/// How a build attests its images (absent with `--no-provenance`).
#[derive(Debug, Clone)]
pub struct ProvenanceOptions {
    /// The key that signs the envelope; unsigned without one.
    pub signer: Option<Signer>,
    /// The request, resolved, as the JSON a service would be sent (the provenance's
    /// `externalParameters.request`).
    pub request: serde_json::Value,
}

/// What the provenance needs to know of a run, gathered while the binary is made.
#[derive(Debug, Clone)]
pub(super) struct RunFacts {
    /// When the build began.
    pub(super) started: SystemTime,
    /// The digest of the source as the builder got it (of the binary, when prebuilt).
    pub(super) source_digest: String,
    /// The compiler and builder image.
    pub(super) toolchain: ToolchainFacts,
}

/// The DSSE envelope of `image`'s provenance, as the referrer's blob; `None` when the build
/// attests nothing.
pub(super) fn provenance(
    options: &BuildOptions,
    program: &Program,
    image: &Image,
    reference: &ImageRef,
) -> Result<Option<Vec<u8>>> {
    let (Some(wanted), Some(facts)) = (&options.provenance, &program.run) else {
        return Ok(None);
    };
    let flags = program.flags.as_ref();
    let external = json!({
        "source": options.source.path.display().to_string(),
        "preset": options.preset,
        "target": flags.map(|f| f.target.clone()),
        "platform": options.platform.map(|p| p.to_string()),
        "flags": flags.map(|f| f.listing()),
        "optimizationFlags": flags.map(|f| f.metrics()),
        "prebuilt": flags.is_none(),
        "request": wanted.request,
    });
    let internal = json!({
        "builder": program.builder,
        "std": program.std,
        "transpiler": program.transpiler,
        "sourceDateEpoch": options.source_date_epoch,
    });
    let mut dependencies = vec![Resolved {
        name: if flags.is_some() { "source" } else { "binary" }.into(),
        uri: None,
        digest: Some(facts.source_digest.clone()),
        annotations: json!({}),
    }];
    if let (Some(repository), Some(revision)) = (&program.repository, &program.revision) {
        dependencies.push(Resolved {
            name: "checkout".into(),
            uri: Some(format!("git+{repository}")),
            digest: Some(format!("gitCommit:{revision}")),
            annotations: json!({}),
        });
    }
    if let Some((name, id)) = &facts.toolchain.image {
        dependencies.push(Resolved {
            name: "builder-image".into(),
            uri: Some(format!("docker-image://{name}")),
            digest: Some(id.clone()),
            annotations: json!({}),
        });
    }
    let rustc = &facts.toolchain.rustc;
    if !rustc.is_empty() {
        let release = crate::adapters::toolchain::field(rustc, "release:");
        dependencies.push(Resolved {
            name: "rustc".into(),
            uri: Some(format!("pkg:generic/rustc@{release}")),
            digest: None,
            annotations: json!({ "version": rustc.lines().next().unwrap_or_default(), "verbose": rustc }),
        });
    }
    if let Some(base) = &options.base {
        dependencies.push(Resolved {
            name: "base".into(),
            uri: Some(base.reference.clone()),
            digest: Some(base.digest.clone()),
            annotations: json!({}),
        });
    }
    let provenance = Provenance {
        subject_name: reference.full.clone(),
        subject_digest: image.manifest.digest.clone(),
        external,
        internal,
        dependencies,
        started: facts.started,
        finished: SystemTime::now(),
    };
    provenance.envelope(wanted.signer.as_ref()).map(Some)
}

/// What the record says of the provenance among `referrers`.
pub(super) fn record(options: &BuildOptions, referrers: &[Referrer]) -> Option<ProvenanceRecord> {
    let referrer = referrers
        .iter()
        .find(|r| r.artifact_type == ENVELOPE_MEDIA_TYPE)?;
    Some(ProvenanceRecord {
        referrer: referrer.digest.clone(),
        digest: referrer.blobs.last()?.0.clone(),
        signed_by: options
            .provenance
            .as_ref()
            .and_then(|p| p.signer.as_ref())
            .map(|s| s.keyid.clone()),
    })
}

/// The referrers of one image: its SBOM (unless `--no-sbom`) and its provenance.
pub(super) fn referrers(
    options: &BuildOptions,
    image: &Image,
    sbom: Option<&[u8]>,
    provenance: Option<&[u8]>,
) -> Result<Vec<Referrer>> {
    let mut referrers = Vec::new();
    if let Some(bytes) = sbom.filter(|_| !options.no_sbom_referrer) {
        let media_type = options.sbom_format.media_type();
        referrers.push(Referrer::new(
            image,
            media_type,
            bytes,
            options.source_date_epoch,
        )?);
    }
    if let Some(bytes) = provenance {
        referrers.push(Referrer::annotated(
            image,
            ENVELOPE_MEDIA_TYPE,
            bytes,
            options.source_date_epoch,
            &[("in-toto.io/predicate-type", PREDICATE_TYPE)],
        )?);
    }
    Ok(referrers)
}
