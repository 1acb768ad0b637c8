//! The Docker engine, through bollard: connection (honouring `DOCKER_HOST`, negotiating the
//! API version so Engine 20.10 / API 1.41 works as well as current engines), errors that carry
//! the engine's message, and cleanup of containers an interrupted run leaves behind.

use std::sync::Mutex;
use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::cleanup;
use crate::error::{Error, Result};
use crate::event::{Event, Events};

/// How long a ping may take before we call the engine unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests like image loads and long container waits need far more than bollard's default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    /// `DOCKER_HOST`, or the default socket.
    pub host: String,
    /// The engine's version (`20.10.24`).
    pub version: String,
    /// The API version in use after negotiation (`1.41`).
    pub api_version: String,
}

/// Containers created and not yet removed; removed by [`remove_leftovers`] when a run is
/// interrupted (the future that owned them was dropped before it could clean up).
static LEFTOVERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Maps a bollard error to ours, with what we were doing.
pub fn api_error(context: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
    let context = context.into();
    move |e| {
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            bollard::errors::Error::DockerStreamError { error } => error,
            other => other.to_string(),
        };
        Error::Engine { context, message }
    }
}

impl Engine {
    /// Connects to `DOCKER_HOST` (unix socket or tcp), negotiates the API version and pings.
    pub async fn connect() -> Result<Engine> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let unavailable = |reason: String| Error::EngineUnavailable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unavailable(e.to_string()))?;
        let attempt = async {
            let docker = docker.negotiate_version().await?;
            let version = docker.version().await?;
            Ok::<_, bollard::errors::Error>((docker, version))
        };
        let (docker, version) = tokio::time::timeout(PING_TIMEOUT, attempt)
            .await
            .map_err(|_| unavailable("it did not answer within 3 s".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Engine {
            api_version: docker.client_version().to_string(),
            docker: docker.with_timeout(REQUEST_TIMEOUT),
            host,
            version: version.version.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The image's ID (config digest) if the engine has it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(api_error(format!("inspecting image {reference}"))(e)),
        }
    }

    /// Loads a `docker save`-format tarball (our `--output` archive), returning the engine's
    /// messages (`Loaded image: ...`).
    pub async fn load(&self, archive: Vec<u8>) -> Result<Vec<String>> {
        let mut stream = self.docker.import_image(
            bollard::query_parameters::ImportImageOptionsBuilder::default()
                .quiet(true)
                .build(),
            bollard::body_full(archive.into()),
            None,
        );
        let mut messages = Vec::new();
        while let Some(info) = stream.next().await {
            let info = info.map_err(api_error("loading the image into the engine"))?;
            if let Some(stream) = info.stream {
                messages.push(stream.trim().to_string());
            }
        }
        Ok(messages)
    }

    /// Pulls an image, reporting the engine's progress as [`Event::Pull`]; the error is the
    /// engine's message.
    pub async fn pull(&self, reference: &str, events: &Events) -> std::result::Result<(), String> {
        let progress = |status: String| {
            events.emit(Event::Pull {
                image: reference.to_string(),
                status,
            })
        };
        progress("pulling".into());
        let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut last = String::new();
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                other => other.to_string(),
            })?;
            if let Some(status) = info.status.filter(|s| *s != last) {
                last = status.clone();
                progress(status);
            }
        }
        Ok(())
    }

    /// Records a container for [`remove_leftovers`] until [`Engine::remove_container`].
    pub fn track_container(&self, id: &str) {
        LEFTOVERS
            .lock()
            .expect("leftovers lock")
            .push(id.to_string());
    }

    /// Waits (up to 30 s) until a container someone else is removing is gone.
    async fn wait_gone(&self, id: &str) -> Result<()> {
        for _ in 0..300 {
            let inspected = self
                .docker
                .inspect_container(
                    id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await;
            if let Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) = inspected
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(Error::Engine {
            context: format!("removing container {id}"),
            message: "it was still being removed after 30 s".into(),
        })
    }

    /// Force-removes a container (and its anonymous volumes); gone already is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let result = match self.docker.remove_container(id, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Another removal (a dropped build's guard, or the interrupt cleanup) is under
            // way: done when the container is gone, which this waits for.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => self.wait_gone(id).await,
            other => other.map_err(api_error(format!("removing container {id}"))),
        };
        LEFTOVERS
            .lock()
            .expect("leftovers lock")
            .retain(|tracked| tracked != id);
        result
    }
}

impl Engine {
    /// Removes every container of this host whose owner is gone (killed, or cut off from
    /// the engine before it could clean up); returns their IDs.
    pub async fn remove_orphans(&self) -> Result<Vec<String>> {
        let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&std::collections::HashMap::from([(
                "label",
                vec![cleanup::OWNER_LABEL],
            )]))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(api_error("listing leftover containers"))?;
        let mut removed = Vec::new();
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let orphan = labels
                .get(cleanup::OWNER_LABEL)
                .is_some_and(|label| cleanup::is_orphan(label));
            if let (true, Some(id)) = (orphan, container.id) {
                self.remove_container(&id).await?;
                removed.push(id);
            }
        }
        Ok(removed)
    }
}

/// Removes every tracked container still present. Called after an interrupted run.
pub async fn remove_leftovers() {
    let ids = std::mem::take(&mut *LEFTOVERS.lock().expect("leftovers lock"));
    if ids.is_empty() {
        return;
    }
    if let Ok(engine) = Engine::connect().await {
        for id in ids {
            let _ = engine.remove_container(&id).await;
        }
    }
}

/// What a finished container printed and how it exited.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code of the container's process.
    pub exit_code: i64,
}

impl Engine {
    /// Creates a container (tracked for cleanup until removed, and labelled with its owner so
    /// a later run removes it if this process dies first) and returns its ID.
    pub async fn create_container(
        &self,
        mut config: bollard::models::ContainerCreateBody,
    ) -> Result<String> {
        config
            .labels
            .get_or_insert_with(Default::default)
            .insert(cleanup::OWNER_LABEL.to_string(), cleanup::owner_label());
        let image = config.image.clone().unwrap_or_default();
        let created = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                config,
            )
            .await
            .map_err(api_error(format!("creating a container from {image}")))?;
        self.track_container(&created.id);
        Ok(created.id)
    }

    /// Starts a container, passes its output to `on_output` line by line (`true` for
    /// stderr) until it exits, and returns its exit code.
    pub async fn run_to_completion(
        &self,
        id: &str,
        on_output: &mut (dyn FnMut(bool, &str) + Send),
    ) -> Result<Finished> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(api_error("starting the container"))?;
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut logs = self.docker.logs(id, Some(options));
        let (mut out, mut err) = (LineBuffer::default(), LineBuffer::default());
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(api_error("reading the container's output"))? {
                bollard::container::LogOutput::StdErr { message } => {
                    err.push(&message, |l| on_output(true, l))
                }
                other => out.push(&other.into_bytes(), |l| on_output(false, l)),
            }
        }
        out.finish(|l| on_output(false, l));
        err.finish(|l| on_output(true, l));
        let mut wait = self
            .docker
            .wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        let mut exit_code = 0;
        while let Some(status) = wait.next().await {
            match status {
                Ok(response) => exit_code = response.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                    exit_code = code
                }
                Err(e) => return Err(api_error("waiting for the container")(e)),
            }
        }
        Ok(Finished { exit_code })
    }
}

/// Splits a byte stream into lines; the engine's chunks do not respect line ends.
#[derive(Default)]
struct LineBuffer(Vec<u8>);

impl LineBuffer {
    fn push(&mut self, bytes: &[u8], mut line: impl FnMut(&str)) {
        self.0.extend_from_slice(bytes);
        while let Some(end) = self.0.iter().position(|&b| b == b'\n') {
            let rest = self.0.split_off(end + 1);
            line(String::from_utf8_lossy(&self.0[..end]).trim_end_matches('\r'));
            self.0 = rest;
        }
    }

    fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.0.is_empty() {
            line(&String::from_utf8_lossy(&self.0));
            self.0.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineBuffer;

    #[test]
    fn lines_are_reassembled_across_chunks() {
        let mut lines = Vec::new();
        let mut buffer = LineBuffer::default();
        buffer.push(b"one\ntw", |l| lines.push(l.to_string()));
        buffer.push(b"o\r\nthr", |l| lines.push(l.to_string()));
        buffer.finish(|l| lines.push(l.to_string()));
        assert_eq!(lines, ["one", "two", "thr"]);
    }
}
