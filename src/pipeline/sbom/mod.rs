//! The SBOM of the crates in a binary: each crate's name, version, `pkg:cargo/` purl, license
//! expression and the SHA-256 `Cargo.lock` records for it, from cargo's resolved graph for
//! the target (the same walk that makes the list the binary carries, [`auditable`]), or from
//! the list a prebuilt binary carries. Crates only the build uses (build scripts' and
//! proc-macros' dependencies, proc-macros themselves) are marked build-only; dev dependencies
//! are left out. One graph, two writers: CycloneDX 1.5 ([`cyclonedx`], the default) and SPDX
//! 2.3 ([`spdx`]). Deterministic: the same lock file and epoch give the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::error::{Error, Result};
use crate::core::metrics::SbomRecord;
use crate::pipeline::auditable::{self, DepInfo, DepPackage};

mod cyclonedx;
mod spdx;

pub use spdx::BUILD_ONLY as SPDX_BUILD_ONLY;

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

/// What an SBOM is of, and how it is written.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The project's manifest.
    pub manifest: &'a Path,
    /// The package whose binary it describes.
    pub package: &'a str,
    /// The target the binary is built for.
    pub target: &'a str,
    /// Its timestamp (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// The transpiler that made the Rust, if one did.
    pub ruchy: Option<&'a str>,
    /// CycloneDX or SPDX.
    pub format: SbomFormat,
}

/// The SBOM of `subject` as JSON bytes, remembered under `cache_dir` by everything it depends
/// on (the lock file, the manifest, and every field of `subject`): a no-change rebuild asks
/// cargo nothing.
pub fn generate_cached(cache_dir: &Path, subject: &Subject) -> Result<(Vec<u8>, SbomRecord)> {
    let Subject {
        manifest,
        package,
        target,
        epoch,
        ruchy,
        format,
    } = *subject;
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
            "{package}\0{target}\0{epoch}\0{}\0{}",
            ruchy.unwrap_or(""),
            format.name()
        ));
        hex(&key.finalize())
    });
    // The document, and its record beside it.
    let remembered = key.map(|k| {
        let dir = cache_dir.join("sbom");
        (
            dir.join(format!("{}.json", &k[..32])),
            dir.join(format!("{}.record.json", &k[..32])),
        )
    });
    if let Some((document, record)) = &remembered {
        let bytes = std::fs::read(document).ok();
        let record = std::fs::read(record)
            .ok()
            .and_then(|r| serde_json::from_slice::<SbomRecord>(&r).ok());
        if let (Some(bytes), Some(record)) = (bytes, record) {
            if crate::adapters::fsutil::sha256_digest(&bytes) == record.digest {
                return Ok((bytes, record));
            }
        }
    }
    let (bytes, record) = generate(subject)?;
    if let (Some((document, at)), Ok(json)) = (remembered, serde_json::to_vec(&record)) {
        // A cache that cannot be written costs the next build a `cargo metadata`.
        let write = crate::adapters::fsutil::write_file_atomically;
        let _ = write("the SBOM cache", &document, &bytes)
            .and_then(|()| write("the SBOM cache", &at, &json));
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

impl Extras {
    fn license(&self, package: &DepPackage) -> Option<&String> {
        self.licenses
            .get(&(package.name.clone(), package.version.clone()))
    }

    fn checksum(&self, package: &DepPackage) -> Option<&String> {
        self.checksums
            .get(&(package.name.clone(), package.version.clone()))
    }
}

/// The SBOM of `subject`, asking cargo.
fn generate(subject: &Subject) -> Result<(Vec<u8>, SbomRecord)> {
    let Subject {
        manifest,
        package,
        target,
        epoch,
        ruchy,
        format,
    } = *subject;
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
    let mut properties = vec![("ruchy-image:target", target.to_string())];
    if let Some(ruchy) = ruchy {
        properties.push(("ruchy-image:ruchy-version", ruchy.to_string()));
    }
    document(&info, &extras, &properties, epoch, format)
}

/// The SBOM of a binary someone else built, from the list it carries (its `.dep-v0`
/// section): the same crates, graph and scopes, without licenses and checksums, which the
/// list does not hold.
pub fn from_embedded(
    info: &DepInfo,
    epoch: u64,
    format: SbomFormat,
) -> Result<(Vec<u8>, SbomRecord)> {
    let properties = [("ruchy-image:crates-from", auditable::SECTION.to_string())];
    document(info, &Extras::default(), &properties, epoch, format)
}

/// Our properties of a document (the target, the transpiler, where the crates came from).
type Properties<'a> = [(&'a str, String)];

/// The document of `info` in `format`, with what `extras` knows of its crates and our
/// `properties`, and the record of it.
fn document(
    info: &DepInfo,
    extras: &Extras,
    properties: &Properties<'_>,
    epoch: u64,
    format: SbomFormat,
) -> Result<(Vec<u8>, SbomRecord)> {
    let root = info.root().ok_or_else(|| Error::InvalidInput {
        what: "dependency list",
        value: auditable::SECTION.into(),
        reason: "it names no root package".into(),
    })?;
    let document = match format {
        SbomFormat::Cyclonedx => cyclonedx::document(info, root, extras, properties, epoch),
        SbomFormat::Spdx => spdx::document(info, root, extras, properties, epoch),
    };
    let mut bytes = serde_json::to_vec_pretty(&document).map_err(|source| Error::Json {
        what: "the SBOM",
        source,
    })?;
    bytes.push(b'\n');
    let (components, build_only) = info.counts();
    let record = SbomRecord {
        components,
        build_only,
        digest: crate::adapters::fsutil::sha256_digest(&bytes),
        format: format.name().to_string(),
    };
    Ok((bytes, record))
}

/// A crate's package URL, also its reference in the documents.
fn purl(package: &DepPackage) -> String {
    format!("pkg:cargo/{}@{}", package.name, package.version)
}

/// The documents' timestamp, RFC 3339.
fn created(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

/// A document's unique name from its content, so the same graph gives the same document: a
/// version 4 UUID shaped from the hash of `document`.
fn content_uuid(document: &serde_json::Value) -> String {
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
