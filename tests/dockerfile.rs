//! `ruchy-image dockerfile` and `dockerfiles/`: the printed Dockerfile is the checked-in one,
//! and it builds, through the engine API, an image that runs as `ruchy-image build`'s does.
//!
//! Classic builds go through bollard's `build_image` (`BuilderV1`). BuildKit builds of
//! `dockerfiles/Dockerfile.buildkit` go through Debian's client, `DOCKER_BUILDKIT=1
//! /usr/bin/docker build`: BuildKit is built into the 20.10 engine, but bollard speaks it only
//! with its `buildkit` feature (a gRPC session), and the static client first on PATH wants a
//! buildx plugin it does not have.

mod common;
mod guards;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use guards::*;

/// The builds through the engine take turns. Two classic builds that miss the same cached step
/// at once make two images of it, and a later build may follow the other one's chain and miss
/// the layers it should reuse; and each test prunes the BuildKit records made while it ran.
static ENGINE_BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn engine_builds() -> std::sync::MutexGuard<'static, ()> {
    ENGINE_BUILDS.lock().unwrap_or_else(|e| e.into_inner())
}

fn dockerfile_text(name: &str) -> String {
    std::fs::read_to_string(repo().join("dockerfiles").join(name)).unwrap()
}

#[test]
fn the_printed_dockerfiles_are_the_checked_in_ones() {
    let printed = ruchy_image(["dockerfile"]).ok();
    assert_eq!(printed.stdout, dockerfile_text("Dockerfile"));
    let alpine = ruchy_image(["dockerfile", "--variant", "alpine"]).ok();
    assert_eq!(alpine.stdout, dockerfile_text("Dockerfile.alpine"));
    let buildkit = ruchy_image(["dockerfile", "--buildkit"]).ok();
    assert_eq!(buildkit.stdout, dockerfile_text("Dockerfile.buildkit"));
}

#[test]
fn a_project_and_options_fill_in_the_defaults() {
    let project = fibonacci_project();
    let printed = ruchy_image([
        "dockerfile",
        project.path().to_str().unwrap(),
        "-O",
        "nasa",
        "--builder-image",
        "ruchy-image-builder:1.95.0",
        "--base",
        "busybox:musl",
    ])
    .ok();
    for line in [
        "ARG BIN=fibonacci\n",
        "ARG OPTIMIZE=nasa\n",
        "ARG BUILDER_IMAGE=ruchy-image-builder:1.95.0\n",
        "ARG BASE=busybox:musl\n",
        "-t fibonacci .\n",
    ] {
        assert!(
            printed.stdout.contains(line),
            "{line} in\n{}",
            printed.stdout
        );
    }
}

#[test]
fn what_cannot_be_a_docker_build_is_refused() {
    let single = ruchy_image(["dockerfile", example("fibonacci.rs").to_str().unwrap()]);
    assert_eq!(single.code, Some(2), "{}", single.stderr);
    assert!(
        single
            .stderr
            .contains("a Dockerfile builds a Cargo project"),
        "{}",
        single.stderr
    );
    let several = ruchy_image(["dockerfile", fixture("workspace").to_str().unwrap()]);
    assert_eq!(several.code, Some(2), "{}", several.stderr);
    assert!(
        several.stderr.contains("choose one with --bin"),
        "{}",
        several.stderr
    );
    let missing = ruchy_image(["dockerfile", "/nonexistent/project"]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    let quoted = ruchy_image(["dockerfile", "--bin", "a\"b"]);
    assert_eq!(quoted.code, Some(2), "{}", quoted.stderr);
    assert!(quoted.stdout.is_empty(), "{}", quoted.stdout);
}

/// The context `docker build` would send: the project, plus the Dockerfile under its own name
/// and a `.dockerignore` that keeps both out of `COPY . .`, as the README advises, so that
/// the build stage's cache does not depend on which Dockerfile built it.
fn context_tar(project: &Path, dockerfile: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all(".", project).unwrap();
    let ignore = "target\nDockerfile*\n.dockerignore\n".to_string();
    for (name, text) in [
        ("Dockerfile.ruchy-image", dockerfile_text(dockerfile)),
        (".dockerignore", ignore),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap()
}

/// `docker build` of `dockerfiles/NAME` through the engine API, classic builder. Every image
/// the build makes is recorded in `cache` for removal. The build's output, or its error.
fn build(
    project: &Path,
    dockerfile: &str,
    args: &[(&str, &str)],
    tag: Option<&str>,
    cache: &mut BuildCache,
) -> Result<String, String> {
    use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
    use futures_util::StreamExt;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let docker = docker_client().await;
        let buildargs: HashMap<&str, &str> = args.iter().copied().collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile.ruchy-image")
            .buildargs(&buildargs)
            .rm(true)
            .forcerm(true)
            .version(BuilderVersion::BuilderV1);
        if let Some(tag) = tag {
            options = options.t(tag);
        }
        let body = bollard::body_full(context_tar(project, dockerfile).into());
        let mut stream = docker.build_image(options.build(), None, Some(body));
        let mut output = String::new();
        let mut failure = None;
        while let Some(info) = stream.next().await {
            match info {
                Ok(info) => {
                    if let Some(text) = info.stream {
                        output += &text;
                    }
                    if let Some(error) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(error);
                    }
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        cache.record(&output);
        match failure {
            None => Ok(output),
            Some(error) => Err(format!("{output}\n{error}")),
        }
    })
}

/// `DOCKER_BUILDKIT=1 docker build --progress=plain` of `dockerfiles/NAME` through Debian's
/// client. The build's output, or its error.
fn buildkit_build(
    project: &Path,
    dockerfile: &str,
    args: &[(&str, &str)],
    tag: &str,
) -> Result<String, String> {
    let client = Path::new("/usr/bin/docker");
    assert!(
        client.exists(),
        "no /usr/bin/docker; `bash .ci/setup` installs Debian's docker.io, whose client builds with BuildKit"
    );
    let mut command = std::process::Command::new(client);
    command
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--progress=plain", "-t", tag, "-f"])
        .arg(repo().join("dockerfiles").join(dockerfile));
    for (name, value) in args {
        command.arg("--build-arg").arg(format!("{name}={value}"));
    }
    let out = command.arg(project).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.success() {
        true => Ok(text),
        false => Err(text),
    }
}

/// A cache id of this test run's own, so that its BuildKit builds start from empty cache
/// mounts whatever ran before.
fn own_cache_id() -> String {
    format!(
        "ruchy-image-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// `docker inspect --format FORMAT IMAGE`, trimmed.
fn inspect(image: &str, format: &str) -> String {
    tool("docker", &["inspect", "--format", format, image])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// A file of an image, read through `docker cp` of a created container.
fn file_bytes(image: &str, path: &str) -> Vec<u8> {
    let id = tool("docker", &["create", image])
        .ok()
        .stdout
        .trim()
        .to_string();
    let copied = std::process::Command::new("docker")
        .args(["cp", &format!("{id}:{path}"), "-"])
        .output()
        .unwrap();
    tool("docker", &["rm", "-f", &id]).ok();
    assert!(copied.status.success(), "docker cp {path} from {image}");
    let mut archive = tar::Archive::new(&copied.stdout[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
    bytes
}

/// A `FROM scratch` busybox image with a shell and `/etc/passwd`: a stand-in for alpine, which
/// cannot be pulled here. Debian's busybox-static is a static binary.
fn busybox_base(tag: &str, cache: &mut BuildCache) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "no /bin/busybox; `bash .ci/setup` installs busybox-static"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY etc/ /etc/\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let out = tool(
        "docker",
        &["build", "-t", tag, dir.path().to_str().unwrap()],
    )
    .ok();
    cache.record(&out.stdout);
}

/// One test for every build, in order: they share the build stage through the layer cache,
/// and the cleanup of one must not race another's use of it.
#[test]
fn the_dockerfiles_build_images_that_run_like_ruchy_image_ones() {
    let _turn = engine_builds();
    let builder = builder_image();
    let project = fibonacci_project();
    let _volumes = Volumes(project.path().display().to_string());
    let dockerfile_tag = "ruchy-image-test/fib-dockerfile:aggressive";
    let ruchy_tag = "ruchy-image-test/fib-ruchy-image:aggressive";
    let alpine_tag = "ruchy-image-test/fib-dockerfile:alpine";
    let base_tag = "ruchy-image-test/busybox-base:local";
    let size_dockerfile_tag = "ruchy-image-test/fib-dockerfile:size";
    let size_ruchy_tag = "ruchy-image-test/fib-ruchy-image:size";
    let buildkit_tag = "ruchy-image-test/fib-dockerfile:buildkit";
    // Dropped in reverse: the builds' leftovers only after the tags are gone.
    let _buildkit_cache = BuildKitCache::new();
    let mut cache = BuildCache::default();
    let _images = Images(vec![
        buildkit_tag.into(),
        base_tag.into(),
        dockerfile_tag.into(),
        ruchy_tag.into(),
        alpine_tag.into(),
        size_dockerfile_tag.into(),
        size_ruchy_tag.into(),
    ]);

    // Bad build args fail in the build stage with a message saying what to pass.
    let no_bin = build(
        project.path(),
        "Dockerfile",
        &[("BUILDER_IMAGE", &builder)],
        None,
        &mut cache,
    )
    .unwrap_err();
    assert!(no_bin.contains("set --build-arg BIN=NAME"), "{no_bin}");
    let bad_preset = build(
        project.path(),
        "Dockerfile",
        &[
            ("BUILDER_IMAGE", &builder),
            ("BIN", "fibonacci"),
            ("OPTIMIZE", "fast"),
        ],
        None,
        &mut cache,
    )
    .unwrap_err();
    assert!(
        bad_preset.contains("OPTIMIZE=fast: expected none, balanced, aggressive, nasa or size"),
        "{bad_preset}"
    );

    let args = [
        ("BUILDER_IMAGE", builder.as_str()),
        ("BIN", "fibonacci"),
        ("OPTIMIZE", "aggressive"),
    ];
    build(
        project.path(),
        "Dockerfile",
        &args,
        Some(dockerfile_tag),
        &mut cache,
    )
    .unwrap_or_else(|e| panic!("docker build failed:\n{e}"));
    let run = tool("docker", &["run", "--rm", dockerfile_tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");
    assert_eq!(inspect(dockerfile_tag, "{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect(
            dockerfile_tag,
            "{{index .Config.Labels \"dev.ruchy.image.preset\"}} {{index .Config.Labels \"org.opencontainers.image.title\"}}"
        ),
        "aggressive fibonacci"
    );

    // The same project and preset through ruchy-image's own docker builder, without the
    // crate list it links into its binaries (`.dep-v0`), which a Dockerfile build has not.
    let metrics = ruchy_image([
        "build",
        project.path().to_str().unwrap(),
        "--builder",
        "docker",
        "--builder-image",
        &builder,
        "--no-embed-deps",
        "-O",
        "aggressive",
        "--tag",
        ruchy_tag,
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    let run = tool("docker", &["run", "--rm", ruchy_tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");

    let dockerfile_bytes = file_bytes(dockerfile_tag, "/usr/local/bin/fibonacci");
    let ruchy_bytes = file_bytes(ruchy_tag, "/usr/local/bin/fibonacci");
    let dockerfile_binary = dockerfile_bytes.len() as u64;
    let ruchy_binary = metrics["binary_size"].as_u64().unwrap();
    let dockerfile_layers: u64 = inspect(dockerfile_tag, "{{len .RootFS.Layers}}")
        .parse()
        .unwrap();
    let ruchy_layers = metrics["image"]["layer_count"].as_u64().unwrap();
    let size = |tag: &str| inspect(tag, "{{.Size}}").parse::<u64>().unwrap();
    let (dockerfile_size, ruchy_size) = (size(dockerfile_tag), size(ruchy_tag));
    println!("| image | binary | image (engine) | layers |");
    println!("|---|---|---|---|");
    println!("| docker build dockerfiles/Dockerfile | {dockerfile_binary} | {dockerfile_size} | {dockerfile_layers} |");
    println!(
        "| ruchy-image build --builder docker | {ruchy_binary} | {ruchy_size} | {ruchy_layers} |"
    );

    // Same builder image, same preset: the same binary, byte for byte (aggressive strips
    // everything the build directory or the profile's name could show up in).
    assert_eq!(ruchy_binary, ruchy_bytes.len() as u64);
    assert!(
        dockerfile_bytes == ruchy_bytes,
        "binaries differ: {dockerfile_binary} vs {ruchy_binary} bytes"
    );
    assert_eq!(inspect(ruchy_tag, "{{.Config.User}}"), "65532:65532");
    assert!(ruchy_layers <= 2, "{ruchy_layers} layers");
    assert_eq!(
        inspect(ruchy_tag, "{{len .RootFS.Layers}}"),
        ruchy_layers.to_string()
    );
    assert!(dockerfile_layers >= 1);
    // Both images are the binary plus a few hundred bytes of users; the Dockerfile's has the
    // /entrypoint link on top.
    assert!(
        dockerfile_size >= ruchy_size,
        "{dockerfile_size} < {ruchy_size}"
    );
    for (image_size, binary) in [
        (dockerfile_size, dockerfile_binary),
        (ruchy_size, ruchy_binary),
    ] {
        assert!(image_size >= binary, "{image_size} < {binary}");
        assert!(image_size - binary < 4096, "{image_size} vs {binary}");
    }

    // The chapter's variant on a base with a shell: the user comes from the base's tools.
    busybox_base(base_tag, &mut cache);
    let mut alpine_args = args.to_vec();
    alpine_args.push(("BASE", base_tag));
    let output = build(
        project.path(),
        "Dockerfile.alpine",
        &alpine_args,
        Some(alpine_tag),
        &mut cache,
    )
    .unwrap_or_else(|e| panic!("docker build of Dockerfile.alpine failed:\n{e}"));
    assert!(
        !output.contains("OPTIMIZE=aggressive: cargo build"),
        "the build stage is shared with dockerfiles/Dockerfile, from the cache:\n{output}"
    );
    let id = tool("docker", &["run", "--rm", "--entrypoint", "id", alpine_tag]).ok();
    assert!(
        id.stdout.starts_with("uid=1000(appuser) gid=1000(appuser)"),
        "{}",
        id.stdout
    );
    let run = tool("docker", &["run", "--rm", alpine_tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=1000 gid=1000\n");
    assert_eq!(inspect(alpine_tag, "{{.Config.User}}"), "1000:1000");
    // Both pick musl when the builder has its std, and the size preset links the same
    // immediate-abort std: the same binary again, byte for byte.
    assert_eq!(metrics["libc"], "musl", "{metrics}");
    let size_args = [
        ("BUILDER_IMAGE", builder.as_str()),
        ("BIN", "fibonacci"),
        ("OPTIMIZE", "size"),
    ];
    build(
        project.path(),
        "Dockerfile",
        &size_args,
        Some(size_dockerfile_tag),
        &mut cache,
    )
    .unwrap_or_else(|e| panic!("docker build of the size preset failed:\n{e}"));
    let size_metrics = ruchy_image([
        "build",
        project.path().to_str().unwrap(),
        "--builder",
        "docker",
        "--builder-image",
        &builder,
        "--no-embed-deps",
        "-O",
        "size",
        "--tag",
        size_ruchy_tag,
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(size_metrics["std"]["variant"], "immediate-abort");
    let dockerfile_size_bytes = file_bytes(size_dockerfile_tag, "/usr/local/bin/fibonacci");
    let ruchy_size_bytes = file_bytes(size_ruchy_tag, "/usr/local/bin/fibonacci");
    println!(
        "| size preset | {} (docker build) | {} (ruchy-image) |",
        dockerfile_size_bytes.len(),
        ruchy_size_bytes.len()
    );
    assert!(
        dockerfile_size_bytes == ruchy_size_bytes,
        "size binaries differ: {} vs {} bytes",
        dockerfile_size_bytes.len(),
        ruchy_size_bytes.len()
    );
    let run = tool("docker", &["run", "--rm", size_dockerfile_tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");

    // The BuildKit variant, its target dir a cache mount: the same binary again.
    let cache_id = own_cache_id();
    let mut buildkit_args = args.to_vec();
    buildkit_args.push(("CACHE_ID", &cache_id));
    let output = buildkit_build(
        project.path(),
        "Dockerfile.buildkit",
        &buildkit_args,
        buildkit_tag,
    )
    .unwrap_or_else(|e| panic!("BuildKit build of Dockerfile.buildkit failed:\n{e}"));
    assert!(
        output.contains("OPTIMIZE=aggressive: cargo build"),
        "{output}"
    );
    let buildkit_bytes = file_bytes(buildkit_tag, "/usr/local/bin/fibonacci");
    assert!(
        buildkit_bytes == ruchy_bytes,
        "BuildKit binary differs: {} vs {ruchy_binary} bytes",
        buildkit_bytes.len()
    );
    let run = tool("docker", &["run", "--rm", buildkit_tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");
    assert_eq!(inspect(buildkit_tag, "{{.Config.User}}"), "65532:65532");
}

/// A workspace with what a dependency layer can trip on: two members, one a lib and a bin
/// with a build script and a bench and an example declared in its manifest, the other a lib
/// it uses; and one crate from crates.io.
fn workspace_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"app\", \"util\"]\nresolver = \"2\"\n",
        ),
        (
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nutil = { path = \"../util\" }\nitoa = \"1\"\n\n\
             [[bench]]\nname = \"speed\"\nharness = false\n\n[[example]]\nname = \"demo\"\n",
        ),
        (
            "app/build.rs",
            "fn main() {\n    println!(\"cargo:rustc-env=APP_BUILT_BY=build.rs\");\n}\n",
        ),
        (
            "app/src/lib.rs",
            "pub fn greeting() -> String {\n    format!(\"{} from {}\", util::word(), env!(\"APP_BUILT_BY\"))\n}\n",
        ),
        (
            "app/src/main.rs",
            "fn main() {\n    let mut buffer = itoa::Buffer::new();\n    println!(\"{} {}\", app::greeting(), buffer.format(42));\n}\n",
        ),
        ("app/benches/speed.rs", "fn main() {}\n"),
        ("app/examples/demo.rs", "fn main() {}\n"),
        (
            "util/Cargo.toml",
            "[package]\nname = \"util\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n",
        ),
        ("util/src/lib.rs", "pub fn word() -> &'static str {\n    \"one\"\n}\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Build output without ANSI colour codes (the classic builder paints a step's stderr red,
/// between cargo's words too).
fn without_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites util's word, with the file's mtime set far back: as a checkout, an unpacked archive
/// or a context with fixed mtimes gives it, older than anything built before. Cargo judges
/// workspace crates by mtime, so a Dockerfile that does not make them stale again ships the
/// old binary.
fn change_word(project: &Path, word: &str) {
    let path = project.join("util/src/lib.rs");
    std::fs::write(
        &path,
        format!("pub fn word() -> &'static str {{\n    \"{word}\"\n}}\n"),
    )
    .unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(978_307_200); // 2001
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// Both cached Dockerfiles on a workspace: the first build compiles the crates.io dependency,
/// a one-line change in a member rebuilds the workspace's crates (the new binary says the new
/// word) and not the dependency, from the dependency layer (classic builder) or the cache
/// mounts (BuildKit).
#[test]
fn a_source_change_rebuilds_the_workspace_and_reuses_the_dependencies() {
    let _turn = engine_builds();
    let builder = builder_image();
    let classic_tags = [
        "ruchy-image-test/ws-dockerfile:1",
        "ruchy-image-test/ws-dockerfile:2",
    ];
    let buildkit_tags = [
        "ruchy-image-test/ws-buildkit:1",
        "ruchy-image-test/ws-buildkit:2",
    ];
    let _buildkit_cache = BuildKitCache::new();
    let mut cache = BuildCache::default();
    let _images = Images(
        classic_tags
            .iter()
            .chain(&buildkit_tags)
            .map(|t| t.to_string())
            .collect(),
    );
    let cache_id = own_cache_id();
    let args = [
        ("BUILDER_IMAGE", builder.as_str()),
        ("BIN", "app"),
        ("OPTIMIZE", "aggressive"),
        ("CACHE_ID", cache_id.as_str()),
    ];
    let compiled = |output: &str, krate: &str| {
        without_colours(output).contains(&format!("Compiling {krate} v"))
    };

    let project = workspace_project();
    let classic = |tag: &str, cache: &mut BuildCache| {
        build(project.path(), "Dockerfile", &args[..3], Some(tag), cache)
            .unwrap_or_else(|e| panic!("docker build failed:\n{e}"))
    };
    let first = classic(classic_tags[0], &mut cache);
    assert!(
        compiled(&first, "itoa") && compiled(&first, "util"),
        "{first}"
    );
    let run = tool("docker", &["run", "--rm", classic_tags[0]]).ok();
    assert_eq!(run.stdout, "one from build.rs 42\n");
    change_word(project.path(), "three");
    let second = classic(classic_tags[1], &mut cache);
    assert!(
        !compiled(&second, "itoa"),
        "the dependency layer was not reused:\n{second}"
    );
    assert!(
        compiled(&second, "util") && compiled(&second, "app"),
        "{second}"
    );
    let run = tool("docker", &["run", "--rm", classic_tags[1]]).ok();
    assert_eq!(
        run.stdout, "three from build.rs 42\n",
        "the binary is the old one"
    );

    let project = workspace_project();
    let buildkit = |tag: &str| {
        buildkit_build(project.path(), "Dockerfile.buildkit", &args, tag)
            .unwrap_or_else(|e| panic!("BuildKit build failed:\n{e}"))
    };
    let first = buildkit(buildkit_tags[0]);
    assert!(
        compiled(&first, "itoa") && compiled(&first, "util"),
        "{first}"
    );
    let run = tool("docker", &["run", "--rm", buildkit_tags[0]]).ok();
    assert_eq!(run.stdout, "one from build.rs 42\n");
    // Another length than "one": BuildKit sends a context file again when its size or mtime
    // changed, and the mtime is set back.
    change_word(project.path(), "three");
    let second = buildkit(buildkit_tags[1]);
    assert!(
        !compiled(&second, "itoa"),
        "the cache mounts were not reused:\n{second}"
    );
    assert!(
        compiled(&second, "util") && compiled(&second, "app"),
        "{second}"
    );
    let run = tool("docker", &["run", "--rm", buildkit_tags[1]]).ok();
    assert_eq!(
        run.stdout, "three from build.rs 42\n",
        "the binary is the old one"
    );
}
