//! Small helpers every stage shares: atomic file writes, checks that an output can be written,
//! SHA-256 digests, and streaming what a blocking thread writes. They sit below every other module, so none of them imports back.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::core::error::{Error, Result};

/// Lower-case hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `sha256:<hex>` of some bytes, the form OCI digests take.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Runs blocking work (file I/O, compression, child processes we wait for) on tokio's blocking
/// pool, so the async runtime, even a current-thread one, keeps serving other tasks. A panic
/// in `work` is passed on.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking work was cancelled: {e}"),
    }
}

pub(crate) fn not_writable(what: &'static str, path: &Path, reason: String) -> Error {
    Error::OutputNotWritable {
        what,
        path: path.to_path_buf(),
        reason,
    }
}

/// The nearest existing ancestor directory of `path`, where its temp files are made (so the
/// final rename stays on one filesystem).
pub(crate) fn existing_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
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
pub(crate) fn writable_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
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
pub(crate) fn file_ancestor(what: &'static str, path: &Path) -> Result<PathBuf> {
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

/// A temp file beside `path`, named for this process (see [`crate::adapters::cleanup`]) so that a run
/// after a crash can tell it is stale; removed when dropped.
pub(crate) fn temp_file_for(
    what: &'static str,
    kind: &str,
    path: &Path,
) -> Result<tempfile::NamedTempFile> {
    let base = file_ancestor(what, path)?;
    tempfile::Builder::new()
        .prefix(&crate::adapters::cleanup::temp_prefix(kind))
        .tempfile_in(&base)
        .map_err(Error::io(format!(
            "creating a temp file in {}",
            base.display()
        )))
}

/// Moves a finished temp file to `path`, creating its parent directories. A device or a
/// pipe there (`--json /dev/null`, `-o /dev/stdout`, a FIFO) is written to instead: renaming
/// over it would leave a plain file where the device was.
pub(crate) fn persist(
    what: &'static str,
    mut temp: tempfile::NamedTempFile,
    path: &Path,
) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        use std::io::Seek;
        let copied = temp.rewind().and_then(|()| {
            let mut device = std::fs::OpenOptions::new().write(true).open(path)?;
            std::io::copy(&mut temp, &mut device)
        });
        return copied
            .map(drop)
            .map_err(|e| not_writable(what, path, e.to_string()));
    }
    create_parent(what, path)?;
    temp.persist(path)
        .map(drop)
        .map_err(|e| not_writable(what, path, e.error.to_string()))
}

/// Writes a file by way of a temp file and a rename, so readers never see half of it.
pub fn write_file_atomically(what: &'static str, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = temp_file_for(what, "file", path)?;
    temp.write_all(bytes)
        .map_err(Error::io(format!("writing {}", temp.path().display())))?;
    set_mode(temp.path(), 0o644)?;
    persist(what, temp, path)
}

/// Temp files and dirs are created private; outputs get the usual modes.
/// Writes `content` unless the file already holds it, so its modification time (which cargo's
/// fingerprints compare) changes only with its content. True when it wrote.
pub(crate) fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool> {
    if std::fs::read(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    std::fs::write(path, content).map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(true)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("setting the mode of {}", path.display())))
}

pub(crate) fn create_parent(what: &'static str, path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| not_writable(what, path, e.to_string()))
        }
        _ => Ok(()),
    }
}

/// A writer that hands what is written, in chunks, to an async receiver: a tar made on a
/// blocking thread (a build context, a builder image) is streamed to the engine as it is made.
pub struct ChunkSender {
    chunk: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
}

const CHUNK: usize = 1 << 20;

impl ChunkSender {
    /// A writer whose chunks (1 MiB each, and what is left on flush) go to `sender`.
    pub fn new(sender: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>) -> ChunkSender {
        ChunkSender {
            chunk: Vec::with_capacity(CHUNK),
            sender,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.sender
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::other("the engine stopped reading"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_pipe_is_written_to_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_file_atomically("the metrics JSON", &fifo, b"{}\n").unwrap();
        // Checked before the reader is joined: a replaced pipe never gets a writer.
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the pipe was replaced by {kind:?}");
        assert_eq!(reader.join().unwrap(), b"{}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fifo"], "a temp file was left");
    }

    #[test]
    fn atomic_writes_leave_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_file_atomically("a test file", &path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.json"]);
        assert!(
            check_writable("a test file", dir.path()).is_err(),
            "a directory"
        );
    }
}
