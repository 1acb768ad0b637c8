//! `ruchy-image serve`: the builder as a service. An HTTP API ([`api`]) takes build contexts
//! and records every build before answering ([`store`]: SQLite, or PostgreSQL shared by any
//! number of `serve` workers, each on its own engine); workers ([`worker`]) claim them, run
//! them through the same library plan as the CLI, fairly between projects, and keep their
//! logs and images (other workers' API forwards to them). Killed and started again, a worker
//! re-queues what it was running once and removes the builder containers the dead process
//! left; a worker that stops answering has its builds taken over by the others.

pub mod api;
pub mod dashboard;
pub mod options;
pub mod store;
pub mod upload;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::event::{Event, Events};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the database, sources, logs and images live.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The bearer token every `/v1` route requires, if any.
    pub token: Option<String>,
    /// Listen beyond loopback without a token.
    pub insecure_no_auth: bool,
    /// Builds at once.
    pub workers: usize,
    /// The longest a build may run.
    pub timeout: Duration,
    /// The longest a build may wait in the queue.
    pub queue_ttl: Duration,
    /// The biggest upload taken (bigger: 413). A context may unpack to four times this.
    pub max_upload: u64,
    /// How long a draining shutdown waits for running builds before cancelling them.
    pub shutdown_timeout: Duration,
    /// The builder image to compile in (else rust:1-alpine, else a `builder import-host` one).
    pub builder_image: Option<String>,
    /// A `postgres://` URL shared by several workers (else SQLite in the data dir).
    pub database: Option<String>,
    /// This worker's name in `/v1/workers` (else the host name).
    pub worker_name: Option<String>,
    /// Where other workers reach this one's API (else `http://` and the listen address).
    pub advertise_url: Option<String>,
    /// How long a worker may miss heartbeats before its builds go back to the queue.
    pub heartbeat_timeout: Duration,
}

impl ServeOptions {
    /// How often a worker heartbeats: often enough that a few missed ones are not yet a death.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.heartbeat_timeout / 5).clamp(Duration::from_millis(200), Duration::from_secs(10))
    }
}

/// An exclusive lock on the data dir, held while the service runs: a second `serve` on the
/// same SQLite database refuses to start.
#[derive(Debug)]
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    fn take(dir: &std::path::Path) -> Result<DataDirLock> {
        let path = dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io(format!("opening {}", path.display())))?;
        // SAFETY: flock on a descriptor we own.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::InvalidInput {
                what: "data dir",
                value: dir.display().to_string(),
                reason: format!(
                    "another `ruchy-image serve` uses it ({}); one service per data dir",
                    holder.trim()
                ),
            });
        }
        let _ = file.set_len(0);
        let _ =
            std::io::Write::write_all(&mut &file, format!("pid {}", std::process::id()).as_bytes());
        Ok(DataDirLock { _file: file })
    }
}

/// Runs the service until `shutdown` resolves, then drains: no new build starts, running
/// ones finish (or are cancelled after the shutdown timeout). `ready` gets the address
/// listened on (port 0 picks one); `events` gets what the service has to say.
pub async fn serve(
    options: ServeOptions,
    events: Events,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    if !options.listen.ip().is_loopback() && options.token.is_none() && !options.insecure_no_auth {
        return Err(Error::InvalidInput {
            what: "listen address",
            value: options.listen.to_string(),
            reason: "beyond loopback the API needs a token file (or, knowingly, no authentication)"
                .into(),
        });
    }
    std::fs::create_dir_all(&options.data_dir).map_err(Error::io(format!(
        "creating the data dir {}",
        options.data_dir.display()
    )))?;
    let _lock = DataDirLock::take(&options.data_dir)?;
    let store = store::Store::open(&options.data_dir, options.database.as_deref()).await?;
    crate::cleanup::sweep_temp(&options.data_dir.join("blobs"));
    let (requeued, failed) = store.recover().await?;
    if requeued + failed > 0 {
        events.note(format!(
            "after an interruption: {requeued} build(s) queued again, {failed} failed"
        ));
    }
    // One builder image for every build, found once: with an engine, the one asked for (or
    // rust:1-alpine, or the newest `builder import-host` image); without, the local toolchain.
    let (builder_image, engine_name) = match crate::engine::Engine::connect().await {
        Ok(engine) => {
            if let Ok(removed) = engine.remove_orphans().await {
                if !removed.is_empty() {
                    events.note(format!(
                        "removed {} builder container(s) left by a service that did not stop",
                        removed.len()
                    ));
                }
            }
            let image = crate::compile::BuilderImage::resolve(
                &engine,
                options.builder_image.as_deref(),
                &store.cache_dir(),
                &events,
            )
            .await?;
            events.note(format!(
                "builds compile in {} ({})",
                image.reference,
                image.toolchain.version()
            ));
            let version = engine.docker().version().await.ok().and_then(|v| v.version);
            let name = format!(
                "docker {}, {} ({})",
                version.as_deref().unwrap_or("?"),
                image.reference,
                image.toolchain.version()
            );
            (Some(image.reference), name)
        }
        Err(e) if options.builder_image.is_some() => return Err(e),
        Err(_) => {
            events.note("no Docker engine answers: builds compile with the local toolchain");
            (None, "local toolchain".to_string())
        }
    };

    let queue = worker::Queue {
        store: store.clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        running: Arc::new(Mutex::new(HashMap::new())),
        draining: CancellationToken::new(),
        timeout: options.timeout,
        events: events.clone(),
        builder_image,
        max_unpacked: options.max_upload.saturating_mul(4),
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(Error::io(format!("listening on {}", options.listen)))?;
    let address = listener
        .local_addr()
        .map_err(Error::io("reading the listening address"))?;
    let url = options
        .advertise_url
        .clone()
        .unwrap_or_else(|| advertised(address));
    let name = options.worker_name.clone().unwrap_or_else(host_name);
    let slots = options.workers.max(1);
    store
        .register(&name, url.trim_end_matches('/'), &engine_name, slots as i64)
        .await?;
    if store.backend() == store::Backend::Postgres {
        events.note(format!(
            "worker {} ({name}, {slots} slot(s)) on the shared database; other workers reach it at {url}",
            store.worker()
        ));
    }

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..slots {
        workers.spawn(worker::work(queue.clone()));
    }
    let background = [
        tokio::spawn(expire_queued(queue.clone(), options.queue_ttl)),
        tokio::spawn(worker::heartbeat(
            queue.clone(),
            options.heartbeat_interval(),
            options.heartbeat_timeout,
        )),
        tokio::spawn(listen_for_builds(queue.clone())),
    ];

    let state = Arc::new(api::AppState {
        queue: queue.clone(),
        token: options.token.clone(),
        max_unpacked: options.max_upload.saturating_mul(4),
        heartbeat_timeout: options.heartbeat_timeout,
        peers: reqwest::Client::new(),
    });
    let max_upload = usize::try_from(options.max_upload).unwrap_or(usize::MAX);
    let app = api::router(state, max_upload);
    ready(address);

    let stop_http = CancellationToken::new();
    let server = {
        let stop_http = stop_http.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop_http.cancelled().await })
                .await
        })
    };
    shutdown.await;

    // Drain: workers take nothing new; running builds get the shutdown timeout, then are
    // cancelled (and recorded as such).
    events.emit(Event::Step {
        message: "draining: no new builds start; waiting for running ones".into(),
    });
    queue.draining.cancel();
    for task in &background {
        task.abort();
    }
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        for run in queue.running.lock().expect("running builds").values() {
            run.cancel.cancel();
        }
        while workers.join_next().await.is_some() {}
    }
    if let Err(e) = store.stopped().await {
        events.emit(Event::Warning {
            message: format!("cannot record this worker's stop: {e}"),
        });
    }
    stop_http.cancel();
    // Open log followers would hold a graceful stop forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// The URL other workers reach this one at when none was given: the listen address, or the
/// host's name when listening on every address.
fn advertised(address: SocketAddr) -> String {
    if address.ip().is_unspecified() {
        format!("http://{}:{}", host_name(), address.port())
    } else {
        format!("http://{address}")
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Under PostgreSQL, wakes the workers as soon as any worker queues a build (LISTEN/NOTIFY);
/// they also look every two seconds, so a lost connection only costs latency.
async fn listen_for_builds(queue: worker::Queue) {
    if queue.store.backend() != store::Backend::Postgres {
        return;
    }
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(queue.store.url()).await?;
            listener.listen(store::QUEUE_CHANNEL).await?;
            loop {
                listener.recv().await?;
                queue.wake.notify_waiters();
                queue.wake.notify_one();
            }
        };
        let result: std::result::Result<(), sqlx::Error> = listener.await;
        if let Err(e) = result {
            queue.events.emit(Event::Warning {
                message: format!("not listening for new builds (polling instead): {e}"),
            });
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Times out builds that waited in the queue longer than `ttl`.
async fn expire_queued(queue: worker::Queue, ttl: Duration) {
    loop {
        tokio::time::sleep(Duration::from_secs(5).min(ttl)).await;
        let cutoff = humantime::format_rfc3339_millis(SystemTime::now() - ttl).to_string();
        match queue.store.expire_queued(&cutoff).await {
            Ok(expired) if !expired.is_empty() => queue.events.emit(Event::Warning {
                message: format!(
                    "{} build(s) waited longer than the queue TTL",
                    expired.len()
                ),
            }),
            Ok(_) => {}
            Err(e) => queue.events.emit(Event::Warning {
                message: format!("cannot expire queued builds: {e}"),
            }),
        }
    }
}
