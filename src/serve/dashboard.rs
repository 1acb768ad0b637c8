//! The web dashboard: server-rendered HTML pages over the same build records the API answers
//! with. `/` lists builds, `/builds/{id}` shows one with its live log, `/projects/{name}`
//! charts a project's sizes over its builds. One stylesheet and one small script, served from
//! the binary: no CDN, no external font, works offline. With a token, the pages want it once
//! through `/login`, which keeps it in an `HttpOnly`, `SameSite=Strict` cookie that `/v1`
//! also accepts (the page's script reads the log through the API).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Form, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{self, same};
use super::error::ApiError;
use super::state::{AppState, Shared};
use super::store::{BuildRecord, Status};
use crate::metrics::{human_ms, human_size};
use crate::report::chart;

const CSS: &str = include_str!("dashboard/dashboard.css");
const JS: &str = include_str!("dashboard/dashboard.js");

/// Builds per page of the list.
const PAGE_SIZE: i64 = 25;
/// Builds a project page charts.
const HISTORY: i64 = 50;

/// What a page may load: itself only (the favicon is `data:`).
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes: the pages (behind the login when the server has a token), the
/// login form and the two assets.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/", get(builds))
        .route("/builds/{id}", get(build))
        .route("/projects/{name}", get(project))
        .route("/workers", get(workers))
        .route_layer(axum::middleware::from_fn_with_state(state, require_login));
    Router::new()
        .merge(pages)
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route(
            "/assets/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

/// Escapes text for an HTML text node or a quoted attribute value.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a URL path segment, query value or cookie value keeps as it is: the unreserved
/// characters (RFC 3986); everything else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (for URL path segments and query
/// values).
fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Pages without the token's cookie send the browser to the login form (and back after).
async fn require_login(State(state): Shared, request: Request, next: Next) -> Response {
    if auth::logged_in(&state, request.headers()) {
        return next.run(request).await;
    }
    let here = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    Redirect::to(&format!("/login?next={}", percent_encode(&here))).into_response()
}

/// Where to go after logging in: a path on this server, else `/`.
fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if ok {
        next
    } else {
        "/"
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

fn login_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let mut body = String::from("<h1>Log in</h1>\n");
    if let Some(message) = message {
        let _ = writeln!(
            body,
            r#"<p class="notice error" id="login-error" role="alert">{}</p>"#,
            html(message)
        );
    }
    let described = if message.is_some() {
        r#" aria-describedby="login-error""#
    } else {
        ""
    };
    let _ = write!(
        body,
        r#"<p>This server wants its API token (the one in its <code>--token-file</code>) to show its builds.</p>
<form class="login" method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus{described}>
<button type="submit">Log in</button>
</form>
"#,
        next = html(local_path(next)),
    );
    render(
        status,
        &Page {
            title: "Log in",
            body,
            refresh: false,
            current: Nav::None,
            logout: false,
        },
    )
}

async fn login_form(State(state): Shared, Query(query): Query<LoginQuery>) -> Response {
    if state.token.is_none() {
        return Redirect::to("/").into_response();
    }
    login_page(StatusCode::OK, &query.next, None)
}

async fn login(State(state): Shared, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to("/").into_response();
    };
    if !auth::same_origin(&headers) {
        return cross_site(&state);
    }
    if !same(form.token.trim().as_bytes(), token.as_bytes()) {
        return login_page(
            StatusCode::UNAUTHORIZED,
            &form.next,
            Some("That is not this server's token."),
        );
    }
    let cookie = auth::login_cookie(token);
    let mut response = Redirect::to(local_path(&form.next)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(state): Shared, headers: HeaderMap) -> Response {
    if !auth::same_origin(&headers) {
        return cross_site(&state);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::logout_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A form posted from another site's page.
fn cross_site(state: &AppState) -> Response {
    error_page(
        state,
        "Not from this server",
        ApiError::Forbidden(auth::CROSS_SITE.into()),
    )
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq)]
enum Nav {
    None,
    All,
    Status(Status),
    Workers,
}

struct Page<'a> {
    title: &'a str,
    body: String,
    /// Reload every few seconds (something on it is still queued or working).
    refresh: bool,
    current: Nav,
    logout: bool,
}

fn render(status: StatusCode, page: &Page) -> Response {
    let mut nav = String::new();
    let current = |yes: bool| if yes { r#" aria-current="page""# } else { "" };
    let _ = write!(
        nav,
        r#"<li><a href="/"{}>All builds</a></li>"#,
        current(page.current == Nav::All)
    );
    for s in Status::ALL {
        let _ = write!(
            nav,
            r#"<li><a href="/?status={name}"{}>{}</a></li>"#,
            current(page.current == Nav::Status(s)),
            capitalized(s.name()),
            name = s.name(),
        );
    }
    let _ = write!(
        nav,
        r#"<li><a href="/workers"{}>Workers</a></li>"#,
        current(page.current == Nav::Workers)
    );
    let logout = if page.logout {
        r#"<form class="logout" method="post" action="/logout"><button type="submit">Log out</button></form>"#
    } else {
        ""
    };
    let refresh = if page.refresh {
        "<meta http-equiv=\"refresh\" content=\"5\">\n"
    } else {
        ""
    };
    let text = format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{title} · ruchy-image</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/">ruchy-image</a>
<nav aria-label="Builds by status"><ul>{nav}</ul></nav>
{logout}
</header>
<main id="main" tabindex="-1">
{body}
</main>
<footer><p>ruchy-image {version} · the same records as <code>GET /v1/builds</code></p></footer>
</body>
</html>
"##,
        title = html(page.title),
        body = page.body,
        version = env!("CARGO_PKG_VERSION"),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        text,
    )
        .into_response()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn message_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &Page {
            title,
            body: format!(
                "<h1>{}</h1>\n<p class=\"notice error\">{}</p>\n<p><a href=\"/\">All builds</a></p>\n",
                html(title),
                html(message)
            ),
            refresh: false,
            current: Nav::None,
            logout: state.token.is_some(),
        },
    )
}

/// The page for what the API would answer with `error`: its status and message (a 500's
/// cause goes to the log, as the API's does).
fn error_page(state: &AppState, title: &str, error: ApiError) -> Response {
    let page = message_page(state, error.status(), title, error.message());
    error.decorate(page)
}

fn store_error(state: &AppState, error: crate::Error) -> Response {
    error_page(state, "Cannot read the builds", error.into())
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size for people, with the exact bytes in its tooltip and data attributes.
fn size_span(preset: &str, field: &str, bytes: u64) -> String {
    format!(
        r#"<span data-preset="{}" data-field="{field}" data-bytes="{bytes}" title="{} bytes">{}</span>"#,
        html(preset),
        grouped(bytes),
        html(&human_size(bytes))
    )
}

fn status_badge(status: Status) -> String {
    let mark = match status {
        Status::Queued => "…",
        Status::Working => "▶",
        Status::Success => "✓",
        Status::Failure => "✗",
        Status::Cancelled => "⊘",
        Status::Timeout => "⧖",
    };
    format!(
        r#"<span class="status status-{name}" data-status="{name}"><span aria-hidden="true">{mark}</span> {name}</span>"#,
        name = status.name()
    )
}

/// One preset's outcome, read from a result record (`build --json`, or `{preset, error}`);
/// a multi-platform build's index record gives one per platform.
struct PresetResult<'a> {
    /// The preset, with the platform for one of several (`size linux/arm64`).
    preset: String,
    /// The preset whose image archive holds it (`?preset=` of the download).
    download: String,
    record: &'a Value,
    error: Option<&'a str>,
}

impl PresetResult<'_> {
    fn number(&self, path: &[&str]) -> Option<u64> {
        path.iter()
            .try_fold(self.record, |v, key| v.get(key))
            .and_then(Value::as_u64)
    }
}

/// The outcome in `record`; `platform`: one of several, named with its platform.
fn preset_result(record: &Value, platform: bool) -> PresetResult<'_> {
    let preset = record
        .get("optimization_level")
        .or_else(|| record.get("preset"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let arch = record["image"]["architecture"].as_str().unwrap_or("?");
    PresetResult {
        preset: match platform {
            true => format!("{preset} linux/{arch}"),
            false => preset.clone(),
        },
        download: preset,
        record,
        error: record.get("error").and_then(Value::as_str),
    }
}

fn preset_results(record: &BuildRecord) -> Vec<PresetResult<'_>> {
    record
        .results
        .as_array()
        .map(|results| {
            results
                .iter()
                .flat_map(|r| match r.get("platforms").and_then(Value::as_array) {
                    Some(platforms) => platforms.iter().map(|p| preset_result(p, true)).collect(),
                    None => vec![preset_result(r, false)],
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The presets a build asked for (its results' once it has them).
fn requested_presets(record: &BuildRecord) -> Vec<String> {
    record.options["optimize"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// `2026-01-02T03:04:05.678Z` → `2026-01-02 03:04:05`, in a `<time>`.
fn time(text: &str) -> String {
    let short = text
        .split_once('.')
        .map_or(text.trim_end_matches('Z'), |(whole, _)| whole)
        .replacen('T', " ", 1);
    format!(
        r#"<time datetime="{}">{} UTC</time>"#,
        html(text),
        html(&short)
    )
}

fn human_duration(ms: u64) -> String {
    if ms < 60_000 {
        human_ms(ms)
    } else {
        let s = ms / 1000;
        if s < 3600 {
            format!("{} min {} s", s / 60, s % 60)
        } else {
            format!("{} h {} min", s / 3600, s % 3600 / 60)
        }
    }
}

/// How long it ran (or has been running, or waiting).
fn duration(record: &BuildRecord) -> String {
    let ms = |from: &str, to: Option<SystemTime>| -> Option<u64> {
        let from = parse_time(from)?;
        let to = to.unwrap_or_else(SystemTime::now);
        Some(to.duration_since(from).ok()?.as_millis() as u64)
    };
    let finished = record.finished_at.as_deref().and_then(parse_time);
    match (&record.started_at, finished) {
        (Some(started), Some(_)) => ms(started, finished).map(human_duration),
        (Some(started), None) => {
            ms(started, None).map(|d| format!("running {}", human_duration(d)))
        }
        (None, None) => {
            ms(&record.created_at, None).map(|d| format!("waiting {}", human_duration(d)))
        }
        (None, Some(_)) => Some("did not run".to_string()),
    }
    .unwrap_or_default()
}

fn project_link(project: &str) -> String {
    format!(
        r#"<a href="/projects/{}">{}</a>"#,
        percent_encode(project),
        html(project)
    )
}

/// The builds table (the list and the project page).
/// Worker ID → name, for people.
type WorkerNames = std::collections::HashMap<String, String>;

/// The names of the workers on this database (none if they cannot be read: IDs show instead).
async fn worker_names(state: &AppState) -> WorkerNames {
    state
        .queue
        .store
        .workers()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(worker, _)| (worker.id, worker.name))
        .collect()
}

/// A worker by name, its ID in the tooltip.
fn worker_label(id: &str, names: &WorkerNames) -> String {
    let name = names.get(id).map_or(id, String::as_str);
    format!(r#"<span title="worker {}">{}</span>"#, html(id), html(name))
}

/// `GET /workers`: the workers on this database, whether they answer, and what they run.
async fn workers(State(state): Shared) -> Response {
    let workers = match state.queue.store.workers().await {
        Ok(workers) => workers,
        Err(e) => return store_error(&state, e),
    };
    let silent_before =
        humantime::format_rfc3339_millis(SystemTime::now() - state.heartbeat_timeout).to_string();
    let mut rows = String::new();
    for (worker, builds) in &workers {
        let (state_name, class) = if worker.stopped_at.is_some() {
            ("stopped", "cancelled")
        } else if worker.heartbeat_at < silent_before {
            ("silent", "failure")
        } else {
            ("alive", "success")
        };
        let running = if builds.is_empty() {
            r#"<span class="none">—</span>"#.to_string()
        } else {
            builds
                .iter()
                .map(|id| {
                    format!(
                        r#"<a href="/builds/{}"><code>{}</code></a>"#,
                        percent_encode(id),
                        html(id)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            rows,
            r#"<tr data-worker="{id}" data-state="{state_name}"><th scope="row"><span title="worker {id}">{name}</span></th><td><span class="status status-{class}">{state_name}</span></td><td>{engine}</td><td class="num">{slots}</td><td>{url}</td><td>{started}</td><td>{heartbeat}</td><td>{running}</td></tr>"#,
            id = html(&worker.id),
            name = html(&worker.name),
            engine = html(&worker.engine),
            slots = worker.slots,
            url = html(&worker.url),
            started = time(&worker.started_at),
            heartbeat = time(&worker.heartbeat_at),
        );
    }
    let body = format!(
        r#"<h1>Workers</h1>
<table>
<caption>Every <code>serve</code> on this database; silent ones have their builds taken over by the others</caption>
<thead><tr><th scope="col">Worker</th><th scope="col">State</th><th scope="col">Engine</th><th scope="col" class="num">Slots</th><th scope="col">URL</th><th scope="col">Started</th><th scope="col">Last heartbeat</th><th scope="col">Running</th></tr></thead>
<tbody>{rows}</tbody>
</table>"#
    );
    render(
        StatusCode::OK,
        &Page {
            title: "Workers",
            body,
            refresh: workers.iter().any(|(_, builds)| !builds.is_empty()),
            current: Nav::Workers,
            logout: state.token.is_some(),
        },
    )
}

fn builds_table(records: &[BuildRecord], caption: &str, names: &WorkerNames) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<div class="table-wrap"><table class="builds">
<caption>{}</caption>
<thead><tr><th scope="col">Build</th><th scope="col">Status</th><th scope="col">Project</th><th scope="col">Presets</th><th scope="col" class="num">Binary</th><th scope="col" class="num">Image (stored)</th><th scope="col" class="num">Layers</th><th scope="col" class="num">Compile</th><th scope="col">Created</th><th scope="col">Duration</th><th scope="col">Worker</th></tr></thead>
<tbody>
"#,
        html(caption)
    );
    for record in records {
        let results = preset_results(record);
        let (mut presets, mut binary, mut image, mut layers, mut compile) = (
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        );
        if results.is_empty() {
            for preset in requested_presets(record) {
                let _ = write!(presets, "<li>{}</li>", html(&preset));
                for cell in [&mut binary, &mut image, &mut layers, &mut compile] {
                    cell.push_str(r#"<li class="none">—</li>"#);
                }
            }
        }
        for result in &results {
            let preset = &result.preset;
            if let Some(error) = result.error {
                let _ = write!(
                    presets,
                    r#"<li>{} <span class="failed" title="{}">failed</span></li>"#,
                    html(preset),
                    html(error)
                );
                for cell in [&mut binary, &mut image, &mut layers, &mut compile] {
                    cell.push_str(r#"<li class="none">—</li>"#);
                }
                continue;
            }
            let _ = write!(presets, "<li>{}</li>", html(preset));
            let item = |value: Option<String>| {
                format!("<li>{}</li>", value.unwrap_or_else(|| "—".to_string()))
            };
            binary.push_str(&item(
                result
                    .number(&["binary_size"])
                    .map(|b| size_span(preset, "binary_size", b)),
            ));
            image.push_str(&item(
                result
                    .number(&["image", "compressed_size"])
                    .map(|b| size_span(preset, "image_size", b)),
            ));
            layers.push_str(&item(result.number(&["image", "layer_count"]).map(|n| {
                format!(
                    r#"<span data-preset="{}" data-field="layers">{n}</span>"#,
                    html(preset)
                )
            })));
            compile.push_str(&item(result.number(&["compile_time_ms"]).map(|ms| {
                format!(
                    r#"<span data-preset="{}" data-field="compile_time_ms" title="{} ms">{}</span>"#,
                    html(preset),
                    grouped(ms),
                    human_ms(ms)
                )
            })));
        }
        let worker = record
            .worker
            .as_deref()
            .map(|id| worker_label(id, names))
            .unwrap_or_else(|| r#"<span class="none">—</span>"#.into());
        let times = format!(
            "created {}{}{}",
            record.created_at,
            record
                .started_at
                .as_deref()
                .map(|t| format!(", started {t}"))
                .unwrap_or_default(),
            record
                .finished_at
                .as_deref()
                .map(|t| format!(", finished {t}"))
                .unwrap_or_default()
        );
        let list = |items: &str| format!(r#"<ul class="per-preset">{items}</ul>"#);
        let _ = writeln!(
            out,
            r#"<tr data-build="{id}" data-status="{status}"><th scope="row"><a class="build-link" href="/builds/{id_url}"><code>{id}</code></a></th><td>{badge}</td><td>{project}</td><td>{presets}</td><td class="num">{binary}</td><td class="num">{image}</td><td class="num">{layers}</td><td class="num">{compile}</td><td>{created}</td><td title="{times}">{duration}</td><td>{worker}</td></tr>"#,
            id = html(&record.id),
            id_url = percent_encode(&record.id),
            status = record.status.name(),
            badge = status_badge(record.status),
            project = project_link(&record.project),
            presets = list(&presets),
            binary = list(&binary),
            image = list(&image),
            layers = list(&layers),
            compile = list(&compile),
            created = time(&record.created_at),
            times = html(&times),
            duration = html(&duration(record)),
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
    out
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    before: Option<String>,
}

async fn builds(State(state): Shared, Query(query): Query<ListQuery>) -> Response {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => match name.parse::<Status>() {
            Ok(status) => Some(status),
            Err(e) => {
                return error_page(&state, "No such status", ApiError::BadRequest(e));
            }
        },
    };
    let before = query.before.as_deref().filter(|b| !b.is_empty());
    let records = match state.queue.store.list(status, PAGE_SIZE, before).await {
        Ok(records) => records,
        Err(e) => return store_error(&state, e),
    };
    let heading = match status {
        Some(s) => format!("{} builds", capitalized(s.name())),
        None => "Builds".to_string(),
    };
    let mut body = format!("<h1>{}</h1>\n", html(&heading));
    if records.is_empty() {
        let _ = writeln!(
            body,
            r#"<p class="notice">No builds{}{}. Send one with <code>ruchy-image build --server</code> or <code>POST /v1/builds</code>.</p>"#,
            status
                .map(|s| format!(" with status {}", s.name()))
                .unwrap_or_default(),
            if before.is_some() {
                " before that one"
            } else {
                ""
            }
        );
    } else {
        body.push_str(&builds_table(
            &records,
            "Newest first; sizes per preset (exact bytes in each tooltip)",
            &worker_names(&state).await,
        ));
    }
    let filter = status
        .map(|s| format!("status={}&", s.name()))
        .unwrap_or_default();
    let mut pager = Vec::new();
    if before.is_some() {
        pager.push(format!(
            r#"<a href="/{}">Newest builds</a>"#,
            status
                .map(|s| format!("?status={}", s.name()))
                .unwrap_or_default()
        ));
    }
    if records.len() as i64 == PAGE_SIZE {
        if let Some(last) = records.last() {
            pager.push(format!(
                r#"<a href="/?{filter}before={}" rel="next">Older builds</a>"#,
                percent_encode(&last.id)
            ));
        }
    }
    if !pager.is_empty() {
        let _ = writeln!(
            body,
            r#"<nav class="pager" aria-label="Pages">{}</nav>"#,
            pager.join(" ")
        );
    }
    render(
        StatusCode::OK,
        &Page {
            title: &heading,
            body,
            refresh: records.iter().any(|r| !r.status.is_final()),
            current: status.map_or(Nav::All, Nav::Status),
            logout: state.token.is_some(),
        },
    )
}

async fn build(State(state): Shared, UrlPath(id): UrlPath<String>) -> Response {
    let record = match state.queue.store.get(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error_page(
                &state,
                "Build not found",
                ApiError::NotFound(format!("There is no build {id}.")),
            )
        }
        Err(e) => return store_error(&state, e),
    };
    render(
        StatusCode::OK,
        &Page {
            title: &format!("Build {}", record.id),
            body: build_body(&record, &worker_names(&state).await),
            refresh: false,
            current: Nav::None,
            logout: state.token.is_some(),
        },
    )
}

fn build_body(record: &BuildRecord, names: &WorkerNames) -> String {
    let id = html(&record.id);
    let id_url = percent_encode(&record.id);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<h1>Build <code>{id}</code> {}</h1>"#,
        status_badge(record.status)
    );
    let mut summary = vec![
        ("Status", status_badge(record.status)),
        ("Project", project_link(&record.project)),
        ("Created", time(&record.created_at)),
        (
            "Started",
            record.started_at.as_deref().map_or("—".into(), time),
        ),
        (
            "Finished",
            record.finished_at.as_deref().map_or("—".into(), time),
        ),
        ("Duration", html(&duration(record))),
        ("Attempts", record.attempts.to_string()),
    ];
    if let Some(worker) = &record.worker {
        summary.push(("Worker", worker_label(worker, names)));
    }
    summary.push((
        "Source",
        format!("<code>{}</code>", html(&record.source_digest)),
    ));
    let options = record
        .options
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(","),
                        other => other.to_string(),
                    };
                    format!("<code>{}={}</code>", html(k), html(&v))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    summary.push(("Options", options));
    if let Some(stages) = record.stages.as_object().filter(|s| !s.is_empty()) {
        let text = stages
            .iter()
            .map(|(k, v)| {
                let ms = v.as_u64().unwrap_or(0);
                format!(
                    r#"{} <span title="{} ms">{}</span>"#,
                    html(k),
                    grouped(ms),
                    human_ms(ms)
                )
            })
            .collect::<Vec<_>>()
            .join(" · ");
        summary.push(("Stages", text));
    }
    out.push_str("<dl class=\"summary\">\n");
    for (term, value) in summary {
        let _ = writeln!(out, "<dt>{term}</dt><dd>{value}</dd>");
    }
    out.push_str("</dl>\n");

    if let Some(error) = &record.error {
        let _ = writeln!(
            out,
            r#"<section class="build-error" aria-labelledby="error-heading"><h2 id="error-heading">Error{}</h2><pre>{}</pre></section>"#,
            error
                .stage
                .as_deref()
                .map(|s| format!(" in stage <code>{}</code>", html(s)))
                .unwrap_or_default(),
            html(&error.message)
        );
    }

    let results = preset_results(record);
    out.push_str(
        r#"<section aria-labelledby="results-heading"><h2 id="results-heading">Results</h2>"#,
    );
    if results.is_empty() {
        let _ = writeln!(
            out,
            r#"<p class="notice" id="no-results">No results yet{}.</p>"#,
            if record.status.is_final() {
                ""
            } else {
                ": they appear when the build ends"
            }
        );
    } else {
        out.push_str(
            r#"<div class="table-wrap"><table class="results"><caption>Per preset (exact bytes in each tooltip)</caption>
<thead><tr><th scope="col">Preset</th><th scope="col" class="num">Binary</th><th scope="col" class="num">Image (stored)</th><th scope="col" class="num">Image (unpacked)</th><th scope="col" class="num">Layers</th><th scope="col" class="num">Compile</th><th scope="col">Linkage</th><th scope="col">Image digest</th><th scope="col">Download</th></tr></thead>
<tbody>
"#,
        );
        for result in &results {
            let preset = html(&result.preset);
            if let Some(error) = result.error {
                let _ = writeln!(
                    out,
                    r#"<tr data-preset="{preset}"><th scope="row">{preset}</th><td colspan="8" class="failed">failed: {}</td></tr>"#,
                    html(error)
                );
                continue;
            }
            let size = |field: &str, path: &[&str]| {
                result
                    .number(path)
                    .map_or("—".into(), |b| size_span(&result.preset, field, b))
            };
            let text = |path: &[&str]| {
                path.iter()
                    .try_fold(result.record, |v, key| v.get(key))
                    .and_then(Value::as_str)
                    .map(html)
                    .unwrap_or_default()
            };
            let digest = text(&["image", "digest"]);
            let download = percent_encode(&result.download);
            let short = digest.strip_prefix("sha256:").map_or(digest.clone(), |h| {
                format!("sha256:{}…", &h[..h.len().min(12)])
            });
            let _ = writeln!(
                out,
                r#"<tr data-preset="{preset}"><th scope="row">{preset}</th><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{} {}</td><td><code title="{digest}">{short}</code></td><td><a href="/v1/builds/{id_url}/image?preset={download}" download>{download}.tar</a></td></tr>"#,
                size("binary_size", &["binary_size"]),
                size("image_size", &["image", "compressed_size"]),
                size("image_unpacked", &["image", "uncompressed_size"]),
                result
                    .number(&["image", "layer_count"])
                    .map_or("—".into(), |n| n.to_string()),
                result
                    .number(&["compile_time_ms"])
                    .map_or("—".into(), |ms| format!(
                        r#"<span title="{} ms">{}</span>"#,
                        grouped(ms),
                        human_ms(ms)
                    )),
                text(&["linkage"]),
                text(&["libc"]),
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
    }
    out.push_str("</section>\n");

    let live = !record.status.is_final();
    let _ = write!(
        out,
        r#"<section aria-labelledby="log-heading"><h2 id="log-heading">Log</h2>
<p class="log-state"><span id="log-status" aria-live="polite">{}</span> <a href="/v1/builds/{id_url}/log">Plain text</a></p>
<pre id="log" tabindex="0" data-src="/v1/builds/{id_url}/log?follow=true" data-live="{live}" aria-label="Build log"></pre>
</section>
"#,
        if live {
            "Following the build's output as it runs…"
        } else {
            "Loading…"
        }
    );
    out
}

async fn project(State(state): Shared, UrlPath(name): UrlPath<String>) -> Response {
    let records = match state.queue.store.project_builds(&name, HISTORY).await {
        Ok(records) => records,
        Err(e) => return store_error(&state, e),
    };
    if records.is_empty() {
        return error_page(
            &state,
            "Project not found",
            ApiError::NotFound(format!("No build of a project named {name}.")),
        );
    }
    let mut body = format!(
        "<h1>Project <code>{}</code></h1>\n<p>Its last {} build(s); sizes per preset over the builds that produced some.</p>\n",
        html(&name),
        records.len()
    );
    body.push_str(&history_charts(&records));
    if let Some(latest) = records
        .iter()
        .find(|r| r.status == Status::Success && !preset_results(r).is_empty())
    {
        let _ = writeln!(
            body,
            r#"<figure class="chart"><div class="svg-wrap">{}</div><figcaption>Presets of the latest successful build, <a href="/builds/{}"><code>{}</code></a>.</figcaption></figure>"#,
            chart::svg(&comparison(&name, latest)),
            percent_encode(&latest.id),
            html(&latest.id)
        );
    }
    body.push_str(&builds_table(
        &records,
        "The project's builds, newest first",
        &worker_names(&state).await,
    ));
    render(
        StatusCode::OK,
        &Page {
            title: &format!("Project {name}"),
            body,
            refresh: records.iter().any(|r| !r.status.is_final()),
            current: Nav::None,
            logout: state.token.is_some(),
        },
    )
}

/// Binary and image size per preset over the builds (oldest first) that have results.
fn history_charts(newest_first: &[BuildRecord]) -> String {
    let builds: Vec<&BuildRecord> = newest_first
        .iter()
        .rev()
        .filter(|r| {
            preset_results(r)
                .iter()
                .any(|p| p.number(&["binary_size"]).is_some())
        })
        .collect();
    if builds.is_empty() {
        return "<p class=\"notice\">No build of this project has produced an image yet.</p>\n"
            .into();
    }
    let mut presets: Vec<String> = Vec::new();
    for build in &builds {
        for result in preset_results(build) {
            if !presets.contains(&result.preset) {
                presets.push(result.preset);
            }
        }
    }
    let labels: Vec<String> = (1..=builds.len()).map(|n| n.to_string()).collect();
    let mut out = String::new();
    for (title, path, kind) in [
        (
            "Binary size per preset",
            &["binary_size"][..],
            "binary_size",
        ),
        (
            "Image size per preset (stored, compressed)",
            &["image", "compressed_size"][..],
            "image_size",
        ),
    ] {
        let series: Vec<chart::Series> = presets
            .iter()
            .map(|preset| chart::Series {
                name: preset.clone(),
                values: builds
                    .iter()
                    .map(|build| {
                        preset_results(build)
                            .iter()
                            .find(|r| &r.preset == preset)
                            .and_then(|r| r.number(path))
                    })
                    .collect(),
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<figure class="chart" data-chart="{kind}"><div class="svg-wrap">{}</div><figcaption>{title}: x is the project's builds, oldest (1) to newest ({}); hover a point for its exact bytes.</figcaption></figure>"#,
            chart::history_svg(title, &labels, &series),
            builds.len()
        );
    }
    out
}

/// The latest build's results as a [`crate::compare::Comparison`], for the bar chart.
fn comparison(project: &str, record: &BuildRecord) -> crate::compare::Comparison {
    let outcomes = preset_results(record)
        .into_iter()
        .filter_map(|r| {
            let preset = r.preset.parse().ok()?;
            let result = match r.error {
                Some(message) => Err(crate::Error::Remote {
                    message: message.to_string(),
                }),
                None => {
                    serde_json::from_value(r.record.clone()).map_err(|e| crate::Error::Remote {
                        message: e.to_string(),
                    })
                }
            };
            Some(crate::compare::Outcome { preset, result })
        })
        .collect();
    crate::compare::Comparison {
        source: project.to_string(),
        outcomes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_both_quotes() {
        assert_eq!(
            html(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(html("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn login_only_returns_to_local_paths() {
        assert_eq!(local_path("/builds/b1?x=1"), "/builds/b1?x=1");
        for outside in ["https://evil.example/", "//evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(outside), "/", "{outside}");
        }
    }

    fn record(id: &str, status: Status, results: Value) -> BuildRecord {
        BuildRecord {
            id: id.into(),
            status,
            project: "fib<&>.rs".into(),
            created_at: "2026-01-02T03:04:05.678Z".into(),
            started_at: Some("2026-01-02T03:04:06.000Z".into()),
            finished_at: Some("2026-01-02T03:05:16.500Z".into()),
            options: serde_json::json!({"optimize": ["aggressive", "size"]}),
            source_digest: "sha256:00".into(),
            stages: serde_json::json!({"compile": 1500}),
            error: None,
            results,
            attempts: 1,
            worker: Some("w0123".into()),
            source_path: String::new(),
            images: Default::default(),
        }
    }

    fn result(preset: &str, binary: u64, image: u64) -> Value {
        serde_json::json!({
            "optimization_level": preset,
            "binary_size": binary,
            "compile_time_ms": 1234,
            "image": {"compressed_size": image, "layer_count": 2, "digest": "sha256:abcdef0123456789"},
        })
    }

    #[test]
    fn the_table_shows_sizes_with_exact_bytes_and_escapes_names() {
        let records = [
            record(
                "b1",
                Status::Success,
                serde_json::json!([
                    result("aggressive", 376_944, 180_001),
                    {"preset": "size", "error": "<boom>"}
                ]),
            ),
            record("b2", Status::Queued, Value::Array(vec![])),
        ];
        let table = builds_table(&records, "caption & more", &WorkerNames::new());
        assert!(table.contains("<caption>caption &amp; more</caption>"));
        assert!(table.contains(
            r#"<span data-preset="aggressive" data-field="binary_size" data-bytes="376944" title="376,944 bytes">368.1 KiB</span>"#
        ), "{table}");
        assert!(
            table.contains(r#"data-field="image_size" data-bytes="180001" title="180,001 bytes""#)
        );
        assert!(table.contains(r#"<span class="failed" title="&lt;boom&gt;">failed</span>"#));
        assert!(table.contains(r#"<a href="/projects/fib%3C%26%3E.rs">fib&lt;&amp;&gt;.rs</a>"#));
        assert!(!table.contains("<boom>") && !table.contains("fib<&>"));
        assert!(table.contains(
            r#"<th scope="row"><a class="build-link" href="/builds/b1"><code>b1</code></a></th>"#
        ));
        // Status in words, not only colour; the queued build lists the presets it asked for.
        assert!(table.contains("</span> success</span>"));
        assert!(table.contains("</span> queued</span>"));
        assert!(table.contains("<li>size</li></ul>"));
        assert!(table.contains(">1 min 10 s</td>"), "{table}");
    }

    #[test]
    fn the_project_charts_have_a_point_per_build_and_preset() {
        let newest_first = [
            record(
                "b3",
                Status::Success,
                serde_json::json!([result("aggressive", 300, 900), result("size", 200, 800)]),
            ),
            record("b2", Status::Queued, Value::Array(vec![])),
            record(
                "b1",
                Status::Success,
                serde_json::json!([result("aggressive", 400, 1000)]),
            ),
        ];
        let charts = history_charts(&newest_first);
        assert_eq!(charts.matches("<svg").count(), 2);
        assert_eq!(
            charts.matches("<polyline").count(),
            4,
            "two presets, two charts"
        );
        // b1 and b3 have results: aggressive twice and size once, per chart.
        assert_eq!(charts.matches("<circle").count(), 6);
        assert!(charts.contains("<title>aggressive, build 1: 400 B (400 bytes)</title>"));
        assert!(charts.contains("<title>size, build 2: 800 B (800 bytes)</title>"));
    }

    #[test]
    fn an_index_result_is_a_row_per_platform_that_downloads_its_preset() {
        let mut arm = result("size", 397_496, 176_000);
        arm["image"]["architecture"] = "arm64".into();
        let mut amd = result("size", 373_464, 179_000);
        amd["image"]["architecture"] = "amd64".into();
        let index = serde_json::json!([{"digest": "sha256:11", "platforms": [amd, arm]}]);
        let page = build_body(&record("b7", Status::Success, index), &WorkerNames::new());
        for (platform, bytes) in [("linux/amd64", 373_464), ("linux/arm64", 397_496)] {
            assert!(page.contains(&format!("size {platform}")), "{page}");
            assert!(page.contains(&format!(r#"data-bytes="{bytes}""#)), "{page}");
        }
        assert_eq!(
            page.matches(r#"href="/v1/builds/b7/image?preset=size""#)
                .count(),
            2,
            "{page}"
        );
    }

    #[test]
    fn the_build_page_follows_the_log_only_while_the_build_runs() {
        let running = build_body(
            &record("b9", Status::Working, Value::Array(vec![])),
            &WorkerNames::new(),
        );
        assert!(running.contains(
            r#"<pre id="log" tabindex="0" data-src="/v1/builds/b9/log?follow=true" data-live="true""#
        ));
        assert!(running.contains(r#"id="no-results""#));
        let names = WorkerNames::from([("w0123".to_string(), "builder-1".to_string())]);
        let done = build_body(
            &record(
                "b9",
                Status::Success,
                serde_json::json!([result("aggressive", 376_944, 180_001)]),
            ),
            &names,
        );
        assert!(done.contains(r#"data-live="false""#));
        assert!(done.contains(r#"<span title="worker w0123">builder-1</span>"#));
        assert!(done.contains(
            r#"<a href="/v1/builds/b9/image?preset=aggressive" download>aggressive.tar</a>"#
        ));
    }
}
