//! An uploaded build context, unpacked safely: a tar (gzip'd or not) whose entries must stay
//! inside the build's directory (no absolute paths, no `..`, no links out of it, no devices),
//! with a cap on what it unpacks to, so a gzip bomb stops early. Its root is a Cargo project
//! or holds one `.rs` / `.ruchy` file or one prebuilt executable.
//!
//! On a server the upload is the root: once unpacked, every symlink is resolved through the
//! others as the kernel would and must land inside it, and every path a manifest names
//! (frontmatter or any Cargo.toml: dependencies, build scripts, targets, workspace members)
//! must too. Nothing reads the upload before these checks pass.

use std::collections::VecDeque;
use std::ffi::OsString;
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

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The components of a relative path, `..` kept; none for an absolute one.
fn relative_parts(path: &Path) -> Option<VecDeque<OsString>> {
    let mut parts = VecDeque::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push_back(name.to_os_string()),
            Component::ParentDir => parts.push_back(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts)
}

/// Where `path` (relative to `root`) leads when every symlink on the way is followed, each
/// resolved inside `root`: none when a step leaves `root`, a link is absolute, or links loop.
/// Only what is inside `root` is ever looked at.
pub fn resolve_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut todo = relative_parts(path)?;
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if !at.pop() {
                return None;
            }
            continue;
        }
        at.push(&part);
        let here = root.join(&at);
        let is_link = std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            links += 1;
            let target = std::fs::read_link(&here).ok()?;
            if links > MAX_LINKS {
                return None;
            }
            at.pop();
            let mut next = relative_parts(&target)?;
            next.extend(todo);
            todo = next;
        }
    }
    Some(at)
}

/// What the checks look at in an unpacked context, relative to its root, found in one walk
/// (links not followed): every symlink, and every file named `Cargo.toml`.
#[derive(Default)]
struct Tree {
    links: Vec<PathBuf>,
    manifests: Vec<PathBuf>,
}

impl Tree {
    fn walk(root: &Path) -> Result<Tree, BadUpload> {
        let mut tree = Tree::default();
        tree.walk_under(root, Path::new(""))
            .map_err(|e| bad(format!("cannot read the unpacked context: {e}")))?;
        Ok(tree)
    }

    fn walk_under(&mut self, root: &Path, under: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(root.join(under))? {
            let entry = entry?;
            let relative = under.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                self.links.push(relative.clone());
            } else if kind.is_dir() {
                self.walk_under(root, &relative)?;
                continue;
            }
            if entry.file_name() == "Cargo.toml" {
                self.manifests.push(relative);
            }
        }
        Ok(())
    }
}

/// Refuses the upload if any symlink in it, followed through the others, leaves it.
fn links_stay_inside(root: &Path, tree: &Tree) -> Result<(), BadUpload> {
    for link in &tree.links {
        if resolve_inside(root, link).is_none() {
            let target = std::fs::read_link(root.join(link)).unwrap_or_default();
            return Err(bad(format!(
                "link `{}` -> `{}` leads outside the build context (followed through the \
                 other links in it, or in a loop)",
                link.display(),
                target.display()
            )));
        }
    }
    Ok(())
}

/// Keys whose string values cargo takes as paths, relative to the manifest's directory.
const PATH_KEYS: &[&str] = &["path", "build", "workspace", "members", "default-members"];

/// The paths a manifest names, with their keys (`dependencies.secret.path`). `metadata`
/// tables are tools' own business: cargo reads nothing in them.
fn manifest_paths(table: &toml::Table, prefix: &str, found: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let is_path = PATH_KEYS.contains(&key.as_str());
        match value {
            toml::Value::String(text) if is_path => found.push((name, text.clone())),
            toml::Value::Table(inner) if key != "metadata" => manifest_paths(inner, &name, found),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        toml::Value::String(text) if is_path => {
                            found.push((format!("{name}[{i}]"), text.clone()))
                        }
                        toml::Value::Table(inner) => {
                            manifest_paths(inner, &format!("{name}[{i}]"), found)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// Refuses a path the manifest at `manifest` (relative to `root`; `file` names it in
/// messages) names that leads outside `root`.
fn manifest_stays_inside(
    root: &Path,
    manifest: &Path,
    table: &toml::Table,
    file: &str,
) -> Result<(), BadUpload> {
    let dir = manifest.parent().unwrap_or(Path::new(""));
    let mut found = Vec::new();
    manifest_paths(table, "", &mut found);
    for (key, value) in found {
        if resolve_inside(root, &dir.join(&value)).is_none() {
            return Err(bad(format!(
                "`{key} = \"{value}\"` in {file} leads outside the build context: on the \
                 server, every path a manifest names must be inside what is sent"
            )));
        }
    }
    Ok(())
}

/// Refuses the upload if a manifest in it (a Cargo.toml anywhere, or the frontmatter of the
/// one source file) names a path outside it. A manifest that does not parse is left to cargo.
fn manifests_stay_inside(root: &Path, tree: &Tree, source: &str) -> Result<(), BadUpload> {
    let unreadable = |e: std::io::Error| bad(format!("cannot read the unpacked context: {e}"));
    if source.ends_with(".rs") {
        let code = std::fs::read(root.join(source)).map_err(unreadable)?;
        let code = String::from_utf8_lossy(&code);
        let embedded = crate::pipeline::frontmatter::extract(Path::new(source), &code)
            .map_err(|e| bad(crate::core::error::causes(&e)))?;
        if let Some((_, table)) = embedded.manifest {
            manifest_stays_inside(root, Path::new(source), &table, source)?;
        }
        return Ok(());
    }
    for manifest in &tree.manifests {
        // A Cargo.toml that is a link was checked above: it leads inside.
        let Some(real) = resolve_inside(root, manifest) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(root.join(real)) else {
            continue;
        };
        if let Ok(table) = text.parse::<toml::Table>() {
            let file = manifest.display().to_string();
            manifest_stays_inside(root, manifest, &table, &file)?;
        }
    }
    Ok(())
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
pub fn unpack(body: impl Read, dir: &Path, max_unpacked: u64) -> Result<String, BadUpload> {
    let made = dir
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::create_dir(dir));
    // Nothing is removed that this call did not make.
    made.map_err(|e| bad(format!("cannot unpack: {}", e.kind())))?;
    let result = unpack_into(body, dir, max_unpacked);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn unpack_into(body: impl Read, dir: &Path, max_unpacked: u64) -> Result<String, BadUpload> {
    let mut body = std::io::BufReader::new(body);
    let gzipped = std::io::BufRead::fill_buf(&mut body).is_ok_and(|b| b.starts_with(&[0x1f, 0x8b]));
    let reader: Box<dyn Read + '_> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(body))
    } else {
        Box::new(body)
    };
    let mut archive = tar::Archive::new(Capped {
        inner: reader,
        left: max_unpacked,
    });
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
            T::Link => {
                // A hard link's target is a path from the root, through the links made so
                // far: it must resolve inside, or `link(2)` would reach a file out of it.
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("a link has an unreadable target: {e}")))?
                    .ok_or_else(|| bad("a link has no target"))?;
                if resolve_inside(dir, &target).is_none() {
                    return Err(bad(format!(
                        "link `{}` -> `{}` points outside the build context",
                        path.display(),
                        target.display()
                    )));
                }
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("a link has an unreadable target: {e}")))?
                    .ok_or_else(|| bad("a link has no target"))?;
                // A symlink resolves from its own directory (through other links: checked
                // once all are made).
                let from = path.parent().unwrap_or(Path::new("")).join(&target);
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
    let tree = Tree::walk(dir)?;
    links_stay_inside(dir, &tree)?;
    let source = source_in(dir)?;
    manifests_stay_inside(dir, &tree, &source)?;
    Ok(source)
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
            unpack(&body[..], &dir.path().join("b"), 1 << 20).unwrap(),
            "app"
        );
        let body = tar_of(&[("app.rs", tar::EntryType::Regular, b"fn main() {}", None)]);
        assert_eq!(
            unpack(&body[..], &dir.path().join("a"), 1 << 20).unwrap(),
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
        assert_eq!(
            unpack(&body[..], &dir.path().join("c"), 1 << 20).unwrap(),
            "."
        );
        // A directory that is there already is not this upload's: it is neither used nor
        // removed.
        let err = unpack(&body[..], &dir.path().join("c"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("cannot unpack"), "{err}");
        assert!(dir.path().join("c/Cargo.toml").is_file());
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
            let err = unpack(&body[..], &target, 1024).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!target.exists(), "{err}");
        }
        assert!(!dir.path().join("evil.rs").exists());
    }

    /// The chain: each link stays inside on its own, together they climb out.
    pub(super) fn climbing_chain() -> Vec<(String, tar::EntryType, Option<String>)> {
        use tar::EntryType as T;
        let mut entries = vec![
            ("a".to_string(), T::Directory, None),
            ("a/l".to_string(), T::Symlink, Some("..".to_string())),
            ("a/l/up1".to_string(), T::Symlink, Some("..".to_string())),
        ];
        for k in 2..=8 {
            entries.push((
                format!("a/l/up{k}"),
                T::Symlink,
                Some(format!("up{}/..", k - 1)),
            ));
        }
        entries.push((
            "Cargo.toml".into(),
            T::Symlink,
            Some("a/l/up8/etc/hostname".into()),
        ));
        entries
    }

    #[test]
    fn a_chain_of_links_that_climbs_out_is_refused() {
        let chain = climbing_chain();
        let entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = chain
            .iter()
            .map(|(n, k, l)| (n.as_str(), *k, &b""[..], l.as_deref()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ctx");
        let err = unpack(&tar_of(&entries)[..], &target, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("leads outside"), "{err}");
        assert!(!target.exists());
        // A hard link through the chain to a file outside is refused as it comes.
        let mut entries = entries[..entries.len() - 1].to_vec();
        entries.push(("x", tar::EntryType::Link, b"", Some("a/l/up8/etc/hostname")));
        let err = unpack(&tar_of(&entries)[..], &target, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        // Links that stay inside, through each other, are fine.
        let inside = tar_of(&[
            ("d", tar::EntryType::Directory, b"", None),
            ("d/Cargo.toml", tar::EntryType::Regular, b"[package]", None),
            ("e", tar::EntryType::Symlink, b"", Some("d")),
            (
                "Cargo.toml",
                tar::EntryType::Symlink,
                b"",
                Some("e/../e/Cargo.toml"),
            ),
        ]);
        assert_eq!(unpack(&inside[..], &target, 1 << 20).unwrap(), ".");
    }

    #[test]
    fn manifest_paths_out_of_the_upload_are_refused_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ctx");
        let file =
            b"---\n[dependencies]\nsecret = { path = \"/some/host/dir\" }\n---\nfn main() {}\n";
        let body = tar_of(&[("app.rs", tar::EntryType::Regular, file, None)]);
        let err = unpack(&body[..], &target, 1 << 20).unwrap_err().to_string();
        assert!(
            err.contains("`dependencies.secret.path = \"/some/host/dir\"` in app.rs"),
            "{err}"
        );
        let cases: [&[u8]; 4] = [
            b"[package]\nname = \"x\"\n[dependencies]\nup = { path = \"../../up\" }\n",
            b"[package]\nname = \"x\"\nbuild = \"../../build.rs\"\n",
            b"[workspace]\nmembers = [\"ok\", \"../../other\"]\n",
            b"[package]\nname = \"x\"\n[target.'cfg(unix)'.build-dependencies]\nb = { path = \"/b\" }\n",
        ];
        for manifest in cases {
            let body = tar_of(&[
                (
                    "Cargo.toml",
                    tar::EntryType::Regular,
                    b"[package]\nname = \"root\"\n",
                    None,
                ),
                ("sub/Cargo.toml", tar::EntryType::Regular, manifest, None),
            ]);
            let err = unpack(&body[..], &target, 1 << 20).unwrap_err().to_string();
            assert!(err.contains("in sub/Cargo.toml leads outside"), "{err}");
            assert!(!target.exists());
        }
        let fine = tar_of(&[
            (
                "Cargo.toml",
                tar::EntryType::Regular,
                b"[workspace]\nmembers = [\"a\", \"b\"]\n",
                None,
            ),
            (
                "a/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]\nname = \"a\"\n[dependencies]\nb = { path = \"../b\" }\n",
                None,
            ),
            (
                "b/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]\nname = \"b\"\n[package.metadata.x]\npath = \"/anything\"\n",
                None,
            ),
        ]);
        assert_eq!(unpack(&fine[..], &target, 1 << 20).unwrap(), ".");
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
        let err = unpack(&small[..], &dir.path().join("x"), 4 << 20).unwrap_err();
        assert!(err.to_string().contains("size limit"), "{err}");
        assert!(!dir.path().join("x").exists());
    }
}
