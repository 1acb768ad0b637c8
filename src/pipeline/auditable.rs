//! The crates in the binary, in cargo-auditable's format: the resolved dependency list as
//! zlib-compressed JSON in a `.dep-v0` ELF section, which `rust-audit-info`, `cargo audit bin`
//! and Trivy read. We make the list from cargo's resolved graph (the walk the SBOM uses, see
//! [`DepInfo::from_metadata`]), write it into an object file for the target's architecture,
//! and link that object into the final binary only ([`link_args`]), so no dependency's
//! fingerprint changes. [`read`] takes it back out of any ELF binary (ours, or a prebuilt one
//! made by `cargo auditable`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};
use goblin::elf::Elf;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::core::error::{Error, Result};

/// The section that holds the list.
pub const SECTION: &str = ".dep-v0";
/// The symbol over the section, which the link keeps (`-u`), as `cargo auditable` names it.
pub const SYMBOL: &str = "AUDITABLE_VERSION_INFO";
/// The format revision we write: cargo metadata's graph, proc-macros and what only they and
/// build scripts use recorded as build dependencies (cargo-auditable's format 1).
pub const FORMAT: u32 = 1;
/// The largest list [`read`] inflates (cargo-auditable's readers stop at 8 MiB too).
const MAX_JSON: u64 = 8 << 20;

/// The dependency list a binary carries (cargo-auditable's `VersionInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepInfo {
    /// Every crate the build used, the binary's own (`root`) included, sorted by name and id.
    pub packages: Vec<DepPackage>,
    /// The format revision; 0 (absent) for lists made before proc-macros were told apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub format: u32,
}

/// One crate of a [`DepInfo`] (cargo-auditable's `Package`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepPackage {
    /// The crate's name.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// `crates.io`, `git`, `local`, `registry`, or another registry kind (`sparse`).
    pub source: String,
    /// Whether the binary links it or only its build uses it.
    #[serde(default, skip_serializing_if = "DepKind::is_runtime")]
    pub kind: DepKind,
    /// What it depends on, as indices into [`DepInfo::packages`], sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<usize>,
    /// Whether this is the binary's own package (exactly one is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

/// How a crate is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// Only by the build: build scripts, proc-macros and what they use.
    Build,
    /// Linked into the binary (the default, left out of the JSON).
    #[default]
    Runtime,
}

impl DepKind {
    fn is_runtime(&self) -> bool {
        *self == DepKind::Runtime
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `source` as cargo-auditable writes it: crates.io's index by its name, anything else by
/// its kind (`git`, `registry`, `sparse`), and a path dependency or the workspace's own
/// crates (no source) as `local`.
fn source_of(source: Option<&cargo_metadata::Source>) -> String {
    match source.map(|s| s.repr.as_str()) {
        None => "local".into(),
        Some("registry+https://github.com/rust-lang/crates.io-index") => "crates.io".into(),
        Some(repr) => repr.split('+').next().unwrap_or(repr).to_string(),
    }
}

/// `cargo metadata` of the project at `manifest`, for `target`: cargo's resolved graph,
/// as the list and the SBOM are made from it.
pub(crate) fn metadata_command(manifest: &Path, target: &str) -> cargo_metadata::MetadataCommand {
    let mut command = cargo_metadata::MetadataCommand::new();
    command
        .manifest_path(manifest)
        .other_options(vec!["--filter-platform".to_string(), target.to_string()]);
    command
}

/// [`metadata_command`], run.
pub(crate) fn metadata(
    command: &cargo_metadata::MetadataCommand,
    manifest: &Path,
) -> Result<Metadata> {
    command
        .exec()
        .map_err(|e| crate::pipeline::source::metadata_error(manifest, e))
}

/// The workspace member named `package`.
pub(crate) fn root_package<'m>(
    metadata: &'m Metadata,
    manifest: &Path,
    package: &str,
) -> Result<&'m Package> {
    metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == package && metadata.workspace_members.contains(&p.id))
        .ok_or_else(|| Error::CargoMetadata {
            manifest: manifest.to_path_buf(),
            message: format!("no package {package} in the workspace"),
        })
}

/// The packages the root links (`runtime`) and the ones only its build uses: the walk the
/// list is made from, and so the SBOM.
fn reachable(metadata: &Metadata, root: &PackageId) -> (BTreeSet<PackageId>, BTreeSet<PackageId>) {
    let Some(resolve) = &metadata.resolve else {
        return Default::default();
    };
    let nodes: BTreeMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let is_proc_macro = |id: &PackageId| {
        metadata.packages.iter().any(|p| {
            &p.id == id
                && p.targets
                    .iter()
                    .any(|t| t.kind.iter().any(|k| k.to_string() == "proc-macro"))
        })
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

impl DepInfo {
    /// The list for the package `root` in `metadata` (cargo's graph for the target, see
    /// `cargo metadata --filter-platform`): `root` and every crate it reaches by normal and
    /// build edges, with the edges between them. Dev dependencies are left out.
    pub fn from_metadata(metadata: &Metadata, root: &PackageId) -> DepInfo {
        let (runtime, build_only) = reachable(metadata, root);
        let included: BTreeSet<&PackageId> = runtime
            .iter()
            .chain(build_only.iter())
            .chain([root])
            .collect();
        let mut packages: Vec<_> = metadata
            .packages
            .iter()
            .filter(|p| included.contains(&p.id))
            .collect();
        // cargo-auditable's order: by name, then by id (which names source and version).
        packages.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.repr.cmp(&b.id.repr)));
        let index: BTreeMap<&PackageId, usize> = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.id, i))
            .collect();
        let edges: BTreeMap<&PackageId, Vec<usize>> = metadata
            .resolve
            .iter()
            .flat_map(|resolve| &resolve.nodes)
            .filter(|node| included.contains(&node.id))
            .map(|node| {
                let mut on: Vec<usize> = node
                    .deps
                    .iter()
                    .filter(|d| {
                        d.dep_kinds
                            .iter()
                            .any(|k| k.kind != DependencyKind::Development)
                    })
                    .filter_map(|d| index.get(&d.pkg).copied())
                    .collect();
                on.sort_unstable();
                on.dedup();
                (&node.id, on)
            })
            .collect();
        let packages = packages
            .into_iter()
            .map(|p| DepPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
                source: source_of(p.source.as_ref()),
                kind: match build_only.contains(&p.id) {
                    true => DepKind::Build,
                    false => DepKind::Runtime,
                },
                dependencies: edges.get(&p.id).cloned().unwrap_or_default(),
                root: &p.id == root,
            })
            .collect();
        DepInfo {
            packages,
            format: FORMAT,
        }
    }

    /// The binary's own package.
    pub fn root(&self) -> Option<&DepPackage> {
        self.packages.iter().find(|p| p.root)
    }

    /// The crates besides the root, and of those the ones only the build uses.
    pub fn counts(&self) -> (usize, usize) {
        let crates = self.packages.iter().filter(|p| !p.root);
        let build = crates.clone().filter(|p| p.kind == DepKind::Build).count();
        (crates.count(), build)
    }

    /// The section's content: the JSON, zlib-compressed.
    pub fn compress(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data serializes");
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(7));
        encoder.write_all(&json).expect("writing into memory");
        encoder.finish().expect("writing into memory")
    }

    /// Reads a section's content; what cargo-auditable's readers refuse is refused too (more
    /// or fewer than one root, an index out of range).
    pub fn decompress(section: &[u8]) -> Result<DepInfo> {
        let bad = |reason: String| Error::InvalidInput {
            what: "embedded dependency list",
            value: SECTION.into(),
            reason,
        };
        let mut json = Vec::new();
        flate2::read::ZlibDecoder::new(section)
            .take(MAX_JSON + 1)
            .read_to_end(&mut json)
            .map_err(|e| bad(format!("not zlib data: {e}")))?;
        if json.len() as u64 > MAX_JSON {
            return Err(bad(format!("it inflates to more than {MAX_JSON} bytes")));
        }
        let info: DepInfo =
            serde_json::from_slice(&json).map_err(|e| bad(format!("not its JSON: {e}")))?;
        let roots = info.packages.iter().filter(|p| p.root).count();
        if roots != 1 {
            return Err(bad(format!("{roots} root packages, not one")));
        }
        let n = info.packages.len();
        if info
            .packages
            .iter()
            .any(|p| p.dependencies.iter().any(|&d| d >= n))
        {
            return Err(bad("a dependency index past the list".into()));
        }
        Ok(info)
    }
}

/// A relocatable ELF object for `target` whose `.dep-v0` section holds `section`, under
/// [`SYMBOL`]; `None` for an architecture we do not write objects for (x86_64 and aarch64
/// Linux are the ones the builders make).
pub fn object_file(target: &str, section: &[u8]) -> Option<Vec<u8>> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionFlags, SectionKind, SymbolFlags, SymbolKind,
        SymbolScope,
    };
    let architecture = match crate::core::platform::arch(target) {
        _ if !target.contains("-linux-") || target.ends_with("x32") => return None,
        "x86_64" => Architecture::X86_64,
        "aarch64" => Architecture::Aarch64,
        _ => return None,
    };
    let mut file = Object::new(BinaryFormat::Elf, architecture, Endianness::Little);
    let id = file.add_section(
        Vec::new(),
        SECTION.as_bytes().to_vec(),
        SectionKind::ReadOnlyData,
    );
    // Not SHF_ALLOC: the section is in the file, never loaded, and never collected.
    file.section_mut(id).flags = SectionFlags::Elf { sh_flags: 0 };
    let offset = file.append_section_data(id, section, 1);
    file.add_symbol(Symbol {
        name: SYMBOL.as_bytes().to_vec(),
        value: offset,
        size: section.len() as u64,
        kind: SymbolKind::Data,
        scope: SymbolScope::Dynamic,
        weak: false,
        section: SymbolSection::Section(id),
        flags: SymbolFlags::None,
    });
    file.write().ok()
}

/// The object to link into `package`'s binary (of the project at `manifest`) for `target`,
/// from cargo's `metadata` of the project, and the file name it goes by (named by its
/// content, so a changed list is a changed rustc argument and cargo links again). `None` for
/// an architecture we write no object for.
pub fn object_for(
    metadata: &Metadata,
    manifest: &Path,
    package: &str,
    target: &str,
) -> Result<Option<(String, Vec<u8>)>> {
    let root = root_package(metadata, manifest, package)?;
    let info = DepInfo::from_metadata(metadata, &root.id);
    Ok(object_file(target, &info.compress()).map(|object| {
        let digest = crate::adapters::fsutil::hex(&sha2::Sha256::digest(&object));
        (format!("deps-{}.o", &digest[..16]), object)
    }))
}

/// What a build says when it cannot embed the list for `target`.
pub fn unsupported(target: &str) -> String {
    format!("no list of its crates is linked into the binary: ruchy-image writes the {SECTION} section for x86_64 and aarch64 Linux targets, not {target}")
}

/// rustc's arguments that link the object at `object` (a path as the compiler sees it) into
/// the binary, keeping its symbol as `cargo auditable` does.
pub fn link_args(object: &str) -> Vec<String> {
    vec![
        format!("-Clink-arg={object}"),
        format!("-Clink-arg=-Wl,-u,{SYMBOL}"),
    ]
}

/// The raw `.dep-v0` section of an ELF binary, if it has one.
pub fn section(binary: &[u8]) -> Result<Option<&[u8]>> {
    let elf = Elf::parse(binary).map_err(|e| Error::InvalidInput {
        what: "binary",
        value: format!("{} bytes", binary.len()),
        reason: format!("not an ELF file: {e}"),
    })?;
    let Some(header) = elf
        .section_headers
        .iter()
        .find(|h| elf.shdr_strtab.get_at(h.sh_name) == Some(SECTION))
    else {
        return Ok(None);
    };
    let start = usize::try_from(header.sh_offset).unwrap_or(usize::MAX);
    let end = usize::try_from(header.sh_size)
        .ok()
        .and_then(|size| start.checked_add(size));
    match end.and_then(|end| binary.get(start..end)) {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(Error::InvalidInput {
            what: "embedded dependency list",
            value: SECTION.into(),
            reason: "the section runs past the end of the file".into(),
        }),
    }
}

/// The dependency list an ELF binary carries, if it carries one: what `rust-audit-info`
/// prints, as data.
pub fn read(binary: &[u8]) -> Result<Option<DepInfo>> {
    section(binary)?.map(DepInfo::decompress).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DepInfo {
        let package = |name: &str, source: &str, kind, dependencies: Vec<usize>, root| DepPackage {
            name: name.into(),
            version: "1.0.0".into(),
            source: source.into(),
            kind,
            dependencies,
            root,
        };
        DepInfo {
            packages: vec![
                package("app", "local", DepKind::Runtime, vec![1, 2], true),
                package("serde", "crates.io", DepKind::Runtime, vec![2], false),
                package("serde_derive", "crates.io", DepKind::Build, vec![], false),
            ],
            format: FORMAT,
        }
    }

    /// `cargo metadata` of a made-up graph: app uses serde (whose derive is a proc-macro,
    /// using syn) and itoa, builds with cc (which uses shlex and itoa), tests with criterion.
    fn metadata() -> (Metadata, PackageId) {
        let crates_io = "registry+https://github.com/rust-lang/crates.io-index";
        let id = |name: &str| match name {
            "app" => "path+file:///w/app#0.1.0".to_string(),
            _ => format!("{crates_io}#{name}@1.0.0"),
        };
        let package = |name: &str, kind: &str| {
            serde_json::json!({
                "name": name, "version": if name == "app" { "0.1.0" } else { "1.0.0" },
                "id": id(name), "source": if name == "app" { None } else { Some(crates_io) },
                "dependencies": [], "features": {}, "manifest_path": format!("/w/{name}/Cargo.toml"),
                "targets": [{"name": name, "kind": [kind], "crate_types": [kind], "src_path": "/w/x.rs"}],
            })
        };
        // A normal dependency's kind is null in `cargo metadata`.
        let edge = |to: &str, kind: Option<&str>| {
            let kinds = serde_json::json!([{ "kind": kind, "target": null }]);
            serde_json::json!({"name": to, "pkg": id(to), "dep_kinds": kinds})
        };
        let node = |name: &str, deps: Vec<serde_json::Value>| serde_json::json!({"id": id(name), "deps": deps, "dependencies": [], "features": []});
        let json = serde_json::json!({
            "packages": [
                package("syn", "lib"), package("app", "bin"), package("serde", "lib"),
                package("serde_derive", "proc-macro"), package("cc", "lib"), package("shlex", "lib"),
                package("itoa", "lib"), package("criterion", "lib"),
            ],
            "workspace_members": [id("app")],
            "workspace_default_members": [id("app")],
            "resolve": {"root": id("app"), "nodes": [
                node("app", vec![edge("serde", None), edge("itoa", None),
                    edge("cc", Some("build")), edge("criterion", Some("dev"))]),
                node("serde", vec![edge("serde_derive", None)]),
                node("serde_derive", vec![edge("syn", None)]),
                node("cc", vec![edge("shlex", None), edge("itoa", None)]),
                node("syn", vec![]), node("shlex", vec![]), node("itoa", vec![]), node("criterion", vec![]),
            ]},
            "target_directory": "/w/target", "version": 1, "workspace_root": "/w",
        });
        let root = PackageId { repr: id("app") };
        (serde_json::from_value(json).unwrap(), root)
    }

    #[test]
    fn the_list_is_cargos_graph_with_build_only_crates_marked() {
        let (metadata, root) = metadata();
        let info = DepInfo::from_metadata(&metadata, &root);
        let listed: Vec<_> = info
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.kind, p.dependencies.clone(), p.root))
            .collect();
        let (b, r) = (DepKind::Build, DepKind::Runtime);
        assert_eq!(
            listed,
            [
                ("app", r, vec![1, 2, 3], true),
                ("cc", b, vec![2, 5], false),
                // Linked by app, built with by cc: the binary has it.
                ("itoa", r, vec![], false),
                ("serde", r, vec![4], false),
                ("serde_derive", b, vec![6], false),
                ("shlex", b, vec![], false),
                ("syn", b, vec![], false),
            ]
        );
        assert_eq!(info.packages[1].source, "crates.io");
        assert_eq!(info.packages[0].source, "local");
        assert_eq!(info.counts(), (6, 4));
        assert_eq!(DepInfo::decompress(&info.compress()).unwrap(), info);
    }

    #[test]
    fn the_json_has_cargo_auditables_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "packages": [
                    {"name": "app", "version": "1.0.0", "source": "local", "dependencies": [1, 2], "root": true},
                    {"name": "serde", "version": "1.0.0", "source": "crates.io", "dependencies": [2]},
                    {"name": "serde_derive", "version": "1.0.0", "source": "crates.io", "kind": "build"},
                ],
                "format": 1
            })
        );
        // cargo-auditable's own writer orders the keys this way too.
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(text.starts_with(r#"{"packages":[{"name":"app","version":"1.0.0","source":"local","dependencies":[1,2],"root":true}"#), "{text}");
        assert_eq!(source_of(None), "local");
    }

    #[test]
    fn written_objects_link_into_binaries_that_read_back() {
        let info = sample();
        for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-gnu"] {
            let object = object_file(target, &info.compress()).expect("an object");
            // The object itself is an ELF file with the section: what the linker copies.
            assert_eq!(read(&object).unwrap(), Some(info.clone()), "{target}");
            let elf = Elf::parse(&object).unwrap();
            let machine = match target.starts_with("x86_64") {
                true => goblin::elf::header::EM_X86_64,
                false => goblin::elf::header::EM_AARCH64,
            };
            assert_eq!(elf.header.e_machine, machine);
            assert_eq!(elf.header.e_type, goblin::elf::header::ET_REL);
            let sym = elf
                .syms
                .iter()
                .find(|s| elf.strtab.get_at(s.st_name) == Some(SYMBOL))
                .expect("the symbol");
            assert_eq!(sym.st_size as usize, info.compress().len());
            // The same list gives the same bytes: builds stay reproducible.
            assert_eq!(object, object_file(target, &info.compress()).unwrap());
        }
        assert_eq!(object_file("wasm32-unknown-unknown", b"x"), None);
        assert_eq!(
            link_args("/o/deps.o"),
            [
                "-Clink-arg=/o/deps.o",
                "-Clink-arg=-Wl,-u,AUDITABLE_VERSION_INFO"
            ]
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        let mut two_roots = sample();
        two_roots.packages[1].root = true;
        assert!(DepInfo::decompress(&two_roots.compress()).is_err());
        let mut past = sample();
        past.packages[0].dependencies.push(9);
        assert!(DepInfo::decompress(&past.compress()).is_err());
        assert!(DepInfo::decompress(b"not zlib").is_err());
        assert!(read(b"not an elf").is_err());
        assert_eq!(sample().counts(), (2, 1));
    }
}
