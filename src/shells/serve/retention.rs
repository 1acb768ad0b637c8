//! Retention (`serve --keep-artifacts DURATION`): every tick, each build that finished longer
//! ago than DURATION and still has images is claimed by one worker (in the database), its
//! images are deleted, and its record is marked expired (its image then answers 410).
//!
//! In the artifact registry, by digest: each image's manifest (an index's per-platform ones
//! too), its SBOM referrers and the referrer fallback tag's index listing them, and the blobs
//! they use; except what a build that keeps its images still reaches (a layer two builds
//! share stays with the one kept). Blobs go first and the root manifest last, so a round cut
//! short finds everything again from the root. Without a registry, the data dir's archive
//! (named by digest, shared by builds of the same image) goes once no build keeps it.
//!
//! A round runs only while no build is working anywhere: a push in flight may count on a blob
//! the registry said it has, which this would delete under it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use super::artifacts::http::RegistryHttp;
use super::store::BuildRecord;
use super::worker::Queue;
use crate::core::error::{Error, Result};
use crate::core::event::Event;

/// How long a claim holds: a build whose images a worker took and did not mark expired by
/// then (it died, or the registry refused a delete) is taken again after it.
const LEASE: Duration = Duration::from_secs(600);

/// How often to look: a tenth of the retention, between a second and five minutes.
pub fn tick(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// Expires builds older than `keep`, every [`tick`], until the service drains.
pub async fn retain(queue: Queue, keep: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick(keep)) => {}
            _ = queue.draining.cancelled() => return,
        }
        if let Err(e) = expire_due(&queue, keep).await {
            queue.events.emit(Event::Warning {
                message: format!("retention: {e}"),
            });
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// One round: every build due, one at a time; the IDs of those expired.
pub async fn expire_due(queue: &Queue, keep: Duration) -> Result<Vec<String>> {
    let now = SystemTime::now();
    let (cutoff, lease) = (rfc3339(now - keep), rfc3339(now - LEASE));
    let store = &queue.store;
    let mut reached = HashMap::new();
    let mut expired = Vec::new();
    while let Some((build, claimed)) = store.claim_expired(&cutoff, &lease).await? {
        match expire(queue, &build, &mut reached).await {
            Ok(()) => {
                if store.mark_expired(&build.id, &claimed).await?.is_some() {
                    queue.events.note(format!(
                        "build {}: its images are deleted (it finished at {}, --keep-artifacts {})",
                        build.id,
                        build.finished_at.as_deref().unwrap_or("?"),
                        humantime::format_duration(keep)
                    ));
                    expired.push(build.id);
                }
            }
            Err(e) => queue.events.emit(Event::Warning {
                message: format!(
                    "build {}: its images are not all deleted, tried again in {}: {e}",
                    build.id,
                    humantime::format_duration(LEASE)
                ),
            }),
        }
    }
    Ok(expired)
}

/// What an image reaches in its repository, as `REPO@digest`: manifests root first (the
/// image or index, its images, their referrers' fallback index and referrers), and blobs.
#[derive(Debug, Clone, Default)]
struct Reach {
    manifests: Vec<String>,
    blobs: BTreeSet<String>,
}

/// Deletes `build`'s images, keeping what builds that keep theirs still use.
async fn expire(
    queue: &Queue,
    build: &BuildRecord,
    reached: &mut HashMap<String, Reach>,
) -> Result<()> {
    let store = &queue.store;
    let kept: BTreeSet<String> = store
        .kept_images()
        .await?
        .into_iter()
        .flat_map(|images| images.into_values())
        .collect();
    let (in_registry, in_data_dir): (Vec<&String>, Vec<&String>) =
        build.images.values().partition(|s| s.contains('@'));
    for digest in in_data_dir.into_iter().filter(|d| !kept.contains(*d)) {
        let path = store.blob_path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("removing {}", path.display()))(e))
            }
            _ => {}
        }
    }
    let Some(first) = in_registry.first() else {
        return Ok(());
    };
    let artifacts = queue.artifacts.as_ref().ok_or_else(|| Error::InvalidInput {
        what: "--keep-artifacts",
        value: first.to_string(),
        reason: "the build's images are in an artifact registry and this worker was started without --artifacts".into(),
    })?;
    let host = artifacts.registry_host();
    let http = artifacts.http().await?;
    let mut gone = Reach::default();
    for stored in &in_registry {
        if stored.split('/').next() != Some(host) {
            return Err(Error::InvalidInput {
                what: "--keep-artifacts",
                value: stored.to_string(),
                reason: format!("the image is not in --artifacts' registry {host}"),
            });
        }
        let reach = reach_of(&http, stored, reached).await?;
        gone.manifests.extend(reach.manifests);
        gone.blobs.extend(reach.blobs);
    }
    let mut keep = Reach::default();
    for stored in kept.iter().filter(|s| s.split('/').next() == Some(host)) {
        let reach = reach_of(&http, stored, reached).await?;
        keep.manifests.extend(reach.manifests);
        keep.blobs.extend(reach.blobs);
    }
    let keep_manifests: BTreeSet<&String> = keep.manifests.iter().collect();
    for blob in gone.blobs.difference(&keep.blobs) {
        let (repository, digest) = split(blob);
        http.delete(repository, "blobs", digest).await?;
    }
    for manifest in gone.manifests.iter().rev() {
        if !keep_manifests.contains(manifest) {
            let (repository, digest) = split(manifest);
            http.delete(repository, "manifests", digest).await?;
        }
    }
    Ok(())
}

/// `REGISTRY/REPO@digest` → (`REPO`, `digest`).
fn split(stored: &str) -> (&str, &str) {
    let (name, digest) = stored.rsplit_once('@').unwrap_or((stored, ""));
    let repository = name.split_once('/').map_or(name, |(_, repo)| repo);
    (repository, digest)
}

/// What the image at `stored` reaches (nothing when it is gone already), read once a round.
async fn reach_of(
    http: &RegistryHttp,
    stored: &str,
    reached: &mut HashMap<String, Reach>,
) -> Result<Reach> {
    if let Some(reach) = reached.get(stored) {
        return Ok(reach.clone());
    }
    let (repository, digest) = split(stored);
    let host = stored.split('/').next().unwrap_or_default();
    let at = |digest: &str| format!("{host}/{repository}@{digest}");
    let mut reach = Reach::default();
    let Some(root) = http.manifest(repository, digest).await? else {
        return Ok(reach);
    };
    reach.manifests.push(at(digest));
    let mut images = Vec::new();
    match root.json["manifests"].as_array() {
        Some(entries) => {
            for entry in entries {
                let image = entry["digest"].as_str().unwrap_or_default();
                if let Some(manifest) = http.manifest(repository, image).await? {
                    reach.manifests.push(at(image));
                    images.push((image.to_string(), manifest.json));
                }
            }
        }
        None => images.push((digest.to_string(), root.json)),
    }
    for (image, manifest) in images {
        reach.blobs.extend(parts(&manifest).map(|blob| at(&blob)));
        // Distribution 2.8 has no referrers API: the fallback tag's index lists them.
        let tag = image.replacen(':', "-", 1);
        let Some(list) = http.manifest(repository, &tag).await? else {
            continue;
        };
        reach.manifests.push(at(&list.digest));
        for entry in list.json["manifests"].as_array().into_iter().flatten() {
            let referrer = entry["digest"].as_str().unwrap_or_default();
            if let Some(manifest) = http.manifest(repository, referrer).await? {
                reach.manifests.push(at(referrer));
                reach
                    .blobs
                    .extend(parts(&manifest.json).map(|blob| at(&blob)));
            }
        }
    }
    reached.insert(stored.to_string(), reach.clone());
    Ok(reach)
}

/// The blobs a manifest names: its config and layers.
fn parts(manifest: &serde_json::Value) -> impl Iterator<Item = String> + '_ {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .filter_map(|part| part["digest"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_image_splits_into_its_repository_and_digest() {
        assert_eq!(
            split("127.0.0.1:5000/team/builds@sha256:ab"),
            ("team/builds", "sha256:ab")
        );
    }

    #[test]
    fn the_tick_is_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(tick(Duration::from_secs(20)), Duration::from_secs(2));
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            tick(Duration::from_secs(30 * 86400)),
            Duration::from_secs(300)
        );
    }
}
