//! Comparing presets: the same program built with several presets, one after another through
//! [`build()`](crate::pipeline::build::build), each record kept (or why it failed), with the reductions
//! against `none` and a verdict against size budgets. The `report` module prints them.

use serde::Serialize;

use crate::adapters::engine::Engine;
use crate::core::budget::{Budgets, Exceeded};
use crate::core::error::Result;
use crate::core::event::{Event, Events};
use crate::core::metrics::{BuildRecord, ColdStart};
use crate::core::preset::Preset;
use crate::pipeline::build::{build, BuildOptions};
use crate::pipeline::compile::Compiler;
use crate::pipeline::publish::Publisher;
use crate::pipeline::run_image::{self, RunOptions};

/// What came of one preset.
#[derive(Debug)]
pub struct Outcome {
    /// The preset.
    pub preset: Preset,
    /// Its record, or why it did not build.
    pub result: Result<BuildRecord>,
}

/// Builds `base` once per preset, in order, writing each image to `publishers` (none, or the
/// engine when cold starts are measured: `probe` runs what was loaded there).
///
/// A preset that fails to build is recorded and the others still run. Bad input (a missing
/// source, an unknown binary) would fail every preset the same way, so it stops the
/// comparison at once with that error.
pub async fn compare(
    base: &BuildOptions,
    presets: &[Preset],
    compiler: Option<&dyn Compiler>,
    publishers: &[Box<dyn Publisher>],
    probe: Option<&ColdStartProbe>,
    events: &Events,
) -> Result<Comparison> {
    let mut outcomes = Vec::with_capacity(presets.len());
    for (index, &preset) in presets.iter().enumerate() {
        events.emit(Event::PresetStarted {
            index: index + 1,
            total: presets.len(),
            preset,
        });
        let options = BuildOptions {
            preset,
            ..base.clone()
        };
        let mut result = match build(&options, compiler, publishers, events).await {
            Err(error) if error.is_usage() => return Err(error),
            // Measured, not published (so not loaded: no cold start); the verdict names it.
            Ok(record) if !record.over_budget.is_empty() => {
                events.emit(Event::Note {
                    message: format!(
                        "{preset} is over the size budget: not published, no cold start"
                    ),
                });
                Ok(record)
            }
            result => result,
        };
        if let (Some(probe), Ok(record)) = (probe, &mut result) {
            if record.over_budget.is_empty() {
                record.cold_start = probe.measure(&record.image.reference, events).await;
            }
        }
        if let Err(error) = &result {
            events.emit(Event::PresetFailed {
                preset,
                error: error.to_string(),
            });
        }
        outcomes.push(Outcome { preset, result });
    }
    Ok(Comparison {
        source: base.source.path.display().to_string(),
        outcomes,
    })
}

/// Loads each preset's image into the engine (as `BIN:PRESET`) and times its cold start.
#[derive(Debug, Clone)]
pub struct ColdStartProbe {
    /// The engine.
    pub engine: Engine,
    /// Runs per preset.
    pub runs: u32,
}

impl ColdStartProbe {
    /// Median/min/max over the runs; `None` when the image does not exit by itself in time
    /// (a server) or the engine fails: the size comparison goes on without it. Says what it
    /// times first, so a comparison is not silent while it does.
    async fn measure(&self, image: &str, events: &Events) -> Option<ColdStart> {
        events.emit(Event::Step {
            message: format!(
                "timing {} cold start{} of {image}",
                self.runs,
                if self.runs == 1 { "" } else { "s" }
            ),
        });
        let options = RunOptions {
            image: image.to_string(),
            args: Vec::new(),
            iterations: self.runs,
            memory: Some(128 << 20),
            cpus: Some(0.5),
            timeout: Some(std::time::Duration::from_secs(10)),
        };
        let report = run_image::run(&self.engine, &options, &mut |_, _| {})
            .await
            .ok()?;
        Some(ColdStart {
            runs: report.iterations,
            median_ms: report.cold_start_median_ms,
            min_ms: report.cold_start_min_ms,
            max_ms: report.cold_start_max_ms,
        })
    }
}

/// How much smaller a preset's output is than the `none` preset's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reduction {
    /// The preset.
    pub preset: Preset,
    /// Percent of the binary saved, one decimal (91.8 = 91.8% smaller; negative if larger).
    pub binary_reduction_percent: f64,
    /// `none`'s binary size over this one's, one decimal (12.4 = 12.4 times smaller).
    pub binary_reduction_factor: f64,
    /// Percent of the stored image saved, one decimal.
    pub image_reduction_percent: f64,
    /// `none`'s stored image size over this one's, one decimal.
    pub image_reduction_factor: f64,
}

/// Percent saved and factor, both rounded to one decimal as shown.
fn reduction(baseline: u64, size: u64) -> (f64, f64) {
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let (baseline, size) = (baseline as f64, size as f64);
    let percent = 100.0 * (1.0 - size / baseline.max(1.0));
    (round(percent), round(baseline / size.max(1.0)))
}

/// The presets' outcomes, in the order they were built.
#[derive(Debug)]
pub struct Comparison {
    /// The source, as the user gave it.
    pub source: String,
    /// One per preset.
    pub outcomes: Vec<Outcome>,
}

impl Comparison {
    /// The records that built, in order.
    pub fn records(&self) -> impl Iterator<Item = &BuildRecord> {
        self.outcomes.iter().filter_map(|o| o.result.as_ref().ok())
    }

    /// The `none` preset's record, which reductions are measured against, if it built.
    pub fn baseline(&self) -> Option<&BuildRecord> {
        self.records()
            .find(|r| r.optimization_level == Preset::None)
    }

    /// Each built preset's reduction against `none`; empty without a baseline.
    pub fn reductions(&self) -> Vec<Reduction> {
        let Some(base) = self.baseline() else {
            return Vec::new();
        };
        self.records()
            .map(|r| {
                let binary = reduction(base.binary_size, r.binary_size);
                let image = reduction(base.image.compressed_size, r.image.compressed_size);
                Reduction {
                    preset: r.optimization_level,
                    binary_reduction_percent: binary.0,
                    binary_reduction_factor: binary.1,
                    image_reduction_percent: image.0,
                    image_reduction_factor: image.1,
                }
            })
            .collect()
    }

    /// Which presets failed and which budgets the others exceeded.
    pub fn verdict(&self, budgets: &Budgets) -> Verdict {
        Verdict {
            failed: self
                .outcomes
                .iter()
                .filter_map(|o| o.result.as_ref().err().map(|e| (o.preset, e.to_string())))
                .collect(),
            exceeded: self.records().flat_map(|r| budgets.check(r)).collect(),
        }
    }

    /// Whether any record has a cold start.
    pub fn has_cold_start(&self) -> bool {
        self.records().any(|r| r.cold_start.is_some())
    }
}

/// What a comparison says against its budgets; the caller decides what it means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Presets that did not build, with their error.
    pub failed: Vec<(Preset, String)>,
    /// Budgets exceeded by the presets that did build.
    pub exceeded: Vec<Exceeded>,
}

impl Verdict {
    /// Every preset built within every budget.
    pub fn passed(&self) -> bool {
        self.failed.is_empty() && self.exceeded.is_empty()
    }
}

/// none 4 MiB, balanced 1.2 MiB, aggressive failed, nasa 300 KiB: for tests of what reads
/// comparisons.
#[cfg(test)]
pub(crate) fn sample_comparison() -> Comparison {
    use crate::core::metrics::sample_record;
    let ok = |preset, binary, image| Outcome {
        preset,
        result: Ok(sample_record(preset, binary, image)),
    };
    Comparison {
        source: "examples/fibonacci.rs".into(),
        outcomes: vec![
            ok(Preset::None, 4_194_304, 1_048_576),
            ok(Preset::Balanced, 1_258_291, 524_288),
            Outcome {
                preset: Preset::Aggressive,
                result: Err(sample_failure()),
            },
            ok(Preset::Nasa, 307_200, 131_072),
        ],
    }
}

/// The error of the sample's failed preset.
#[cfg(test)]
pub(crate) fn sample_failure() -> crate::core::error::Error {
    crate::core::error::Error::NoExecutable {
        bin: "fibonacci, \"really\"".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{Budget, Limit};

    #[test]
    fn reductions_are_against_none() {
        assert_eq!(reduction(1000, 82), (91.8, 12.2));
        assert_eq!(reduction(1000, 1000), (0.0, 1.0));
        assert_eq!(reduction(1000, 1250), (-25.0, 0.8));
        let reductions = sample_comparison().reductions();
        let presets: Vec<Preset> = reductions.iter().map(|r| r.preset).collect();
        assert_eq!(presets, [Preset::None, Preset::Balanced, Preset::Nasa]);
        assert_eq!(
            reductions[2],
            Reduction {
                preset: Preset::Nasa,
                binary_reduction_percent: 92.7,
                binary_reduction_factor: 13.7,
                image_reduction_percent: 87.5,
                image_reduction_factor: 8.0,
            }
        );
    }

    #[test]
    fn no_reductions_without_a_built_none() {
        let mut c = sample_comparison();
        c.outcomes.remove(0);
        assert!(c.reductions().is_empty());
        c.outcomes.insert(
            0,
            Outcome {
                preset: Preset::None,
                result: Err(sample_failure()),
            },
        );
        assert!(c.reductions().is_empty());
    }

    #[test]
    fn verdict_names_failures_and_budgets() {
        let budgets = Budgets {
            max_binary: Some(Budget::parse(Limit::Binary, "1MiB").unwrap()),
            max_image: None,
        };
        let verdict = sample_comparison().verdict(&budgets);
        assert!(!verdict.passed());
        assert_eq!(verdict.failed.len(), 1);
        assert_eq!(verdict.failed[0].0, Preset::Aggressive);
        assert!(verdict.failed[0]
            .1
            .starts_with("cargo reported no executable"));
        let over: Vec<(Preset, u64)> = verdict
            .exceeded
            .iter()
            .map(|e| (e.preset, e.size))
            .collect();
        assert_eq!(
            over,
            [(Preset::None, 4_194_304), (Preset::Balanced, 1_258_291)]
        );

        let mut built = sample_comparison();
        built.outcomes.remove(2);
        assert!(built.verdict(&Budgets::default()).passed());
        let over = built.verdict(&budgets);
        assert!(over.failed.is_empty() && over.exceeded.len() == 2);
    }
}
