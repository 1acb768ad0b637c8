//! `build --server URL`: the same build, on a `ruchy-image serve`. The request is the one a
//! local build makes from the command line, checked here by the same code and sent as its
//! JSON beside the context, a gzip'd tar (the project less what its ignore files leave out,
//! or the one source file). The build's log comes back live; the record it ends with is the
//! record a local build makes, plus where it ran; and the image the server built is written
//! to this machine's outputs through the library's own publishers ([`Sinks`]), so
//! `--oci-layout`, `--output`, `--tag` and `--push` behave as they do locally.

use std::path::Path;

use futures_util::StreamExt;

use super::options::ServiceArgs;
use crate::core::error::Error;
use crate::core::event::{Event, Events};
use crate::core::metrics::{BuildRecord, Built, ServerRun};
use crate::pipeline::compare::{Comparison, Outcome};
use crate::pipeline::plan::{Request, Sinks};

/// A server and how to talk to it.
struct Server {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn http_error(context: &str) -> impl FnOnce(reqwest::Error) -> Error + '_ {
    move |e| Error::Io {
        context: context.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl Server {
    fn new(service: &ServiceArgs, url: &str) -> Result<Server, Error> {
        let token = match &service.token_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(Error::io(format!(
                        "reading the token file {}",
                        file.display()
                    )))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Server {
            url: url.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; an error status becomes an error carrying the server's message. What
    /// the server calls bad input (400) reads as the local build's refusal and exits 2.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let response = request
            .send()
            .await
            .map_err(http_error(&format!("{what}: cannot reach {}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        Err(match status.as_u16() {
            400 | 404 | 413 => Error::Remote {
                message,
                usage: true,
            },
            _ => Error::Io {
                context: format!("{what}: the server answered {status}"),
                source: std::io::Error::other(message),
            },
        })
    }
}

/// The build context as the server takes it: a gzip'd tar of the project (what its ignore
/// files leave) or of the one source file.
fn context(source: &Path) -> Result<Vec<u8>, Error> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let gz = if source.is_dir() {
        crate::pipeline::compile::write_context(source, gz)?
    } else {
        let name = source.file_name().ok_or_else(|| Error::UnknownSourceKind {
            path: source.to_path_buf(),
        })?;
        let mut tar = tar::Builder::new(gz);
        tar.append_path_with_name(source, name)
            .map_err(Error::io(format!("reading {}", source.display())))?;
        tar.into_inner().map_err(Error::io("packing the source"))?
    };
    gz.finish().map_err(Error::io("packing the source"))
}

/// What `--server` cannot take: a path on this machine means nothing to the server. (A
/// project's `ruchy` setting is for its local builds: it is not sent.)
fn check_remote(request: &Request) -> Result<(), Error> {
    let from_settings = request
        .settings
        .get("ruchy")
        .is_some_and(|from| from != "flag");
    if request.source.ruchy.is_some() && !from_settings {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--ruchy".into(),
            reason: "the server transpiles with its own ruchy; build locally to choose one".into(),
        });
    }
    // Given as flags (a project's settings for them are its local builds', as the service
    // ignores them).
    let given = |name: &str| {
        request
            .settings
            .get(name)
            .is_some_and(|from| from == "flag")
    };
    if ["build-memory", "build-pids", "build-cpus"]
        .into_iter()
        .any(given)
    {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--build-memory, --build-pids, --build-cpus".into(),
            reason: "the server's builds run under its own limits (`serve --build-memory` ...); build locally to choose them".into(),
        });
    }
    // (--no-provenance stands for its pair too: the key itself must be there.)
    if request.outputs.sign_key.is_some() && given("sign-key") {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--sign-key".into(),
            reason: "the server signs provenance with its own key (`serve --sign-key`); build locally to sign with yours".into(),
        });
    }
    Ok(())
}

/// What the server recorded of a build: its ID, worker, status, error and per-preset results.
struct Ended {
    run: ServerRun,
    record: serde_json::Value,
}

impl Ended {
    /// The build's own failure (not a preset's measured record), as the error a local build
    /// gives: its message, and exit 2 when the server found the input wrong.
    fn failure(&self) -> Error {
        let error = &self.record["error"];
        let message = error["message"].as_str().unwrap_or("no reason given");
        match error["usage"].as_bool().unwrap_or(false) {
            true => Error::Remote {
                message: message.to_string(),
                usage: true,
            },
            false => Error::Remote {
                message: format!(
                    "build {} ended {}: {message}",
                    self.run.build_id,
                    self.record["status"].as_str().unwrap_or("?"),
                ),
                usage: false,
            },
        }
    }
}

/// Sends `request` (its JSON: what the build asks for, never this machine's paths) and the
/// context of its source, follows the log as events until the build ends (`quiet`: without
/// showing it), and returns what the server recorded.
async fn run_remote(
    server: &Server,
    request: &Request,
    quiet: bool,
    events: &Events,
) -> Result<Ended, Error> {
    let source = &request.source.path;
    let source = match source.file_name() == Some("Cargo.toml".as_ref()) {
        true => source.parent().map(Path::to_path_buf).unwrap_or_default(),
        false => source.clone(),
    };
    let body = crate::adapters::fsutil::blocking(move || context(&source)).await?;
    // The checkout's facts go with the request: the context goes without its `.git`.
    let mut request = request.clone();
    request.source = request.source.with_checkout();
    let json = serde_json::to_string(&request).map_err(|source| Error::Json {
        what: "the build request",
        source,
    })?;
    let accepted: serde_json::Value = server
        .send(
            server
                .request(reqwest::Method::POST, "/v1/builds")
                .query(&[("request", json)])
                .header("Content-Type", "application/gzip")
                .body(body),
            "submitting the build",
        )
        .await?
        .json()
        .await
        .map_err(http_error("reading the server's answer"))?;
    let id = accepted["id"].as_str().unwrap_or_default().to_string();
    events.note(format!("build {id} accepted by {}", server.url));

    // The log, live, line by line, until the build ends.
    let mut log = server
        .send(
            server.request(
                reqwest::Method::GET,
                &format!("/v1/builds/{id}/log?follow=true"),
            ),
            "following the build's log",
        )
        .await?
        .bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = log.next().await {
        pending.extend_from_slice(&chunk.map_err(http_error("following the build's log"))?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            if !quiet {
                events.emit(Event::CompilerOutput { line });
            }
        }
    }

    let record: serde_json::Value = server
        .send(
            server.request(reqwest::Method::GET, &format!("/v1/builds/{id}")),
            "reading the build's record",
        )
        .await?
        .json()
        .await
        .map_err(http_error("reading the build's record"))?;
    Ok(Ended {
        run: ServerRun {
            url: server.url.clone(),
            build_id: id,
            worker: record["worker"].as_str().map(str::to_string),
        },
        record,
    })
}

/// Runs the build on the server and writes its image to `request`'s outputs here: the
/// record (an index's for several platforms), with the outputs and where it ran. Every
/// output is checked before the source is sent; over a budget, nothing is written.
pub(super) async fn build(
    request: Request,
    service: &ServiceArgs,
    url: &str,
    quiet: bool,
    events: &Events,
) -> Result<Built, Error> {
    check_remote(&request)?;
    let sinks = Sinks::for_image_built_elsewhere(&request, events).await?;
    let server = Server::new(service, url)?;
    // Pushes are made from here, with this machine's credentials, as a local build's are.
    let mut sent = request.clone();
    sent.outputs.push.clear();
    let ended = run_remote(&server, &sent, quiet, events).await?;
    // A measured record (one over a budget too) is the answer; `{preset, error}` or none is
    // the build's failure.
    let result = ended.record["results"][0].clone();
    if result.get("image").is_none() && result.get("platforms").is_none() {
        return Err(ended.failure());
    }
    let mut built: Built = serde_json::from_value(result).map_err(|source| Error::Json {
        what: "the server's build record",
        source,
    })?;
    let over_budget = built.gate_error().is_some();
    if ended.record["status"] != "success" && !over_budget {
        return Err(ended.failure());
    }
    let outputs = match over_budget || sinks.publishers.is_empty() {
        true => Vec::new(),
        false => {
            let archive = server
                .send(
                    server.request(
                        reqwest::Method::GET,
                        &format!("/v1/builds/{}/image", ended.run.build_id),
                    ),
                    "downloading the image",
                )
                .await?
                .bytes()
                .await
                .map_err(http_error("downloading the image"))?;
            let contents = crate::adapters::fsutil::blocking(move || {
                crate::pipeline::oci::archive::read(&archive)
            })
            .await?;
            let sbom = request.outputs.sbom.as_deref();
            sinks.publish(&contents, sbom, events).await?
        }
    };
    match &mut built {
        Built::Image(one) => {
            one.outputs = outputs;
            one.server = Some(ended.run);
        }
        Built::Index(index) => {
            index.outputs = outputs;
            index.server = Some(ended.run);
        }
    }
    Ok(built)
}

/// Runs the comparison on the server: one build with every preset, compared on the server's
/// one base and platform.
pub(super) async fn compare(
    request: Request,
    service: &ServiceArgs,
    url: &str,
    quiet: bool,
    events: &Events,
) -> Result<Comparison, Error> {
    check_remote(&request)?;
    if request.bases.len() > 1 {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--bases".into(),
            reason: "the server builds on one base; compare bases locally".into(),
        });
    }
    if request.platforms.len() > 1 {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--platform".into(),
            reason: "the server compares one platform at a time; compare several locally, or one --platform per run".into(),
        });
    }
    request.validate()?;
    let server = Server::new(service, url)?;
    let ended = run_remote(&server, &request, quiet, events).await?;
    let results = ended.record["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if results.len() != request.presets.len() {
        return Err(ended.failure());
    }
    let outcomes = request
        .presets
        .iter()
        .zip(results)
        .map(|(preset, result)| Outcome {
            preset: *preset,
            result: match (result.get("image"), result["error"].as_str()) {
                (None, Some(message)) => Err(Error::Remote {
                    message: message.to_string(),
                    usage: false,
                }),
                _ => serde_json::from_value::<BuildRecord>(result).map_err(|source| Error::Json {
                    what: "the server's build record",
                    source,
                }),
            },
        })
        .collect();
    Ok(Comparison {
        source: request.source.path.display().to_string(),
        outcomes,
    })
}
