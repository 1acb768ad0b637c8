//! `ruchy-image dev`: builds SOURCE, runs its image, and on every save builds again and
//! swaps the running container for the new one; a build that fails leaves the old one
//! answering. Ctrl-C or SIGTERM takes down what it started and exits 130 or 143.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use super::failure::Failure;
use super::render::Journal;
use super::BuildArgs;
use crate::adapters::compose::Compose;
use crate::adapters::engine::{Engine, PublishedPort};
use crate::commands::dev::{Dev, Output, Runner, Started};
use crate::core::error::Error;
use crate::core::metrics::Built;
use crate::pipeline::plan::settings::Settings;
use crate::pipeline::watch::{Snapshot, Watched};

/// How often the source is looked at for saves.
const POLL: Duration = Duration::from_millis(100);

pub(super) const DEV_EXAMPLES: &str = "\
Examples:
  ruchy-image dev examples/http-server.rs            # publishes the ports it exposes on 127.0.0.1
  ruchy-image dev app/ -O size --publish 9000:8080   # host port 9000 to the container's 8080
  ruchy-image dev examples/http-server.rs --compose compose/docker-compose.yml --service app

Every build loads its image into the engine (under the compose service's image name with
--compose); a build that fails prints the compiler's errors and keeps the old container.
Ctrl-C (or SIGTERM) removes the container (or the services it started) and exits 130 (143).";

/// `ruchy-image dev`
#[derive(Debug, Args)]
pub struct DevArgs {
    /// What to build, and how (as `build` takes them).
    #[command(flatten)]
    pub build: BuildArgs,

    /// Publish a container port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/PROTO], as
    /// `docker run -p` (repeatable) [default: each port the image exposes, on 127.0.0.1 at
    /// the same number].
    #[arg(long, value_name = "[IP:]HOST:PORT", value_parser = parse_publish, help_heading = "Dev")]
    pub publish: Vec<PublishedPort>,

    /// Run the image as a service of this compose file (`docker compose`, else
    /// `docker-compose`), recreated after each build.
    #[arg(
        long,
        value_name = "FILE",
        requires = "service",
        conflicts_with = "publish",
        help_heading = "Dev"
    )]
    pub compose: Option<PathBuf>,

    /// The compose service that runs the image; its `image:` is the name the image is loaded as.
    #[arg(long, value_name = "NAME", requires = "compose", help_heading = "Dev")]
    pub service: Option<String>,

    /// After a save, wait this long for more saves before building, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100, help_heading = "Dev")]
    pub debounce: u64,
}

/// `[IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
fn parse_publish(text: &str) -> Result<PublishedPort, String> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, protocol @ ("tcp" | "udp" | "sctp"))) => (ports, protocol),
        Some((_, other)) => return Err(format!("unknown protocol `{other}` (tcp, udp, sctp)")),
        None => (text, "tcp"),
    };
    let parts: Vec<&str> = ports.rsplitn(3, ':').collect();
    let number = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))
    };
    match parts.as_slice() {
        [container, host, ip @ ..] => Ok(PublishedPort {
            host_ip: match ip.first().map(|ip| ip.trim_matches(['[', ']'])) {
                None => String::new(),
                Some(ip) => match ip.parse::<std::net::IpAddr>() {
                    Ok(_) => ip.to_string(),
                    Err(_) => return Err(format!("`{ip}` is not an IP address")),
                },
            },
            host_port: number(host)?,
            container_port: format!("{}/{protocol}", number(container)?),
        }),
        _ => Err("expected [IP:]HOST_PORT:CONTAINER_PORT, e.g. 8080:8080".into()),
    }
}

/// The running image's lines, prefixed with its name as compose prefixes a service's.
struct Prefixed(String);

impl Output for Prefixed {
    fn line(&self, stderr: bool, line: &str) {
        match stderr {
            true => eprintln!("{} | {line}", self.0),
            false => println!("{} | {line}", self.0),
        }
    }

    fn exited(&self, code: i64) {
        eprintln!("{} exited with code {code}; waiting for a change", self.0);
    }
}

/// `ruchy-image dev`: the loop, stopped by a signal. What it started is taken down on the
/// way out, whatever ends it.
pub(super) async fn dev(args: DevArgs) -> ExitCode {
    let mut dev = None;
    let outcome = tokio::select! {
        failure = session(&args, &mut dev) => Err(failure),
        signal = super::stop_signal() => Ok(signal),
    };
    if let Some(dev) = dev {
        if let Err(error) = dev.stop().await {
            eprintln!("warning: {error}");
        }
    }
    // A build a signal cut short leaves its builder containers to this.
    crate::adapters::engine::remove_leftovers().await;
    match outcome {
        Ok(signal) => {
            eprintln!("stopped; removed what dev started");
            ExitCode::from(128 + signal)
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Builds, runs, watches, rebuilds: returns only when something is wrong that another save
/// cannot fix (bad input, no engine).
async fn session(args: &DevArgs, dev: &mut Option<Dev>) -> Failure {
    match watch_and_build(args, dev).await {
        Ok(never) => match never {},
        Err(failure) => failure,
    }
}

async fn watch_and_build(
    args: &DevArgs,
    dev: &mut Option<Dev>,
) -> Result<std::convert::Infallible, Failure> {
    let source = args.build.options.input.source.clone();
    if let Some(server) = &args.build.service.server {
        return Err(Error::InvalidInput {
            what: "--server",
            value: server.clone(),
            reason: "dev builds and runs on this machine's engine; drop --server".into(),
        }
        .into());
    }
    let (tag, runner) = match (&args.compose, &args.service) {
        (Some(file), Some(service)) => {
            let compose = Compose::find(file)?;
            let (image, runner) = Runner::compose(compose, service)?;
            (Some(image), runner)
        }
        _ => (
            None,
            Runner::Container {
                publish: args.publish.clone(),
            },
        ),
    };
    let engine = Engine::connect().await?;
    let name = crate::pipeline::source::file_bin_name(&source);
    let output: Arc<dyn Output> = Arc::new(Prefixed(name));
    *dev = Some(Dev::new(engine, runner, output));
    let journal = Arc::new(Mutex::new(Journal::default()));
    // What the builds write (--json, --oci-layout, -o, --sbom) is no save to build again.
    let b = &args.build;
    let outputs: Vec<PathBuf> = [&b.json, &b.oci_layout, &b.output, &b.attest.sbom]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let watch = |source: &Path| Ok::<_, Error>(Watched::of(source)?.without(&outputs));
    let mut watched = watch(&source)?;
    let mut first = true;
    loop {
        let before = watched.snapshot()?;
        let started = Instant::now();
        match build(args, tag.as_deref(), &journal).await {
            Ok(image) => {
                let swapped = dev.as_mut().expect("made above").swap(&image).await;
                match swapped {
                    Ok(started_now) => say_running(&image, &started_now, started.elapsed()),
                    Err(error) => eprintln!("error: {error}"),
                }
            }
            // Bad input before anything ran is the user's to fix on the command line.
            Err(Failure::Error(error)) if first && error.is_usage() => return Err(error.into()),
            Err(failure) => eprintln!(
                "error: {}\nthe build failed; {}",
                failure.message(),
                match first {
                    true => "nothing runs until a save builds",
                    false => "the previous image keeps running",
                }
            ),
        }
        first = false;
        // A manifest that no longer reads keeps the last good list; the build says why.
        watched = watch(&source).unwrap_or(watched);
        let now = watched.snapshot()?;
        let changed = before.changed(&now);
        if changed.is_empty() {
            eprintln!(
                "watching {} files of {} (Ctrl-C stops)",
                now.len(),
                source.display()
            );
            wait_for_save(&watched, now, Duration::from_millis(args.debounce)).await?;
        } else {
            // Saved while it built: one more build, with everything saved by now.
            say_changed(&changed);
            settle(&watched, now, Duration::from_millis(args.debounce)).await?;
        }
    }
}

/// Builds as `build` would, loading the image (as `tag`, when given): the name to run.
async fn build(
    args: &DevArgs,
    tag: Option<&str>,
    journal: &Arc<Mutex<Journal>>,
) -> Result<String, Failure> {
    let mut build = args.build.clone();
    let settings = Settings::find(&build.options.input.source)?;
    if let Some(settings) = &settings {
        build.take_settings(settings);
    }
    // Given as flags are: they win over the settings.
    build.load = true;
    build.no_load = false;
    build.given.0.insert("load".into(), "dev".into());
    if let Some(tag) = tag {
        build.tag = Some(tag.to_string());
        build.given.0.insert("tag".into(), "dev --compose".into());
    }
    let (built, budgets) =
        super::build::build_here_or_there(&build, settings.as_ref(), journal).await?;
    // Each build's record, as `build --json` writes it: the last build's is there to read.
    if let Some(path) = &build.json {
        super::output::write_json(path, &built)?;
    }
    // Over a budget, nothing was loaded: the old image keeps running.
    let (reference, exceeded) = match &built {
        Built::Image(record) => (record.image.reference.clone(), budgets.check(record)),
        Built::Index(index) => (
            index.reference.clone(),
            index
                .platforms
                .iter()
                .flat_map(|r| budgets.check(r))
                .collect(),
        ),
    };
    match exceeded.is_empty() {
        true => Ok(reference),
        false => Err(Failure::OverBudget(exceeded)),
    }
}

fn say_running(image: &str, started: &Started, took: Duration) {
    let urls: Vec<String> = started
        .published
        .iter()
        .map(|p| {
            let host = match p.host_ip.as_str() {
                "" | "0.0.0.0" => "127.0.0.1",
                ip => ip,
            };
            format!("http://{host}:{} -> {}", p.host_port, p.container_port)
        })
        .collect();
    let container = &started.container[..12.min(started.container.len())];
    eprintln!(
        "✓ {image} running as {} ({:.1} s){}",
        match &started.service {
            Some(service) => format!("the service {service} (container {container})"),
            None => format!("container {container}"),
        },
        took.as_secs_f64(),
        match urls.is_empty() {
            true => String::new(),
            false => format!(": {}", urls.join(", ")),
        }
    );
}

/// Polls until a watched file changes, then [`settle`]s.
async fn wait_for_save(
    watched: &Watched,
    mut seen: Snapshot,
    debounce: Duration,
) -> crate::Result<()> {
    loop {
        tokio::time::sleep(POLL).await;
        let now = watched.snapshot()?;
        let changed = seen.changed(&now);
        if !changed.is_empty() {
            say_changed(&changed);
            return settle(watched, now, debounce).await;
        }
        seen = now;
    }
}

/// `changed: a.rs, b.rs and 2 more; building`: why a build starts.
fn say_changed(changed: &[PathBuf]) {
    let shown: Vec<String> = changed
        .iter()
        .take(3)
        .map(|p| p.display().to_string())
        .collect();
    let more = changed.len().saturating_sub(shown.len());
    eprintln!(
        "changed: {}{}; building",
        shown.join(", "),
        match more {
            0 => String::new(),
            n => format!(" and {n} more"),
        }
    );
}

/// Waits until the files stop changing for `debounce` (an editor's save is often several
/// writes; a formatter on save makes more).
async fn settle(watched: &Watched, mut seen: Snapshot, debounce: Duration) -> crate::Result<()> {
    loop {
        tokio::time::sleep(debounce).await;
        let now = watched.snapshot()?;
        if seen.changed(&now).is_empty() {
            return Ok(());
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_publish;

    #[test]
    fn published_ports_read_as_docker_run_p_reads_them() {
        let port = parse_publish("9000:8080").unwrap();
        assert_eq!(
            (
                port.host_ip.as_str(),
                port.host_port,
                port.container_port.as_str()
            ),
            ("", 9000, "8080/tcp")
        );
        let port = parse_publish("127.0.0.1:9000:8080/udp").unwrap();
        assert_eq!(
            (
                port.host_ip.as_str(),
                port.host_port,
                port.container_port.as_str()
            ),
            ("127.0.0.1", 9000, "8080/udp")
        );
        for bad in ["8080", "a:8080", "9000:0", "9000:8080/http", "1:2:3:4"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}
