//! Reproducible layers: sorted tar entries with fixed owners, modes and mtimes, compressed
//! with libdeflate into gzip members of a fixed size (RFC 1952 lets a gzip file hold several
//! back to back; every image reader takes them), each member on whichever core is free: the
//! bytes depend on the input and the level only, never on the number of cores.

use std::collections::BTreeMap;
use std::io::Write;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The levels libdeflate has: 1 (fastest) to 12 (smallest; slower than zlib's 9, and smaller).
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<u32> = 1..=12;

/// Uncompressed bytes per gzip member. Deflate looks back 32 KiB at most, so a member this
/// big costs well under 0.5% in size (benchmarks/assemble.rs), and a 1 MiB binary already
/// spreads over two cores.
pub const MEMBER_SIZE: usize = 512 << 10;

/// `data` as gzip: members of `MEMBER_SIZE` input bytes each, compressed in parallel at
/// `level`, concatenated in order. Each member's header is libdeflate's fixed one (no name,
/// time 0), so the result is reproducible.
pub fn gzip(data: &[u8], level: u32) -> Result<Vec<u8>> {
    let refused = || Error::InvalidInput {
        what: "compression level",
        value: level.to_string(),
        reason: format!(
            "levels go from {} to {}",
            COMPRESSION_LEVELS.start(),
            COMPRESSION_LEVELS.end()
        ),
    };
    if !COMPRESSION_LEVELS.contains(&level) {
        return Err(refused());
    }
    let level = libdeflater::CompressionLvl::new(level as i32).map_err(|_| refused())?;
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(MEMBER_SIZE).collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut members: Vec<(usize, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut compressor = libdeflater::Compressor::new(level);
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else {
                            return done;
                        };
                        let mut out = vec![0; compressor.gzip_compress_bound(chunk.len())];
                        let n = compressor
                            .gzip_compress(chunk, &mut out)
                            .expect("the buffer is libdeflate's own bound");
                        out.truncate(n);
                        done.push((i, out));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a compression thread"))
            .collect()
    });
    members.sort_by_key(|(i, _)| *i);
    Ok(members.into_iter().flat_map(|(_, bytes)| bytes).collect())
}

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
/// sorted by path, every timestamp is `mtime` (seconds since the epoch), and the tar is
/// compressed at `level`.
pub fn build(entries: Vec<Entry<'_>>, mtime: u64, level: u32) -> Result<Layer> {
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

    let mut tar = tar::Builder::new(Hashing::new(Vec::new()));
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
    let hashing = tar.into_inner().map_err(Error::io("finishing a layer"))?;
    let (tar, diff_id, uncompressed_size) = hashing.finish();
    let blob = gzip(&tar, level)?;
    let digest = crate::fsutil::sha256_digest(&blob);
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
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&layer.blob[..]));
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
            9,
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
        let make = || build(vec![Entry::file("a", b"x", 0o644)], 0, 12).unwrap();
        let (a, b) = (make(), make());
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.digest, crate::fsutil::sha256_digest(&a.blob));
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&a.blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(a.diff_id, crate::fsutil::sha256_digest(&tar));
        assert_eq!(a.uncompressed_size, tar.len() as u64);
        // gzip header: no file name flag, mtime 0.
        assert_eq!(a.blob[3] & 0x08, 0);
        assert_eq!(&a.blob[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn big_layers_are_gzip_members_of_a_fixed_size_whatever_the_cores() {
        // Compressible but not trivial: a few members' worth.
        let data: Vec<u8> = (0..(MEMBER_SIZE * 3 + 1000) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
            .collect();
        let blob = gzip(&data, 6).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Four members: four gzip headers, the first at the start.
        let headers = blob.windows(3).filter(|w| w == &[0x1f, 0x8b, 8]).count();
        assert!(headers >= 4, "{headers}");
        // The same bytes on one thread as on many: each member compressed alone.
        let one_by_one: Vec<u8> = data
            .chunks(MEMBER_SIZE)
            .flat_map(|chunk| gzip(chunk, 6).unwrap())
            .collect();
        assert_eq!(blob, one_by_one);
        assert_eq!(gzip(&data, 6).unwrap(), blob);
    }

    #[test]
    fn levels_outside_libdeflate_s_are_refused() {
        for level in [0, 13] {
            let error = gzip(b"x", level).unwrap_err().to_string();
            assert!(error.contains("from 1 to 12"), "{error}");
        }
        assert!(gzip(b"", 12).unwrap().len() > 10);
    }
}
