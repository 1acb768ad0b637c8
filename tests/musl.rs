//! The chapter's size promise: static musl binaries from the builder `builder import-host`
//! makes (Debian's rustc with a musl std built once), the `size` preset at the floor, the
//! local builder doing the same with a toolchain that has the standard library's sources,
//! and clear errors where a builder cannot.
//!
//! `.ci/setup` installs Debian's rustc-web, cargo-web, rust-web-src, musl-tools and
//! libunwind-14-dev, and makes the builder image (which builds the stds into the default
//! cache, where the local-builder test finds them).

mod common;
mod guards;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use guards::{builder_image, docker_build, fibonacci_project, Images, Volumes};

const MUSL: &str = "x86_64-unknown-linux-musl";
const EXPECTED_RUN: &str = "fibonacci(30) = 832040\nuid=65532 gid=65532\n";

/// `ruchy-image ARGS` through the docker builder and `builder`.
fn through(builder: &str, args: &[&str]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--builder", "docker", "--builder-image", builder]);
    ruchy_image(all)
}

#[test]
fn musl_keeps_the_chapter_s_size_promise_through_the_docker_builder() {
    let builder = builder_image();
    let fib = example("fibonacci.rs").display().to_string();
    let report = through(&builder, &["compare", &fib, "--format", "json"])
        .ok()
        .metrics();
    let results = report["results"].as_array().unwrap();
    let presets: Vec<&str> = results
        .iter()
        .map(|r| r["optimization_level"].as_str().unwrap())
        .collect();
    assert_eq!(presets, ["none", "balanced", "aggressive", "nasa", "size"]);
    let mut sizes = HashMap::new();
    for result in results {
        let preset = result["optimization_level"].as_str().unwrap();
        assert_eq!(result["libc"], "musl", "{preset}: {result}");
        assert_eq!(result["linkage"], "static", "{preset}");
        assert_eq!(result["optimization_flags"]["target"], MUSL, "{preset}");
        // musl std was built when the builder image was made, never by this build.
        assert_eq!(result["std"]["source"], "rebuilt", "{preset}");
        sizes.insert(preset, result["binary_size"].as_u64().unwrap());
    }
    println!("fibonacci, musl, docker builder: {sizes:?}");
    assert!(sizes["aggressive"] <= 400_000, "{sizes:?}");
    assert!(sizes["nasa"] <= 400_000, "{sizes:?}");
    assert!(sizes["size"] <= 40_000, "{sizes:?}");
    let size = &results[4];
    assert_eq!(size["std"]["variant"], "immediate-abort");
    assert_eq!(size["optimization_flags"]["panic"], "immediate-abort");
    assert_eq!(size["optimization_flags"]["opt_level"], "z");

    // The table has the libc column and five rows.
    let table = through(&builder, &["compare", &fib]).ok().stdout;
    assert!(table.contains("Libc"), "{table}");
    assert_eq!(table.matches(" musl ").count(), 5, "{table}");

    // Both small ones run on scratch as non-root, and print the right answer.
    let tags = [
        "ruchy-image-test/fib-musl:aggressive",
        "ruchy-image-test/fib-musl:size",
    ];
    let _images = Images(tags.iter().map(|t| t.to_string()).collect());
    for (preset, tag) in ["aggressive", "size"].into_iter().zip(tags) {
        let built = through(
            &builder,
            &["build", &fib, "-O", preset, "--tag", tag, "--json", "-"],
        )
        .ok()
        .metrics();
        assert_eq!(
            built["binary_size"].as_u64(),
            Some(sizes[preset]),
            "{preset}"
        );
        let run = tool("docker", &["run", "--rm", tag]).ok();
        assert_eq!(run.stdout, EXPECTED_RUN, "{preset}");
    }
}

#[test]
fn a_project_with_forty_crates_builds_static_musl() {
    let builder = builder_image();
    let app = repo().join("benchmarks/apps/deps-app");
    let _volumes = Volumes(app.display().to_string());
    let tag = "ruchy-image-test/deps-app-musl:aggressive";
    let _images = Images(vec![tag.into()]);
    let record = through(
        &builder,
        &[
            "build",
            app.to_str().unwrap(),
            "-O",
            "aggressive",
            "--tag",
            tag,
            "--json",
            "-",
        ],
    )
    .ok()
    .metrics();
    assert_eq!(record["libc"], "musl", "{record}");
    assert_eq!(record["linkage"], "static");
    println!(
        "deps-app aggressive musl: {} bytes, compiled in {} ms",
        record["binary_size"], record["compile_time_ms"]
    );
    let run = tool("docker", &["run", "--rm", tag, "apple", "Banana", "cherry"]).ok();
    assert!(run.stdout.contains("\"matched\":2"), "{}", run.stdout);
}

#[test]
fn the_local_builder_makes_musl_with_a_toolchain_that_has_the_sources() {
    let out = tempfile::tempdir().unwrap();
    let binary_layout = out.path().join("layout");
    let fib = example("fibonacci.rs").display().to_string();
    // The cache `builder import-host` built the stds into: std is not built twice.
    let cache = std::env::var_os("RUCHY_IMAGE_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(ruchy_image::pipeline::build::default_cache_dir);
    let debian = |cmd: &mut std::process::Command| {
        cmd.env("RUSTC", "/usr/bin/rustc")
            .env("RUCHY_IMAGE_CACHE", &cache);
    };
    let record = ruchy_image_with(
        [
            "build",
            &fib,
            "-O",
            "aggressive",
            "--oci-layout",
            binary_layout.to_str().unwrap(),
            "--json",
            "-",
        ],
        debian,
    )
    .ok()
    .metrics();
    assert_eq!(record["builder"], "local");
    assert_eq!(record["libc"], "musl", "{record}");
    assert_eq!(record["std"]["source"], "rebuilt");
    assert_eq!(record["linkage"], "static");
    assert!(
        record["binary_size"].as_u64().unwrap() <= 400_000,
        "{record}"
    );
    // Static: it runs on the host as it is.
    let binary = record["binary_path"].as_str().unwrap();
    let run = tool(binary, &["20"]).ok();
    assert!(
        run.stdout.starts_with("fibonacci(20) = 6765\n"),
        "{}",
        run.stdout
    );

    // The rustup toolchain has neither musl std nor sources: musl is refused, and nothing is
    // written; without --target it builds glibc static as before.
    let refused_layout = out.path().join("refused");
    let refused = ruchy_image([
        "build",
        &fib,
        "--target",
        MUSL,
        "--oci-layout",
        refused_layout.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("the local builder cannot compile for x86_64-unknown-linux-musl"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("rust-src"), "{}", refused.stderr);
    assert!(!refused_layout.exists());
}

#[test]
fn builders_that_cannot_make_musl_or_whose_std_does_not_match_say_so() {
    let builder = builder_image();
    let fib = example("fibonacci.rs").display().to_string();
    let glibc_only = "ruchy-image-test/builder:glibc-only";
    let mismatched = "ruchy-image-test/builder:mismatched-std";
    let _images = Images(vec![glibc_only.into(), mismatched.into()]);
    // The target volumes their builds make.
    let _volumes = [
        Volumes(format!("target for {glibc_only}")),
        Volumes(format!("target for {mismatched}")),
    ];
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let layout_arg = layout.to_str().unwrap();

    // A builder with no musl std (like a glibc rust image): musl on request is refused before
    // any container runs; by default it builds glibc static.
    docker_build(
        glibc_only,
        &format!("FROM {builder}\nRUN rm -r /usr/lib/rustlib/{MUSL} /usr/local/lib/ruchy-image\n"),
        &[],
    );
    let refused = through(
        glibc_only,
        &["build", &fib, "--target", MUSL, "--oci-layout", layout_arg],
    );
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "the {glibc_only} builder cannot compile for {MUSL}: it has no standard library for {MUSL}"
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("builder import-host"),
        "{}",
        refused.stderr
    );
    assert!(!layout.exists());
    assert!(builders_for(Path::new(&fib)).is_empty());
    // doctor says the same of it, with the fix, and fails: the default build needs musl.
    let doctor = ruchy_image(["doctor", "--builder-image", glibc_only]);
    assert_eq!(doctor.code, Some(1), "{}\n{}", doctor.stdout, doctor.stderr);
    let musl_line = doctor
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("✗ builder musl std"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        musl_line.contains(&format!("{glibc_only} has no standard library for {MUSL}"))
            && musl_line.contains("fix: `ruchy-image builder import-host`"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stderr.contains("builder musl std missing"),
        "{}",
        doctor.stderr
    );
    let glibc = through(
        glibc_only,
        &["build", &fib, "-O", "aggressive", "--json", "-"],
    )
    .ok()
    .metrics();
    assert_eq!(glibc["libc"], "glibc", "{glibc}");
    assert_eq!(glibc["linkage"], "static");
    // size without its std falls back to panic=abort, and says so.
    let fallback = through(glibc_only, &["build", &fib, "-O", "size", "--json", "-"]).ok();
    assert!(
        fallback
            .stderr
            .contains("uses panic=abort and the usual std"),
        "{}",
        fallback.stderr
    );
    assert_eq!(fallback.metrics()["optimization_flags"]["panic"], "abort");

    // A builder whose stds were made by another compiler: its musl std's stamp says so
    // (caught before any container runs), and its glibc std is rustup's 1.95 one, which
    // rustc itself rejects (E0514), turned into the same clear error.
    let rustup_std = std::fs::read_dir(
        ruchy_image::adapters::toolchain::Toolchain::probe(Path::new("rustc"))
            .unwrap()
            .sysroot
            .join("lib/rustlib/x86_64-unknown-linux-gnu/lib"),
    )
    .unwrap()
    .flatten()
    .map(|e| e.path())
    .find(|p| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.starts_with("libstd-") && name.ends_with(".rlib")
    })
    .unwrap();
    let other_rustc = "rustc 1.95.0 (59807616e 2026-04-14)\\nbinary: rustc\\ncommit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860\\nhost: x86_64-unknown-linux-gnu\\nrelease: 1.95.0";
    docker_build(
        mismatched,
        &format!(
            "FROM {builder}\n\
             RUN rm /usr/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-*.rlib /usr/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-*.rmeta && \
             printf '%s' '{{\"rustc\":\"{other_rustc}\",\"target\":\"{MUSL}\",\"variant\":\"unwind\"}}' > /usr/lib/rustlib/{MUSL}/ruchy-image-std.json\n\
             COPY libstd.rlib /usr/lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-rustup.rlib\n"
        ),
        &[("libstd.rlib", &rustup_std)],
    );
    let stamped = through(mismatched, &["build", &fib, "--oci-layout", layout_arg]);
    assert_eq!(stamped.code, Some(1), "{}", stamped.stderr);
    assert!(
        stamped
            .stderr
            .contains(&format!("the standard library for {MUSL} in {mismatched}"))
            && stamped.stderr.contains(
                "was built by rustc 1.95.0 (59807616e 2026-04-14), but the compiler is rustc 1.96"
            ),
        "{}",
        stamped.stderr
    );
    assert!(!stamped.stderr.contains("sending"), "{}", stamped.stderr);
    let rejected = through(
        mismatched,
        &[
            "build",
            &fib,
            "--target",
            "x86_64-unknown-linux-gnu",
            "--oci-layout",
            layout_arg,
        ],
    );
    assert_eq!(rejected.code, Some(1), "{}", rejected.stderr);
    assert!(rejected.stderr.contains("E0514"), "{}", rejected.stderr);
    assert!(
        rejected.stderr.contains(
            "the standard library for x86_64-unknown-linux-gnu in ruchy-image-test/builder:mismatched-std was built by another compiler"
        ),
        "{}",
        rejected.stderr
    );
    assert!(!layout.exists());
    assert!(builders_for(Path::new(&fib)).is_empty());

    // A triple no rustc knows.
    let unknown = through(
        &builder,
        &["build", &fib, "--target", "x86_64-unknown-linux-mars"],
    );
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("invalid --target `x86_64-unknown-linux-mars`: rustc 1.96"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn size_refuses_to_unwind() {
    let fib = example("fibonacci.rs").display().to_string();
    let run = ruchy_image(["build", &fib, "-O", "size", "--panic", "unwind"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("size aborts on a panic") && run.stderr.contains("cannot unwind"),
        "{}",
        run.stderr
    );
    let project = fibonacci_project();
    assert!(builders_for(project.path()).is_empty());
}
