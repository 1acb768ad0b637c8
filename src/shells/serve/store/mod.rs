//! The service's state: build records, uploaded sources, logs, workers and the queue in SQLite
//! (one service) or PostgreSQL (any number of workers on one database), through sqlx's Any
//! driver so both run the same queries; and this worker's data dir (workspaces, caches, and
//! without an artifact registry the image archives, in a blob store named by digest).
//!
//! One module per job: [`model`] (records and rows), [`pool`] (opening and migrating),
//! [`queue`] (accepting, claiming, finishing), [`records`] (reading builds), [`workers`]
//! (bookkeeping), [`logs`] and [`expiry`] (retention). Their errors are [`StoreError`]s,
//! which keep sqlx's cause.

mod expiry;
mod logs;
mod model;
mod pool;
mod queue;
mod records;
mod workers;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sqlx::AnyPool;

pub use model::*;
pub use pool::redact;

use crate::core::error::Error;
use crate::core::event::{Event, Events};

/// What goes wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("{context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// sqlx's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored column does not read: the record would be wrong.
    #[error("build {id}: its stored {column} cannot be read: {reason}")]
    Unreadable {
        /// The build.
        id: String,
        /// The column.
        column: &'static str,
        /// Why.
        reason: String,
    },
    /// The database could not be migrated to this version's schema.
    #[error("migrating {url}: {source}")]
    Migrate {
        /// The database, without its password.
        url: String,
        /// sqlx's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl StoreError {
    /// As the crate's error (an `Error::Io` about the build database, the cause kept). Not a
    /// `From`: a second conversion into `Error` would leave `?` in closures without a type.
    pub fn into_error(self) -> Error {
        Error::Io {
            context: "the build database".into(),
            source: std::io::Error::other(self),
        }
    }
}

fn db_error(context: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |source| {
        StoreError::Database {
            context: context.to_string(),
            source,
        }
        .into_error()
    }
}

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
    /// Where what the store only notes (a cleanup that failed) is said, with its build.
    events: Events,
}

/// Now, as RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Store {
    /// The store, saying what it only notes (errors of cleanups nothing waits for) to `events`.
    pub fn reporting_to(mut self, events: Events) -> Store {
        self.events = events;
        self
    }

    /// Says an error nothing waits for, with what it concerns.
    fn note_failure(&self, what: String, e: impl std::fmt::Display) {
        self.events.emit(Event::Warning {
            message: format!("{what}: {e}"),
        });
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
