//! The queue: accepting a build with its uploaded context (kept in chunks), claiming the
//! next one fairly (one statement, `FOR UPDATE SKIP LOCKED` under PostgreSQL), finishing,
//! cancelling, re-queueing interrupted builds and expiring ones that waited too long.

use std::path::Path;

use super::model::{Row, COLUMNS, SOURCE_CHUNK};
use super::{
    db_error, now, Backend, BuildError, BuildRecord, NewBuild, Outcome, Status, Store,
    QUEUE_CHANNEL,
};
use crate::core::error::{Error, Result};

impl Store {
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
        self.announce(&format!("build {}", build.id)).await;
        Ok(record)
    }

    /// Tells the other PostgreSQL workers the queue changed (they also look every few seconds).
    async fn announce(&self, about: &str) {
        if self.backend == Backend::Postgres {
            let told = sqlx::query(&format!("NOTIFY {QUEUE_CHANNEL}"))
                .execute(&self.pool)
                .await;
            if let Err(e) = told {
                // The others still look every few seconds: this costs latency only.
                self.note_failure(format!("{about}: cannot tell the other workers"), e);
            }
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
        self.forget_source(&build.id, &build.source_digest).await;
        // A build of the same project may have waited for this one.
        self.announce(&format!("build {}", build.id)).await;
        Ok(done.rows_affected() == 1)
    }

    /// Drops an uploaded context no queued or working build needs any more.
    async fn forget_source(&self, build: &str, digest: &str) {
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
        let forgotten: std::result::Result<(), sqlx::Error> = forget.await;
        if let Err(e) = forgotten {
            // Kept until a later build of the same context ends and forgets it.
            self.note_failure(format!("build {build}: its source {digest} is kept"), e);
        }
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
            self.announce(&format!("build {id}")).await;
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
            self.forget_source(id, digest).await;
        }
        Ok(cancelled.is_some())
    }

    /// Builds interrupted where they ran run once more, or fail if they already had their
    /// second chance: this worker's own (and, with SQLite, those of services before workers
    /// were recorded) when `silent_since` is none; else other workers' whose last heartbeat
    /// is older than it (RFC 3339). Returns (re-queued, failed).
    async fn requeue_working(&self, silent_since: Option<&str>, why: &str) -> Result<(u64, u64)> {
        // Which builds is one condition for both cases: this worker's when there is no
        // cutoff, else the silent workers'.
        let error = BuildError {
            message: format!("interrupted: {why}, twice"),
            stage: None,
            usage: false,
        };
        let failed = sqlx::query(
            "UPDATE builds SET status = 'failure', finished_at = $1, error = $2
             WHERE status = 'working' AND attempts >= 2
               AND ((CAST($4 AS TEXT) IS NULL AND (worker = $3 OR worker IS NULL))
                    OR worker IN (SELECT id FROM workers WHERE heartbeat_at < $4 AND id <> $3))",
        )
        .bind(now())
        .bind(serde_json::to_string(&error).ok())
        .bind(&self.worker)
        .bind(silent_since)
        .execute(&self.pool)
        .await
        .map_err(db_error("recovering builds"))?
        .rows_affected();
        let requeued = sqlx::query(
            "UPDATE builds SET status = 'queued', started_at = NULL, worker = NULL
             WHERE status = 'working'
               AND ((CAST($2 AS TEXT) IS NULL AND (worker = $1 OR worker IS NULL))
                    OR worker IN (SELECT id FROM workers WHERE heartbeat_at < $2 AND id <> $1))",
        )
        .bind(&self.worker)
        .bind(silent_since)
        .execute(&self.pool)
        .await
        .map_err(db_error("recovering builds"))?
        .rows_affected();
        if requeued > 0 {
            self.announce("builds queued again").await;
        }
        Ok((requeued, failed))
    }

    /// At start: the builds this worker was running when it stopped without finishing them
    /// (with SQLite, also those of services before workers were recorded).
    pub async fn recover(&self) -> Result<(u64, u64)> {
        self.requeue_working(None, "the service stopped while building it")
            .await
    }

    /// Builds of other workers whose last heartbeat is older than `cutoff` (RFC 3339).
    pub async fn requeue_stale(&self, cutoff: &str) -> Result<(u64, u64)> {
        self.requeue_working(Some(cutoff), "the worker building it stopped answering")
            .await
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
        for (id, digest) in &expired {
            self.forget_source(id, digest).await;
        }
        Ok(expired.into_iter().map(|(id, _)| id).collect())
    }
}
