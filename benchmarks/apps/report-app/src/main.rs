//! A second small CLI on deps-app's dependencies: counts how often each word of the input
//! lines occurs, keeps the ones a regex accepts, and prints the top ones as JSON. Used by
//! benchmarks/shared-deps.sh as "the team's next project".
use std::collections::BTreeMap;
use std::io::BufRead;

use clap::Parser;
use serde::Serialize;

/// Word frequencies of standard input.
#[derive(Parser)]
struct Args {
    /// Only words matching this pattern count.
    #[arg(long, default_value = r"^\w+$")]
    keep: String,
    /// How many of the most frequent words to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Serialize)]
struct Entry {
    word: String,
    count: u64,
}

#[derive(Serialize)]
struct Output {
    generated: String,
    lines: u64,
    top: Vec<Entry>,
}

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let args = Args::parse();
    let keep = regex::Regex::new(&args.keep)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = 0;
    for line in std::io::stdin().lock().lines() {
        lines += 1;
        for word in line?.split_whitespace().filter(|w| keep.is_match(w)) {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
    }
    log::debug!("{} distinct words in {lines} lines", counts.len());
    let mut top: Vec<Entry> = counts
        .into_iter()
        .map(|(word, count)| Entry { word, count })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.word.cmp(&b.word)));
    top.truncate(args.top);
    let generated = time::OffsetDateTime::UNIX_EPOCH.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))?;
    println!("{}", serde_json::to_string(&Output { generated, lines, top })?);
    Ok(())
}
