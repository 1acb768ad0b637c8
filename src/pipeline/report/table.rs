//! Terminal tables, made to fit an 80-column terminal.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

use super::{base_rows, first_line, preset_headers, preset_rows, BASE_HEADERS};
use crate::pipeline::compare::Comparison;

/// The width the presets tables keep within: a failure's message wraps to fit it.
pub const WIDTH: u16 = 80;

/// Of the presets report's columns, the sizes (preset to layers); the times and reductions
/// follow in a second table, since all of them side by side are 120 to 140 columns wide.
const SIZE_COLUMNS: usize = 6;

/// Two tables, one row per preset in each: the sizes, then compile time, cold start and
/// reductions; numbers right-aligned. A failed preset's row says `failed`, and its error's
/// first line follows the tables, wrapped to fit.
pub fn presets(comparison: &Comparison) -> String {
    let headers = preset_headers(comparison);
    let mut rows = preset_rows(comparison);
    let mut failures = String::new();
    for (outcome, row) in comparison.outcomes.iter().zip(&mut rows) {
        if let Err(error) = &outcome.result {
            row[1] = "failed".into();
            let line = format!("{} failed: {}", outcome.preset, first_line(error));
            failures += &wrap(&line, usize::from(WIDTH));
        }
    }
    let sizes = preset_table(
        &headers[..SIZE_COLUMNS],
        rows.iter().map(|row| row[..SIZE_COLUMNS].to_vec()),
    );
    let rest = |row: &[String]| -> Vec<String> {
        let mut cells = vec![row[0].clone()];
        cells.extend_from_slice(&row[SIZE_COLUMNS..]);
        cells
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let times = preset_table(&rest(&headers), rows.iter().map(|row| rest(row)));
    format!("{sizes}\n{times}\n{failures}")
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than
/// that is cut), the lines after the first indented by two spaces.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let gap = usize::from(used > 2 || (used > 0 && out.is_empty()));
            if used + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 2 || (used > 0 && out.is_empty()) {
                out += &format!("{line}\n");
                line = "  ".into();
                continue;
            }
            // A word wider than a whole line: as much of it as fits.
            let room = width - used;
            line.extend(word.drain(..room));
            out += &format!("{line}\n");
            line = "  ".into();
        }
    }
    if line.trim().is_empty() {
        return out;
    }
    out + &line + "\n"
}

/// One table of `headers` and `rows`, numbers to the right.
fn preset_table<H: ToString>(headers: &[H], rows: impl Iterator<Item = Vec<String>>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_width(WIDTH);
    table.set_header(headers.iter().map(ToString::to_string));
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
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
    fn wrapping_breaks_between_words_and_indents() {
        assert_eq!(wrap("a b c", 80), "a b c\n");
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\n  ccc\n");
        assert_eq!(wrap("x abcdefghij", 6), "x\n  abcd\n  efgh\n  ij\n");
    }

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
            ("aggressive", vec!["failed", "—"]),
        ] {
            // The preset's row in each of the two tables.
            let row: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.contains(&format!(" {preset} ")))
                .collect();
            assert_eq!(row.len(), 2, "{preset} rows in\n{table}");
            let row = row.join("\n");
            for cell in expected {
                assert!(row.contains(cell), "{preset}: {cell} not in {row}\n{table}");
            }
        }
        assert!(lines[1].contains("Image stored") && lines[1].contains("Layers"));
        assert!(
            table.ends_with("┘\naggressive failed: cargo reported no executable for binary `fibonacci, \"really\"`\n"),
            "{table}"
        );
        let second = lines.iter().filter(|l| l.contains("│ Preset ")).nth(1);
        assert!(
            second.is_some_and(|l| l.contains("Compile") && l.contains("Binary reduction")),
            "{table}"
        );
    }

    /// Every line within 80 characters (not bytes: the borders are 3 bytes each), with all
    /// five presets, cold starts, reductions and a failure whose message is long.
    #[test]
    fn the_tables_fit_80_columns() {
        use crate::core::metrics::{sample_record, ColdStart};
        use crate::core::preset::Preset;
        use crate::pipeline::compare::Outcome;
        let mut c = sample_comparison();
        c.outcomes[2].result = Err(crate::core::error::Error::InvalidInput {
            what: "a long failure",
            value: "x".repeat(60),
            reason: "a message far wider than any terminal, which wraps in its cell".into(),
        });
        let mut size = sample_record(Preset::Size, 39_116, 20_787);
        size.cold_start = Some(ColdStart {
            runs: 5,
            median_ms: 1234.0,
            min_ms: 1000.0,
            max_ms: 2000.0,
        });
        c.outcomes.push(Outcome {
            preset: Preset::Size,
            result: Ok(size),
        });
        let table = presets(&c);
        assert!(
            table.contains("Cold start") && table.contains("reduction"),
            "{table}"
        );
        assert!(
            table.contains("aggressive failed: invalid a long failure"),
            "{table}"
        );
        for line in table.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} wide: {line}\n{table}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn no_reduction_columns_without_a_built_none() {
        let mut c = sample_comparison();
        c.outcomes.remove(0);
        assert!(!presets(&c).contains("reduction"));
    }
}
