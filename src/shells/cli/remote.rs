//! `build --server URL`: the same build, on a `ruchy-image serve`. The context goes up as a
//! gzip'd tar (the project less what its ignore files leave out, or the one source file), the
//! build's log comes back live on stderr, and the record it ends with is the same
//! `build --json` record a local build writes; `--output`, `--oci-layout` and `--tag` are
//! then written here from the image the server built.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::args::{BuildArgs, CompareArgs};
use super::options::{FlagArgs, ImageArgs, InputArgs};
use crate::core::error::Error;
use crate::core::metrics::{BuildRecord, Built, Published};
use crate::core::preset::Preset;
use crate::pipeline::compare::{Comparison, Outcome};

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
    fn new(url: &str, token_file: Option<&Path>) -> Result<Server, Error> {
        let token = match token_file {
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

    /// Sends a request; an error status becomes an error carrying the server's message
    /// (exit 2 for what the server calls bad input).
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
            400 | 404 | 413 => Error::InvalidInput {
                what: "request to the server",
                value: format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
                reason: message,
            },
            _ => Error::Io {
                context: format!("{what}: the server answered {status}"),
                source: std::io::Error::other(message),
            },
        })
    }
}

/// The query parameters of a build or comparison. Image options the service does not take
/// yet are refused; `--builder` and `--builder-image` do not apply (the server compiles in
/// its own builder).
fn query(
    input: &InputArgs,
    flags: &FlagArgs,
    image: &ImageArgs,
    presets: &[Preset],
    tag: Option<&String>,
) -> Result<Vec<(String, String)>, Error> {
    let unsupported = [
        ("--user", image.user.is_some()),
        ("--env", !image.env.is_empty()),
        ("--port", !image.port.is_empty()),
        ("--label", !image.label.is_empty()),
        ("--path", image.path.is_some()),
        ("--workdir", image.workdir != "/"),
        ("--allow-root", image.allow_root),
        ("--ruchy", input.ruchy.is_some()),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: flag.to_string(),
            reason: "the server does not take it yet; build locally for it".into(),
        });
    }
    let presets: Vec<&str> = presets.iter().map(|p| p.name()).collect();
    let mut query = vec![("optimize".to_string(), presets.join(","))];
    let mut add = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            query.push((key.to_string(), value));
        }
    };
    add("bin", input.bin.clone());
    add(
        "base",
        Some(image.base.to_string()).filter(|b| b != "scratch"),
    );
    add("tag", tag.cloned());
    add("target", flags.target.clone());
    let platforms: Vec<String> = flags.platform.iter().map(|p| p.to_string()).collect();
    add(
        "platform",
        Some(platforms.join(",")).filter(|p| !p.is_empty()),
    );
    add("load_platform", flags.load_platform.map(|p| p.to_string()));
    add("opt_level", flags.opt_level.clone());
    add("lto", flags.lto.map(|l| l.name().to_string()));
    add("codegen_units", flags.codegen_units.map(|n| n.to_string()));
    let strip = match (flags.no_strip, flags.strip) {
        (true, _) => Some("none".to_string()),
        (false, Some(strip)) => Some(strip.name().to_string()),
        _ => None,
    };
    add("strip", strip);
    add("panic", flags.panic.map(|p| p.name().to_string()));
    add("target_cpu", flags.target_cpu.clone());
    let static_link = match (flags.static_link, flags.no_static_link) {
        (true, _) => Some("true".to_string()),
        (_, true) => Some("false".to_string()),
        _ => None,
    };
    add("static_link", static_link);
    Ok(query)
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

/// Runs the build on the server; the record, with the outputs written here.
/// Sends the context, follows the log on stderr (unless `quiet`), and returns the build's ID
/// and final record.
async fn run_remote(
    server: &Server,
    source: &Path,
    query: &[(String, String)],
    quiet: bool,
) -> Result<(String, serde_json::Value), Error> {
    let source = source.to_path_buf();
    if !source.exists() {
        return Err(Error::SourceUnreadable {
            path: source,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let source = if source.file_name() == Some("Cargo.toml".as_ref()) {
        source.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        source
    };
    let body = crate::adapters::fsutil::blocking(move || context(&source)).await?;
    let accepted: serde_json::Value = server
        .send(
            server
                .request(reqwest::Method::POST, "/v1/builds")
                .query(&query)
                .header("Content-Type", "application/gzip")
                .body(body),
            "submitting the build",
        )
        .await?
        .json()
        .await
        .map_err(http_error("reading the server's answer"))?;
    let id = accepted["id"].as_str().unwrap_or_default().to_string();
    if !quiet {
        eprintln!("→ build {id} accepted by {}", server.url);
    }

    // The log, live, until the build ends.
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
    while let Some(chunk) = log.next().await {
        let chunk = chunk.map_err(http_error("following the build's log"))?;
        if !quiet {
            let _ = std::io::stderr().write_all(&chunk);
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
    Ok((id, record))
}

/// Runs the build on the server; the record (an index's for several platforms), with the
/// outputs written here.
pub(super) async fn build(
    args: &BuildArgs,
    server: &str,
    budgets: &crate::core::budget::Budgets,
    quiet: bool,
) -> Result<Built, Error> {
    let server = Server::new(server, args.service.token_file.as_deref())?;
    let query = query(
        &args.options.input,
        &args.options.flags,
        &args.image,
        &[args.optimize],
        args.tag.as_ref(),
    )?;
    let (id, record) = run_remote(&server, &args.options.input.source, &query, quiet).await?;
    if record["status"] != "success" {
        return Err(Error::Io {
            context: format!("build {id} on {} ended: {}", server.url, record["status"]),
            source: std::io::Error::other(
                record["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ),
        });
    }
    let result = record["results"][0].clone();
    let wrong = |source| Error::Json {
        what: "the server's build record",
        source,
    };
    let mut built = match args.options.flags.platform.len() > 1 {
        true => Built::Index(serde_json::from_value(result).map_err(wrong)?),
        false => Built::Image(Box::new(serde_json::from_value(result).map_err(wrong)?)),
    };
    // The budgets are held here, before the downloaded image is written anywhere.
    let records: Vec<&mut BuildRecord> = match &mut built {
        Built::Image(one) => vec![one.as_mut()],
        Built::Index(index) => index.platforms.iter_mut().collect(),
    };
    let mut exceeded = Vec::new();
    for one in records {
        let over = budgets.check(one);
        if !over.is_empty() {
            one.error = Some(crate::core::budget::Budgets::message(&over));
            one.over_budget = over.clone();
            exceeded.extend(over);
        }
    }
    // Over budget, nothing is written here: no outputs.
    let outputs = match exceeded.is_empty() {
        true => fetch_outputs(&server, &id, args).await?,
        false => Vec::new(),
    };
    match &mut built {
        Built::Image(one) => one.outputs = outputs,
        Built::Index(index) => index.outputs = outputs,
    }
    Ok(built)
}

/// Runs the comparison on the server: one build with every preset.
pub(super) async fn compare(args: &CompareArgs, server: &str) -> Result<Comparison, Error> {
    if args.bases.len() > 1 {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--bases".into(),
            reason: "the server builds on one base; compare bases locally".into(),
        });
    }
    if args.options.flags.platform.len() > 1 {
        return Err(Error::InvalidInput {
            what: "option with --server",
            value: "--platform".into(),
            reason: "the server compares one platform at a time; compare several locally, or one --platform per run".into(),
        });
    }
    let server = Server::new(server, args.service.token_file.as_deref())?;
    let query = query(
        &args.options.input,
        &args.options.flags,
        &args.image,
        &args.presets,
        None,
    )?;
    let (id, record) = run_remote(&server, &args.options.input.source, &query, args.quiet).await?;
    let results = record["results"].as_array().cloned().unwrap_or_default();
    if results.len() != args.presets.len() {
        return Err(Error::Remote {
            message: format!(
                "build {id} ended {}: {}",
                record["status"],
                record["error"]["message"]
                    .as_str()
                    .unwrap_or("no reason given")
            ),
        });
    }
    let outcomes = args
        .presets
        .iter()
        .zip(results)
        .map(|(preset, result)| Outcome {
            preset: *preset,
            result: match result["error"].as_str() {
                Some(message) => Err(Error::Remote {
                    message: message.to_string(),
                }),
                None => serde_json::from_value(result).map_err(|source| Error::Json {
                    what: "the server's build record",
                    source,
                }),
            },
        })
        .collect();
    Ok(Comparison {
        source: args.options.input.source.display().to_string(),
        outcomes,
    })
}

/// Downloads the image once and writes it where the options say.
async fn fetch_outputs(
    server: &Server,
    id: &str,
    args: &BuildArgs,
) -> Result<Vec<Published>, Error> {
    let wants_engine = args.tag.is_some() && !args.no_load;
    if args.output.is_none() && args.oci_layout.is_none() && !wants_engine {
        return Ok(Vec::new());
    }
    let archive = server
        .send(
            server.request(reqwest::Method::GET, &format!("/v1/builds/{id}/image")),
            "downloading the image",
        )
        .await?
        .bytes()
        .await
        .map_err(http_error("downloading the image"))?;
    let mut outputs = Vec::new();
    if let Some(dir) = &args.oci_layout {
        let (archive, target) = (archive.clone(), dir.clone());
        crate::adapters::fsutil::blocking(move || unpack_layout(&archive, &target)).await?;
        outputs.push(Published {
            kind: "oci-layout".into(),
            location: dir.display().to_string(),
            engine: None,
            push: None,
        });
    }
    if let Some(file) = &args.output {
        crate::adapters::fsutil::write_file_atomically("the image archive", file, &archive)?;
        outputs.push(Published {
            kind: "archive".into(),
            location: file.display().to_string(),
            engine: None,
            push: None,
        });
    }
    if let (true, Some(tag)) = (wants_engine, &args.tag) {
        if let Ok(engine) = crate::adapters::engine::Engine::connect().await {
            engine.load(archive.to_vec()).await?;
            outputs.push(Published {
                kind: "engine".into(),
                location: tag.clone(),
                engine: None,
                push: None,
            });
        }
    }
    Ok(outputs)
}

/// Writes the OCI layout half of an image archive (all but docker's `manifest.json`) into
/// `dir`, by way of a temp dir beside it.
fn unpack_layout(archive: &[u8], dir: &Path) -> Result<(), Error> {
    let parent = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent)
        .map_err(Error::io(format!("creating {}", parent.display())))?;
    let temp = tempfile::Builder::new()
        .prefix(&crate::adapters::cleanup::temp_prefix("layout"))
        .tempdir_in(&parent)
        .map_err(Error::io(format!("writing into {}", parent.display())))?;
    let mut tar = tar::Archive::new(archive);
    for entry in tar
        .entries()
        .map_err(Error::io("reading the image archive"))?
    {
        let mut entry = entry.map_err(Error::io("reading the image archive"))?;
        let path = entry
            .path()
            .map_err(Error::io("reading the image archive"))?
            .into_owned();
        if path == Path::new("manifest.json") {
            continue;
        }
        entry
            .unpack_in(temp.path())
            .map_err(Error::io("writing the OCI layout"))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io(format!("replacing {}", dir.display())))?;
    }
    std::fs::rename(temp.keep(), dir).map_err(Error::io(format!("writing {}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shells::cli::ImageCommand;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ImageCommand,
    }

    /// The flag overrides go to the service by the names of the preset table, which is what
    /// the service parses them with.
    #[test]
    fn overrides_are_sent_by_the_names_the_service_takes() {
        let line = [
            "ruchy-image",
            "build",
            "app.rs",
            "-O",
            "size",
            "--lto",
            "thin",
            "--strip",
            "debuginfo",
            "--panic",
            "immediate-abort",
            "--no-static-link",
        ];
        let ImageCommand::Build(args) = Cli::try_parse_from(line).unwrap().command else {
            panic!("not build")
        };
        let (input, flags) = (&args.options.input, &args.options.flags);
        let query = query(input, flags, &args.image, &[args.optimize], None).unwrap();
        let get = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("optimize"), Some("size"));
        assert_eq!(get("lto"), Some("thin"));
        assert_eq!(get("strip"), Some("debuginfo"));
        assert_eq!(get("panic"), Some("immediate-abort"));
        assert_eq!(get("static_link"), Some("false"));
        #[cfg(feature = "serve")]
        {
            use crate::core::preset::{Lto, Panic, Strip};
            let options = crate::shells::serve::options::Options::from_query(&query).unwrap();
            let request = options
                .request(Path::new("app.rs"), Path::new("/c"))
                .unwrap();
            assert_eq!(request.overrides.lto, Some(Lto::Thin));
            assert_eq!(request.overrides.strip, Some(Strip::Debuginfo));
            assert_eq!(request.overrides.panic, Some(Panic::ImmediateAbort));
            assert_eq!(request.overrides.static_link, Some(false));
        }
    }
}
