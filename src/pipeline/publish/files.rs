//! File outputs: an OCI layout directory and a single archive file.

use std::io::Write;
use std::path::PathBuf;

use super::{Publisher, Staged};
use crate::adapters::fsutil::{
    blocking, check_writable, create_parent, existing_ancestor, persist, set_mode, temp_file_for,
    writable_ancestor, write_file_atomically,
};
use crate::core::error::{Error, Result};
use crate::core::metrics::Published;
use crate::pipeline::oci::index::ImageOrIndex;
use crate::pipeline::oci::referrer::Referrer;
use crate::pipeline::oci::{archive, layout, ImageRef};

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

/// A new layout, whole in a temp dir, renamed into place on commit.
struct StagedDir {
    temp: tempfile::TempDir,
    dest: PathBuf,
}

#[async_trait::async_trait]
impl Staged for StagedDir {
    fn describe(&self) -> String {
        format!("oci-layout {}", self.dest.display())
    }

    async fn commit(self: Box<Self>) -> Result<Published> {
        let what = OciLayoutPublisher::WHAT;
        create_parent(what, &self.dest)?;
        let temp = self.temp.keep();
        // rename(2) replaces an empty directory, and only an empty one was allowed here.
        if let Err(e) = std::fs::rename(&temp, &self.dest) {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(Error::OutputNotWritable {
                what,
                path: self.dest.clone(),
                reason: e.to_string(),
            });
        }
        Ok(Published {
            kind: "oci-layout".into(),
            location: self.dest.display().to_string(),
            engine: None,
            push: None,
        })
    }
}

/// Our image added to an existing layout: its blobs are in place (invisible until an index
/// names them), the merged index waits in a temp file and is renamed over `index.json` on
/// commit. Not committed, the blobs this build added are removed again.
struct StagedIndex {
    /// The merged index; taken on commit.
    temp: Option<tempfile::NamedTempFile>,
    dest: PathBuf,
    added: Vec<PathBuf>,
}

#[async_trait::async_trait]
impl Staged for StagedIndex {
    fn describe(&self) -> String {
        format!("oci-layout {}", self.dest.display())
    }

    async fn commit(mut self: Box<Self>) -> Result<Published> {
        let index = self.dest.join("index.json");
        let temp = self.temp.take().expect("committed once");
        persist(OciLayoutPublisher::WHAT, temp, &index)?;
        self.added.clear();
        Ok(Published {
            kind: "oci-layout".into(),
            location: self.dest.display().to_string(),
            engine: None,
            push: None,
        })
    }
}

impl Drop for StagedIndex {
    fn drop(&mut self) {
        for blob in &self.added {
            let _ = std::fs::remove_file(blob);
        }
    }
}

#[async_trait::async_trait]
impl Publisher for OciLayoutPublisher {
    fn preflight(&self) -> Result<()> {
        self.check_destination()?;
        writable_ancestor(Self::WHAT, &self.dir).map(drop)
    }

    fn holds_referrers(&self) -> bool {
        true
    }

    /// The referrer's blobs only: `index.json` keeps one entry per ref, the form skopeo and
    /// umoci take by default; readers find it through its `subject` (see
    /// [`crate::pipeline::oci::referrer::in_layout`]).
    async fn attach(&self, referrer: &Referrer) -> Result<Option<Published>> {
        let (dir, referrer) = (self.dir.clone(), referrer.clone());
        crate::adapters::fsutil::blocking(move || {
            let blobs = dir.join("blobs/sha256");
            let mut all = referrer.blobs.clone();
            all.push((referrer.digest.clone(), referrer.manifest.clone()));
            for (digest, bytes) in &all {
                let path = blobs.join(digest.trim_start_matches("sha256:"));
                if !path.exists() {
                    crate::adapters::fsutil::write_file_atomically(Self::WHAT, &path, bytes)?;
                }
            }
            crate::pipeline::oci::referrer::supersede_in_layout(&dir, &referrer)?;
            Ok(Some(Published {
                kind: "referrer".into(),
                location: format!("{}@{}", dir.display(), referrer.digest),
                engine: None,
                push: None,
            }))
        })
        .await
    }

    async fn stage(&self, content: &ImageOrIndex, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        let (this, content, reference) = (self.clone(), content.clone(), reference.clone());
        blocking(move || this.write_staged(&content, &reference)).await
    }
}

impl OciLayoutPublisher {
    /// A new layout, written whole into a temp dir beside the destination; or, into an
    /// existing layout (a store of many images), our blobs and a merged index.
    fn write_staged(
        &self,
        content: &ImageOrIndex,
        reference: &ImageRef,
    ) -> Result<Box<dyn Staged>> {
        self.check_destination()?;
        let files = layout::files(content, reference)?;
        let dest =
            std::path::absolute(&self.dir).map_err(Error::io("resolving the layout path"))?;
        if dest.join("oci-layout").is_file() {
            return self.add_to(&dest, &files);
        }
        // Making the temp dir is the writability check here.
        let base = existing_ancestor(Self::WHAT, &self.dir)?;
        let temp = tempfile::Builder::new()
            .prefix(&crate::adapters::cleanup::temp_prefix("layout"))
            .tempdir_in(&base)
            .map_err(Error::io(format!(
                "creating a temp dir in {}",
                base.display()
            )))?;
        layout::write_dir(temp.path(), &files)?;
        set_mode(temp.path(), 0o755)?;
        Ok(Box::new(StagedDir { temp, dest }))
    }

    /// Adds our blobs to the existing layout at `dest` (each whole, by rename; blobs it has
    /// are the same bytes, so they are kept) and stages the merged index.
    fn add_to(&self, dest: &std::path::Path, files: &layout::Files<'_>) -> Result<Box<dyn Staged>> {
        let index = dest.join("index.json");
        let existing =
            std::fs::read(&index).map_err(Error::io(format!("reading {}", index.display())))?;
        let ours = files
            .iter()
            .find(|(path, _)| path == "index.json")
            .map(|(_, bytes)| bytes)
            .expect("a layout has an index");
        let merged = layout::merged_index(&existing, ours)?;
        let mut temp = temp_file_for(Self::WHAT, "index", &index)?;
        temp.write_all(&merged)
            .map_err(Error::io(format!("writing {}", index.display())))?;
        set_mode(temp.path(), 0o644)?;
        let mut staged = StagedIndex {
            temp: Some(temp),
            dest: dest.to_path_buf(),
            added: Vec::new(),
        };
        for (path, bytes) in files.iter().filter(|(path, _)| path.starts_with("blobs/")) {
            let blob = dest.join(path);
            if !blob.is_file() {
                write_file_atomically(Self::WHAT, &blob, bytes)?;
                staged.added.push(blob);
            }
        }
        Ok(Box::new(staged))
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
    fn describe(&self) -> String {
        format!("archive {}", self.dest.display())
    }

    async fn commit(self: Box<Self>) -> Result<Published> {
        persist(ArchivePublisher::WHAT, self.temp, &self.dest)?;
        Ok(Published {
            kind: "archive".into(),
            location: self.dest.display().to_string(),
            engine: None,
            push: None,
        })
    }
}

#[async_trait::async_trait]
impl Publisher for ArchivePublisher {
    fn preflight(&self) -> Result<()> {
        check_writable(Self::WHAT, &self.file)
    }

    fn holds_referrers(&self) -> bool {
        true
    }

    /// The referrer is in the archive already: it was written with the image (see
    /// [`Publisher::stage_with`]), so a service's download carries the SBOM its client
    /// attaches. This reports it.
    async fn attach(&self, referrer: &Referrer) -> Result<Option<Published>> {
        Ok(Some(Published {
            kind: "referrer".into(),
            location: format!("{}@{}", self.file.display(), referrer.digest),
            engine: None,
            push: None,
        }))
    }

    async fn stage(&self, content: &ImageOrIndex, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        self.stage_with(content, reference, &[]).await
    }

    /// The archive with the referrers' blobs beside the image's, as a layout holds them.
    async fn stage_with(
        &self,
        content: &ImageOrIndex,
        reference: &ImageRef,
        referrers: &[Referrer],
    ) -> Result<Box<dyn Staged>> {
        let (this, content, reference) = (self.clone(), content.clone(), reference.clone());
        let referrers = referrers.to_vec();
        blocking(move || this.write_staged(&content, &reference, &referrers)).await
    }
}

impl ArchivePublisher {
    /// The archive, written whole into a temp file beside the destination.
    fn write_staged(
        &self,
        content: &ImageOrIndex,
        reference: &ImageRef,
        referrers: &[Referrer],
    ) -> Result<Box<dyn Staged>> {
        let mut temp = temp_file_for(Self::WHAT, "archive", &self.file)?;
        let mut files = layout::files(content, reference)?;
        for referrer in referrers {
            let manifest = (&referrer.digest, &referrer.manifest);
            for (digest, bytes) in referrer.blobs.iter().map(|(d, b)| (d, b)).chain([manifest]) {
                let path = format!("blobs/{}", digest.replacen(':', "/", 1));
                if !files.iter().any(|(p, _)| *p == path) {
                    files.push((path, std::borrow::Cow::Owned(bytes.clone())));
                }
            }
        }
        let mut out = std::io::BufWriter::new(temp.as_file_mut());
        archive::write(&mut out, content, reference, &files, self.mtime)?;
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
