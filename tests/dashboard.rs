//! The dashboard in a real browser: `ruchy-image serve` with real builds, Debian's Chromium
//! driven through ChromeDriver (WebDriver, with fantoccini). The pages must show exactly what
//! the API records, follow a running build's log live, chart a project's sizes, be usable
//! from the keyboard and log no console error. Screenshots are kept in
//! `target/test-artifacts/dashboard-*.png`; with `RUCHY_IMAGE_UPDATE_SCREENSHOT=1` the build
//! list's also replaces the README's `docs/dashboard.png`.

mod common;
mod guards;
mod service;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use service::*;

/// Where screenshots go: `target/test-artifacts/` (beside the target dir's `tmp`).
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// ChromeDriver on a free loopback port and one headless Chromium session through it, on a
/// fresh profile. Dropping it ends the session and kills ChromeDriver's process group (and
/// so any browser it left).
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    driver_url: String,
    session: String,
    /// The service's URL, without a trailing slash.
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(server: &Server) -> Browser {
        let port = common::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver runs (apt-get install chromium-driver; .ci/setup does)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1360,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let driver_url = format!("http://127.0.0.1:{port}");
        let client = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&driver_url),
            )
            .expect("a Chromium session");
        let session = runtime
            .block_on(client.session_id())
            .unwrap()
            .expect("a session ID");
        Browser {
            runtime,
            client: Some(client),
            driver,
            driver_url,
            session,
            base: server.url.trim_end_matches('/').to_string(),
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs a WebDriver command; a failure says where the page was and what it showed.
    fn run<T, E: std::fmt::Debug>(
        &self,
        what: &str,
        command: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match self.runtime.block_on(command) {
            Ok(value) => value,
            Err(e) => panic!("{what}: {e:?}\n{}", self.excerpt()),
        }
    }

    fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(&format!("opening {url}"), self.client().goto(&url));
    }

    fn path(&self) -> String {
        let url = self
            .runtime
            .block_on(self.client().current_url())
            .map(|u| u.path().to_string());
        url.unwrap_or_default()
    }

    /// Runs `script` in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.run(
            &format!("running {script}"),
            self.client().execute(script, vec![]),
        )
    }

    fn js_with(&self, script: &str, arg: &str) -> Value {
        self.run(
            &format!("running {script}"),
            self.client().execute(script, vec![json!(arg)]),
        )
    }

    /// The current URL and the start of the page's text and source, for failure messages.
    fn excerpt(&self) -> String {
        let Some(client) = &self.client else {
            return String::new();
        };
        let url = self
            .runtime
            .block_on(client.current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(no URL: {e})"));
        let source = self.runtime.block_on(client.source()).unwrap_or_default();
        let text = self
            .runtime
            .block_on(client.execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            ))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        format!(
            "--- page {url}\n--- text:\n{}\n--- source:\n{}\n---",
            cut(&text, 2000),
            cut(&source, 4000)
        )
    }

    /// Polls `ready` until it holds; fails with the page after `limit`.
    fn wait_until(&self, what: &str, limit: Duration, mut ready: impl FnMut(&Browser) -> bool) {
        let started = Instant::now();
        while !ready(self) {
            if started.elapsed() > limit {
                panic!("waited {limit:?} for {what}\n{}", self.excerpt());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The window, or with `whole_page` the page's body (cropped to its content).
    fn screenshot(&self, name: &str) -> PathBuf {
        self.screenshot_of(name, false)
    }

    fn screenshot_of(&self, name: &str, whole_page: bool) -> PathBuf {
        let png = if whole_page {
            let body = self.run("finding the body", self.client().find(Locator::Css("body")));
            self.run("taking a screenshot", body.screenshot())
        } else {
            self.run("taking a screenshot", self.client().screenshot())
        };
        let path = artifacts().join(format!("dashboard-{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    fn press_tab(&self) {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        self.run("pressing Tab", self.client().perform_actions(tab));
    }

    /// Logs in through the form: a wrong token is refused with a message, the right one
    /// lands on the page asked for.
    fn log_in(&self) {
        self.goto("/");
        assert_eq!(self.path(), "/login", "no cookie: sent to the login form");
        let submit = |token: &str| {
            let field = self.run(
                "finding the token field",
                self.client()
                    .find(Locator::Css("input#token[type=password]")),
            );
            self.run("typing the token", field.send_keys(token));
            let button = self.run(
                "finding the button",
                self.client()
                    .find(Locator::Css("form.login button[type=submit]")),
            );
            self.run("submitting", button.click());
        };
        submit("not-the-token");
        self.wait_until("the refusal", Duration::from_secs(10), |b| {
            b.js("return document.getElementById('login-error') !== null") == json!(true)
        });
        assert_eq!(self.path(), "/login");
        // The refusal is a 401, which the browser logs: that entry and no other.
        let errors = self.console_errors();
        assert!(
            errors.len() == 1
                && errors[0].contains(
                    "/login - Failed to load resource: the server responded with a status of 401"
                ),
            "{errors:#?}"
        );
        submit(TOKEN);
        self.wait_until("the build list", Duration::from_secs(10), |b| {
            b.path() == "/"
                && b.js("return document.querySelector('table.builds, p.notice') !== null")
                    == json!(true)
        });
    }

    /// The browser's log since the last call: every SEVERE entry (console errors, uncaught
    /// exceptions, failed loads, CSP violations).
    fn console_errors(&self) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST", "-H", "Content-Type: application/json"])
            .args(["-d", r#"{"type":"browser"}"#])
            .arg(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "the browser log ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let entries = answer["value"]
            .as_array()
            .unwrap_or_else(|| panic!("the browser log: {answer}"));
        entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn assert_no_console_errors(&self, after: &str) {
        let errors = self.console_errors();
        assert!(
            errors.is_empty(),
            "console errors after {after}: {errors:#?}\n{}",
            self.excerpt()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // SAFETY: signalling the process group we created for chromedriver.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

/// `curl` of a dashboard page with (or without) the login cookie: status and headers.
fn page(server: &Server, path: &str, cookie: Option<&str>) -> Answer {
    let mut args = vec![];
    let header;
    if let Some(cookie) = cookie {
        header = format!("Cookie: ruchy_image_token={cookie}");
        args.extend(["-H", header.as_str()]);
    }
    curl(server, "GET", path, &args, false)
}

fn preset_of(result: &Value) -> &str {
    result["optimization_level"]
        .as_str()
        .or(result["preset"].as_str())
        .unwrap()
}

/// The `data-bytes` of the list's or page's size cells for `preset` of build `id`.
fn sizes_shown(browser: &Browser, scope: &str, preset: &str, field: &str) -> (Value, Value) {
    let shown = browser.js_with(
        &format!(
            "const e = document.querySelector(`{scope} [data-preset=\"${{arguments[0]}}\"][data-field=\"{field}\"]`);
             return e ? [e.getAttribute('data-bytes'), e.getAttribute('title')] : null;"
        ),
        preset,
    );
    assert!(
        shown.is_array(),
        "no {field} of {preset} in {scope}\n{}",
        browser.excerpt()
    );
    (shown[0].clone(), shown[1].clone())
}

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

/// The sizes in `record`'s results, checked against what the page shows in `scope`.
fn assert_sizes_match(browser: &Browser, scope: &str, record: &Value) {
    let results = record["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{record}");
    for result in results {
        let preset = preset_of(result);
        for (field, bytes) in [
            ("binary_size", &result["binary_size"]),
            ("image_size", &result["image"]["compressed_size"]),
        ] {
            let bytes = bytes.as_u64().unwrap_or_else(|| panic!("{result}"));
            let (shown, title) = sizes_shown(browser, scope, preset, field);
            assert_eq!(shown, json!(bytes.to_string()), "{scope} {preset} {field}");
            assert_eq!(title, json!(format!("{} bytes", grouped(bytes))));
        }
    }
}

#[test]
fn the_pages_show_what_the_api_records_and_chart_a_project_s_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    let context = fibonacci_context(&dir.path().join("fib"));
    // Three builds of one project, the second with other flags (so the chart's lines move),
    // and one that fails.
    let mut ids = Vec::new();
    for query in [
        "optimize=aggressive,size",
        "optimize=aggressive,size&panic=abort",
        "optimize=aggressive,size",
    ] {
        let id = submit(&server, context.path(), query)["id"]
            .as_str()
            .unwrap()
            .to_string();
        ids.push(id);
    }
    let broken_dir = dir.path().join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    std::fs::write(
        broken_dir.join("broken.rs"),
        "fn main() { let x: u8 = \"no\"; }\n",
    )
    .unwrap();
    let broken = context_of(&broken_dir);
    let broken_id = submit(&server, broken.path(), "optimize=size")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let records: Vec<Value> = ids
        .iter()
        .map(|id| wait_for(&server, id, Duration::from_secs(600), ended))
        .collect();
    for record in &records {
        assert_eq!(record["status"], "success", "{record}");
    }
    let failed = wait_for(&server, &broken_id, Duration::from_secs(300), ended);
    assert_eq!(failed["status"], "failure", "{failed}");

    // Without the cookie: pages send to the login form, the API still says 401 as before;
    // with it: the API answers too (the page's script reads the log so).
    let anonymous = page(&server, "/builds/x?a=1", None);
    assert_eq!(anonymous.status, 303, "{}", anonymous.body);
    assert!(
        anonymous
            .headers
            .to_lowercase()
            .contains("location: /login?next=%2fbuilds%2fx%3fa%3d1"),
        "{}",
        anonymous.headers
    );
    assert_eq!(page(&server, "/", Some("wrong")).status, 303);
    let api_with_wrong_cookie = page(&server, "/v1/builds", Some("wrong"));
    assert_eq!(api_with_wrong_cookie.status, 401);
    assert!(
        api_with_wrong_cookie
            .body
            .contains("a bearer token is required"),
        "{}",
        api_with_wrong_cookie.body
    );
    assert_eq!(page(&server, "/v1/builds", Some(TOKEN)).status, 200);
    let missing = page(&server, "/builds/b000000000000000000000", Some(TOKEN));
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing
        .body
        .contains("There is no build b000000000000000000000"));
    assert_eq!(
        page(&server, "/projects/nothing-here", Some(TOKEN)).status,
        404
    );
    assert_eq!(page(&server, "/?status=nonsense", Some(TOKEN)).status, 400);
    let css = page(&server, "/assets/dashboard.css", None);
    assert_eq!(css.status, 200);
    assert!(css.headers.contains("text/css"), "{}", css.headers);

    let browser = Browser::start(&server);
    browser.log_in();

    // The list: every build, newest first, its status in words, the sizes the API recorded.
    let shown_ids = browser.js(
        "return [...document.querySelectorAll('table.builds tbody tr')].map(r => r.getAttribute('data-build'))",
    );
    let mut newest_first: Vec<&str> = ids.iter().map(String::as_str).collect();
    newest_first.push(&broken_id);
    newest_first.reverse();
    assert_eq!(shown_ids, json!(newest_first), "{}", browser.excerpt());
    for record in &records {
        let id = record["id"].as_str().unwrap();
        let scope = format!("tr[data-build='{id}']");
        assert_sizes_match(&browser, &scope, record);
        let status = browser.js(&format!(
            "return document.querySelector(\"{scope} .status\").textContent.trim()"
        ));
        assert_eq!(status, json!("✓ success"));
        let link = browser.js(&format!(
            "return document.querySelector(\"{scope} a.build-link\").getAttribute('href')"
        ));
        assert_eq!(link, json!(format!("/builds/{id}")));
    }
    let failure = browser.js(&format!(
        "return document.querySelector(\"tr[data-build='{broken_id}'] .status\").textContent"
    ));
    assert!(failure.as_str().unwrap().contains("failure"), "{failure}");
    // Nothing runs: the list does not reload itself.
    assert_eq!(
        browser.js("return document.querySelector('meta[http-equiv=refresh]') === null"),
        json!(true)
    );
    let shot = browser.screenshot_of("builds", true);
    if std::env::var("RUCHY_IMAGE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join("dashboard.png")).unwrap();
    }
    browser.assert_no_console_errors("the build list");

    // The keyboard: from the top of the page, Tab reaches the newest build's link, and what
    // has focus shows it.
    browser.goto("/");
    browser.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);");
    let first_link = format!("/builds/{}", newest_first[0]);
    let mut trail = Vec::new();
    let mut reached = false;
    for _ in 0..25 {
        browser.press_tab();
        let focused = browser.js(
            "const e = document.activeElement; const s = getComputedStyle(e);
             return [e.tagName, e.getAttribute('href') || e.textContent.trim(), s.outlineStyle, s.outlineWidth];",
        );
        trail.push(focused.clone());
        assert_ne!(
            focused[2],
            json!("none"),
            "focus is visible on every stop: {trail:?}"
        );
        if focused[0] == "A" && focused[1] == json!(first_link) {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached {first_link}: {trail:?}");
    assert_eq!(
        trail[0][1],
        json!("#main"),
        "the first stop skips to the content"
    );

    // The failed build's page: the error and its stage.
    browser.goto(&format!("/builds/{broken_id}"));
    let error = browser
        .js("const e = document.querySelector('.build-error'); return e ? e.textContent : null");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains(message.lines().next().unwrap())),
        "{error} / {message}\n{}",
        browser.excerpt()
    );
    browser.wait_until("the failed build's log", Duration::from_secs(20), |b| {
        b.js("return document.getElementById('log').textContent")
            .as_str()
            .is_some_and(|log| log.contains("✗ size"))
    });

    // A finished build's page: its results and its whole log.
    let last = &records[2];
    browser.goto(&format!("/builds/{}", ids[2]));
    assert_sizes_match(&browser, "table.results", last);
    browser.wait_until("the finished build's log", Duration::from_secs(20), |b| {
        b.js("return document.getElementById('log').textContent")
            .as_str()
            .is_some_and(|log| log.contains(": success"))
    });

    // The project page: a line per preset and a point per build, in both charts, with the
    // API's numbers oldest first.
    let project = records[0]["project"].as_str().unwrap();
    browser.goto("/");
    let project_link = browser.run(
        "finding the project link",
        browser.client().find(Locator::Css(&format!(
            "tr[data-build='{}'] a[href^='/projects/']",
            ids[0]
        ))),
    );
    browser.run("following the project link", project_link.click());
    browser.wait_until("the project page", Duration::from_secs(10), |b| {
        b.js("return document.querySelectorAll('svg.history').length") == json!(2)
    });
    assert_eq!(browser.path(), format!("/projects/{project}"));
    for (chart, path) in [
        ("binary_size", &["binary_size"][..]),
        ("image_size", &["image", "compressed_size"][..]),
    ] {
        let lines = browser.js(&format!(
            "return [...document.querySelectorAll('figure[data-chart={chart}] svg.history g.series')].map(g =>
                [g.getAttribute('data-series'), g.querySelectorAll('polyline').length,
                 [...g.querySelectorAll('circle')].map(c => Number(c.getAttribute('data-bytes')))])"
        ));
        let expected: Vec<Value> = ["aggressive", "size"]
            .iter()
            .map(|preset| {
                let values: Vec<u64> = records
                    .iter()
                    .map(|r| {
                        let result = r["results"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|x| preset_of(x) == *preset)
                            .unwrap();
                        path.iter().fold(result, |v, k| &v[*k]).as_u64().unwrap()
                    })
                    .collect();
                json!([preset, 1, values])
            })
            .collect();
        assert_eq!(lines, json!(expected), "{chart}");
        let tooltip = browser.js(&format!(
            "return document.querySelector('figure[data-chart={chart}] circle title').textContent"
        ));
        assert!(tooltip.as_str().unwrap().contains(" bytes)"), "{tooltip}");
    }
    browser.screenshot("project");

    // The workers page: this server, alive, with the engine it builds with, as /v1/workers says.
    let api = curl(&server, "GET", "/v1/workers", &[], true).json();
    let worker = &api["workers"][0];
    browser.goto("/workers");
    let shown = browser.js(
        "return [...document.querySelectorAll('tr[data-worker]')].map(r => [r.dataset.worker, r.dataset.state, r.textContent])",
    );
    let rows = shown.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{shown}");
    assert_eq!(rows[0][0], worker["id"], "{shown}");
    assert_eq!(rows[0][1], "alive", "{shown}");
    let text = rows[0][2].as_str().unwrap();
    assert!(text.contains(worker["engine"].as_str().unwrap()), "{text}");
    browser.assert_no_console_errors("the build, failure, project and workers pages");
}

#[test]
fn a_running_build_s_log_grows_in_its_page_then_its_results_appear() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    // A build script that sleeps: the log pauses mid-build, twice (one compile per preset).
    let context = slow_project(&dir.path().join("slowpoke"), "slowpoke", 4);
    let id = submit(&server, context.path(), "optimize=aggressive,size")["id"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::start(&server);
    browser.log_in();
    wait_for(&server, &id, Duration::from_secs(120), |r| {
        r["status"] != "queued"
    });
    // The list refreshes itself while something runs.
    browser.goto("/");
    assert_eq!(
        browser.js(
            "const m = document.querySelector('meta[http-equiv=refresh]'); return m && m.content"
        ),
        json!("5"),
        "{}",
        browser.excerpt()
    );
    browser.goto(&format!("/builds/{id}"));
    assert_eq!(
        browser.js("return document.querySelector('h1 .status').getAttribute('data-status')"),
        json!("working"),
        "{}",
        browser.excerpt()
    );
    // A mark in this page's window: gone if the page reloads.
    browser.js("window.sameDocument = true;");
    let log = |b: &Browser| -> String {
        b.js("return document.getElementById('log').textContent")
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    browser.wait_until("the log's first text", Duration::from_secs(60), |b| {
        !log(b).is_empty()
    });
    let first = log(&browser);
    assert!(!first.contains(": success"), "read mid-build: {first}");
    browser.screenshot("live-log");
    browser.wait_until("more log text", Duration::from_secs(120), |b| {
        log(b).len() > first.len()
    });
    let later = log(&browser);
    assert!(
        later.starts_with(&first),
        "the log is appended to, not replaced:\n{first}\n---\n{later}"
    );
    assert_eq!(
        browser.js("return window.sameDocument === true"),
        json!(true),
        "the log grew without a reload"
    );
    let still = server_status(&server, &id);
    assert!(
        later.contains("→ [1/2] aggressive"),
        "{later}\n(status {still})"
    );

    // When the build ends, the page shows its status and results (the script reloads it).
    browser.wait_until("the results", Duration::from_secs(600), |b| {
        b.js("const s = document.querySelector('h1 .status'); return s && s.getAttribute('data-status')")
            == json!("success")
            && b.js("return document.querySelector('table.results') !== null") == json!(true)
    });
    let record = record(&server, &id);
    assert_eq!(record["status"], "success", "{record}");
    assert_sizes_match(&browser, "table.results", &record);
    let download = browser.js(
        "return [...document.querySelectorAll('table.results a[download]')].map(a => a.getAttribute('href'))",
    );
    assert_eq!(
        download,
        json!([
            format!("/v1/builds/{id}/image?preset=aggressive"),
            format!("/v1/builds/{id}/image?preset=size")
        ])
    );
    browser.wait_until("the whole log", Duration::from_secs(20), |b| {
        log(b).contains("→ [2/2] size") && log(b).contains(": success")
    });
    browser.screenshot("build");
    browser.assert_no_console_errors("following a running build");
}

fn server_status(server: &Server, id: &str) -> String {
    record(server, id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn markup_in_a_project_s_name_and_its_log_shows_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _leftovers) = data_dir(dir.path());
    let server = start(&data, &[]);
    // The name is the manifest's (the service reads it before cargo refuses it), and cargo's
    // refusal quotes it: the log and the recorded error carry the markup too.
    const NAME: &str = "<script>alert(1)</script>";
    let project = dir.path().join("markup");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        format!("[package]\nname = \"{NAME}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
    )
    .unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    let accepted = submit(&server, context_of(&project).path(), "optimize=aggressive");
    assert_eq!(accepted["project"], NAME, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_string();
    let record = wait_for(&server, &id, Duration::from_secs(300), ended);
    assert_eq!(record["status"], "failure", "{record}");
    let log = curl(&server, "GET", &format!("/v1/builds/{id}/log"), &[], true);
    assert!(log.body.contains(NAME), "{}", log.body);

    let browser = Browser::start(&server);
    browser.log_in();
    // Only the dashboard's own script is on any page; the name and the log are text.
    let only_our_script = "return Array.from(document.scripts).map(s => s.getAttribute('src'))";
    browser.goto(&format!("/builds/{id}"));
    browser.wait_until("the log", Duration::from_secs(30), |b| {
        b.js("return document.getElementById('log').textContent")
            .as_str()
            .is_some_and(|text| text.contains(NAME))
    });
    assert_eq!(browser.js(only_our_script), json!(["/assets/dashboard.js"]));
    assert_eq!(
        browser.js("return document.getElementById('log').children.length"),
        json!(0),
        "the log is one text node, no elements"
    );
    assert_eq!(
        browser.js("return document.querySelector('dd a[href^=\"/projects/\"]').textContent"),
        json!(NAME)
    );
    let error = browser.js("return document.querySelector('.build-error pre').textContent");
    assert!(error.as_str().unwrap().contains(NAME), "{error}");
    assert_eq!(
        browser.js("return document.querySelectorAll('.build-error pre *').length"),
        json!(0)
    );
    browser.assert_no_console_errors("the build page");

    browser.goto("/");
    let link = browser.js_with(
        "return document.querySelector(`tr[data-build='${arguments[0]}'] a[href^='/projects/']`).textContent",
        &id,
    );
    assert_eq!(link, json!(NAME));
    assert_eq!(browser.js(only_our_script), json!(["/assets/dashboard.js"]));

    browser.goto("/projects/%3Cscript%3Ealert%281%29%3C%2Fscript%3E");
    assert_eq!(
        browser.js("return document.querySelector('h1 code').textContent"),
        json!(NAME)
    );
    assert_eq!(
        browser.js("return document.title"),
        json!(format!("Project {NAME} · ruchy-image"))
    );
    assert_eq!(browser.js(only_our_script), json!(["/assets/dashboard.js"]));
    browser.assert_no_console_errors("the list and the project page");
}
