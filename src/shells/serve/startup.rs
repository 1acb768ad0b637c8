//! Starting the service, apart from its routes: the auth rule for the listen address, the
//! data dir's lock, the store and its recovery, the builder image, the workers and their
//! background tasks, and the listener (port 0 picks one, so tests start the real service
//! in-process with [`spawn_app`]). [`RunningApp::stop`] drains it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::state::AppState;
use super::store::{self, Store};
use super::worker::{self, Queue};
use super::ServeOptions;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};

/// The service, listening and working, until [`RunningApp::stop`].
#[derive(Debug)]
pub struct RunningApp {
    /// The address it listens on (the port picked, for port 0).
    pub addr: SocketAddr,
    queue: Queue,
    workers: JoinSet<()>,
    background: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    stop_http: CancellationToken,
    shutdown_timeout: Duration,
    _lock: DataDirLock,
}

/// Starts the service as `options` say and returns once it listens: the HTTP API and the
/// dashboard on `options.listen`, the workers taking builds. `events` gets what it has to say.
pub async fn spawn_app(options: ServeOptions, events: Events) -> Result<RunningApp> {
    check_auth_rule(&options)?;
    check_artifacts(&options, &events).await?;
    // A key that does not read stops the start, not every build.
    if let Some(key) = &options.sign_key {
        let signer = crate::pipeline::attest::Signer::read(key)?;
        events.note(format!("provenance is signed by key {}", signer.keyid));
    }
    std::fs::create_dir_all(&options.data_dir).map_err(Error::io(format!(
        "creating the data dir {}",
        options.data_dir.display()
    )))?;
    let lock = DataDirLock::take(&options.data_dir)?;
    let store = open_store(&options, &events).await?;
    let (builder_image, engine_name) = builder(&options, &store, &events).await?;
    let sandbox = crate::pipeline::compile::Sandbox {
        volumes: options.cache_volumes.clone(),
        ..crate::pipeline::compile::Sandbox::service(options.limits)
    };
    match &builder_image {
        Some(_) => {
            for line in sandbox.describe() {
                events.note(format!("isolation: {line}"));
            }
        }
        None => events.emit(crate::core::event::Event::Warning {
            message: "isolation: none: without an engine, builds run with this machine's cargo, their build scripts as this user".into(),
        }),
    }
    let queue = Queue {
        store: store.clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        running: Arc::new(Mutex::new(HashMap::new())),
        draining: CancellationToken::new(),
        timeout: options.timeout,
        events: events.clone(),
        builder_image,
        sign_key: options.sign_key.clone(),
        sandbox,
        max_unpacked: options.max_upload.saturating_mul(4),
        artifacts: options.artifacts.clone().map(Arc::new),
        base_limits: options.base_limits,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(Error::io(format!("listening on {}", options.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("reading the listening address"))?;
    let slots = options.workers.max(1);
    register(&options, &store, &events, addr, &engine_name, slots).await?;

    let mut workers = JoinSet::new();
    for _ in 0..slots {
        workers.spawn(worker::work(queue.clone()));
    }
    let mut background = vec![
        tokio::spawn(expire_queued(queue.clone(), options.queue_ttl)),
        tokio::spawn(worker::heartbeat(
            queue.clone(),
            options.heartbeat_interval(),
            options.heartbeat_timeout,
        )),
        tokio::spawn(listen_for_builds(queue.clone())),
    ];
    if let Some(keep) = options.keep_artifacts {
        events.note(format!(
            "images of builds that finished over {} ago are deleted",
            humantime::format_duration(keep)
        ));
        background.push(tokio::spawn(super::retention::retain(queue.clone(), keep)));
    }

    let state = Arc::new(AppState {
        queue: queue.clone(),
        token: options.token.clone(),
        max_unpacked: options.max_upload.saturating_mul(4),
        max_upload: options.max_upload,
        uploads: Arc::new(tokio::sync::Semaphore::new(options.max_uploads.max(1))),
        read_timeout: options.read_timeout,
        heartbeat_timeout: options.heartbeat_timeout,
    });
    let max_upload = usize::try_from(options.max_upload).unwrap_or(usize::MAX);
    let router = super::app::router(state, max_upload);
    let stop_http = CancellationToken::new();
    let server = tokio::spawn(serve_http(
        listener,
        router,
        stop_http.clone(),
        options.read_timeout,
    ));
    Ok(RunningApp {
        addr,
        queue,
        workers,
        background,
        server,
        stop_http,
        shutdown_timeout: options.shutdown_timeout,
        _lock: lock,
    })
}

impl RunningApp {
    /// Drains, then stops: workers take nothing new; running builds get the shutdown timeout,
    /// then are cancelled (and recorded as such); the listener closes last.
    pub async fn stop(mut self) {
        let events = self.queue.events.clone();
        events.emit(Event::Step {
            message: "draining: no new builds start; waiting for running ones".into(),
        });
        self.queue.draining.cancel();
        for task in &self.background {
            task.abort();
        }
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            for run in self.queue.running.lock().expect("running builds").values() {
                run.cancel.cancel();
            }
            while self.workers.join_next().await.is_some() {}
        }
        if let Err(e) = self.queue.store.stopped().await {
            events.emit(Event::Warning {
                message: format!("cannot record this worker's stop: {e}"),
            });
        }
        self.stop_http.cancel();
        // Open log followers would hold a graceful stop forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
    }
}

/// Serves `router` on `listener` until `stop`, then lets open connections finish. A client
/// gets `read_timeout` to send a request's headers (hyper's header read timeout): one that
/// trickles them is cut off instead of holding a connection forever.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    read_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, or a connection reset before it was taken: go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(read_timeout);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Workers on a shared database keep images where every worker reads them: the artifact
/// registry is required there, and must take a push before the first build is taken.
async fn check_artifacts(options: &ServeOptions, events: &Events) -> Result<()> {
    let Some(artifacts) = &options.artifacts else {
        if let Some(database) = &options.database {
            return Err(Error::InvalidInput {
                what: "--database",
                value: store::redact(database),
                reason: "workers on a shared database need --artifacts REGISTRY/REPOSITORY, where every worker can read every build's image".into(),
            });
        }
        return Ok(());
    };
    artifacts.check().await?;
    events.note(format!("images go to {}", artifacts.repository));
    Ok(())
}

/// Beyond loopback, the API needs a token unless told knowingly to go without.
fn check_auth_rule(options: &ServeOptions) -> Result<()> {
    if !options.listen.ip().is_loopback() && options.token.is_none() && !options.insecure_no_auth {
        return Err(Error::InvalidInput {
            what: "listen address",
            value: options.listen.to_string(),
            reason: "beyond loopback the API needs a token file (or, knowingly, no authentication)"
                .into(),
        });
    }
    Ok(())
}

/// The store, with what an interrupted service left behind cleaned up or queued again.
async fn open_store(options: &ServeOptions, events: &Events) -> Result<Store> {
    let store = Store::open(&options.data_dir, options.database.as_deref())
        .await?
        .reporting_to(events.clone());
    crate::adapters::cleanup::sweep_temp(&options.data_dir.join("blobs"));
    // Bodies of uploads an interrupted service was receiving (its own files, by build ID).
    let _ = std::fs::remove_dir_all(options.data_dir.join("uploads"));
    let (requeued, failed) = store.recover().await?;
    if requeued + failed > 0 {
        events.note(format!(
            "after an interruption: {requeued} build(s) queued again, {failed} failed"
        ));
    }
    Ok(store)
}

/// One builder image for every build, found once: with an engine, the one asked for (or
/// rust:1-alpine, or the newest `builder import-host` image); without, the local toolchain.
/// Also what `/v1/workers` says this worker builds with.
async fn builder(
    options: &ServeOptions,
    store: &Store,
    events: &Events,
) -> Result<(Option<String>, String)> {
    let engine = match crate::adapters::engine::Engine::connect().await {
        Ok(engine) => engine,
        Err(e) if options.builder_image.is_some() => return Err(e),
        Err(_) => {
            events.note("no Docker engine answers: builds compile with the local toolchain");
            return Ok((None, "local toolchain".to_string()));
        }
    };
    if let Ok(removed) = engine.remove_orphans().await {
        if !removed.is_empty() {
            events.note(format!(
                "removed {} builder container(s) left by a service that did not stop",
                removed.len()
            ));
        }
    }
    let image = crate::pipeline::compile::BuilderImage::resolve(
        &engine,
        options.builder_image.as_deref(),
        &store.cache_dir(),
        events,
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
    Ok((Some(image.reference), name))
}

/// Records this worker in the store, with where the others reach it.
async fn register(
    options: &ServeOptions,
    store: &Store,
    events: &Events,
    addr: SocketAddr,
    engine_name: &str,
    slots: usize,
) -> Result<()> {
    let url = options
        .advertise_url
        .clone()
        .unwrap_or_else(|| advertised(addr));
    let name = options.worker_name.clone().unwrap_or_else(host_name);
    store
        .register(&name, url.trim_end_matches('/'), engine_name, slots as i64)
        .await?;
    if store.backend() == store::Backend::Postgres {
        events.note(format!(
            "worker {} ({name}, {slots} slot(s)) on the shared database; other workers reach it at {url}",
            store.worker()
        ));
    }
    Ok(())
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
async fn listen_for_builds(queue: Queue) {
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
async fn expire_queued(queue: Queue, ttl: Duration) {
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
