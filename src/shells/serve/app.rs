//! The whole service's router: the API's resources, the dashboard's pages, and the layer
//! that writes the hidden cause of every 500 to the service's log.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Router;

use super::error::InternalCause;
use super::state::AppState;
use crate::core::event::Event;

/// Every route, over `state`; request bodies up to `max_upload` bytes.
pub fn router(state: Arc<AppState>, max_upload: usize) -> Router {
    Router::new()
        .merge(super::api::router(state.clone(), max_upload))
        .merge(super::dashboard::routes(state.clone()))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            log_internal,
        ))
        .with_state(state)
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
