//! An uploaded build context, unpacked safely: a tar (gzip'd or not) whose entries must stay
//! inside the build's directory (no absolute paths, no `..`, no links out of it, no devices),
//! with a cap on what it unpacks to, so a gzip bomb stops early. Its root is a Cargo project
//! or holds one `.rs` / `.ruchy` file or one prebuilt executable.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::pipeline::source;

/// What is wrong with an upload (the API answers 400 with it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadUpload(pub String);

fn bad(message: impl Into<String>) -> BadUpload {
    BadUpload(message.into())
}

/// Whether `path` is relative and never climbs out of where it starts.
fn stays_inside(path: &Path) -> bool {
    let mut depth: i64 = 0;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Reads at most `limit` bytes in all; one more is an error.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other("the upload unpacks to more than the size limit")
        })?;
        Ok(n)
    }
}

/// Unpacks `body` into `dir` (which must not exist yet; it is made, and removed again on any
/// error). Returns what to build in it: `.` for a Cargo project, else the one source file.
pub fn unpack(body: &[u8], dir: &Path, max_unpacked: u64) -> Result<String, BadUpload> {
    let result = unpack_into(body, dir, max_unpacked);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn unpack_into(body: &[u8], dir: &Path, max_unpacked: u64) -> Result<String, BadUpload> {
    let gzipped = body.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(body))
    } else {
        Box::new(body)
    };
    let mut archive = tar::Archive::new(Capped {
        inner: reader,
        left: max_unpacked,
    });
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot unpack: {e}")))?;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("the body is not a tar archive: {e}")))?;
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the body is not a valid tar: {e}")))?;
        count += 1;
        let path: PathBuf = entry
            .path()
            .map_err(|e| bad(format!("an entry has an unreadable path: {e}")))?
            .into_owned();
        if !stays_inside(&path) {
            return Err(bad(format!(
                "entry `{}` points outside the build context (absolute or ..)",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular
            | T::Directory
            | T::Continuous
            | T::GNULongName
            | T::XGlobalHeader
            | T::XHeader
            | T::GNULongLink => {}
            T::Symlink | T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("a link has an unreadable target: {e}")))?
                    .ok_or_else(|| bad("a link has no target"))?;
                // A symlink resolves from its own directory; a hard link from the root.
                let from = match kind {
                    T::Symlink => path.parent().unwrap_or(Path::new("")).join(&target),
                    _ => target.to_path_buf(),
                };
                if !stays_inside(&from) {
                    return Err(bad(format!(
                        "link `{}` -> `{}` points outside the build context",
                        path.display(),
                        target.display()
                    )));
                }
            }
            other => {
                return Err(bad(format!(
                    "entry `{}` is a {other:?}; only files, directories and links are accepted",
                    path.display()
                )))
            }
        }
        // `unpack_in` refuses paths out of `dir` once more, and never follows a link that
        // an earlier entry made.
        entry.unpack_in(dir).map_err(|e| {
            bad(format!(
                "cannot unpack `{}`: {}",
                path.display(),
                crate::core::error::causes(&e)
            ))
        })?;
    }
    if count == 0 {
        return Err(bad("the archive is empty"));
    }
    source_in(dir)
}

/// What to build in an unpacked context.
fn source_in(dir: &Path) -> Result<String, BadUpload> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(".".into());
    }
    let sources: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot read the unpacked context: {e}")))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".rs") || name.ends_with(".ruchy") || source::is_prebuilt(&e.path())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match sources.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(bad(
            "the archive's root has no Cargo.toml, no .rs or .ruchy file and no Linux executable",
        )),
        several => Err(bad(format!(
            "the archive's root has no Cargo.toml and several sources ({}); send one, or a Cargo project",
            several.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            // Written raw, so the tar crate's own checks do not stop the bad names we test.
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                header.as_gnu_mut().unwrap().linkname[..link.len()]
                    .copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_single_file_or_a_project_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let elf = b"\x7fELF\x02\x01\x01";
        let body = tar_of(&[("app", tar::EntryType::Regular, elf, None)]);
        assert_eq!(
            unpack(&body, &dir.path().join("b"), 1 << 20).unwrap(),
            "app"
        );
        let body = tar_of(&[("app.rs", tar::EntryType::Regular, b"fn main() {}", None)]);
        assert_eq!(
            unpack(&body, &dir.path().join("a"), 1 << 20).unwrap(),
            "app.rs"
        );
        let body = tar_of(&[
            ("Cargo.toml", tar::EntryType::Regular, b"[package]", None),
            (
                "src/main.rs",
                tar::EntryType::Regular,
                b"fn main() {}",
                None,
            ),
        ]);
        assert_eq!(unpack(&body, &dir.path().join("b"), 1 << 20).unwrap(), ".");
    }

    #[test]
    fn escapes_bombs_and_non_tars_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ctx");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_of(&[("../evil.rs", tar::EntryType::Regular, b"x", None)]),
                "outside",
            ),
            (
                tar_of(&[("/etc/evil.rs", tar::EntryType::Regular, b"x", None)]),
                "outside",
            ),
            (
                tar_of(&[("link", tar::EntryType::Symlink, b"", Some("../../etc"))]),
                "outside",
            ),
            (
                tar_of(&[("abs", tar::EntryType::Symlink, b"", Some("/etc/passwd"))]),
                "outside",
            ),
            (
                b"this is not a tar at all, just some text".repeat(20),
                "tar",
            ),
            (
                tar_of(&[("a.rs", tar::EntryType::Regular, &[0u8; 4096], None)]),
                "size limit",
            ),
        ];
        for (body, expected) in cases {
            let err = unpack(&body, &target, 1024).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!target.exists(), "{err}");
        }
        assert!(!dir.path().join("evil.rs").exists());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 16 << 20];
        let body = tar_of(&[("big.rs", tar::EntryType::Regular, &zeros, None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &body).unwrap();
        let small = gz.finish().unwrap();
        assert!(small.len() < 1 << 20, "{}", small.len());
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&small, &dir.path().join("x"), 4 << 20).unwrap_err();
        assert!(err.to_string().contains("size limit"), "{err}");
        assert!(!dir.path().join("x").exists());
    }
}
