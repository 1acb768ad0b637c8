//! What the store keeps, as the API and the workers see it: statuses, build records (and
//! the row each is read from, a column that does not read being an error that names the
//! build), new builds, outcomes, log pieces and workers.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StoreError;
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
    /// When its images were deleted (`serve --keep-artifacts`): the record stays, its image
    /// answers 410.
    pub expired_at: Option<String>,
    #[serde(skip)]
    pub(crate) source_path: String,
    #[serde(skip)]
    pub(crate) images: BTreeMap<String, String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
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
    expired_at: Option<String>,
}

/// A column of build `id` that does not read: the record would be wrong, so it is an error.
pub(super) fn unreadable(id: &str, column: &'static str, reason: impl std::fmt::Display) -> Error {
    StoreError::Unreadable {
        id: id.to_string(),
        column,
        reason: reason.to_string(),
    }
    .into_error()
}

impl TryFrom<Row> for BuildRecord {
    type Error = Error;
    fn try_from(row: Row) -> Result<BuildRecord> {
        fn decode<T: serde::de::DeserializeOwned>(
            id: &str,
            column: &'static str,
            text: &str,
        ) -> Result<T> {
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
            request: crate::shells::serve::request::from_stored(&row.options)
                .map_err(|e| unreadable(id, "request", e))?,
            source_digest: row.source_digest,
            stages: decode(id, "stages", &row.stages)?,
            error: row.error.map(|e| decode(id, "error", &e)).transpose()?,
            results: decode(id, "results", &row.results)?,
            images: decode(id, "images", &row.images)?,
            source_path: row.source_path,
            attempts: row.attempts,
            worker: row.worker,
            expired_at: row.expired_at,
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
pub(super) const SOURCE_CHUNK: usize = 1 << 20;

pub(super) const COLUMNS: &str = "id, status, project, created_at, started_at, finished_at, options, source_digest, source_path, stages, error, results, images, attempts, worker, expired_at";

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

pub(super) const WORKER_COLUMNS: &str =
    "id, name, url, engine, slots, started_at, heartbeat_at, stopped_at";

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
}
