//! `ruchy-image serve`: the service, with its options from the command line.

use std::io::Write;

use super::{args, stop_signal};
use crate::core::error::Error;

/// `ruchy-image serve`: runs until SIGINT or SIGTERM, then drains.
#[cfg(feature = "serve")]
pub(super) async fn serve(args: args::ServeArgs) -> Result<(), Error> {
    let token = match &args.token_file {
        Some(file) => {
            let token = std::fs::read_to_string(file).map_err(Error::io(format!(
                "reading the token file {}",
                file.display()
            )))?;
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(Error::InvalidInput {
                    what: "token file",
                    value: file.display().to_string(),
                    reason: "it is empty; put a long random token in it".into(),
                });
            }
            Some(token)
        }
        None => None,
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        dirs::data_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("ruchy-image")
    });
    let artifacts = args
        .artifacts
        .as_deref()
        .map(|repository| {
            let registry = crate::pipeline::publish::RegistryOptions {
                credentials: None,
                insecure: args.insecure_registry.clone(),
                ca_files: args.registry_ca.clone(),
            };
            crate::shells::serve::artifacts::Artifacts::new(repository, registry)
        })
        .transpose()?;
    let options = crate::shells::serve::ServeOptions {
        data_dir,
        listen: args.listen,
        token,
        insecure_no_auth: args.insecure_no_auth,
        workers: args.workers as usize,
        timeout: args.timeout,
        queue_ttl: args.queue_ttl,
        max_upload: args.max_upload,
        max_uploads: args.max_uploads as usize,
        read_timeout: args.read_timeout,
        shutdown_timeout: args.shutdown_timeout,
        builder_image: args.builder_image.clone(),
        sign_key: args.sign_key.clone(),
        limits: args.limits.over(crate::pipeline::compile::Limits::SERVICE),
        database: args.database.clone(),
        worker_name: args.worker_name.clone(),
        advertise_url: args.advertise_url.clone(),
        heartbeat_timeout: args.heartbeat_timeout,
        artifacts,
        keep_artifacts: args.keep_artifacts,
        base_limits: super::request::base_limits(),
        cache_volumes: super::request::cache_volumes(),
    };
    let events = crate::core::event::Events::new(|event| match event {
        crate::core::event::Event::Note { message }
        | crate::core::event::Event::Step { message } => {
            eprintln!("ℹ {message}")
        }
        crate::core::event::Event::Warning { message } => eprintln!("warning: {message}"),
        _ => {}
    });
    let data = options.data_dir.display().to_string();
    crate::shells::serve::serve(
        options,
        events,
        |address| {
            // On stdout, one line, for scripts and tests that started us with port 0.
            println!("ruchy-image serve: listening on http://{address} (data in {data})");
            let _ = std::io::stdout().flush();
        },
        async {
            stop_signal().await;
        },
    )
    .await
}

#[cfg(all(test, feature = "serve"))]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: super::super::ImageCommand,
    }

    /// `ServeOptions::default()` is `serve` with no flags: the two say the same defaults.
    #[test]
    fn the_library_s_defaults_are_the_command_s() {
        let parsed = Cli::try_parse_from(["ruchy-image", "serve", "--data-dir", "d"]).unwrap();
        let super::super::ImageCommand::Serve(args) = parsed.command else {
            panic!("not serve")
        };
        let defaults = crate::shells::serve::ServeOptions {
            data_dir: "d".into(),
            ..Default::default()
        };
        let from_flags = crate::shells::serve::ServeOptions {
            data_dir: "d".into(),
            listen: args.listen,
            workers: args.workers as usize,
            timeout: args.timeout,
            queue_ttl: args.queue_ttl,
            max_upload: args.max_upload,
            max_uploads: args.max_uploads as usize,
            read_timeout: args.read_timeout,
            shutdown_timeout: args.shutdown_timeout,
            heartbeat_timeout: args.heartbeat_timeout,
            keep_artifacts: args.keep_artifacts,
            ..Default::default()
        };
        assert_eq!(format!("{defaults:?}"), format!("{from_flags:?}"));
    }
}
