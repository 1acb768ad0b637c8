//! Outputs add to what is there and destroy nothing: an OCI layout is a store of many images.

mod common;
mod guards;

use common::*;

fn index(layout: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn tags(layout: &std::path::Path) -> Vec<String> {
    let mut tags: Vec<String> = index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        // Every entry is a tagged image: SBOM referrers are not listed.
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    tags.sort();
    tags
}

/// The SBOM referrers of `image` in `layout`, as our reader finds them and as `jq` does from
/// the blobs' `subject`s (the OCI 1.1 lookup, without any listing to read).
fn referrers(layout: &std::path::Path, image: &str) -> Vec<serde_json::Value> {
    let ours = ruchy_image::pipeline::oci::referrer::in_layout(layout, image).unwrap();
    let filter = format!(r#"select(.subject.digest? == "{image}") | .artifactType"#);
    // One blob at a time: layers are not JSON, and jq stops at the first it cannot read.
    let artifacts: Vec<String> = entries(&layout.join("blobs/sha256"))
        .into_iter()
        .filter_map(|blob| {
            let path = layout.join("blobs/sha256").join(blob);
            let out = std::process::Command::new("jq")
                .args(["-r", &filter])
                .arg(path)
                .output()
                .unwrap();
            out.status
                .success()
                .then(|| String::from_utf8(out.stdout).unwrap())
        })
        .flat_map(|out| out.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let listed: Vec<&str> = ours
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(listed, artifacts);
    ours
}

#[test]
fn a_default_layout_is_one_entry_read_by_skopeo_umoci_and_docker_load_with_its_sbom_found_by_subject(
) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("fib");
    let fib = example("fibonacci.rs");
    let build = |layout: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["build", fib.to_str().unwrap(), "-O", "aggressive"];
        args.extend(["--oci-layout", layout.to_str().unwrap()]);
        args.extend(extra);
        ruchy_image(&args).ok()
    };
    let run = build(&layout, &[]);
    assert!(
        run.stdout.contains("  sbom      attached as OCI referrer"),
        "{}",
        run.stdout
    );
    let record = build(&layout, &["--json", "-"]).metrics();
    let image = record["image"]["digest"].as_str().unwrap();
    assert_eq!(tags(&layout), ["aggressive"]);

    // The commonest calls, naming no image.
    let inspected = tool("skopeo", &["inspect", &format!("oci:{}", layout.display())]).ok();
    let inspected: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(inspected["Digest"], image);
    let archive = dir.path().join("fib.tar");
    let name = "ruchy-image-test/layout-reader:1";
    let _images = guards::Images(vec![name.to_string()]);
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}", layout.display()),
            &format!("docker-archive:{}:{name}", archive.display()),
        ],
    )
    .ok();
    let loaded = tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(loaded.stdout.contains(name), "{}", loaded.stdout);
    let listed = tool("umoci", &["ls", "--layout", layout.to_str().unwrap()]).ok();
    assert_eq!(listed.stdout.trim(), "aggressive");
    umoci_unpack(&layout, "aggressive");

    // The SBOM and the provenance are still there, found by their subject.
    let found = referrers(&layout, image);
    let mut types: Vec<&str> = found
        .iter()
        .map(|f| f["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/vnd.cyclonedx+json",
            "application/vnd.dsse.envelope.v1+json"
        ],
        "{found:?}"
    );

    // skopeo adds a second image beside ours, and both read.
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:aggressive", layout.display()),
            &format!("oci:{}:copy", layout.display()),
        ],
    )
    .ok();
    assert_eq!(tags(&layout), ["aggressive", "copy"]);
    for tag in ["aggressive", "copy"] {
        assert_eq!(skopeo_inspect(&layout, tag).0["Digest"], image, "{tag}");
    }

    // --no-sbom --no-provenance: the image and nothing that refers to it.
    let bare = dir.path().join("bare");
    let run = build(&bare, &["--no-sbom", "--no-provenance"]);
    assert!(!run.stdout.contains("sbom"), "{}", run.stdout);
    assert!(!run.stdout.contains("provenance"), "{}", run.stdout);
    assert_eq!(tags(&bare), ["aggressive"]);
    assert!(referrers(&bare, image).is_empty());
    let blobs = entries(&bare.join("blobs/sha256"));
    for referrer in &found {
        let referrer = referrer["digest"].as_str().unwrap();
        assert!(
            !blobs.contains(&referrer.replacen("sha256:", "", 1)),
            "{blobs:?}"
        );
    }
}

#[test]
fn an_existing_layout_keeps_its_other_images_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("store");
    let fib = example("fibonacci.rs");
    let build = |preset: &str, epoch: &str| {
        ruchy_image_with(
            [
                "build",
                fib.to_str().unwrap(),
                "-O",
                preset,
                "--oci-layout",
                layout.to_str().unwrap(),
                "--json",
                "-",
            ],
            |cmd| {
                cmd.env("SOURCE_DATE_EPOCH", epoch);
            },
        )
        .ok()
        .metrics()
    };
    let none = build("none", "0");
    std::fs::write(layout.join("README"), "ours, not the tool's").unwrap();
    let aggressive = build("aggressive", "0");
    assert_eq!(tags(&layout), ["aggressive", "none"]);
    assert_eq!(
        std::fs::read_to_string(layout.join("README")).unwrap(),
        "ours, not the tool's"
    );
    // Both images are whole, as a third-party reader sees them.
    for (tag, metrics) in [("none", &none), ("aggressive", &aggressive)] {
        let (summary, _) = skopeo_inspect(&layout, tag);
        assert_eq!(summary["Digest"], metrics["image"]["digest"], "{tag}");
    }
    umoci_unpack(&layout, "none");

    // The same tag again replaces its entry and keeps the other.
    let again = build("aggressive", "86400");
    assert_ne!(again["image"]["digest"], aggressive["image"]["digest"]);
    assert_eq!(tags(&layout), ["aggressive", "none"]);
    let (summary, _) = skopeo_inspect(&layout, "aggressive");
    assert_eq!(summary["Digest"], again["image"]["digest"]);
    let leftovers: Vec<String> = entries(&layout)
        .into_iter()
        .filter(|name| name.starts_with(".ruchy-image"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The gzip members of a blob: each one's uncompressed size.
fn gzip_members(blob: &[u8]) -> Vec<usize> {
    let mut rest = blob;
    let mut members = Vec::new();
    while !rest.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut out).unwrap();
        rest = member.into_inner();
        members.push(out.len());
    }
    members
}

/// The binary's layer (the last) of the layout's image `tag`: its blob and its diff_id.
fn app_layer(layout: &std::path::Path, tag: &str) -> (Vec<u8>, String) {
    let blob = |digest: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index = index(layout);
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(manifest["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let diff_id = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    (
        blob(layer["digest"].as_str().unwrap()),
        diff_id.as_str().unwrap().to_string(),
    )
}

#[test]
fn layers_are_gzip_members_at_the_preset_s_level_that_every_reader_takes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let archive = dir.path().join("none.tar");
    let fib = example("fibonacci.rs");
    let tag = "ruchy-image-test/members:none";
    let _images = guards::Images(vec![tag.to_string()]);
    let build = |extra: &[&str]| {
        let mut args = vec![fib.to_str().unwrap(), "-O", "none", "--json", "-"];
        args.extend(extra);
        ruchy_image(["build"].iter().chain(args.iter()))
    };
    // `none` keeps debug info: a binary of several 512 KiB members.
    let record = build(&[
        "--oci-layout",
        layout.to_str().unwrap(),
        "--output",
        archive.to_str().unwrap(),
        "--tag",
        tag,
    ])
    .ok()
    .metrics();
    let binary = std::fs::read(record["binary_path"].as_str().unwrap()).unwrap();
    assert!(binary.len() > 512 << 10, "{}", binary.len());
    let (blob, diff_id) = app_layer(&layout, "none");
    let members = gzip_members(&blob);
    assert!(members.len() >= 2, "{members:?}");
    assert!(
        members[..members.len() - 1].iter().all(|n| *n == 512 << 10),
        "{members:?}"
    );

    // Every reader takes it: umoci unpacks the very binary, skopeo reads the image, and the
    // engine loads and runs it.
    let bundle = umoci_unpack(&layout, "none");
    let unpacked =
        std::fs::read(bundle.path().join("bundle/rootfs/usr/local/bin/fibonacci")).unwrap();
    assert!(unpacked == binary, "umoci unpacked another binary");
    skopeo_inspect(&layout, "none");
    tool("docker", &["load", "-i", archive.to_str().unwrap()]).ok();
    let run = tool("docker", &["run", "--rm", tag]).ok();
    assert!(
        run.stdout.contains("fibonacci(30) = 832040"),
        "{}",
        run.stdout
    );

    // Another level: other compressed bytes, the same tar.
    let fast = dir.path().join("fast");
    build(&[
        "--oci-layout",
        fast.to_str().unwrap(),
        "--compression-level",
        "1",
    ])
    .ok();
    let (fast_blob, fast_diff_id) = app_layer(&fast, "none");
    assert_ne!(fast_blob, blob);
    assert_eq!(fast_diff_id, diff_id);
    assert!(
        fast_blob.len() > blob.len(),
        "level 1 is bigger than none's 6"
    );

    let refused = build(&["--compression-level", "13"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("gzip levels go from 1 to 12"),
        "{}",
        refused.stderr
    );
}

/// The containerd the engine runs (its own, or the system's), in a namespace of this test run
/// that is emptied when dropped.
struct Containerd {
    address: &'static str,
    namespace: String,
}

impl Containerd {
    fn new() -> Containerd {
        let address = [
            "/run/docker/containerd/containerd.sock",
            "/run/containerd/containerd.sock",
        ]
        .into_iter()
        .find(|socket| std::path::Path::new(socket).exists())
        .expect("containerd's socket: the engine .ci/setup starts runs one");
        Containerd {
            address,
            namespace: format!("ruchy-image-test-{}", std::process::id()),
        }
    }

    fn ctr(&self, args: &[&str]) -> Run {
        let mut all = vec!["--address", self.address, "--namespace", &self.namespace];
        all.extend_from_slice(args);
        tool("ctr", &all)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for image in self.ctr(&["images", "ls", "-q"]).stdout.lines() {
            self.ctr(&["images", "rm", "--sync", image]);
        }
        self.ctr(&["content", "prune", "references"]);
        self.ctr(&["namespaces", "rm", &self.namespace.clone()]);
    }
}

/// The OCI media types of an image's layers in a layout, as skopeo reads its manifest.
fn layer_media_types(layout: &std::path::Path, tag: &str) -> Vec<String> {
    let reference = format!("oci:{}:{tag}", layout.display());
    let raw = tool("skopeo", &["inspect", "--raw", &reference]).ok();
    let manifest: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn zstd_layers_are_read_by_skopeo_containerd_and_bases_and_an_old_engine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let fib = example("fibonacci.rs");
    let fib = fib.to_str().unwrap();
    // One build, two outputs: the layout for skopeo and our base reader, the archive for
    // containerd.
    let archive = dir.path().join("zstd.tar");
    let id = std::process::id().to_string();
    let tag = format!("ruchy-image-test/zstd:{id}");
    ruchy_image([
        "build",
        fib,
        "-O",
        "aggressive",
        "--compression",
        "zstd",
        "--no-load",
        "--tag",
        &tag,
        "--oci-layout",
        layout.to_str().unwrap(),
        "--output",
        archive.to_str().unwrap(),
    ])
    .ok();
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    assert_eq!(layer_media_types(&layout, &id), [zstd, zstd]);
    let (blob, diff_id) = app_layer(&layout, &id);
    assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd's magic");
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut zstd::stream::read::Decoder::new(&blob[..]).unwrap(),
        &mut tar,
    )
    .unwrap();
    assert_eq!(
        ruchy_image::adapters::fsutil::sha256_digest(&tar),
        diff_id,
        "the diff_id is the digest of the decompressed tar"
    );
    // containerd (the engine's own, 1.6 here) imports the archive, unpacks the zstd layers
    // and runs the binary as the non-root user. umoci 0.4.7 here predates zstd.
    let containerd = Containerd::new();
    containerd
        .ctr(&["images", "import", archive.to_str().unwrap()])
        .ok();
    let run = containerd
        .ctr(&["run", "--rm", &tag, &format!("zstd-{}", std::process::id())])
        .ok();
    assert!(
        run.stdout.contains("fibonacci(30) = 832040"),
        "{}",
        run.stdout
    );
    drop(containerd);

    // Our own base reader takes it: a gzip image on the zstd one keeps its layers as they are.
    let on_top = dir.path().join("on-top");
    ruchy_image([
        "build",
        fib,
        "-O",
        "aggressive",
        "--base",
        &format!("oci:{}:{id}", layout.display()),
        "--no-load",
        "--oci-layout",
        on_top.to_str().unwrap(),
    ])
    .ok();
    let types = layer_media_types(&on_top, "aggressive");
    assert_eq!(types[..2], [zstd, zstd], "{types:?}");
    assert_eq!(
        types.last().unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // This machine's engine is Docker 20.10: a load is refused before anything is written.
    let out = dir.path().join("refused");
    let refused = ruchy_image([
        "build",
        fib,
        "--compression",
        "zstd",
        "--tag",
        "ruchy-image-test/zstd:refused",
        "--oci-layout",
        out.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot load zstd layers"),
        "{}",
        refused.stderr
    );
    assert!(!out.exists());
    let refused = ruchy_image([
        "build",
        fib,
        "--compression",
        "zstd",
        "--compression-level",
        "20",
    ]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
}
