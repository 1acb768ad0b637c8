//! GitHub-flavoured Markdown tables.

use super::{base_rows, preset_headers, preset_rows, BASE_HEADERS};
use crate::pipeline::compare::Comparison;

/// One row per preset.
pub fn presets(comparison: &Comparison) -> String {
    table(&preset_headers(comparison), preset_rows(comparison))
}

/// One row per preset and base.
pub fn bases(bases: &[(String, Comparison)]) -> String {
    table(&BASE_HEADERS, base_rows(bases, true))
}

/// A table padded so it also reads as plain text: the first column left-aligned, the others
/// (numbers) right-aligned.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    // A `|` in a cell (an error message) would end it.
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.into_iter().map(|c| c.replace('|', "\\|")).collect())
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([headers[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &width))| {
                let pad = " ".repeat(width - cell.chars().count());
                match i {
                    0 => format!("{cell}{pad}"),
                    _ => format!("{pad}{cell}"),
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&headers);
    // `---:` right-aligns a column; the rule spans each cell and its padding.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| match i {
            0 => "-".repeat(w + 2),
            _ => format!("{}:", "-".repeat(w + 1)),
        })
        .collect();
    out += &format!("|{}|\n", rule.join("|"));
    for row in &rows {
        out += &line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compare::sample_comparison;

    #[test]
    fn a_right_aligned_table_with_even_cells() {
        let md = presets(&sample_comparison());
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
    fn pipes_in_cells_are_escaped() {
        let md = table(&["a", "b"], vec![vec!["x|y".into(), "1".into()]]);
        assert_eq!(md.lines().nth(2), Some("| x\\|y |   1 |"));
    }
}
