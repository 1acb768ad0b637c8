//! The real orchestration (prepare → compile → check → assemble → publish) in-process, with
//! a stand-in compiler as ko's tests use a fixed builder: no cargo build, no engine. What is
//! checked is what the pipeline promises: events in order, the record, budgets, outputs read
//! back, and nothing half-written when a compile fails or the build is dropped.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ruchy_image::event::{Event, Events};
use ruchy_image::pipeline::compile::{Artifact, Compiler, StdInfo, StdSource};
use ruchy_image::pipeline::source::Project;
use ruchy_image::plan::{EngineChoice, Load, Parts, Plan, Request};
use ruchy_image::preset::{Flags, Preset, StdVariant};

/// A compiler that compiles nothing: it hands over `binary`, fails when told to, and takes
/// `delay` first. It keeps the flags it was asked for.
struct StandIn {
    binary: Vec<u8>,
    fail: bool,
    delay: Duration,
    dir: PathBuf,
    asked: Arc<Mutex<Vec<Flags>>>,
}

#[async_trait::async_trait]
impl Compiler for StandIn {
    fn name(&self) -> &'static str {
        "stand-in"
    }

    async fn host_target(&self) -> ruchy_image::Result<String> {
        Ok("x86_64-unknown-linux-gnu".into())
    }

    async fn can_make(&self, _target: &str, _variant: StdVariant) -> bool {
        true
    }

    async fn compile(
        &self,
        project: &Project,
        flags: &Flags,
        events: &Events,
    ) -> ruchy_image::Result<Artifact> {
        self.asked.lock().unwrap().push(flags.clone());
        events.emit(Event::CompilerOutput {
            line: format!("   Compiling {} (stand-in)", project.package),
        });
        tokio::time::sleep(self.delay).await;
        if self.fail {
            return Err(ruchy_image::Error::InvalidInput {
                what: "program",
                value: project.bin.clone(),
                reason: "the stand-in was told to fail".into(),
            });
        }
        let binary = self
            .dir
            .join(format!("{}-{}", project.bin, flags.profile()));
        std::fs::write(&binary, &self.binary).unwrap();
        Ok(Artifact {
            binary,
            compile_time: Duration::from_millis(7),
            fresh: false,
            std: StdInfo {
                source: StdSource::Toolchain,
                variant: StdVariant::Unwind,
            },
        })
    }
}

/// One test's world: a source, a cache, an output directory, and the stand-in's settings.
struct World {
    dir: tempfile::TempDir,
    fail: bool,
    delay: Duration,
    asked: Arc<Mutex<Vec<Flags>>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.rs"), "fn main() {}\n").unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        World {
            dir,
            fail: false,
            delay: Duration::ZERO,
            asked: Arc::default(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn request(&self, presets: &[Preset]) -> Request {
        let mut request = Request::new(self.dir.path().join("app.rs"));
        request.source.cache_dir = self.dir.path().join("cache");
        request.presets = presets.to_vec();
        request.outputs.load = Load::Never;
        request.outputs.oci_layout = Some(self.out().join("layout"));
        request.outputs.archive = Some(self.out().join("image.tar"));
        request
    }

    async fn plan(&self, request: Request, events: &Events) -> Plan {
        let compiler = StandIn {
            binary: tiny_static_elf(),
            fail: self.fail,
            delay: self.delay,
            dir: self.dir.path().to_path_buf(),
            asked: self.asked.clone(),
        };
        let parts = Parts {
            engine: EngineChoice::Given(None),
            compiler: Some(Box::new(compiler)),
        };
        Plan::resolve_with(request, parts, events).await.unwrap()
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A blob of an OCI layout.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The files of a gzipped layer tar, with their modes, owners and contents.
fn layer_files(gzipped: &[u8]) -> Vec<(String, u32, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gzipped));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let (mode, uid) = (
                entry.header().mode().unwrap(),
                entry.header().uid().unwrap(),
            );
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            (path, mode, uid, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_build_runs_every_stage_in_order_and_writes_a_layout_that_reads_back() {
    let world = World::new();
    let (seen, events) = recorder();
    let plan = world
        .plan(world.request(&[Preset::Aggressive]), &events)
        .await;
    assert_eq!(plan.builder(), "stand-in");
    assert!(plan.engine().is_none());
    let record = plan.build(&events).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(
        stages(&seen),
        [
            "prepare started",
            "prepare finished",
            "compile started",
            "compile finished",
            "assemble started",
            "assemble finished",
            "publish started",
            "publish finished",
        ]
    );
    // The compiler's own output comes between Compiling and Compiled.
    let kinds: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Compiling { .. } => Some("compiling"),
            Event::CompilerOutput { .. } => Some("output"),
            Event::Compiled { .. } => Some("compiled"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["compiling", "output", "compiled"]);

    let elf = tiny_static_elf();
    assert_eq!(record.builder, "stand-in");
    assert_eq!(record.binary_size, elf.len() as u64);
    assert_eq!(record.compile_time_ms, 7);
    assert_eq!(record.optimization_level, Preset::Aggressive);
    assert_eq!(record.image.architecture, "amd64");
    assert!(record.error.is_none() && record.over_budget.is_empty());
    let kinds: Vec<&str> = record.outputs.iter().map(|o| o.kind.as_str()).collect();
    assert!(
        kinds.contains(&"oci-layout") && kinds.contains(&"archive"),
        "{kinds:?}"
    );
    // The stand-in was asked for the preset's flags, for the static target it can make.
    let asked = world.asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].target, "x86_64-unknown-linux-musl");
    assert_eq!(asked[0].profile(), "ruchy-aggressive");

    // The layout, read back: index → manifest → config and the binary's layer.
    let layout = world.out().join("layout");
    let index = json(&layout.join("index.json"));
    let image = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mediaType"] == "application/vnd.oci.image.manifest.v1+json")
        .expect("the image's manifest in the index");
    assert_eq!(
        image["digest"].as_str().unwrap(),
        record.image.digest,
        "{index}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&layout, &record.image.digest)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_ne!(config["config"]["User"], "0", "{config}");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/app");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), record.image.layer_count);
    let files: Vec<_> = layers
        .iter()
        .flat_map(|l| layer_files(&blob(&layout, l["digest"].as_str().unwrap())))
        .collect();
    let (_, mode, uid, bytes) = files
        .iter()
        .find(|(path, ..)| path.trim_start_matches("./") == "usr/local/bin/app")
        .unwrap_or_else(|| {
            panic!(
                "no binary in {:?}",
                files.iter().map(|f| &f.0).collect::<Vec<_>>()
            )
        });
    assert_eq!(bytes, &elf);
    // Owned by root and not writable by the (non-root) runtime user.
    assert_eq!((*uid, mode & 0o022), (0, 0));

    // A third-party reader agrees, where one is installed (the full tier has skopeo).
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok()
    {
        let (summary, _) = skopeo_inspect(&layout, "aggressive");
        assert_eq!(summary["Digest"], record.image.digest.as_str());
    }
}

#[tokio::test]
async fn the_archive_holds_the_same_image() {
    let world = World::new();
    let events = Events::none();
    let plan = world
        .plan(world.request(&[Preset::Balanced]), &events)
        .await;
    let record = plan.build(&events).await.unwrap();

    let file = std::fs::File::open(world.out().join("image.tar")).unwrap();
    let mut archive = tar::Archive::new(file);
    let mut members = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        members.insert(path, bytes);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "app:balanced");
    let config = manifest[0]["Config"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&members[config]).unwrap();
    assert_eq!(config["architecture"], record.image.architecture.as_str());
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), record.image.layer_count);
    assert!(layers
        .iter()
        .all(|l| members.contains_key(l.as_str().unwrap())));
}

#[tokio::test]
async fn the_same_inputs_give_the_same_digest() {
    let (first, second) = (World::new(), World::new());
    let events = Events::none();
    let a = first.plan(first.request(&[Preset::Size]), &events).await;
    let b = second.plan(second.request(&[Preset::Size]), &events).await;
    let (a, b) = (
        a.build(&events).await.unwrap(),
        b.build(&events).await.unwrap(),
    );
    assert_eq!(a.image.digest, b.image.digest);
}

#[tokio::test]
async fn a_failed_compile_publishes_nothing_and_leaves_nothing_behind() {
    let mut world = World::new();
    world.fail = true;
    let (seen, events) = recorder();
    let plan = world
        .plan(world.request(&[Preset::Aggressive]), &events)
        .await;
    let error = plan.build(&events).await.unwrap_err();
    assert!(error.to_string().contains("told to fail"), "{error}");
    assert_eq!(entries(&world.out()), Vec::<String>::new());
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|e| matches!(e, Event::Compiled { .. })));
    assert!(!stages(&seen)
        .iter()
        .any(|s| s.starts_with("assemble") || s.starts_with("publish")));
}

#[tokio::test]
async fn a_build_dropped_mid_compile_leaves_no_partial_output() {
    let mut world = World::new();
    world.delay = Duration::from_secs(30);
    let (seen, events) = recorder();
    let plan = world
        .plan(world.request(&[Preset::Aggressive]), &events)
        .await;
    let cancelled = tokio::time::timeout(Duration::from_millis(300), plan.build(&events)).await;
    assert!(cancelled.is_err(), "the build should still be compiling");
    assert_eq!(
        world.asked.lock().unwrap().len(),
        1,
        "the compile had started"
    );
    assert_eq!(entries(&world.out()), Vec::<String>::new());
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Compiled { .. })));
}

#[tokio::test]
async fn an_image_over_budget_is_measured_and_published_nowhere() {
    let world = World::new();
    let mut request = world.request(&[Preset::Aggressive]);
    request.budgets = serde_json::from_value(serde_json::json!({"max_image": "100B"})).unwrap();
    let (seen, events) = recorder();
    let record = world
        .plan(request, &events)
        .await
        .build(&events)
        .await
        .unwrap();
    assert_eq!(record.over_budget.len(), 1, "{:?}", record.over_budget);
    assert!(record.image.compressed_size > 100);
    assert!(record
        .error
        .as_deref()
        .unwrap()
        .contains("nothing was published"));
    assert!(record.outputs.is_empty());
    assert_eq!(entries(&world.out()), Vec::<String>::new());
    assert!(!stages(&seen.lock().unwrap()).contains(&"publish started".to_string()));
}

#[tokio::test]
async fn a_comparison_compiles_each_preset_and_publishes_each_under_its_own_tag() {
    let world = World::new();
    let mut request = world.request(&[Preset::Balanced, Preset::Size]);
    request.outputs.archive = None;
    let events = Events::none();
    let plan = world.plan(request, &events).await;
    let comparisons = plan.compare(&events).await.unwrap();
    assert_eq!(comparisons.len(), 1);
    let profiles: Vec<String> = world
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(Flags::profile)
        .collect();
    assert_eq!(profiles, ["ruchy-balanced", "ruchy-size"]);
    let index = json(&world.out().join("layout/index.json"));
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert!(
        names.contains(&"balanced") && names.contains(&"size"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_plan_given_no_engine_refuses_a_request_that_loads() {
    let world = World::new();
    let mut request = world.request(&[Preset::Aggressive]);
    request.outputs.load = Load::Always;
    let parts = Parts {
        engine: EngineChoice::Given(None),
        compiler: None,
    };
    let error = Plan::resolve_with(request, parts, &Events::none())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("given no engine"), "{error}");
}

#[tokio::test]
async fn resolving_removes_nothing_and_the_run_sweeps_what_dead_runs_left() {
    let world = World::new();
    // A temp layout of a run that died: its owner (a pid no process has) is gone.
    let stale = world.out().join(".ruchy-image.4194303.1.layout.stale");
    std::fs::create_dir(&stale).unwrap();
    let events = Events::none();
    let plan = world
        .plan(world.request(&[Preset::Aggressive]), &events)
        .await;
    assert!(stale.exists(), "resolving a plan removed a file");
    plan.build(&events).await.unwrap();
    assert!(!stale.exists(), "the run left the dead run's temp layout");
}
