//! The `docker` builder against the real engine: compile in a builder container, load the
//! image, run it with `ruchy-image run` and `docker run`, and leave no container behind.
//! `.ci/setup` starts the engine and makes the builder image (`builder import-host`).

mod common;
mod guards;

use std::path::Path;

use common::*;
use guards::{builder_image, Images};

/// Cache volumes made for throwaway project copies, removed at the end.
struct Volumes(String);

impl Drop for Volumes {
    fn drop(&mut self) {
        let list = tool(
            "docker",
            &[
                "volume",
                "ls",
                "-q",
                "-f",
                &format!("label=dev.ruchy.image.cache={}", self.0),
            ],
        );
        for volume in list.stdout.lines() {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", volume])
                .output();
        }
    }
}

/// Containers `ruchy-image run` started for `image`.
fn runs_of(image: &str) -> Vec<String> {
    containers_with(&format!("dev.ruchy.image.image={image}"))
}

fn docker_build(source: &Path, args: &[&str]) -> Run {
    let mut all = vec!["build", source.to_str().unwrap(), "--builder", "docker"];
    all.extend_from_slice(args);
    ruchy_image(&all)
}

#[test]
fn every_preset_compiles_in_the_builder_loads_and_runs_as_non_root() {
    let mut images = Images(Vec::new());
    for preset in ["none", "balanced", "aggressive", "nasa"] {
        let tag = format!("ruchy-image-test/fib-docker:{preset}");
        images.0.push(tag.clone());
        let metrics = docker_build(
            &example("fibonacci.rs"),
            &["-O", preset, "--tag", &tag, "--json", "-"],
        )
        .ok()
        .metrics();
        assert_eq!(metrics["builder"], "docker");
        assert_eq!(metrics["linkage"], "static");

        // The engine's own view, read back after the load, matches what we built.
        let engine = &metrics["outputs"][0]["engine"];
        assert_eq!(metrics["outputs"][0]["kind"], "engine");
        assert_eq!(engine["id"], metrics["image"]["config_digest"]);
        assert_eq!(engine["layer_count"], 2);
        assert_eq!(engine["user"], "65532:65532");
        let inspect = tool(
            "docker",
            &[
                "inspect",
                "--format",
                "{{.Id}} {{.Config.User}} {{len .RootFS.Layers}}",
                &tag,
            ],
        )
        .ok();
        assert_eq!(
            inspect.stdout.trim(),
            format!(
                "{} 65532:65532 2",
                metrics["image"]["config_digest"].as_str().unwrap()
            )
        );

        let run = tool("docker", &["run", "--rm", &tag, "20"]).ok();
        assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");

        let measured = ruchy_image(["run", &tag, "-n", "2", "--json", "--", "20"]).ok();
        let report: serde_json::Value = serde_json::from_str(&measured.stdout).unwrap();
        assert_eq!(report["iterations"], 2);
        assert_eq!(report["exit_code"], 0);
        assert!(report["cold_start_median_ms"].as_f64().unwrap() > 0.0);
        assert!(
            measured.stderr.contains("fibonacci(20) = 6765"),
            "{}",
            measured.stderr
        );
        assert!(runs_of(&tag).is_empty(), "{:?}", runs_of(&tag));
    }
}

#[test]
fn run_returns_the_container_exit_code() {
    let tag = "ruchy-image-test/fib-docker:exit";
    let _images = Images(vec![tag.into()]);
    docker_build(&example("fibonacci.rs"), &["-O", "none", "--tag", tag]).ok();
    let run = ruchy_image(["run", tag, "--", "not-a-number"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("usage: fibonacci [N]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("exited with code 2"), "{}", run.stderr);
    assert!(runs_of(tag).is_empty(), "{:?}", runs_of(tag));
}

#[test]
fn crates_io_dependencies_build_in_the_container() {
    let tag = "ruchy-image-test/serde-app:docker";
    let _images = Images(vec![tag.into()]);
    docker_build(&fixture("serde-app"), &["-O", "aggressive", "--tag", tag]).ok();
    let run = tool("docker", &["run", "--rm", tag]).ok();
    assert_eq!(
        run.stdout,
        "{\"message\":\"hello from serde\",\"answer\":42}\n"
    );
}

#[test]
fn same_builder_and_input_give_the_same_digest_and_unchanged_rebuilds_start_no_container() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _volumes = (
        Volumes(a.path().display().to_string()),
        Volumes(b.path().display().to_string()),
    );
    let digest = |dir: &Path| {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::copy(example("fibonacci.rs"), dir.join("src/main.rs")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"fib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        docker_build(dir, &["-O", "aggressive", "--json", "-"])
            .ok()
            .metrics()["image"]["digest"]
            .clone()
    };
    // Two projects in two places (one shared target volume: each compiles its own crate
    // again): one digest.
    assert_eq!(digest(a.path()), digest(b.path()));
    assert!(
        builders_for(a.path()).is_empty(),
        "builder left after success"
    );

    // Nothing changed: the engine sees no builder container created.
    let since = tool("date", &["+%s"]).ok().stdout.trim().to_string();
    let again = docker_build(a.path(), &["-O", "aggressive", "--json", "-"]).ok();
    let events = tool(
        "docker",
        &[
            "events",
            "--since",
            &since,
            "--until",
            tool("date", &["+%s"]).ok().stdout.trim(),
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            &format!(
                "label=dev.ruchy.image.source={}",
                std::fs::canonicalize(a.path()).unwrap().display()
            ),
        ],
    )
    .ok();
    assert!(
        events.stdout.is_empty(),
        "containers created: {}",
        events.stdout
    );
    assert_eq!(again.metrics()["image"]["digest"], digest(a.path()));
}

#[test]
fn compile_errors_show_diagnostics_and_remove_the_container() {
    let run = docker_build(
        &fixture("broken.rs"),
        &["--tag", "ruchy-image-test/broken:x"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("error[E0308]: mismatched types"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("compiling broken failed"),
        "{}",
        run.stderr
    );
    let location = format!(" --> {}:2:18", fixture("broken.rs").display());
    assert!(run.stderr.contains(&location), "{}", run.stderr);
    let left = builders_for(&fixture("broken.rs"));
    assert!(left.is_empty(), "{left:?}");
    let image = tool("docker", &["image", "inspect", "ruchy-image-test/broken:x"]);
    assert_ne!(image.code, Some(0), "no image may be tagged");
}

#[test]
fn ctrl_c_during_a_container_compile_removes_the_container_and_tags_nothing() {
    use std::os::unix::process::CommandExt;
    let tag = "ruchy-image-test/slow:interrupted";
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ruchy-image"))
        .args(["build", fixture("slow-build").to_str().unwrap()])
        .args(["--builder", "docker", "--tag", tag])
        .env("RUCHY_IMAGE_CACHE", cache_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait for the builder container to be running the build script.
    let started = std::time::Instant::now();
    loop {
        let running = builders_for(&fixture("slow-build")).iter().any(|id| {
            tool("docker", &["top", id])
                .stdout
                .contains("build-script-build")
        });
        if running {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the build never reached its build script"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tool("kill", &["-INT", "--", &format!("-{}", child.id())]).ok();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let left = builders_for(&fixture("slow-build"));
    assert!(left.is_empty(), "{left:?}");
    assert_ne!(tool("docker", &["image", "inspect", tag]).code, Some(0));
}

#[test]
fn a_used_tag_moves_to_the_new_image() {
    let tag = "ruchy-image-test/fib-docker:moving";
    let _images = Images(vec![tag.into()]);
    let first = docker_build(
        &example("fibonacci.rs"),
        &["-O", "none", "--tag", tag, "--json", "-"],
    )
    .ok()
    .metrics();
    let second = docker_build(
        &example("fibonacci.rs"),
        &["-O", "aggressive", "--tag", tag, "--json", "-"],
    )
    .ok()
    .metrics();
    let old = first["image"]["config_digest"].as_str().unwrap();
    let new = second["image"]["config_digest"].as_str().unwrap();
    assert_ne!(old, new);
    let current = tool("docker", &["inspect", "--format", "{{.Id}}", tag]).ok();
    assert_eq!(current.stdout.trim(), new);
    // The old image lost our tag (other tests may have tagged the same image otherwise).
    let old_tags = tool("docker", &["inspect", "--format", "{{.RepoTags}}", old]);
    assert!(
        old_tags.code != Some(0) || !old_tags.stdout.contains(tag),
        "old image still tagged {tag}: {}",
        old_tags.stdout
    );
    let _ = tool("docker", &["rmi", "-f", old]);
}

#[test]
fn no_engine_says_how_to_start_one() {
    let run = ruchy_image_with(
        [
            "build",
            example("fibonacci.rs").to_str().unwrap(),
            "--builder",
            "docker",
        ],
        |cmd| {
            cmd.env("DOCKER_HOST", "unix:///tmp/ruchy-image-no-engine.sock");
        },
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no Docker engine answers at unix:///tmp/ruchy-image-no-engine.sock"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--builder local"), "{}", run.stderr);
    let run = ruchy_image_with(["run", "fib:none"], |cmd| {
        cmd.env("DOCKER_HOST", "tcp://127.0.0.1:1");
    });
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("no Docker engine answers at tcp://127.0.0.1:1"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_builder_image_points_to_import_host() {
    let run = docker_build(
        &example("fibonacci.rs"),
        &["--builder-image", "ruchy-image-test/no-such-builder:1"],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("builder image ruchy-image-test/no-such-builder:1 is not available"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("ruchy-image builder import-host"),
        "{}",
        run.stderr
    );
}

/// `--pull never`: a builder image the engine lacks is bad input, found before any pull
/// or compile, and the error says how to get one; a present one builds without a pull.
#[test]
fn pull_never_with_a_missing_builder_names_builder_pull_and_import_host() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("fib.tar");
    let missing = "ruchy-image-test/no-such-builder:1";
    let run = docker_build(
        &example("fibonacci.rs"),
        &[
            "--builder-image",
            missing,
            "--pull",
            "never",
            "--output",
            archive.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("error: builder image {missing} is not in the engine, and pulling is turned off (pull never)"),
        "{}",
        run.stderr
    );
    for named in [
        &format!("`ruchy-image builder pull {missing}`"),
        "`ruchy-image builder import-host`",
    ] {
        assert!(run.stderr.contains(named), "{named} in:\n{}", run.stderr);
    }
    assert!(
        !run.stderr.contains(&format!("{missing}: pulling")),
        "{}",
        run.stderr
    );
    assert!(entries(out.path()).is_empty(), "{:?}", entries(out.path()));

    let present = builder_image();
    let built = docker_build(
        &example("fibonacci.rs"),
        &[
            "--builder-image",
            &present,
            "--pull",
            "never",
            "--json",
            "-",
        ],
    )
    .ok();
    assert!(!built.stderr.contains(": pulling"), "{}", built.stderr);
    assert_eq!(built.metrics()["builder"], "docker");
}

/// `--pull always` pulls even a builder the engine has, and, as `docker run --pull always`,
/// fails when the pull does: no registry is reachable here.
#[test]
fn pull_always_fails_when_the_registry_is_unreachable() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("fib.tar");
    let present = builder_image();
    let run = docker_build(
        &example("fibonacci.rs"),
        &[
            "--builder-image",
            &present,
            "--pull",
            "always",
            "--output",
            archive.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{present}: pulling")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "error: builder image {present} is not available: "
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Compiling"), "{}", run.stderr);
    assert!(entries(out.path()).is_empty(), "{:?}", entries(out.path()));
}

/// `builder pull IMAGE` pulls through the engine; an image no registry serves fails with
/// its name and the way to make a builder offline, and prints nothing on stdout.
#[test]
fn builder_pull_of_an_unreachable_image_names_it_and_import_host() {
    let missing = "ruchy-image-test/no-such-builder:1";
    let run = ruchy_image(["builder", "pull", missing]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "error: builder image {missing} is not available: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`ruchy-image builder import-host`"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_the_engine_rejects_fails_with_the_engines_message() {
    use ruchy_image::pipeline::oci::image::{assemble, ImageSpec, RuntimeUser};
    use ruchy_image::pipeline::publish::{EnginePublisher, Publisher};

    let spec = ImageSpec {
        binary_path: "/usr/local/bin/app".into(),
        user: RuntimeUser::default(),
        env: vec![],
        ports: vec![],
        workdir: "/".into(),
        labels: Default::default(),
        annotations: Default::default(),
        created: 0,
        architecture: host_arch().into(),
        created_by: "test".into(),
        compression: ruchy_image::pipeline::oci::layer::Codec::Gzip,
        compression_level: 6,
    };
    let mut image = assemble(b"not really a binary", &spec, None).unwrap();
    // A layer whose bytes are not a gzip'd tar: the engine refuses it.
    image.layers[1].blob = b"this is not a layer".to_vec();
    let engine = ruchy_image::adapters::engine::Engine::connect()
        .await
        .unwrap();
    let publisher = EnginePublisher { engine, mtime: 0 };
    let reference = "ruchy-image-test/rejected:x".parse().unwrap();
    let staged = publisher
        .stage(
            &ruchy_image::pipeline::oci::index::ImageOrIndex::Image(std::sync::Arc::new(image)),
            &reference,
        )
        .await
        .unwrap();
    let err = staged.commit().await.unwrap_err().to_string();
    assert!(err.contains("the Docker engine said:"), "{err}");
    assert_ne!(
        tool(
            "docker",
            &["image", "inspect", "ruchy-image-test/rejected:x"]
        )
        .code,
        Some(0)
    );
}

#[test]
fn compare_times_cold_starts_through_the_engine() {
    let _images = Images(vec!["fibonacci:aggressive".into()]);
    let run = ruchy_image([
        "compare",
        example("fibonacci.rs").to_str().unwrap(),
        "--presets",
        "aggressive",
        "--cold-start-runs",
        "2",
        "--format",
        "json",
    ])
    .ok();
    // Progress while the cold starts run, not silence.
    assert!(
        run.stderr
            .contains("→ timing 2 cold starts of fibonacci:aggressive..."),
        "{}",
        run.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let cold = &report["results"][0]["cold_start"];
    assert_eq!(cold["runs"], 2, "{report}");
    assert!(cold["median_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(runs_of("fibonacci:aggressive").is_empty());
}

#[test]
fn an_engine_named_in_docker_host_is_required_and_inputs_are_checked_first() {
    let dead = |cmd: &mut std::process::Command| {
        cmd.env("DOCKER_HOST", "unix:///tmp/ruchy-image-no-engine.sock")
            .env_remove("RUCHY_IMAGE_BUILDER");
    };
    // No --builder: the user pointed at an engine, so no quiet fallback to the host's cargo.
    let run = ruchy_image_with(["build", example("fibonacci.rs").to_str().unwrap()], dead);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no Docker engine answers at unix:///tmp/ruchy-image-no-engine.sock"),
        "{}",
        run.stderr
    );
    // A missing source is said first, before any engine is asked.
    let run = ruchy_image_with(["build", "/no/such/app.rs"], dead);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run
        .stderr
        .starts_with("error: cannot read source /no/such/app.rs"));
}

#[test]
fn a_builder_image_without_rust_is_named_as_such() {
    // A FROM scratch image of ours: it runs, but has no rustc.
    let tag = "ruchy-image-test/not-rust:1";
    let _images = Images(vec![tag.into()]);
    ruchy_image([
        "build",
        example("fibonacci.rs").to_str().unwrap(),
        "--tag",
        tag,
        "--load",
    ])
    .ok();
    let run = docker_build(&example("fibonacci.rs"), &["--builder-image", tag]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "builder image {tag} has no Rust toolchain: `rustc -vV` does not run in it"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("offline?"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("sha256:"),
        "named by ID: {}",
        run.stderr
    );
}

#[test]
fn the_context_honours_ignore_files_keeps_links_and_warns_when_big() {
    let project = guards::fibonacci_project();
    let _volumes = Volumes(project.path().display().to_string());
    // A comment of this run's: another run's binary in the shared cache is not reused.
    let main = project.path().join("src/main.rs");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text += &format!("// {:?}\n", std::time::SystemTime::now());
    std::fs::write(&main, text).unwrap();
    // A link loop, which a walker that follows links never gets out of.
    std::os::unix::fs::symlink("..", project.path().join("src/up")).unwrap();
    // 101 MiB of data (sparse: cheap to make), over the warning's 100 MiB.
    let data = std::fs::File::create(project.path().join("data.bin")).unwrap();
    data.set_len(101 << 20).unwrap();
    // The compile gets the project and the Cargo.lock its fetch resolved (the fetch gets only
    // the manifest and a stand-in of main.rs).
    let big = docker_build(project.path(), &["-O", "none"]).ok();
    assert!(
        big.stderr
            .contains("ℹ sending 5 files, 101.0 MiB to the builder"),
        "{}",
        big.stderr
    );
    assert!(
        big.stderr.contains("⚠ the build context is 101.0 MiB"),
        "{}",
        big.stderr
    );
    std::fs::write(project.path().join(".ruchyimageignore"), "data.bin\n").unwrap();
    let small = docker_build(project.path(), &["-O", "none"]).ok();
    assert!(
        small.stderr.contains("ℹ sending 5 files,"),
        "{}",
        small.stderr
    );
    assert!(!small.stderr.contains("⚠"), "{}", small.stderr);
}

#[test]
fn without_builder_image_an_imported_builder_is_taken_without_trying_a_pull() {
    // No registry is reachable here: a pull of rust:1-alpine would fail with a DNS error.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let built = docker_build(
        &example("fibonacci.rs"),
        &["--oci-layout", layout.to_str().unwrap()],
    )
    .ok();
    assert!(
        built.stderr.contains("made by `builder import-host` (rust:1-alpine is not in the engine; `docker pull rust:1-alpine` to build with it instead)"),
        "{}",
        built.stderr
    );
    assert!(!built.stderr.contains("pulling"), "{}", built.stderr);
    assert!(
        !built.stderr.contains("cannot be pulled"),
        "{}",
        built.stderr
    );
}
