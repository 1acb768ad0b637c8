//! Reports of a comparison, for people and for scripts: a terminal [`table`], [`markdown`],
//! [`csv`] with exact numbers, [`json`] with whole build records, and an SVG [`chart`]. They
//! only read [`Comparison`]s; nothing here builds or prints.

pub mod chart;
pub mod csv;
pub mod json;
pub mod markdown;
pub mod table;

use crate::core::error::Result;
use crate::core::metrics::{human_ms, human_size};
use crate::core::preset::Preset;
use crate::pipeline::compare::Comparison;

/// How to show a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table for the terminal.
    Table,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    /// Every preset's full build record, plus the reductions.
    Json,
    /// One line per preset, exact bytes and milliseconds.
    Csv,
}

/// A comparison of presets on one base, in `format`.
pub fn presets(comparison: &Comparison, format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table::presets(comparison),
        Format::Markdown => markdown::presets(comparison),
        Format::Csv => csv::presets(comparison),
        Format::Json => json::presets(comparison)?,
    })
}

/// Comparisons on several platforms (`compare --platform linux/amd64,linux/arm64`), in
/// `format`: each platform's presets report under its name (tables), one JSON document
/// `[{"platform", "comparison"}]`, or the presets CSV with the platform first on each line.
pub fn platforms(platforms: &[(String, Comparison)], format: Format) -> Result<String> {
    if format == Format::Json {
        return json::platforms(platforms);
    }
    let mut out = String::new();
    for (i, (platform, comparison)) in platforms.iter().enumerate() {
        let report = presets(comparison, format)?;
        match format {
            Format::Csv => {
                for (n, line) in report.lines().enumerate() {
                    match n {
                        0 if i > 0 => continue,
                        0 => out += &format!("platform,{line}\n"),
                        _ => out += &format!("{platform},{line}\n"),
                    }
                }
            }
            Format::Markdown => {
                out += &format!(
                    "{}### {platform}\n\n{report}",
                    ["", "\n"][usize::from(i > 0)]
                )
            }
            _ => out += &format!("{}{platform}\n{report}", ["", "\n"][usize::from(i > 0)]),
        }
    }
    Ok(out)
}

/// Comparisons on several bases (`compare --bases`), in `format`: every preset on every base,
/// in the chapter's "Docker Size Comparison" shape, with the base's share and ours.
pub fn bases(bases: &[(String, Comparison)], format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table::bases(bases),
        Format::Markdown => markdown::bases(bases),
        Format::Csv => csv::bases(bases),
        Format::Json => json::bases(bases)?,
    })
}

/// The first line of an error, for a table cell.
pub(crate) fn first_line(error: &impl ToString) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Column headers of the presets table; cold start and reduction columns only when there
/// is something to put in them.
pub(crate) fn preset_headers(comparison: &Comparison) -> Vec<&'static str> {
    let mut headers = vec![
        "Preset",
        "Binary",
        "Libc",
        "Image stored",
        "Image unpacked",
        "Layers",
        "Compile",
    ];
    if comparison.has_cold_start() {
        headers.push("Cold start");
    }
    if comparison.baseline().is_some() {
        headers.extend(["Binary reduction", "Image reduction"]);
    }
    headers
}

/// Human cells of each preset's row: sizes, layers, time, reductions; a failed row has
/// `failed` and its error's first line, and dashes elsewhere.
pub(crate) fn preset_rows(comparison: &Comparison) -> Vec<Vec<String>> {
    let reductions = comparison.reductions();
    let with_cold_start = comparison.has_cold_start();
    let columns = preset_headers(comparison).len();
    comparison
        .outcomes
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
                record.libc.clone(),
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

/// Column headers of the bases table.
pub(crate) const BASE_HEADERS: [&str; 7] = [
    "Image",
    "Base",
    "Size",
    "Unpacked",
    "Layers",
    "Base size",
    "Added",
];

/// One row per preset and base: sizes for people (`human`) or exact bytes; a failed build
/// has its error's first line.
pub(crate) fn base_rows(bases: &[(String, Comparison)], human: bool) -> Vec<Vec<String>> {
    let size = |bytes: u64| match human {
        true => human_size(bytes),
        false => bytes.to_string(),
    };
    let mut rows = Vec::new();
    for (base, comparison) in bases {
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
                    row.push(format!("failed: {}", first_line(e)));
                    row.resize(BASE_HEADERS.len(), String::new());
                    row
                }
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compare::sample_comparison;

    #[test]
    fn platforms_each_get_their_presets_report() {
        let both = [
            ("linux/amd64".to_string(), sample_comparison()),
            ("linux/arm64".to_string(), sample_comparison()),
        ];
        let csv = platforms(&both, Format::Csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("platform,preset,status,"), "{csv}");
        assert_eq!(lines.len(), 9, "{csv}");
        assert!(lines[1].starts_with("linux/amd64,none,ok,"), "{csv}");
        assert!(lines[5].starts_with("linux/arm64,none,ok,"), "{csv}");
        let table = platforms(&both, Format::Markdown).unwrap();
        assert!(table.starts_with("### linux/amd64\n\n| Preset"), "{table}");
        assert!(table.contains("\n### linux/arm64\n"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&platforms(&both, Format::Json).unwrap()).unwrap();
        assert_eq!(json[1]["platform"], "linux/arm64");
        assert_eq!(json[1]["comparison"]["baseline"], "none");
    }
}
