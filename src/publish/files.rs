//! File outputs: an OCI layout directory and a single archive file.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Published, Publisher, Staged};
use crate::error::{Error, Result};
use crate::oci::image::Image;
use crate::oci::{archive, layout, ImageRef};

fn not_writable(what: &'static str, path: &Path, reason: String) -> Error {
    Error::OutputNotWritable {
        what,
        path: path.to_path_buf(),
        reason,
    }
}

/// The nearest existing ancestor directory of `path`, where its temp files are made (so the
/// final rename stays on one filesystem).
fn existing_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(path).map_err(|e| not_writable(what, path, e.to_string()))?;
    let mut dir = absolute.parent();
    while let Some(candidate) = dir {
        match std::fs::metadata(candidate) {
            Ok(meta) if meta.is_dir() => return Ok(candidate.to_path_buf()),
            Ok(_) => {
                let reason = format!("{} is not a directory", candidate.display());
                return Err(not_writable(what, path, reason));
            }
            Err(_) => dir = candidate.parent(),
        }
    }
    Err(not_writable(
        what,
        path,
        "no existing parent directory".into(),
    ))
}

/// [`existing_ancestor`], checked to be writable by creating (and dropping) a temp file
/// there: for checks made before a build, when nothing is written yet.
fn writable_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
    let dir = existing_ancestor(what, path)?;
    tempfile::tempfile_in(&dir).map_err(|e| {
        not_writable(
            what,
            path,
            format!("{} is not writable: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

/// Where a file output's temp file goes; refuses a destination that is a directory.
fn file_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let reason = "it is a directory; give a file name".into();
        return Err(not_writable(what, path, reason));
    }
    existing_ancestor(what, path)
}

/// Checks that a file can be created at `path`: not a directory, under a writable directory.
pub fn check_writable(what: &'static str, path: &Path) -> Result<()> {
    file_ancestor(what, path)?;
    writable_ancestor(what, path).map(drop)
}

/// Writes a file by way of a temp file and a rename, so readers never see half of it.
pub fn write_file_atomically(what: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    let base = file_ancestor(what, path)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".ruchy-image-")
        .tempfile_in(&base)
        .map_err(Error::io(format!(
            "creating a temp file in {}",
            base.display()
        )))?;
    temp.write_all(bytes)
        .map_err(Error::io(format!("writing {}", temp.path().display())))?;
    set_mode(temp.path(), 0o644)?;
    StagedFile {
        temp,
        dest: path.to_path_buf(),
        what,
        kind: "file",
    }
    .persist()
    .map(drop)
}

/// Temp files and dirs are created private; outputs get the usual modes.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("setting the mode of {}", path.display())))
}

fn create_parent(what: &'static str, path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| Error::OutputNotWritable {
                what,
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        _ => Ok(()),
    }
}

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

    async fn stage(&self, image: &Image, reference: &ImageRef) -> Result<Box<dyn Staged>> {
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
    what: &'static str,
    kind: &'static str,
}

impl StagedFile {
    fn persist(self) -> Result<Published> {
        create_parent(self.what, &self.dest)?;
        self.temp
            .persist(&self.dest)
            .map_err(|e| Error::OutputNotWritable {
                what: self.what,
                path: self.dest.clone(),
                reason: e.error.to_string(),
            })?;
        Ok(Published {
            kind: self.kind,
            location: self.dest.display().to_string(),
            engine: None,
        })
    }
}

#[async_trait::async_trait]
impl Staged for StagedFile {
    async fn commit(self: Box<Self>) -> Result<Published> {
        self.persist()
    }
}

#[async_trait::async_trait]
impl Publisher for ArchivePublisher {
    fn preflight(&self) -> Result<()> {
        check_writable(Self::WHAT, &self.file)
    }

    async fn stage(&self, image: &Image, reference: &ImageRef) -> Result<Box<dyn Staged>> {
        let base = file_ancestor(Self::WHAT, &self.file)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".ruchy-image-archive-")
            .tempfile_in(&base)
            .map_err(Error::io(format!(
                "creating a temp file in {}",
                base.display()
            )))?;
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
            what: Self::WHAT,
            kind: "archive",
        }))
    }
}
