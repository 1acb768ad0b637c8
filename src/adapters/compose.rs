//! Docker Compose, as a program: `docker compose` (the v2 plugin) when the Docker client has
//! it, else Debian's `docker-compose` (1.29). A dev loop reads which image a service runs,
//! recreates the service, finds its container, and takes down what it started.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::core::error::{Error, Result};

/// A compose file and the program that runs it.
#[derive(Debug, Clone)]
pub struct Compose {
    /// `docker compose` or `docker-compose`, as argv's first words.
    program: Vec<String>,
    /// The compose file.
    file: PathBuf,
}

impl Compose {
    /// The compose program this machine has, for `file`.
    pub fn find(file: &Path) -> Result<Compose> {
        if !file.is_file() {
            return Err(Error::InvalidInput {
                what: "compose file",
                value: file.display().to_string(),
                reason: "no such file".into(),
            });
        }
        let answers = |argv: &[&str]| {
            Command::new(argv[0])
                .args(&argv[1..])
                .output()
                .is_ok_and(|out| out.status.success())
        };
        let program = [&["docker", "compose"][..], &["docker-compose"][..]]
            .into_iter()
            .find(|argv| answers(&[argv, &["version"][..]].concat()))
            .ok_or_else(|| Error::InvalidInput {
                what: "compose file",
                value: file.display().to_string(),
                reason: "neither `docker compose` nor `docker-compose` runs here: install \
                         Docker's compose plugin or docker-compose"
                    .into(),
            })?;
        Ok(Compose {
            program: program.iter().map(|s| s.to_string()).collect(),
            file: file.to_path_buf(),
        })
    }

    /// The program, as it is typed (`docker-compose`).
    pub fn program(&self) -> String {
        self.program.join(" ")
    }

    /// Runs the program on the file with `args`; its stdout, or an error with its stderr.
    fn run(&self, args: &[&str], doing: &str) -> Result<String> {
        let out = Command::new(&self.program[0])
            .args(&self.program[1..])
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .output()
            .map_err(Error::io(format!("running {}", self.program())))?;
        if !out.status.success() {
            return Err(Error::Engine {
                context: format!("{doing} ({} -f {})", self.program(), self.file.display()),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The image `service` runs, as the file says once its variables are filled in.
    pub fn service_image(&self, service: &str) -> Result<String> {
        let config = self.run(&["config"], "reading the compose file")?;
        match service_image(&config, service) {
            Ok(Some(image)) => Ok(image),
            Ok(None) => Err(Error::InvalidInput {
                what: "compose service",
                value: service.into(),
                reason: format!(
                    "the service has no `image:` in {} (the image ruchy-image builds is loaded \
                     under that name)",
                    self.file.display()
                ),
            }),
            Err(services) => Err(Error::InvalidInput {
                what: "compose service",
                value: service.into(),
                reason: format!(
                    "{} has no such service; it has: {}",
                    self.file.display(),
                    services.join(", ")
                ),
            }),
        }
    }

    /// The services running now.
    pub fn running_services(&self) -> Result<Vec<String>> {
        let listed = self.run(
            &["ps", "--services", "--filter", "status=running"],
            "listing the running services",
        )?;
        // docker-compose 1.29 prints an empty line when none runs.
        Ok(listed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Starts `service` (the `first` time, with the services it depends on that are not
    /// running), or recreates it alone with the image loaded since.
    pub fn up(&self, service: &str, first: bool) -> Result<()> {
        let args = match first {
            true => vec!["up", "-d", service],
            false => vec!["up", "-d", "--no-deps", "--force-recreate", service],
        };
        self.run(&args, &format!("starting the service {service}"))
            .map(drop)
    }

    /// The ID of `service`'s container.
    pub fn container(&self, service: &str) -> Result<String> {
        let id = self.run(&["ps", "-q", service], "finding the service's container")?;
        id.lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| Error::Engine {
                context: format!("finding the container of the service {service}"),
                message: "compose lists none".into(),
            })
    }

    /// Stops and removes `services` (and their anonymous volumes).
    pub fn remove(&self, services: &[String]) -> Result<()> {
        let mut args = vec!["rm", "--stop", "--force", "-v"];
        args.extend(services.iter().map(String::as_str));
        self.run(&args, "removing the services it started")
            .map(drop)
    }

    /// Stops and removes every container and network of the file's project (named volumes
    /// stay: they may hold someone's data).
    pub fn down(&self) -> Result<()> {
        self.run(&["down"], "taking the stack down").map(drop)
    }
}

/// `service`'s `image:` in `docker compose config`'s canonical YAML (services at two spaces,
/// their keys at four): `Ok(None)` without one, `Err(names)` when there is no such service.
fn service_image(config: &str, service: &str) -> std::result::Result<Option<String>, Vec<String>> {
    let mut in_services = false;
    let mut current: Option<&str> = None;
    let mut names = Vec::new();
    let mut image = None;
    for line in config.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if indent == 0 {
            in_services = text == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 {
            let name = text
                .trim_end_matches(':')
                .trim_matches(|c| c == '"' || c == '\'');
            names.push(name.to_string());
            current = Some(name).filter(|n| *n == service);
        } else if indent == 4 && current.is_some() {
            if let Some(value) = text.strip_prefix("image:") {
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                image = Some(value.to_string());
            }
        }
    }
    match names.iter().any(|n| n == service) {
        true => Ok(image),
        false => Err(names),
    }
}

#[cfg(test)]
mod tests {
    use super::service_image;

    // As docker-compose 1.29 prints it (keys sorted; v2 keeps the same indentation).
    const CONFIG: &str = "\
services:
  app:
    environment:
      PORT: '8080'
    image: ruchy-image-example/http-server:dev
    ports:
    - 127.0.0.1:8080:8080/tcp
  db:
    image: \"postgres:15\"
  worker:
    build:
      context: .
version: '3.8'
volumes:
  data: {}
";

    #[test]
    fn a_services_image_is_read_from_the_canonical_config() {
        assert_eq!(
            service_image(CONFIG, "app").unwrap().as_deref(),
            Some("ruchy-image-example/http-server:dev")
        );
        assert_eq!(
            service_image(CONFIG, "db").unwrap().as_deref(),
            Some("postgres:15")
        );
        assert_eq!(service_image(CONFIG, "worker").unwrap(), None);
        assert_eq!(
            service_image(CONFIG, "web").unwrap_err(),
            ["app", "db", "worker"]
        );
        // A volume named like a service is not one.
        assert!(service_image(CONFIG, "data").is_err());
    }
}
