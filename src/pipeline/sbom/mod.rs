//! The SBOM of the crates in a binary, from cargo's resolved graph for the target: each
//! crate's name, version, `pkg:cargo/` purl, license expression and the SHA-256 `Cargo.lock`
//! records for it. Crates only the build uses (build scripts' and proc-macros' dependencies,
//! proc-macros themselves) are marked build-only; dev dependencies are left out. One walk of
//! the graph ([`Graph`]), two writers: CycloneDX 1.5 ([`cyclonedx`], the default) and SPDX
//! 2.3 ([`spdx`]). Deterministic: the same lock file and epoch give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::error::{Error, Result};
use crate::core::metrics::SbomRecord;

mod cyclonedx;
mod spdx;

/// The CycloneDX SBOM's media type, as an OCI artifact type.
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// The SPDX SBOM's media type, as an OCI artifact type.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// Which SBOM format is written (`--sbom-format`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// CycloneDX 1.5 JSON.
    #[default]
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

impl SbomFormat {
    /// Its name, as the flag takes it.
    pub fn name(self) -> &'static str {
        match self {
            SbomFormat::Cyclonedx => "cyclonedx",
            SbomFormat::Spdx => "spdx",
        }
    }

    /// Its media type, as the referrer's artifact type.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Cyclonedx => MEDIA_TYPE,
            SbomFormat::Spdx => SPDX_MEDIA_TYPE,
        }
    }

    /// Whether `media_type` is an SBOM's.
    pub fn is_sbom(media_type: &str) -> bool {
        media_type == MEDIA_TYPE || media_type == SPDX_MEDIA_TYPE
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = Error;
    fn from_str(text: &str) -> Result<SbomFormat> {
        match text {
            "cyclonedx" => Ok(SbomFormat::Cyclonedx),
            "spdx" => Ok(SbomFormat::Spdx),
            _ => Err(Error::InvalidInput {
                what: "SBOM format",
                value: text.to_string(),
                reason: "expected cyclonedx or spdx".into(),
            }),
        }
    }
}

/// A crate in the graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Crate {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its license expression, when it declares one.
    pub license: Option<String>,
    /// Its `Cargo.lock` SHA-256, for a registry crate.
    pub checksum: Option<String>,
    /// Only the build uses it (not linked into the binary).
    pub build_only: bool,
}

impl Crate {
    /// Its package URL, also its reference in the documents.
    pub fn purl(&self) -> String {
        purl(&self.name, &self.version)
    }
}

/// The binary's crates and how they depend on each other: what both formats are written
/// from, and what is cached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Graph {
    /// The binary's own package.
    pub root: Crate,
    /// The others, sorted by purl.
    pub crates: Vec<Crate>,
    /// Each included package's purl, and the purls it depends on with whether the edge
    /// only serves the build (a build dependency, or a proc-macro); sorted.
    pub edges: Vec<(String, Vec<(String, bool)>)>,
    /// The target it was built for.
    pub target: String,
    /// The transpiler that made the Rust, if one did.
    pub ruchy: Option<String>,
    /// The documents' timestamp.
    pub epoch: u64,
}

/// `Cargo.lock`'s checksum per (name, version).
fn lock_checksums(lock: &str) -> BTreeMap<(String, String), String> {
    let mut sums = BTreeMap::new();
    let (mut name, mut version, mut checksum) = (None, None, None);
    let mut flush =
        |name: &mut Option<String>, version: &mut Option<String>, checksum: &mut Option<String>| {
            if let (Some(n), Some(v), Some(c)) = (name.take(), version.take(), checksum.take()) {
                sums.insert((n, v), c);
            }
            *name = None;
            *version = None;
            *checksum = None;
        };
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            flush(&mut name, &mut version, &mut checksum);
        }
        let value = |key: &str| {
            line.strip_prefix(key)
                .and_then(|rest| rest.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if let Some(v) = value("name") {
            name = Some(v);
        } else if let Some(v) = value("version") {
            version = Some(v);
        } else if let Some(v) = value("checksum") {
            checksum = Some(v);
        }
    }
    flush(&mut name, &mut version, &mut checksum);
    sums
}

/// The packages the root links (`runtime`) and the ones only its build uses.
fn reachable(metadata: &Metadata, root: &PackageId) -> (BTreeSet<PackageId>, BTreeSet<PackageId>) {
    let Some(resolve) = &metadata.resolve else {
        return Default::default();
    };
    let nodes: BTreeMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let is_proc_macro = |id: &PackageId| {
        metadata
            .packages
            .iter()
            .any(|p| &p.id == id && is_proc_macro(p))
    };
    // Walk from the root: an edge is runtime when it is a normal dependency of a runtime
    // crate and not a proc-macro; everything else the build reaches is build-only.
    let mut runtime = BTreeSet::new();
    let mut build = BTreeSet::new();
    let mut stack = vec![(root.clone(), true)];
    while let Some((id, linked)) = stack.pop() {
        let set = if linked { &mut runtime } else { &mut build };
        if !set.insert(id.clone()) {
            continue;
        }
        let Some(node) = nodes.get(&id) else { continue };
        for dep in &node.deps {
            let normal = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Normal);
            let build_dep = dep
                .dep_kinds
                .iter()
                .any(|k| k.kind == DependencyKind::Build);
            if !normal && !build_dep {
                continue; // dev-only
            }
            let links = linked && normal && !is_proc_macro(&dep.pkg);
            stack.push((dep.pkg.clone(), links));
        }
    }
    let build_only = build.difference(&runtime).cloned().collect();
    runtime.remove(root);
    (runtime, build_only)
}

/// [`generate`], with the crate graph remembered under `cache_dir` by everything it depends
/// on (the lock file, the manifest, target, package, epoch and transpiler): a no-change
/// rebuild asks cargo nothing.
pub fn generate_cached(
    cache_dir: &Path,
    manifest: &Path,
    package: &str,
    target: &str,
    epoch: u64,
    ruchy: Option<&str>,
    format: SbomFormat,
) -> Result<(Vec<u8>, SbomRecord)> {
    let lock = manifest
        .parent()
        .map(|dir| dir.join("Cargo.lock"))
        .and_then(|lock| std::fs::read(lock).ok());
    let key = lock.map(|lock| {
        let mut key = Sha256::new();
        key.update(env!("CARGO_PKG_VERSION"));
        key.update(&lock);
        key.update(std::fs::read(manifest).unwrap_or_default());
        key.update(format!(
            "{package}\0{target}\0{epoch}\0{}",
            ruchy.unwrap_or("")
        ));
        hex(&key.finalize())
    });
    let remembered = key.map(|k| {
        cache_dir
            .join("sbom")
            .join(format!("graph-{}.json", &k[..32]))
    });
    let cached = remembered
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Graph>(&bytes).ok());
    let graph = match cached {
        Some(graph) => graph,
        None => {
            let graph = Graph::read(manifest, package, target, epoch, ruchy)?;
            if let (Some(path), Ok(bytes)) = (remembered, serde_json::to_vec(&graph)) {
                // A cache that cannot be written costs the next build a `cargo metadata`.
                let _ =
                    crate::adapters::fsutil::write_file_atomically("the SBOM cache", &path, &bytes);
            }
            graph
        }
    };
    graph.write(format)
}

/// The SBOM of `package` in the project at `manifest`, built for `target`, as JSON bytes in
/// `format`. `epoch` is its timestamp; `ruchy` names the transpiler that made the Rust, if one
/// did.
pub fn generate(
    manifest: &Path,
    package: &str,
    target: &str,
    epoch: u64,
    ruchy: Option<&str>,
    format: SbomFormat,
) -> Result<(Vec<u8>, SbomRecord)> {
    Graph::read(manifest, package, target, epoch, ruchy)?.write(format)
}

impl Graph {
    /// Walks cargo's resolved graph of `package` for `target`.
    pub fn read(
        manifest: &Path,
        package: &str,
        target: &str,
        epoch: u64,
        ruchy: Option<&str>,
    ) -> Result<Graph> {
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(manifest)
            .other_options(vec!["--filter-platform".to_string(), target.to_string()])
            .exec()
            .map_err(|e| crate::pipeline::source::metadata_error(manifest, e))?;
        let root = metadata
            .packages
            .iter()
            .find(|p| p.name.as_str() == package && metadata.workspace_members.contains(&p.id))
            .ok_or_else(|| Error::CargoMetadata {
                manifest: manifest.to_path_buf(),
                message: format!("no package {package} in the workspace"),
            })?;
        let lock =
            std::fs::read_to_string(metadata.workspace_root.join("Cargo.lock")).unwrap_or_default();
        let checksums = lock_checksums(&lock);
        let (runtime, build_only) = reachable(&metadata, &root.id);
        let by_id: BTreeMap<&PackageId, &Package> =
            metadata.packages.iter().map(|p| (&p.id, p)).collect();
        let node = |package: &Package, build_only: bool| {
            let (name, version) = (package.name.to_string(), package.version.to_string());
            Crate {
                checksum: checksums.get(&(name.clone(), version.clone())).cloned(),
                license: package.license.clone(),
                name,
                version,
                build_only,
            }
        };
        let mut crates: Vec<Crate> = runtime
            .iter()
            .chain(build_only.iter())
            .filter_map(|id| by_id.get(id).map(|p| node(p, build_only.contains(id))))
            .collect();
        crates.sort_by_key(Crate::purl);
        let included: BTreeSet<&PackageId> = runtime
            .iter()
            .chain(build_only.iter())
            .chain([&root.id])
            .collect();
        Ok(Graph {
            root: node(root, false),
            crates,
            edges: edges(&metadata, &by_id, &included),
            target: target.to_string(),
            ruchy: ruchy.map(str::to_string),
            epoch,
        })
    }

    /// The document in `format`, and the record of it.
    pub fn write(&self, format: SbomFormat) -> Result<(Vec<u8>, SbomRecord)> {
        let document = match format {
            SbomFormat::Cyclonedx => cyclonedx::document(self),
            SbomFormat::Spdx => spdx::document(self),
        };
        let mut bytes = serde_json::to_vec_pretty(&document).map_err(|source| Error::Json {
            what: "the SBOM",
            source,
        })?;
        bytes.push(b'\n');
        let record = SbomRecord {
            components: self.crates.len(),
            build_only: self.crates.iter().filter(|c| c.build_only).count(),
            digest: crate::adapters::fsutil::sha256_digest(&bytes),
            format: format.name().to_string(),
        };
        Ok((bytes, record))
    }

    /// The crates the binary links (not build-only), as `name@version`, sorted.
    pub fn runtime_crates(&self) -> Vec<String> {
        self.crates
            .iter()
            .filter(|c| !c.build_only)
            .map(|c| format!("{}@{}", c.name, c.version))
            .collect()
    }

    /// The documents' timestamp, RFC 3339.
    fn created(&self) -> String {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.epoch),
        )
        .to_string()
    }
}

/// A document's unique name from its content, so the same graph gives the same document: a
/// version 4 UUID shaped from the hash of `document`.
fn content_uuid(document: &Value) -> String {
    let body = serde_json::to_vec(document).unwrap_or_default();
    let h = hex(&Sha256::digest(&body));
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A crate's package URL, also its `bom-ref`.
fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

/// The dependency graph among the `included` packages (dev dependencies left out), sorted by
/// purl; an edge serves only the build when it is no normal dependency or reaches a
/// proc-macro.
fn edges(
    metadata: &Metadata,
    by_id: &BTreeMap<&PackageId, &Package>,
    included: &BTreeSet<&PackageId>,
) -> Vec<(String, Vec<(String, bool)>)> {
    let mut edges = Vec::new();
    let Some(resolve) = &metadata.resolve else {
        return edges;
    };
    for node in resolve.nodes.iter().filter(|n| included.contains(&n.id)) {
        let Some(package) = by_id.get(&node.id) else {
            continue;
        };
        let mut on: Vec<(String, bool)> = node
            .deps
            .iter()
            .filter(|d| included.contains(&d.pkg))
            .filter(|d| {
                d.dep_kinds
                    .iter()
                    .any(|k| k.kind != DependencyKind::Development)
            })
            .filter_map(|d| {
                let dep = by_id.get(&d.pkg)?;
                let normal = d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal);
                let build = !normal || is_proc_macro(dep);
                Some((purl(dep.name.as_str(), &dep.version.to_string()), build))
            })
            .collect();
        on.sort();
        on.dedup_by(|a, b| a.0 == b.0);
        edges.push((
            purl(package.name.as_str(), &package.version.to_string()),
            on,
        ));
    }
    edges.sort();
    edges
}

fn is_proc_macro(package: &Package) -> bool {
    package
        .targets
        .iter()
        .any(|t| t.kind.iter().any(|k| k.to_string() == "proc-macro"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_checksums_are_read() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"abc\"\n\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n";
        let sums = lock_checksums(lock);
        assert_eq!(
            sums.get(&("a".into(), "1.0.0".into())).map(String::as_str),
            Some("abc")
        );
        assert_eq!(sums.len(), 1);
    }
}
