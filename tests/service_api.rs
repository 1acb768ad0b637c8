//! The service in-process: `serve::spawn_app` starts the real router, store and workers on a
//! free loopback port with a data dir of the test's own (and a PostgreSQL database of its own
//! for `postgres::NAME`), and plain HTTP checks what the API answers when things go wrong and
//! who it lets in: error statuses and bodies, the bearer token, the login cookie and the
//! same-origin rule for requests that change something.

mod common;
mod guards;
#[macro_use]
mod service;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruchy_image::event::{Event, Events};
use ruchy_image::shells::serve::{spawn_app, RunningApp, ServeOptions};
use service::*;

on_both_backends!(
    api_errors_have_their_status_and_a_500_hides_its_cause,
    a_finished_build_reads_as_existing_clients_expect,
    the_api_wants_the_token_and_the_cookie_only_from_this_server_s_pages,
);

/// The service running in this process, and what it said.
struct App {
    running: Option<RunningApp>,
    url: String,
    database: Option<String>,
    data: std::path::PathBuf,
    said: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
    _leftovers: Leftovers,
}

/// Starts the service on port 0 with `data` as its data dir and the tests' token.
async fn spawn(dir: &std::path::Path, database: Option<String>) -> App {
    let (data, leftovers) = data_dir(dir);
    let said = Arc::new(Mutex::new(Vec::new()));
    let events = {
        let said = said.clone();
        Events::new(move |event| {
            if let Event::Note { message } | Event::Warning { message } = event {
                said.lock().unwrap().push(message);
            }
        })
    };
    let options = ServeOptions {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        token: Some(TOKEN.into()),
        timeout: Duration::from_secs(600),
        max_upload: 64 << 20,
        shutdown_timeout: Duration::from_secs(10),
        builder_image: Some(guards::builder_image()),
        database: database.clone(),
        artifacts: artifacts_for(database.is_some()),
        ..Default::default()
    };
    let running = spawn_app(options, events)
        .await
        .expect("the service starts");
    App {
        url: format!("http://{}", running.addr),
        running: Some(running),
        database,
        data,
        said,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _leftovers: leftovers,
    }
}

/// An answer: status, body and the headers asked about.
struct Reply {
    status: u16,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

impl App {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer.text().await.unwrap();
        Reply {
            status,
            body,
            headers,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// With the bearer token.
    async fn api(&self, method: reqwest::Method, path: &str) -> Reply {
        self.send(self.request(method, path).bearer_auth(TOKEN))
            .await
    }

    async fn stop(mut self) {
        self.running.take().unwrap().stop().await;
    }
}

/// How the login form posts.
const FORM: &str = "application/x-www-form-urlencoded";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The database of the test's data dir, for the current backend.
fn database_of(data: &std::path::Path) -> Option<String> {
    (backend() == Backend::Postgres).then(|| database_for(data))
}

fn api_errors_have_their_status_and_a_500_hides_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_of(&dir.path().join("data"));
    let context = fibonacci_context(&dir.path().join("fib"));
    let tar = std::fs::read(context.path()).unwrap();
    runtime().block_on(async {
        let app = spawn(dir.path(), database).await;
        use reqwest::Method;

        // 404 for what is not there, with what was asked for.
        let missing = app.api(Method::GET, "/v1/builds/bnothing").await;
        assert_eq!(missing.status, 404, "{}", missing.body);
        assert_eq!(missing.json()["error"], "no build bnothing");
        // 400 for a bad query, a bad option, a body that is no context.
        let status = app.api(Method::GET, "/v1/builds?status=bogus").await;
        assert_eq!(status.status, 400, "{}", status.body);
        assert!(status.json()["error"].as_str().unwrap().contains("bogus"));
        let option = app
            .send(
                app.request(Method::POST, "/v1/builds?optimize=fastest")
                    .bearer_auth(TOKEN)
                    .body(tar.clone()),
            )
            .await;
        assert_eq!(option.status, 400, "{}", option.body);
        assert!(option.json()["error"].as_str().unwrap().contains("fastest"));
        let not_a_tar = app
            .send(
                app.request(Method::POST, "/v1/builds")
                    .bearer_auth(TOKEN)
                    .body("<html>not a tar</html>"),
            )
            .await;
        assert_eq!(not_a_tar.status, 400, "{}", not_a_tar.body);
        let listed = app.api(Method::GET, "/v1/builds").await;
        assert_eq!(
            listed.json()["builds"],
            serde_json::json!([]),
            "nothing recorded"
        );

        // 409 for cancelling what has ended; 404 for the image it never made.
        let accepted = app
            .send(
                app.request(Method::POST, "/v1/builds?optimize=aggressive")
                    .bearer_auth(TOKEN)
                    .body(tar.clone()),
            )
            .await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        let id = accepted.json()["id"].as_str().unwrap().to_string();
        let cancelled = app
            .api(Method::POST, &format!("/v1/builds/{id}/cancel"))
            .await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.body);
        let ended = cancelled.json()["status"].as_str().unwrap().to_string();
        assert!(
            ["cancelled", "success", "failure"].contains(&ended.as_str()),
            "{}",
            cancelled.body
        );
        let again = app
            .api(Method::POST, &format!("/v1/builds/{id}/cancel"))
            .await;
        assert_eq!(again.status, 409, "{}", again.body);
        assert_eq!(
            again.json()["error"],
            format!("build {id} has already ended ({ended})")
        );
        if ended == "cancelled" {
            let image = app
                .api(Method::GET, &format!("/v1/builds/{id}/image"))
                .await;
            assert_eq!(image.status, 404, "{}", image.body);
        }

        // 500 when the store fails: the caller learns that it failed, the log learns why.
        break_the_store(&app).await;
        let broken = app.api(Method::GET, "/v1/builds").await;
        assert_eq!(broken.status, 500, "{}", broken.body);
        let error = broken.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with("internal error"), "{error}");
        for internal in ["builds", "sqlite", "postgres", "relation", "table"] {
            assert!(!error.contains(internal), "{error} shows {internal}");
        }
        let logged = app.said.lock().unwrap().clone();
        assert!(
            logged
                .iter()
                .any(|m| m.starts_with("a request failed:") && m.contains("builds")),
            "{logged:?}"
        );
        // The dashboard shares the error: the same status, the same silence about its cause.
        let page = app
            .send(
                app.request(Method::GET, "/")
                    .header("cookie", format!("ruchy_image_token={TOKEN}")),
            )
            .await;
        assert_eq!(page.status, 500, "{}", page.body);
        assert!(
            page.body.contains("Cannot read the builds"),
            "{}",
            page.body
        );
        assert!(page.body.contains("internal error"), "{}", page.body);
        assert!(!page.body.contains("no such table") && !page.body.contains("does not exist"));
        app.stop().await;
    });
}

/// What a worker recorded for a build of four presets (`tests/fixtures/service/results.json`:
/// one image, an index over two platforms, an image over its budget, a preset that failed),
/// and its stage times.
fn finished_outcome() -> ruchy_image::shells::serve::store::Outcome {
    let results = std::fs::read_to_string("tests/fixtures/service/results.json").unwrap();
    ruchy_image::shells::serve::store::Outcome {
        stages: [
            ("prepare".to_string(), 12),
            ("compile".to_string(), 17332),
            ("assemble".to_string(), 1400),
            ("publish".to_string(), 40),
        ]
        .into(),
        results: serde_json::from_str(&results).unwrap(),
        images: [(
            "aggressive".to_string(),
            format!("sha256:{}", "6".repeat(64)),
        )]
        .into(),
        error: Some(ruchy_image::shells::serve::store::BuildError {
            message: "compiling fibonacci (none preset) failed".into(),
            stage: Some("compile".into()),
            usage: false,
        }),
    }
}

/// The API's JSON for a finished build (`GET /v1/builds/{id}` and the list) is what existing
/// clients read: `tests/fixtures/service/build.json`, with its ID, times and worker replaced.
fn a_finished_build_reads_as_existing_clients_expect() {
    use ruchy_image::shells::serve::store::{NewBuild, Status, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let database = database_of(&data);
    let body = dir.path().join("context.tar.gz");
    std::fs::write(&body, b"a context").unwrap();
    runtime().block_on(async {
        // Recorded as a worker records it, before the service (and its worker) starts.
        let store = Store::open(&data, database.as_deref()).await.unwrap();
        let new = NewBuild {
            id: "b0000000000000000000000".into(),
            project: "fibonacci.rs".into(),
            // As the API keeps what `?optimize=…` asked for.
            request: ruchy_image::shells::serve::request::from_query(&[(
                "optimize".into(),
                "aggressive,size,balanced,none".into(),
            )])
            .unwrap(),
            source_digest: format!("sha256:{}", "0".repeat(64)),
            source_path: "fibonacci.rs".into(),
        };
        store.insert(&new, &body).await.unwrap();
        let claimed = store.claim().await.unwrap().expect("the build is claimed");
        let outcome = finished_outcome();
        assert!(store
            .finish(&claimed, Status::Failure, &outcome)
            .await
            .unwrap());
        drop(store);

        let app = spawn(dir.path(), database).await;
        let shown = app
            .api(reqwest::Method::GET, &format!("/v1/builds/{}", new.id))
            .await;
        assert_eq!(shown.status, 200, "{}", shown.body);
        let listed = app.api(reqwest::Method::GET, "/v1/builds").await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let listed = listed.json();
        assert_eq!(listed["next_before"], serde_json::Value::Null, "{listed}");
        assert_eq!(listed["builds"], serde_json::json!([shown.json()]));

        let mut shown = shown.json();
        for (field, stand_in) in [
            ("created_at", "TIME"),
            ("started_at", "TIME"),
            ("finished_at", "TIME"),
            ("worker", "WORKER"),
        ] {
            assert!(shown[field].is_string(), "{field}: {shown}");
            shown[field] = stand_in.into();
        }
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string("tests/fixtures/service/build.json").unwrap(),
        )
        .unwrap();
        assert!(
            shown == expected,
            "the API's JSON changed; got:\n{}",
            serde_json::to_string_pretty(&shown).unwrap()
        );
        app.stop().await;
    });
}

/// Takes the builds table away under the running service, as a broken database would.
async fn break_the_store(app: &App) {
    use sqlx::Connection;
    let statement = "ALTER TABLE builds RENAME TO builds_gone";
    match &app.database {
        Some(url) => {
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(statement).execute(&mut db).await.unwrap();
        }
        None => {
            let url = format!("sqlite://{}", app.data.join("ruchy-image.db").display());
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(statement).execute(&mut db).await.unwrap();
        }
    }
}

fn the_api_wants_the_token_and_the_cookie_only_from_this_server_s_pages() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_of(&dir.path().join("data"));
    runtime().block_on(async {
        let app = spawn(dir.path(), database).await;
        use reqwest::Method;
        let cookie = format!("ruchy_image_token={TOKEN}");

        // No token, a wrong one, the right one; /healthz and /metrics need none.
        let anonymous = app.send(app.request(Method::GET, "/v1/builds")).await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.body);
        assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
        assert!(anonymous.json()["error"]
            .as_str()
            .unwrap()
            .contains("a bearer token is required"));
        let wrong = app
            .send(app.request(Method::GET, "/v1/builds").bearer_auth("nope"))
            .await;
        assert_eq!(wrong.status, 401);
        let almost = app
            .send(
                app.request(Method::GET, "/v1/builds")
                    .bearer_auth(&TOKEN[..TOKEN.len() - 1]),
            )
            .await;
        assert_eq!(almost.status, 401);
        assert_eq!(app.api(Method::GET, "/v1/builds").await.status, 200);
        for open in ["/healthz", "/metrics", "/assets/dashboard.css"] {
            let answer = app.send(app.request(Method::GET, open)).await;
            assert_eq!(answer.status, 200, "{open}: {}", answer.body);
        }

        // The login cookie reads the API (the build page's script does)...
        let read = app
            .send(
                app.request(Method::GET, "/v1/builds")
                    .header("cookie", &cookie),
            )
            .await;
        assert_eq!(read.status, 200, "{}", read.body);
        // ...but changes nothing from another site's page.
        let cancel = "/v1/builds/bnothing/cancel";
        for (name, value) in [
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let forged = app
                .send(
                    app.request(Method::POST, cancel)
                        .header("cookie", &cookie)
                        .header(name, value),
                )
                .await;
            assert_eq!(forged.status, 403, "{name}: {}", forged.body);
            assert!(forged.json()["error"]
                .as_str()
                .unwrap()
                .contains("another site"));
        }
        // From this server's own page, or with the bearer token from anywhere, it goes on
        // (to the 404 of a build that is not there).
        let own = app
            .send(
                app.request(Method::POST, cancel)
                    .header("cookie", &cookie)
                    .header("origin", &app.url),
            )
            .await;
        assert_eq!(own.status, 404, "{}", own.body);
        let bearer = app
            .send(
                app.request(Method::POST, cancel)
                    .bearer_auth(TOKEN)
                    .header("origin", "https://evil.example"),
            )
            .await;
        assert_eq!(bearer.status, 404, "{}", bearer.body);

        // Pages: no cookie goes to the login form; a login posted from another site is
        // refused; one from the form sets the cookie the API accepts.
        let page = app.send(app.request(Method::GET, "/workers")).await;
        assert_eq!(page.status, 303);
        assert_eq!(page.headers["location"], "/login?next=%2Fworkers");
        let form = format!("token={TOKEN}&next=%2Fworkers");
        let forged_login = app
            .send(
                app.request(Method::POST, "/login")
                    .header("sec-fetch-site", "cross-site")
                    .header("content-type", FORM)
                    .body(form.clone()),
            )
            .await;
        assert_eq!(forged_login.status, 403, "{}", forged_login.body);
        assert!(forged_login.headers.get("set-cookie").is_none());
        let login = app
            .send(
                app.request(Method::POST, "/login")
                    .header("sec-fetch-site", "same-origin")
                    .header("content-type", FORM)
                    .body(form.clone()),
            )
            .await;
        assert_eq!(login.status, 303, "{}", login.body);
        assert_eq!(login.headers["location"], "/workers");
        let set = login.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let pair = set.split(';').next().unwrap().to_string();
        let workers = app
            .send(app.request(Method::GET, "/workers").header("cookie", &pair))
            .await;
        assert_eq!(workers.status, 200, "{}", workers.body);
        let wrong_login = app
            .send(
                app.request(Method::POST, "/login")
                    .header("content-type", FORM)
                    .body("token=nope&next=%2F"),
            )
            .await;
        assert_eq!(wrong_login.status, 401);
        assert!(wrong_login.headers.get("set-cookie").is_none());
        app.stop().await;
    });
}

#[test]
fn a_second_service_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let app = spawn(dir.path(), None).await;
        let second = spawn_app(
            ServeOptions {
                data_dir: app.data.clone(),
                listen: "127.0.0.1:0".parse().unwrap(),
                timeout: Duration::from_secs(60),
                queue_ttl: Duration::from_secs(60),
                max_upload: 1 << 20,
                shutdown_timeout: Duration::from_secs(1),
                ..Default::default()
            },
            Events::none(),
        )
        .await;
        let error = second.expect_err("one service per data dir");
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("one service per data dir"),
            "{error}"
        );
        app.stop().await;
    });
}
