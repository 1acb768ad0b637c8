//! The chapter's size promise: static musl binaries from the builder `builder import-host`
//! makes (rustup's toolchain with its musl target, or Debian's rustc with a musl std built
//! once), the `size` preset at the floor, the local builder doing the same with a toolchain
//! that has the standard library's sources, and clear errors where a builder cannot.
//!
//! `.ci/setup` installs Debian's rustc-web, cargo-web, rust-web-src, musl-tools and
//! libunwind-14-dev, adds the musl target and rust-src to rustup's toolchain, and makes the
//! builder image (which builds the stds into the default cache, where the local-builder test
//! finds them).

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

    // A toolchain with neither musl std nor sources: musl is refused, and nothing is written.
    let bare = bare_toolchain(out.path());
    let refused_layout = out.path().join("refused");
    let refused = ruchy_image_with(
        [
            "build",
            &fib,
            "--target",
            MUSL,
            "--oci-layout",
            refused_layout.to_str().unwrap(),
        ],
        |cmd| {
            cmd.env("RUSTC", &bare);
        },
    );
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

/// A rustc in `dir` whose sysroot has the host's std and nothing else (no musl std, no
/// sources), as rustup's toolchain is before `rustup target add`: a wrapper that passes
/// `--sysroot`.
fn bare_toolchain(dir: &Path) -> std::path::PathBuf {
    let real = ruchy_image::adapters::toolchain::Toolchain::probe(Path::new("rustc")).unwrap();
    let host = real.host();
    let rustlib = dir.join("bare-sysroot/lib/rustlib");
    std::fs::create_dir_all(&rustlib).unwrap();
    std::os::unix::fs::symlink(
        real.sysroot.join("lib/rustlib").join(&host),
        rustlib.join(&host),
    )
    .unwrap();
    let rustc = dir.join("bare-rustc");
    std::fs::write(
        &rustc,
        format!(
            "#!/bin/sh\nexec {} --sysroot {} \"$@\"\n",
            real.rustc.display(),
            dir.join("bare-sysroot").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    rustc
}

#[test]
fn builders_that_cannot_make_musl_or_whose_std_does_not_match_say_so() {
    let builder = builder_image();
    // Where its toolchain is and which it is: Debian's in /usr, or rustup's, as import-host
    // found on this machine.
    let in_builder = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--entrypoint", "rustc", builder.as_str()];
        all.extend(args);
        tool("docker", &all).ok().stdout.trim().to_string()
    };
    let sysroot = in_builder(&["--print", "sysroot"]);
    let builder_rustc = in_builder(&["-vV"]);
    // `rustc 1.96.0`: how errors name the builder's compiler.
    let builder_version = builder_rustc
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
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
        &format!(
            "FROM {builder}\nRUN rm -r {sysroot}/lib/rustlib/{MUSL} /usr/local/lib/ruchy-image\n"
        ),
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

    // A builder whose stds were made by another compiler (this machine's other one: rustup's
    // or Debian's, whichever the builder is not): its musl std's stamp says so (caught before
    // any container runs), and its glibc std, the other compiler's, rustc itself rejects
    // (E0514), turned into the same clear error.
    let other = ["rustc", "/usr/bin/rustc"]
        .into_iter()
        .filter_map(|r| ruchy_image::adapters::toolchain::Toolchain::probe(Path::new(r)).ok())
        .find(|t| t.verbose_version != builder_rustc)
        .expect("a second Rust toolchain (Debian's rustc-web beside rustup's)");
    let other_std = std::fs::read_dir(
        other
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
    let other_rustc = other.verbose_version.replace('\n', "\\n");
    let glibc_lib = format!("{sysroot}/lib/rustlib/x86_64-unknown-linux-gnu/lib");
    docker_build(
        mismatched,
        &format!(
            "FROM {builder}\n\
             RUN rm {glibc_lib}/libstd-*.rlib {glibc_lib}/libstd-*.rmeta && rm -f {glibc_lib}/libstd-*.so && \
             printf '%s' '{{\"rustc\":\"{other_rustc}\",\"target\":\"{MUSL}\",\"variant\":\"unwind\"}}' > {sysroot}/lib/rustlib/{MUSL}/ruchy-image-std.json\n\
             COPY libstd.rlib {glibc_lib}/libstd-other.rlib\n"
        ),
        &[("libstd.rlib", &other_std)],
    );
    let stamped = through(mismatched, &["build", &fib, "--oci-layout", layout_arg]);
    assert_eq!(stamped.code, Some(1), "{}", stamped.stderr);
    assert!(
        stamped
            .stderr
            .contains(&format!("the standard library for {MUSL} in {mismatched}"))
            && stamped.stderr.contains(&format!(
                "was built by {}, but the compiler is {builder_version}",
                other.version()
            )),
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
        unknown.stderr.contains(&format!(
            "invalid --target `x86_64-unknown-linux-mars`: {builder_version}"
        )),
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
