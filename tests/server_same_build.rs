//! `build --server` is the same build as a local one: for every output the same files (same
//! digests, same `index.json` entries), the same refusals and the same exit codes. Each case
//! runs both ways side by side: locally with the docker builder in the tests' builder image,
//! and on a real `ruchy-image serve` compiling in that image, with the outputs written here.

mod common;
mod guards;
mod registries;
#[macro_use]
mod service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use guards::{builder_image, Images};
use service::*;

/// A service, and how to run the CLI locally and against it.
struct Both {
    server: Server,
    token: PathBuf,
    builder: String,
}

impl Both {
    fn start(dir: &Path) -> (Both, Leftovers) {
        let (data, leftovers) = data_dir(dir);
        let server = start(&data, &[]);
        let both = Both {
            token: token_file(&data),
            server,
            builder: builder_image(),
        };
        (both, leftovers)
    }

    fn local(&self, args: &[&str]) -> Run {
        let builder = ["--builder", "docker", "--builder-image", &self.builder];
        ruchy_image(args.iter().chain(&builder))
    }

    fn remote(&self, args: &[&str]) -> Run {
        let token = self.token.to_str().unwrap();
        let server = ["--server", &self.server.url, "--token-file", token];
        ruchy_image(args.iter().chain(&server))
    }

    fn remote_with(&self, args: &[&str], tweak: impl FnOnce(&mut std::process::Command)) -> Run {
        let token = self.token.to_str().unwrap();
        let server = ["--server", &self.server.url, "--token-file", token];
        ruchy_image_with(args.iter().chain(&server), tweak)
    }

    /// How many builds the server has recorded.
    fn builds(&self) -> usize {
        let list = curl(&self.server, "GET", "/v1/builds?limit=100", &[], true).json();
        list["builds"].as_array().map_or(0, Vec::len)
    }
}

/// Every file under `dir`, by relative path, with its bytes' digest.
fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().display().to_string();
                found.insert(relative, digest(&std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn layouts_and_archives_are_the_files_a_local_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (both, _leftovers) = Both::start(dir.path());
    let fib = example("fibonacci.rs");
    let fib = path(&fib);
    let [local, remote] = ["local", "remote"].map(|side| dir.path().join(side));

    // A new layout and an archive, both ways: the same files, byte for byte (the SBOM's
    // referrer included: the archive holds it as the layout does). A provenance records its
    // own run (when, on which builder), so each side's differs: here, none.
    let build = |side: &Path, run: &dyn Fn(&[&str]) -> Run| {
        let layout = side.join("layout");
        let archive = side.join("image.tar");
        let args = [
            "build",
            fib,
            "-O",
            "aggressive",
            "--oci-layout",
            path(&layout),
            "--output",
            path(&archive),
            "--no-provenance",
            "--json",
            "-",
        ];
        run(&args).ok().metrics()
    };
    let here = build(&local, &|a| both.local(a));
    let there = build(&remote, &|a| both.remote(a));
    assert_eq!(here["image"]["digest"], there["image"]["digest"]);
    assert_eq!(
        files(&local.join("layout")),
        files(&remote.join("layout")),
        "the layouts differ"
    );
    assert_eq!(
        digest(&std::fs::read(local.join("image.tar")).unwrap()),
        digest(&std::fs::read(remote.join("image.tar")).unwrap()),
        "the archives differ"
    );
    assert_eq!(
        here["outputs"],
        there["outputs"].clone().tap_paths(&remote, &local)
    );
    // The record is the local one, plus where it ran.
    assert!(here.get("server").is_none());
    assert_eq!(there["server"]["url"], both.server.url.as_str());
    assert!(there["server"]["build_id"]
        .as_str()
        .unwrap()
        .starts_with('b'));
    assert!(there["server"]["worker"].is_string(), "{there:#}");
    // And the summary says so, where the local one says nothing of a server.
    let summary = both.remote(&["build", fib, "-O", "aggressive"]).ok().stdout;
    let ran = "  server    build b";
    assert!(
        summary.contains(ran) && summary.contains(&both.server.url),
        "{summary}"
    );
    assert!(!both
        .local(&["build", fib, "-O", "aggressive"])
        .ok()
        .stdout
        .contains(ran));
    // What third parties read: skopeo finds the image and its SBOM referrer is a blob there.
    let (summary, _) = skopeo_inspect(&remote.join("layout"), "aggressive");
    assert_eq!(summary["Digest"], there["image"]["digest"]);

    // A layout that holds another image: the new one is added beside it, both ways.
    for (side, run) in [
        (
            &local,
            &(|a: &[&str]| both.local(a)) as &dyn Fn(&[&str]) -> Run,
        ),
        (&remote, &|a: &[&str]| both.remote(a)),
    ] {
        let layout = side.join("layout");
        let args = ["build", fib, "-O", "none", "--no-provenance"];
        run(&[&args[..], &["--oci-layout", path(&layout)]].concat()).ok();
    }
    let index = |side: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(side.join("layout/index.json")).unwrap()).unwrap()
    };
    let names: Vec<String> = index(&remote)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].to_string())
        .collect();
    assert_eq!(names, ["\"aggressive\"", "\"none\""], "{names:?}");
    assert_eq!(index(&local), index(&remote));
    assert_eq!(files(&local.join("layout")), files(&remote.join("layout")));
}

/// What the record's outputs name: a path under one side, read as the same path under the
/// other.
trait TapPaths {
    fn tap_paths(self, from: &Path, to: &Path) -> Self;
}

impl TapPaths for serde_json::Value {
    fn tap_paths(self, from: &Path, to: &Path) -> Self {
        let text = self.to_string().replace(path(from), path(to));
        serde_json::from_str(&text).unwrap()
    }
}

#[test]
fn refusals_and_exit_codes_are_the_local_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (both, _leftovers) = Both::start(dir.path());
    let fib = example("fibonacci.rs");
    let fib = path(&fib);

    // An ordinary directory as the layout: refused before anything is sent, untouched.
    let precious = dir.path().join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "mine").unwrap();
    let args = [
        "build",
        fib,
        "-O",
        "aggressive",
        "--oci-layout",
        path(&precious),
    ];
    let here = both.local(&args);
    let there = both.remote(&args);
    assert_eq!(here.code, Some(2), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    let refusal = "it exists and is not an OCI layout";
    assert!(here.stderr.contains(refusal), "{}", here.stderr);
    assert!(there.stderr.contains(refusal), "{}", there.stderr);
    assert_eq!(
        std::fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(entries(&precious), ["notes.txt"]);
    assert_eq!(both.builds(), 0, "nothing was sent to the server");

    // An output over the source.
    let args = ["build", fib, "--output", fib];
    let (here, there) = (both.local(&args), both.remote(&args));
    assert_eq!(here.code, Some(2), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    assert!(
        there.stderr.contains("it is the source"),
        "{}",
        there.stderr
    );

    // A bad value found before the build: the same line, exit 2.
    let args = ["build", fib, "--user", "root"];
    let (here, there) = (both.local(&args), both.remote(&args));
    assert_eq!(here.code, Some(2), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    let first = |run: &Run| {
        run.stderr
            .lines()
            .find(|l| l.contains("error"))
            .map(str::to_string)
    };
    assert_eq!(first(&there), first(&here));

    // A builder limit is the server's to set: refused here, before anything is sent.
    let sent = both.builds();
    let there = both.remote(&["build", fib, "--build-memory", "1GiB"]);
    assert_eq!(there.code, Some(2), "{}", there.stderr);
    assert!(there.stderr.contains("its own limits"), "{}", there.stderr);
    assert_eq!(both.builds(), sent);
    // So is the provenance's key (`serve --sign-key`).
    let there = both.remote(&["build", fib, "--sign-key", fib]);
    assert_eq!(there.code, Some(2), "{}", there.stderr);
    assert!(there.stderr.contains("its own key"), "{}", there.stderr);
    assert_eq!(both.builds(), sent);

    // A base only the builder's engine can look up: found missing on the server, reported
    // here as a local build reports it, exit 2.
    let archive = dir.path().join("missing-base.tar");
    let args = [
        "build",
        fib,
        "--base",
        "ruchy-image-test/does-not-exist:1.0",
        "--output",
        path(&archive),
    ];
    let (here, there) = (both.local(&args), both.remote(&args));
    assert_eq!(here.code, Some(2), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    let line = |run: &Run| {
        run.stderr
            .lines()
            .find(|l| l.contains("does-not-exist"))
            .map(str::to_string)
    };
    assert!(line(&here).is_some(), "{}", here.stderr);
    assert_eq!(line(&there), line(&here), "{}", there.stderr);
    assert!(!archive.exists());

    // Over a size budget: the gate is the server's, before it publishes anything; both ways
    // exit 1 with the measured record and write no layout.
    let over = |side: &str| {
        let layout = dir.path().join(side).join("over");
        let args = [
            "build",
            fib,
            "-O",
            "aggressive",
            "--max-binary-size",
            "1KB",
            "--oci-layout",
            path(&layout),
            "--json",
            "-",
        ];
        let run = match side {
            "local" => both.local(&args),
            _ => both.remote(&args),
        };
        assert!(!layout.exists(), "{side}: {}", run.stderr);
        run
    };
    let (here, there) = (over("local"), over("remote"));
    assert_eq!(here.code, Some(1), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    assert_eq!(
        here.metrics()["over_budget"],
        there.metrics()["over_budget"]
    );
    assert_eq!(
        here.metrics()["binary_size"],
        there.metrics()["binary_size"]
    );

    // --tag with the engine that DOCKER_HOST names not answering: a local build fails, and so
    // does the same build on the server, before anything is sent; nothing is written.
    let sent = both.builds();
    let archive = dir.path().join("no-engine.tar");
    let args = [
        "build",
        fib,
        "--tag",
        "parity:1",
        "--output",
        path(&archive),
    ];
    let nowhere = |cmd: &mut std::process::Command| {
        cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    };
    let here = ruchy_image_with(args, nowhere);
    let there = both.remote_with(&args, nowhere);
    assert_ne!(here.code, Some(0), "{}", here.stderr);
    assert_eq!(there.code, here.code, "{}", there.stderr);
    assert!(!archive.exists());
    assert_eq!(both.builds(), sent, "nothing was sent to the server");
}

/// `--push` pushes from here, as a local build does: the same manifest in the registry, its
/// SBOM referrer under the fallback tag, and nothing sent with the server's credentials.
#[test]
fn a_push_is_made_from_here_as_a_local_build_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (both, _leftovers) = Both::start(dir.path());
    let registry = registries::start_registry("127.0.0.1", "127.0.0.1", None);
    let fib = example("fibonacci.rs");
    let fib = path(&fib);
    let push = |side: &str, run: &dyn Fn(&[&str]) -> Run| {
        let reference = format!("{}/parity/{side}:1", registry.address);
        let record = run(&[
            "build", fib, "-O", "size", "--push", &reference, "--json", "-",
        ])
        .ok()
        .metrics();
        let inspected = tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{reference}"),
            ],
        )
        .ok();
        (record, digest(inspected.stdout.as_bytes()))
    };
    let (here, local_manifest) = push("local", &|a| both.local(a));
    let (there, remote_manifest) = push("remote", &|a| both.remote(a));
    assert_eq!(
        local_manifest, remote_manifest,
        "the registries hold different manifests"
    );
    assert_eq!(
        format!("sha256:{remote_manifest}"),
        there["image"]["digest"].as_str().unwrap()
    );
    let kinds = |record: &serde_json::Value| -> Vec<String> {
        record["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&here), kinds(&there));
    assert!(kinds(&there).contains(&"referrer".to_string()), "{there:#}");
    // The request the server kept pushes nowhere: the push was this machine's.
    let id = there["server"]["build_id"].as_str().unwrap();
    let kept = curl(&both.server, "GET", &format!("/v1/builds/{id}"), &[], true).json();
    assert!(kept["request"]["outputs"].get("push").is_none(), "{kept:#}");
}

#[test]
fn an_engine_tag_gets_the_image_a_local_build_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (both, _leftovers) = Both::start(dir.path());
    let fib = example("fibonacci.rs");
    let fib = path(&fib);
    let _images = Images(vec!["parity-local:1".into(), "parity-remote:1".into()]);
    let here = both
        .local(&[
            "build",
            fib,
            "-O",
            "size",
            "--tag",
            "parity-local:1",
            "--json",
            "-",
        ])
        .ok()
        .metrics();
    let there = both
        .remote(&[
            "build",
            fib,
            "-O",
            "size",
            "--tag",
            "parity-remote:1",
            "--json",
            "-",
        ])
        .ok()
        .metrics();
    assert_eq!(here["image"]["digest"], there["image"]["digest"]);
    assert_eq!(there["outputs"][0]["kind"], "engine", "{there:#}");
    let id = |tag: &str| {
        tool("docker", &["image", "inspect", "--format", "{{.Id}}", tag])
            .ok()
            .stdout
    };
    assert_eq!(id("parity-local:1"), id("parity-remote:1"));
    let ran = tool("docker", &["run", "--rm", "parity-remote:1"]).ok();
    assert!(ran.stdout.contains("832040"), "{}", ran.stdout);
}
