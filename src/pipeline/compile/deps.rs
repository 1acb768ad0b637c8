//! The dependency phase: registry crates compiled once into a target volume every project
//! (of one builder image) shares, and copied from there into a build's own target.
//!
//! Only that phase writes the shared volume, and it runs none of the project's code: it
//! builds a stand-in of the project (cargo-chef's recipe) whose manifests and lockfile are
//! the project's and whose every `.rs` file is an empty `main`, without the project's
//! `.cargo/` configuration (a linker or a wrapper there is the project's code too). What runs
//! is the dependencies' build scripts and proc macros, at the lockfile's versions. A project
//! with git dependencies skips the phase. The project's own compile then mounts the shared
//! volume read-only, copies the units the phase reported into its own target, and builds
//! there: whatever its code writes, no other project reads.

use std::collections::BTreeSet;
use std::io::Read;

use sha2::{Digest, Sha256};

use super::context::{Context, Entry};
use crate::core::error::{Error, Result};

/// What every `.rs` file of the stand-in holds: a library, a binary, a build script and a
/// proc macro all compile from it.
const STUB: &[u8] = b"#[allow(dead_code)]\nfn main() {}\n";

/// Where the compile container finds the units to copy (a tar path: no leading `/`).
pub(super) const UNITS: &str = "ruchy-image/units";

/// Where the shared volume is mounted, read-only, in the compile container.
pub(super) const SHARED: &str = "/ruchy-image/deps";

/// Copies the units listed in [`UNITS`] (`ROOT HASH` lines: the files cargo keeps of one unit
/// under `ROOT/deps`, `ROOT/.fingerprint` and `ROOT/build`) from the shared volume into the
/// build's own target, dates kept, so cargo finds them fresh. What the target has already
/// stays as it is (a build of the project running beside this one may be reading it), and
/// two builds of one project copy one after the other.
pub(super) const SEED: &str = r#"if [ -f /ruchy-image/units ]; then
  # mkdir is the lock (builder images need not have flock); one a killed build left is
  # broken after two minutes.
  n=0
  until mkdir /target/.ruchy-image-seeding 2>/dev/null; do
    n=$((n + 1))
    [ "$n" -lt 600 ] || rmdir /target/.ruchy-image-seeding
    sleep 0.2
  done
  cd /ruchy-image/deps || exit 97
  while read -r root hash; do
    for f in "$root"/deps/*-"$hash"* "$root"/.fingerprint/*-"$hash" "$root"/build/*-"$hash"; do
      if [ -e "$f" ] && [ ! -e "/target/$f" ]; then echo "$f"; fi
    done
  done < /ruchy-image/units > /tmp/ruchy-image-seed
  tar -cf - -T /tmp/ruchy-image-seed | tar -xf - -C /target
  copied=$?
  rmdir /target/.ruchy-image-seeding
  [ "$copied" -eq 0 ] ||
    { echo "ruchy-image: copying the shared dependencies into the build's target failed" >&2; exit 97; }
  cd /src || exit 97
fi"#;

/// The bytes of an entry of the context.
fn read(entry: &Entry) -> Result<Vec<u8>> {
    if let Some(content) = &entry.content {
        return Ok(content.clone());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&entry.path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(Error::io(format!("reading {}", entry.path.display())))?;
    Ok(bytes)
}

/// Whether `relative` decides which dependencies are fetched and how: a manifest, the
/// lockfile, cargo's configuration.
fn decides_dependencies(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    name == "Cargo.toml"
        || name == "Cargo.lock"
        || relative.starts_with(".cargo/")
        || relative.contains("/.cargo/")
}

/// A digest of what decides the project's dependencies (manifests, lockfile, cargo's
/// configuration), whatever its sources say.
pub(super) fn digest(context: &Context) -> Result<String> {
    let mut digest = Sha256::new();
    for entry in context
        .entries
        .iter()
        .filter(|e| e.link.is_none() && decides_dependencies(&e.relative))
    {
        digest.update(entry.relative.as_bytes());
        digest.update([0]);
        digest.update(read(entry)?);
        digest.update([0]);
    }
    Ok(crate::adapters::fsutil::hex(&digest.finalize()))
}

/// The lockfile at the context's root, if it has one.
pub(super) fn lockfile(context: &Context) -> Result<Option<Vec<u8>>> {
    context
        .entries
        .iter()
        .find(|e| e.relative == "Cargo.lock" && e.link.is_none())
        .map(read)
        .transpose()
}

/// Whether the lockfile names a git dependency (whose build script the shared phase would
/// run like a registry crate's; such projects compile every crate in their own target).
pub(super) fn has_git_dependencies(lock: &[u8]) -> bool {
    String::from_utf8_lossy(lock)
        .lines()
        .any(|l| l.trim_start().starts_with("source = \"git+"))
}

/// Whether the lockfile names a registry crate: with none, there is nothing to share.
pub(super) fn has_registry_dependencies(lock: &[u8]) -> bool {
    String::from_utf8_lossy(lock).lines().any(|l| {
        l.trim_start().starts_with("source = \"registry+")
            || l.trim_start().starts_with("source = \"sparse+")
    })
}

/// The stand-in of the project the dependency phase builds (and `cargo fetch` reads):
/// manifests and lockfile as they are, every `.rs` file an empty `main`, and nothing else but
/// cargo's configuration when `with_config` (a fetch needs its source replacements; the
/// dependency phase must not run a linker or wrapper it names).
pub(super) fn stand_in(context: &Context, with_config: bool) -> Context {
    let is_config =
        |e: &Entry| e.relative.starts_with(".cargo/") || e.relative.contains("/.cargo/");
    let entries = context
        .entries
        .iter()
        .filter(|e| e.link.is_none())
        .filter_map(|e| {
            let name = e.relative.rsplit('/').next().unwrap_or(&e.relative);
            if is_config(e) {
                with_config.then(|| e.clone())
            } else if name.ends_with(".rs") {
                Some(Entry {
                    content: Some(STUB.to_vec()),
                    size: STUB.len() as u64,
                    mode: 0o644,
                    ..e.clone()
                })
            } else if name == "Cargo.toml" || name == "Cargo.lock" {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    Context {
        entries,
        digest: [0; 32],
    }
}

/// The units a dependency phase built or found fresh, as `ROOT HASH` (ROOT under the target
/// directory, `x86_64-unknown-linux-musl/release`), gathered from cargo's JSON messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Units(BTreeSet<(String, String)>);

impl Units {
    /// Takes the units a line of cargo's JSON output names (`target` is where the target
    /// directory is mounted).
    pub fn observe(&mut self, line: &str, target: &str) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let paths: Vec<&str> = match message["reason"].as_str() {
            Some("compiler-artifact") => message["filenames"]
                .as_array()
                .map(|f| f.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default(),
            Some("build-script-executed") => message["out_dir"].as_str().into_iter().collect(),
            _ => return,
        };
        for path in paths {
            if let Some(unit) = unit_of(path, target) {
                self.0.insert(unit);
            }
        }
    }

    /// The list [`SEED`] reads.
    pub fn to_text(&self) -> String {
        self.0.iter().map(|(r, h)| format!("{r} {h}\n")).collect()
    }

    /// The list read back.
    pub fn from_text(text: &str) -> Units {
        Units(
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(r, h)| (r.to_string(), h.to_string()))
                .collect(),
        )
    }

    /// How many units.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The unit (root, hash) a file of cargo's output belongs to:
/// `/target/R/deps/libserde-0123456789abcdef.rlib` and
/// `/target/R/build/serde-0123456789abcdef/out` are both in R.
fn unit_of(path: &str, target: &str) -> Option<(String, String)> {
    let relative = path.strip_prefix(target)?.trim_start_matches('/');
    let parts: Vec<&str> = relative.split('/').collect();
    let at = parts.iter().rposition(|p| *p == "deps" || *p == "build")?;
    let name = parts.get(at + 1)?;
    let stem = name.split('.').next()?;
    let hash = stem.rsplit_once('-')?.1;
    let is_hash = hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hash && at > 0).then(|| (parts[..at].join("/"), hash.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_come_from_artifacts_and_build_script_outputs() {
        let mut units = Units::default();
        units.observe(
            r#"{"reason":"compiler-artifact","filenames":["/target/x86_64-unknown-linux-musl/release/deps/libserde-0123456789abcdef.rlib","/target/x86_64-unknown-linux-musl/release/deps/libserde-0123456789abcdef.rmeta"]}"#,
            "/target",
        );
        units.observe(
            r#"{"reason":"compiler-artifact","filenames":["/target/release/build/serde-fedcba9876543210/build-script-build"]}"#,
            "/target",
        );
        units.observe(
            r#"{"reason":"build-script-executed","out_dir":"/target/x86_64-unknown-linux-musl/release/build/serde-00112233445566ff/out"}"#,
            "/target",
        );
        units.observe(r#"{"reason":"build-finished","success":true}"#, "/target");
        units.observe("   Compiling serde v1.0.0", "/target");
        assert_eq!(
            units.to_text(),
            "release fedcba9876543210\n\
             x86_64-unknown-linux-musl/release 00112233445566ff\n\
             x86_64-unknown-linux-musl/release 0123456789abcdef\n"
        );
        assert_eq!(Units::from_text(&units.to_text()), units);
        assert_eq!(
            unit_of(
                "/elsewhere/release/deps/libx-0123456789abcdef.rlib",
                "/target"
            ),
            None
        );
        assert_eq!(
            unit_of("/target/release/deps/libx-notahash.rlib", "/target"),
            None
        );
    }

    #[test]
    fn the_stand_in_keeps_manifests_and_stubs_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("Cargo.toml", "[package]\nname = \"app\"\n"),
            ("Cargo.lock", "# lock\n"),
            ("build.rs", "fn main() { std::process::exit(1) }"),
            ("src/main.rs", "mod evil; fn main() {}"),
            ("src/evil.rs", "compile_error!(\"no\");"),
            ("crates/inner/Cargo.toml", "[package]\nname = \"inner\"\n"),
            ("crates/inner/src/lib.rs", "pub fn f() {}"),
            ("data/model.bin", "bytes"),
            (
                ".cargo/config.toml",
                "[target.x86_64-unknown-linux-musl]\nlinker = \"./evil.sh\"\n",
            ),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        }
        let context = Context::collect(root, &root.join("target")).unwrap();
        let stand_in = stand_in(&context, false);
        let names: Vec<&str> = stand_in
            .entries
            .iter()
            .map(|e| e.relative.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "Cargo.lock",
                "Cargo.toml",
                "build.rs",
                "crates/inner/Cargo.toml",
                "crates/inner/src/lib.rs",
                "src/evil.rs",
                "src/main.rs"
            ]
        );
        let for_fetch = super::stand_in(&context, true);
        assert!(for_fetch
            .entries
            .iter()
            .any(|e| e.relative == ".cargo/config.toml"));
        assert_eq!(for_fetch.entries.len(), stand_in.entries.len() + 1);
        for entry in stand_in
            .entries
            .iter()
            .filter(|e| e.relative.ends_with(".rs"))
        {
            assert_eq!(entry.content.as_deref(), Some(STUB));
        }

        // Sources do not change the digest; a manifest or cargo's configuration does.
        let before = digest(&context).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() { println!() }").unwrap();
        let after_source = digest(&Context::collect(root, &root.join("target")).unwrap()).unwrap();
        assert_eq!(before, after_source);
        std::fs::write(root.join(".cargo/config.toml"), "").unwrap();
        let after_config = digest(&Context::collect(root, &root.join("target")).unwrap()).unwrap();
        assert_ne!(before, after_config);
    }

    #[test]
    fn git_dependencies_are_found_in_the_lockfile() {
        let registry = "[[package]]\nname = \"serde\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
        assert!(!has_git_dependencies(registry.as_bytes()));
        let git = "[[package]]\nname = \"x\"\nsource = \"git+https://example.com/x#abc\"\n";
        assert!(has_git_dependencies(git.as_bytes()));
        assert!(has_registry_dependencies(registry.as_bytes()));
        assert!(!has_registry_dependencies(b"[[package]]\nname = \"app\"\n"));
    }
}
