//! Guards that remove what an engine test made, however the test ends, and the builder image
//! the tests compile in. Shared by the Dockerfile, compose and CI-script tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `docker ARGS`, ignoring the outcome (cleanup of what may already be gone).
fn docker_quietly(args: &[&str]) {
    let _ = Command::new("docker").args(args).output();
}

/// Images a test tagged, removed (with their untagged parents) however it ends.
pub struct Images(pub Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in self.0.iter().rev() {
            docker_quietly(&["rmi", "-f", image]);
        }
    }
}

/// Images a `docker build` made: the steps' intermediate images and each stage's result
/// (the classic builder keeps them all as its cache). Removed leaf first, and only while
/// untagged and without children: base images, the builder image and anything another build
/// still stands on are left alone.
#[derive(Default)]
pub struct BuildCache(pub Vec<String>);

impl BuildCache {
    /// Records the image IDs a classic build printed (` ---> 0123456789ab` lines).
    pub fn record(&mut self, build_output: &str) {
        for line in build_output.lines() {
            let Some(id) = line.trim().strip_prefix("---> ") else {
                continue;
            };
            if id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()) {
                self.0.push(id.to_string());
            }
        }
    }
}

impl Drop for BuildCache {
    fn drop(&mut self) {
        let mut seen = std::collections::HashSet::new();
        for id in self.0.iter().rev() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let tags = Command::new("docker")
                .args(["image", "inspect", "--format", "{{len .RepoTags}}", id])
                .output();
            let untagged = tags.is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0");
            if untagged {
                // No -f: an image with children or in use stays.
                docker_quietly(&["rmi", id]);
            }
        }
    }
}

/// Cache volumes `ruchy-image build --builder docker` made for a project at this path.
pub struct Volumes(pub String);

impl Drop for Volumes {
    fn drop(&mut self) {
        let filter = format!("label=dev.ruchy.image.cache={}", self.0);
        let Ok(list) = Command::new("docker")
            .args(["volume", "ls", "-q", "-f", &filter])
            .output()
        else {
            return;
        };
        for volume in String::from_utf8_lossy(&list.stdout).lines() {
            docker_quietly(&["volume", "rm", "-f", volume]);
        }
    }
}

/// The builder image `builder import-host` made from this machine's toolchain (made now if it
/// is missing or stale): no registry may be reachable, so `rust:1-alpine` is not used.
pub fn builder_image() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["builder", "import-host", "--json"])
        .output()
        .expect("ruchy-image runs");
    assert!(
        out.status.success(),
        "builder import-host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    imported["tag"].as_str().unwrap().to_string()
}

/// A Cargo project with the fibonacci example as its one binary, `fibonacci`.
pub fn fibonacci_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fibonacci.rs"),
        dir.path().join("src/main.rs"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"fibonacci\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    dir
}

/// The IDs of BuildKit's build cache records (layers, cache mounts, context snapshots).
fn buildkit_records() -> std::collections::HashSet<String> {
    // The engine runs one disk-usage query at a time and refuses others meanwhile ("a disk
    // usage operation is already running"): parallel tests take turns.
    let mut tries = 0;
    let out = loop {
        let out = Command::new("/usr/bin/docker")
            .args(["system", "df", "-v", "--format", "{{json .BuildCache}}"])
            .output()
            .expect("/usr/bin/docker runs");
        tries += 1;
        if out.status.success() || tries == 30 {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        out.status.success(),
        "docker system df failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_default();
    records
        .iter()
        .filter_map(|r| r["ID"].as_str().map(String::from))
        .collect()
}

/// BuildKit's build cache records a test's builds make: whatever was not there when the guard
/// was made is pruned by ID when it drops (records of another BuildKit build running at the
/// same time too: a cache miss for it, never a wrong build). Make it before the builds and
/// before the `Images` guard, so that it drops after the images that use its records.
pub struct BuildKitCache(std::collections::HashSet<String>);

impl BuildKitCache {
    pub fn new() -> Self {
        BuildKitCache(buildkit_records())
    }
}

impl Drop for BuildKitCache {
    fn drop(&mut self) {
        // A record goes only once its children have gone: a few passes.
        for _ in 0..5 {
            let new: Vec<String> = buildkit_records().difference(&self.0).cloned().collect();
            if new.is_empty() {
                return;
            }
            for id in new {
                let filter = format!("id={id}");
                let _ = Command::new("/usr/bin/docker")
                    .args(["builder", "prune", "--all", "--force", "--filter", &filter])
                    .output();
            }
        }
    }
}

/// Builds an image from `dockerfile` (classic builder, through the engine API) with `files`
/// as the rest of its context.
pub fn docker_build(tag: &str, dockerfile: &str, files: &[(&str, &Path)]) {
    use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
    use futures_util::StreamExt;

    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    for (name, path) in files {
        tar.append_path_with_name(path, name).unwrap();
    }
    let context = tar.into_inner().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let docker = super::common::docker_client().await;
        let options = BuildImageOptionsBuilder::default()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .version(BuilderVersion::BuilderV1)
            .build();
        let mut stream =
            docker.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(info) = stream.next().await {
            let info = info.unwrap_or_else(|e| panic!("docker build {tag}: {e}"));
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                panic!("docker build {tag}: {error}");
            }
        }
    });
}
