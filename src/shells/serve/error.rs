//! The service's one error: what a handler answers when it cannot do what was asked. The API
//! sends it as `{"error": message}`; the dashboard shows the same status and message on a page.
//! Library errors are mapped by kind: the caller's input is a 400, anything else a 500 whose
//! text goes to the service's log, not to the caller (it may name paths and hosts).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// What a request failed with.
#[derive(Debug)]
pub enum ApiError {
    /// The request itself is wrong (400): its options, its context, its query.
    BadRequest(String),
    /// No token, or not the server's (401).
    Unauthorized,
    /// Known, but not allowed from where it came (403): a cross-site request with the cookie.
    Forbidden(String),
    /// No such build, image or page (404).
    NotFound(String),
    /// The request clashes with the build's state (409), e.g. cancelling an ended build.
    Conflict(String),
    /// The client stopped sending the upload's body (408).
    Timeout(String),
    /// It was here and is deleted for good (410): a build's images after `--keep-artifacts`.
    Gone(String),
    /// The upload is over `--max-upload` (413).
    TooLarge(String),
    /// Too many uploads are being received at once (429): try again shortly.
    TooMany(String),
    /// Another worker keeps the files and does not answer (502).
    BadGateway(String),
    /// Something on this side failed (500): logged, and answered without its text.
    Internal(String),
}

/// What a 500 says instead of its cause.
pub const INTERNAL: &str = "internal error: the server's log says what failed";

/// The message of a 401.
pub const UNAUTHORIZED: &str =
    "a bearer token is required: Authorization: Bearer TOKEN (the one in the server's --token-file)";

/// A 500's cause, kept on its response for the layer that logs it ([`super::app::log_internal`]).
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller is told.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Timeout(m)
            | ApiError::Gone(m)
            | ApiError::TooLarge(m)
            | ApiError::TooMany(m)
            | ApiError::BadGateway(m) => m,
            ApiError::Unauthorized => UNAUTHORIZED,
            ApiError::Internal(_) => INTERNAL,
        }
    }

    /// Puts the status on `response`, with what logging and clients need: the hidden cause
    /// of a 500, the challenge of a 401.
    pub fn decorate(&self, mut response: Response) -> Response {
        *response.status_mut() = self.status();
        match self {
            ApiError::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(InternalCause(cause.clone()));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooMany(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message() })).into_response();
        self.decorate(body)
    }
}

impl From<crate::Error> for ApiError {
    fn from(error: crate::Error) -> ApiError {
        if error.is_usage() {
            ApiError::BadRequest(error.to_string())
        } else {
            ApiError::Internal(crate::core::error::causes(&error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_by_kind_and_a_500_hides_its_text() {
        let invalid = ApiError::from(crate::Error::InvalidInput {
            what: "preset",
            value: "fast".into(),
            reason: "no such preset".into(),
        });
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        assert!(invalid.message().contains("fast"), "{}", invalid.message());
        let io = ApiError::from(crate::Error::Io {
            context: "reading /secret/path".into(),
            source: std::io::Error::other("disk on fire"),
        });
        assert_eq!(io.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(io.message(), INTERNAL);
        let response = io.into_response();
        let cause = response.extensions().get::<InternalCause>().unwrap();
        assert!(cause.0.contains("/secret/path") && cause.0.contains("disk on fire"));
    }
}
