//! The build context: which files of a project (and of the path dependencies a single file
//! names) go into the builder container, what they add up to, a digest of them for the build
//! cache, and the tar stream that carries them.
//!
//! Files ignored by `.gitignore`, `.dockerignore` or `.ruchyimageignore` stay home, as do
//! `.git`, the target directory and any directory with a `CACHEDIR.TAG`. Symlinks go as
//! symlinks, never followed: a link out of the project (or a loop) is not the builder's
//! business. Nothing is held in memory: files are read once for the digest and once more
//! while the tar streams to the engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::error::{Error, Result};
use crate::pipeline::source::Project;

/// The ignore files honoured, besides `.gitignore`.
const IGNORE_FILES: [&str; 2] = [".dockerignore", ".ruchyimageignore"];

/// One file or symlink of the project.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Path under the project root, `/`-separated.
    pub relative: String,
    /// Where it is on this machine.
    pub path: PathBuf,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time: cargo's fingerprints in the target volume compare it.
    pub mtime: u64,
    /// Size in bytes (0 for a symlink).
    pub size: u64,
    /// The link target, for a symlink.
    pub link: Option<PathBuf>,
    /// What is sent instead of the file's content (a generated manifest).
    pub content: Option<Vec<u8>>,
}

/// The user a builder runs as, who owns what the tar holds, and the directories (mount
/// points) made theirs besides the ones the files go in.
pub(super) struct TarOwner<'a> {
    /// User and group ID.
    pub uid: u64,
    /// Directories (no leading `/`).
    pub dirs: &'a [&'a str],
}

/// The files a build sends.
#[derive(Debug, Clone)]
pub(super) struct Context {
    /// Sorted by path.
    pub entries: Vec<Entry>,
    /// SHA-256 over every entry's path, mode, size, content or link target.
    pub digest: [u8; 32],
}

/// The files and symlinks under `root` a build sends, named `prefix` + their path under it.
fn walk(root: &Path, target_dir: &Path, prefix: &str) -> Result<Vec<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let target_dir = target_dir.to_path_buf();
    let mut walk = ignore::WalkBuilder::new(root);
    walk.hidden(false)
        .follow_links(false)
        .require_git(false)
        .parents(false)
        .git_global(false)
        .filter_entry(move |e| {
            let skip = e.file_type().is_some_and(|t| t.is_dir())
                && (e.file_name() == ".git"
                    || e.path() == target_dir
                    || e.path().join("CACHEDIR.TAG").exists());
            !skip
        });
    for name in IGNORE_FILES {
        walk.add_custom_ignore_filename(name);
    }
    let mut entries = Vec::new();
    for found in walk.build() {
        let found = found.map_err(|e| Error::Io {
            context: format!("reading the project at {}", root.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let path = found.path().to_path_buf();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        let link = match meta.file_type() {
            t if t.is_symlink() => Some(
                std::fs::read_link(&path)
                    .map_err(Error::io(format!("reading {}", path.display())))?,
            ),
            t if t.is_file() => None,
            _ => continue,
        };
        let relative = path.strip_prefix(root).expect("walked from root");
        entries.push(Entry {
            relative: format!("{prefix}{}", relative.to_string_lossy()),
            path,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime().max(0) as u64,
            size: if link.is_some() { 0 } else { meta.len() },
            link,
            content: None,
        });
    }
    Ok(entries)
}

/// The files and symlinks under `root` a build would send (ignored files and `target_dir`
/// left out): what a dev loop watches.
pub fn project_files(root: &Path, target_dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(walk(root, target_dir, "")?
        .into_iter()
        .map(|e| e.path)
        .collect())
}

impl Context {
    /// Walks `root`, leaving out ignored files and `target_dir`, and digests what stays.
    pub fn collect(root: &Path, target_dir: &Path) -> Result<Context> {
        Context::digested(walk(root, target_dir, "")?)
    }

    /// The generated project of a single file, with the path dependencies its manifest names
    /// (each walked with the same rules) and the manifest that finds them where they are sent.
    pub fn collect_project(project: &Project) -> Result<Context> {
        let mut entries = walk(&project.workspace_root, &project.target_dir, "")?;
        if let Some(deps) = &project.path_dependencies {
            for (dir, under) in &deps.trees {
                // A directory inside another one sent goes with it.
                if deps
                    .trees
                    .iter()
                    .any(|(o, _)| o != dir && dir.starts_with(o))
                {
                    continue;
                }
                entries.extend(walk(dir, &dir.join("target"), &format!("{under}/"))?);
            }
            let manifest = entries.iter_mut().find(|e| e.relative == "Cargo.toml");
            if let Some(entry) = manifest {
                entry.size = deps.manifest.len() as u64;
                entry.content = Some(deps.manifest.clone().into_bytes());
            }
        }
        Context::digested(entries)
    }

    /// The entries sorted, and their digest.
    fn digested(mut entries: Vec<Entry>) -> Result<Context> {
        entries.sort_by(|a, b| a.relative.cmp(&b.relative));
        let mut digest = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        for entry in &entries {
            digest.update(entry.relative.as_bytes());
            digest.update([0]);
            digest.update(entry.mode.to_le_bytes());
            digest.update(entry.size.to_le_bytes());
            match (&entry.link, &entry.content) {
                (Some(target), _) => digest.update(target.as_os_str().as_encoded_bytes()),
                (None, Some(content)) => digest.update(content),
                (None, None) => {
                    let mut file = std::fs::File::open(&entry.path)
                        .map_err(Error::io(format!("reading {}", entry.path.display())))?;
                    loop {
                        let n = file
                            .read(&mut buffer)
                            .map_err(Error::io(format!("reading {}", entry.path.display())))?;
                        if n == 0 {
                            break;
                        }
                        digest.update(&buffer[..n]);
                    }
                }
            }
        }
        Ok(Context {
            entries,
            digest: digest.finalize().into(),
        })
    }

    /// The context with `lock` as its root's Cargo.lock (in place of the one it has).
    pub fn with_lockfile(mut self, lock: Vec<u8>) -> Context {
        self.entries.retain(|e| e.relative != "Cargo.lock");
        self.entries.push(Entry {
            relative: "Cargo.lock".into(),
            path: PathBuf::from("Cargo.lock"),
            mode: 0o644,
            mtime: 0,
            size: lock.len() as u64,
            link: None,
            content: Some(lock),
        });
        self.entries.sort_by(|a, b| a.relative.cmp(&b.relative));
        self
    }

    /// Bytes of the files sent.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Writes the tar that goes to `/` of the builder: the project under `src/` (every entry
    /// dated `mtime` when given), then `extras` (path, mode, bytes: the host's CA bundle...).
    pub fn write_tar(
        &self,
        out: impl Write,
        extras: &[(&str, u32, &[u8])],
        mtime: Option<u64>,
    ) -> Result<()> {
        self.write_tar_under(out, "src/", extras, mtime, None)
            .map(drop)
    }

    /// [`Context::write_tar`] for a builder that runs as `owner`: every entry is the owner's,
    /// and so is every directory it goes in, and each of `owner.dirs` (mount points: the
    /// engine gives the owner the volume there when it unpacks the tar with its owners).
    pub fn write_tar_owned(
        &self,
        out: impl Write,
        extras: &[(&str, u32, &[u8])],
        mtime: Option<u64>,
        owner: &TarOwner<'_>,
    ) -> Result<()> {
        self.write_tar_under(out, "src/", extras, mtime, Some(owner))
            .map(drop)
    }

    /// The same tar with every entry under `prefix` (`""` for the context's own root);
    /// returns the writer.
    pub fn write_tar_under<W: Write>(
        &self,
        out: W,
        prefix: &str,
        extras: &[(&str, u32, &[u8])],
        mtime: Option<u64>,
        owner: Option<&TarOwner<'_>>,
    ) -> Result<W> {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        let uid = owner.map_or(0, |o| o.uid);
        if let Some(owner) = owner {
            let names = self
                .entries
                .iter()
                .map(|e| format!("{prefix}{}", e.relative))
                .chain(extras.iter().map(|(path, _, _)| path.to_string()));
            let mut dirs: std::collections::BTreeSet<String> = owner
                .dirs
                .iter()
                .map(|d| format!("{}/", d.trim_end_matches('/')))
                .collect();
            for name in names {
                let mut at = 0;
                while let Some(slash) = name[at..].find('/') {
                    at += slash + 1;
                    dirs.insert(name[..at].to_string());
                }
            }
            for dir in dirs {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(uid);
                header.set_gid(uid);
                header.set_mtime(mtime.unwrap_or(0));
                header.set_size(0);
                tar.append_data(&mut header, &dir, std::io::empty())
                    .map_err(Error::io(format!("sending /{dir}")))?;
            }
        }
        for entry in &self.entries {
            let name = format!("{prefix}{}", entry.relative);
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_mtime(mtime.unwrap_or(entry.mtime));
            let packed = match (&entry.link, &entry.content) {
                (Some(target), _) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, &name, target)
                }
                (None, Some(content)) => {
                    header.set_size(content.len() as u64);
                    tar.append_data(&mut header, &name, &content[..])
                }
                (None, None) => {
                    let file = std::fs::File::open(&entry.path)
                        .map_err(Error::io(format!("reading {}", entry.path.display())))?;
                    header.set_size(entry.size);
                    // A file that grew since it was measured is cut at its measured size.
                    tar.append_data(&mut header, &name, file.take(entry.size))
                }
            };
            packed.map_err(Error::io(format!("sending {}", entry.path.display())))?;
        }
        for (path, mode, bytes) in extras {
            let mut header = tar::Header::new_gnu();
            header.set_mode(*mode);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, *bytes)
                .map_err(Error::io(format!("sending /{path}")))?;
        }
        let mut out = tar.into_inner().map_err(Error::io("sending the source"))?;
        out.flush().map_err(Error::io("sending the source"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(context: &Context) -> Vec<&str> {
        context
            .entries
            .iter()
            .map(|e| e.relative.as_str())
            .collect()
    }

    #[test]
    fn ignored_files_stay_home_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("Cargo.toml", "[package]"),
            ("src/main.rs", "fn main() {}"),
            (".gitignore", "data/\n*.log\n"),
            (".ruchyimageignore", "notes.txt\n"),
            ("data/big.bin", "x"),
            ("build.log", "x"),
            ("notes.txt", "x"),
            ("target/debug/app", "x"),
            (".git/HEAD", "ref"),
            ("cache/CACHEDIR.TAG", "Signature"),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        }
        std::os::unix::fs::symlink("..", root.join("src/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        let context = Context::collect(root, &root.join("target")).unwrap();
        assert_eq!(
            names(&context),
            [
                ".gitignore",
                ".ruchyimageignore",
                "Cargo.toml",
                "passwd",
                "src/main.rs",
                "src/up"
            ]
        );
        let mut tar = Vec::new();
        context
            .write_tar(&mut tar, &[("etc/ca.crt", 0o644, b"ca")], None)
            .unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let listed: Vec<(String, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (e.path().unwrap().display().to_string(), link)
            })
            .collect();
        assert!(
            listed.contains(&("src/src/up".into(), Some("..".into()))),
            "{listed:?}"
        );
        assert!(listed.contains(&("src/passwd".into(), Some("/etc/passwd".into()))));
        assert_eq!(listed.last().unwrap().0, "etc/ca.crt");
    }

    #[test]
    fn the_digest_follows_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.rs");
        std::fs::write(&file, "fn main() {}").unwrap();
        let digest = || {
            Context::collect(dir.path(), &dir.path().join("target"))
                .unwrap()
                .digest
        };
        let first = digest();
        assert_eq!(first, digest());
        std::fs::write(&file, "fn main() { }").unwrap();
        let edited = digest();
        assert_ne!(first, edited);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(edited, digest());
    }
}
