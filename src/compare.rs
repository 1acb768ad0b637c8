//! `ruchy-image compare`: the same program built with several presets, one after another
//! through [`build()`](crate::build::build), and put side by side as a terminal table,
//! Markdown, CSV or JSON (and an SVG chart, in [`chart`](crate::chart)).
//!
//! Every number comes from the presets' [`BuildRecord`]s, so the JSON here holds exactly what
//! `build --json` writes for each preset.

use std::fmt::Write as _;

use comfy_table::{presets, Cell, CellAlignment, ColumnConstraint, Table, Width};
use serde::Serialize;

use crate::budget::Budgets;
use crate::build::{build, BuildOptions, Event};
use crate::compile::Compiler;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::metrics::{human_ms, human_size, BuildRecord, ColdStart};
use crate::preset::Preset;
use crate::publish::{EnginePublisher, Publisher};
use crate::run::{self, RunOptions};

/// What came of one preset.
#[derive(Debug)]
pub struct Outcome {
    /// The preset.
    pub preset: Preset,
    /// Its record, or why it did not build.
    pub result: Result<BuildRecord>,
}

/// Progress of a comparison, for the caller to show.
#[derive(Debug)]
pub enum CompareEvent<'a> {
    /// A preset's build is starting.
    Starting {
        /// 1-based position in the list.
        index: usize,
        /// How many presets there are.
        total: usize,
        /// The preset.
        preset: Preset,
    },
    /// Progress inside that preset's build.
    Build(Event<'a>),
    /// The preset failed; the comparison goes on with the next.
    Failed {
        /// The preset.
        preset: Preset,
        /// Why.
        error: &'a Error,
    },
}

/// Builds `base` once per preset, in order, writing no image anywhere.
///
/// A preset that fails to build is recorded and the others still run. Bad input (a missing
/// source, an unknown `--bin`) would fail every preset the same way, so it stops the
/// comparison at once with that error.
pub async fn compare(
    base: &BuildOptions,
    presets: &[Preset],
    compiler: &dyn Compiler,
    engine: Option<&ColdStartProbe>,
    report: &mut (dyn FnMut(CompareEvent<'_>) + Send),
) -> Result<Comparison> {
    let mut outcomes = Vec::with_capacity(presets.len());
    for (index, &preset) in presets.iter().enumerate() {
        report(CompareEvent::Starting {
            index: index + 1,
            total: presets.len(),
            preset,
        });
        let options = BuildOptions {
            preset,
            ..base.clone()
        };
        let mut forward = |event: Event<'_>| report(CompareEvent::Build(event));
        let publishers: Vec<Box<dyn Publisher>> = match engine {
            Some(probe) => vec![Box::new(EnginePublisher {
                engine: probe.engine.clone(),
                mtime: options.source_date_epoch,
            })],
            None => Vec::new(),
        };
        let mut result = match build(&options, compiler, &publishers, &mut forward).await {
            Err(error) if error.is_usage() => return Err(error),
            result => result,
        };
        if let (Some(probe), Ok(record)) = (engine, &mut result) {
            record.cold_start = probe.measure(&record.image.reference).await;
        }
        if let Err(error) = &result {
            report(CompareEvent::Failed { preset, error });
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
    /// (a server) or the engine fails: the size comparison goes on without it.
    async fn measure(&self, image: &str) -> Option<ColdStart> {
        let options = RunOptions {
            image: image.to_string(),
            args: Vec::new(),
            iterations: self.runs,
            memory: Some(128 << 20),
            cpus: Some(0.5),
            timeout: Some(std::time::Duration::from_secs(10)),
        };
        let report = run::run(&self.engine, &options, &mut |_, _| {})
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

/// The first line of an error, for a table cell.
fn first_line(error: &Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The presets' outcomes, in the order they were built.
#[derive(Debug)]
pub struct Comparison {
    /// The source, as the user gave it.
    pub source: String,
    /// One per preset.
    pub outcomes: Vec<Outcome>,
}

/// The `--format json` document.
#[derive(Serialize)]
struct JsonReport<'a> {
    /// `none` when the reductions are against it; null when there are none.
    baseline: Option<Preset>,
    results: Vec<JsonResult<'a>>,
    reductions: Vec<Reduction>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonResult<'a> {
    Built(&'a BuildRecord),
    Failed { preset: Preset, error: String },
}

/// Column headers of the terminal table and Markdown; reduction columns only with a baseline.
const COLUMNS: [&str; 6] = [
    "Preset",
    "Binary",
    "Image stored",
    "Image unpacked",
    "Layers",
    "Compile",
];
const REDUCTION_COLUMNS: [&str; 2] = ["Binary reduction", "Image reduction"];

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

    /// OK when every preset built within the budgets; otherwise an error naming each failed
    /// preset and each exceeded budget.
    pub fn verdict(&self, budgets: &Budgets) -> Result<()> {
        let failed: Vec<(Preset, String)> = self
            .outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| (o.preset, first_line(e))))
            .collect();
        let exceeded: Vec<_> = self.records().flat_map(|r| budgets.check(r)).collect();
        match (failed.is_empty(), exceeded.is_empty()) {
            (true, true) => Ok(()),
            (true, false) => Err(Error::OverBudget { exceeded }),
            (false, _) => Err(Error::PresetsFailed { failed, exceeded }),
        }
    }

    /// Human cells of each row: sizes, layers, time, reductions; a failed row has `failed`
    /// and its error's first line, and dashes elsewhere.
    fn human_rows(&self) -> Vec<Vec<String>> {
        let reductions = self.reductions();
        let with_cold_start = self.has_cold_start();
        let columns = self.headers().len();
        self.outcomes
            .iter()
            .map(|outcome| {
                let mut row = vec![outcome.preset.to_string()];
                let record = match &outcome.result {
                    Ok(record) => record,
                    Err(error) => {
                        row.push(format!("failed: {}", first_line(error)));
                        row.resize(columns, "—".into());
                        return row;
                    }
                };
                row.extend([
                    human_size(record.binary_size),
                    human_size(record.image.compressed_size),
                    human_size(record.image.uncompressed_size),
                    record.image.layer_count.to_string(),
                    human_ms(record.compile_time_ms),
                ]);
                if with_cold_start {
                    row.push(match &record.cold_start {
                        Some(c) => format!("{:.0} ms", c.median_ms),
                        None => "—".into(),
                    });
                }
                if let Some(r) = reductions.iter().find(|r| r.preset == outcome.preset) {
                    if r.preset == Preset::None {
                        row.extend(["baseline".to_string(), "baseline".to_string()]);
                    } else {
                        row.push(format!(
                            "{:.1}% ({:.1}x)",
                            r.binary_reduction_percent, r.binary_reduction_factor
                        ));
                        row.push(format!(
                            "{:.1}% ({:.1}x)",
                            r.image_reduction_percent, r.image_reduction_factor
                        ));
                    }
                }
                row
            })
            .collect()
    }

    fn has_cold_start(&self) -> bool {
        self.records().any(|r| r.cold_start.is_some())
    }

    fn headers(&self) -> Vec<&'static str> {
        let mut headers = COLUMNS.to_vec();
        if self.has_cold_start() {
            headers.push("Cold start");
        }
        if self.baseline().is_some() {
            headers.extend(REDUCTION_COLUMNS);
        }
        headers
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        table.set_header(self.headers());
        for (outcome, row) in self.outcomes.iter().zip(self.human_rows()) {
            let mut cells: Vec<Cell> = row.into_iter().map(Cell::new).collect();
            // A failed row's message reads from the left, unlike the numbers.
            if outcome.result.is_err() {
                cells[1] = cells[1].clone().set_alignment(CellAlignment::Left);
            }
            table.add_row(cells);
        }
        for column in table.column_iter_mut().skip(1) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        // The message wraps instead of widening the binary column across the screen.
        if let Some(binary) = table.column_mut(1) {
            binary.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(40)));
        }
        format!("{table}\n")
    }

    /// A GitHub-flavoured Markdown table, numbers right-aligned.
    pub fn markdown(&self) -> String {
        let headers = self.headers();
        // A `|` in an error message would end its cell.
        let rows: Vec<Vec<String>> = self
            .human_rows()
            .into_iter()
            .map(|row| row.into_iter().map(|c| c.replace('|', "\\|")).collect())
            .collect();
        let widths: Vec<usize> = (0..headers.len())
            .map(|i| {
                rows.iter()
                    .map(|row| row[i].chars().count())
                    .chain([headers[i].len(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (cell, &width))| {
                    let pad = " ".repeat(width - cell.chars().count());
                    if i == 0 {
                        format!("{cell}{pad}")
                    } else {
                        format!("{pad}{cell}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(headers.iter().map(|h| h.to_string()).collect());
        // `---:` right-aligns a column; the rule spans each cell and its padding.
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                if i == 0 {
                    "-".repeat(w + 2)
                } else {
                    format!("{}:", "-".repeat(w + 1))
                }
            })
            .collect();
        out += &format!("|{}|\n", rule.join("|"));
        for row in rows {
            out += &line(row);
        }
        out
    }

    /// CSV with exact numbers (bytes, milliseconds); the columns are the same with or without
    /// a baseline, the reduction cells then empty.
    pub fn csv(&self) -> String {
        let reductions = self.reductions();
        let mut out = String::from(
            "preset,status,binary_size,image_compressed_size,image_uncompressed_size,\
             layer_count,compile_time_ms,binary_reduction_percent,binary_reduction_factor,\
             image_reduction_percent,image_reduction_factor,error,cold_start_median_ms\n",
        );
        for outcome in &self.outcomes {
            let fields: Vec<String> = match &outcome.result {
                Ok(r) => {
                    let reduction = reductions.iter().find(|x| x.preset == outcome.preset);
                    let number = |f: fn(&Reduction) -> f64| {
                        reduction.map(|x| f(x).to_string()).unwrap_or_default()
                    };
                    vec![
                        outcome.preset.to_string(),
                        "ok".into(),
                        r.binary_size.to_string(),
                        r.image.compressed_size.to_string(),
                        r.image.uncompressed_size.to_string(),
                        r.image.layer_count.to_string(),
                        r.compile_time_ms.to_string(),
                        number(|x| x.binary_reduction_percent),
                        number(|x| x.binary_reduction_factor),
                        number(|x| x.image_reduction_percent),
                        number(|x| x.image_reduction_factor),
                        String::new(),
                        r.cold_start
                            .as_ref()
                            .map(|c| format!("{:.1}", c.median_ms))
                            .unwrap_or_default(),
                    ]
                }
                Err(error) => {
                    let mut fields = vec![outcome.preset.to_string(), "failed".into()];
                    fields.resize(11, String::new());
                    fields.push(first_line(error));
                    fields.push(String::new());
                    fields
                }
            };
            let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            let _ = writeln!(out, "{}", fields.join(","));
        }
        out
    }

    /// `{"baseline", "results", "reductions"}`: each result is the preset's record exactly as
    /// `build --json` writes it, or `{"preset", "error"}` for a preset that failed.
    pub fn json(&self) -> Result<String> {
        let report = JsonReport {
            baseline: self.baseline().map(|r| r.optimization_level),
            results: self
                .outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(record) => JsonResult::Built(record),
                    Err(error) => JsonResult::Failed {
                        preset: o.preset,
                        error: error.to_string(),
                    },
                })
                .collect(),
            reductions: self.reductions(),
        };
        let mut json = serde_json::to_string_pretty(&report).map_err(|source| Error::Json {
            what: "the comparison",
            source,
        })?;
        json.push('\n');
        Ok(json)
    }
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::sample_record;

    fn failure() -> Error {
        Error::NoExecutable {
            bin: "fibonacci, \"really\"".into(),
        }
    }

    /// none 4 MiB, balanced 1.2 MiB, aggressive failed, nasa 300 KiB.
    fn comparison() -> Comparison {
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
                    result: Err(failure()),
                },
                ok(Preset::Nasa, 307_200, 131_072),
            ],
        }
    }

    #[test]
    fn reductions_are_against_none() {
        assert_eq!(reduction(1000, 82), (91.8, 12.2));
        assert_eq!(reduction(1000, 1000), (0.0, 1.0));
        assert_eq!(reduction(1000, 1250), (-25.0, 0.8));
        let reductions = comparison().reductions();
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
        let mut c = comparison();
        c.outcomes.remove(0);
        assert!(c.reductions().is_empty());
        assert!(!c.table().contains("reduction"));
        assert!(c.json().unwrap().contains("\"baseline\": null"));
        c.outcomes.insert(
            0,
            Outcome {
                preset: Preset::None,
                result: Err(failure()),
            },
        );
        assert!(c.reductions().is_empty());
    }

    #[test]
    fn table_has_a_row_per_preset_and_names_the_failure() {
        let table = comparison().table();
        let lines: Vec<&str> = table.lines().collect();
        for (preset, expected) in [
            (
                "none",
                vec!["4.0 MiB", "1.0 MiB", "4.0 MiB", "1.5 s", "baseline"],
            ),
            (
                "balanced",
                vec!["1.2 MiB", "512.0 KiB", "70.0% (3.3x)", "50.0% (2.0x)"],
            ),
            (
                "nasa",
                vec!["300.0 KiB", "128.0 KiB", "92.7% (13.7x)", "87.5% (8.0x)"],
            ),
            ("aggressive", vec!["failed: cargo reported no executable"]),
        ] {
            let row = lines
                .iter()
                .find(|l| l.contains(&format!(" {preset} ")))
                .unwrap_or_else(|| panic!("no {preset} row in\n{table}"));
            for cell in expected {
                assert!(row.contains(cell), "{preset}: {cell} not in {row}\n{table}");
            }
        }
        assert!(lines[1].contains("Image stored") && lines[1].contains("Binary reduction"));
    }

    #[test]
    fn markdown_is_a_right_aligned_table() {
        let md = comparison().markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 6, "{md}");
        assert!(lines[0].starts_with("| Preset ") && lines[0].ends_with(" Image reduction |"));
        assert!(
            lines[1].starts_with("|----") && lines[1].ends_with(":|"),
            "{md}"
        );
        assert!(lines[2].starts_with("| none ") && lines[2].ends_with(" baseline |"));
        assert!(
            lines[4].contains("failed: cargo reported no executable"),
            "{md}"
        );
        // Every line has the same cell boundaries.
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{md}");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{md}"
        );
    }

    #[test]
    fn csv_has_exact_numbers_and_quotes_where_needed() {
        let csv = comparison().csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("preset,status,binary_size,"));
        assert_eq!(
            lines[2],
            "balanced,ok,1258291,524288,1268531,2,1500,70,3.3,50,2,,"
        );
        assert_eq!(
            lines[3],
            "aggressive,failed,,,,,,,,,,\"cargo reported no executable for binary `fibonacci, \"\"really\"\"`\","
        );
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    }

    #[test]
    fn json_holds_whole_records_failures_and_reductions() {
        let c = comparison();
        let json: serde_json::Value = serde_json::from_str(&c.json().unwrap()).unwrap();
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
    fn verdict_names_failures_and_budgets() {
        let budgets = Budgets {
            max_binary: Some(
                crate::budget::Budget::parse(crate::budget::Limit::Binary, "1MiB").unwrap(),
            ),
            max_image: None,
        };
        let error = comparison().verdict(&budgets).unwrap_err();
        assert!(!error.is_usage());
        let message = error.to_string();
        assert!(message.starts_with("the comparison failed:\n"), "{message}");
        assert!(message.contains("\n  aggressive: cargo reported no executable"));
        assert!(message.contains(
            "\n  none: binary is 4194304 bytes, over the budget of 1048576 bytes (--max-binary-size 1MiB)"
        ));
        assert!(
            message.contains("\n  balanced: binary is 1258291 bytes"),
            "{message}"
        );

        let mut built = comparison();
        built.outcomes.remove(2);
        assert!(built.verdict(&Budgets::default()).is_ok());
        let over = built.verdict(&budgets).unwrap_err();
        assert!(matches!(over, Error::OverBudget { .. }), "{over}");
    }
}

/// `compare --bases`: every preset on every base, in the chapter's "Docker Size Comparison"
/// shape (image, size, layers), with the base's share and ours.
#[derive(Debug)]
pub struct BaseComparison<'a> {
    /// One comparison per base, in the order given.
    pub bases: &'a [(String, Comparison)],
}

const BASE_COLUMNS: [&str; 7] = [
    "Image",
    "Base",
    "Size",
    "Unpacked",
    "Layers",
    "Base size",
    "Added",
];

impl BaseComparison<'_> {
    /// One row per preset and base: exact numbers, or the error for a failed build.
    fn rows(&self, human: bool) -> Vec<Vec<String>> {
        let size = |bytes: u64| {
            if human {
                human_size(bytes)
            } else {
                bytes.to_string()
            }
        };
        let mut rows = Vec::new();
        for (base, comparison) in self.bases {
            for outcome in &comparison.outcomes {
                rows.push(match &outcome.result {
                    Ok(r) => vec![
                        r.image.reference.clone(),
                        base.clone(),
                        size(r.image.compressed_size),
                        size(r.image.uncompressed_size),
                        r.image.layer_count.to_string(),
                        size(r.image.base.as_ref().map_or(0, |b| b.size)),
                        size(r.image.added_size),
                    ],
                    Err(e) => {
                        let mut row = vec![outcome.preset.to_string(), base.clone()];
                        row.push(format!(
                            "failed: {}",
                            e.to_string().lines().next().unwrap_or("")
                        ));
                        row.resize(BASE_COLUMNS.len(), String::new());
                        row
                    }
                });
            }
        }
        rows
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        table.set_header(BASE_COLUMNS);
        for row in self.rows(true) {
            table.add_row(row);
        }
        for column in table.column_iter_mut().skip(2) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        format!("{table}\n")
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", BASE_COLUMNS.join(" | "));
        out += "|---|---|---:|---:|---:|---:|---:|\n";
        for row in self.rows(true) {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            out += &format!("| {} |\n", cells.join(" | "));
        }
        out
    }

    /// CSV with exact bytes.
    pub fn csv(&self) -> String {
        let mut out = String::from("image,base,size,unpacked,layers,base_size,added\n");
        for row in self.rows(false) {
            let fields: Vec<String> = row
                .iter()
                .map(|f| {
                    if f.contains([',', '"']) {
                        format!("\"{}\"", f.replace('"', "\"\""))
                    } else {
                        f.clone()
                    }
                })
                .collect();
            out += &fields.join(",");
            out.push('\n');
        }
        out
    }

    /// `[{"base", "comparison": <compare --format json>}]`.
    pub fn json(&self) -> Result<String> {
        let mut parts = Vec::new();
        for (base, comparison) in self.bases {
            let comparison: serde_json::Value =
                serde_json::from_str(&comparison.json()?).map_err(|source| Error::Json {
                    what: "the comparison",
                    source,
                })?;
            parts.push(serde_json::json!({ "base": base, "comparison": comparison }));
        }
        serde_json::to_string_pretty(&parts)
            .map(|s| s + "\n")
            .map_err(|source| Error::Json {
                what: "the comparison",
                source,
            })
    }
}
