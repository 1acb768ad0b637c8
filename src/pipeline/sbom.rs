//! A CycloneDX 1.5 SBOM of the crates in a binary, from cargo's resolved graph for the
//! target: each crate's name, version, `pkg:cargo/` purl, license expression and the
//! SHA-256 `Cargo.lock` records for it. Crates only the build uses (build scripts' and
//! proc-macros' dependencies, proc-macros themselves) are listed with scope `excluded`; dev
//! dependencies are left out. Deterministic: the same lock file and epoch give the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::error::{Error, Result};
use crate::core::metrics::SbomRecord;
use crate::pipeline::auditable::{self, DepInfo, DepKind, DepPackage};

/// The SBOM's media type, as an OCI artifact type.
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

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

/// [`generate`], remembered under `cache_dir` by everything it depends on (the lock file, the
/// manifest, target, package, epoch and transpiler): a no-change rebuild asks cargo nothing.
pub fn generate_cached(
    cache_dir: &Path,
    manifest: &Path,
    package: &str,
    target: &str,
    epoch: u64,
    ruchy: Option<&str>,
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
    let remembered = key.map(|k| cache_dir.join("sbom").join(format!("{}.json", &k[..32])));
    if let Some(bytes) = remembered.as_ref().and_then(|p| std::fs::read(p).ok()) {
        if let Ok(bom) = serde_json::from_slice::<Value>(&bytes) {
            let record = SbomRecord {
                components: components_len(&bom),
                build_only: bom["components"]
                    .as_array()
                    .map_or(0, |c| c.iter().filter(|c| c["scope"] == "excluded").count()),
                digest: crate::adapters::fsutil::sha256_digest(&bytes),
            };
            return Ok((bytes, record));
        }
    }
    let (bytes, record) = generate(manifest, package, target, epoch, ruchy)?;
    if let Some(path) = remembered {
        // A cache that cannot be written costs the next build a `cargo metadata`.
        let _ = crate::adapters::fsutil::write_file_atomically("the SBOM cache", &path, &bytes);
    }
    Ok((bytes, record))
}

/// What cargo knows of a crate beyond the embedded list: its license and its `Cargo.lock`
/// checksum, by (name, version).
#[derive(Default)]
struct Extras {
    licenses: BTreeMap<(String, String), String>,
    checksums: BTreeMap<(String, String), String>,
}

/// The SBOM of `package` in the project at `manifest`, built for `target`, as JSON bytes.
/// `epoch` is its timestamp; `ruchy` names the transpiler that made the Rust, if one did.
pub fn generate(
    manifest: &Path,
    package: &str,
    target: &str,
    epoch: u64,
    ruchy: Option<&str>,
) -> Result<(Vec<u8>, SbomRecord)> {
    let metadata = auditable::metadata(&auditable::metadata_command(manifest, target), manifest)?;
    let root = auditable::root_package(&metadata, manifest, package)?;
    let lock =
        std::fs::read_to_string(metadata.workspace_root.join("Cargo.lock")).unwrap_or_default();
    let extras = Extras {
        licenses: metadata
            .packages
            .iter()
            .filter_map(|p| {
                let license = p.license.clone()?;
                Some(((p.name.to_string(), p.version.to_string()), license))
            })
            .collect(),
        checksums: lock_checksums(&lock),
    };
    let info = DepInfo::from_metadata(&metadata, &root.id);
    let mut properties = vec![json!({ "name": "ruchy-image:target", "value": target })];
    if let Some(ruchy) = ruchy {
        properties.push(json!({ "name": "ruchy-image:ruchy-version", "value": ruchy }));
    }
    bom(&info, &extras, properties, epoch)
}

/// The SBOM of a binary someone else built, from the list it carries (its `.dep-v0`
/// section): the same crates, graph and scopes, without licenses and checksums, which the
/// list does not hold.
pub fn from_embedded(info: &DepInfo, epoch: u64) -> Result<(Vec<u8>, SbomRecord)> {
    let properties =
        vec![json!({ "name": "ruchy-image:crates-from", "value": auditable::SECTION })];
    bom(info, &Extras::default(), properties, epoch)
}

/// The CycloneDX document of `info`, with what `extras` knows of its crates, and our
/// `properties` in its metadata.
fn bom(
    info: &DepInfo,
    extras: &Extras,
    properties: Vec<Value>,
    epoch: u64,
) -> Result<(Vec<u8>, SbomRecord)> {
    let root = info.root().ok_or_else(|| Error::InvalidInput {
        what: "dependency list",
        value: auditable::SECTION.into(),
        reason: "it names no root package".into(),
    })?;
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": bom_metadata(root, extras, properties, epoch),
        "components": components(info, extras),
        "dependencies": dependencies(info),
    });
    bom["serialNumber"] = Value::String(serial_number(&bom));
    let mut bytes = serde_json::to_vec_pretty(&bom).map_err(|source| Error::Json {
        what: "the SBOM",
        source,
    })?;
    bytes.push(b'\n');
    let record = SbomRecord {
        components: components_len(&bom),
        build_only: info.counts().1,
        digest: crate::adapters::fsutil::sha256_digest(&bytes),
    };
    Ok((bytes, record))
}

/// A serial number from the content, so the same graph gives the same document: a version 4
/// UUID shaped from the hash of `bom`.
fn serial_number(bom: &Value) -> String {
    let body = serde_json::to_vec(bom).unwrap_or_default();
    let h = hex(&Sha256::digest(&body));
    format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A crate's package URL, also its `bom-ref`.
fn purl(package: &DepPackage) -> String {
    format!("pkg:cargo/{}@{}", package.name, package.version)
}

/// The SBOM's components, sorted: the crates the binary links (`required`) and the ones only
/// its build uses (`excluded`), with their licenses and `Cargo.lock` checksums.
fn components(info: &DepInfo, extras: &Extras) -> Vec<Value> {
    let mut components = Vec::new();
    for package in info.packages.iter().filter(|p| !p.root) {
        let key = (package.name.clone(), package.version.clone());
        let mut component = json!({
            "type": "library",
            "bom-ref": purl(package),
            "name": package.name,
            "version": package.version,
            "purl": purl(package),
            "scope": match package.kind {
                DepKind::Build => "excluded",
                DepKind::Runtime => "required",
            },
        });
        if let Some(license) = extras.licenses.get(&key) {
            component["licenses"] = json!([{ "expression": license }]);
        }
        if let Some(sum) = extras.checksums.get(&key) {
            component["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
        }
        components.push(component);
    }
    components.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    components
}

/// The SBOM's dependency graph (dev dependencies left out), sorted by ref.
fn dependencies(info: &DepInfo) -> Vec<Value> {
    let mut dependencies: Vec<Value> = info
        .packages
        .iter()
        .map(|package| {
            let mut on: Vec<String> = package
                .dependencies
                .iter()
                .filter_map(|&i| info.packages.get(i))
                .map(purl)
                .collect();
            on.sort();
            on.dedup();
            json!({ "ref": purl(package), "dependsOn": on })
        })
        .collect();
    dependencies.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    dependencies
}

/// The SBOM's `metadata`: its time (`epoch`), the tool, the application (`root`) and our
/// `properties`.
fn bom_metadata(root: &DepPackage, extras: &Extras, properties: Vec<Value>, epoch: u64) -> Value {
    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch),
    )
    .to_string();
    let mut application = json!({
        "type": "application",
        "bom-ref": purl(root),
        "name": root.name,
        "version": root.version,
        "purl": purl(root),
    });
    if let Some(license) = extras
        .licenses
        .get(&(root.name.clone(), root.version.clone()))
    {
        application["licenses"] = json!([{ "expression": license }]);
    }
    json!({
        "timestamp": created,
        "tools": { "components": [{
            "type": "application",
            "name": "ruchy-image",
            "version": env!("CARGO_PKG_VERSION"),
        }]},
        "component": application,
        "properties": properties,
    })
}

fn components_len(bom: &Value) -> usize {
    bom["components"].as_array().map_or(0, Vec::len)
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
