//! CSV with exact numbers (bytes, milliseconds), for spreadsheets and scripts.

use super::{base_rows, first_line};
use crate::pipeline::compare::{Comparison, Reduction};

/// Writes records as CSV text (RFC 4180 quoting, by the `csv` crate).
fn write(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = ::csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail, and every row has the header's length.
    out.write_record(header).expect("csv header");
    for row in rows {
        out.write_record(&row).expect("csv row");
    }
    String::from_utf8(out.into_inner().expect("csv in memory")).expect("csv of UTF-8 fields")
}

/// One line per preset. The columns are the same with or without a baseline, the reduction
/// cells then empty.
pub fn presets(comparison: &Comparison) -> String {
    const HEADER: [&str; 14] = [
        "preset",
        "status",
        "binary_size",
        "image_compressed_size",
        "image_uncompressed_size",
        "layer_count",
        "compile_time_ms",
        "binary_reduction_percent",
        "binary_reduction_factor",
        "image_reduction_percent",
        "image_reduction_factor",
        "error",
        "cold_start_median_ms",
        "libc",
    ];
    let reductions = comparison.reductions();
    let rows = comparison
        .outcomes
        .iter()
        .map(|outcome| match &outcome.result {
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
                    r.libc.clone(),
                ]
            }
            Err(error) => {
                let mut fields = vec![outcome.preset.to_string(), "failed".into()];
                fields.resize(11, String::new());
                fields.push(first_line(error));
                fields.resize(HEADER.len(), String::new());
                fields
            }
        });
    write(&HEADER, rows)
}

/// One line per preset and base, exact bytes.
pub fn bases(bases: &[(String, Comparison)]) -> String {
    write(
        &[
            "image",
            "base",
            "size",
            "unpacked",
            "layers",
            "base_size",
            "added",
        ],
        base_rows(bases, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compare::sample_comparison;

    #[test]
    fn exact_numbers_quoted_where_needed() {
        let csv = presets(&sample_comparison());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("preset,status,binary_size,"));
        assert_eq!(
            lines[2],
            "balanced,ok,1258291,524288,1268531,2,1500,70,3.3,50,2,,,glibc"
        );
        assert_eq!(
            lines[3],
            "aggressive,failed,,,,,,,,,,\"cargo reported no executable for binary `fibonacci, \"\"really\"\"`\",,"
        );
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    }
}
