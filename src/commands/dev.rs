//! `ruchy-image dev`'s running side: the image each good build makes, kept running as a
//! container it manages (ports published on the host) or as a compose service it recreates,
//! its output passed on line by line, and everything it started taken down at the end.
//! The watching and building are the shell's; this only swaps what runs.

use std::collections::HashMap;
use std::sync::Arc;

use crate::adapters::compose::Compose;
use crate::adapters::engine::{ContainerSpec, Engine, PublishedPort};
use crate::core::error::Result;

/// Where a running image's output and its end go.
pub trait Output: Send + Sync {
    /// One line it printed (`stderr` when on its standard error).
    fn line(&self, stderr: bool, line: &str);
    /// It exited by itself (not stopped by a swap) with `code`.
    fn exited(&self, code: i64);
}

/// How the image runs.
pub enum Runner {
    /// As a container of our own.
    Container {
        /// The ports asked for (none: each one the image exposes, on loopback).
        publish: Vec<PublishedPort>,
    },
    /// As a service of a compose file.
    Compose {
        /// The file, and its program.
        compose: Compose,
        /// The service.
        service: String,
        /// The services already running before the first start: left running at the end.
        before: Vec<String>,
        /// Whether the service was started once.
        started: bool,
    },
}

/// What runs now: the container, and the task passing its output on.
struct Running {
    id: String,
    follow: tokio::task::JoinHandle<()>,
}

/// A runner with what it started.
pub struct Dev {
    engine: Engine,
    runner: Runner,
    output: Arc<dyn Output>,
    running: Option<Running>,
}

/// What a swap started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The container's ID.
    pub container: String,
    /// The ports published on the host (a compose service's are the file's business).
    pub published: Vec<PublishedPort>,
    /// The compose service it is, if it is one.
    pub service: Option<String>,
}

impl Runner {
    /// A compose service: the image it runs (the name a build must load its image as), and
    /// the runner, which remembers what was already running.
    pub fn compose(compose: Compose, service: &str) -> Result<(String, Runner)> {
        let image = compose.service_image(service)?;
        let before = compose.running_services()?;
        let runner = Runner::Compose {
            compose,
            service: service.to_string(),
            before,
            started: false,
        };
        Ok((image, runner))
    }
}

impl Dev {
    /// Nothing runs yet.
    pub fn new(engine: Engine, runner: Runner, output: Arc<dyn Output>) -> Dev {
        Dev {
            engine,
            runner,
            output,
            running: None,
        }
    }

    /// Stops what runs (if anything) and runs `image` in its place, and passes its output
    /// on. Host ports cannot be held by two containers at once, so the old one goes first;
    /// the new one is created before that, so nothing answers for as short a time as can be.
    pub async fn swap(&mut self, image: &str) -> Result<Started> {
        let started = match &self.runner {
            Runner::Container { publish } => {
                let publish = publish.clone();
                self.swap_container(image, publish).await?
            }
            Runner::Compose {
                compose,
                service,
                started,
                ..
            } => {
                let (compose, service, first) = (compose.clone(), service.clone(), !*started);
                self.stop_running().await?;
                let up = recreate_service(compose, service, first).await?;
                if let Runner::Compose { started, .. } = &mut self.runner {
                    *started = true;
                }
                up
            }
        };
        let follow = {
            let (engine, output) = (self.engine.clone(), self.output.clone());
            let id = started.container.clone();
            tokio::spawn(async move {
                let mut line = |stderr: bool, text: &str| output.line(stderr, text);
                if let Ok(finished) = engine.follow(&id, &mut line).await {
                    output.exited(finished.exit_code);
                }
            })
        };
        self.running = Some(Running {
            id: started.container.clone(),
            follow,
        });
        Ok(started)
    }

    /// A container of `image` with `publish` (none: each port it exposes, on loopback),
    /// started in place of the running one.
    async fn swap_container(
        &mut self,
        image: &str,
        publish: Vec<PublishedPort>,
    ) -> Result<Started> {
        let published = match publish.is_empty() {
            false => publish,
            true => self
                .engine
                .image(image, "reading the image's ports")
                .await?
                .exposed_ports
                .iter()
                .filter_map(|port| loopback(port))
                .collect(),
        };
        let spec = ContainerSpec {
            image: image.to_string(),
            labels: HashMap::from([("dev.ruchy.image.role".to_string(), "dev".to_string())]),
            least_privilege: true,
            published: published.clone(),
            ..Default::default()
        };
        let id = self.engine.create(spec).await?;
        let started = match self.stop_running().await {
            Ok(()) => self.engine.start(&id).await,
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            let _ = self.engine.remove_container(&id).await;
            return Err(error);
        }
        Ok(Started {
            container: id,
            published,
            service: None,
        })
    }

    /// Stops following what runs and removes it (a compose service's container is the
    /// compose program's to replace).
    async fn stop_running(&mut self) -> Result<()> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        running.follow.abort();
        match self.runner {
            Runner::Container { .. } => self.engine.remove_container(&running.id).await,
            Runner::Compose { .. } => Ok(()),
        }
    }

    /// Takes down everything it started: its container, or the services (with a stack it
    /// started from nothing, the whole stack and its networks).
    pub async fn stop(mut self) -> Result<()> {
        self.stop_running().await?;
        if let Runner::Compose {
            compose,
            before,
            started: true,
            ..
        } = self.runner
        {
            tokio::task::spawn_blocking(move || {
                if before.is_empty() {
                    return compose.down();
                }
                let ours: Vec<String> = compose
                    .running_services()?
                    .into_iter()
                    .filter(|s| !before.contains(s))
                    .collect();
                match ours.is_empty() {
                    true => Ok(()),
                    false => compose.remove(&ours),
                }
            })
            .await
            .map_err(|e| crate::core::error::Error::io("stopping the services")(e.into()))??;
        }
        Ok(())
    }
}

/// `service` started (the `first` time, with what it depends on) or recreated alone with
/// the image loaded now.
async fn recreate_service(compose: Compose, service: String, first: bool) -> Result<Started> {
    let name = service.clone();
    let id = tokio::task::spawn_blocking(move || {
        compose.up(&name, first)?;
        compose.container(&name)
    })
    .await
    .map_err(|e| crate::core::error::Error::io("starting the service")(e.into()))??;
    Ok(Started {
        container: id,
        published: Vec::new(),
        service: Some(service),
    })
}

/// An exposed port (`8080/tcp`) published at the same number on loopback.
fn loopback(exposed: &str) -> Option<PublishedPort> {
    let number = exposed.split('/').next()?.parse().ok()?;
    Some(PublishedPort {
        host_ip: "127.0.0.1".into(),
        host_port: number,
        container_port: exposed.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn an_exposed_port_is_published_on_loopback_at_its_number() {
        let port = loopback("8080/tcp").unwrap();
        assert_eq!(
            (
                port.host_ip.as_str(),
                port.host_port,
                port.container_port.as_str()
            ),
            ("127.0.0.1", 8080, "8080/tcp")
        );
        assert!(loopback("http/tcp").is_none());
    }
}
