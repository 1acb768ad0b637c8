//! File outputs: an OCI layout directory and a single archive file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Publisher, Staged};
use crate::error::{Error, Result};
use crate::fsutil::{
    blocking, check_writable, create_parent, existing_ancestor, persist, set_mode, temp_file_for,
    writable_ancestor,
};
use crate::metrics::Published;
use crate::oci::image::Image;
use crate::oci::{archive, layout, ImageRef};

/// `--oci-layout DIR`: an OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayoutPublisher {
    /// The layout directory.
    pub dir: PathBuf,
}

impl OciLayoutPublisher {
    const WHAT: &'static str = "the OCI layout";

    /// A destination we may replace: absent, empty, or an OCI layout already.
    fn check_destination(&self) -> Result<()> {
        let Ok(meta) = std::fs::metadata(&self.dir) else {
            return Ok(());
        };
        let is_layout = self.dir.join("oci-layout").is_file();
        let is_empty = meta.is_dir()
            && std::fs::read_dir(&self.dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if meta.is_dir() && (is_layout || is_empty) {
            return Ok(());
        }
        Err(Error::OutputNotWritable {
            what: Self::WHAT,
            path: self.dir.clone(),
            reason: "it exists and is not an OCI layout; choose another path or remove it".into(),
        })
    }
}

struct StagedDir {
    temp: tempfile::TempDir,
    dest: PathBuf,
}

#[async_trait::async_trait]
impl Staged for StagedDir {
    async fn commit(self: Box<Self>) -> Result<Published> {
        let what = OciLayoutPublisher::WHAT;
        let fail = |e: std::io::Error| Error::OutputNotWritable {
            what,
            path: self.dest.clone(),
            reason: e.to_string(),
        };
        create_parent(what, &self.dest)?;
        // A directory cannot be renamed over a non-empty one: move the old layout aside first.
        let aside = self.dest.exists().then(|| {
            let mut name = self.dest.clone().into_os_string();
            name.push(format!(".old-{}", std::process::id()));
            PathBuf::from(name)
        });
        if let Some(aside) = &aside {
            std::fs::rename(&self.dest, aside).map_err(fail)?;
        }
        let temp = self.temp.keep();
        if let Err(e) = std::fs::rename(&temp, &self.dest) {
            if let Some(aside) = &aside {
                let _ = std::fs::rename(aside, &self.dest);
            }
            let _ = std::fs::remove_dir_all(&temp);
            return Err(fail(e));
        }
        if let Some(aside) = aside {
            let _ = std::fs::remove_dir_all(aside);
        }
        Ok(Published {
            kind: "oci-layout",
            location: self.dest.display().to_string(),
            engine: None,
        })
    }
}

#[async_trait::async_trait]
impl Publisher for OciLayoutPublisher {
    fn preflight(&self) -> Result<()> {
        self.check_destination()?;
        writable_ancestor(Self::WHAT, &self.dir).map(drop)
    }

    async fn stage(&self, image: &Arc<Image>, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        let (this, image, reference) = (self.clone(), image.clone(), reference.clone());
        blocking(move || this.write_staged(&image, &reference)).await
    }
}

impl OciLayoutPublisher {
    /// The layout, written whole into a temp dir beside the destination.
    fn write_staged(&self, image: &Image, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        self.check_destination()?;
        // Making the temp dir is the writability check here.
        let base = existing_ancestor(Self::WHAT, &self.dir)?;
        let temp = tempfile::Builder::new()
            .prefix(".ruchy-image-layout-")
            .tempdir_in(&base)
            .map_err(Error::io(format!(
                "creating a temp dir in {}",
                base.display()
            )))?;
        layout::write_dir(temp.path(), &layout::files(image, reference)?)?;
        set_mode(temp.path(), 0o755)?;
        Ok(Box::new(StagedDir {
            temp,
            dest: std::path::absolute(&self.dir).map_err(Error::io("resolving the layout path"))?,
        }))
    }
}

/// `--output FILE.tar`: one tarball for `docker load`, skopeo and umoci.
#[derive(Debug, Clone)]
pub struct ArchivePublisher {
    /// The tarball.
    pub file: PathBuf,
    /// Timestamp for the archive's entries.
    pub mtime: u64,
}

impl ArchivePublisher {
    const WHAT: &'static str = "the image archive";
}

struct StagedFile {
    temp: tempfile::NamedTempFile,
    dest: PathBuf,
}

#[async_trait::async_trait]
impl Staged for StagedFile {
    async fn commit(self: Box<Self>) -> Result<Published> {
        persist(ArchivePublisher::WHAT, self.temp, &self.dest)?;
        Ok(Published {
            kind: "archive",
            location: self.dest.display().to_string(),
            engine: None,
        })
    }
}

#[async_trait::async_trait]
impl Publisher for ArchivePublisher {
    fn preflight(&self) -> Result<()> {
        check_writable(Self::WHAT, &self.file)
    }

    async fn stage(&self, image: &Arc<Image>, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        let (this, image, reference) = (self.clone(), image.clone(), reference.clone());
        blocking(move || this.write_staged(&image, &reference)).await
    }
}

impl ArchivePublisher {
    /// The archive, written whole into a temp file beside the destination.
    fn write_staged(&self, image: &Image, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        let mut temp = temp_file_for(Self::WHAT, "archive-", &self.file)?;
        let files = layout::files(image, reference)?;
        let mut out = std::io::BufWriter::new(temp.as_file_mut());
        archive::write(&mut out, image, reference, &files, self.mtime)?;
        out.flush()
            .map_err(Error::io("writing the image archive"))?;
        drop(out);
        set_mode(temp.path(), 0o644)?;
        Ok(Box::new(StagedFile {
            temp,
            dest: std::path::absolute(&self.file)
                .map_err(Error::io("resolving the archive path"))?,
        }))
    }
}
