//! `/v1/workers`: every `serve` on this database, whether it answers, and what it runs.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::shells::serve::error::ApiError;
use crate::shells::serve::state::{AppState, Shared};

/// The workers' route.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/workers", get(workers))
}

/// `GET /v1/workers`: every worker on this database, whether it answers, and what it runs.
async fn workers(State(state): Shared) -> Result<Response, ApiError> {
    let store = &state.queue.store;
    let cutoff =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() - state.heartbeat_timeout)
            .to_string();
    let workers: Vec<serde_json::Value> = store
        .workers()
        .await?
        .into_iter()
        .map(|(worker, builds)| {
            let state = if worker.stopped_at.is_some() {
                "stopped"
            } else if worker.heartbeat_at < cutoff {
                "silent"
            } else {
                "alive"
            };
            let mut value = serde_json::to_value(&worker).unwrap_or_default();
            value["state"] = state.into();
            value["this"] = (worker.id == store.worker()).into();
            value["builds"] = builds.into();
            value
        })
        .collect();
    Ok(Json(serde_json::json!({ "workers": workers })).into_response())
}
