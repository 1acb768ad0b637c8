//! A small CLI with real dependencies: parses arguments, filters words with a regex, prints
//! JSON. Used by benchmarks/rebuild.sh to time one-line-change rebuilds.
use clap::Parser;
use serde::Serialize;

/// Count words matching a pattern.
#[derive(Parser)]
struct Args {
    /// The pattern words must match.
    #[arg(long, default_value = "^[a-z]+$")]
    pattern: String,
    /// The words.
    words: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    matched: usize,
    total: usize,
    at: String,
}

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let args = Args::parse();
    let pattern = regex::Regex::new(&args.pattern)?;
    let matched = args.words.iter().filter(|w| pattern.is_match(w)).count();
    let at = time::OffsetDateTime::UNIX_EPOCH.format(&time::format_description::well_known::Rfc3339)?;
    log::info!("matched {matched} of {}", args.words.len());
    let report = Report { matched, total: args.words.len(), at };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
