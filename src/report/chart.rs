//! `compare --chart FILE.svg`: horizontal bars per preset for binary size, stored image size
//! and compile time, each labelled with its value, the smallest size in green, so the
//! winning preset shows at a glance. Plain SVG text: any browser or `rsvg-convert` reads it.

use std::fmt::Write as _;
use std::path::Path;

use crate::compare::Comparison;
use crate::metrics::{human_ms, human_size, BuildRecord};

const WIDTH: u32 = 840;
/// Right edge of the preset names; bars start just after.
const LABEL_RIGHT: u32 = 128;
const BAR_LEFT: u32 = 138;
/// The longest bar; the rest of the width is for its value label.
const BAR_MAX: f64 = 400.0;
const BAR_HEIGHT: u32 = 20;
const ROW: u32 = 28;
const GROUP_TITLE: u32 = 26;
const GROUP_GAP: u32 = 18;

const BAR: &str = "#7f9cc9";
const SMALLEST: &str = "#1a9850";
const TIME_BAR: &str = "#b3a6cf";
const FAILED: &str = "#c0392b";

/// One group of bars: a title, how to read a record, how to print a value, and whether it is
/// a size (the smallest is the winner, highlighted; exact bytes shown, since presets can be a
/// few KiB apart and round to the same MiB).
struct Group {
    title: &'static str,
    value: fn(&BuildRecord) -> u64,
    label: fn(u64) -> String,
    is_size: bool,
}

const GROUPS: [Group; 3] = [
    Group {
        title: "Binary size",
        value: |r| r.binary_size,
        label: human_size,
        is_size: true,
    },
    Group {
        title: "Image size (stored, compressed)",
        value: |r| r.image.compressed_size,
        label: human_size,
        is_size: true,
    },
    Group {
        title: "Compile time",
        value: |r| r.compile_time_ms,
        label: human_ms,
        is_size: false,
    },
];

/// Escapes text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as SVG text.
pub fn svg(comparison: &Comparison) -> String {
    let name = Path::new(&comparison.source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| comparison.source.clone());
    let title = escape(&format!("{name}: presets compared"));
    let rows = comparison.outcomes.len() as u32;
    let group_height = GROUP_TITLE + rows * ROW + GROUP_GAP;
    let top = 78;
    let height = top + GROUPS.len() as u32 * group_height;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r##"<text x="24" y="32" font-size="18" font-weight="bold" fill="#222">{title}</text>"##
    );
    let _ = writeln!(
        out,
        "<text x=\"24\" y=\"54\" font-size=\"12\" fill=\"#555\">ruchy-image compare · shorter is better · smallest size in <tspan fill=\"{SMALLEST}\" font-weight=\"bold\">green</tspan></text>"
    );

    for (g, group) in GROUPS.iter().enumerate() {
        let y0 = top + g as u32 * group_height;
        let _ = writeln!(
            out,
            r##"<text x="24" y="{}" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
            y0 + 16,
            escape(group.title)
        );
        let values: Vec<Option<u64>> = comparison
            .outcomes
            .iter()
            .map(|o| o.result.as_ref().ok().map(group.value))
            .collect();
        let max = values.iter().flatten().copied().max().unwrap_or(0);
        let min = values.iter().flatten().copied().min();
        for (i, (outcome, value)) in comparison.outcomes.iter().zip(&values).enumerate() {
            let y = y0 + GROUP_TITLE + i as u32 * ROW;
            let text_y = y + 15;
            let _ = writeln!(
                out,
                r##"<text x="{LABEL_RIGHT}" y="{text_y}" text-anchor="end" fill="#222">{}</text>"##,
                outcome.preset
            );
            let Some(value) = *value else {
                let _ = writeln!(
                    out,
                    r#"<text x="{BAR_LEFT}" y="{text_y}" font-style="italic" fill="{FAILED}">failed</text>"#
                );
                continue;
            };
            let best = group.is_size && Some(value) == min;
            let fill = match (group.is_size, best) {
                (_, true) => SMALLEST,
                (true, false) => BAR,
                (false, _) => TIME_BAR,
            };
            // At least 2 px, so a tiny value still shows a bar.
            let width = if max == 0 {
                2.0
            } else {
                (value as f64 / max as f64 * BAR_MAX).max(2.0)
            };
            let _ = writeln!(
                out,
                r#"<rect x="{BAR_LEFT}" y="{y}" width="{width:.1}" height="{BAR_HEIGHT}" rx="3" fill="{fill}"/>"#
            );
            let label = (group.label)(value);
            let exact = if group.is_size {
                format!(r##" <tspan font-weight="normal" fill="#777">({value} bytes)</tspan>"##)
            } else {
                String::new()
            };
            let (weight, note) = if best {
                ("bold", " · smallest")
            } else {
                ("normal", "")
            };
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{text_y}" font-weight="{weight}" fill="#222">{label}{exact}{note}</text>"##,
                BAR_LEFT as f64 + width + 8.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Outcome;
    use crate::error::Error;
    use crate::metrics::sample_record;
    use crate::preset::Preset;

    fn comparison() -> Comparison {
        let ok = |preset, binary, image| Outcome {
            preset,
            result: Ok(sample_record(preset, binary, image)),
        };
        Comparison {
            source: "examples/<fib>.rs".into(),
            outcomes: vec![
                ok(Preset::None, 4_194_304, 1_048_576),
                ok(Preset::Aggressive, 307_200, 131_072),
                Outcome {
                    preset: Preset::Nasa,
                    result: Err(Error::NoExecutable { bin: "fib".into() }),
                },
            ],
        }
    }

    #[test]
    fn chart_is_svg_with_a_labelled_bar_per_preset() {
        let svg = svg(&comparison());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        // Text is escaped.
        assert!(svg.contains("<title>&lt;fib&gt;.rs: presets compared</title>"));
        // Two size groups, each with the smallest (aggressive) in green and named so.
        assert_eq!(svg.matches(&format!("fill=\"{SMALLEST}\"/>")).count(), 2);
        let bytes = |n| format!(r##"<tspan font-weight="normal" fill="#777">({n} bytes)</tspan>"##);
        assert!(svg.contains(&format!(">300.0 KiB {} · smallest</text>", bytes(307200))));
        assert!(svg.contains(&format!(">128.0 KiB {} · smallest</text>", bytes(131072))));
        assert!(
            svg.contains(&format!(">4.0 MiB {}</text>", bytes(4194304))),
            "{svg}"
        );
        // Compile time is a third group, neither green nor marked.
        assert_eq!(svg.matches(&format!("fill=\"{TIME_BAR}\"/>")).count(), 2);
        assert!(svg.contains(">1.5 s</text>"));
        // The failed preset is named in every group, without a bar.
        assert_eq!(svg.matches(">failed</text>").count(), 3);
        // The biggest bar is the full length.
        assert!(svg.contains(&format!("width=\"{BAR_MAX:.1}\"")));
    }
}
