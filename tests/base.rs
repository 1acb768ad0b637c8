//! `--base`: our layers on top of another image's, byte for byte, read from the engine, an
//! OCI layout or a `docker save` archive. No registry is reachable here, so the bases are
//! made locally: a busybox one (a shell and accounts, like alpine) and a glibc one (the
//! host's loader and libc, for a dynamically linked binary).

mod common;
mod guards;

use std::path::Path;
use std::sync::OnceLock;

use common::*;
use guards::Images;

const BUSYBOX: &str = "ruchy-image-test/busybox:base";
const GLIBC: &str = "ruchy-image-test/glibc:base";

/// `docker build` of a FROM scratch base from files of this machine.
fn build_base(tag: &str, files: &[(&str, &str)], extra: &str) {
    let context = tempfile::tempdir().unwrap();
    let mut dockerfile = String::from("FROM scratch\n");
    for (i, (host, image)) in files.iter().enumerate() {
        std::fs::copy(host, context.path().join(format!("f{i}"))).unwrap();
        dockerfile += &format!("COPY f{i} {image}\n");
    }
    dockerfile += extra;
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    tool(
        "docker",
        &["build", "-q", "-t", tag, context.path().to_str().unwrap()],
    )
    .ok();
}

/// A busybox base (Debian's busybox-static, installed by .ci/setup) with a shell, /etc/passwd
/// holding root and appuser 1000, and /tmp. Built once per test run.
fn busybox_base() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_base(
            BUSYBOX,
            &[("/bin/busybox", "/bin/busybox")],
            "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN mkdir -p /etc /tmp && chmod 1777 /tmp \
              && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
              && echo 'appuser:x:1000:1000:appuser:/home/appuser:/bin/sh' >> /etc/passwd \
              && printf 'root:x:0:\\nappuser:x:1000:\\n' > /etc/group\n\
             ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"/bin/sh\"]\n",
        )
    });
    BUSYBOX
}

/// A glibc base: the host's loader and the libraries a dynamic Rust binary links.
fn glibc_base() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let libs = [
            ("/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"),
            (
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
            ),
            (
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            ),
            (
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib/x86_64-linux-gnu/libm.so.6",
            ),
        ];
        build_base(GLIBC, &libs, "")
    });
    GLIBC
}

fn build(args: &[&str]) -> Run {
    let mut all = vec!["build", "--builder", "local"];
    all.extend_from_slice(args);
    ruchy_image(&all)
}

fn fib() -> String {
    example("fibonacci.rs").display().to_string()
}

/// The manifest of the only image in an OCI layout.
fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let path = layout.join("blobs").join(digest.replacen(':', "/", 1));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn busybox_base_keeps_its_layers_and_shell_and_runs_as_non_root() {
    let base = busybox_base();
    let tag = "ruchy-image-test/fib-busybox:engine";
    let _images = Images(vec![tag.into()]);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let archive = out.path().join("image.tar");
    let metrics = build(&[
        &fib(),
        "-O",
        "aggressive",
        "--base",
        base,
        "--tag",
        tag,
        "--oci-layout",
        layout.to_str().unwrap(),
        "--output",
        archive.to_str().unwrap(),
        "--json",
        "-",
    ])
    .ok()
    .metrics();

    // The base's layers, byte for byte: our manifest's first digests are the base's own.
    let base_layers = tool(
        "docker",
        &["inspect", "--format", "{{json .RootFS.Layers}}", base],
    )
    .ok();
    let base_layers: Vec<String> = serde_json::from_str(&base_layers.stdout).unwrap();
    let manifest = layout_manifest(&layout);
    let ours: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(&ours[..base_layers.len()], base_layers.as_slice());
    assert_eq!(metrics["image"]["base"]["layer_count"], base_layers.len());
    assert_eq!(metrics["image"]["layer_count"], ours.len());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base
    );

    let run = tool("docker", &["run", "--rm", tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");
    let shell = tool(
        "docker",
        &[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            tag,
            "-c",
            "id; ls /usr/local/bin; cat /etc/passwd",
        ],
    )
    .ok();
    assert!(
        shell
            .stdout
            .starts_with("uid=65532(nonroot) gid=65532(nonroot)"),
        "{}",
        shell.stdout
    );
    assert!(shell.stdout.contains("\nfibonacci\n"), "{}", shell.stdout);
    assert!(
        shell.stdout.contains("appuser:x:1000:1000"),
        "base users kept: {}",
        shell.stdout
    );
    let env = tool(
        "docker",
        &["inspect", "--format", "{{json .Config.Env}}", tag],
    )
    .ok();
    assert!(
        env.stdout.contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
        "base PATH kept: {}",
        env.stdout
    );

    // Third-party readers agree.
    skopeo_inspect(&layout, tag.rsplit(':').next().unwrap());
    umoci_unpack(&layout, "engine");
    let loaded_tag = "ruchy-image-test/fib-busybox:loaded";
    let _more = Images(vec![loaded_tag.into()]);
    tool("docker", &["rmi", tag]).ok();
    let loaded = tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(loaded.stdout.contains(tag), "{}", loaded.stdout);
}

#[test]
fn the_same_base_and_input_give_the_same_digest() {
    let base = busybox_base();
    let digest = || {
        build(&[
            &fib(),
            "-O",
            "aggressive",
            "--base",
            base,
            "--no-load",
            "--json",
            "-",
        ])
        .ok()
        .metrics()["image"]["digest"]
            .clone()
    };
    assert_eq!(digest(), digest());
}

#[test]
fn an_existing_user_is_reused_and_a_clashing_one_refused() {
    let base = busybox_base();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    build(&[
        &fib(),
        "--base",
        base,
        "--user",
        "appuser:1000:1000",
        "--oci-layout",
        layout.to_str().unwrap(),
    ])
    .ok();
    let bundle = umoci_unpack(&layout, "balanced");
    let passwd = std::fs::read_to_string(bundle.path().join("bundle/rootfs/etc/passwd")).unwrap();
    let appusers = passwd.lines().filter(|l| l.starts_with("appuser:")).count();
    assert_eq!(appusers, 1, "{passwd}");

    let clash = build(&[&fib(), "--base", base, "--user", "appuser:2000:2000"]);
    assert_eq!(clash.code, Some(2), "{}", clash.stderr);
    assert!(
        clash
            .stderr
            .contains("the base already has a user appuser with user id 1000"),
        "{}",
        clash.stderr
    );
}

#[test]
fn oci_layout_and_docker_archive_bases_read_like_engine_ones() {
    let base = busybox_base();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("busybox");
    let saved = dir.path().join("busybox.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-daemon:{base}"),
            &format!("oci:{}:3.20", layout.display()),
        ],
    )
    .ok();
    tool("docker", &["save", "-o", saved.to_str().unwrap(), base]).ok();
    let from_layout = build(&[
        &fib(),
        "--base",
        &format!("oci:{}:3.20", layout.display()),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    let from_archive = build(&[
        &fib(),
        "--base",
        &format!("docker-archive:{}", saved.display()),
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    for metrics in [&from_layout, &from_archive] {
        assert_eq!(metrics["image"]["base"]["layer_count"], 3, "{metrics}");
    }
    // skopeo recompresses layers into the layout; the archive keeps docker's plain tars.
    assert!(from_layout["image"]["base"]["size"].as_u64().unwrap() > 0);
}

#[test]
fn a_dynamic_binary_needs_its_loader_in_the_base() {
    let tag = "ruchy-image-test/fib-glibc:dynamic";
    let _images = Images(vec![tag.into()]);
    let metrics = build(&[
        &fib(),
        "-O",
        "aggressive",
        "--no-static-link",
        "--base",
        glibc_base(),
        "--tag",
        tag,
        "--json",
        "-",
    ])
    .ok()
    .metrics();
    assert_eq!(metrics["linkage"], "dynamic (/lib64/ld-linux-x86-64.so.2)");
    let run = tool("docker", &["run", "--rm", tag, "20"]).ok();
    assert_eq!(run.stdout, "fibonacci(20) = 6765\nuid=65532 gid=65532\n");

    let missing = build(&[
        &fib(),
        "-O",
        "aggressive",
        "--no-static-link",
        "--base",
        busybox_base(),
    ]);
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(
        missing.stderr.contains(
            "needs the loader /lib64/ld-linux-x86-64.so.2, which base ruchy-image-test/busybox:base does not have"
        ),
        "{}",
        missing.stderr
    );
}

/// Writes a one-image OCI layout with these (gzip'd tar) layers and architecture.
fn write_layout(dir: &Path, layers: &[Vec<u8>], architecture: &str) {
    use sha2::Digest;
    let digest = |b: &[u8]| format!("sha256:{:x}", sha2::Sha256::digest(b));
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        let path = dir.join("blobs").join(d.replacen(':', "/", 1));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        (d, bytes.len())
    };
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| {
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l[..]), &mut tar)
                .unwrap();
            digest(&tar)
        })
        .collect();
    let config = serde_json::json!({
        "architecture": architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (d, size) = put(l);
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descriptors
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size}]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A gzip'd tar with one file whose name is written as given (even with `..`).
fn layer_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    tar.append(&header, data).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn fails_with(base: &str, code: i32, expected: &str, env: &[(&str, &str)]) {
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("out");
    let run = ruchy_image_with(
        [
            "build",
            "--builder",
            "local",
            &fib(),
            "--base",
            base,
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
        |cmd| {
            cmd.envs(env.iter().copied());
        },
    );
    assert_eq!(run.code, Some(code), "{base}: {}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "{base}: expected {expected:?} in {}",
        run.stderr
    );
    assert!(
        entries(out.path()).is_empty(),
        "{base} left {:?}",
        entries(out.path())
    );
    // Bad bases fail before any compile.
    assert!(!run.stderr.contains("Compiling"), "{}", run.stderr);
}

#[test]
fn bad_bases_are_refused_before_compiling() {
    fails_with(
        "ftp://example/x",
        2,
        "invalid --base `ftp://example/x`",
        &[],
    );
    fails_with(
        "ruchy-image-test/no-such-base:1",
        1,
        "cannot find base image ruchy-image-test/no-such-base:1: not in the engine, and the pull failed",
        &[],
    );
    fails_with(
        "oci:/nonexistent/layout",
        1,
        "cannot find base image oci:/nonexistent/layout",
        &[],
    );

    let dir = tempfile::tempdir().unwrap();
    let traversal = dir.path().join("traversal");
    write_layout(&traversal, &[layer_with("../../etc/evil", b"x")], "amd64");
    fails_with(
        &format!("oci:{}", traversal.display()),
        1,
        "entry \"../../etc/evil\" climbs out of the root",
        &[],
    );

    let bomb = dir.path().join("bomb");
    write_layout(&bomb, &[layer_with("zeros", &vec![0u8; 4 << 20])], "amd64");
    fails_with(
        &format!("oci:{}", bomb.display()),
        1,
        "refusing a likely decompression bomb",
        &[("RUCHY_IMAGE_MAX_LAYER_SIZE", "1048576")],
    );
}

#[test]
fn a_base_for_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let arm = dir.path().join("arm");
    write_layout(&arm, &[layer_with("etc/hostname", b"arm\n")], "arm64");
    let run = build(&[&fib(), "--base", &format!("oci:{}", arm.display())]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("is for arm64, and the binary is amd64"),
        "{}",
        run.stderr
    );
}

#[test]
fn compare_bases_prints_every_preset_on_every_base() {
    let base = busybox_base();
    let bases = format!("scratch,{base}");
    let csv = ruchy_image([
        "compare",
        &fib(),
        "--presets",
        "none,aggressive",
        "--bases",
        &bases,
        "--format",
        "csv",
    ])
    .ok()
    .stdout;
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{csv}");
    // image,base,size,unpacked,layers,base_size,added
    let on = |name: &str, image: &str| {
        rows.iter()
            .find(|r| r[0] == image && r[1] == name)
            .unwrap_or_else(|| panic!("no row for {image} on {name}: {csv}"))
            .clone()
    };
    let scratch = on("scratch", "fibonacci:aggressive");
    let busybox = on(base, "fibonacci:aggressive");
    assert_eq!(scratch[4], "2");
    assert_eq!(busybox[4], "5", "3 base layers + ours: {csv}");
    assert_eq!(scratch[5], "0");
    let number = |cell: &str| cell.parse::<u64>().unwrap();
    assert_eq!(
        number(busybox[2]),
        number(busybox[5]) + number(busybox[6]),
        "size = base + added: {csv}"
    );
    assert!(number(busybox[2]) > number(scratch[2]));
}
