//! Stage 4, publish: the assembled image goes to each sink the user asked for.
//!
//! Publishing is two-phase so a build never leaves half its outputs behind: every sink first
//! stages its output (a temp path that is removed if dropped, or bytes in memory), and only
//! when all have staged are they committed: files by a rename, the engine by a load.

mod credentials;
mod engine;
mod files;
mod registry;
mod repository;

pub use credentials::docker_config_file;
pub use engine::EnginePublisher;
pub use files::{ArchivePublisher, OciLayoutPublisher};
pub use registry::{
    auth_for, client_for, parse_reference, push_error, RegistryOptions, RegistryPublisher,
};
pub use repository::{check_push, parse_repository};

use crate::core::error::Result;
use crate::core::event::{Event, Events};
use crate::core::metrics::{Published, PushStats};
use crate::pipeline::oci::index::ImageOrIndex;
use crate::pipeline::oci::referrer::Referrer;
use crate::pipeline::oci::ImageRef;

/// An output that is written but not yet visible.
#[async_trait::async_trait]
pub trait Staged: Send {
    /// What and where, for progress (`archive out/fib.tar`).
    fn describe(&self) -> String;

    /// Makes the output visible at its destination.
    async fn commit(self: Box<Self>) -> Result<Published>;
}

/// A sink for images.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// Checks, before any compile, that the output can be written, so a long build does not
    /// fail at its last step.
    fn preflight(&self) -> Result<()>;

    /// Writes the image (or index) where it is not yet visible.
    async fn stage(&self, content: &ImageOrIndex, reference: &ImageRef) -> Result<Box<dyn Staged>>;

    /// [`Publisher::stage`], for an output that writes the image's referrers in the same
    /// write (an archive, which is one file); the others attach them after their commit.
    async fn stage_with(
        &self,
        content: &ImageOrIndex,
        reference: &ImageRef,
        _referrers: &[Referrer],
    ) -> Result<Box<dyn Staged>> {
        self.stage(content, reference).await
    }

    /// Whether this output can hold referrers (layouts and registries can).
    fn holds_referrers(&self) -> bool {
        false
    }

    /// Attaches an artifact (the SBOM) to the image this output holds now, where the output
    /// can hold referrers (layouts and registries); `None` where it cannot.
    async fn attach(&self, _referrer: &Referrer) -> Result<Option<Published>> {
        Ok(None)
    }
}

/// Attaches `referrer` in every output that can hold it.
pub async fn attach_all(
    publishers: &[Box<dyn Publisher>],
    referrer: &Referrer,
) -> Result<Vec<Published>> {
    let mut attached = Vec::new();
    for publisher in publishers {
        attached.extend(publisher.attach(referrer).await?);
    }
    Ok(attached)
}

/// Stages the image (or index) in every publisher, then commits them all in order, reporting each
/// commit's start and end. If any stage fails, nothing is committed and every staged output
/// is removed. An output that holds `referrers` (the images' SBOMs) in the image's own write
/// takes them now; the caller attaches them to the others after ([`attach_all`]).
pub async fn publish_all(
    publishers: &[Box<dyn Publisher>],
    content: &ImageOrIndex,
    reference: &ImageRef,
    referrers: &[Referrer],
    events: &Events,
) -> Result<Vec<Published>> {
    let mut staged = Vec::with_capacity(publishers.len());
    for publisher in publishers {
        staged.push(publisher.stage_with(content, reference, referrers).await?);
    }
    let mut published = Vec::with_capacity(staged.len());
    for output in staged {
        let what = output.describe();
        events.emit(Event::Writing {
            output: what.clone(),
        });
        published.push(output.commit().await?);
        events.emit(Event::Written { output: what });
    }
    Ok(published)
}
