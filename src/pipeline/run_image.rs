//! `ruchy-image run`: runs an image through the engine with Lambda-like limits, streams its
//! output, and measures cold start (container create to exit, wall time) and peak memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::adapters::engine::{ContainerSpec, Engine};
use crate::core::error::{Error, Result};

/// Limits and arguments for the runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The image to run.
    pub image: String,
    /// Arguments after the entrypoint.
    pub args: Vec<String>,
    /// How many cold starts to measure.
    pub iterations: u32,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit, in CPUs.
    pub cpus: Option<f64>,
    /// Give up on a run that has not exited after this long (a server never does).
    pub timeout: Option<Duration>,
}

/// One cold start.
#[derive(Debug, Clone, Serialize)]
pub struct RunSample {
    /// Create to exit, in milliseconds.
    pub cold_start_ms: f64,
    /// Exit code.
    pub exit_code: i64,
    /// Highest memory use the engine reported while it ran, if it reported any.
    pub peak_memory_bytes: Option<u64>,
}

/// All runs, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The image.
    pub image: String,
    /// Number of runs.
    pub iterations: u32,
    /// Median cold start.
    pub cold_start_median_ms: f64,
    /// Fastest cold start.
    pub cold_start_min_ms: f64,
    /// Slowest cold start.
    pub cold_start_max_ms: f64,
    /// Highest memory use seen over all runs, when the engine reported any.
    pub peak_memory_bytes: Option<u64>,
    /// Exit code of the last run (the first non-zero one, if any failed).
    pub exit_code: i64,
    /// Memory limit applied, in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit applied.
    pub cpus: Option<f64>,
    /// Every run.
    pub samples: Vec<RunSample>,
}

/// Parses a Docker-style memory size: `128m`, `1g`, `512k`, `1048576`. Docker's one-letter
/// units are powers of 1024, so they are read as KiB, MiB and GiB.
pub fn parse_memory(value: &str) -> Result<u64> {
    let trimmed = value.trim();
    let without_b = trimmed
        .strip_suffix(['b', 'B'])
        .filter(|rest| rest.ends_with(|c: char| "kmgKMG".contains(c)))
        .unwrap_or(trimmed);
    let text = match without_b.chars().last() {
        Some(c) if "kmgKMG".contains(c) => format!("{without_b}iB"),
        _ => without_b.to_string(),
    };
    match crate::core::metrics::parse_size(&text) {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(Error::InvalidInput {
            what: "memory size",
            value: value.to_string(),
            reason: "expected a size such as 128m, 1g or 512k".into(),
        }),
    }
}

/// Runs the image `iterations` times, back to back; `on_output` gets every line of the first
/// run. A run's container is removed while the next one runs (as `docker run --rm` removes
/// its own), and every removal is done before this returns.
pub async fn run(
    engine: &Engine,
    options: &RunOptions,
    on_output: &mut (dyn FnMut(bool, &str) + Send),
) -> Result<RunReport> {
    let mut samples = Vec::new();
    let mut removals = Vec::new();
    let mut failed = None;
    for i in 0..options.iterations.max(1) {
        let mut quiet = |_: bool, _: &str| {};
        let sink: &mut (dyn FnMut(bool, &str) + Send) = if i == 0 { on_output } else { &mut quiet };
        let (sample, removal) = run_once(engine, options, sink).await;
        removals.extend(removal);
        match sample {
            Ok(sample) => samples.push(sample),
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let mut removed = Ok(());
    for removal in removals {
        let done = removal.await.unwrap_or_else(|e| {
            Err(Error::Engine {
                context: "removing a container".into(),
                message: e.to_string(),
            })
        });
        removed = removed.and(done);
    }
    let samples = Error::with_cleanup(failed.map_or(Ok(samples), Err), removed)?;
    let mut times: Vec<f64> = samples.iter().map(|s| s.cold_start_ms).collect();
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    Ok(RunReport {
        image: options.image.clone(),
        iterations: samples.len() as u32,
        cold_start_median_ms: median,
        cold_start_min_ms: times[0],
        cold_start_max_ms: times[times.len() - 1],
        peak_memory_bytes: samples.iter().filter_map(|s| s.peak_memory_bytes).max(),
        exit_code: samples
            .iter()
            .map(|s| s.exit_code)
            .find(|&c| c != 0)
            .unwrap_or(0),
        memory_limit_bytes: options.memory,
        cpus: options.cpus,
        samples,
    })
}

/// A removal under way in the background.
type Removal = tokio::task::JoinHandle<Result<()>>;

/// One run: its sample, and its container's removal (none if no container was made).
async fn run_once(
    engine: &Engine,
    options: &RunOptions,
    on_output: &mut (dyn FnMut(bool, &str) + Send),
) -> (Result<RunSample>, Option<Removal>) {
    let config = ContainerSpec {
        image: options.image.clone(),
        cmd: (!options.args.is_empty()).then(|| options.args.clone()),
        labels: std::collections::HashMap::from([
            ("dev.ruchy.image.role".to_string(), "run".to_string()),
            ("dev.ruchy.image.image".to_string(), options.image.clone()),
        ]),
        memory: options.memory,
        cpus: options.cpus,
        ..Default::default()
    };
    let started = Instant::now();
    let id = match engine.create(config).await {
        Ok(id) => id,
        Err(error) => return (Err(error), None),
    };
    let peak = Arc::new(AtomicU64::new(0));
    let stats = tokio::spawn(peak_memory(engine.clone(), id.clone(), peak.clone()));
    let finished = match options.timeout {
        Some(limit) => tokio::time::timeout(limit, engine.run_to_completion(&id, on_output))
            .await
            .unwrap_or_else(|_| {
                Err(Error::RunTimedOut {
                    image: options.image.clone(),
                    seconds: limit.as_secs(),
                })
            }),
        None => engine.run_to_completion(&id, on_output).await,
    };
    let elapsed = started.elapsed();
    // What the engine sampled while it ran; waiting for a sample after the exit only costs
    // time (the engine has none to give for a container that is gone).
    stats.abort();
    let peak = Some(peak.load(Ordering::Relaxed)).filter(|&m| m > 0);
    let removal = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.remove_container(&id).await })
    };
    let sample = finished.map(|finished| RunSample {
        cold_start_ms: elapsed.as_secs_f64() * 1000.0,
        exit_code: finished.exit_code,
        peak_memory_bytes: peak,
    });
    (sample, Some(removal))
}

/// Keeps in `peak` the highest memory use the engine's stats stream reports while the
/// container runs (cgroup v1's `max_usage`, else the usage of each sample).
async fn peak_memory(engine: Engine, id: String, peak: Arc<AtomicU64>) {
    engine
        .watch_memory(&id, |seen| {
            peak.fetch_max(seen, Ordering::Relaxed);
        })
        .await;
}

/// Checks the image exists before the first run, with the engine's message if not.
pub async fn check_image(engine: &Engine, image: &str) -> Result<()> {
    engine
        .image(image, &format!("finding image {image}"))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes_parse_like_docker() {
        assert_eq!(parse_memory("128m").unwrap(), 128 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        for bad in ["", "m", "12x", "-5m", "0"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }
}
