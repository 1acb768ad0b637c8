//! The web dashboard: server-rendered HTML pages over the same build records the API answers
//! with. `/` lists builds, `/builds/{id}` shows one with its live log, `/projects/{name}`
//! charts a project's sizes over its builds. One stylesheet and one small script, served from
//! the binary: no CDN, no external font, works offline. With a token, the pages want it once
//! through `/login`, which keeps it in an `HttpOnly`, `SameSite=Strict` cookie that `/v1`
//! also accepts (the page's script reads the log through the API). The handlers here read
//! the store and answer; `views` turns records into what the templates lay out.

mod views;

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

use super::auth::{self, same};
use super::error::ApiError;
use super::state::{AppState, Shared};
use super::store::Status;
#[cfg(test)]
use views::{build_body, builds_table, history_charts};
use views::{Nav, WorkerNames};

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

/// What a URL query value keeps as it is: the unreserved characters (RFC 3986); everything
/// else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    let here = utf8_percent_encode(&here, COMPONENT);
    Redirect::to(&format!("/login?next={here}")).into_response()
}

/// Where to go after logging in: a path on this server, else `/`. Browsers drop tabs and
/// newlines from a URL (`/\t/evil.example` is `//evil.example`, another site) and read `\`
/// as `/`, so only visible ASCII passes.
fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
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
    render(
        status,
        &Page {
            title: "Log in",
            body: views::login_body(local_path(next), message),
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
    let mut response = Redirect::to(local_path(&form.next)).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::login_cookie(token)) {
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

struct Page<'a> {
    title: &'a str,
    body: String,
    /// Reload every few seconds (something on it is still queued or working).
    refresh: bool,
    current: Nav,
    logout: bool,
}

fn render(status: StatusCode, page: &Page) -> Response {
    let text = views::layout(
        page.title,
        &page.body,
        page.refresh,
        page.current,
        page.logout,
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

fn message_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &Page {
            title,
            body: views::message_body(title, message),
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

/// `GET /workers`: the workers on this database, whether they answer, and what they run.
async fn workers(State(state): Shared) -> Response {
    let workers = match state.queue.store.workers().await {
        Ok(workers) => workers,
        Err(e) => return store_error(&state, e),
    };
    let silent_before =
        humantime::format_rfc3339_millis(SystemTime::now() - state.heartbeat_timeout).to_string();
    render(
        StatusCode::OK,
        &Page {
            title: "Workers",
            body: views::workers_body(&workers, &silent_before),
            refresh: workers.iter().any(|(_, builds)| !builds.is_empty()),
            current: Nav::Workers,
            logout: state.token.is_some(),
        },
    )
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
            Err(e) => return error_page(&state, "No such status", ApiError::BadRequest(e)),
        },
    };
    let before = query.before.as_deref().filter(|b| !b.is_empty());
    let records = match state.queue.store.list(status, PAGE_SIZE, before).await {
        Ok(records) => records,
        Err(e) => return store_error(&state, e),
    };
    let heading = match status {
        Some(s) => format!("{} builds", views::heading_of(s)),
        None => "Builds".to_string(),
    };
    let table = match records.is_empty() {
        true => None,
        false => Some(views::builds_table(
            &records,
            "Newest first; sizes per preset (exact bytes in each tooltip)",
            &worker_names(&state).await,
        )),
    };
    let older = match records.len() as i64 == PAGE_SIZE {
        true => records.last().map(|last| last.id.as_str()),
        false => None,
    };
    render(
        StatusCode::OK,
        &Page {
            title: &heading,
            body: views::builds_body(&heading, status, table, before.is_some(), older),
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
            let missing = ApiError::NotFound(format!("There is no build {id}."));
            return error_page(&state, "Build not found", missing);
        }
        Err(e) => return store_error(&state, e),
    };
    render(
        StatusCode::OK,
        &Page {
            title: &format!("Build {}", record.id),
            body: views::build_body(&record, &worker_names(&state).await),
            refresh: false,
            current: Nav::None,
            logout: state.token.is_some(),
        },
    )
}

async fn project(State(state): Shared, UrlPath(name): UrlPath<String>) -> Response {
    let records = match state.queue.store.project_builds(&name, HISTORY).await {
        Ok(records) => records,
        Err(e) => return store_error(&state, e),
    };
    if records.is_empty() {
        let missing = ApiError::NotFound(format!("No build of a project named {name}."));
        return error_page(&state, "Project not found", missing);
    }
    render(
        StatusCode::OK,
        &Page {
            title: &format!("Project {name}"),
            body: views::project_body(&name, &records, &worker_names(&state).await),
            refresh: records.iter().any(|r| !r.status.is_final()),
            current: Nav::None,
            logout: state.token.is_some(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metrics::{sample_record, Built, IndexRecord};
    use crate::core::preset::Preset;
    use crate::shells::serve::store::{BuildRecord, PresetResult};

    #[test]
    fn pages_escape_markup_and_both_quotes() {
        let page = views::message_body("plain ünïcode", r#"<a href="x" title='y'>&amp;</a>"#);
        assert!(
            page.contains("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"),
            "{page}"
        );
        assert!(page.contains("<h1>plain ünïcode</h1>"), "{page}");
    }

    #[test]
    fn login_only_returns_to_local_paths() {
        assert_eq!(local_path("/builds/b1?x=1"), "/builds/b1?x=1");
        for outside in ["https://evil.example/", "//evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(outside), "/", "{outside}");
        }
    }

    fn record(id: &str, status: Status, results: Vec<PresetResult>) -> BuildRecord {
        BuildRecord {
            id: id.into(),
            status,
            project: "fib<&>.rs".into(),
            created_at: "2026-01-02T03:04:05.678Z".into(),
            started_at: Some("2026-01-02T03:04:06.000Z".into()),
            finished_at: Some("2026-01-02T03:05:16.500Z".into()),
            request: crate::pipeline::plan::Request {
                presets: vec![Preset::Aggressive, Preset::Size],
                ..Default::default()
            },
            source_digest: "sha256:00".into(),
            stages: [("compile".to_string(), 1500)].into(),
            error: None,
            results,
            attempts: 1,
            worker: Some("w0123".into()),
            expired_at: None,
            source_path: String::new(),
            images: Default::default(),
        }
    }

    fn result(preset: Preset, binary: u64, image: u64) -> PresetResult {
        PresetResult::Built(Built::Image(Box::new(sample_record(preset, binary, image))))
    }

    #[test]
    fn the_table_shows_sizes_with_exact_bytes_and_escapes_names() {
        let records = [
            record(
                "b1",
                Status::Success,
                vec![
                    result(Preset::Aggressive, 376_944, 180_001),
                    PresetResult::Failed {
                        preset: Preset::Size,
                        error: "<boom>".into(),
                    },
                ],
            ),
            record("b2", Status::Queued, Vec::new()),
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
                vec![
                    result(Preset::Aggressive, 300, 900),
                    result(Preset::Size, 200, 800),
                ],
            ),
            record("b2", Status::Queued, Vec::new()),
            record(
                "b1",
                Status::Success,
                vec![result(Preset::Aggressive, 400, 1000)],
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
        let mut arm = sample_record(Preset::Size, 397_496, 176_000);
        arm.image.architecture = "arm64".into();
        let amd = sample_record(Preset::Size, 373_464, 179_000);
        let index = PresetResult::Built(Built::Index(Box::new(IndexRecord {
            schema: crate::core::metrics::SCHEMA_VERSION,
            reference: "fibonacci:size".into(),
            digest: "sha256:11".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            loaded_platform: "linux/amd64".into(),
            platforms: vec![amd, arm],
            outputs: Vec::new(),
            server: None,
        })));
        let mut build = record("b7", Status::Success, vec![index]);
        build.images = [(
            "size".to_string(),
            "127.0.0.1:5000/builds@sha256:11".to_string(),
        )]
        .into();
        let page = build_body(&build, &WorkerNames::new());
        // Where the image is: the artifact registry's repository and digest.
        assert!(
            page.contains(r#"<code>size</code> <code class="location" data-preset="size">127.0.0.1:5000/builds@sha256:11</code>"#),
            "{page}"
        );
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
        // Deleted by retention: it says when, and offers no download.
        build.expired_at = Some("2026-02-03T04:05:06.000Z".into());
        let page = build_body(&build, &WorkerNames::new());
        assert!(page.contains("127.0.0.1:5000/builds@sha256:11"), "{page}");
        assert!(
            page.contains(
                r#"<span class="expired">deleted <time datetime="2026-02-03T04:05:06.000Z""#
            ),
            "{page}"
        );
        assert!(!page.contains("/v1/builds/b7/image"), "{page}");
        // In the data dir of a service without a registry.
        build.expired_at = None;
        build.images = [("size".to_string(), "sha256:22".to_string())].into();
        let page = build_body(&build, &WorkerNames::new());
        assert!(
            page.contains("sha256:22 in this service&#39;s data dir"),
            "{page}"
        );
    }

    #[test]
    fn the_build_page_follows_the_log_only_while_the_build_runs() {
        let running = build_body(
            &record("b9", Status::Working, Vec::new()),
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
                vec![result(Preset::Aggressive, 376_944, 180_001)],
            ),
            &names,
        );
        assert!(done.contains(r#"data-live="false""#));
        assert!(done.contains(r#"<span title="worker w0123">builder-1</span>"#));
        assert!(done.contains(
            r#"<a href="/v1/builds/b9/image?preset=aggressive" download>aggressive.tar</a>"#
        ));
    }

    /// Every number and word a preset's row shows comes from its field of the typed record:
    /// each field gets a value no other has, and the pages must show exactly that value.
    #[test]
    fn every_shown_cell_is_read_from_its_field_of_the_record() {
        let mut built = sample_record(Preset::Balanced, 376_944, 180_001);
        built.image.uncompressed_size = 391_234;
        built.image.layer_count = 7;
        built.compile_time_ms = 4_321;
        built.linkage = "dynamic".into();
        built.libc = "musl".into();
        built.image.digest = format!("sha256:0123456789ab{}", "c".repeat(52));
        let mut build = record(
            "b5",
            Status::Success,
            vec![PresetResult::Built(Built::Image(Box::new(built.clone())))],
        );
        build.stages = [("assemble".to_string(), 2_468)].into();

        let page = build_body(&build, &WorkerNames::new());
        for cell in [
            r#"<tr data-preset="balanced"><th scope="row">balanced</th>"#,
            r#"data-preset="balanced" data-field="binary_size" data-bytes="376944""#,
            r#"data-preset="balanced" data-field="image_size" data-bytes="180001""#,
            r#"data-preset="balanced" data-field="image_unpacked" data-bytes="391234""#,
            r#"<td class="num">7</td>"#,
            r#"<span title="4,321 ms">4.3 s</span>"#,
            "<td>dynamic musl</td>",
            r#"title="sha256:0123456789abcccc"#,
            ">sha256:0123456789ab…</code>",
            r#"href="/v1/builds/b5/image?preset=balanced""#,
            r#"assemble <span title="2,468 ms">2.5 s</span>"#,
        ] {
            assert!(page.contains(cell), "{cell} in {page}");
        }

        let table = builds_table(&[build], "", &WorkerNames::new());
        for cell in [
            "<li>balanced</li>",
            r#"data-preset="balanced" data-field="binary_size" data-bytes="376944""#,
            r#"data-preset="balanced" data-field="image_size" data-bytes="180001""#,
            r#"data-preset="balanced" data-field="layers">7</span>"#,
            r#"data-preset="balanced" data-field="compile_time_ms" title="4,321 ms">4.3 s</span>"#,
        ] {
            assert!(table.contains(cell), "{cell} in {table}");
        }

        // Over a budget, the record's own error is shown, not its numbers.
        built.error = Some("balanced: binary is 376944 bytes, over the budget".into());
        let over = record(
            "b6",
            Status::Success,
            vec![PresetResult::Built(Built::Image(Box::new(built)))],
        );
        let page = build_body(&over, &WorkerNames::new());
        assert!(
            page.contains(r#"<td colspan="8" class="failed">failed: balanced: binary is 376944 bytes, over the budget</td>"#),
            "{page}"
        );
    }
}
