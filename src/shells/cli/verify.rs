//! `ruchy-image verify REF`: the image's referrers checked, one line each with ✓ or ✗ (and
//! `-` for what was not checked); exit 0 when every check holds, 1 when one does not, 2 for
//! bad input.

use std::path::PathBuf;

use clap::Args;

use super::failure::Failure;
use super::output::{print_stdout, to_json};
use crate::pipeline::verify::{Report, Status};

/// `verify --help`'s examples.
pub(super) const EXAMPLES: &str = "\
Examples:
  openssl ecparam -name prime256v1 -genkey -noout -out ec.pem && openssl ec -in ec.pem -pubout -out ec.pub
  ruchy-image build app -O size --oci-layout out/app --sign-key ec.pem --push 127.0.0.1:5000/app:1
  ruchy-image verify oci:out/app:size --key ec.pub
  ruchy-image verify 127.0.0.1:5000/app:1 --key ec.pub --json

Exit codes: 0 every check holds, 1 one does not, 2 invalid input.";

/// `ruchy-image verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image: oci:DIR[:TAG], docker-archive:FILE, or REGISTRY/REPOSITORY:TAG|@DIGEST.
    #[arg(value_name = "REF")]
    pub reference: String,

    /// The public key (PEM, ECDSA P-256) the provenance must be signed with; without it a
    /// signature is reported, not checked.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,

    /// Print the checks as JSON on stdout: digest, verified, and checks[] with image,
    /// platform, check, status (pass, fail, skip) and detail.
    #[arg(long)]
    pub json: bool,

    /// Speak plain HTTP to this registry host[:port] (repeatable); loopback always is.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,

    /// Trust this CA (PEM) for registries, besides the system's (repeatable).
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
}

/// Runs the checks and prints them; a failed one is exit 1.
pub(super) async fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let key = match &args.key {
        Some(path) => Some(crate::pipeline::attest::Verifier::read(path)?),
        None => None,
    };
    let options = crate::pipeline::verify::Options {
        target: args.reference.parse()?,
        key,
        registry: crate::pipeline::publish::RegistryOptions {
            credentials: None,
            insecure: args.insecure_registry.clone(),
            ca_files: args.registry_ca.clone(),
        },
    };
    let report = crate::pipeline::verify::verify(&options).await?;
    match args.json {
        true => print_stdout("the checks", &to_json("the checks", &report)?)?,
        false => print_stdout("the checks", lines(&args.reference, &report).as_bytes())?,
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    match failed {
        0 => Ok(()),
        n => Err(Failure::Unverified(n)),
    }
}

/// The report for people: the image, then one line per check.
fn lines(reference: &str, report: &Report) -> String {
    let mut out = format!("{reference} ({})\n", report.digest);
    let several = report
        .checks
        .first()
        .is_some_and(|first| report.checks.iter().any(|c| c.image != first.image));
    for check in &report.checks {
        let mark = match check.status {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Skip => "-",
        };
        let platform = match several {
            true => format!("{} ", check.platform),
            false => String::new(),
        };
        out.push_str(&format!(
            "{mark} {platform}{:<16} {}\n",
            check.check, check.detail
        ));
    }
    out
}
