//! `--base`: our layers on top of another image's, byte for byte, read from the engine, an
//! OCI layout or a `docker save` archive. No registry is reachable here, so the bases are
//! made locally: a busybox one (a shell and accounts, like alpine), the same with more config
//! (a variable, a port, a working directory), and a glibc one (the host's loader and libc, for
//! a dynamically linked binary).

mod common;
mod guards;

use std::path::Path;
use std::sync::OnceLock;

use common::*;
use guards::Images;

const BUSYBOX: &str = "ruchy-image-test/busybox:base";
const GLIBC: &str = "ruchy-image-test/glibc:base";
const CONFIGURED: &str = "ruchy-image-test/busybox:configured";

/// `docker build` of a base FROM `from`, with files of this machine (host path, image path).
/// A host path that is a symlink is copied as the file it points to.
fn build_base<H: AsRef<Path>, I: AsRef<str>>(tag: &str, from: &str, files: &[(H, I)], extra: &str) {
    let context = tempfile::tempdir().unwrap();
    let mut dockerfile = format!("FROM {from}\n");
    for (i, (host, image)) in files.iter().enumerate() {
        let (host, image) = (host.as_ref(), image.as_ref());
        std::fs::copy(host, context.path().join(format!("f{i}")))
            .unwrap_or_else(|e| panic!("cannot copy {} into the context: {e}", host.display()));
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
            "scratch",
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

/// A base whose config says more than busybox's: a variable, a port, a working directory and
/// a label. Metadata only, so its layers are busybox's. What our image keeps of it must not
/// depend on where the base was read from.
fn configured_base() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_base::<&str, &str>(
            CONFIGURED,
            busybox_base(),
            &[],
            "ENV GREETING=hello\nEXPOSE 8080/tcp\nWORKDIR /tmp\n\
             LABEL org.example.base=configured\n",
        )
    });
    CONFIGURED
}

/// What a dynamically linked Rust binary built here for the host needs at run time, as
/// (host file, path in the image): the loader it names, and the libraries the loader finds for
/// the running test executable (a Rust binary of the same toolchain: libc, libgcc_s, ...),
/// as `ldd` resolves them, plus libm and libgcc_s from libc's directory should `ldd` not list
/// them. Each at the path the loader looks in.
fn host_runtime_files() -> Vec<(String, String)> {
    let loader = host_loader();
    let exe = std::env::current_exe().unwrap();
    let ldd = tool("ldd", &[exe.to_str().unwrap()]).ok();
    let mut libraries: Vec<(String, String)> = Vec::new();
    for line in ldd.stdout.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`. The vDSO has no file, and
        // the loader's own line (`/lib64/ld-linux-x86-64.so.2 (0x...)`) is `loader`.
        let Some((name, resolved)) = line.trim().split_once(" => ") else {
            continue;
        };
        let path = resolved.split(" (").next().unwrap().trim();
        assert!(
            path.starts_with('/'),
            "ldd cannot resolve {name} for {}: {}",
            exe.display(),
            ldd.stdout
        );
        libraries.push((name.to_string(), path.to_string()));
    }
    let libc = libraries
        .iter()
        .find(|(name, _)| name.starts_with("libc.so"))
        .unwrap_or_else(|| panic!("no libc in ldd {}: {}", exe.display(), ldd.stdout))
        .1
        .clone();
    let libc_dir = Path::new(&libc).parent().unwrap();
    for name in ["libgcc_s.so.1", "libm.so.6"] {
        if !libraries.iter().any(|(listed, _)| listed == name) {
            let path = libc_dir.join(name);
            assert!(path.exists(), "no {name} next to {libc}");
            libraries.push((name.to_string(), path.display().to_string()));
        }
    }
    let mut files = vec![(loader.clone(), loader)];
    files.extend(libraries.into_iter().map(|(_, path)| (path.clone(), path)));
    files
}

/// A glibc base: the host's loader and the libraries a dynamic Rust binary links.
fn glibc_base() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_base(GLIBC, "scratch", &host_runtime_files(), ""));
    GLIBC
}

fn build(args: &[&str]) -> Run {
    let mut all = vec!["build", "--builder", "local"];
    all.extend_from_slice(args);
    ruchy_image(&all)
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

/// `sha256:HEX` of some bytes.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A JSON array of strings.
fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A blob of an OCI layout, checked against its digest.
fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = layout.join("blobs").join(digest.replacen(':', "/", 1));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        sha256(&bytes),
        digest,
        "{} does not hash to its name",
        path.display()
    );
    bytes
}

/// The only image of an OCI layout, read from its blobs: manifest -> config -> layers.
struct LayoutImage {
    /// The manifest's layer digests (the blobs as stored, compressed or not).
    layers: Vec<String>,
    /// The config's `rootfs.diff_ids` (the layers' uncompressed tars).
    diff_ids: Vec<String>,
    config: serde_json::Value,
}

/// Reads `layout` and checks that every layer blob uncompresses to its diff_id.
fn read_layout(layout: &Path) -> LayoutImage {
    let manifest = layout_manifest(layout);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&layout_blob(layout, config_digest)).unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let diff_ids = json_strings(&config["rootfs"]["diff_ids"]);
    assert_eq!(
        layers.len(),
        diff_ids.len(),
        "{}: {manifest}",
        layout.display()
    );
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let blob = layout_blob(layout, layer);
        let tar = if blob.starts_with(&[0x1f, 0x8b]) {
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&blob[..]), &mut tar)
                .unwrap();
            tar
        } else {
            blob
        };
        assert_eq!(
            &sha256(&tar),
            diff_id,
            "{}: layer {layer}",
            layout.display()
        );
    }
    LayoutImage {
        layers,
        diff_ids,
        config,
    }
}

#[test]
fn oci_layout_and_docker_archive_bases_read_like_engine_ones() {
    let base = configured_base();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("base-layout");
    let saved = dir.path().join("base.tar");
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

    // The same program on the same base, read from the engine, the layout and the archive.
    let build_on = |reference: &str, name: &str| {
        let out = dir.path().join(name);
        let metrics = build(&[
            &fib(),
            "--base",
            reference,
            "--oci-layout",
            out.to_str().unwrap(),
            "--json",
            "-",
        ])
        .ok()
        .metrics();
        (name.to_string(), metrics, read_layout(&out))
    };
    let engine = build_on(base, "on-engine");
    let from_layout = build_on(&format!("oci:{}:3.20", layout.display()), "on-layout");
    let from_archive = build_on(&format!("docker-archive:{}", saved.display()), "on-archive");

    // The base's layers as the engine has them, in order: uncompressed tars, so a layer's
    // digest is its diff_id.
    let inspect = tool(
        "docker",
        &["inspect", "--format", "{{json .RootFS.Layers}}", base],
    )
    .ok();
    let base_diff_ids: Vec<String> = serde_json::from_str(&inspect.stdout).unwrap();
    let n = base_diff_ids.len();
    assert!(n >= 3, "busybox's layers: {base_diff_ids:?}");
    for (name, metrics, image) in [&engine, &from_layout, &from_archive] {
        assert_eq!(
            metrics["image"]["base"]["layer_count"], n,
            "{name}: {metrics}"
        );
        assert_eq!(
            image.diff_ids[..n],
            base_diff_ids[..],
            "{name}: the base's layers, unchanged and in order"
        );
        assert!(image.diff_ids.len() > n, "{name}: no layers of ours");
        // Our layers are the same bytes whatever the base was read from.
        assert_eq!(
            image.diff_ids[n..],
            engine.2.diff_ids[n..],
            "{name}: our layers"
        );
        assert_eq!(image.layers[n..], engine.2.layers[n..], "{name}: our blobs");
    }

    // Engine and archive bases are docker's own tars, kept byte for byte.
    assert_eq!(engine.2.layers[..n], base_diff_ids[..], "engine base blobs");
    assert_eq!(from_archive.2.layers, engine.2.layers, "archive blobs");
    // skopeo (re)compressed the layers it wrote into the layout: those blobs, byte for byte.
    let source_layers: Vec<String> = layout_manifest(&layout)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(
        source_layers[..],
        base_diff_ids[..],
        "skopeo wrote plain tars: the layout no longer tests other blobs with the same diff_ids"
    );
    assert_eq!(
        from_layout.2.layers[..n],
        source_layers[..],
        "layout base blobs"
    );

    // What decides how a container runs is the same whichever way the base was read...
    let run_config = |image: &LayoutImage| {
        let c = &image.config;
        let field = |name: &str| c["config"][name].clone();
        serde_json::json!({
            "User": field("User"),
            "Env": field("Env"),
            "Entrypoint": field("Entrypoint"),
            "Cmd": field("Cmd"),
            "WorkingDir": field("WorkingDir"),
            "ExposedPorts": field("ExposedPorts"),
            "architecture": c["architecture"],
            "os": c["os"],
        })
    };
    let expected = run_config(&engine.2);
    for (name, _, image) in [&from_layout, &from_archive] {
        assert_eq!(run_config(image), expected, "{name}'s config");
    }
    // ...and keeps the base's own settings next to ours.
    assert_eq!(expected["User"], "65532:65532", "{expected}");
    assert_eq!(
        expected["Entrypoint"],
        serde_json::json!(["/usr/local/bin/fibonacci"])
    );
    assert_eq!(expected["Cmd"], serde_json::Value::Null, "{expected}");
    assert_eq!(expected["WorkingDir"], "/tmp", "{expected}");
    assert_eq!(
        expected["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}}),
        "{expected}"
    );
    let env = json_strings(&expected["Env"]);
    for var in ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"] {
        assert!(env.iter().any(|e| e == var), "{var} kept: {env:?}");
    }
    assert_eq!(expected["architecture"], host_arch());
    assert_eq!(expected["os"], "linux");
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
    let loader = host_loader();
    assert_eq!(metrics["linkage"], format!("dynamic ({loader})"));
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
        missing.stderr.contains(&format!(
            "needs the loader {loader}, which base ruchy-image-test/busybox:base does not have"
        )),
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
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&l[..]), &mut tar)
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
        2,
        "cannot find base image ruchy-image-test/no-such-base:1: not in the engine, and the pull failed",
        &[],
    );
    fails_with(
        "oci:/nonexistent/layout",
        2,
        "cannot find base image oci:/nonexistent/layout",
        &[],
    );

    let dir = tempfile::tempdir().unwrap();
    let traversal = dir.path().join("traversal");
    write_layout(
        &traversal,
        &[layer_with("../../etc/evil", b"x")],
        host_arch(),
    );
    fails_with(
        &format!("oci:{}", traversal.display()),
        1,
        "entry \"../../etc/evil\" climbs out of the root",
        &[],
    );

    let bomb = dir.path().join("bomb");
    write_layout(
        &bomb,
        &[layer_with("zeros", &vec![0u8; 4 << 20])],
        host_arch(),
    );
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
    let foreign = dir.path().join("foreign");
    write_layout(
        &foreign,
        &[layer_with("etc/hostname", b"foreign\n")],
        foreign_arch(),
    );
    let run = build(&[&fib(), "--base", &format!("oci:{}", foreign.display())]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "is for {}, and the binary is {}",
            foreign_arch(),
            host_arch()
        )),
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
