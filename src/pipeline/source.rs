//! Stage 1, prepare: turns what the user pointed at (a Cargo project, a `.rs` file or a
//! `.ruchy` file) into a Cargo project and the one binary target to build from it; or, for a
//! Linux executable built elsewhere, names it for packaging as it is.
//!
//! Single files get a generated project in the cache directory, never in the user's tree, and
//! the same one each time (keyed by the file's canonical path) so rebuilds are incremental.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::adapters::fsutil::{hex, write_file_atomically, write_if_changed};
use crate::core::error::{Error, Result};
use crate::core::metrics::EmbeddedManifest;

/// What kind of input was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A directory with a `Cargo.toml` (a package or a workspace).
    CargoProject,
    /// A single Rust file with a `main`.
    RustFile,
    /// A single Ruchy file, transpiled to Rust first.
    RuchyFile,
    /// A Linux executable built elsewhere, packaged without a compile.
    Binary,
}

/// How to find and prepare the source. In a request's JSON only what the build asks for
/// travels (`bin`, `lambda`); the paths are the machine's that runs it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceOptions {
    /// The path the user gave.
    #[serde(skip)]
    pub path: PathBuf,
    /// `--bin`: which binary of a multi-binary project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    /// `--ruchy`: the transpiler to run; `ruchy` on PATH when unset.
    #[serde(skip)]
    pub ruchy: Option<PathBuf>,
    /// Where generated projects live.
    #[serde(skip)]
    pub cache_dir: PathBuf,
    /// Wrap a single-file source's `handle_request` in the Lambda Runtime API loop
    /// (`ruchy-image lambda`); a Cargo project serves the Runtime API itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lambda: bool,
    /// The source's checkout, for the image's `revision` and `source` annotations; git reads
    /// it from the checkout when unset. Set for a source that travels without its checkout (a
    /// service's upload: see [`SourceOptions::with_checkout`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Checkout>,
}

/// Where a source came from in version control.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Checkout {
    /// The commit (`git rev-parse HEAD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The origin's URL, without credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

impl SourceOptions {
    /// These options with the checkout the source is in read now, so the facts travel with a
    /// request whose source goes without its `.git` (to a service).
    pub fn with_checkout(mut self) -> SourceOptions {
        if self.checkout.is_none() {
            let is_dir = self.path.is_dir();
            self.checkout = Some(checkout(checkout_of(&self.path, is_dir)));
        }
        self
    }

    /// The checkout: as given, or read by git from `dir`.
    fn checkout_in(&self, dir: &Path) -> Checkout {
        self.checkout.clone().unwrap_or_else(|| checkout(dir))
    }
}

/// What git says of the checkout at `dir`.
fn checkout(dir: &Path) -> Checkout {
    Checkout {
        revision: git(dir, &["rev-parse", "HEAD"]),
        repository: git(dir, &["remote", "get-url", "origin"]).map(|url| without_credentials(&url)),
    }
}

/// A Cargo project ready to compile, with the binary target chosen.
#[derive(Debug, Clone)]
pub struct Project {
    /// The path the user gave.
    pub source: PathBuf,
    /// What it was.
    pub kind: SourceKind,
    /// The `Cargo.toml` cargo is run on.
    pub manifest_path: PathBuf,
    /// Cargo's workspace root for that manifest.
    pub workspace_root: PathBuf,
    /// Cargo's target directory for that workspace.
    pub target_dir: PathBuf,
    /// The package that owns the binary.
    pub package: String,
    /// The package's version.
    pub version: String,
    /// The binary target.
    pub bin: String,
    /// The git commit of the source checkout, when it is one.
    pub revision: Option<String>,
    /// The git remote the checkout came from, when it has one.
    pub repository: Option<String>,
    /// `ruchy --version` of the transpiler that made the Rust, for `.ruchy` sources.
    pub transpiler: Option<String>,
    /// The manifest a single `.rs` file carried (its dependencies came from it).
    pub embedded_manifest: Option<EmbeddedManifest>,
    /// The path dependencies a single `.rs` file's manifest names, for a builder container.
    pub path_dependencies: Option<PathDependencies>,
}

/// What a builder container needs beyond a generated project's directory: the path
/// dependencies its file names (the project's manifest has their paths on this machine).
#[derive(Debug, Clone)]
pub struct PathDependencies {
    /// Each dependency's directory here, and where it goes under the project root.
    pub trees: Vec<(PathBuf, String)>,
    /// The project's `Cargo.toml` as a builder sees it, with the dependencies at those places.
    pub manifest: String,
}

/// A Linux executable someone built elsewhere (CI's own cargo, another language), to be
/// packaged as it is.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    /// The path the user gave.
    pub path: PathBuf,
    /// Its name in the image and the default tag: the file name, made a valid name.
    pub bin: String,
    /// The git commit of the checkout the file sits in, when it is one.
    pub revision: Option<String>,
    /// The git remote that checkout came from, when it has one.
    pub repository: Option<String>,
}

/// ELF's magic number, which every Linux executable starts with.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Whether `path` is a file that starts like an ELF executable: a prebuilt binary rather than
/// a source. Anything unreadable is left for [`prepare`] to report.
pub fn is_prebuilt(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| &magic == ELF_MAGIC)
}

/// Names the prebuilt binary at `options.path` (its checks are the image's: see `elf`).
pub fn prebuilt(options: &SourceOptions) -> Result<Prebuilt> {
    let path = &options.path;
    if !is_prebuilt(path) {
        return Err(Error::UnknownSourceKind { path: path.clone() });
    }
    let bin = file_bin_name(path);
    if let Some(requested) = options.bin.as_deref().filter(|b| *b != bin) {
        return Err(Error::BinNotFound {
            requested: Some(requested.to_string()),
            available: vec![bin],
        });
    }
    let checkout = options.checkout_in(checkout_of(path, false));
    Ok(Prebuilt {
        path: path.clone(),
        bin,
        revision: checkout.revision,
        repository: checkout.repository,
    })
}

/// Detects the kind of source, generates a project for single files, and picks the binary.
pub fn prepare(options: &SourceOptions) -> Result<Project> {
    let path = &options.path;
    let meta = std::fs::metadata(path).map_err(|source| Error::SourceUnreadable {
        path: path.clone(),
        source,
    })?;
    let (kind, mut project) = if meta.is_dir() {
        let manifest = path.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(Error::UnknownSourceKind { path: path.clone() });
        }
        let bin = options.bin.as_deref();
        let metadata = metadata(&manifest, &options.cache_dir)?;
        (SourceKind::CargoProject, select_binary(&metadata, bin)?)
    } else if path.file_name() == Some("Cargo.toml".as_ref()) {
        let bin = options.bin.as_deref();
        let metadata = metadata(path, &options.cache_dir)?;
        (SourceKind::CargoProject, select_binary(&metadata, bin)?)
    } else {
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("rs") => SourceKind::RustFile,
            Some("ruchy") => SourceKind::RuchyFile,
            _ => return Err(Error::UnknownSourceKind { path: path.clone() }),
        };
        (kind, generate_project(options, kind)?)
    };
    project.source = path.clone();
    project.kind = kind;
    let checkout = options.checkout_in(checkout_of(path, meta.is_dir()));
    project.revision = checkout.revision;
    project.repository = checkout.repository;
    Ok(project)
}

/// The directory whose git checkout a source belongs to.
fn checkout_of(path: &Path, is_dir: bool) -> &Path {
    if is_dir {
        return path;
    }
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The binary name cargo will produce for a single file: its stem, made a valid crate name.
/// (A prebuilt binary passes its whole file name, which has no source extension to drop.)
pub fn file_bin_name(path: &Path) -> String {
    let stem = match path.extension().and_then(|e| e.to_str()) {
        Some("rs" | "ruchy") => path.file_stem(),
        _ => path.file_name(),
    };
    let stem = stem.and_then(|s| s.to_str()).unwrap_or("app");
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "app_");
    }
    name
}

/// Where the generated project of the single file `source` (canonical) lives in `cache_dir`:
/// one per file, so its rebuilds are incremental. A service that builds each upload in a
/// directory of its own removes it with that directory.
pub fn generated_dir(cache_dir: &Path, source: &Path, lambda: bool) -> PathBuf {
    let name = file_bin_name(source);
    let key = Sha256::digest(source.as_os_str().as_encoded_bytes());
    let flavour = if lambda { "-lambda" } else { "" };
    cache_dir
        .join("projects")
        .join(format!("{name}{flavour}-{}", &hex(&key)[..16]))
}

/// Writes (or refreshes) the generated Cargo project for a single `.rs` or `.ruchy` file.
/// Files are only rewritten when their content changes, so cargo's fingerprints stay valid
/// and a rebuild with no change does no work. We wrote the manifest, so we know its one
/// binary without asking cargo.
fn generate_project(options: &SourceOptions, kind: SourceKind) -> Result<Project> {
    let source =
        std::fs::canonicalize(&options.path).map_err(|source| Error::SourceUnreadable {
            path: options.path.clone(),
            source,
        })?;
    let name = file_bin_name(&source);
    let dir = generated_dir(&options.cache_dir, &source, options.lambda);
    // A Rust file is read and its manifest checked before the project directory is made, so
    // a bad manifest leaves nothing behind in the cache.
    let mut main_rs = None;
    let mut embedded = None;
    if kind == SourceKind::RustFile {
        let code = std::fs::read(&source).map_err(|source_err| Error::SourceUnreadable {
            path: options.path.clone(),
            source: source_err,
        })?;
        let found =
            crate::pipeline::frontmatter::extract(&options.path, &String::from_utf8_lossy(&code))?;
        match found.manifest {
            Some((form, mut table)) => {
                let deps = crate::pipeline::frontmatter::resolve_paths(&source, &mut table)?;
                let trees = crate::pipeline::frontmatter::builder_paths(&source, &deps)?;
                main_rs = Some(found.code.into_bytes());
                embedded = Some((form, table, trees));
            }
            None => main_rs = Some(code),
        }
    }
    let src_dir = dir.join("src");
    std::fs::create_dir_all(&src_dir).map_err(Error::io(format!(
        "creating the build project in {}",
        dir.display()
    )))?;
    let main_rs = match main_rs {
        Some(code) => code,
        None => transpile(options, &source, &src_dir)?,
    };
    if options.lambda {
        let code = String::from_utf8_lossy(&main_rs);
        let handler = crate::pipeline::lambda::handler_source(&code, &options.path)?;
        write_if_changed(&src_dir.join("handler.rs"), handler.as_bytes())?;
        let main_rs = crate::pipeline::lambda::RUNTIME_TEMPLATE.as_bytes();
        write_if_changed(&src_dir.join("main.rs"), main_rs)?;
    } else {
        write_if_changed(&src_dir.join("main.rs"), &main_rs)?;
    }
    let mut manifest = format!(
        "# Generated by ruchy-image for {source}; edits are overwritten.\n\
         [package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [[bin]]\nname = \"{name}\"\npath = \"src/main.rs\"\n\n\
         # Keep this project out of any workspace above the cache directory.\n[workspace]\n",
        source = source.display()
    );
    let mut version = "0.1.0".to_string();
    let mut embedded_manifest = None;
    let mut path_dependencies = None;
    if let Some((form, table, trees)) = embedded {
        let (text, package_version) = merged_manifest(&source, &name, form, &table);
        manifest = text;
        version = package_version;
        if !trees.is_empty() {
            let sent = crate::pipeline::frontmatter::with_builder_paths(&table, &trees);
            path_dependencies = Some(PathDependencies {
                manifest: merged_manifest(&source, &name, form, &sent).0,
                trees,
            });
        }
        embedded_manifest = Some(EmbeddedManifest {
            form,
            dependencies: crate::pipeline::frontmatter::dependency_names(&table),
            profile_keys: crate::pipeline::frontmatter::profile_keys(&table),
        });
    }
    let manifest_path = dir.join("Cargo.toml");
    write_if_changed(&manifest_path, manifest.as_bytes())?;
    if let Some(bin) = options.bin.as_deref().filter(|b| *b != name) {
        return Err(Error::BinNotFound {
            requested: Some(bin.to_string()),
            available: vec![name],
        });
    }
    Ok(Project {
        source: options.path.clone(),
        kind,
        manifest_path,
        target_dir: dir.join("target"),
        workspace_root: dir,
        package: name.clone(),
        version,
        bin: name,
        revision: None,
        repository: None,
        transpiler: match kind {
            SourceKind::RuchyFile => transpiler_version(options),
            _ => None,
        },
        embedded_manifest,
        path_dependencies,
    })
}

/// `ruchy --version` of the transpiler in use (`ruchy 3.213.0`).
fn transpiler_version(options: &SourceOptions) -> Option<String> {
    ruchy_version(&ruchy_program(options.ruchy.as_deref()))
}

/// The transpiler to run: `--ruchy PATH`, else `ruchy` on PATH.
pub fn ruchy_program(requested: Option<&Path>) -> PathBuf {
    requested.map_or_else(|| PathBuf::from("ruchy"), Path::to_path_buf)
}

/// `PROGRAM --version`, when it runs and says who it is.
pub fn ruchy_version(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// Fails at once, before an engine or a compiler is looked for, when a `.ruchy` source has no
/// transpiler to run.
pub fn check_transpiler(options: &SourceOptions) -> Result<()> {
    if options.path.extension().is_none_or(|e| e != "ruchy") {
        return Ok(());
    }
    let program = ruchy_program(options.ruchy.as_deref());
    match Command::new(&program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error::RuchyNotFound {
            program,
            reason: format!("`--version` failed ({})", out.status),
        }),
        Err(e) => Err(Error::RuchyNotFound {
            program,
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "not found".to_string(),
                _ => e.to_string(),
            },
        }),
    }
}

/// Runs `ruchy transpile FILE -o OUT` and returns the Rust it wrote.
fn transpile(options: &SourceOptions, source: &Path, src_dir: &Path) -> Result<Vec<u8>> {
    let program = options
        .ruchy
        .clone()
        .unwrap_or_else(|| PathBuf::from("ruchy"));
    let out = src_dir.join("main.rs.transpiled");
    let result = Command::new(&program)
        .arg("transpile")
        .arg(source)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| Error::RuchyNotFound {
            program: program.clone(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "not found".to_string()
            } else {
                e.to_string()
            },
        })?;
    if !result.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(Error::TranspileFailed {
            path: options.path.clone(),
            status: result.status,
            stderr: String::from_utf8_lossy(&result.stderr)
                .trim_end()
                .to_string()
                + &String::from_utf8_lossy(&result.stdout),
        });
    }
    let rust = std::fs::read(&out).map_err(Error::io(format!(
        "reading what `{} transpile` wrote to {}",
        program.display(),
        out.display()
    )))?;
    let _ = std::fs::remove_file(&out);
    Ok(rust)
}

/// The generated manifest with the file's own merged in: its `[package]` fields over ours
/// (but the name, which is the binary's), its other tables as they are. Also the version.
fn merged_manifest(
    source: &Path,
    name: &str,
    form: crate::core::metrics::ManifestForm,
    file: &toml::Table,
) -> (String, String) {
    let mut package = toml::Table::new();
    package.insert("name".into(), name.into());
    package.insert("version".into(), "0.1.0".into());
    package.insert("edition".into(), "2021".into());
    package.insert("publish".into(), false.into());
    if let Some(theirs) = file.get("package").and_then(|p| p.as_table()) {
        for (key, value) in theirs {
            if key != "name" {
                package.insert(key.clone(), value.clone());
            }
        }
    }
    let version = package
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("0.1.0")
        .to_string();
    let mut manifest = toml::Table::new();
    manifest.insert("package".into(), package.into());
    for (key, value) in file.iter().filter(|(k, _)| *k != "package") {
        manifest.insert(key.clone(), value.clone());
    }
    let mut bin = toml::Table::new();
    bin.insert("name".into(), name.into());
    bin.insert("path".into(), "src/main.rs".into());
    manifest.insert("bin".into(), toml::Value::Array(vec![bin.into()]));
    // Keep this project out of any workspace above the cache directory, and a builder's copies
    // of the file's path dependencies out of this one (as they are here).
    let mut workspace = toml::Table::new();
    workspace.insert(
        "exclude".into(),
        toml::Value::Array(vec!["path-deps".into()]),
    );
    manifest.insert("workspace".into(), workspace.into());
    let text = format!(
        "# Generated by ruchy-image for {} with its {}; edits are overwritten.\n{}",
        source.display(),
        form.describe(),
        toml::to_string(&manifest).unwrap_or_default()
    );
    (text, version)
}

/// What `cargo metadata --no-deps` said about a manifest.
#[derive(serde::Serialize, serde::Deserialize)]
struct Metadata {
    manifest: PathBuf,
    cargo: cargo_metadata::Metadata,
    /// Modification stamps of what the answer depends on: the manifests, and the `src` and
    /// `src/bin` directories cargo discovers binaries in.
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

/// Modification time (seconds, nanoseconds) and size of a file or directory.
type Stamp = (i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.mtime(), meta.mtime_nsec(), meta.len()))
}

/// A failed `cargo metadata`, with cargo's own words when it gave some.
pub(crate) fn metadata_error(manifest: &Path, error: cargo_metadata::Error) -> Error {
    Error::CargoMetadata {
        manifest: manifest.to_path_buf(),
        message: match error {
            cargo_metadata::Error::CargoMetadata { stderr } => stderr.trim().to_string(),
            other => other.to_string(),
        },
    }
}

/// `cargo metadata --no-deps` for `manifest`, remembered in the cache until a manifest or a
/// binary directory of the workspace changes (asking cargo costs more than a no-change
/// rebuild's whole budget).
fn metadata(manifest: &Path, cache_dir: &Path) -> Result<Metadata> {
    let canonical = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let mut key = Sha256::new();
    key.update(canonical.as_os_str().as_encoded_bytes());
    key.update(std::env::var("CARGO_TARGET_DIR").unwrap_or_default());
    let remembered = cache_dir
        .join("metadata")
        .join(format!("{}.json", &hex(&key.finalize())[..32]));
    let fresh = std::fs::read(&remembered)
        .ok()
        .and_then(|json| serde_json::from_slice::<Metadata>(&json).ok())
        .filter(|m| m.stamps.iter().all(|(path, was)| stamp(path) == *was));
    if let Some(mut metadata) = fresh {
        metadata.manifest = manifest.to_path_buf();
        return Ok(metadata);
    }

    let cargo = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .map_err(|e| metadata_error(manifest, e))?;
    let mut watched = vec![canonical, cargo.workspace_root.join("Cargo.toml").into()];
    for package in cargo.workspace_packages() {
        let manifest: PathBuf = package.manifest_path.clone().into();
        let dir = manifest.parent().unwrap_or(Path::new("/")).to_path_buf();
        watched.extend([manifest, dir.join("src"), dir.join("src/bin")]);
    }
    let metadata = Metadata {
        manifest: manifest.to_path_buf(),
        stamps: watched
            .into_iter()
            .map(|p| (stamp(&p), p))
            .map(|(s, p)| (p, s))
            .collect(),
        cargo,
    };
    // A cache that cannot be written only costs the next build a `cargo metadata`.
    if let Ok(json) = serde_json::to_vec(&metadata) {
        let _ = std::fs::create_dir_all(remembered.parent().expect("has a parent"));
        let _ = write_file_atomically("cargo metadata", &remembered, &json);
    }
    Ok(metadata)
}

/// Asks cargo about the project and picks the binary target: the one named by `--bin`, or the
/// only one there is (preferring the package at the manifest over other workspace members).
fn select_binary(metadata: &Metadata, requested: Option<&str>) -> Result<Project> {
    let manifest = metadata.manifest.as_path();
    let metadata = &metadata.cargo;
    let root = metadata.root_package().map(|p| p.id.clone());
    let mut bins: Vec<(&cargo_metadata::Package, String)> = metadata
        .workspace_packages()
        .into_iter()
        .flat_map(|package| {
            package
                .targets
                .iter()
                .filter(|t| t.is_bin())
                .map(move |t| (package, t.name.clone()))
        })
        .collect();
    let available = |bins: &[(&cargo_metadata::Package, String)]| {
        let mut names: Vec<String> = bins.iter().map(|(_, b)| b.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    let chosen = match requested {
        Some(name) => match bins.iter().filter(|(_, b)| b == name).count() {
            0 => {
                return Err(Error::BinNotFound {
                    requested: Some(name.to_string()),
                    available: available(&bins),
                })
            }
            1 => bins.iter().find(|(_, b)| b == name).cloned(),
            _ => {
                return Err(Error::BinAmbiguous {
                    available: bins
                        .iter()
                        .filter(|(_, b)| b == name)
                        .map(|(p, b)| format!("{b} (package {})", p.name))
                        .collect(),
                })
            }
        },
        None => {
            if let Some(root) = &root {
                let own: Vec<_> = bins
                    .iter()
                    .filter(|(p, _)| &p.id == root)
                    .cloned()
                    .collect();
                if !own.is_empty() {
                    bins = own;
                }
            }
            match bins.len() {
                0 => {
                    return Err(Error::BinNotFound {
                        requested: None,
                        available: vec![],
                    })
                }
                1 => bins.pop(),
                _ => {
                    return Err(Error::BinAmbiguous {
                        available: available(&bins),
                    })
                }
            }
        }
    };
    let (package, bin) = chosen.expect("a binary was chosen above");
    Ok(Project {
        source: PathBuf::new(),
        kind: SourceKind::CargoProject,
        manifest_path: manifest.to_path_buf(),
        workspace_root: metadata.workspace_root.clone().into(),
        target_dir: metadata.target_directory.clone().into(),
        package: package.name.to_string(),
        version: package.version.to_string(),
        bin,
        revision: None,
        repository: None,
        transpiler: None,
        embedded_manifest: None,
        path_dependencies: None,
    })
}

/// A remote URL without the user name and password a URL may carry (`https://user:token@host/x`
/// becomes `https://host/x`): the URL goes into image labels, which anyone who pulls can read.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `git@host:path` names an SSH user, not a secret.
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Runs a git query in `dir`; `None` when it is not a checkout or git is missing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_file_names_become_crate_names() {
        assert_eq!(file_bin_name(Path::new("a/fibonacci.rs")), "fibonacci");
        assert_eq!(file_bin_name(Path::new("hello world.ruchy")), "hello_world");
        assert_eq!(file_bin_name(Path::new("2fast.rs")), "app_2fast");
        assert_eq!(file_bin_name(Path::new("target/release/app")), "app");
        assert_eq!(file_bin_name(Path::new("dist/app.v2")), "app_v2");
    }

    #[test]
    fn remote_urls_lose_their_credentials() {
        for (url, clean) in [
            (
                "https://user:token@example.com/team/x.git",
                "https://example.com/team/x.git",
            ),
            (
                "https://ghp_secret@example.com/x.git",
                "https://example.com/x.git",
            ),
            (
                "ssh://git@example.com:22/x.git",
                "ssh://example.com:22/x.git",
            ),
            (
                "https://example.com/a@b/x.git",
                "https://example.com/a@b/x.git",
            ),
            ("git@example.com:team/x.git", "git@example.com:team/x.git"),
        ] {
            assert_eq!(without_credentials(url), clean, "{url}");
        }
    }
}
