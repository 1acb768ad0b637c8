//! The service's state: build records, uploaded sources, workers and the queue in SQLite (one
//! service) or PostgreSQL (any number of workers on one database), through sqlx's Any driver
//! so both run the same queries; and files under each worker's data dir: the logs of the
//! builds it ran, and image archives in a blob store named by digest (a no-change rebuild is
//! reproducible, so its archive is the same blob as before).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

use crate::core::error::{Error, Result};
use crate::core::metrics::Built;
use crate::core::preset::Preset;

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is building it.
    Working,
    /// Every preset built.
    Success,
    /// A preset failed, or the build could not run.
    Failure,
    /// Cancelled by a client (or by a shutdown that could not wait).
    Cancelled,
    /// Ran longer than the build timeout, or waited longer than the queue TTL.
    Timeout,
}

impl Status {
    /// All statuses, in their life's order.
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Working,
        Status::Success,
        Status::Failure,
        Status::Cancelled,
        Status::Timeout,
    ];

    /// The status's name in the API and the database.
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Working => "working",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Cancelled => "cancelled",
            Status::Timeout => "timeout",
        }
    }

    /// Whether the build is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Working)
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|status| status.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
                format!("unknown status `{s}`; valid: {}", names.join(", "))
            })
    }
}

/// Why a build failed, and in which stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildError {
    /// The error's message.
    pub message: String,
    /// The stage it failed in (`prepare`, `compile`, `assemble`, `publish`), when known.
    pub stage: Option<String>,
    /// Whether the build's input was wrong (a base that does not exist, a binary not in the
    /// project): what a local build exits 2 for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage: bool,
}

/// One preset's result, as the API shows it: exactly what `ruchy-image build --json` writes
/// for it, or why it failed before it was measured.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PresetResult {
    /// Built and measured: an image, or an index over one image per platform. A measured
    /// record can still carry an `error` (a size budget it went over).
    Built(Built),
    /// It failed before it was measured.
    Failed {
        /// The preset.
        preset: Preset,
        /// Why.
        error: String,
    },
}

impl<'de> Deserialize<'de> for PresetResult {
    /// A measured record has its `image` (one image) or `platforms` (an index); anything else
    /// is a failure. Chosen by field rather than tried in turn, so a record that does not read
    /// says which field is wrong.
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<PresetResult, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Failed {
            preset: Preset,
            error: String,
        }
        let value = serde_json::Value::deserialize(deserializer)?;
        match value.get("image").is_some() || value.get("platforms").is_some() {
            true => serde_json::from_value(value).map(PresetResult::Built),
            false => serde_json::from_value(value)
                .map(|Failed { preset, error }| PresetResult::Failed { preset, error }),
        }
        .map_err(D::Error::custom)
    }
}

/// A build as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRecord {
    /// The build's ID.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// The project (its package or file name): builds are fair between projects.
    pub project: String,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When a worker took it.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// What the build asks for (kept in the `options` column).
    pub request: crate::pipeline::plan::Request,
    /// `sha256:` digest of the uploaded body.
    pub source_digest: String,
    /// Stage name → milliseconds, summed over presets.
    pub stages: BTreeMap<String, u64>,
    /// Why it failed.
    pub error: Option<BuildError>,
    /// Per preset, in the order they ran.
    pub results: Vec<PresetResult>,
    /// How many times a worker started it (a build interrupted by a crash runs once more).
    pub attempts: i64,
    /// The worker that runs (or ran) it.
    pub worker: Option<String>,
    #[serde(skip)]
    pub(crate) source_path: String,
    #[serde(skip)]
    pub(crate) images: BTreeMap<String, String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    status: String,
    project: String,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    options: String,
    source_digest: String,
    source_path: String,
    stages: String,
    error: Option<String>,
    results: String,
    images: String,
    attempts: i64,
    worker: Option<String>,
}

/// A column of build `id` that does not read: the record would be wrong, so it is an error.
fn unreadable(id: &str, column: &str, reason: impl std::fmt::Display) -> Error {
    Error::Io {
        context: format!("the build database: build {id}: its stored {column} cannot be read"),
        source: std::io::Error::other(reason.to_string()),
    }
}

impl TryFrom<Row> for BuildRecord {
    type Error = Error;
    fn try_from(row: Row) -> Result<BuildRecord> {
        fn decode<T: serde::de::DeserializeOwned>(id: &str, column: &str, text: &str) -> Result<T> {
            serde_json::from_str(text).map_err(|e| unreadable(id, column, e))
        }
        let id = row.id.as_str();
        Ok(BuildRecord {
            status: row
                .status
                .parse()
                .map_err(|e| unreadable(id, "status", e))?,
            project: row.project,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            request: super::request::from_stored(&row.options)
                .map_err(|e| unreadable(id, "request", e))?,
            source_digest: row.source_digest,
            stages: decode(id, "stages", &row.stages)?,
            error: row.error.map(|e| decode(id, "error", &e)).transpose()?,
            results: decode(id, "results", &row.results)?,
            images: decode(id, "images", &row.images)?,
            source_path: row.source_path,
            attempts: row.attempts,
            worker: row.worker,
            id: row.id,
        })
    }
}

/// A new build, as the API accepted it.
#[derive(Debug, Clone)]
pub struct NewBuild {
    /// Its ID.
    pub id: String,
    /// Its project.
    pub project: String,
    /// What it asks for.
    pub request: crate::pipeline::plan::Request,
    /// Digest of the upload.
    pub source_digest: String,
    /// What to build inside its source directory.
    pub source_path: String,
}

/// What a finished build produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stage name → milliseconds, summed over presets.
    pub stages: BTreeMap<String, u64>,
    /// The per-preset results.
    pub results: Vec<PresetResult>,
    /// Preset → image blob digest.
    pub images: BTreeMap<String, String>,
    /// The failure, if any.
    pub error: Option<BuildError>,
}

/// A piece of a build's log.
#[derive(Debug, Clone)]
pub struct LogChunk {
    /// (attempt, seq): where it is in the log.
    pub at: (i64, i64),
    /// Its lines.
    pub body: String,
}

/// The most of an uploaded context kept (or read back) in one row: what the database holds of
/// it in memory at a time.
const SOURCE_CHUNK: usize = 1 << 20;

const COLUMNS: &str = "id, status, project, created_at, started_at, finished_at, options, source_digest, source_path, stages, error, results, images, attempts, worker";

/// Which database holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in the data dir: one service.
    Sqlite,
    /// A server that several workers share.
    Postgres,
}

/// A worker as `GET /v1/workers` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Worker {
    /// Its ID (stable per data dir).
    pub id: String,
    /// Its name (the host name unless given).
    pub name: String,
    /// Where the other workers reach its API.
    pub url: String,
    /// What it builds with.
    pub engine: String,
    /// Builds at once.
    pub slots: i64,
    /// When it started.
    pub started_at: String,
    /// When it last said it was alive.
    pub heartbeat_at: String,
    /// When it stopped cleanly.
    pub stopped_at: Option<String>,
}

const WORKER_COLUMNS: &str = "id, name, url, engine, slots, started_at, heartbeat_at, stopped_at";

/// The channel PostgreSQL workers hear about new queued builds on.
pub const QUEUE_CHANNEL: &str = "ruchy_image_queue";

/// The database and this worker's data dir.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    dir: PathBuf,
    worker: String,
    /// Claims from this process one at a time: under PostgreSQL's SKIP LOCKED two concurrent
    /// claims could each miss the other's uncommitted one and take two builds of one project,
    /// which share this worker's workspace. Across workers they never share a workspace.
    claim_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Now, as RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// This data dir's worker ID: made once, kept in `worker-id`.
fn worker_id(dir: &Path) -> Result<String> {
    let file = dir.join("worker-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        if !id.trim().is_empty() {
            return Ok(id.trim().to_string());
        }
    }
    let mut random = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut random))
        .map_err(Error::io("reading /dev/urandom"))?;
    let id = format!("w{}", crate::adapters::fsutil::hex(&random));
    crate::adapters::fsutil::write_file_atomically("the worker ID", &file, id.as_bytes())?;
    Ok(id)
}

fn db_error(context: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| Error::Io {
        context: format!("the build database: {context}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Store {
    /// Opens (creating and migrating) the database: `database` (a `postgres://` URL), or
    /// SQLite in `dir`. `dir` keeps this worker's files and its ID.
    pub async fn open(dir: &Path, database: Option<&str>) -> Result<Store> {
        for sub in ["sources", "logs", "blobs/sha256", "cache"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(Error::io(format!("creating {}", path.display())))?;
        }
        sqlx::any::install_default_drivers();
        let (backend, url) = match database {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                (Backend::Postgres, url.to_string())
            }
            Some(url) => return Err(Error::InvalidInput {
                what: "database",
                value: redact(url),
                reason:
                    "give a postgres://USER@HOST:PORT/DB URL, or none for SQLite in the data dir"
                        .into(),
            }),
            None => {
                let file = dir.join("ruchy-image.db");
                crate::adapters::fsutil::check_writable("the build database", &file)?;
                (
                    Backend::Sqlite,
                    format!("sqlite://{}?mode=rwc", file.display()),
                )
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| Error::Io {
                context: format!("connecting to the build database {}", redact(&url)),
                source: std::io::Error::other(e.to_string()),
            })?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated.map_err(|e| Error::Io {
            context: format!("migrating the build database {}", redact(&url)),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Store {
            pool,
            backend,
            url,
            dir: dir.to_path_buf(),
            worker: worker_id(dir)?,
            claim_lock: Default::default(),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's URL (with its password, for the queue listener).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// This worker's ID.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the build's source is unpacked.
    pub fn source_dir(&self, id: &str) -> PathBuf {
        self.dir.join("sources").join(id)
    }

    /// Where a build compiles: a directory of its own, named by the build's ID (which this
    /// server made), never by anything a client chose.
    pub fn workspace_dir(&self, id: &str) -> PathBuf {
        self.dir.join("workspaces").join(id)
    }

    /// The build's log.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{id}.log"))
    }

    /// The blob with `digest` (`sha256:…`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// The cache builds share (generated projects, artifacts, stds).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Records a new queued build and keeps its uploaded context (the file `body`, read a
    /// chunk at a time) for whichever worker takes it.
    pub async fn insert(&self, build: &NewBuild, body: &Path) -> Result<BuildRecord> {
        use tokio::io::AsyncReadExt;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error("recording a build"))?;
        let kept = sqlx::query(
            "INSERT INTO sources (digest, body) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&build.source_digest)
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await
        .map_err(db_error("keeping a build's source"))?;
        if kept.rows_affected() == 1 {
            // Pieces of a context of this digest that was forgotten while this one came.
            sqlx::query("DELETE FROM source_chunks WHERE digest = $1")
                .bind(&build.source_digest)
                .execute(&mut *tx)
                .await
                .map_err(db_error("keeping a build's source"))?;
            let reading = |e: std::io::Error| Error::Io {
                context: format!("reading {}", body.display()),
                source: e,
            };
            let mut file = tokio::fs::File::open(body).await.map_err(reading)?;
            for seq in 0i64.. {
                let mut chunk = Vec::with_capacity(SOURCE_CHUNK);
                (&mut file)
                    .take(SOURCE_CHUNK as u64)
                    .read_to_end(&mut chunk)
                    .await
                    .map_err(reading)?;
                if chunk.is_empty() {
                    break;
                }
                sqlx::query("INSERT INTO source_chunks (digest, seq, body) VALUES ($1, $2, $3)")
                    .bind(&build.source_digest)
                    .bind(seq)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("keeping a build's source"))?;
            }
        }
        sqlx::query(
            "INSERT INTO builds (id, project, status, created_at, options, source_digest, source_path) VALUES ($1, $2, 'queued', $3, $4, $5, $6)",
        )
        .bind(&build.id)
        .bind(&build.project)
        .bind(now())
        .bind(serde_json::to_string(&build.request).map_err(|source| Error::Json {
            what: "the build's request",
            source,
        })?)
        .bind(&build.source_digest)
        .bind(&build.source_path)
        .execute(&mut *tx)
        .await
        .map_err(db_error("recording a build"))?;
        // Read back before the commit: the answer is the build as accepted, queued, even when
        // a worker claims it the moment it is committed.
        let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM builds WHERE id = $1"))
            .bind(&build.id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("reading back a build"))?;
        let record = BuildRecord::try_from(row)?;
        tx.commit().await.map_err(db_error("recording a build"))?;
        self.announce().await;
        Ok(record)
    }

    /// Tells the other PostgreSQL workers the queue changed (they also look every few seconds).
    async fn announce(&self) {
        if self.backend == Backend::Postgres {
            let _ = sqlx::query(&format!("NOTIFY {QUEUE_CHANNEL}"))
                .execute(&self.pool)
                .await;
        }
    }

    /// Writes the uploaded context of a build's source digest to `file`, a chunk at a time,
    /// while a build still needs it; false when it is gone.
    pub async fn source_to(&self, digest: &str, file: &Path) -> Result<bool> {
        use tokio::io::AsyncWriteExt;
        let kept: Option<(i64,)> =
            sqlx::query_as("SELECT CAST(length(body) AS BIGINT) FROM sources WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("reading a build's source"))?;
        let Some((inline,)) = kept else {
            return Ok(false);
        };
        let writing = |e: std::io::Error| Error::Io {
            context: format!("writing {}", file.display()),
            source: e,
        };
        let mut out = tokio::fs::File::create(file).await.map_err(writing)?;
        if inline > 0 {
            // Kept whole, by a version before contexts were kept in chunks.
            let (body,): (Vec<u8>,) = sqlx::query_as("SELECT body FROM sources WHERE digest = $1")
                .bind(digest)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("reading a build's source"))?;
            out.write_all(&body).await.map_err(writing)?;
        }
        for seq in 0i64.. {
            let chunk: Option<(Vec<u8>,)> =
                sqlx::query_as("SELECT body FROM source_chunks WHERE digest = $1 AND seq = $2")
                    .bind(digest)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error("reading a build's source"))?;
            let Some((chunk,)) = chunk else { break };
            out.write_all(&chunk).await.map_err(writing)?;
        }
        out.flush().await.map_err(writing)?;
        Ok(true)
    }

    /// One build.
    pub async fn get(&self, id: &str) -> Result<Option<BuildRecord>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM builds WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("reading a build"))?;
        row.map(BuildRecord::try_from).transpose()
    }

    /// Builds newest first: with `status`, only those; with `before` (an ID), only older ones.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<BuildRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM builds
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
               AND (CAST($2 AS TEXT) IS NULL OR seq < (SELECT seq FROM builds WHERE id = $2))
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(status.map(Status::name))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing builds"))?;
        rows.into_iter().map(BuildRecord::try_from).collect()
    }

    /// Takes the next build for this worker: queued, of a project with no build running
    /// anywhere, from the project that waited longest since it last got a worker, oldest
    /// first within it. Under PostgreSQL, `FOR UPDATE SKIP LOCKED`: workers claiming at once
    /// each take a different build without waiting on each other.
    pub async fn claim(&self) -> Result<Option<BuildRecord>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE OF b SKIP LOCKED",
        };
        let _one_at_a_time = self.claim_lock.lock().await;
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE builds SET status = 'working', started_at = $1, attempts = attempts + 1, worker = $2
             WHERE id = (
               SELECT b.id FROM builds b
               WHERE b.status = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM builds w WHERE w.project = b.project AND w.status = 'working')
               ORDER BY (SELECT MAX(p.started_at) FROM builds p WHERE p.project = b.project) IS NOT NULL,
                        (SELECT MAX(p.started_at) FROM builds p WHERE p.project = b.project),
                        b.seq
               LIMIT 1 {lock})
             RETURNING {COLUMNS}"
        ))
        .bind(now())
        .bind(&self.worker)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("claiming a build"))?;
        row.map(BuildRecord::try_from).transpose()
    }

    /// Ends a build this worker runs: its status, and what it produced. False when the build
    /// is no longer this worker's (its heartbeat was missed and another worker took it, or it
    /// was cancelled while queued again): then nothing is written.
    pub async fn finish(
        &self,
        build: &BuildRecord,
        status: Status,
        outcome: &Outcome,
    ) -> Result<bool> {
        let stages = serde_json::to_string(&outcome.stages).map_err(|source| Error::Json {
            what: "a build's stage times",
            source,
        })?;
        let results = serde_json::to_string(&outcome.results).map_err(|source| Error::Json {
            what: "a build's results",
            source,
        })?;
        let done = sqlx::query(
            "UPDATE builds SET status = $1, finished_at = $2, stages = $3, results = $4, images = $5, error = $6
             WHERE id = $7 AND status = 'working' AND worker = $8 AND attempts = $9",
        )
        .bind(status.name())
        .bind(now())
        .bind(stages)
        .bind(results)
        .bind(serde_json::to_string(&outcome.images).unwrap_or_else(|_| "{}".into()))
        .bind(
            outcome
                .error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
        )
        .bind(&build.id)
        .bind(&self.worker)
        .bind(build.attempts)
        .execute(&self.pool)
        .await
        .map_err(db_error("finishing a build"))?;
        self.forget_source(&build.source_digest).await;
        // A build of the same project may have waited for this one.
        self.announce().await;
        Ok(done.rows_affected() == 1)
    }

    /// Drops an uploaded context no queued or working build needs any more.
    async fn forget_source(&self, digest: &str) {
        let forget = async {
            let mut tx = self.pool.begin().await?;
            let gone = sqlx::query(
                "DELETE FROM sources WHERE digest = $1
                 AND NOT EXISTS (SELECT 1 FROM builds WHERE source_digest = $1 AND status IN ('queued', 'working'))",
            )
            .bind(digest)
            .execute(&mut *tx)
            .await?;
            if gone.rows_affected() == 1 {
                sqlx::query("DELETE FROM source_chunks WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        let _: std::result::Result<(), sqlx::Error> = forget.await;
    }

    /// Adds a piece of build `id`'s log (lines, each ended by a newline), written by its
    /// `attempt`, as piece `seq` of that attempt.
    pub async fn append_log(&self, id: &str, attempt: i64, seq: i64, body: &str) -> Result<()> {
        sqlx::query("INSERT INTO log_chunks (build, attempt, seq, body) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(attempt)
            .bind(seq)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(db_error("keeping a build's log"))?;
        Ok(())
    }

    /// The pieces of build `id`'s log after `after` (attempt, seq), in order, at most 64.
    pub async fn log_after(&self, id: &str, after: (i64, i64)) -> Result<Vec<LogChunk>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT attempt, seq, body FROM log_chunks WHERE build = $1
               AND (attempt > $2 OR (attempt = $2 AND seq > $3))
             ORDER BY attempt, seq LIMIT 64",
        )
        .bind(id)
        .bind(after.0)
        .bind(after.1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("reading a build's log"))?;
        Ok(rows
            .into_iter()
            .map(|(attempt, seq, body)| LogChunk {
                at: (attempt, seq),
                body,
            })
            .collect())
    }

    /// Cancels a build that a worker runs, in the database: that worker's heartbeat sees it is
    /// no longer its own and stops it. False when it is not working (any more).
    pub async fn cancel_working(&self, id: &str) -> Result<bool> {
        let error = BuildError {
            message: "cancelled".into(),
            stage: None,
            usage: false,
        };
        let done = sqlx::query(
            "UPDATE builds SET status = 'cancelled', finished_at = $1, error = $2 WHERE id = $3 AND status = 'working'",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error("cancelling a build"))?;
        if done.rows_affected() == 1 {
            self.announce().await;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a build that is still queued; false when it is not queued (any more).
    pub async fn cancel_queued(&self, id: &str) -> Result<bool> {
        let error = BuildError {
            message: "cancelled while queued".into(),
            stage: None,
            usage: false,
        };
        let cancelled: Option<(String,)> = sqlx::query_as(
            "UPDATE builds SET status = 'cancelled', finished_at = $1, error = $2 WHERE id = $3 AND status = 'queued' RETURNING source_digest",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("cancelling a build"))?;
        if let Some((digest,)) = &cancelled {
            self.forget_source(digest).await;
        }
        Ok(cancelled.is_some())
    }

    /// Builds that are working where `on` holds (a condition on `worker`, its values as `$A`,
    /// `$B`… in `binds`' order) run once more, or fail if they already had their second
    /// chance. Returns (re-queued, failed).
    async fn requeue_working(&self, on: &str, binds: &[&str], why: &str) -> Result<(u64, u64)> {
        let numbered = |first: usize| {
            (0..binds.len()).fold(on.to_string(), |sql, i| {
                let name = format!("${}", (b'A' + i as u8) as char);
                sql.replace(&name, &format!("${}", first + i))
            })
        };
        let error = BuildError {
            message: format!("interrupted: {why}, twice"),
            stage: None,
            usage: false,
        };
        let fail_sql = format!(
            "UPDATE builds SET status = 'failure', finished_at = $1, error = $2 WHERE status = 'working' AND attempts >= 2 AND {}",
            numbered(3)
        );
        let mut fail = sqlx::query(&fail_sql)
            .bind(now())
            .bind(serde_json::to_string(&error).ok());
        for value in binds {
            fail = fail.bind(*value);
        }
        let failed = fail
            .execute(&self.pool)
            .await
            .map_err(db_error("recovering builds"))?
            .rows_affected();
        let again_sql = format!(
            "UPDATE builds SET status = 'queued', started_at = NULL, worker = NULL WHERE status = 'working' AND {}",
            numbered(1)
        );
        let mut again = sqlx::query(&again_sql);
        for value in binds {
            again = again.bind(*value);
        }
        let requeued = again
            .execute(&self.pool)
            .await
            .map_err(db_error("recovering builds"))?
            .rows_affected();
        if requeued > 0 {
            self.announce().await;
        }
        Ok((requeued, failed))
    }

    /// At start: the builds this worker was running when it stopped without finishing them
    /// (with SQLite, also those of services before workers were recorded).
    pub async fn recover(&self) -> Result<(u64, u64)> {
        self.requeue_working(
            "(worker = $A OR worker IS NULL)",
            &[&self.worker],
            "the service stopped while building it",
        )
        .await
    }

    /// Builds of other workers whose last heartbeat is older than `cutoff` (RFC 3339).
    pub async fn requeue_stale(&self, cutoff: &str) -> Result<(u64, u64)> {
        self.requeue_working(
            "worker IN (SELECT id FROM workers WHERE heartbeat_at < $A AND id <> $B)",
            &[cutoff, &self.worker],
            "the worker building it stopped answering",
        )
        .await
    }

    /// Says this worker is here (again), with what it builds with.
    pub async fn register(&self, name: &str, url: &str, engine: &str, slots: i64) -> Result<()> {
        let at = now();
        sqlx::query(
            "INSERT INTO workers (id, name, url, engine, slots, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, url = excluded.url, engine = excluded.engine,
               slots = excluded.slots, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
        )
        .bind(&self.worker)
        .bind(name)
        .bind(url)
        .bind(engine)
        .bind(slots)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_error("registering this worker"))?;
        Ok(())
    }

    /// Says this worker is alive; returns the builds the database says it is running (any
    /// other it runs was taken from it).
    pub async fn heartbeat(&self) -> Result<Vec<String>> {
        sqlx::query("UPDATE workers SET heartbeat_at = $1 WHERE id = $2")
            .bind(now())
            .bind(&self.worker)
            .execute(&self.pool)
            .await
            .map_err(db_error("recording a heartbeat"))?;
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM builds WHERE status = 'working' AND worker = $1")
                .bind(&self.worker)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error("reading this worker's builds"))?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Says this worker stopped cleanly.
    pub async fn stopped(&self) -> Result<()> {
        sqlx::query("UPDATE workers SET stopped_at = $1 WHERE id = $2")
            .bind(now())
            .bind(&self.worker)
            .execute(&self.pool)
            .await
            .map_err(db_error("recording this worker's stop"))?;
        Ok(())
    }

    /// Every worker, and the builds each is running.
    pub async fn workers(&self) -> Result<Vec<(Worker, Vec<String>)>> {
        let workers: Vec<Worker> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLUMNS} FROM workers ORDER BY name, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing workers"))?;
        let running: Vec<(String, String)> = sqlx::query_as(
            "SELECT worker, id FROM builds WHERE status = 'working' AND worker IS NOT NULL ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing workers"))?;
        Ok(workers
            .into_iter()
            .map(|worker| {
                let builds = running
                    .iter()
                    .filter(|(on, _)| *on == worker.id)
                    .map(|(_, id)| id.clone())
                    .collect();
                (worker, builds)
            })
            .collect())
    }

    /// A worker by ID.
    pub async fn worker_by_id(&self, id: &str) -> Result<Option<Worker>> {
        sqlx::query_as(&format!(
            "SELECT {WORKER_COLUMNS} FROM workers WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading a worker"))
    }

    /// Queued builds created before `cutoff` (RFC 3339) time out.
    pub async fn expire_queued(&self, cutoff: &str) -> Result<Vec<String>> {
        let error = BuildError {
            message: "waited in the queue longer than the queue TTL".into(),
            stage: None,
            usage: false,
        };
        let expired: Vec<(String, String)> = sqlx::query_as(
            "UPDATE builds SET status = 'timeout', finished_at = $1, error = $2 WHERE status = 'queued' AND created_at < $3 RETURNING id, source_digest",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("expiring queued builds"))?;
        for (_, digest) in &expired {
            self.forget_source(digest).await;
        }
        Ok(expired.into_iter().map(|(id, _)| id).collect())
    }

    /// Builds per status, for `/metrics`.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT status, COUNT(*) FROM builds GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("counting builds"))
    }

    /// Wall seconds of every finished build that ran, for the duration histogram.
    pub async fn durations(&self) -> Result<Vec<f64>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT started_at, finished_at FROM builds WHERE started_at IS NOT NULL AND finished_at IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("reading build times"))?;
        let parse = |t: &str| humantime::parse_rfc3339(t).ok();
        Ok(rows
            .iter()
            .filter_map(|(start, end)| {
                let (start, end) = (parse(start)?, parse(end)?);
                Some(end.duration_since(start).ok()?.as_secs_f64())
            })
            .collect())
    }

    /// A project's builds, newest first, at most `limit` (the dashboard's project page).
    pub async fn project_builds(&self, project: &str, limit: i64) -> Result<Vec<BuildRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM builds WHERE project = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(project)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing a project's builds"))?;
        rows.into_iter().map(BuildRecord::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metrics::{sample_record, IndexRecord};

    fn read(value: serde_json::Value) -> std::result::Result<PresetResult, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn a_result_reads_as_what_its_fields_say_and_writes_back_the_same() {
        // Measured but over a budget: an image with its own `error`, not a failure.
        let mut over = sample_record(Preset::Balanced, 412_000, 201_000);
        over.error = Some("balanced: binary is 412000 bytes, over the budget".into());
        let index = IndexRecord {
            schema: crate::core::metrics::SCHEMA_VERSION,
            reference: "fibonacci:size".into(),
            digest: "sha256:11".into(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            loaded_platform: "linux/amd64".into(),
            platforms: vec![sample_record(Preset::Size, 281_432, 140_210)],
            outputs: Vec::new(),
            server: None,
        };
        let failed = serde_json::json!({"preset": "none", "error": "compiling failed"});
        for json in [
            serde_json::to_value(&over).unwrap(),
            serde_json::to_value(&index).unwrap(),
            failed.clone(),
        ] {
            let result = read(json.clone()).unwrap();
            match (&result, json.get("platforms"), json.get("image")) {
                (PresetResult::Built(Built::Index(i)), Some(_), None) => {
                    assert_eq!(i.platforms[0].binary_size, 281_432)
                }
                (PresetResult::Built(Built::Image(r)), None, Some(_)) => {
                    assert_eq!(r.error, over.error)
                }
                (PresetResult::Failed { preset, error }, None, None) => {
                    assert_eq!(
                        (*preset, error.as_str()),
                        (Preset::None, "compiling failed")
                    )
                }
                other => panic!("{json} read as {other:?}"),
            }
            assert_eq!(serde_json::to_value(&result).unwrap(), json);
        }
        // What does not read says which field is wrong.
        let mut broken = serde_json::to_value(&over).unwrap();
        broken.as_object_mut().unwrap().remove("binary_size");
        assert!(read(broken)
            .unwrap_err()
            .contains("missing field `binary_size`"));
        let unknown = serde_json::json!({"preset": "fastest", "error": "x"});
        assert!(read(unknown).unwrap_err().contains("fastest"));
        let neither = serde_json::json!({"preset": "size", "error": "x", "binary_size": 1});
        assert!(read(neither)
            .unwrap_err()
            .contains("unknown field `binary_size`"));
    }

    #[tokio::test]
    async fn a_row_whose_results_do_not_read_is_an_error_that_names_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let body = dir.path().join("context");
        std::fs::write(&body, b"context").unwrap();
        let build = NewBuild {
            id: "b1".into(),
            project: "fib.rs".into(),
            request: crate::pipeline::plan::Request::default(),
            source_digest: "sha256:00".into(),
            source_path: "fib.rs".into(),
        };
        store.insert(&build, &body).await.unwrap();
        assert!(store.get("b1").await.unwrap().unwrap().results.is_empty());
        for (column, text, reason) in [
            (
                "results",
                r#"[{"preset": "size"}]"#,
                "missing field `error`",
            ),
            ("stages", r#"{"compile": "slow"}"#, "invalid type"),
        ] {
            sqlx::query(&format!("UPDATE builds SET {column} = $1 WHERE id = 'b1'"))
                .bind(text)
                .execute(&store.pool)
                .await
                .unwrap();
            let got = store.get("b1").await.unwrap_err().to_string();
            let listed = store.list(None, 10, None).await.unwrap_err().to_string();
            for error in [got, listed] {
                assert!(
                    error.contains(&format!("build b1: its stored {column} cannot be read"))
                        && error.contains(reason),
                    "{error}"
                );
            }
            sqlx::query(&format!("UPDATE builds SET {column} = $1 WHERE id = 'b1'"))
                .bind(if column == "results" { "[]" } else { "{}" })
                .execute(&store.pool)
                .await
                .unwrap();
        }
    }
}
