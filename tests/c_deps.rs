//! Real projects have C in their build: ring (under rustls), zstd, SQLite, OpenSSL and
//! jemalloc compile their C (and assembly, and autoconf's configure, and OpenSSL's perl
//! Configure) in build scripts. The fixture `tests/fixtures/c-deps` uses all five; each must
//! compile for static musl in the builder `builder import-host` makes, for amd64 and arm64,
//! and run in a FROM scratch image with the right output. A builder that lacks a tool says
//! which tool, for which crate, and where to get it.
//!
//! The C-heavy binary (`native`) is built once, in one test; the others build only ring, or a
//! few lines of C that include the kernel's headers (`kernel-headers`).

mod common;
mod guards;

use common::*;
use guards::{builder_image, docker_build, Images, Volumes};

/// SHA-256 of `ruchy-image` (`printf ruchy-image | sha256sum`).
const SHA256: &str = "94e3c864133a0e5ba2a0c13428987b2ac1fc2a07bbe6e8aefbd98141a4233c55";

fn c_deps() -> String {
    fixture("c-deps").display().to_string()
}

/// `ruchy-image build` of the fixture's `bin` through the docker builder.
fn build_in_docker(bin: &str, extra: &[&str]) -> Run {
    let source = c_deps();
    let mut args = vec!["build", &source, "--bin", bin, "--builder", "docker"];
    args.extend_from_slice(extra);
    ruchy_image(args)
}

#[test]
fn every_c_library_compiles_static_musl_and_runs_in_a_scratch_image() {
    let tag = "ruchy-image-test/c-deps:aggressive";
    let _images = Images(vec![tag.into()]);
    let record = build_in_docker("native", &["-O", "aggressive", "--tag", tag, "--json", "-"])
        .ok()
        .metrics();
    assert_eq!(record["builder"], "docker", "{record}");
    assert_eq!(record["libc"], "musl", "{record}");
    assert_eq!(record["linkage"], "static", "{record}");

    let run = tool("docker", &["run", "--rm", tag]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("ring sha256 = {SHA256}"),
        "{}",
        run.stdout
    );
    assert_eq!(
        lines[1],
        format!("openssl sha256 = {SHA256}"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("openssl = OpenSSL 3."),
        "{}",
        run.stdout
    );
    assert_eq!(
        lines[3], "zstd 5000 -> 22 bytes, round trip ok",
        "{}",
        run.stdout
    );
    assert!(
        lines[4].starts_with("sqlite 3.") && lines[4].ends_with(": sum 1..100 = 5050"),
        "{}",
        run.stdout
    );
    // jemalloc's own statistics count the 8 MB vector: it is the allocator.
    assert_eq!(
        lines[5], "jemalloc: 8 MB allocated, sum = 499999500000",
        "{}",
        run.stdout
    );
}

#[test]
fn ring_compiles_for_arm64_and_runs_under_qemu() {
    let tag = "ruchy-image-test/ring-hash:arm64";
    let _images = Images(vec![tag.into()]);
    let record = build_in_docker(
        "ring-hash",
        &["--platform", "linux/arm64", "--tag", tag, "--json", "-"],
    )
    .ok()
    .metrics();
    assert_eq!(
        record["optimization_flags"]["target"], "aarch64-unknown-linux-musl",
        "{record}"
    );
    assert_eq!(record["image"]["architecture"], "arm64", "{record}");
    assert_eq!(record["linkage"], "static", "{record}");
    let run = tool("docker", &["run", "--rm", "--platform", "linux/arm64", tag]).ok();
    assert_eq!(
        run.stdout,
        format!("ring sha256 = {SHA256}\narch = aarch64\n")
    );
}

#[test]
fn the_local_builder_gives_build_scripts_the_musl_c_compiler_and_the_kernel_headers() {
    // Debian's rustc has the std sources, so --builder local makes musl; build scripts get the
    // host's musl-gcc for it (CC_x86_64_unknown_linux_musl, as in the builder image), wrapped
    // to see the kernel's headers, and the link takes libgcc after the rebuilt std.
    let cache = std::env::var_os("RUCHY_IMAGE_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(ruchy_image::pipeline::build::default_cache_dir);
    let out = tempfile::tempdir().unwrap();
    let source = c_deps();
    for (bin, expected) in [
        (
            "ring-hash",
            format!("ring sha256 = {SHA256}\narch = x86_64\n"),
        ),
        ("kernel-headers", "MLOCK_ONFAULT = 1\n".to_string()),
    ] {
        let layout = out.path().join(bin);
        let record = ruchy_image_with(
            [
                "build",
                &source,
                "--bin",
                bin,
                "--target",
                "x86_64-unknown-linux-musl",
                "--oci-layout",
                layout.to_str().unwrap(),
                "--json",
                "-",
            ],
            |cmd| {
                cmd.env("RUSTC", "/usr/bin/rustc")
                    .env("RUCHY_IMAGE_CACHE", &cache)
                    .env_remove("CC_x86_64_unknown_linux_musl");
            },
        )
        .ok()
        .metrics();
        assert_eq!(record["builder"], "local", "{record}");
        assert_eq!(record["libc"], "musl", "{record}");
        assert_eq!(record["linkage"], "static", "{record}");
        // Static: it runs on the host as it is.
        let run = tool(record["binary_path"].as_str().unwrap(), &[]).ok();
        assert_eq!(run.stdout, expected);
    }
}

#[test]
fn c_that_includes_the_kernel_headers_compiles_in_the_builder() {
    let tag = "ruchy-image-test/kernel-headers:balanced";
    let _images = Images(vec![tag.into()]);
    build_in_docker("kernel-headers", &["--tag", tag]).ok();
    let run = tool("docker", &["run", "--rm", tag]).ok();
    assert_eq!(run.stdout, "MLOCK_ONFAULT = 1\n");
}

#[test]
fn a_builder_without_the_musl_c_compiler_names_it_the_crate_and_the_fix() {
    let builder = builder_image();
    let lacking = "ruchy-image-test/builder:without-musl-gcc";
    let _images = Images(vec![lacking.into()]);
    let _volumes = Volumes(format!("target for {lacking}"));
    docker_build(
        lacking,
        &format!("FROM {builder}\nRUN rm /usr/bin/musl-gcc\n"),
        &[],
    );

    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let failed = build_in_docker(
        "ring-hash",
        &[
            "--builder-image",
            lacking,
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
    );
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    let said = failed
        .stderr
        .lines()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        said.contains(&format!(
            "the build script of ring v0.17.14 runs `musl-gcc`, and the builder image {lacking} does not have it"
        )),
        "{said}"
    );
    assert!(said.contains("apt-get install musl-tools"), "{said}");
    assert!(said.contains("apk add --no-cache musl-dev"), "{said}");
    assert!(said.contains("ruchy-image doctor"), "{said}");
    assert!(!layout.exists());

    // doctor finds it too, without building anything.
    let doctor = ruchy_image(["doctor", "--builder-image", lacking]);
    let line = doctor
        .stdout
        .lines()
        .find(|l| l.contains("builder C toolchain"))
        .unwrap_or_else(|| panic!("{}", doctor.stdout))
        .to_string();
    assert!(line.contains('✗'), "{line}");
    assert!(
        line.contains("cannot compile C for x86_64-unknown-linux-musl"),
        "{line}"
    );
    let ready = ruchy_image(["doctor"]);
    assert!(
        ready
            .stdout
            .contains("✓ builder C toolchain   musl-gcc for x86_64-unknown-linux-musl"),
        "{}",
        ready.stdout
    );
}
