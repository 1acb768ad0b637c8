//! Build logs in the database, a piece of lines at a time, so every worker reads (and
//! follows) a log that another writes, and it outlives the worker that wrote it.

use super::{db_error, LogChunk, Store};
use crate::core::error::Result;

impl Store {
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
}
