//! The HTTP API under `/v1` (JSON, bearer token), `/healthz` and `/metrics`. Conventions
//! follow Docker Engine's `POST /build` (the context as a tar body, options as query
//! parameters) and Cloud Build's build records (status, times, results). One router per
//! resource: [`builds`] and [`workers`]; this module puts them behind the token.

pub mod builds;
pub mod workers;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth;
use super::error::ApiError;
use super::state::{AppState, Shared};
use super::store::Status;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `/v1/*` behind the token (bodies up to `max_upload`), `/healthz` and `/metrics` open.
pub fn router(state: Arc<AppState>, max_upload: usize) -> Router<Arc<AppState>> {
    let v1 = Router::new()
        .merge(builds::router())
        .merge(workers::router())
        .route("/v1/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_upload));
    Router::new()
        .merge(v1)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Upper bounds (seconds) of the build duration histogram's buckets.
const BUCKETS: [f64; 9] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

async fn metrics(axum::extract::State(state): Shared) -> Result<Response, ApiError> {
    use std::fmt::Write;
    let store = &state.queue.store;
    let counts = store.counts().await?;
    let durations = store.durations().await?;
    let mut text = String::new();
    let _ = writeln!(text, "# HELP ruchy_image_builds Builds by status.");
    let _ = writeln!(text, "# TYPE ruchy_image_builds gauge");
    for status in Status::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == status.name())
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(
            text,
            "ruchy_image_builds{{status=\"{}\"}} {n}",
            status.name()
        );
    }
    let queued = counts
        .iter()
        .find(|(s, _)| s == "queued")
        .map_or(0, |(_, n)| *n);
    let _ = writeln!(
        text,
        "# HELP ruchy_image_queue_depth Builds waiting for a worker."
    );
    let _ = writeln!(text, "# TYPE ruchy_image_queue_depth gauge");
    let _ = writeln!(text, "ruchy_image_queue_depth {queued}");
    let _ = writeln!(
        text,
        "# HELP ruchy_image_build_duration_seconds Wall time of builds that ran."
    );
    let _ = writeln!(text, "# TYPE ruchy_image_build_duration_seconds histogram");
    for bound in BUCKETS {
        let n = durations.iter().filter(|d| **d <= bound).count();
        let _ = writeln!(
            text,
            "ruchy_image_build_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        text,
        "ruchy_image_build_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        durations.len()
    );
    let _ = writeln!(
        text,
        "ruchy_image_build_duration_seconds_sum {}",
        durations.iter().sum::<f64>()
    );
    let _ = writeln!(
        text,
        "ruchy_image_build_duration_seconds_count {}",
        durations.len()
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
