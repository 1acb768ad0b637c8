//! The whole service's router: the API's resources, the dashboard's pages, and the layer
//! that writes the hidden cause of every 500 to the service's log.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;

use super::error::{ApiError, InternalCause};
use super::state::AppState;
use crate::core::event::Event;

/// Every route, over `state`; request bodies up to `max_upload` bytes.
pub fn router(state: Arc<AppState>, max_upload: usize) -> Router {
    Router::new()
        .merge(super::api::router(state.clone(), max_upload))
        .merge(super::dashboard::routes(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            log_internal,
        ))
        .with_state(state)
}

/// Every error the API documents is `{"error": message}`: the ones axum answers itself (a
/// query or form it cannot read: 400, a body over the limit: 413, a method a route does not
/// take: 405) come as plain text or empty, and are rewritten here. Pages and JSON pass.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": message }).to_string();
    Response::from_parts(parts, Body::from(body))
}

/// Says what a 500 hid from its caller, in the service's log.
pub async fn log_internal(State(state): State<Arc<AppState>>, response: Response) -> Response {
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        state.queue.events.emit(Event::Warning {
            message: format!("a request failed: {cause}"),
        });
    }
    response
}
