//! The Docker engine, through bollard: connection (honouring `DOCKER_HOST`, negotiating the
//! API version so Engine 20.10 / API 1.41 works as well as current engines), errors that carry
//! the engine's message, and cleanup of containers an interrupted run leaves behind.
//!
//! Podman's Docker-compatible service (`podman system service`) is an engine too. Where it
//! answers differently, this module makes up for it: container lists are read as plain JSON
//! (Podman reports states Docker's schema lacks), and a container's output is not trusted to
//! end when it exits (Podman before 5.3 can miss the exit and follow the log forever).

use std::sync::Mutex;
use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

use crate::adapters::cleanup;
use crate::core::error::{Error, Result};
use crate::core::event::{Event, Events};

mod calls;
pub use calls::{
    stream_to_engine, Chunks, ContainerSpec, ImageInfo, ListedImage, PublishedPort, VolumeMount,
};

/// How long a ping may take before we call the engine unreachable: a busy engine (Podman
/// loading a builder image on a loaded machine took over 3 s) is slow, not gone.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Whether the engine is Podman's service rather than Docker's.
    pub podman: bool,
}

/// A container as the engine lists it.
#[derive(Debug, Clone, Default)]
pub struct Container {
    /// Its ID.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its state (`running`, `exited`; Podman also says `stopped` and `configured`).
    pub state: String,
    /// Its labels.
    pub labels: std::collections::HashMap<String, String>,
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
}

/// How long a container's log may go on after the engine said it exited, before it is read
/// again from the start instead of followed.
const LOG_GRACE: Duration = Duration::from_secs(2);

/// Containers created and not yet removed; removed by [`remove_leftovers`] when a run is
/// interrupted (the future that owned them was dropped before it could clean up).
/// Process-wide on purpose: the signal handler that cleans up holds no plan or engine of the
/// run it stopped. Entries are container IDs, so concurrent builds and tests never collide.
static LEFTOVERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The engine `DOCKER_HOST` names, if it names one: where bollard connects. Read here, by the
/// adapter, because bollard reads it too; an engine named there is one the user means.
pub fn named_host() -> Option<String> {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
}

/// Maps a bollard error to ours, with what we were doing.
pub(crate) fn api_error(
    context: impl Into<String>,
) -> impl FnOnce(bollard::errors::Error) -> Error {
    let context = context.into();
    move |e| {
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            bollard::errors::Error::DockerStreamError { error } => error,
            other => other.to_string(),
        };
        let message = with_hint(message);
        Error::Engine { context, message }
    }
}

/// The engine's message, with what to do about the failures we know.
fn with_hint(message: String) -> String {
    if message.contains("error setting rlimit") {
        // Podman as root sets 1048576 open files and processes unless told otherwise; where
        // root cannot raise a hard limit (no CAP_SYS_RESOURCE: some VMs and containers), the
        // runtime fails to start every container.
        return format!(
            "{message} (the engine asks for more open files or processes than this machine allows; with Podman, set default_ulimits in containers.conf to at most `ulimit -Hn` and `ulimit -Hu`, as README says)"
        );
    }
    message
}

impl Engine {
    /// Connects to `DOCKER_HOST` (unix socket or tcp), negotiates the API version and pings.
    pub async fn connect() -> Result<Engine> {
        let host = named_host().unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
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
            .map_err(|_| {
                unavailable(format!(
                    "it did not answer within {} s",
                    PING_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| unavailable(e.to_string()))?;
        let podman = version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.contains("Podman"));
        Ok(Engine {
            api_version: docker.client_version().to_string(),
            docker: docker.with_timeout(REQUEST_TIMEOUT),
            host,
            version: version.version.unwrap_or_else(|| "unknown".into()),
            podman,
        })
    }

    /// The bollard client, for the adapters only: everything else calls the engine through
    /// this type's methods. (The service's start-up still asks it for the version, which
    /// [`Engine::version`] already holds; that call goes when serve/startup.rs next changes.)
    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The image's ID (config digest) if the engine has it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.inspect_image(reference).await?.map(|image| image.id))
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
        let containers = self
            .containers(Some(cleanup::OWNER_LABEL), "listing leftover containers")
            .await?;
        let mut removed = Vec::new();
        for container in containers {
            let orphan = container
                .labels
                .get(cleanup::OWNER_LABEL)
                .is_some_and(|label| cleanup::is_orphan(label));
            if orphan {
                self.remove_container(&container.id).await?;
                removed.push(container.id);
            }
        }
        Ok(removed)
    }

    /// Every container, running or not (those with `label` only, when given). Read as plain
    /// JSON: Podman reports states (`stopped`, `configured`) that bollard's models refuse.
    pub async fn containers(&self, label: Option<&str>, context: &str) -> Result<Vec<Container>> {
        let mut path = "/containers/json?all=1".to_string();
        if let Some(label) = label {
            let filters = serde_json::json!({ "label": [label] }).to_string();
            path.push_str(&format!("&filters={}", percent_encode(&filters)));
        }
        let listed = self.get_json(&path, context).await?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Container {
                id: text(&c["Id"]),
                name: c["Names"]
                    .as_array()
                    .and_then(|n| n.first())
                    .map(|n| text(n).trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                state: text(&c["State"]),
                labels: c["Labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), text(v)))
                    .collect(),
                volumes: c["Mounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["Name"].as_str().map(str::to_string))
                    .collect(),
            })
            .collect())
    }

    /// `GET path` (under the negotiated API version) as JSON, over the unix socket or TCP
    /// address `DOCKER_HOST` names. For answers bollard's typed models cannot read.
    pub async fn get_json(&self, path: &str, context: &str) -> Result<serde_json::Value> {
        let (host, request) = (
            self.host.clone(),
            format!(
                "GET /v{}{path} HTTP/1.0\r\nHost: docker\r\n\r\n",
                self.api_version
            ),
        );
        let context = context.to_string();
        let answer = tokio::task::spawn_blocking(move || raw_request(&host, &request))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        let failed = |message: String| Error::Engine {
            context: context.clone(),
            message,
        };
        let answer = answer.map_err(|e| failed(e.to_string()))?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| failed("the engine's answer has no body".into()))?;
        let (head, body) = (
            String::from_utf8_lossy(&answer[..split]),
            &answer[split + 4..],
        );
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if !status.starts_with('2') {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
            return Err(failed(format!("{status}: {message}")));
        }
        serde_json::from_slice(body).map_err(|e| failed(format!("not JSON: {e}")))
    }
}

/// Sends an HTTP/1.0 request to a `unix://` or `tcp://` engine and reads the whole answer
/// (the engine closes the connection after an HTTP/1.0 answer).
fn raw_request(host: &str, request: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
        stream.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer)
    }
    let timeout = Some(Duration::from_secs(60));
    if let Some(socket) = host.strip_prefix("unix://") {
        let stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(timeout)?;
        exchange(stream, request)
    } else if let Some(address) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        let stream = std::net::TcpStream::connect(address.trim_end_matches('/'))?;
        stream.set_read_timeout(timeout)?;
        exchange(stream, request)
    } else {
        Err(std::io::Error::other(format!(
            "{host}: only unix:// and tcp:// engines are read this way"
        )))
    }
}

/// Percent-encodes a query parameter's value.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    ///
    /// The log is followed while the container runs. Once the engine says the container
    /// exited, the log has [`LOG_GRACE`] to end; one that does not (Podman before 5.3 misses
    /// an exit that comes before it starts watching, and follows forever) is read again
    /// without following, and what was not passed on yet is.
    pub async fn run_to_completion(
        &self,
        id: &str,
        on_output: &mut (dyn FnMut(bool, &str) + Send),
    ) -> Result<Finished> {
        self.start(id).await?;
        self.follow(id, on_output).await
    }

    /// Starts a created container.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(api_error("starting the container"))
    }

    /// Passes a started container's output to `on_output` line by line until it exits, as
    /// [`Engine::run_to_completion`] does, and returns its exit code.
    pub async fn follow(
        &self,
        id: &str,
        on_output: &mut (dyn FnMut(bool, &str) + Send),
    ) -> Result<Finished> {
        let mut output = Output::default();
        let mut logs = self.logs(id, true);
        let exit = self.wait_exit(id);
        tokio::pin!(exit);
        let mut exited = None;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        let ended = loop {
            tokio::select! {
                chunk = logs.next() => match chunk {
                    Some(chunk) => output.take(
                        chunk.map_err(api_error("reading the container's output"))?,
                        on_output,
                    ),
                    None => break true,
                },
                code = &mut exit, if exited.is_none() => {
                    exited = Some(code?);
                    grace.as_mut().reset(tokio::time::Instant::now() + LOG_GRACE);
                }
                () = &mut grace => break false,
            }
        };
        if !ended {
            drop(logs);
            let mut again = Output {
                skip: output.passed,
                ..Output::default()
            };
            std::mem::swap(&mut again.lines, &mut output.lines);
            let mut logs = self.logs(id, false);
            while let Some(chunk) = logs.next().await {
                again.take(
                    chunk.map_err(api_error("reading the container's output"))?,
                    on_output,
                );
            }
            output = again;
        }
        let [out, err] = &mut output.lines;
        out.finish(|l| on_output(false, l));
        err.finish(|l| on_output(true, l));
        let exit_code = match exited {
            Some(code) => code,
            None => exit.await?,
        };
        Ok(Finished { exit_code })
    }

    /// The container's stdout and stderr, followed or as they are now.
    fn logs(
        &self,
        id: &str,
        follow: bool,
    ) -> impl futures_util::Stream<
        Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
    > {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .build();
        self.docker.logs(id, Some(options))
    }

    /// Waits until the container exits; its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64> {
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
        Ok(exit_code)
    }
}

/// A container's output on its way to the caller, line by line: stdout and stderr each
/// reassembled, and the bytes of each already passed on counted (or still to be skipped,
/// when the log is read again from the start).
#[derive(Default)]
struct Output {
    lines: [LineBuffer; 2],
    passed: [usize; 2],
    skip: [usize; 2],
}

impl Output {
    fn take(
        &mut self,
        chunk: bollard::container::LogOutput,
        on_output: &mut (dyn FnMut(bool, &str) + Send),
    ) {
        let (stderr, bytes) = match chunk {
            bollard::container::LogOutput::StdErr { message } => (true, message),
            other => (false, other.into_bytes()),
        };
        let stream = usize::from(stderr);
        let skipped = self.skip[stream].min(bytes.len());
        self.skip[stream] -= skipped;
        let fresh = &bytes[skipped..];
        self.passed[stream] += fresh.len();
        self.lines[stream].push(fresh, |l| on_output(stderr, l));
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
    use super::{LineBuffer, Output};
    use bollard::container::LogOutput;

    #[test]
    fn lines_are_reassembled_across_chunks() {
        let mut lines = Vec::new();
        let mut buffer = LineBuffer::default();
        buffer.push(b"one\ntw", |l| lines.push(l.to_string()));
        buffer.push(b"o\r\nthr", |l| lines.push(l.to_string()));
        buffer.finish(|l| lines.push(l.to_string()));
        assert_eq!(lines, ["one", "two", "thr"]);
    }

    #[test]
    fn a_log_read_again_passes_on_only_what_was_not_passed_yet() {
        let chunk = |stderr: bool, text: &str| match stderr {
            true => LogOutput::StdErr {
                message: text.as_bytes().to_vec().into(),
            },
            false => LogOutput::StdOut {
                message: text.as_bytes().to_vec().into(),
            },
        };
        let mut lines = Vec::new();
        let mut followed = Output::default();
        let mut sink = |stderr: bool, l: &str| lines.push(format!("{stderr} {l}"));
        followed.take(chunk(false, "one\ntw"), &mut sink);
        followed.take(chunk(true, "warn\n"), &mut sink);
        // The follow stalls; the whole log comes again, in other chunks.
        let mut again = Output {
            skip: followed.passed,
            lines: std::mem::take(&mut followed.lines),
            ..Output::default()
        };
        again.take(chunk(false, "one\n"), &mut sink);
        again.take(chunk(true, "warn\nlast warn\n"), &mut sink);
        again.take(chunk(false, "two\nthree\n"), &mut sink);
        assert_eq!(
            lines,
            [
                "false one",
                "true warn",
                "true last warn",
                "false two",
                "false three"
            ]
        );
    }
}
