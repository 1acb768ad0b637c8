//! A base image's filesystem as its layers describe it, read safely: whiteouts honoured,
//! entries with `..` or absolute paths and links escaping the root rejected, decompression
//! bounded so a gzip bomb is an error rather than an exhausted machine.
//!
//! Only what the assembler asks about is kept: which paths exist (and what they are), and
//! the contents of the account files.

use std::collections::BTreeMap;
use std::io::Read;

use crate::core::error::{Error, Result};

/// Files whose contents are kept, for merging users into them.
const KEPT: &[&str] = &["etc/passwd", "etc/group"];
/// Symlink hops before a lookup gives up (the kernel's own limit).
const MAX_HOPS: usize = 40;

/// Bounds on what reading one layer may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes one layer may unpack to.
    pub max_layer_bytes: u64,
    /// Most bytes unpacked per compressed byte, once past `ratio_floor`.
    pub max_ratio: u64,
    /// Unpacked size below which the ratio is not checked (small layers compress well).
    pub ratio_floor: u64,
}

impl Default for Limits {
    /// 8 GiB per layer (the command line and `serve` take `RUCHY_IMAGE_MAX_LAYER_SIZE`
    /// instead when it is set), 1024:1 past 64 MiB.
    fn default() -> Self {
        Limits {
            max_layer_bytes: 8 << 30,
            max_ratio: 1024,
            ratio_floor: 64 << 20,
        }
    }
}

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file; contents kept only for the account files.
    File {
        /// Size in bytes.
        size: u64,
        /// Contents, for the files in `KEPT`.
        content: Option<Vec<u8>>,
    },
    /// A symbolic link to this target.
    Symlink(String),
    /// A hard link to this path.
    Hardlink(String),
    /// Anything else (devices, fifos).
    Other,
}

/// The merged view of a base's layers.
#[derive(Debug, Clone, Default)]
pub struct BaseFs {
    nodes: BTreeMap<String, Node>,
}

fn invalid(layer: usize, path: &str, reason: &str) -> Error {
    Error::InvalidBase {
        reason: format!("layer {layer}: entry {path:?} {reason}"),
    }
}

/// A layer entry's path, normalized: relative, no `.` or empty parts. `..` is refused.
fn normalize(layer: usize, raw: &str) -> Result<String> {
    if raw.starts_with('/') {
        return Err(invalid(layer, raw, "has an absolute path"));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(layer, raw, "climbs out of the root with `..`")),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Joins a relative symlink target to the link's directory; `None` if it climbs above `/`.
fn join_relative(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Counts what is read through it and stops past the limits.
struct Bounded<R> {
    inner: R,
    read: u64,
    compressed: u64,
    limits: Limits,
    layer: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let l = &self.limits;
        let too_big = self.read > l.max_layer_bytes;
        let too_dense =
            self.read > l.ratio_floor && self.read > self.compressed.saturating_mul(l.max_ratio);
        if too_big || too_dense {
            return Err(std::io::Error::other(format!(
                "layer {} unpacks to more than {} bytes from {} compressed: refusing a likely \
                 decompression bomb (RUCHY_IMAGE_MAX_LAYER_SIZE raises the size limit)",
                self.layer, self.read, self.compressed
            )));
        }
        Ok(n)
    }
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl BaseFs {
    /// Applies one layer blob (tar, gzip'd or zstd'd tar, told apart by their magic numbers
    /// as engines do) on top of what is there; returns the unpacked (tar) size.
    pub fn apply_layer(&mut self, index: usize, blob: &[u8], limits: &Limits) -> Result<u64> {
        let reader: Box<dyn Read + '_> = if blob.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(blob))
        } else if blob.starts_with(&ZSTD_MAGIC) {
            Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(|e| {
                Error::InvalidBase {
                    reason: format!("layer {index} is not readable zstd: {e}"),
                }
            })?)
        } else {
            Box::new(blob)
        };
        let bounded = Bounded {
            inner: reader,
            read: 0,
            compressed: blob.len() as u64,
            limits: *limits,
            layer: index,
        };
        let read_error = |e: std::io::Error| Error::InvalidBase {
            reason: format!("layer {index}: {e}"),
        };
        let mut archive = tar::Archive::new(bounded);
        let mut unpacked = 0;
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut whiteouts: Vec<(String, bool)> = Vec::new();
        for entry in archive.entries().map_err(read_error)? {
            let mut entry = entry.map_err(read_error)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalize(index, &raw)?;
            if path.is_empty() {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(&path);
            if name == ".wh..wh..opq" {
                whiteouts.push((parent(&path).to_string(), true));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let dir = parent(&path);
                let hidden = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                whiteouts.push((hidden, false));
                continue;
            }
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let node = match entry.header().entry_type() {
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => {
                    let target = link();
                    if !target.starts_with('/') && join_relative(parent(&path), &target).is_none() {
                        return Err(invalid(
                            index,
                            &raw,
                            &format!("is a link to {target:?}, which escapes the root"),
                        ));
                    }
                    Node::Symlink(target)
                }
                tar::EntryType::Link => Node::Hardlink(normalize(index, &link())?),
                kind if kind.is_file() => {
                    let size = entry.header().size().unwrap_or(0);
                    let content = if KEPT.contains(&path.as_str()) {
                        let mut bytes = Vec::new();
                        entry.read_to_end(&mut bytes).map_err(read_error)?;
                        Some(bytes)
                    } else {
                        None
                    };
                    Node::File { size, content }
                }
                _ => Node::Other,
            };
            entries.push((path, node));
        }
        // The rest of the stream (padding, trailer) counts toward the unpacked size too.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink()).map_err(read_error)?;
        unpacked += rest.read;
        // Whiteouts hide what lower layers had; entries of this layer stand.
        for (path, opaque) in whiteouts {
            let prefix = format!("{path}/");
            self.nodes
                .retain(|p, _| !p.starts_with(&prefix) && (opaque || p != &path));
        }
        for (path, node) in entries {
            self.nodes.insert(path, node);
        }
        Ok(unpacked)
    }

    /// Resolves `path` (absolute or relative to `/`) through symlinks and hard links.
    pub fn lookup(&self, path: &str) -> Option<(&str, &Node)> {
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .rev()
            .collect();
        let mut current = String::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                current = parent(&current).to_string();
                continue;
            }
            let next = if current.is_empty() {
                part
            } else {
                format!("{current}/{part}")
            };
            let Some(node) = self.nodes.get(&next) else {
                // Layers need not list parent directories: a path with children is one.
                self.is_implicit_dir(&next).then_some(())?;
                current = next;
                continue;
            };
            match node {
                Node::Symlink(target) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return None;
                    }
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        current.clone()
                    };
                    let resolved = join_relative(&base, target)?;
                    // Continue from the root with the resolved path's parts.
                    pending.extend(
                        resolved
                            .split('/')
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .rev(),
                    );
                    current = String::new();
                }
                Node::Hardlink(target) => {
                    let (key, _) = self.nodes.get_key_value(target)?;
                    current = key.clone();
                }
                _ => current = next,
            }
        }
        match self.nodes.get_key_value(&current) {
            Some((key, node)) => Some((key.as_str(), node)),
            None if self.is_implicit_dir(&current) => Some(("", &Node::Dir)),
            None => None,
        }
    }

    fn is_implicit_dir(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Whether `path` exists (following links).
    pub fn exists(&self, path: &str) -> bool {
        path.trim_matches('/').is_empty() || self.lookup(path).is_some()
    }

    /// Why a file cannot go at `path` over this filesystem, if it cannot: one of its parents
    /// is something other than a directory, or the path itself is a directory.
    pub fn file_conflict(&self, path: &str) -> Option<String> {
        let path = path.trim_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        for end in 1..parts.len() {
            let parent = parts[..end].join("/");
            if let Some((_, node)) = self.lookup(&parent) {
                if *node != Node::Dir {
                    return Some(format!("/{parent} is not a directory"));
                }
            }
        }
        match self.lookup(path) {
            Some((_, Node::Dir)) => Some(format!("/{path} is a directory")),
            _ => None,
        }
    }

    /// Contents of an account file (`/etc/passwd`, `/etc/group`), following links.
    pub fn account_file(&self, path: &str) -> Option<&[u8]> {
        match self.lookup(path)? {
            (_, Node::File { content, .. }) => content.as_deref(),
            _ => None,
        }
    }
}

impl crate::pipeline::oci::image::BaseFiles for BaseFs {
    fn exists(&self, path: &str) -> bool {
        BaseFs::exists(self, path)
    }

    fn account_file(&self, path: &str) -> Option<&[u8]> {
        BaseFs::account_file(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
    }

    fn layer(entries: &[E<'_>], gzip: bool) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, p, std::io::empty()).unwrap();
                }
                E::File(p, data) => {
                    h.set_size(data.len() as u64);
                    // set_path refuses `..`; write the name bytes directly.
                    h.as_old_mut().name[..p.len()].copy_from_slice(p.as_bytes());
                    h.set_cksum();
                    tar.append(&h, *data).unwrap();
                }
                E::Link(p, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, p, target).unwrap();
                }
            }
        }
        let tar = tar.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_file_cannot_go_under_a_file_or_over_a_directory() {
        let mut fs = BaseFs::default();
        let base = layer(
            &[
                E::File("var/runtime", b"not a directory"),
                E::Dir("usr/local/bin/app/"),
                E::Link("opt", "usr/local"),
            ],
            false,
        );
        fs.apply_layer(0, &base, &Limits::default()).unwrap();
        assert_eq!(
            fs.file_conflict("/var/runtime/bootstrap").as_deref(),
            Some("/var/runtime is not a directory")
        );
        assert_eq!(
            fs.file_conflict("/usr/local/bin/app").as_deref(),
            Some("/usr/local/bin/app is a directory")
        );
        // Free places, through a link to a directory too.
        for free in ["/usr/local/bin/other", "/srv/app", "/opt/bin/tool"] {
            assert_eq!(fs.file_conflict(free), None, "{free}");
        }
    }

    #[test]
    fn whiteouts_hide_lower_layers() {
        let mut fs = BaseFs::default();
        let limits = Limits::default();
        let lower = layer(
            &[
                E::Dir("etc/"),
                E::File("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
                E::File("etc/motd", b"hi"),
                E::Dir("var/cache/"),
                E::File("var/cache/a", b"a"),
            ],
            true,
        );
        fs.apply_layer(0, &lower, &limits).unwrap();
        let upper = layer(
            &[
                E::File("etc/.wh.motd", b""),
                E::File("var/cache/.wh..wh..opq", b""),
                E::File("var/cache/b", b"b"),
            ],
            false,
        );
        fs.apply_layer(1, &upper, &limits).unwrap();
        assert!(!fs.exists("/etc/motd"));
        assert!(fs.exists("/etc/passwd"));
        assert!(!fs.exists("/var/cache/a"));
        assert!(fs.exists("/var/cache/b"));
        assert_eq!(
            fs.account_file("/etc/passwd").unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
    }

    #[test]
    fn symlinks_resolve_like_merged_usr() {
        let mut fs = BaseFs::default();
        let l = layer(
            &[
                E::Link("lib", "usr/lib"),
                E::Dir("usr/lib/"),
                E::File("usr/lib/ld-musl-x86_64.so.1", b"loader"),
                E::Link("lib64", "/lib"),
                E::Link("loop", "loop"),
            ],
            true,
        );
        fs.apply_layer(0, &l, &Limits::default()).unwrap();
        assert!(fs.exists("/lib/ld-musl-x86_64.so.1"));
        assert!(fs.exists("/lib64/ld-musl-x86_64.so.1"));
        assert!(!fs.exists("/lib/ld-linux-x86-64.so.2"));
        assert!(!fs.exists("/loop"), "a symlink loop is not a file");
    }

    #[test]
    fn traversal_and_escaping_links_are_rejected() {
        let mut fs = BaseFs::default();
        let evil = layer(&[E::File("../etc/passwd", b"x")], true);
        let err = fs.apply_layer(3, &evil, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("climbs out of the root"), "{err}");
        let escaping = layer(&[E::Link("etc/x", "../../../etc/shadow")], true);
        let err = fs
            .apply_layer(0, &escaping, &Limits::default())
            .unwrap_err();
        assert!(err.to_string().contains("escapes the root"), "{err}");
    }

    #[test]
    fn a_gzip_bomb_is_an_error() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = layer(&[E::File("zeros", &zeros)], true);
        let limits = Limits {
            max_layer_bytes: 1 << 30,
            max_ratio: 100,
            ratio_floor: 1 << 20,
        };
        let err = BaseFs::default()
            .apply_layer(0, &bomb, &limits)
            .unwrap_err();
        assert!(err.to_string().contains("decompression bomb"), "{err}");
        let small = Limits {
            max_layer_bytes: 1 << 20,
            ..Limits::default()
        };
        assert!(BaseFs::default().apply_layer(0, &bomb, &small).is_err());
        assert!(BaseFs::default()
            .apply_layer(0, &bomb, &Limits::default())
            .is_ok());
    }
}
