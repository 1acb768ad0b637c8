//! The queue's workers: each takes the next build from the store (fair between projects,
//! never two of one project at once), runs every preset through the library's plan, writes
//! what it says to the build's log, and records the outcome. A build can be cancelled or time
//! out; dropping its future stops cargo and removes its builder container.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::options::Options;
use super::store::{BuildError, BuildRecord, Outcome, Status, Store};
use crate::event::{Event, Events};
use crate::fsutil::{blocking, hex};
use crate::plan::Plan;

/// What the workers share with the API.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The store.
    pub store: Store,
    /// Wakes idle workers when a build is accepted.
    pub wake: Arc<tokio::sync::Notify>,
    /// Cancels the build running under an ID.
    pub running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Stops workers taking new builds (a draining shutdown).
    pub draining: CancellationToken,
    /// The longest a build may run.
    pub timeout: Duration,
    /// Where the service's own messages go.
    pub events: Events,
    /// The builder image every build compiles in (resolved once, at start); none builds
    /// with the local toolchain.
    pub builder_image: Option<String>,
}

/// The build's log, and what its events tell about its stages.
struct Log {
    file: std::fs::File,
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
        Event::Writing { .. } | Event::Written { .. } => return None,
        Event::Pull { image, status } => format!("ℹ {image}: {status}"),
        Event::Step { message } => format!("→ {message}"),
        Event::Note { message } => format!("ℹ {message}"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::BaseStarted { base } => format!("→ base {base}"),
        Event::PresetStarted {
            index,
            total,
            preset,
        } => format!("→ [{index}/{total}] {preset}"),
        Event::PresetFailed { preset, error } => format!("✗ {preset}: {error}"),
    })
}

impl Log {
    fn open(path: &Path) -> std::io::Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Log {
            file,
            stages: BTreeMap::new(),
            stage: None,
        })
    }

    fn write(&mut self, text: &str) {
        // A log that cannot be written costs the log, not the build.
        let _ = writeln!(self.file, "{text}");
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
    queue
        .running
        .lock()
        .expect("running builds")
        .insert(id.clone(), token.clone());
    let log = match Log::open(&queue.store.log_path(&id)) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(e) => {
            let outcome = Outcome {
                error: Some(BuildError {
                    message: format!("cannot write the build log: {e}"),
                    stage: None,
                }),
                ..Outcome::default()
            };
            finish(queue, &id, Status::Failure, &outcome).await;
            return;
        }
    };
    let attempt = build.attempts;
    log.lock()
        .expect("log")
        .write(&format!("→ build {id} started (attempt {attempt})"));

    let partial = Arc::new(Mutex::new(Outcome::default()));
    let status = tokio::select! {
        status = run_presets(&queue.store, queue.builder_image.as_deref(), &build, log.clone(), partial.clone()) => status,
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
        outcome.stages = serde_json::to_value(&log.stages).unwrap_or_default();
        if let Some(note) = &note {
            outcome.error = Some(BuildError {
                message: note.clone(),
                stage: log.stage.clone(),
            });
        }
        log.write(&format!("→ build {id} ended: {}", status.name()));
    }
    finish(queue, &id, status, &outcome).await;
}

async fn finish(queue: &Queue, id: &str, status: Status, outcome: &Outcome) {
    if let Err(e) = queue.store.finish(id, status, outcome).await {
        queue.events.emit(Event::Warning {
            message: format!("cannot record the end of build {id}: {e}"),
        });
    }
    queue.running.lock().expect("running builds").remove(id);
    // The source is not needed any more: the results and images are kept.
    let _ = std::fs::remove_dir_all(queue.store.source_dir(id));
}

/// Builds every preset in order (a failed one is recorded and the others still run),
/// updating `outcome` as it goes so a cancelled build keeps what it finished.
async fn run_presets(
    store: &Store,
    builder_image: Option<&str>,
    build: &BuildRecord,
    log: Arc<Mutex<Log>>,
    outcome: Arc<Mutex<Outcome>>,
) -> Status {
    let fail = |message: String, stage: Option<String>| {
        let mut outcome = outcome.lock().expect("outcome");
        outcome.error.get_or_insert(BuildError { message, stage });
    };
    let options: Options = match serde_json::from_value(build.options.clone()) {
        Ok(options) => options,
        Err(e) => {
            fail(format!("the stored options cannot be read: {e}"), None);
            return Status::Failure;
        }
    };
    let presets = match options.presets() {
        Ok(presets) => presets,
        Err(e) => {
            fail(e, None);
            return Status::Failure;
        }
    };
    // Builds of one project never run at once, so its sources go to one place: the target
    // volume (keyed by that place) is the project's, shared by its builds.
    let workspace = store.workspace_dir(&build.project);
    let moved = {
        let (from, to) = (store.source_dir(&build.id), workspace.clone());
        blocking(move || {
            // A build run again after a crash finds its source already moved.
            if !from.exists() && to.exists() {
                return Ok(());
            }
            if to.exists() {
                std::fs::remove_dir_all(&to)?;
            }
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&from, &to)
        })
        .await
    };
    if let Err(e) = moved {
        fail(format!("cannot move the source into place: {e}"), None);
        return Status::Failure;
    }
    let source = workspace.join(&build.source_path);
    let events = {
        let log = log.clone();
        Events::new(move |event| log.lock().expect("log").record(&event))
    };
    let mut status = Status::Success;
    for (index, preset) in presets.iter().enumerate() {
        events.emit(Event::PresetStarted {
            index: index + 1,
            total: presets.len(),
            preset: *preset,
        });
        let archive = store.dir().join("blobs").join(format!(
            "{}.{}.{preset}.tar",
            crate::cleanup::temp_prefix("image"),
            build.id
        ));
        let built = async {
            let mut request = options
                .request(&source, &store.cache_dir())
                .map_err(|reason| crate::Error::InvalidInput {
                    what: "options",
                    value: build.options.to_string(),
                    reason,
                })?;
            request.presets = vec![*preset];
            request.outputs.archive = Some(archive.clone());
            // Several presets, one tag each: REF:TAG-PRESET (REF:PRESET without a tag).
            if presets.len() > 1 {
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
            if let Some(image) = builder_image {
                request.builder = crate::plan::BuilderChoice::Docker;
                request.builder_image = Some(image.to_string());
            } else {
                request.builder = crate::plan::BuilderChoice::Local;
            }
            let plan = Plan::resolve(request, &events).await?;
            plan.build(&events).await
        }
        .await;
        match built {
            Ok(record) => match keep_blob(store, &archive).await {
                Ok(digest) => {
                    let mut outcome = outcome.lock().expect("outcome");
                    outcome.images.insert(preset.name().to_string(), digest);
                    outcome
                        .results
                        .push(serde_json::to_value(&record).unwrap_or_default());
                }
                Err(e) => {
                    fail(e.to_string(), Some("publish".into()));
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
                    .push(serde_json::json!({
                        "preset": preset.name(),
                        "error": e.to_string(),
                    }));
                fail(e.to_string(), stage);
                status = Status::Failure;
            }
        }
    }
    status
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
