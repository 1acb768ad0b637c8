//! Worker bookkeeping: who is here, their heartbeats, their clean stops, and what each runs.

use super::model::WORKER_COLUMNS;
use super::{db_error, now, Store, Worker};
use crate::core::error::Result;

impl Store {
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
}
