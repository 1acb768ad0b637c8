//! The engine output: `--tag` with an engine present loads the image (our archive, through
//! the engine API), then reads it back and checks the engine sees what we built.

use super::{Publisher, Staged};
use crate::adapters::engine::Engine;
use crate::adapters::fsutil::blocking;
use crate::core::error::{Error, Result};
use crate::core::metrics::{EngineView, Published};
use crate::pipeline::oci::index::ImageOrIndex;
use crate::pipeline::oci::{archive, layout, ImageRef};

/// Loads images into a Docker engine.
#[derive(Debug, Clone)]
pub struct EnginePublisher {
    /// The engine.
    pub engine: Engine,
    /// Timestamp for the archive's entries.
    pub mtime: u64,
}

struct StagedLoad {
    engine: Engine,
    archive: Vec<u8>,
    reference: ImageRef,
    expected: EngineView,
}

#[async_trait::async_trait]
impl Publisher for EnginePublisher {
    fn preflight(&self) -> Result<()> {
        Ok(())
    }

    async fn stage(&self, content: &ImageOrIndex, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        // The engine (20.10) holds one image per tag: of an index, the loaded platform's.
        let image = content.loaded().clone();
        let bytes = {
            let (image, reference, mtime) = (image.clone(), reference.clone(), self.mtime);
            blocking(move || {
                let mut bytes = Vec::with_capacity(image.compressed_size() as usize + 16 * 1024);
                let one = ImageOrIndex::Image(image);
                let files = layout::files(&one, &reference)?;
                archive::write(&mut bytes, &one, &reference, &files, mtime)?;
                Ok::<_, Error>(bytes)
            })
            .await?
        };
        Ok(Box::new(StagedLoad {
            engine: self.engine.clone(),
            archive: bytes,
            reference: reference.clone(),
            expected: EngineView {
                id: image.config.digest.clone(),
                size: 0,
                layer_count: image.layers.len(),
                user: image.user.clone(),
                entrypoint: image.entrypoint.clone(),
                engine_version: self.engine.version.clone(),
            },
        }))
    }
}

#[async_trait::async_trait]
impl Staged for StagedLoad {
    fn describe(&self) -> String {
        format!("engine {}", self.reference.full)
    }

    async fn commit(self: Box<Self>) -> Result<Published> {
        let reference = self.reference.full.clone();
        // An unchanged rebuild finds its image already there: no load needed. Otherwise
        // loading over an existing tag moves the tag, and the engine untags the old image.
        let present = self.engine.inspect_image(&reference).await.ok().flatten();
        let inspect = match present {
            Some(inspect) if inspect.id == self.expected.id => inspect,
            _ => {
                self.engine.load(self.archive).await?;
                let context = format!("reading back {reference}");
                self.engine.image(&reference, &context).await?
            }
        };
        let seen = EngineView {
            id: inspect.id,
            size: inspect.size,
            layer_count: inspect.layer_count,
            user: inspect.user,
            entrypoint: inspect.entrypoint,
            engine_version: self.engine.version.clone(),
        };
        let differences = differences(&self.expected, &seen);
        if !differences.is_empty() {
            return Err(Error::EngineDisagrees {
                reference,
                difference: differences.join("; "),
            });
        }
        Ok(Published {
            kind: "engine".into(),
            location: reference,
            engine: Some(seen),
            push: None,
        })
    }
}

/// What the engine sees differently from what was built: identity and the settings that
/// decide how the container runs. Sizes are counted differently and only reported.
fn differences(expected: &EngineView, seen: &EngineView) -> Vec<String> {
    let mut differences = Vec::new();
    if seen.id != expected.id {
        differences.push(format!("image ID {} (built {})", seen.id, expected.id));
    }
    if seen.layer_count != expected.layer_count {
        differences.push(format!(
            "{} layers (built {})",
            seen.layer_count, expected.layer_count
        ));
    }
    if seen.user != expected.user {
        differences.push(format!("User {:?} (built {:?})", seen.user, expected.user));
    }
    if seen.entrypoint != expected.entrypoint {
        differences.push(format!(
            "Entrypoint {:?} (built {:?})",
            seen.entrypoint, expected.entrypoint
        ));
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> EngineView {
        EngineView {
            id: "sha256:aa".into(),
            size: 100,
            layer_count: 2,
            user: "65532:65532".into(),
            entrypoint: vec!["/usr/local/bin/app".into()],
            engine_version: "20.10".into(),
        }
    }

    #[test]
    fn sizes_may_differ_but_identity_and_runtime_settings_may_not() {
        let built = view();
        let same_but_sized = EngineView {
            size: 4096,
            ..view()
        };
        assert!(differences(&built, &same_but_sized).is_empty());
        let rooted = EngineView {
            user: "0:0".into(),
            layer_count: 3,
            ..view()
        };
        assert_eq!(
            differences(&built, &rooted),
            ["3 layers (built 2)", "User \"0:0\" (built \"65532:65532\")"]
        );
    }
}
