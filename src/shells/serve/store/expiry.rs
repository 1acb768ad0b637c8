//! Retention's bookkeeping (`serve --keep-artifacts`): claiming one finished build whose images
//! are older than the cutoff (one statement, so one worker deletes a given build's images),
//! the images every other build still keeps, and marking a build expired once they are gone.

use std::collections::BTreeMap;

use super::model::{Row, COLUMNS};
use super::{db_error, now, Backend, BuildRecord, Store};
use crate::core::error::Result;

impl Store {
    /// Takes the oldest build that finished before `cutoff` (RFC 3339), still has images and
    /// is not expired, for this worker to delete its images: unclaimed, or claimed before
    /// `lease_cutoff` by a worker that did not finish. None while any build is working: its
    /// push may be counting on a blob (the registry said it has it) that this would delete.
    pub async fn claim_expired(
        &self,
        cutoff: &str,
        lease_cutoff: &str,
    ) -> Result<Option<(BuildRecord, String)>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE OF b SKIP LOCKED",
        };
        let at = now();
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE builds SET expiring_at = $1
             WHERE id = (
               SELECT b.id FROM builds b
               WHERE b.finished_at < $2 AND b.expired_at IS NULL AND b.images <> '{{}}'
                 AND (b.expiring_at IS NULL OR b.expiring_at < $3)
                 AND NOT EXISTS (SELECT 1 FROM builds w WHERE w.status = 'working')
               ORDER BY b.seq
               LIMIT 1 {lock})
             RETURNING {COLUMNS}"
        ))
        .bind(&at)
        .bind(cutoff)
        .bind(lease_cutoff)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("claiming an expired build"))?;
        Ok(row
            .map(BuildRecord::try_from)
            .transpose()?
            .map(|record| (record, at)))
    }

    /// The images (preset → where) of every build that keeps them: not expired, and not
    /// being expired by any worker.
    pub async fn kept_images(&self) -> Result<Vec<BTreeMap<String, String>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, images FROM builds
             WHERE images <> '{}' AND expired_at IS NULL AND expiring_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("reading the builds that keep their images"))?;
        rows.into_iter()
            .map(|(id, images)| {
                serde_json::from_str(&images)
                    .map_err(|e| super::model::unreadable(&id, "images", e))
            })
            .collect()
    }

    /// Marks build `id` expired, if this worker's claim made at `claimed` still holds; when
    /// it was.
    pub async fn mark_expired(&self, id: &str, claimed: &str) -> Result<Option<String>> {
        let at = now();
        let done = sqlx::query(
            "UPDATE builds SET expired_at = $1 WHERE id = $2 AND expiring_at = $3 AND expired_at IS NULL",
        )
        .bind(&at)
        .bind(id)
        .bind(claimed)
        .execute(&self.pool)
        .await
        .map_err(db_error("marking a build expired"))?;
        Ok((done.rows_affected() == 1).then_some(at))
    }
}
