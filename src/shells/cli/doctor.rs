//! `ruchy-image doctor`: what a build here needs, checked.

use super::failure::Failure;
use super::output::{print_stdout, to_json};
use super::{summary, DoctorArgs};

/// `ruchy-image doctor`: one line per check, exit 1 when the default build cannot run.
pub(super) async fn doctor(args: DoctorArgs) -> Result<(), Failure> {
    let options = crate::commands::doctor::Options {
        builder_image: args.builder_image,
        ruchy: args.ruchy,
        cache_dir: args
            .cache_dir
            .unwrap_or_else(crate::pipeline::build::default_cache_dir),
        artifacts: args.artifacts,
        registry: crate::pipeline::publish::RegistryOptions {
            credentials: None,
            insecure: args.insecure_registry,
            ca_files: args.registry_ca,
        },
    };
    let report = crate::commands::doctor::diagnose(&options).await;
    match args.json {
        true => print_stdout("the checks", &to_json("the checks", &report)?)?,
        false => print_stdout("the checks", summary::doctor(&report).as_bytes())?,
    }
    match report.ready {
        true => Ok(()),
        false => Err(Failure::NotReady(
            report
                .checks
                .iter()
                .filter(|c| c.required && !c.ok)
                .map(|c| c.name)
                .collect(),
        )),
    }
}
