//! Reading build records: one, a page of them, a project's, and the numbers `/metrics` shows.

use super::model::{Row, COLUMNS};
use super::{db_error, BuildRecord, Status, Store};
use crate::core::error::Result;

impl Store {
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
