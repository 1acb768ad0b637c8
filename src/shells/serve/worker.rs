//! The queue's workers: each slot takes the next build from the store (fair between projects,
//! never two of one project at once), unpacks its uploaded context, runs every preset through
//! the library's plan, writes what it says to the build's log, and records the outcome. A
//! build can be cancelled or time out; dropping its future stops cargo and removes its builder
//! container. The heartbeat says this worker is alive, hands the builds of workers that
//! stopped answering back to the queue, and stops local runs of builds taken from it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::store::{BuildError, BuildRecord, Outcome, PresetResult, Status, Store};
use crate::adapters::fsutil::{blocking, hex};
use crate::core::event::{Event, Events};
use crate::core::metrics::Built;
use crate::pipeline::plan::{settings, Plan};

/// What the workers share with the API.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The store.
    pub store: Store,
    /// Wakes idle workers when a build is accepted.
    pub wake: Arc<tokio::sync::Notify>,
    /// The builds running here: what cancels each, and when it was claimed.
    pub running: Arc<Mutex<HashMap<String, Running>>>,
    /// Stops workers taking new builds (a draining shutdown).
    pub draining: CancellationToken,
    /// The longest a build may run.
    pub timeout: Duration,
    /// Where the service's own messages go.
    pub events: Events,
    /// The builder image every build compiles in (resolved once, at start); none builds
    /// with the local toolchain.
    pub builder_image: Option<String>,
    /// The key every build's provenance is signed with.
    pub sign_key: Option<std::path::PathBuf>,
    /// Where each build's code runs in its builder containers.
    pub sandbox: crate::pipeline::compile::Sandbox,
    /// Most bytes an uploaded context may unpack to.
    pub max_unpacked: u64,
    /// The registry every build's images are pushed to (else they stay in the data dir).
    pub artifacts: Option<Arc<super::artifacts::Artifacts>>,
    /// What reading one layer of a build's base may cost here.
    pub base_limits: crate::pipeline::base::Limits,
}

/// A build running on this worker.
#[derive(Debug, Clone)]
pub struct Running {
    /// Stops it.
    pub cancel: CancellationToken,
    /// When this worker claimed it.
    pub claimed: std::time::Instant,
}

/// Every `interval`: says this worker is alive, re-queues the builds of workers silent for
/// longer than `stale_after`, and stops local runs the database no longer gives this worker.
pub async fn heartbeat(queue: Queue, interval: Duration, stale_after: Duration) {
    loop {
        let asked = std::time::Instant::now();
        match queue.store.heartbeat().await {
            Ok(mine) => {
                let running = queue.running.lock().expect("running builds");
                for (id, run) in running.iter() {
                    // Claimed after the question was asked: the answer may not know it yet.
                    if run.claimed < asked && !mine.contains(id) && !run.cancel.is_cancelled() {
                        queue.events.emit(Event::Warning {
                            message: format!(
                                "build {id} is no longer this worker's (a missed heartbeat gave it to another, or it was cancelled): stopping it here"
                            ),
                        });
                        run.cancel.cancel();
                    }
                }
            }
            Err(e) => queue.events.emit(Event::Warning {
                message: format!("cannot record this worker's heartbeat: {e}"),
            }),
        }
        let cutoff = humantime::format_rfc3339_millis(std::time::SystemTime::now() - stale_after)
            .to_string();
        match queue.store.requeue_stale(&cutoff).await {
            Ok((requeued, failed)) if requeued + failed > 0 => {
                queue.events.emit(Event::Warning {
                    message: format!(
                        "a worker stopped answering: {requeued} of its build(s) queued again, {failed} failed (their second interruption)"
                    ),
                });
                queue.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => queue.events.emit(Event::Warning {
                message: format!("cannot re-queue the builds of silent workers: {e}"),
            }),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = queue.draining.cancelled() => return,
        }
    }
}

/// The build's log, and what its events tell about its stages. Lines go to the database
/// through [`keep_log`], so every worker's API reads it while the build runs.
struct Log {
    lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    stages: BTreeMap<String, u64>,
    stage: Option<String>,
}

/// One line of text for an event, as the CLI's verbose output says it.
fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::StageStarted { .. } => return None,
        Event::StageFinished { stage, time_ms } => format!("· {stage} took {time_ms} ms"),
        Event::Compiling {
            bin,
            flags,
            builder,
            ..
        } => format!(
            "→ Compiling {bin} ({} preset, {builder} builder, {}): {}",
            flags.preset,
            flags.target,
            flags.listing().join(" ")
        ),
        Event::CompilerOutput { line } => line.clone(),
        Event::Compiled {
            size,
            time_ms,
            fresh,
            ..
        } => format!(
            "✓ Compiled: {size} bytes in {time_ms} ms{}",
            if *fresh { " (nothing to rebuild)" } else { "" }
        ),
        Event::Assembling { reference } => format!("→ Assembling {reference}"),
        Event::Writing { .. } | Event::Written { .. } | Event::Upload { .. } => return None,
        Event::Pull { image, status } => format!("ℹ {image}: {status}"),
        Event::Step { message } => format!("→ {message}"),
        Event::Note { message } => format!("ℹ {message}"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::BaseStarted { base } => format!("→ base {base}"),
        Event::PlatformStarted { platform } => format!("→ platform {platform}"),
        Event::PresetStarted {
            index,
            total,
            preset,
        } => format!("→ [{index}/{total}] {preset}"),
        Event::PresetFailed { preset, error } => format!("✗ {preset}: {error}"),
    })
}

impl Log {
    /// A log for attempt `attempt` of build `id`, and the task that keeps it.
    fn open(queue: &Queue, id: &str, attempt: i64) -> (Log, tokio::task::JoinHandle<()>) {
        let (lines, received) = tokio::sync::mpsc::unbounded_channel();
        let keeper = tokio::spawn(keep_log(queue.clone(), id.to_string(), attempt, received));
        let log = Log {
            lines: Some(lines),
            stages: BTreeMap::new(),
            stage: None,
        };
        (log, keeper)
    }

    fn write(&mut self, text: &str) {
        if let Some(lines) = &self.lines {
            // Only fails once the keeper is gone, when the build has ended.
            let _ = lines.send(format!("{text}\n"));
        }
    }

    /// No more lines: the keeper writes what it has and ends.
    fn close(&mut self) {
        self.lines = None;
    }

    fn record(&mut self, event: &Event) {
        match event {
            Event::StageStarted { stage } => self.stage = Some(stage.to_string()),
            Event::StageFinished { stage, time_ms } => {
                *self.stages.entry(stage.to_string()).or_default() += time_ms;
            }
            _ => {}
        }
        if let Some(text) = line(event) {
            self.write(&text);
        }
    }
}

/// Writes a build's log lines to the database as they come, many at once when they come
/// faster than one insert (a piece is at most 64 KiB of lines). A piece that cannot be
/// written costs that piece of the log, not the build: it is said in the service's log.
async fn keep_log(
    queue: Queue,
    id: String,
    attempt: i64,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut seq = 0i64;
    while let Some(first) = lines.recv().await {
        let mut body = first;
        while body.len() < 64 << 10 {
            match lines.try_recv() {
                Ok(line) => body.push_str(&line),
                Err(_) => break,
            }
        }
        if let Err(e) = queue.store.append_log(&id, attempt, seq, &body).await {
            queue.events.emit(Event::Warning {
                message: format!(
                    "build {id}: {} line(s) of its log are lost: {e}",
                    body.lines().count()
                ),
            });
        }
        seq += 1;
    }
}

/// Runs builds until the queue drains.
pub async fn work(queue: Queue) {
    loop {
        if queue.draining.is_cancelled() {
            return;
        }
        let claimed = match queue.store.claim().await {
            Ok(claimed) => claimed,
            Err(e) => {
                queue.events.emit(Event::Warning {
                    message: format!("cannot take a build from the queue: {e}"),
                });
                None
            }
        };
        let Some(build) = claimed else {
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = queue.draining.cancelled() => return,
            }
            continue;
        };
        run_one(&queue, build).await;
        // Another build of the same project may be waiting for this one.
        queue.wake.notify_one();
    }
}

/// Runs one claimed build to its end and records it.
async fn run_one(queue: &Queue, build: BuildRecord) {
    let id = build.id.clone();
    let token = CancellationToken::new();
    queue.running.lock().expect("running builds").insert(
        id.clone(),
        Running {
            cancel: token.clone(),
            claimed: std::time::Instant::now(),
        },
    );
    let attempt = build.attempts;
    let (log, keeper) = Log::open(queue, &id, attempt);
    let log = Arc::new(Mutex::new(log));
    log.lock().expect("log").write(&format!(
        "→ build {id} started (attempt {attempt}) on worker {}",
        queue.store.worker()
    ));

    let partial = Arc::new(Mutex::new(Outcome::default()));
    let status = tokio::select! {
        status = run_presets(queue, &build, log.clone(), partial.clone()) => status,
        _ = token.cancelled() => Status::Cancelled,
        _ = tokio::time::sleep(queue.timeout) => Status::Timeout,
    };
    let mut outcome = std::mem::take(&mut *partial.lock().expect("outcome"));
    let note = match status {
        Status::Cancelled => Some("cancelled".to_string()),
        Status::Timeout => Some(format!(
            "timed out after {}",
            humantime::format_duration(queue.timeout)
        )),
        _ => None,
    };
    {
        let mut log = log.lock().expect("log");
        outcome.stages = log.stages.clone();
        if let Some(note) = &note {
            outcome.error = Some(BuildError {
                message: note.clone(),
                stage: log.stage.clone(),
                usage: false,
            });
        }
        log.write(&format!("→ build {id} ended: {}", status.name()));
        log.close();
    }
    // The whole log is kept before the build reads as ended: a follower stops at its end.
    let _ = keeper.await;
    finish(queue, &build, status, &outcome).await;
}

/// The outcome as the record keeps it: errors name paths in the build's context (`.`), not
/// where this server keeps it.
fn scrubbed(queue: &Queue, id: &str, outcome: &Outcome) -> Outcome {
    let workspace = queue.store.workspace_dir(id).display().to_string();
    let data = queue.store.dir().display().to_string();
    let scrub = |text: &str| text.replace(&workspace, ".").replace(&data, "<data dir>");
    let mut outcome = outcome.clone();
    if let Some(error) = &mut outcome.error {
        error.message = scrub(&error.message);
    }
    for result in &mut outcome.results {
        let error = match result {
            PresetResult::Failed { error, .. } => Some(error),
            PresetResult::Built(Built::Image(record)) => record.error.as_mut(),
            PresetResult::Built(Built::Index(_)) => None,
        };
        if let Some(error) = error {
            *error = scrub(error);
        }
    }
    outcome
}

async fn finish(queue: &Queue, build: &BuildRecord, status: Status, outcome: &Outcome) {
    let id = &build.id;
    let outcome = &scrubbed(queue, id, outcome);
    // Out of the running set first: the heartbeat must not take a build that is ending (and
    // so no longer the database's `working`) for one taken from this worker.
    queue.running.lock().expect("running builds").remove(id);
    match queue.store.finish(build, status, outcome).await {
        Ok(true) => {}
        Ok(false) => queue.events.emit(Event::Warning {
            message: format!(
                "build {id} ended here ({}) but was no longer this worker's: its record is the other worker's",
                status.name()
            ),
        }),
        Err(e) => queue.events.emit(Event::Warning {
            message: format!("cannot record the end of build {id}: {e}"),
        }),
    }
    // The source is not needed any more: the results and images are kept. Both directories
    // are this build's own (named by its ID), as is the project generated for a single file.
    let workspace = queue.store.workspace_dir(id);
    if let Ok(source) = std::fs::canonicalize(workspace.join(&build.source_path)) {
        if source.is_file() {
            let cache = queue.store.cache_dir();
            let _ = std::fs::remove_dir_all(crate::pipeline::source::generated_dir(
                &cache, &source, false,
            ));
        }
    }
    // And the copy of the context it was unpacked from, if the build ended while unpacking.
    let mut copy = workspace.as_os_str().to_owned();
    copy.push(".source");
    let _ = std::fs::remove_file(copy);
    let _ = std::fs::remove_dir_all(workspace);
    let _ = std::fs::remove_dir_all(queue.store.source_dir(id));
}

/// Builds every preset in order (a failed one is recorded and the others still run),
/// updating `outcome` as it goes so a cancelled build keeps what it finished.
async fn run_presets(
    queue: &Queue,
    build: &BuildRecord,
    log: Arc<Mutex<Log>>,
    outcome: Arc<Mutex<Outcome>>,
) -> Status {
    let store = &queue.store;
    let fail = |message: String, stage: Option<String>, usage: bool| {
        let mut outcome = outcome.lock().expect("outcome");
        outcome.error.get_or_insert(BuildError {
            message,
            stage,
            usage,
        });
    };
    let asked = &build.request;
    let presets = asked.presets.clone();
    // Each build compiles in a directory of its own; compiled dependencies are shared through
    // the builder's target volume, and a no-change rebuild is found by the context's digest.
    let workspace = store.workspace_dir(&build.id);
    if let Err(e) = unpack_source(queue, build, &workspace).await {
        fail(e, Some("prepare".into()), false);
        return Status::Failure;
    }
    let source = workspace.join(&build.source_path);
    let events = {
        let log = log.clone();
        Events::new(move |event| log.lock().expect("log").record(&event))
    };
    // The upload's settings that are the asking machine's, which resolving set aside.
    for (name, from) in &asked.settings {
        if let Some(at) = from.strip_suffix(&format!(" ({})", settings::IGNORED)) {
            events.note(format!(
                "the setting `{name}` ({at}) is the asking machine's (a local path or output, the builder, the command line): the service ignores it"
            ));
        }
    }
    let mut status = Status::Success;
    for (index, preset) in presets.iter().enumerate() {
        events.emit(Event::PresetStarted {
            index: index + 1,
            total: presets.len(),
            preset: *preset,
        });
        let archive = store.dir().join("blobs").join(format!(
            "{}.{}.{preset}.tar",
            crate::adapters::cleanup::temp_prefix("image"),
            build.id
        ));
        let job = PresetBuild {
            queue,
            id: &build.id,
            asked,
            source: &source,
            preset: *preset,
            several: presets.len() > 1,
            archive: &archive,
        };
        let built = job.run(&events).await;
        match built {
            // Measured, but a gate (a size budget) held it back: no image, the build fails.
            Ok(record) if record.gate_error().is_some() => {
                let error = record.gate_error().unwrap_or_default().to_string();
                events.emit(Event::PresetFailed {
                    preset: *preset,
                    error: error.clone(),
                });
                outcome
                    .lock()
                    .expect("outcome")
                    .results
                    .push(PresetResult::Built(record));
                fail(error, Some("publish".into()), false);
                status = Status::Failure;
            }
            Ok(mut record) if queue.artifacts.is_some() => {
                match pushed_to_artifacts(queue, &mut record) {
                    Some(location) => {
                        let mut outcome = outcome.lock().expect("outcome");
                        outcome.images.insert(preset.name().to_string(), location);
                        outcome.results.push(PresetResult::Built(record));
                    }
                    None => {
                        fail(
                            "the image was built but is not in the artifact registry".into(),
                            Some("publish".into()),
                            false,
                        );
                        status = Status::Failure;
                    }
                }
            }
            Ok(record) => match keep_blob(store, &archive).await {
                Ok(digest) => {
                    let mut outcome = outcome.lock().expect("outcome");
                    outcome.images.insert(preset.name().to_string(), digest);
                    outcome.results.push(PresetResult::Built(record));
                }
                Err(e) => {
                    fail(e.to_string(), Some("publish".into()), false);
                    status = Status::Failure;
                }
            },
            Err(e) => {
                let _ = std::fs::remove_file(&archive);
                let stage = log.lock().expect("log").stage.clone();
                events.emit(Event::PresetFailed {
                    preset: *preset,
                    error: e.to_string(),
                });
                outcome
                    .lock()
                    .expect("outcome")
                    .results
                    .push(PresetResult::Failed {
                        preset: *preset,
                        error: e.to_string(),
                    });
                fail(e.to_string(), stage, e.is_usage());
                status = Status::Failure;
            }
        }
    }
    status
}

/// One preset of a build, and what building it needs.
struct PresetBuild<'a> {
    queue: &'a Queue,
    /// The build's ID.
    id: &'a str,
    /// The request as the build was accepted with.
    asked: &'a crate::pipeline::plan::Request,
    source: &'a Path,
    preset: crate::core::preset::Preset,
    /// One of several presets (each pushes to a tag of its own).
    several: bool,
    /// Where its image archive goes.
    archive: &'a Path,
}

impl PresetBuild<'_> {
    /// Builds it through the library's plan, in the service's builder image (or with the
    /// local toolchain); the result record.
    async fn run(&self, events: &Events) -> crate::Result<Built> {
        let (store, preset) = (&self.queue.store, self.preset);
        // What the build asked for, with where this worker keeps things: its source, cache
        // and archive. Nothing goes into the engine and nothing is timed.
        let mut request = self.asked.clone();
        request.source.path = self.source.to_path_buf();
        request.source.cache_dir = store.cache_dir();
        request.base_limits = self.queue.base_limits;
        request.presets = vec![preset];
        request.outputs.load = crate::pipeline::plan::Load::Never;
        request.cold_start_runs = 0;
        request.outputs.sign_key = self.queue.sign_key.clone();
        // Several presets, one tag each: REF:TAG-PRESET (REF:PRESET without a tag).
        if self.several {
            request.outputs.push = request
                .outputs
                .push
                .iter()
                .map(
                    |r| match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                        Some((name, tag)) => format!("{name}:{tag}-{preset}"),
                        None => format!("{r}:{preset}"),
                    },
                )
                .collect();
        }
        // The image goes to the artifact registry first, so the build's own pushes to the
        // same registry mount its blobs rather than upload them again; or to the data dir.
        match &self.queue.artifacts {
            Some(artifacts) => {
                let reference = artifacts.reference_for(self.id, preset);
                request.outputs.push.insert(0, reference);
                request.registry = artifacts.registry.clone();
            }
            None => request.outputs.archive = Some(self.archive.to_path_buf()),
        }
        if let Some(image) = self.queue.builder_image.as_deref() {
            request.builder = crate::pipeline::plan::BuilderChoice::Docker;
            request.builder_image = Some(image.to_string());
            request.sandbox = self.queue.sandbox.clone();
        } else {
            request.builder = crate::pipeline::plan::BuilderChoice::Local;
        }
        let plan = Plan::resolve(request, events).await?;
        match plan.is_multi_platform() {
            true => plan
                .build_index(events)
                .await
                .map(|r| Built::Index(Box::new(r))),
            false => plan.build(events).await.map(|r| Built::Image(Box::new(r))),
        }
    }
}

/// Where the artifact registry keeps the image of `record` (`REPO@digest`), taken out of the
/// record's outputs (the client asked for the others; this one is the service's own).
fn pushed_to_artifacts(queue: &Queue, record: &mut Built) -> Option<String> {
    let artifacts = queue.artifacts.as_ref()?;
    let outputs = match record {
        Built::Image(one) => &mut one.outputs,
        Built::Index(index) => &mut index.outputs,
    };
    // The first push is the artifact registry's (see PresetBuild::run).
    let at = outputs.iter().position(|o| o.kind == "registry")?;
    let pushed = outputs.remove(at);
    let digest = pushed.location.rsplit_once('@')?.1.to_string();
    let mine = format!("{}@", artifacts.repository);
    outputs.retain(|o| !(o.kind == "referrer" && o.location.starts_with(&mine)));
    Some(format!("{}@{digest}", artifacts.repository))
}

/// Puts the build's context in its workspace, unpacked from the copy the database keeps
/// (whichever worker took the upload).
async fn unpack_source(
    queue: &Queue,
    build: &BuildRecord,
    workspace: &Path,
) -> std::result::Result<(), String> {
    let store = &queue.store;
    // The context comes out of the database a chunk at a time into a file beside the
    // workspace (this worker's own, by build ID), and is unpacked from there.
    let mut body = workspace.as_os_str().to_owned();
    body.push(".source");
    let body = std::path::PathBuf::from(body);
    if let Some(parent) = workspace.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let kept = store
        .source_to(&build.source_digest, &body)
        .await
        .map_err(|e| e.to_string());
    if kept != Ok(true) {
        let _ = std::fs::remove_file(&body);
        return Err(kept
            .err()
            .unwrap_or_else(|| format!("the build's source {} is gone", build.source_digest)));
    }
    let (workspace, max) = (workspace.to_path_buf(), queue.max_unpacked);
    blocking(move || {
        // What an interrupted attempt of this build left.
        let _ = std::fs::remove_dir_all(&workspace);
        let unpacked = std::fs::File::open(&body)
            .map_err(|e| format!("cannot read the build's source: {e}"))
            .and_then(|file| {
                super::upload::unpack(std::io::BufReader::new(file), &workspace, max)
                    .map(|_| ())
                    .map_err(|e| format!("cannot unpack the build's source: {e}"))
            });
        let _ = std::fs::remove_file(&body);
        unpacked
    })
    .await
}

/// Moves an image archive into the blob store under its digest (where the same image from an
/// earlier build may already be) and returns the digest.
async fn keep_blob(store: &Store, archive: &Path) -> crate::Result<String> {
    let (archive, blobs) = (archive.to_path_buf(), store.dir().join("blobs/sha256"));
    blocking(move || {
        let mut file = std::fs::File::open(&archive)
            .map_err(crate::Error::io(format!("reading {}", archive.display())))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)
            .map_err(crate::Error::io(format!("reading {}", archive.display())))?;
        let digest = hex(&hasher.finalize());
        let blob: PathBuf = blobs.join(&digest);
        if blob.exists() {
            let _ = std::fs::remove_file(&archive);
        } else {
            std::fs::rename(&archive, &blob)
                .map_err(crate::Error::io(format!("storing {}", blob.display())))?;
        }
        Ok(format!("sha256:{digest}"))
    })
    .await
}
