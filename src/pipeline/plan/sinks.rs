//! Where a request's image goes: the engine, when one is wanted and answers, and one
//! publisher per output. A [`super::Plan`] writes its builds through them, and `build
//! --server` writes what a service built through them too, so both get the same refusals
//! (an ordinary directory, an output over the source), the same merge into an existing
//! layout, the same loud failure of a load that cannot happen, and nothing half-written.

use std::path::Path;

use super::{Load, Request};
use crate::adapters::engine::Engine;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};
use crate::core::metrics::Published;
use crate::pipeline::oci::archive::Contents;
use crate::pipeline::oci::layer::Codec;
use crate::pipeline::publish::{
    attach_all, publish_all, ArchivePublisher, EnginePublisher, OciLayoutPublisher, Publisher,
    RegistryPublisher,
};

/// The engine and the publishers of one request.
pub struct Sinks {
    /// The engine, when one is wanted and answers.
    pub engine: Option<Engine>,
    /// One per output, in the order they are committed.
    pub publishers: Vec<Box<dyn Publisher>>,
}

impl Sinks {
    /// The outputs of `request`, writing through `engine` where it loads.
    pub(super) fn new(request: &Request, engine: Option<Engine>, events: &Events) -> Result<Sinks> {
        check_engine_reads(request, engine.as_ref())?;
        if request.outputs.load == Load::IfEngine && engine.is_none() && request.tag.is_some() {
            events.emit(Event::Warning {
                message: "no Docker engine answers: the image is not loaded".into(),
            });
        }
        let mut publishers: Vec<Box<dyn Publisher>> = Vec::new();
        if let Some(dir) = &request.outputs.oci_layout {
            publishers.push(Box::new(OciLayoutPublisher { dir: dir.clone() }));
        }
        if let Some(file) = &request.outputs.archive {
            publishers.push(Box::new(ArchivePublisher {
                file: file.clone(),
                mtime: request.source_date_epoch,
            }));
        }
        // Registries after the files: a push puts a tag others see, but only once every blob
        // is up (and a failure before leaves the files uncommitted too).
        for (index, reference) in request.outputs.push.iter().enumerate() {
            publishers.push(Box::new(RegistryPublisher {
                reference: reference.clone(),
                options: request.registry.clone(),
                mount_from: request.outputs.push[..index].to_vec(),
                tag_per_image: request.presets.len() > 1 || request.bases.len() > 1,
                events: events.clone(),
            }));
        }
        // The engine last: a load moves a tag that other programs see at once, so it is the
        // step an interruption should be least likely to cut off from the rest.
        if let (Some(engine), true) = (&engine, request.outputs.load != Load::Never) {
            publishers.push(Box::new(EnginePublisher {
                engine: engine.clone(),
                mtime: request.source_date_epoch,
            }));
        }
        Ok(Sinks { engine, publishers })
    }

    /// The outputs of `request` for an image built elsewhere (by a service): the request is
    /// validated as a local build's is and every output checked writable, before anything
    /// is sent; the engine is connected to only to load into it.
    pub async fn for_image_built_elsewhere(request: &Request, events: &Events) -> Result<Sinks> {
        request.validate()?;
        let load = request.outputs.load;
        let engine = connect(load != Load::Never, load == Load::Always).await?;
        let sinks = Sinks::new(request, engine, events)?;
        for publisher in &sinks.publishers {
            publisher.preflight()?;
        }
        Ok(sinks)
    }

    /// Writes `contents` (an image read back from a service's archive) to every output as a
    /// local build writes its image: all staged, then all committed; then the SBOM file
    /// (`sbom`), then the referrers, where the outputs hold them.
    pub async fn publish(
        &self,
        contents: &Contents,
        sbom: Option<&Path>,
        events: &Events,
    ) -> Result<Vec<Published>> {
        let mut outputs = publish_all(
            &self.publishers,
            &contents.content,
            &contents.reference,
            &contents.referrers,
            events,
        )
        .await?;
        if let Some(path) = sbom {
            let artifact = contents
                .referrers
                .iter()
                .find(|r| crate::pipeline::sbom::SbomFormat::is_sbom(&r.artifact_type))
                .and_then(|r| r.blobs.last())
                .ok_or_else(|| Error::InvalidInput {
                    what: "SBOM",
                    value: path.display().to_string(),
                    reason: "the image came without one (built with no SBOM)".into(),
                })?;
            crate::adapters::fsutil::write_file_atomically("the SBOM", path, &artifact.1)?;
            outputs.push(Published {
                kind: "sbom".into(),
                location: path.display().to_string(),
                engine: None,
                push: None,
            });
        }
        for referrer in &contents.referrers {
            outputs.extend(attach_all(&self.publishers, referrer).await?);
        }
        Ok(outputs)
    }
}

/// Refuses, before anything runs, a load of zstd layers into an engine that cannot read them:
/// Docker reads zstd layers from 23.0 on; Podman does (4.3 does).
fn check_engine_reads(request: &Request, engine: Option<&Engine>) -> Result<()> {
    let (Some(engine), Codec::Zstd) = (engine, request.image.compression) else {
        return Ok(());
    };
    let loads = request.outputs.load != Load::Never;
    let major: u32 = engine
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if loads && !engine.podman && major < 23 {
        return Err(Error::InvalidInput {
            what: "compression for this engine",
            value: "zstd".into(),
            reason: format!(
                "the engine at {} is Docker {}, which cannot load zstd layers (Docker 23 and later, and containerd, can): add --no-load to write zstd only to layouts, archives and registries, or leave the compression gzip",
                engine.host, engine.version
            ),
        });
    }
    Ok(())
}

/// Connects to the engine when one is `wanted`. `None` when it does not answer and is not
/// `needed`.
pub(super) async fn connect(wanted: bool, needed: bool) -> Result<Option<Engine>> {
    if !wanted {
        return Ok(None);
    }
    // An engine named in DOCKER_HOST is one the user means: not answering is an error, not a
    // reason to quietly build without it.
    let named = crate::adapters::engine::named_host().is_some();
    match Engine::connect().await {
        Ok(engine) => Ok(Some(engine)),
        Err(e) if needed || named => Err(e),
        Err(_) => Ok(None),
    }
}
