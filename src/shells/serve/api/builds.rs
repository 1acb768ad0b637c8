//! `/v1/builds`: send a build context, list and read build records, follow a log, cancel,
//! download an image. Any worker answers for any build: logs are in the database, images in
//! the artifact registry (or, for one service on SQLite, in its data dir).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::adapters::fsutil::hex;
use crate::core::metrics::Built;
use crate::shells::serve::error::ApiError;
use crate::shells::serve::request;
use crate::shells::serve::state::{AppState, Shared};
use crate::shells::serve::store::{BuildRecord, NewBuild, PresetResult, Status};
use crate::shells::serve::upload;

/// The builds' routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/builds", post(create).get(list))
        .route("/v1/builds/{id}", get(show))
        .route("/v1/builds/{id}/log", get(log))
        .route("/v1/builds/{id}/cancel", post(cancel))
        .route("/v1/builds/{id}/image", get(image))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no build {id}"))
}

/// A new build ID: milliseconds since 1970 (so IDs sort by age) and random bits.
fn new_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut random = [0u8; 6];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut random);
    }
    format!("b{:011x}{}", now.as_millis(), hex(&random))
}

/// The project a context builds: its package's name, or the file's.
fn project_name(dir: &std::path::Path, source_path: &str) -> String {
    if source_path != "." {
        return source_path.to_string();
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let (true, Some(rest)) = (in_package, line.strip_prefix("name")) {
            if let Some(value) = rest.trim_start().strip_prefix('=') {
                return value.trim().trim_matches('"').to_string();
            }
        }
    }
    "workspace".into()
}

/// Receives an upload's body into `file`, `read_timeout` at most between two parts, `max`
/// bytes at most; its digest.
async fn receive(
    body: Body,
    file: &std::path::Path,
    max: u64,
    read_timeout: Duration,
) -> Result<String, ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let too_large = || {
        ApiError::TooLarge(format!(
            "the upload is over the server's limit of {max} bytes (--max-upload)"
        ))
    };
    let internal =
        |e: std::io::Error| ApiError::Internal(format!("writing {}: {e}", file.display()));
    let mut out = tokio::fs::File::create(file).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    loop {
        let chunk = match tokio::time::timeout(read_timeout, stream.next()).await {
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "the upload stalled: nothing came for {}",
                    humantime::format_duration(read_timeout)
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::BadRequest(format!("the upload was cut off: {e}")))
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large());
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// Removes a file when dropped, however the request ends.
struct Temporary(std::path::PathBuf);

impl Drop for Temporary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `request` with the settings of the source it was sent with (its file's line in any error
/// a setting causes), admitted.
fn admit_with_settings(
    mut request: crate::pipeline::plan::Request,
    source_path: &str,
) -> crate::Result<crate::pipeline::plan::Request> {
    use crate::pipeline::plan::settings::{self, Settings, Use};
    let found = Settings::find(&request.source.path)?;
    settings::resolve(found.as_ref(), &mut request, Use::Service)?;
    request::admit(&request, source_path).map_err(|e| match &found {
        Some(found) => found.locate(&request, e),
        None => e,
    })?;
    Ok(request)
}

async fn create(
    State(state): Shared,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bad = ApiError::BadRequest;
    // What can be judged without the context is, before it is received.
    let request = request::from_query(&query)
        .and_then(|request| request.check().map(|()| request))
        .map_err(|e| bad(e.to_string()))?;
    // Uploads are streamed to disk and kept in the database a chunk at a time; each still
    // costs a file and the work of checking it, so only so many are received at once.
    let _permit = state.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError::TooMany(
            "the server is receiving as many uploads as it takes at once; try again shortly".into(),
        )
    })?;
    let max = state.max_upload;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(format!(
            "the upload is over the server's limit of {max} bytes (--max-upload)"
        )));
    }
    let store = &state.queue.store;
    let id = new_id();
    let uploads = store.dir().join("uploads");
    tokio::fs::create_dir_all(&uploads)
        .await
        .map_err(|e| ApiError::Internal(format!("creating {}: {e}", uploads.display())))?;
    let received = Temporary(uploads.join(format!("{id}.body")));
    let digest = receive(body, &received.0, max, state.read_timeout).await?;
    let dir = store.source_dir(&id);
    // Messages name paths in the upload, never where the server keeps it.
    let here = dir.display().to_string();
    let scrub = move |message: String| bad(message.replace(&here, "."));
    let max_unpacked = state.max_unpacked;
    // Unpacked here to check it; the worker that takes it unpacks the database's copy.
    let source_path = {
        let (dir, file) = (dir.clone(), received.0.clone());
        crate::adapters::fsutil::blocking(move || {
            let file = std::fs::File::open(&file)
                .map_err(|e| upload::BadUpload(format!("cannot read the upload: {}", e.kind())))?;
            upload::unpack(file, &dir, max_unpacked)
        })
        .await
        .map_err(|e| scrub(e.to_string()))?
    };
    // The upload's settings, for what the request does not say; then the whole is judged.
    let checked = {
        let mut request = request.clone();
        request::record_given(&mut request, &query);
        request.source.path = dir.join(&source_path);
        admit_with_settings(request, &source_path).map_err(|e| e.to_string())
    };
    let project = project_name(&dir, &source_path);
    let _ = std::fs::remove_dir_all(&dir);
    let request = checked.map_err(scrub)?;
    let build = NewBuild {
        project,
        id: id.clone(),
        request,
        source_digest: digest,
        source_path,
    };
    let record = store.insert(&build, &received.0).await?;
    state.queue.wake.notify_one();
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/builds/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::ACCEPTED, headers, Json(record)).into_response())
}

async fn show(State(state): Shared, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let record = state.queue.store.get(&id).await?;
    let record = record.ok_or_else(|| not_found(&id))?;
    Ok(Json(record).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    before: Option<String>,
}

async fn list(State(state): Shared, Query(query): Query<ListQuery>) -> Result<Response, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let builds = state
        .queue
        .store
        .list(status, limit, query.before.as_deref())
        .await?;
    let next = (builds.len() as i64 == limit)
        .then(|| builds.last().map(|b| b.id.clone()))
        .flatten();
    Ok(Json(serde_json::json!({ "builds": builds, "next_before": next })).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

async fn log(
    State(state): Shared,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let store = state.queue.store.clone();
    store.get(&id).await?.ok_or_else(|| not_found(&id))?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let first = store.log_after(&id, (-1, -1)).await?;
    if first.is_empty() && !query.follow {
        // Kept in a file by a version before logs were kept in the database.
        let text = tokio::fs::read(store.log_path(&id))
            .await
            .unwrap_or_default();
        return Ok((text_plain, text).into_response());
    }
    if !query.follow {
        let mut text = String::new();
        let mut next = first;
        while let Some(last) = next.last().map(|c| c.at) {
            text.extend(next.into_iter().map(|c| c.body));
            next = store.log_after(&id, last).await?;
        }
        return Ok((text_plain, text).into_response());
    }
    // Follow: send what is there, then what is added (by whichever worker runs the build),
    // until the build has ended and everything it wrote was sent. The worker keeps the whole
    // log before it records the end, so nothing comes after.
    let stream = futures_util::stream::unfold(Some((-1i64, -1i64)), move |after| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let after = after?;
            loop {
                let ended = match store.get(&id).await {
                    Ok(Some(record)) => record.status.is_final(),
                    _ => true,
                };
                let chunks = match store.log_after(&id, after).await {
                    Ok(chunks) => chunks,
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                };
                if let Some(last) = chunks.last().map(|c| c.at) {
                    let text: String = chunks.into_iter().map(|c| c.body).collect();
                    return Some((Ok::<_, std::io::Error>(Bytes::from(text)), Some(last)));
                }
                if ended {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    Ok((text_plain, Body::from_stream(stream)).into_response())
}

async fn cancel(State(state): Shared, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let store = &state.queue.store;
    let record = store.get(&id).await?.ok_or_else(|| not_found(&id))?;
    if record.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "build {id} has already ended ({})",
            record.status.name()
        )));
    }
    if !store.cancel_queued(&id).await? {
        if record.worker.as_deref() != Some(store.worker()) {
            // Another worker runs it: the database says it is cancelled, and that worker's
            // heartbeat stops it.
            store.cancel_working(&id).await?;
            let record = store.get(&id).await?.ok_or_else(|| not_found(&id))?;
            return Ok(Json(record).into_response());
        }
        let run = state
            .queue
            .running
            .lock()
            .expect("running builds")
            .get(&id)
            .cloned();
        if let Some(run) = run {
            run.cancel.cancel();
        }
        // The worker records the end once the build's container is stopped.
        for _ in 0..100 {
            match store.get(&id).await? {
                Some(r) if r.status.is_final() => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let record = store.get(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(record).into_response())
}

#[derive(Deserialize)]
struct ImageQuery {
    preset: Option<String>,
}

async fn image(
    State(state): Shared,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<ImageQuery>,
) -> Result<Response, ApiError> {
    let store = &state.queue.store;
    let record = store.get(&id).await?.ok_or_else(|| not_found(&id))?;
    if let Some(at) = &record.expired_at {
        return Err(ApiError::Gone(format!(
            "build {id}'s images expired at {at} (the server's --keep-artifacts); its record stays"
        )));
    }
    let presets: Vec<&String> = record.images.keys().collect();
    let digest = match (&query.preset, presets.as_slice()) {
        (Some(preset), _) => record.images.get(preset).ok_or_else(|| {
            ApiError::NotFound(format!(
                "build {id} has no image for preset `{preset}` (it has: {presets:?})"
            ))
        })?,
        (None, [one]) => &record.images[*one],
        (None, []) => {
            return Err(ApiError::NotFound(format!(
                "build {id} has no image ({})",
                record.status.name()
            )))
        }
        (None, _) => {
            return Err(ApiError::BadRequest(format!(
                "build {id} has several images: pass preset= one of {presets:?}"
            )))
        }
    };
    if digest.contains('@') {
        return from_artifacts(&state, &record, query.preset.as_deref(), digest).await;
    }
    let file = tokio::fs::File::open(store.blob_path(digest))
        .await
        .map_err(|e| ApiError::Internal(format!("opening the image {digest}: {e}")))?;
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                digest.clone(),
            ),
        ],
        body,
    )
        .into_response())
}

/// The image at `stored` (`REPO@digest`) in the artifact registry, as the archive the data
/// dir would hold, streamed from the registry.
async fn from_artifacts(
    state: &AppState,
    record: &BuildRecord,
    preset: Option<&str>,
    stored: &str,
) -> Result<Response, ApiError> {
    let artifacts = state.queue.artifacts.as_ref().ok_or_else(|| {
        ApiError::Internal(format!(
            "build {} has its image in {stored}, and this worker was started without --artifacts",
            record.id
        ))
    })?;
    // The name inside the archive is the one the build gave its image.
    let name = record
        .results
        .iter()
        .find_map(|result| match result {
            PresetResult::Built(Built::Image(one))
                if preset.is_none_or(|p| one.optimization_level.name() == p) =>
            {
                Some(one.image.reference.clone())
            }
            PresetResult::Built(Built::Index(index))
                if preset.is_none_or(|p| {
                    index
                        .platforms
                        .first()
                        .is_some_and(|one| one.optimization_level.name() == p)
                }) =>
            {
                Some(index.reference.clone())
            }
            _ => None,
        })
        .ok_or_else(|| {
            ApiError::Internal(format!("build {} has no record of its image", record.id))
        })?;
    let download = artifacts
        .archive(stored, &name, record.request.source_date_epoch)
        .await
        .map_err(|e| {
            ApiError::BadGateway(format!(
                "build {}: its image cannot be read from the artifact registry: {e}",
                record.id
            ))
        })?;
    let (id, events, task) = (record.id.clone(), state.queue.events.clone(), download.task);
    tokio::spawn(async move {
        let failed = match task.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        events.emit(crate::core::event::Event::Warning {
            message: format!("build {id}: a download of its image broke off: {failed}"),
        });
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(download.body));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (header::CONTENT_LENGTH, download.length.to_string()),
            (
                header::HeaderName::from_static("docker-content-digest"),
                download.digest,
            ),
            (
                header::HeaderName::from_static("ruchy-image-location"),
                download.location,
            ),
        ],
        body,
    )
        .into_response())
}
