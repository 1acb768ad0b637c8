//! The one context every handler shares (the API's and the dashboard's), as in
//! realworld-axum-sqlx: cloned into each request through an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use super::worker::Queue;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The queue and the store.
    pub queue: Queue,
    /// The bearer token `/v1` requires, if any.
    pub token: Option<String>,
    /// Most bytes a context may unpack to.
    pub max_unpacked: u64,
    /// Most bytes an upload may be (413 above).
    pub max_upload: u64,
    /// One permit per upload being received (429 when none is left).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Longest wait for the next part of an upload's body (408 after).
    pub read_timeout: Duration,
    /// How long a worker may be silent before it counts as gone.
    pub heartbeat_timeout: Duration,
}

/// The state as handlers extract it.
pub type Shared = axum::extract::State<Arc<AppState>>;
