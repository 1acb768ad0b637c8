//! Terminal tables.

use comfy_table::{presets, Cell, CellAlignment, ColumnConstraint, Table, Width};

use super::{base_rows, preset_headers, preset_rows, BASE_HEADERS};
use crate::pipeline::compare::Comparison;

/// One row per preset; numbers right-aligned, a failure's message left-aligned and wrapped.
pub fn presets(comparison: &Comparison) -> String {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(preset_headers(comparison));
    for (outcome, row) in comparison.outcomes.iter().zip(preset_rows(comparison)) {
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

/// One row per preset and base.
pub fn bases(bases: &[(String, Comparison)]) -> String {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(BASE_HEADERS);
    for row in base_rows(bases, true) {
        table.add_row(row);
    }
    for column in table.column_iter_mut().skip(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::compare::sample_comparison;

    #[test]
    fn a_row_per_preset_naming_the_failure() {
        let table = presets(&sample_comparison());
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
    fn no_reduction_columns_without_a_built_none() {
        let mut c = sample_comparison();
        c.outcomes.remove(0);
        assert!(!presets(&c).contains("reduction"));
    }
}
