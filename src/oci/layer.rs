//! Reproducible layers: sorted tar entries with fixed owners, modes and mtimes, gzip without
//! name or time, hashed in the same pass that writes them.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// gzip level of our layers. Image size is what this tool is for: the best level; zlib-rs
/// makes it about as fast as the default level was with miniz (benchmarks/assemble.rs).
pub const COMPRESSION_LEVEL: u32 = 9;

/// What a tar entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// A directory.
    Dir,
    /// A regular file with these bytes.
    File(&'a [u8]),
}

/// One file or directory of a layer. Paths are relative to `/` and have no leading slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path inside the image, such as `usr/local/bin/app`.
    pub path: String,
    /// Directory or file contents.
    pub content: Content<'a>,
    /// Permission bits, including sticky/setuid bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl<'a> Entry<'a> {
    /// A root-owned directory.
    pub fn dir(path: impl Into<String>, mode: u32) -> Entry<'a> {
        Entry {
            path: path.into(),
            content: Content::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// A root-owned file.
    pub fn file(path: impl Into<String>, bytes: &'a [u8], mode: u32) -> Entry<'a> {
        Entry {
            path: path.into(),
            content: Content::File(bytes),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    /// The same entry owned by `uid:gid`.
    pub fn owned_by(self, uid: u32, gid: u32) -> Entry<'a> {
        Entry { uid, gid, ..self }
    }
}

/// A finished layer: the gzip blob and its identities.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The compressed bytes, as stored in a registry or layout.
    pub blob: Vec<u8>,
    /// `sha256:` of the compressed bytes (the manifest's layer digest).
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// Size of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// gzip'd tar for ours; base layers keep whatever they were stored as.
    pub media_type: oci_spec::image::MediaType,
}

impl Layer {
    /// Size of the compressed blob.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }
}

/// Counts and hashes everything written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", crate::fsutil::hex(&self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Builds a layer from entries. Missing parent directories are added (root, 0755), entries are
/// sorted by path, and every timestamp is `mtime` (seconds since the epoch).
pub fn build(entries: Vec<Entry<'_>>, mtime: u64) -> Result<Layer> {
    let mut by_path: BTreeMap<String, Entry<'_>> = BTreeMap::new();
    for entry in entries {
        let path = entry.path.trim_matches('/').to_string();
        let mut parent = path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            by_path
                .entry(dir.to_string())
                .or_insert_with(|| Entry::dir(dir, 0o755));
            parent = dir;
        }
        by_path.insert(path, entry);
    }

    let write_err = Error::io("writing an image layer");
    let gzip = GzBuilder::new().mtime(0).write(
        Hashing::new(Vec::new()),
        Compression::new(COMPRESSION_LEVEL),
    );
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    for (path, entry) in &by_path {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_uid(entry.uid.into());
        header.set_gid(entry.gid.into());
        header.set_mtime(mtime);
        let result = match entry.content {
            Content::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())
            }
            Content::File(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, path, bytes)
            }
        };
        result.map_err(Error::io(format!("adding {path} to an image layer")))?;
    }
    let hashing_gzip = tar.into_inner().map_err(Error::io("finishing a layer"))?;
    let (gzip, diff_id, uncompressed_size) = hashing_gzip.finish();
    let (blob, digest, _) = gzip.finish().map_err(write_err)?.finish();
    Ok(Layer {
        blob,
        digest,
        diff_id,
        uncompressed_size,
        media_type: oci_spec::image::MediaType::ImageLayerGzip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_back(layer: &Layer) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer.blob[..]));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let path = e.path().unwrap().display().to_string();
                (
                    path,
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let layer = build(
            vec![
                Entry::file("usr/local/bin/app", b"binary", 0o755),
                Entry::dir("tmp", 0o1777),
                Entry::file("etc/passwd", b"root", 0o644).owned_by(7, 7),
            ],
            1_700_000_000,
        )
        .unwrap();
        let entries = read_back(&layer);
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/passwd",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/app"
            ]
        );
        let tmp = entries.iter().find(|e| e.0 == "tmp/").unwrap();
        assert_eq!(tmp.1, 0o1777);
        let passwd = entries.iter().find(|e| e.0 == "etc/passwd").unwrap();
        assert_eq!((passwd.2, passwd.4.as_slice()), (7, &b"root"[..]));
        assert!(entries.iter().all(|e| e.3 == 1_700_000_000));
    }

    #[test]
    fn same_entries_same_digests_and_digests_are_of_the_bytes() {
        let make = || build(vec![Entry::file("a", b"x", 0o644)], 0).unwrap();
        let (a, b) = (make(), make());
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.digest, crate::fsutil::sha256_digest(&a.blob));
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&a.blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(a.diff_id, crate::fsutil::sha256_digest(&tar));
        assert_eq!(a.uncompressed_size, tar.len() as u64);
        // gzip header: no file name flag, mtime 0.
        assert_eq!(a.blob[3] & 0x08, 0);
        assert_eq!(&a.blob[4..8], &[0, 0, 0, 0]);
    }
}
