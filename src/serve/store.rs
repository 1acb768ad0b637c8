//! The service's state: build records in SQLite (through sqlx, so a PostgreSQL backend can
//! sit behind the same queries), and files under the data dir: each build's source and log,
//! and image archives in a blob store named by digest (a no-change rebuild is reproducible,
//! so its archive is the same blob as before).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{Error, Result};

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
    /// The request's options.
    pub options: serde_json::Value,
    /// `sha256:` digest of the uploaded body.
    pub source_digest: String,
    /// Stage name → milliseconds, summed over presets.
    pub stages: serde_json::Value,
    /// Why it failed.
    pub error: Option<BuildError>,
    /// Per preset: exactly what `ruchy-image build --json` writes, or `{preset, error}`.
    pub results: serde_json::Value,
    /// How many times a worker started it (a build interrupted by a crash runs once more).
    pub attempts: i64,
    #[serde(skip)]
    pub(crate) source_path: String,
    #[serde(skip)]
    pub(crate) images: std::collections::BTreeMap<String, String>,
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
}

impl From<Row> for BuildRecord {
    fn from(row: Row) -> BuildRecord {
        let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        BuildRecord {
            status: row.status.parse().unwrap_or(Status::Failure),
            id: row.id,
            project: row.project,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            options: json(&row.options),
            source_digest: row.source_digest,
            stages: json(&row.stages),
            error: row.error.and_then(|e| serde_json::from_str(&e).ok()),
            results: json(&row.results),
            images: serde_json::from_str(&row.images).unwrap_or_default(),
            source_path: row.source_path,
            attempts: row.attempts,
        }
    }
}

/// A new build, as the API accepted it.
#[derive(Debug, Clone)]
pub struct NewBuild {
    /// Its ID.
    pub id: String,
    /// Its project.
    pub project: String,
    /// The options, as JSON.
    pub options: serde_json::Value,
    /// Digest of the upload.
    pub source_digest: String,
    /// What to build inside its source directory.
    pub source_path: String,
}

/// What a finished build produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stage timings.
    pub stages: serde_json::Value,
    /// The per-preset results.
    pub results: Vec<serde_json::Value>,
    /// Preset → image blob digest.
    pub images: std::collections::BTreeMap<String, String>,
    /// The failure, if any.
    pub error: Option<BuildError>,
}

const COLUMNS: &str = "id, status, project, created_at, started_at, finished_at, options, source_digest, source_path, stages, error, results, images, attempts";

/// The database and the data dir.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    dir: PathBuf,
}

/// Now, as RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn db_error(context: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| Error::Io {
        context: format!("the build database: {context}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Store {
    /// Opens (creating and migrating) the database in `dir`.
    pub async fn open(dir: &Path) -> Result<Store> {
        for sub in ["sources", "logs", "blobs/sha256", "cache"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(Error::io(format!("creating {}", path.display())))?;
        }
        let file = dir.join("ruchy-image.db");
        crate::fsutil::check_writable("the build database", &file)?;
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_error("opening"))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| Error::Io {
                context: format!("migrating the build database {}", file.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Store {
            pool,
            dir: dir.to_path_buf(),
        })
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the build's source is unpacked.
    pub fn source_dir(&self, id: &str) -> PathBuf {
        self.dir.join("sources").join(id)
    }

    /// Where a project's builds compile, one at a time.
    pub fn workspace_dir(&self, project: &str) -> PathBuf {
        let name: String = project
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir
            .join("workspaces")
            .join(name.trim_start_matches('.'))
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

    /// Records a new queued build.
    pub async fn insert(&self, build: &NewBuild) -> Result<BuildRecord> {
        sqlx::query(
            "INSERT INTO builds (id, project, status, created_at, options, source_digest, source_path) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        )
        .bind(&build.id)
        .bind(&build.project)
        .bind(now())
        .bind(build.options.to_string())
        .bind(&build.source_digest)
        .bind(&build.source_path)
        .execute(&self.pool)
        .await
        .map_err(db_error("recording a build"))?;
        self.get(&build.id)
            .await?
            .ok_or_else(|| db_error("reading back a build")(sqlx::Error::RowNotFound))
    }

    /// One build.
    pub async fn get(&self, id: &str) -> Result<Option<BuildRecord>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM builds WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error("reading a build"))?;
        Ok(row.map(BuildRecord::from))
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
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR seq < (SELECT seq FROM builds WHERE id = ?2))
             ORDER BY seq DESC LIMIT ?3"
        ))
        .bind(status.map(Status::name))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("listing builds"))?;
        Ok(rows.into_iter().map(BuildRecord::from).collect())
    }

    /// Takes the next build to run: queued, of a project with no build running, from the
    /// project that waited longest since it last got a worker, oldest first within it.
    pub async fn claim(&self) -> Result<Option<BuildRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE builds SET status = 'working', started_at = ?1, attempts = attempts + 1
             WHERE id = (
               SELECT b.id FROM builds b
               WHERE b.status = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM builds w WHERE w.project = b.project AND w.status = 'working')
               ORDER BY (SELECT MAX(p.started_at) FROM builds p WHERE p.project = b.project) IS NOT NULL,
                        (SELECT MAX(p.started_at) FROM builds p WHERE p.project = b.project),
                        b.seq
               LIMIT 1)
             RETURNING {COLUMNS}"
        ))
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("claiming a build"))?;
        Ok(row.map(BuildRecord::from))
    }

    /// Ends a build: its status, and what it produced.
    pub async fn finish(&self, id: &str, status: Status, outcome: &Outcome) -> Result<()> {
        sqlx::query(
            "UPDATE builds SET status = ?, finished_at = ?, stages = ?, results = ?, images = ?, error = ? WHERE id = ?",
        )
        .bind(status.name())
        .bind(now())
        .bind(outcome.stages.to_string())
        .bind(serde_json::Value::from(outcome.results.clone()).to_string())
        .bind(serde_json::to_string(&outcome.images).unwrap_or_else(|_| "{}".into()))
        .bind(
            outcome
                .error
                .as_ref()
                .and_then(|e| serde_json::to_string(e).ok()),
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error("finishing a build"))?;
        Ok(())
    }

    /// Cancels a build that is still queued; false when it is not queued (any more).
    pub async fn cancel_queued(&self, id: &str) -> Result<bool> {
        let error = BuildError {
            message: "cancelled while queued".into(),
            stage: None,
        };
        let done = sqlx::query(
            "UPDATE builds SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error("cancelling a build"))?;
        Ok(done.rows_affected() == 1)
    }

    /// After a crash: builds that were working run once more, or fail if they already had
    /// their second chance. Returns (re-queued, failed).
    pub async fn recover(&self) -> Result<(u64, u64)> {
        let error = BuildError {
            message: "interrupted: the service stopped while building it, twice".into(),
            stage: None,
        };
        let failed = sqlx::query(
            "UPDATE builds SET status = 'failure', finished_at = ?, error = ? WHERE status = 'working' AND attempts >= 2",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .execute(&self.pool)
        .await
        .map_err(db_error("recovering builds"))?
        .rows_affected();
        let requeued = sqlx::query(
            "UPDATE builds SET status = 'queued', started_at = NULL WHERE status = 'working'",
        )
        .execute(&self.pool)
        .await
        .map_err(db_error("recovering builds"))?
        .rows_affected();
        Ok((requeued, failed))
    }

    /// Queued builds created before `cutoff` (RFC 3339) time out.
    pub async fn expire_queued(&self, cutoff: &str) -> Result<Vec<String>> {
        let error = BuildError {
            message: "waited in the queue longer than the queue TTL".into(),
            stage: None,
        };
        let ids: Vec<(String,)> = sqlx::query_as(
            "UPDATE builds SET status = 'timeout', finished_at = ?, error = ? WHERE status = 'queued' AND created_at < ? RETURNING id",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("expiring queued builds"))?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
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
        Ok(rows.into_iter().map(BuildRecord::from).collect())
    }
}
