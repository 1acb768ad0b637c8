//! An OCI image index over one image per platform (image-spec `image-index.md`), as buildx
//! and ko write them: each image's manifest with its platform, in a fixed order, so the same
//! images give the same index digest.

use std::collections::HashMap;
use std::sync::Arc;

use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

use super::canonical_json;
use super::image::{Blob, Image};
use super::referrer::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::core::error::{Error, Result};

/// An image index and the images it lists.
#[derive(Debug)]
pub struct Index {
    /// The images, by architecture.
    pub images: Vec<Arc<Image>>,
    /// The index JSON.
    pub blob: Blob,
    /// Which image an engine loads (Docker 20.10 holds one per tag): the position in `images`.
    pub loaded: usize,
}

impl Index {
    /// The index over `images` (one per architecture); `load` is the architecture of the one
    /// an engine takes.
    pub fn new(mut images: Vec<Arc<Image>>, load: &str) -> Result<Index> {
        images.sort_by(|a, b| a.architecture.cmp(&b.architecture));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(
                images
                    .iter()
                    .map(|image| image.manifest_descriptor(HashMap::new()))
                    .collect::<Vec<_>>(),
            )
            .build()
            .expect("index has all required fields");
        let bytes = canonical_json(&index).map_err(|source| Error::Json {
            what: "the OCI image index",
            source,
        })?;
        let loaded = images
            .iter()
            .position(|image| image.architecture == load)
            .unwrap_or(0);
        Ok(Index {
            images,
            blob: Blob::new(bytes),
            loaded,
        })
    }
}

/// What one build publishes under its tag: an image, or an index over one per platform.
#[derive(Debug, Clone)]
pub enum ImageOrIndex {
    /// One platform's image.
    Image(Arc<Image>),
    /// Several platforms' images.
    Index(Arc<Index>),
}

impl ImageOrIndex {
    /// Every image in it.
    pub fn images(&self) -> &[Arc<Image>] {
        match self {
            ImageOrIndex::Image(image) => std::slice::from_ref(image),
            ImageOrIndex::Index(index) => &index.images,
        }
    }

    /// The image an engine loads (and a docker-archive names).
    pub fn loaded(&self) -> &Arc<Image> {
        match self {
            ImageOrIndex::Image(image) => image,
            ImageOrIndex::Index(index) => &index.images[index.loaded],
        }
    }

    /// The manifest or index JSON the tag points at.
    pub fn root(&self) -> &Blob {
        match self {
            ImageOrIndex::Image(image) => &image.manifest,
            ImageOrIndex::Index(index) => &index.blob,
        }
    }

    /// The media type of [`ImageOrIndex::root`].
    pub fn media_type(&self) -> &'static str {
        match self {
            ImageOrIndex::Image(_) => MANIFEST_MEDIA_TYPE,
            ImageOrIndex::Index(_) => INDEX_MEDIA_TYPE,
        }
    }

    /// The root's descriptor, as a layout's `index.json` lists it.
    pub fn descriptor(&self, annotations: HashMap<String, String>) -> oci_spec::image::Descriptor {
        let ImageOrIndex::Index(index) = self else {
            return self.loaded().manifest_descriptor(annotations);
        };
        let mut descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageIndex)
            .digest(
                index
                    .blob
                    .digest
                    .parse::<oci_spec::image::Digest>()
                    .expect("sha256 digests are valid"),
            )
            .size(index.blob.bytes.len() as u64)
            .build()
            .expect("descriptor has all required fields");
        if !annotations.is_empty() {
            descriptor.set_annotations(Some(annotations));
        }
        descriptor
    }

    /// The images' configs and layers, each once, in a fixed order (what their manifests
    /// name, so what a registry needs before them).
    pub fn blobs(&self) -> Vec<(&str, &[u8])> {
        let mut seen = std::collections::HashSet::new();
        let mut blobs = Vec::new();
        for image in self.images() {
            let config = (image.config.digest.as_str(), &image.config.bytes[..]);
            let layers = image
                .layers
                .iter()
                .map(|l| (l.digest.as_str(), &l.blob[..]));
            for (digest, bytes) in std::iter::once(config).chain(layers) {
                if seen.insert(digest) {
                    blobs.push((digest, bytes));
                }
            }
        }
        blobs
    }
}
