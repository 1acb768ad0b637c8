//! `ruchy-image serve`: the builder as a service. An HTTP API ([`api`]) takes build contexts
//! and records every build before answering ([`store`]: SQLite, or PostgreSQL shared by any
//! number of `serve` workers, each on its own engine); workers ([`worker`]) claim them, run
//! them through the same library plan as the CLI, fairly between projects, write their logs
//! into the database as they run and push their images to the artifact registry
//! ([`artifacts`]), so any worker serves any build. Killed and started again, a worker
//! re-queues what it was running once and removes the builder containers the dead process
//! left; a worker that stops answering has its builds taken over by the others.

//!
//! Layout, after zero2prod and realworld-axum-sqlx: [`startup`] starts and stops the service
//! ([`spawn_app`], also used in-process by tests); [`app`] puts the routes together over one
//! [`state::AppState`]; [`api`] has a router per resource and [`dashboard`] the pages; both
//! use [`auth`] for the token, cookie and same-origin checks and [`error::ApiError`] for what
//! fails.

pub mod api;
pub mod app;
pub mod artifacts;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod request;
pub mod retention;
pub mod startup;
pub mod state;
pub mod store;
pub mod upload;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use startup::{spawn_app, RunningApp};

use crate::core::error::Result;
use crate::core::event::Events;

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
    /// Uploads received at once (more: 429). Each is streamed to disk and kept in the
    /// database a chunk at a time, never whole in memory.
    pub max_uploads: usize,
    /// How long a client may take to send a request's headers, or between two parts of an
    /// upload's body, before the connection is closed (headers) or the upload refused (408).
    pub read_timeout: Duration,
    /// How long a draining shutdown waits for running builds before cancelling them.
    pub shutdown_timeout: Duration,
    /// The builder image to compile in (else rust:1-alpine, else a `builder import-host` one).
    pub builder_image: Option<String>,
    /// The key every build's provenance is signed with (else unsigned).
    pub sign_key: Option<PathBuf>,
    /// Limits of each build's builder containers.
    pub limits: crate::pipeline::compile::Limits,
    /// A `postgres://` URL shared by several workers (else SQLite in the data dir).
    pub database: Option<String>,
    /// This worker's name in `/v1/workers` (else the host name).
    pub worker_name: Option<String>,
    /// Where other workers reach this one's API (else `http://` and the listen address).
    pub advertise_url: Option<String>,
    /// How long a worker may miss heartbeats before its builds go back to the queue.
    pub heartbeat_timeout: Duration,
    /// The registry repository every build's images are pushed to and read back from, by any
    /// worker (required with `database`; without it, images stay in the data dir).
    pub artifacts: Option<artifacts::Artifacts>,
    /// How long a finished build keeps its images (in the artifact registry, or the data
    /// dir's archives): then they are deleted and its record marked expired. None: forever.
    pub keep_artifacts: Option<Duration>,
    /// What reading one layer of a build's base may cost (`RUCHY_IMAGE_MAX_LAYER_SIZE`).
    pub base_limits: crate::pipeline::base::Limits,
    /// The builds' cache volumes' names, where not the defaults.
    pub cache_volumes: crate::pipeline::compile::CacheVolumes,
}

impl Default for ServeOptions {
    /// `serve`'s flags left out (a test in cli/serve.rs holds the two the same), with the
    /// data in `./ruchy-image-data`: a library user or a test sets what it needs and no more.
    fn default() -> ServeOptions {
        ServeOptions {
            data_dir: PathBuf::from("ruchy-image-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            token: None,
            insecure_no_auth: false,
            workers: 1,
            timeout: Duration::from_secs(30 * 60),
            queue_ttl: Duration::from_secs(60 * 60),
            max_upload: 256 << 20,
            max_uploads: 2,
            read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
            builder_image: None,
            sign_key: None,
            limits: crate::pipeline::compile::Limits::SERVICE,
            database: None,
            worker_name: None,
            advertise_url: None,
            heartbeat_timeout: Duration::from_secs(30),
            artifacts: None,
            keep_artifacts: None,
            base_limits: crate::pipeline::base::Limits::default(),
            cache_volumes: crate::pipeline::compile::CacheVolumes::default(),
        }
    }
}

impl ServeOptions {
    /// How often a worker heartbeats: often enough that a few missed ones are not yet a death.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.heartbeat_timeout / 5).clamp(Duration::from_millis(200), Duration::from_secs(10))
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
    let app = spawn_app(options, events).await?;
    ready(app.addr);
    shutdown.await;
    app.stop().await;
    Ok(())
}
