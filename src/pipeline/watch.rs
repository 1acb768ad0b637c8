//! What a source is made of, as a dev loop watches it: a project directory's files less its
//! ignore rules (the files a build sends), or a single file with the settings file beside it
//! and, for a `.rs` file, the path dependencies its manifest names. A [`Snapshot`] is each
//! file's size and modification time to the nanosecond; two that differ mean a save.
//!
//! Polled rather than subscribed to (inotify): the same on every file system (bind mounts,
//! network shares, editors that replace files), and a project is a few hundred files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};

/// The files and trees that make up a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Single files (a missing one counts as a state too: deleting it is a change).
    files: Vec<PathBuf>,
    /// Directories walked as a build walks them, each with its target directory left out.
    trees: Vec<(PathBuf, PathBuf)>,
    /// What the builds write (metrics, layouts, archives): never a change to build again.
    outputs: Vec<PathBuf>,
}

/// Each watched file's size and modification time (nanoseconds), by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, Option<(u64, i128)>>);

impl Snapshot {
    /// How many files it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The files that differ between `self` and `newer` (added, removed or changed), sorted.
    pub fn changed(&self, newer: &Snapshot) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> = newer
            .0
            .iter()
            .filter(|(path, state)| self.0.get(*path) != Some(state))
            .map(|(path, _)| path.clone())
            .collect();
        changed.extend(
            self.0
                .keys()
                .filter(|path| !newer.0.contains_key(*path))
                .cloned(),
        );
        changed.sort();
        changed
    }
}

impl Watched {
    /// What `source` (a project directory, its `Cargo.toml`, or a `.rs`/`.ruchy` file) is
    /// made of now. A `.rs` file's manifest is read again each time: an edit can add a path
    /// dependency.
    pub fn of(source: &Path) -> Result<Watched> {
        let source = std::fs::canonicalize(source).map_err(|e| Error::SourceUnreadable {
            path: source.to_path_buf(),
            source: e,
        })?;
        let dir_of = |path: &Path| path.parent().unwrap_or(Path::new("/")).to_path_buf();
        if source.is_dir() || source.file_name() == Some("Cargo.toml".as_ref()) {
            let dir = match source.is_dir() {
                true => source,
                false => dir_of(&source),
            };
            let target = dir.join("target");
            return Ok(Watched {
                files: Vec::new(),
                trees: vec![(dir, target)],
                outputs: Vec::new(),
            });
        }
        let settings = dir_of(&source).join(crate::pipeline::plan::settings::FILE_NAME);
        let mut trees = Vec::new();
        if source.extension().is_some_and(|e| e == "rs") {
            let code = std::fs::read_to_string(&source).map_err(|e| Error::SourceUnreadable {
                path: source.clone(),
                source: e,
            })?;
            use crate::pipeline::frontmatter;
            if let Some((_, mut table)) = frontmatter::extract(&source, &code)?.manifest {
                let named = frontmatter::resolve_paths(&source, &mut table)?;
                for (dir, _) in frontmatter::builder_paths(&source, &named)? {
                    let target = dir.join("target");
                    trees.push((dir, target));
                }
            }
        }
        Ok(Watched {
            files: vec![source, settings],
            trees,
            outputs: Vec::new(),
        })
    }

    /// The same, less `outputs` (files or directories a build writes).
    pub fn without(mut self, outputs: &[PathBuf]) -> Watched {
        // As the walk names files: from the canonical directory (an output may not exist yet).
        let canonical = |path: &Path| {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            match (
                absolute.parent().map(std::fs::canonicalize),
                absolute.file_name(),
            ) {
                (Some(Ok(dir)), Some(name)) => dir.join(name),
                _ => absolute,
            }
        };
        self.outputs = outputs.iter().map(|p| canonical(p)).collect();
        self
    }

    /// Every watched file's state now. A file that vanishes between the walk and its
    /// `stat` is recorded as missing (the next snapshot settles it).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut states = BTreeMap::new();
        let mut paths = self.files.clone();
        for (dir, target) in &self.trees {
            paths.extend(crate::pipeline::compile::project_files(dir, target)?);
        }
        for path in paths {
            if self.outputs.iter().any(|out| path.starts_with(out)) {
                continue;
            }
            let state = std::fs::symlink_metadata(&path).ok().map(|meta| {
                use std::os::unix::fs::MetadataExt;
                let nanos =
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                (meta.len(), nanos)
            });
            states.insert(path, state);
        }
        Ok(Snapshot(states))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_project_directory_is_its_files_less_target_and_ignored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("Cargo.toml"), "[package]\nname = \"a\"\n");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        touch(&root.join("src/main.rs"), "fn main() {}\n");
        touch(&root.join("target/release/a"), "binary");
        touch(&root.join(".dockerignore"), "notes.txt\n");
        touch(&root.join("notes.txt"), "scratch");
        let watched = Watched::of(root).unwrap();
        let before = watched.snapshot().unwrap();
        let names: Vec<_> = before
            .0
            .keys()
            .map(|p| {
                p.strip_prefix(root.canonicalize().unwrap())
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [".dockerignore", "Cargo.toml", "src/main.rs"].map(PathBuf::from)
        );

        // The build's own output and ignored files are no change; a source edit is.
        touch(&root.join("target/release/a"), "another binary");
        touch(&root.join("notes.txt"), "more scratch");
        assert!(before.changed(&watched.snapshot().unwrap()).is_empty());
        touch(&root.join("src/main.rs"), "fn main() { println!(); }\n");
        touch(&root.join("src/lib.rs"), "");
        let after = watched.snapshot().unwrap();
        let changed = before.changed(&after);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed
            .iter()
            .all(|p| p.starts_with(root.canonicalize().unwrap().join("src"))));
    }

    #[test]
    fn what_the_builds_write_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        touch(&root.join("Cargo.toml"), "[package]\nname = \"a\"\n");
        touch(&root.join("src/main.rs"), "fn main() {}\n");
        let outputs = [root.join("metrics.json"), root.join("layout")];
        let watched = Watched::of(&root).unwrap().without(&outputs);
        let before = watched.snapshot().unwrap();
        touch(&root.join("metrics.json"), "{}");
        std::fs::create_dir_all(root.join("layout/blobs")).unwrap();
        touch(&root.join("layout/index.json"), "{}");
        assert!(before.changed(&watched.snapshot().unwrap()).is_empty());
        touch(&root.join("src/main.rs"), "fn main() { }\n");
        assert_eq!(before.changed(&watched.snapshot().unwrap()).len(), 1);
    }

    #[test]
    fn a_single_file_brings_its_settings_and_path_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("greeting/src")).unwrap();
        touch(
            &root.join("greeting/Cargo.toml"),
            "[package]\nname = \"greeting\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        );
        touch(&root.join("greeting/src/lib.rs"), "pub fn hi() {}\n");
        let app = root.join("app.rs");
        touch(
            &app,
            "---\n[dependencies]\ngreeting = { path = \"greeting\" }\n---\nfn main() {}\n",
        );
        let watched = Watched::of(&app).unwrap();
        let before = watched.snapshot().unwrap();
        // The settings file does not exist yet: making it is a change.
        touch(&root.join("ruchy-image.toml"), "optimize = \"size\"\n");
        touch(&root.join("greeting/src/lib.rs"), "pub fn hi() { }\n");
        let changed = before.changed(&watched.snapshot().unwrap());
        assert_eq!(
            changed,
            [
                root.join("greeting/src/lib.rs"),
                root.join("ruchy-image.toml")
            ]
        );
    }

    #[test]
    fn a_missing_source_is_an_error() {
        assert!(Watched::of(Path::new("/nonexistent/app.ruchy")).is_err());
    }
}
