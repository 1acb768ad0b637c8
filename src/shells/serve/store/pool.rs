//! Opening the store: the data dir's directories, the database (SQLite in the data dir or a
//! shared PostgreSQL) with its pool and migrations, and this data dir's worker ID.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

use super::{Backend, Store, StoreError};
use crate::core::error::{Error, Result};
use crate::core::event::Events;

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
            .map_err(|source| {
                StoreError::Database {
                    context: format!("connecting to {}", redact(&url)),
                    source,
                }
                .into_error()
            })?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated.map_err(|source| {
            StoreError::Migrate {
                url: redact(&url),
                source,
            }
            .into_error()
        })?;
        Ok(Store {
            pool,
            backend,
            url,
            dir: dir.to_path_buf(),
            worker: worker_id(dir)?,
            claim_lock: Default::default(),
            events: Events::none(),
        })
    }
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
