//! Reproducible layers: sorted tar entries with fixed owners, modes and mtimes, compressed
//! in independent pieces of a fixed size (gzip members, which RFC 1952 lets a file hold back
//! to back, or zstd frames, likewise), each piece on whichever core is free: the bytes depend
//! on the input, the codec and the level only, never on the number of cores.

use std::collections::BTreeMap;
use std::io::Write;

use oci_spec::image::MediaType;
use sha2::{Digest as _, Sha256};

use crate::core::error::{Error, Result};
use crate::core::preset::Preset;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// gzip by libdeflate: what every engine and tool reads.
    #[default]
    Gzip,
    /// zstd: smaller and faster to unpack, read by Docker 23+, containerd, skopeo and umoci,
    /// not by older Docker engines.
    Zstd,
}

impl Codec {
    /// Every level `--compression-level` takes (each codec takes part of it: see
    /// [`Codec::levels`]).
    pub const LEVELS: std::ops::RangeInclusive<u32> = 1..=19;

    /// The levels the codec has, fastest first.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            // libdeflate: 12 is smaller than zlib's 9, and slower.
            Codec::Gzip => 1..=12,
            // zstd's usual range; 20–22 need a bigger window than a layer piece has.
            Codec::Zstd => 1..=19,
        }
    }

    /// The level for a preset's layers. With gzip (libdeflate's; all three make smaller
    /// layers than zlib's 9 did, benchmarks/assemble.rs): 6 for the quick presets (5× faster
    /// than before), 9 for aggressive and nasa (faster than before on two cores, and smaller),
    /// 12 for size (the smallest, at twice the old time). With zstd, the same steps on its
    /// scale: 3 (its default), 9, 19 (its highest without a bigger window). Layers are cached
    /// by their binary, so a no-change rebuild compresses nothing.
    pub fn level_for(self, preset: Preset) -> u32 {
        match (self, preset) {
            (Codec::Gzip, Preset::None | Preset::Balanced) => 6,
            (Codec::Gzip, Preset::Aggressive | Preset::Nasa) => 9,
            (Codec::Gzip, Preset::Size) => 12,
            (Codec::Zstd, Preset::None | Preset::Balanced) => 3,
            (Codec::Zstd, Preset::Aggressive | Preset::Nasa) => 9,
            (Codec::Zstd, Preset::Size) => 19,
        }
    }

    /// The OCI media type of a tar layer compressed this way.
    pub fn media_type(self) -> MediaType {
        match self {
            Codec::Gzip => MediaType::ImageLayerGzip,
            Codec::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// Checks that `level` is one of the codec's.
    pub fn check_level(self, level: u32) -> Result<()> {
        let levels = self.levels();
        if levels.contains(&level) {
            return Ok(());
        }
        Err(Error::InvalidInput {
            what: "compression level",
            value: level.to_string(),
            reason: format!(
                "{} levels go from {} to {}",
                self.name(),
                levels.start(),
                levels.end()
            ),
        })
    }
}

/// Uncompressed bytes per gzip member or zstd frame. Deflate looks back 32 KiB at most, so a
/// member this big costs well under 0.5% in size (benchmarks/assemble.rs), and a 1 MiB binary
/// already spreads over two cores.
pub const MEMBER_SIZE: usize = 512 << 10;

/// `data` compressed with `codec` at `level`: pieces of `MEMBER_SIZE` input bytes each,
/// compressed in parallel, concatenated in order. gzip members have libdeflate's fixed header
/// (no name, time 0) and zstd frames no dictionary or checksum choice that varies, so the
/// result is reproducible.
pub fn compress(data: &[u8], codec: Codec, level: u32) -> Result<Vec<u8>> {
    codec.check_level(level)?;
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(MEMBER_SIZE).collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut pieces: Vec<(usize, Vec<u8>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut compressor = Compressor::new(codec, level);
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else {
                            return done;
                        };
                        done.push((i, compressor.compress(chunk)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a compression thread"))
            .collect()
    });
    pieces.sort_by_key(|(i, _)| *i);
    Ok(pieces.into_iter().flat_map(|(_, bytes)| bytes).collect())
}

/// One thread's compressor, reused for every piece it takes.
enum Compressor {
    Gzip(libdeflater::Compressor),
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Compressor {
    /// `level` was checked against the codec's levels.
    fn new(codec: Codec, level: u32) -> Compressor {
        match codec {
            Codec::Gzip => Compressor::Gzip(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(level as i32).expect("a checked level"),
            )),
            Codec::Zstd => Compressor::Zstd(
                zstd::bulk::Compressor::new(level as i32).expect("zstd takes a checked level"),
            ),
        }
    }

    fn compress(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self {
            Compressor::Gzip(compressor) => {
                let mut out = vec![0; compressor.gzip_compress_bound(chunk.len())];
                let n = compressor
                    .gzip_compress(chunk, &mut out)
                    .expect("the buffer is libdeflate's own bound");
                out.truncate(n);
                out
            }
            Compressor::Zstd(compressor) => compressor
                .compress(chunk)
                .expect("zstd compresses into its own bound"),
        }
    }
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

/// A finished layer: the compressed blob and its identities.
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
    /// Compressed tar for ours; base layers keep whatever they were stored as.
    pub media_type: MediaType,
}

impl Layer {
    /// Size of the compressed blob.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }
}

/// The size of a layer blob unpacked (gzip, zstd or plain tar, by its media type).
pub fn unpacked_size(blob: &[u8], media_type: &str) -> Result<u64> {
    let mut reader: Box<dyn std::io::Read + '_> = match media_type {
        t if t.ends_with("+zstd") => Box::new(
            zstd::stream::read::Decoder::new(blob).map_err(Error::io("reading a zstd layer"))?,
        ),
        t if t.ends_with("gzip") => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        _ => Box::new(blob),
    };
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(Error::io("reading a layer"))
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
}

/// `sha256:` and the hex of what `hasher` was given.
fn digest_of(hasher: Sha256) -> String {
    format!(
        "sha256:{}",
        crate::adapters::fsutil::hex(&hasher.finalize())
    )
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

/// Uncompressed bytes a [`LayerWriter`] holds before it compresses them: whole pieces, enough
/// for every core to take some. Only this much of a layer is ever in memory.
const BATCH: usize = 16 * MEMBER_SIZE;

/// What a [`LayerWriter`] wrote: the layer's identities and sizes, not its bytes.
#[derive(Debug, Clone)]
pub struct Written {
    /// `sha256:` of the bytes as stored (the manifest's layer digest).
    pub digest: String,
    /// `sha256:` of the tar (the config's diff_id).
    pub diff_id: String,
    /// Bytes as stored.
    pub size: u64,
    /// Bytes of the tar.
    pub uncompressed_size: u64,
    /// The tar, or the tar compressed with a codec.
    pub media_type: MediaType,
}

/// The one writer of layers: the tar written into it is hashed (its diff_id), compressed in
/// pieces of [`MEMBER_SIZE`] as they fill (or passed on as it is), and what comes out is
/// hashed (its digest) on its way to `out`. At most [`BATCH`] bytes wait in memory, so a
/// layer of any size streams to a file. The compressed bytes are those [`compress`] makes of
/// the whole tar.
pub struct LayerWriter<W: Write> {
    out: Hashing<W>,
    tar: Sha256,
    tar_size: u64,
    /// None: the layer is the tar itself.
    compression: Option<(Codec, u32)>,
    /// Tar bytes not compressed yet.
    pending: Vec<u8>,
}

impl<W: Write> LayerWriter<W> {
    /// A writer of a layer to `out`, compressed with a codec at a level (checked here), or
    /// stored as the plain tar with `None`.
    pub fn new(out: W, compression: Option<(Codec, u32)>) -> Result<LayerWriter<W>> {
        if let Some((codec, level)) = compression {
            codec.check_level(level)?;
        }
        Ok(LayerWriter {
            out: Hashing::new(out),
            tar: Sha256::new(),
            tar_size: 0,
            compression,
            pending: Vec::new(),
        })
    }

    /// Compresses the pending bytes (all of them, or only whole batches) and writes them out.
    fn compress_pending(&mut self, all: bool) -> std::io::Result<()> {
        let Some((codec, level)) = self.compression else {
            return Ok(());
        };
        let n = match all {
            true => self.pending.len(),
            false => self.pending.len() / BATCH * BATCH,
        };
        let blob = compress(&self.pending[..n], codec, level).map_err(std::io::Error::other)?;
        self.out.write_all(&blob)?;
        self.pending.drain(..n);
        Ok(())
    }

    /// Writes what is still pending, flushes `out` and returns it with what was written.
    pub fn finish(mut self) -> Result<(W, Written)> {
        // An empty tar is still one (empty) piece, as `compress` makes it.
        if !self.pending.is_empty() || self.out.written == 0 {
            self.compress_pending(true)
                .map_err(Error::io("finishing a layer"))?;
        }
        self.out.flush().map_err(Error::io("finishing a layer"))?;
        let Hashing {
            inner,
            hasher,
            written,
        } = self.out;
        let media_type = match self.compression {
            Some((codec, _)) => codec.media_type(),
            None => MediaType::ImageLayer,
        };
        let written = Written {
            digest: digest_of(hasher),
            diff_id: digest_of(self.tar),
            size: written,
            uncompressed_size: self.tar_size,
            media_type,
        };
        Ok((inner, written))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tar.update(buf);
        self.tar_size += buf.len() as u64;
        match self.compression {
            None => self.out.write_all(buf)?,
            Some(_) => {
                self.pending.extend_from_slice(buf);
                if self.pending.len() >= BATCH {
                    self.compress_pending(false)?;
                }
            }
        }
        Ok(buf.len())
    }

    /// Flushes `out`; pending bytes wait for a whole batch or [`LayerWriter::finish`].
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Builds a layer from entries. Missing parent directories are added (root, 0755), entries are
/// sorted by path, every timestamp is `mtime` (seconds since the epoch), and the tar is
/// compressed with `codec` at `level`.
pub fn build(entries: Vec<Entry<'_>>, mtime: u64, codec: Codec, level: u32) -> Result<Layer> {
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

    let mut tar = tar::Builder::new(LayerWriter::new(Vec::new(), Some((codec, level)))?);
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
    let writer = tar.into_inner().map_err(Error::io("finishing a layer"))?;
    let (blob, written) = writer.finish()?;
    Ok(Layer {
        blob,
        digest: written.digest,
        diff_id: written.diff_id,
        uncompressed_size: written.uncompressed_size,
        media_type: written.media_type,
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
            Codec::Gzip,
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
        let make = || build(vec![Entry::file("a", b"x", 0o644)], 0, Codec::Gzip, 12).unwrap();
        let (a, b) = (make(), make());
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.digest, crate::adapters::fsutil::sha256_digest(&a.blob));
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&a.blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(a.diff_id, crate::adapters::fsutil::sha256_digest(&tar));
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
        let blob = compress(&data, Codec::Gzip, 6).unwrap();
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
            .flat_map(|chunk| compress(chunk, Codec::Gzip, 6).unwrap())
            .collect();
        assert_eq!(blob, one_by_one);
        assert_eq!(compress(&data, Codec::Gzip, 6).unwrap(), blob);
    }

    #[test]
    fn zstd_layers_are_frames_of_a_fixed_size_that_decode_to_the_tar() {
        let data: Vec<u8> = (0..(MEMBER_SIZE * 2 + 7) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
            .collect();
        let blob = compress(&data, Codec::Zstd, 9).unwrap();
        assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd's magic");
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&blob[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let one_by_one: Vec<u8> = data
            .chunks(MEMBER_SIZE)
            .flat_map(|chunk| compress(chunk, Codec::Zstd, 9).unwrap())
            .collect();
        assert_eq!(blob, one_by_one);
        let layer = build(vec![Entry::file("a", b"x", 0o644)], 0, Codec::Zstd, 3).unwrap();
        assert_eq!(layer.media_type, MediaType::ImageLayerZstd);
    }

    #[test]
    fn levels_outside_the_codec_s_are_refused() {
        for level in [0, 13] {
            let error = compress(b"x", Codec::Gzip, level).unwrap_err().to_string();
            assert!(error.contains("gzip levels go from 1 to 12"), "{error}");
        }
        let error = compress(b"x", Codec::Zstd, 20).unwrap_err().to_string();
        assert!(error.contains("zstd levels go from 1 to 19"), "{error}");
        assert!(compress(b"", Codec::Gzip, 12).unwrap().len() > 10);
        assert!(compress(b"", Codec::Zstd, 19).unwrap().len() > 4);
    }

    /// A file of `len` generated bytes that look random (gzip cannot shrink them), read a
    /// buffer at a time: never in memory whole. Before each read it checks that what it gave
    /// so far, less one batch and the copy buffer, reached `sink` already.
    struct Generated {
        state: u64,
        left: u64,
        given: u64,
        sink: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let out = self.sink.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                self.given <= out + (BATCH + (64 << 10)) as u64,
                "{} bytes given, only {out} out: the layer is held, not streamed",
                self.given
            );
            let n = buf.len().min(self.left as usize);
            for byte in &mut buf[..n] {
                // xorshift64
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                *byte = self.state as u8;
            }
            self.left -= n as u64;
            self.given += n as u64;
            Ok(n)
        }
    }

    /// A file that counts what reaches it.
    struct Counted(std::fs::File, std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl Write for Counted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(buf)?;
            self.1
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    /// Writes a one-file layer of `len` generated bytes to a temp file through a
    /// [`LayerWriter`]; the file (rewound) and what the writer says it wrote.
    fn stream(len: u64, compression: Option<(Codec, u32)>) -> (std::fs::File, Written) {
        let file = tempfile::tempfile().unwrap();
        let sink = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let out = Counted(file.try_clone().unwrap(), sink.clone());
        let mut tar = tar::Builder::new(LayerWriter::new(out, compression).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(len);
        header.set_mode(0o644);
        let generated = Generated {
            state: 0x9e37_79b9_7f4a_7c15,
            left: len,
            given: 0,
            sink,
        };
        tar.append_data(&mut header, "big", generated).unwrap();
        let (_, written) = tar.into_inner().unwrap().finish().unwrap();
        let mut file = file;
        std::io::Seek::rewind(&mut file).unwrap();
        (file, written)
    }

    #[test]
    fn a_big_layer_streams_through_the_writer_with_its_digests_right() {
        // Two batches and a bit: more than the writer may hold, ending mid-piece.
        let len = (2 * BATCH + MEMBER_SIZE / 3) as u64;
        let (mut file, written) = stream(len, Some((Codec::Gzip, 1)));
        let mut blob = Vec::new();
        file.read_to_end(&mut blob).unwrap();
        assert_eq!(written.size, blob.len() as u64);
        assert_eq!(
            written.digest,
            crate::adapters::fsutil::sha256_digest(&blob)
        );
        assert_eq!(written.media_type, MediaType::ImageLayerGzip);
        // The diff_id is the tar's, which unpacks to the file written.
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&blob[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(
            written.diff_id,
            crate::adapters::fsutil::sha256_digest(&tar)
        );
        assert_ne!(written.diff_id, written.digest);
        assert_eq!(written.uncompressed_size, tar.len() as u64);
        let mut archive = tar::Archive::new(&tar[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(
            (entry.path().unwrap().display().to_string(), entry.size()),
            ("big".to_string(), len)
        );
        // The pieces are those of the whole tar compressed at once: streaming changes no byte.
        assert_eq!(blob, compress(&tar, Codec::Gzip, 1).unwrap());
    }

    #[test]
    fn a_plain_tar_layer_is_its_own_digest_and_an_empty_one_is_one_piece() {
        let (mut file, written) = stream((BATCH + 5) as u64, None);
        let mut tar = Vec::new();
        file.read_to_end(&mut tar).unwrap();
        assert_eq!(written.digest, crate::adapters::fsutil::sha256_digest(&tar));
        assert_eq!(written.diff_id, written.digest);
        assert_eq!(
            (written.size, written.uncompressed_size),
            (tar.len() as u64, tar.len() as u64)
        );
        assert_eq!(written.media_type, MediaType::ImageLayer);
        // Nothing written: the empty piece `compress` makes, as `build` always gave.
        let (blob, empty) = LayerWriter::new(Vec::new(), Some((Codec::Zstd, 3)))
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(blob, compress(b"", Codec::Zstd, 3).unwrap());
        assert_eq!(empty.uncompressed_size, 0);
        assert!(LayerWriter::new(Vec::new(), Some((Codec::Gzip, 13))).is_err());
    }
}
