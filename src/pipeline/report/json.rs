//! JSON: each preset's record exactly as `build --json` writes it.

use serde::Serialize;

use crate::core::error::{Error, Result};
use crate::core::metrics::{BuildRecord, SCHEMA_VERSION};
use crate::core::preset::Preset;
use crate::pipeline::compare::{Comparison, Reduction};

/// The presets document.
#[derive(Serialize)]
struct Report<'a> {
    /// [`SCHEMA_VERSION`], as in each record.
    schema: u32,
    /// `none` when the reductions are against it; null when there are none.
    baseline: Option<Preset>,
    results: Vec<Outcome<'a>>,
    reductions: Vec<Reduction>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome<'a> {
    Built(&'a BuildRecord),
    Failed { preset: Preset, error: String },
}

impl<'a> Report<'a> {
    fn of(comparison: &'a Comparison) -> Report<'a> {
        Report {
            schema: SCHEMA_VERSION,
            baseline: comparison.baseline().map(|r| r.optimization_level),
            results: comparison
                .outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(record) => Outcome::Built(record),
                    Err(error) => Outcome::Failed {
                        preset: o.preset,
                        error: error.to_string(),
                    },
                })
                .collect(),
            reductions: comparison.reductions(),
        }
    }
}

/// What `build --json` writes when the build fails (exit 1; bad input writes nothing): what
/// was built, and why it failed.
#[derive(Debug, Serialize)]
pub struct FailedBuild {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The source the user gave.
    pub source_file: String,
    /// The preset.
    pub optimization_level: Preset,
    /// The error, as the terminal says it.
    pub error: String,
}

impl FailedBuild {
    /// The record of a build of `source_file` with `preset` that failed with `error`.
    pub fn new(source_file: String, preset: Preset, error: &Error) -> FailedBuild {
        FailedBuild {
            schema: SCHEMA_VERSION,
            source_file,
            optimization_level: preset,
            error: error.to_string(),
        }
    }
}

fn pretty(value: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|json| json + "\n")
        .map_err(|source| Error::Json {
            what: "the comparison",
            source,
        })
}

/// `{"baseline", "results", "reductions"}`: each result is the preset's record, or
/// `{"preset", "error"}` for a preset that failed.
pub fn presets(comparison: &Comparison) -> Result<String> {
    pretty(&Report::of(comparison))
}

/// `[{"base", "comparison": <the presets document>}]`.
pub fn bases(bases: &[(String, Comparison)]) -> Result<String> {
    named("base", bases)
}

/// `[{"platform", "comparison": <the presets document>}]`.
pub fn platforms(platforms: &[(String, Comparison)]) -> Result<String> {
    named("platform", platforms)
}

/// `[{KEY: name, "comparison": <the presets document>}]`.
fn named(key: &str, parts: &[(String, Comparison)]) -> Result<String> {
    let parts: Vec<serde_json::Value> = parts
        .iter()
        .map(|(name, comparison)| {
            let report = serde_json::to_value(Report::of(comparison))?;
            Ok(serde_json::json!({ key: name, "comparison": report }))
        })
        .collect::<serde_json::Result<_>>()
        .map_err(|source| Error::Json {
            what: "the comparison",
            source,
        })?;
    pretty(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compare::sample_comparison;

    #[test]
    fn whole_records_failures_and_reductions() {
        let c = sample_comparison();
        let json: serde_json::Value = serde_json::from_str(&presets(&c).unwrap()).unwrap();
        assert_eq!(json["baseline"], "none");
        let results = json["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        let record = c.outcomes[1].result.as_ref().unwrap();
        assert_eq!(results[1], serde_json::to_value(record).unwrap());
        assert_eq!(results[2]["preset"], "aggressive");
        assert!(results[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("cargo reported no executable"));
        assert_eq!(json["reductions"][2]["preset"], "nasa");
        assert_eq!(json["reductions"][2]["binary_reduction_factor"], 13.7);
    }

    #[test]
    fn no_baseline_is_null() {
        let mut c = sample_comparison();
        c.outcomes.remove(0);
        assert!(presets(&c).unwrap().contains("\"baseline\": null"));
    }

    #[test]
    fn bases_nest_the_presets_document() {
        let bases_json = bases(&[("scratch".into(), sample_comparison())]).unwrap();
        let json: serde_json::Value = serde_json::from_str(&bases_json).unwrap();
        assert_eq!(json[0]["base"], "scratch");
        assert_eq!(json[0]["comparison"]["baseline"], "none");
    }
}
