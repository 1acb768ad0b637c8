//! The cache volumes builds through the engine leave: cargo's home (downloaded crates) and
//! the shared target directories (compiled dependencies), all labelled
//! [`CACHE_VOLUME_LABEL`]. `builder prune` lists them with the engine's own sizes and removes
//! the ones no container uses.

use std::collections::HashMap;

use bollard::query_parameters::ListVolumesOptionsBuilder;

use crate::adapters::engine::{api_error, Engine};
use crate::core::error::Result;

/// Label on the cache volumes, so they can be listed and removed together.
pub const CACHE_VOLUME_LABEL: &str = "dev.ruchy.image.cache";

/// One cache volume and what became of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheVolume {
    /// The volume's name.
    pub name: String,
    /// What it caches, from its label (`shared` for cargo's home, `target for IMAGE`...).
    pub owner: String,
    /// Bytes it holds, as the engine's disk-usage report gives them; none when the engine
    /// does not know (volume drivers other than `local`).
    pub size: Option<u64>,
    /// Containers using it (names), with their state: such a volume is never removed.
    pub used_by: Vec<String>,
    /// Whether it was removed.
    pub removed: bool,
    /// Why it could not be removed, when it was meant to be.
    pub error: Option<String>,
}

/// Every cache volume whose name starts with `prefix` (all of them for `""`), sorted by
/// name; with `remove`, the ones no container uses are removed.
pub async fn prune(engine: &Engine, prefix: &str, remove: bool) -> Result<Vec<CacheVolume>> {
    let docker = engine.docker();
    let options = ListVolumesOptionsBuilder::default()
        .filters(&HashMap::from([("label", vec![CACHE_VOLUME_LABEL])]))
        .build();
    let listed = docker
        .list_volumes(Some(options))
        .await
        .map_err(api_error("listing the cache volumes"))?;
    let sizes = volume_sizes(engine).await?;
    // Containers of any state hold on to their volumes: the engine refuses to remove those.
    let containers = engine.containers(None, "listing containers").await?;
    let mut volumes: Vec<CacheVolume> = listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.name.starts_with(prefix))
        .map(|v| {
            let used_by = containers
                .iter()
                .filter(|c| c.volumes.contains(&v.name))
                .map(|c| {
                    let name = if c.name.is_empty() { &c.id } else { &c.name };
                    format!("{name} ({})", c.state)
                })
                .collect();
            CacheVolume {
                size: sizes.get(&v.name).copied(),
                owner: v
                    .labels
                    .get(CACHE_VOLUME_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                name: v.name,
                used_by,
                removed: false,
                error: None,
            }
        })
        .collect();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if remove {
        for volume in volumes.iter_mut().filter(|v| v.used_by.is_empty()) {
            match docker
                .remove_volume(
                    &volume.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Ok(()) => volume.removed = true,
                // A build that started since the listing: its volume stays, and says why.
                Err(e) => volume.error = Some(e.to_string()),
            }
        }
    }
    Ok(volumes)
}

/// What a project's own target volume's [`CACHE_VOLUME_LABEL`] says: the project's
/// directory on this host (`HOST:PATH`), so the volume goes when the directory does.
pub fn project_owner(path: &std::path::Path) -> String {
    format!(
        "{PROJECT_TARGET}{}:{}",
        crate::adapters::cleanup::host(),
        path.display()
    )
}

const PROJECT_TARGET: &str = "project target for ";

/// Removes the target volumes nobody will use again: a build's own whose process is gone
/// (killed before it could remove it), and a project's whose directory on this host is gone.
/// Returns how many went; one in use stays.
pub async fn remove_stale(engine: &Engine) -> Result<usize> {
    let options = ListVolumesOptionsBuilder::default()
        .filters(&HashMap::from([("label", vec![CACHE_VOLUME_LABEL])]))
        .build();
    let listed = engine
        .docker()
        .list_volumes(Some(options))
        .await
        .map_err(api_error("listing the cache volumes"))?;
    let host = format!("{}:", crate::adapters::cleanup::host());
    let mut removed = 0;
    for volume in listed.volumes.unwrap_or_default() {
        let label = |name: &str| volume.labels.get(name).map(String::as_str);
        let orphan = label(crate::adapters::cleanup::OWNER_LABEL)
            .is_some_and(crate::adapters::cleanup::is_orphan);
        let gone = label(CACHE_VOLUME_LABEL)
            .and_then(|owner| owner.strip_prefix(PROJECT_TARGET))
            .and_then(|place| place.strip_prefix(&host))
            .is_some_and(|path| !std::path::Path::new(path).exists());
        if (orphan || gone) && engine.remove_volume(&volume.name).await.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Bytes per volume from the engine's disk-usage report (`GET /system/df`). bollard reads
/// the report of API 1.52+ (`VolumeUsage.Items`); older engines (Debian's 20.10: API 1.41,
/// and Podman) answer with `Volumes`, read from the plain JSON answer.
async fn volume_sizes(engine: &Engine) -> Result<HashMap<String, u64>> {
    let items: Vec<serde_json::Value> = match engine.docker().df(None).await {
        Ok(df) => df.volume_usage.and_then(|u| u.items).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let items = if items.is_empty() {
        legacy_df_volumes(engine).await
    } else {
        items
    };
    Ok(items
        .iter()
        .filter_map(|v| {
            let name = v.get("Name")?.as_str()?.to_string();
            let size = v.get("UsageData")?.get("Size")?.as_i64()?;
            Some((name, u64::try_from(size).ok()?))
        })
        .collect())
}

/// `Volumes` of an API-1.41-style `/system/df` answer; empty when the engine does not answer
/// with one.
async fn legacy_df_volumes(engine: &Engine) -> Vec<serde_json::Value> {
    // The engine runs one disk-usage query at a time and refuses others meanwhile ("a disk
    // usage operation is already running"): wait for our turn, up to 15 s.
    for _ in 0..30 {
        match engine.get_json("/system/df", "reading disk usage").await {
            Ok(df) => return df["Volumes"].as_array().cloned().unwrap_or_default(),
            Err(e) if e.to_string().contains("already running") => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
            Err(_) => return Vec::new(),
        }
    }
    Vec::new()
}
