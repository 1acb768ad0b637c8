//! What the dashboard's pages show, as plain values, and the templates that lay them out
//! (`templates/dashboard/*.html` at the crate root). The templates are askama's: checked when
//! the crate compiles (a misspelt field is a build error, not a blank cell) and escaped by
//! default (a value reaches the page as text unless a template says `|safe`, which only the
//! pages' own rendered parts and our SVG charts get). Askama over maud because the markup
//! stays HTML that a reader of HTML can change, diffable against what the browser shows;
//! maud would make it Rust again. The templates live at the crate root, askama's default
//! (no configuration), so moving this module does not move them.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use askama::Template;
use serde_json::Value;

use crate::core::metrics::{self, human_ms, human_size, Built};
use crate::shells::serve::store::{BuildRecord, PresetResult, Status};

/// The templates' escaper (`askama.toml`): `&`, `<`, `>` and both quotes, as named or
/// numeric references, so a value is text in a text node and in a quoted attribute alike.
#[derive(Clone, Copy)]
pub struct Html;

impl askama::filters::Escaper for Html {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            dest.write_str(&rest[..at])?;
            dest.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        dest.write_str(rest)
    }
}

mod project;

#[cfg(test)]
pub use project::history_charts;
pub use project::project_body;

/// Worker ID → name, for people.
pub type WorkerNames = HashMap<String, String>;

/// Renders a template whose values all come from our own types (it cannot fail: askama fails
/// only when a value's `Display` does).
fn render(template: &impl Template) -> String {
    template.render().unwrap_or_default()
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
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
pub struct Size {
    preset: String,
    field: &'static str,
    bytes: u64,
}

impl Size {
    fn grouped(&self) -> String {
        grouped(self.bytes)
    }
    fn human(&self) -> String {
        human_size(self.bytes)
    }
}

/// A time taken, for people, with the exact milliseconds in its tooltip.
pub struct Millis(u64);

impl Millis {
    fn grouped(&self) -> String {
        grouped(self.0)
    }
    fn human(&self) -> String {
        human_ms(self.0)
    }
}

/// A status in words and a mark (never colour alone).
pub struct Badge {
    name: &'static str,
    mark: &'static str,
}

impl Badge {
    fn of(status: Status) -> Badge {
        let mark = match status {
            Status::Queued => "…",
            Status::Working => "▶",
            Status::Success => "✓",
            Status::Failure => "✗",
            Status::Cancelled => "⊘",
            Status::Timeout => "⧖",
        };
        Badge {
            name: status.name(),
            mark,
        }
    }
}

/// A recorded time: `2026-01-02T03:04:05.678Z` shown as `2026-01-02 03:04:05 UTC`.
pub struct Stamp<'a> {
    raw: &'a str,
}

impl Stamp<'_> {
    fn short(&self) -> String {
        self.raw
            .split_once('.')
            .map_or(self.raw.trim_end_matches('Z'), |(whole, _)| whole)
            .replacen('T', " ", 1)
    }
}

fn stamp(raw: &str) -> Stamp<'_> {
    Stamp { raw }
}

/// A worker by name, its ID in the tooltip.
pub struct WorkerLabel<'a> {
    id: &'a str,
    name: &'a str,
}

fn worker_label<'a>(id: &'a str, names: &'a WorkerNames) -> WorkerLabel<'a> {
    WorkerLabel {
        id,
        name: names.get(id).map_or(id, String::as_str),
    }
}

/// A number the dashboard shows of a measured record, read through the record's type.
pub type Measure = fn(&metrics::BuildRecord) -> u64;

/// One preset's outcome as the pages show it; a multi-platform build's index gives one per
/// platform.
pub struct PresetOutcome<'a> {
    /// The preset, with the platform for one of several (`size linux/arm64`).
    pub preset: String,
    /// The preset whose image archive holds it (`?preset=` of the download).
    download: String,
    /// What was measured; none for a preset that failed before.
    pub record: Option<&'a metrics::BuildRecord>,
    /// Why it failed (a measured record too can fail: a size budget).
    pub error: Option<&'a str>,
}

impl PresetOutcome<'_> {
    pub fn measure(&self, measure: Measure) -> Option<u64> {
        self.record.map(measure)
    }

    fn text(&self, text: fn(&metrics::BuildRecord) -> &str) -> String {
        self.record.map(text).unwrap_or_default().to_string()
    }

    fn size(&self, field: &'static str, measure: Measure) -> Option<Size> {
        self.measure(measure).map(|bytes| Size {
            preset: self.preset.clone(),
            field,
            bytes,
        })
    }
}

/// A measured record's outcome; `platform`: one of several, named with its platform.
fn measured(record: &metrics::BuildRecord, platform: bool) -> PresetOutcome<'_> {
    let preset = record.optimization_level.name();
    PresetOutcome {
        preset: match platform {
            true => format!("{preset} linux/{}", record.image.architecture),
            false => preset.to_string(),
        },
        download: preset.to_string(),
        record: Some(record),
        error: record.error.as_deref(),
    }
}

/// Every preset's outcome in `record` (one per platform of a multi-platform build).
pub fn preset_results(record: &BuildRecord) -> Vec<PresetOutcome<'_>> {
    record
        .results
        .iter()
        .flat_map(|result| match result {
            PresetResult::Built(Built::Image(image)) => vec![measured(image, false)],
            PresetResult::Built(Built::Index(index)) => index
                .platforms
                .iter()
                .map(|platform| measured(platform, true))
                .collect(),
            PresetResult::Failed { preset, error } => vec![PresetOutcome {
                preset: preset.name().to_string(),
                download: preset.name().to_string(),
                record: None,
                error: Some(error),
            }],
        })
        .collect()
}

/// The presets a build asked for (its results' once it has them).
fn requested_presets(record: &BuildRecord) -> Vec<String> {
    record
        .request
        .presets
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
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

/// A preset's cells in the builds table.
struct PresetCells {
    preset: String,
    error: Option<String>,
    binary: Option<Size>,
    image: Option<Size>,
    layers: Option<u64>,
    compile: Option<Millis>,
}

/// A row of the builds table.
struct BuildRow<'a> {
    id: &'a str,
    badge: Badge,
    project: &'a str,
    /// The outcomes, once there are some.
    presets: Vec<PresetCells>,
    /// Before: the presets asked for, each with empty cells.
    requested: Vec<String>,
    created: Stamp<'a>,
    times: String,
    duration: String,
    worker: Option<WorkerLabel<'a>>,
}

#[derive(Template)]
#[template(path = "dashboard/builds_table.html")]
struct BuildsTable<'a> {
    caption: &'a str,
    rows: Vec<BuildRow<'a>>,
}

fn build_row<'a>(record: &'a BuildRecord, names: &'a WorkerNames) -> BuildRow<'a> {
    let results = preset_results(record);
    let presets = results
        .iter()
        .map(|result| PresetCells {
            preset: result.preset.clone(),
            error: result.error.map(str::to_string),
            binary: result.size("binary_size", |r| r.binary_size),
            image: result.size("image_size", |r| r.image.compressed_size),
            layers: result.measure(|r| r.image.layer_count as u64),
            compile: result.measure(|r| r.compile_time_ms).map(Millis),
        })
        .collect();
    let mut times = format!("created {}", record.created_at);
    if let Some(t) = &record.started_at {
        times.push_str(&format!(", started {t}"));
    }
    if let Some(t) = &record.finished_at {
        times.push_str(&format!(", finished {t}"));
    }
    BuildRow {
        id: &record.id,
        badge: Badge::of(record.status),
        project: &record.project,
        requested: match results.is_empty() {
            true => requested_presets(record),
            false => Vec::new(),
        },
        presets,
        created: stamp(&record.created_at),
        times,
        duration: duration(record),
        worker: record.worker.as_deref().map(|id| worker_label(id, names)),
    }
}

/// The builds table (the list and the project page).
pub fn builds_table(records: &[BuildRecord], caption: &str, names: &WorkerNames) -> String {
    render(&BuildsTable {
        caption,
        rows: records.iter().map(|r| build_row(r, names)).collect(),
    })
}

/// A preset's row in a build's results.
struct ResultRow {
    preset: String,
    download: String,
    error: Option<String>,
    binary: Option<Size>,
    image: Option<Size>,
    unpacked: Option<Size>,
    layers: Option<u64>,
    compile: Option<Millis>,
    linkage: String,
    libc: String,
    digest: String,
}

impl ResultRow {
    /// `sha256:0123456789ab…`.
    fn short_digest(&self) -> String {
        match self.digest.strip_prefix("sha256:") {
            Some(hex) => format!("sha256:{}…", hex.get(..12).unwrap_or(hex)),
            None => self.digest.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/build.html")]
struct BuildPage<'a> {
    id: &'a str,
    badge: Badge,
    project: &'a str,
    created: Stamp<'a>,
    started: Option<Stamp<'a>>,
    finished: Option<Stamp<'a>>,
    duration: String,
    attempts: i64,
    worker: Option<WorkerLabel<'a>>,
    source_digest: &'a str,
    /// Preset → where its image is: `REPOSITORY@digest` in the artifact registry, or the
    /// archive's digest in this service's data dir.
    stored: Vec<(&'a str, String)>,
    /// When `--keep-artifacts` deleted the images.
    expired: Option<Stamp<'a>>,
    options: Vec<(String, String)>,
    stages: Vec<(String, Millis)>,
    error: Option<&'a crate::shells::serve::store::BuildError>,
    results: Vec<ResultRow>,
    live: bool,
}

/// What a build asked for beyond the defaults, as `key=value` (`overrides.lto=thin`,
/// lists comma-separated), read from its request's JSON so every field shows.
fn options(record: &BuildRecord) -> Vec<(String, String)> {
    fn flatten(prefix: &str, value: &Value, into: &mut BTreeMap<String, String>) {
        let text = match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    let key = match prefix.is_empty() {
                        true => key.clone(),
                        false => format!("{prefix}.{key}"),
                    };
                    flatten(&key, field, into);
                }
                return;
            }
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        into.insert(prefix.to_string(), text);
    }
    let fields = |request: &crate::pipeline::plan::Request| {
        let mut fields = BTreeMap::new();
        flatten(
            "",
            &serde_json::to_value(request).unwrap_or_default(),
            &mut fields,
        );
        fields
    };
    let defaults = fields(&crate::pipeline::plan::Request::default());
    fields(&record.request)
        .into_iter()
        .filter(|(key, value)| defaults.get(key) != Some(value))
        .collect()
}

fn result_row(result: &PresetOutcome) -> ResultRow {
    ResultRow {
        preset: result.preset.clone(),
        download: result.download.clone(),
        error: result.error.map(str::to_string),
        binary: result.size("binary_size", |r| r.binary_size),
        image: result.size("image_size", |r| r.image.compressed_size),
        unpacked: result.size("image_unpacked", |r| r.image.uncompressed_size),
        layers: result.measure(|r| r.image.layer_count as u64),
        compile: result.measure(|r| r.compile_time_ms).map(Millis),
        linkage: result.text(|r| &r.linkage),
        libc: result.text(|r| &r.libc),
        digest: result.text(|r| &r.image.digest),
    }
}

/// A build's page: its record, its results per preset, and its log (followed while it runs).
pub fn build_body(record: &BuildRecord, names: &WorkerNames) -> String {
    let stages = record
        .stages
        .iter()
        .map(|(stage, ms)| (stage.clone(), Millis(*ms)))
        .collect();
    render(&BuildPage {
        id: &record.id,
        badge: Badge::of(record.status),
        project: &record.project,
        created: stamp(&record.created_at),
        started: record.started_at.as_deref().map(stamp),
        finished: record.finished_at.as_deref().map(stamp),
        duration: duration(record),
        attempts: record.attempts,
        worker: record.worker.as_deref().map(|id| worker_label(id, names)),
        source_digest: &record.source_digest,
        stored: record
            .images
            .iter()
            .map(|(preset, at)| {
                let at = match at.contains('@') {
                    true => at.clone(),
                    false => format!("{at} in this service's data dir"),
                };
                (preset.as_str(), at)
            })
            .collect(),
        expired: record.expired_at.as_deref().map(stamp),
        options: options(record),
        stages,
        error: record.error.as_ref(),
        results: preset_results(record).iter().map(result_row).collect(),
        live: !record.status.is_final(),
    })
}

#[derive(Template)]
#[template(path = "dashboard/builds.html")]
struct BuildsPage<'a> {
    heading: &'a str,
    status: Option<&'static str>,
    table: Option<String>,
    /// An older page: `before` was given.
    paged: bool,
    /// The last build shown, when there may be older ones.
    older: Option<&'a str>,
}

/// The list of builds: a page of them (or why there are none), and the links to others.
pub fn builds_body(
    heading: &str,
    status: Option<Status>,
    table: Option<String>,
    paged: bool,
    older: Option<&str>,
) -> String {
    render(&BuildsPage {
        heading,
        status: status.map(Status::name),
        table,
        paged,
        older,
    })
}

/// A worker's row.
pub struct WorkerRow<'a> {
    id: &'a str,
    name: &'a str,
    state: &'static str,
    class: &'static str,
    engine: &'a str,
    slots: i64,
    url: &'a str,
    started: Stamp<'a>,
    heartbeat: Stamp<'a>,
    running: &'a [String],
}

#[derive(Template)]
#[template(path = "dashboard/workers.html")]
struct WorkersPage<'a> {
    workers: Vec<WorkerRow<'a>>,
}

/// The workers page: each worker, whether it answers (its heartbeat after `silent_before`),
/// and the builds it runs.
pub fn workers_body(
    workers: &[(crate::shells::serve::store::Worker, Vec<String>)],
    silent_before: &str,
) -> String {
    let rows = workers
        .iter()
        .map(|(worker, builds)| {
            let (state, class) = if worker.stopped_at.is_some() {
                ("stopped", "cancelled")
            } else if worker.heartbeat_at.as_str() < silent_before {
                ("silent", "failure")
            } else {
                ("alive", "success")
            };
            WorkerRow {
                id: &worker.id,
                name: &worker.name,
                state,
                class,
                engine: &worker.engine,
                slots: worker.slots,
                url: &worker.url,
                started: stamp(&worker.started_at),
                heartbeat: stamp(&worker.heartbeat_at),
                running: builds,
            }
        })
        .collect();
    render(&WorkersPage { workers: rows })
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginBody<'a> {
    message: Option<&'a str>,
    next: &'a str,
}

/// The login form, with why the last try failed.
pub fn login_body(next: &str, message: Option<&str>) -> String {
    render(&LoginBody { message, next })
}

#[derive(Template)]
#[template(path = "dashboard/message.html")]
struct MessageBody<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page that only says something (an error).
pub fn message_body(title: &str, message: &str) -> String {
    render(&MessageBody { title, message })
}

/// An entry of the navigation.
pub struct NavItem {
    href: String,
    label: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "dashboard/layout.html")]
struct Layout<'a> {
    title: &'a str,
    refresh: bool,
    nav: Vec<NavItem>,
    logout: bool,
    body: &'a str,
    version: &'static str,
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq)]
pub enum Nav {
    None,
    All,
    Status(Status),
    Workers,
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A status's name for a heading (`Queued`).
pub fn heading_of(status: Status) -> String {
    capitalized(status.name())
}

/// A whole page around `body` (already rendered by a template here).
pub fn layout(title: &str, body: &str, refresh: bool, current: Nav, logout: bool) -> String {
    let mut nav = vec![NavItem {
        href: "/".into(),
        label: "All builds".into(),
        current: current == Nav::All,
    }];
    for s in Status::ALL {
        nav.push(NavItem {
            href: format!("/?status={}", s.name()),
            label: capitalized(s.name()),
            current: current == Nav::Status(s),
        });
    }
    nav.push(NavItem {
        href: "/workers".into(),
        label: "Workers".into(),
        current: current == Nav::Workers,
    });
    render(&Layout {
        title,
        refresh,
        nav,
        logout,
        body,
        version: env!("CARGO_PKG_VERSION"),
    })
}
