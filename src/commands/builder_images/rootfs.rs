//! The builder image's root filesystem, written from this machine's files: the packages'
//! files, the toolchain and its stds, as one uncompressed tar layer, streamed to a file
//! through [`LayerWriter`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{run, HostToolchain, RUST_DIR, SKIP};
use crate::adapters::c_toolchain::kernel_headers;
use crate::core::error::{Error, Result};
use crate::core::platform::musl_target;
use crate::pipeline::oci::layer::{LayerWriter, Written};

/// The host paths of the packages' files, mapped to their place in the image. Paths under
/// the merged `/bin`, `/lib`... symlinks are rewritten to their `/usr` targets.
fn package_files(packages: &[String]) -> Result<Vec<(PathBuf, String)>> {
    let mut args = vec!["-L"];
    args.extend(packages.iter().map(String::as_str));
    let listing = run("dpkg-query", &args)?;
    let mut files = Vec::new();
    for line in listing.lines().filter(|l| l.starts_with('/')) {
        let path = Path::new(line);
        if SKIP.iter().any(|skip| path.starts_with(skip)) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue; // listed but not installed (excluded docs, diversions)
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        if meta.is_symlink() && parent == Path::new("/") {
            continue; // the merged-/usr links themselves are added once, below
        }
        let Ok(parent) = std::fs::canonicalize(parent) else {
            continue;
        };
        let image_path = parent.join(name);
        files.push((path.to_path_buf(), image_path.display().to_string()));
    }
    Ok(files)
}

/// Links that put the kernel's headers beside musl's in the image (see
/// [`kernel_headers`]), as (link in the image, target) pairs, for each musl target the image
/// compiles C for.
fn kernel_header_links(host: &HostToolchain) -> Vec<(String, String)> {
    let targets = musl_target(&host.target)
        .into_iter()
        .chain(host.cross_musl.clone());
    let mut links = Vec::new();
    for target in targets {
        let arch = crate::core::platform::arch(&target);
        let musl_include = format!("usr/include/{arch}-linux-musl");
        if !Path::new(&format!("/{musl_include}")).is_dir() {
            continue;
        }
        for (name, host_dir) in kernel_headers(arch) {
            if !Path::new(&format!("/{musl_include}/{name}")).exists() {
                links.push((format!("{musl_include}/{name}"), host_dir));
            }
        }
    }
    links
}

/// A tar of a root filesystem in which every directory appears once, before its contents.
struct Rootfs<W: std::io::Write> {
    tar: tar::Builder<W>,
    dirs: BTreeSet<String>,
}

impl<W: std::io::Write> Rootfs<W> {
    fn err(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            context: format!("writing the builder image: {context}"),
            source,
        }
    }

    /// Adds the missing parent directories of `name` (root-owned, 0755).
    fn parents(&mut self, name: &str) -> Result<()> {
        let mut dir = String::new();
        let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir = if dir.is_empty() {
                part.to_string()
            } else {
                format!("{dir}/{part}")
            };
            if self.dirs.insert(dir.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                self.tar
                    .append_data(&mut header, format!("{dir}/"), std::io::empty())
                    .map_err(Self::err(&dir))?;
            }
        }
        Ok(())
    }

    /// Copies a host file, directory (not its contents) or symlink (not followed).
    fn copy(&mut self, host: &Path, name: &str) -> Result<()> {
        let name = name.trim_matches('/');
        let is_dir = std::fs::symlink_metadata(host).is_ok_and(|m| m.is_dir());
        if is_dir && !self.dirs.insert(name.to_string()) {
            return Ok(());
        }
        self.parents(name)?;
        self.tar
            .append_path_with_name(host, name)
            .map_err(Self::err(name))
    }

    /// Copies a host directory tree to `name`, in sorted order, leaving out what `skip`
    /// says (given the path relative to `host`).
    fn copy_tree(&mut self, host: &Path, name: &str, skip: impl Fn(&Path) -> bool) -> Result<()> {
        let mut stack = vec![host.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let relative = dir.strip_prefix(host).expect("under the tree");
            if skip(relative) {
                continue;
            }
            self.copy(&dir, &format!("{name}/{}", relative.display()))?;
            let entries =
                std::fs::read_dir(&dir).map_err(Error::io(format!("reading {}", dir.display())))?;
            let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(host).expect("under the tree");
                    self.copy(&path, &format!("{name}/{}", relative.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Writes a new file, directory (`name` ending in `/`, kept as it is when a package
    /// already made it: base-files has `/tmp` and `/root`) or symlink (`link` set).
    fn create(&mut self, name: &str, mode: u32, data: &[u8], link: Option<&str>) -> Result<()> {
        if name.ends_with('/') && self.dirs.contains(name.trim_matches('/')) {
            return Ok(());
        }
        self.parents(name)?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        let kind = match (link, name.ends_with('/')) {
            (Some(_), _) => tar::EntryType::Symlink,
            (None, true) => tar::EntryType::Directory,
            (None, false) => tar::EntryType::Regular,
        };
        header.set_entry_type(kind);
        if kind == tar::EntryType::Directory {
            self.dirs.insert(name.trim_matches('/').to_string());
        }
        match link {
            Some(target) => self.tar.append_link(&mut header, name, target),
            None => self.tar.append_data(&mut header, name, data),
        }
        .map_err(Self::err(name))
    }
}

/// Writes the builder's root filesystem as the tar of one uncompressed layer to `out`,
/// returning what was written (its size and digests). `stds` are (host directory, image
/// directory) pairs.
pub(super) fn write_rootfs(
    host: &HostToolchain,
    stds: &[(PathBuf, String)],
    out: &std::fs::File,
) -> Result<Written> {
    // Stored as the plain tar: the engine is this machine's as a rule, where compressing
    // 1.5 GB would cost minutes of CPU to save a local copy.
    let mut tar = tar::Builder::new(LayerWriter::new(std::io::BufWriter::new(out), None)?);
    tar.follow_symlinks(false);
    let mut fs = Rootfs {
        tar,
        dirs: BTreeSet::new(),
    };

    // The merged-/usr symlinks of the host (/bin -> usr/bin, ...).
    for link in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let path = Path::new("/").join(link);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
            fs.copy(&path, link)?;
        }
    }
    let mut files = package_files(&host.packages)?;
    // Files no package lists: the CA bundle and the loader's cache of library paths.
    for extra in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
    ] {
        if Path::new(extra).exists() {
            files.push((extra.into(), extra.into()));
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    files.dedup_by(|a, b| a.1 == b.1);
    for (host_path, name) in &files {
        fs.copy(host_path, name)?;
    }
    // The alternatives (Debian makes them when installing): `cc`, which rustc links with,
    // `c++` for cc-rs, and `awk` for configure scripts.
    for (name, target) in [("cc", "gcc"), ("c++", "g++"), ("awk", "mawk")] {
        if host
            .packages
            .iter()
            .any(|p| p.starts_with(&format!("{target}:")))
        {
            fs.create(&format!("usr/bin/{name}"), 0o777, b"", Some(target))?;
        }
    }
    for (name, target) in kernel_header_links(host) {
        fs.create(&name, 0o777, b"", Some(&target))?;
    }

    // A rustup toolchain, without its documentation (a Debian one came with its packages),
    // and without the stds ours replace.
    if !host.packaged {
        let replaced: Vec<&Path> = stds
            .iter()
            .filter_map(|(_, place)| place.strip_prefix(&format!("{RUST_DIR}/")))
            .map(Path::new)
            .collect();
        fs.copy_tree(&host.toolchain.sysroot, RUST_DIR, |relative| {
            relative.starts_with("share/doc")
                || relative.starts_with("share/man")
                || replaced.iter().any(|std| relative.starts_with(std))
        })?;
    }
    for (built, place) in stds {
        fs.copy_tree(built, place, |_| false)?;
    }

    // A minimal system: root, /tmp, and the cargo home the build volumes mount into.
    fs.create(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
        None,
    )?;
    fs.create("etc/group", 0o644, b"root:x:0:\n", None)?;
    fs.create("root/", 0o700, b"", None)?;
    fs.create("tmp/", 0o1777, b"", None)?;
    fs.create("src/", 0o755, b"", None)?;
    fs.create("usr/local/cargo/registry/", 0o755, b"", None)?;
    let writer = fs
        .tar
        .into_inner()
        .map_err(Error::io("finishing the builder image"))?;
    Ok(writer.finish()?.1)
}
