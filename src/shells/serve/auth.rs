//! Who may do what, for the API and the dashboard alike: the bearer token (`/v1`), the login
//! cookie that carries the same token for the pages and their script, and the same-origin
//! check that keeps another site from using a logged-in browser's cookie to change anything.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};

use super::error::ApiError;
use super::state::AppState;

/// The cookie that carries the token for the pages and their script.
pub const COOKIE: &str = "ruchy_image_token";

/// Compares in time independent of where the strings differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token the request's cookie carries, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value that logs a browser in with `token`.
pub fn login_cookie(token: &str) -> String {
    Cookie::build((COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
        .encoded()
        .to_string()
}

/// The `Set-Cookie` value that logs a browser out.
pub fn logout_cookie() -> String {
    Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// Whether the request carries the server's token in its login cookie (always, without one).
pub fn logged_in(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.token {
        None => true,
        Some(token) => cookie_token(headers).is_some_and(|c| same(c.as_bytes(), token.as_bytes())),
    }
}

/// Whether a browser sent the request from one of this server's own pages. Browsers say where
/// a request comes from (`Sec-Fetch-Site`, else `Origin`); a client that says neither is not a
/// browser another site can drive, so it passes.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

/// `/v1`'s guard: the bearer token, or the login cookie; with the cookie, only reads or
/// requests from this server's own pages (a cookie travels with any site's request).
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    if cookie_token(headers).is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        if reads || same_origin(headers) {
            return next.run(request).await;
        }
        return ApiError::Forbidden(CROSS_SITE.into()).into_response();
    }
    ApiError::Unauthorized.into_response()
}

/// Why a cross-site request with the cookie is refused.
pub const CROSS_SITE: &str =
    "a request from another site cannot use the dashboard's login: send the bearer token";

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn cookie_values_round_trip_and_only_the_token_cookie_counts() {
        let token = "a+b/c= d;e\"f%";
        let set = login_cookie(token);
        assert!(
            set.ends_with("; HttpOnly; SameSite=Strict; Path=/"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap();
        let value = pair.strip_prefix("ruchy_image_token=").unwrap();
        assert!(!value.contains([';', ' ', '"']), "{value}");
        let sent = headers(&[("cookie", &format!("other=1; {pair}; x=y"))]);
        assert_eq!(cookie_token(&sent).as_deref(), Some(token));
        let other = headers(&[("cookie", "ruchy_image_token_other=1")]);
        assert_eq!(cookie_token(&other), None);
        assert_eq!(
            logout_cookie(),
            "ruchy_image_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn only_this_server_s_pages_or_non_browsers_are_same_origin() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "none")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        let here = [
            ("host", "127.0.0.1:7878"),
            ("origin", "http://127.0.0.1:7878"),
        ];
        assert!(same_origin(&headers(&here)));
        let there = [
            ("host", "127.0.0.1:7878"),
            ("origin", "https://evil.example"),
        ];
        assert!(!same_origin(&headers(&there)));
        assert!(!same_origin(&headers(&[("origin", "null")])));
    }
}
