//! `compare --chart FILE.svg`: horizontal bars per preset for binary size, stored image size
//! and compile time, each labelled with its value, the smallest size in green, so the
//! winning preset shows at a glance. Plain SVG text: any browser or `rsvg-convert` reads it.

use std::fmt::Write as _;
use std::path::Path;

use crate::core::metrics::{human_ms, human_size, BuildRecord};
use crate::pipeline::compare::Comparison;

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

/// Escapes text for an SVG (or HTML) text node or attribute.
pub(crate) fn escape(text: &str) -> String {
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

/// One line of a [`history_svg`] chart: a name (a preset) and a value per x position (a
/// build), `None` where it has none (the preset failed or was not built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The legend's name for the line.
    pub name: String,
    /// One value per x position, in order.
    pub values: Vec<Option<u64>>,
}

/// Line colours, one per series in order (distinct also in grey scale and for the common
/// colour blindnesses; each point also carries its series name in its tooltip).
const LINE_COLOURS: [&str; 6] = [
    "#1f5fa8", "#d35400", "#1a9850", "#8e44ad", "#7f6000", "#c0392b",
];

const HISTORY_WIDTH: f64 = 760.0;
const HISTORY_HEIGHT: f64 = 320.0;
const PLOT_LEFT: f64 = 92.0;
const PLOT_RIGHT: f64 = 600.0;
const PLOT_TOP: f64 = 48.0;
const PLOT_BOTTOM: f64 = 262.0;

/// The y axis's step for values up to `max`, four steps high: a round number (1, 2, 2.5 or 5
/// times a power of ten) of the unit the labels use (B, KiB, MiB, GiB), so the labels read
/// `0 B, 100.0 KiB, 200.0 KiB, …`.
fn axis_step(max: u64) -> u64 {
    let unit: u64 = match max {
        m if m >= 1 << 30 => 1 << 30,
        m if m >= 1 << 20 => 1 << 20,
        m if m >= 10 << 10 => 1 << 10,
        _ => 1,
    };
    let raw = (max.max(1) as f64 / 4.0 / unit as f64).max(if unit == 1 { 1.0 } else { 0.01 });
    let power = 10f64.powf(raw.log10().floor());
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * power);
    ((nice * unit as f64).round() as u64).max(1)
}

/// A line chart of sizes over builds: x is the position (`x_labels`, oldest first), y is
/// bytes from 0, one line with a marker per value for each series, a legend, labelled axes,
/// and every marker's exact value in its `<title>` tooltip. Plain SVG for a web page.
pub fn history_svg(title: &str, x_labels: &[String], series: &[Series]) -> String {
    let plot = HistoryPlot::new(x_labels, series);
    let title = escape(title);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="history" role="img" width="{HISTORY_WIDTH}" height="{HISTORY_HEIGHT}" viewBox="0 0 {HISTORY_WIDTH} {HISTORY_HEIGHT}" font-family="system-ui, DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r##"<text x="16" y="24" font-size="15" font-weight="bold" fill="#222">{title}</text>"##
    );
    plot.y_axis(&mut out);
    plot.x_axis(&mut out, x_labels);
    // The lines, their markers (each with its exact value) and the legend.
    for (n, s) in series.iter().enumerate() {
        plot.series(&mut out, n, s, x_labels);
    }
    out.push_str("</svg>\n");
    out
}

/// The scales of a [`history_svg`] chart: where a build (x) and a byte count (y) are drawn.
struct HistoryPlot {
    /// The y axis's step: its labels are at 0 and four steps up.
    step: u64,
    /// The value at the top of the y axis.
    top: u64,
    /// How many builds the x axis has room for.
    columns: usize,
}

impl HistoryPlot {
    fn new(x_labels: &[String], series: &[Series]) -> HistoryPlot {
        let max = series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .copied()
            .max()
            .unwrap_or(0);
        let step = axis_step(max);
        HistoryPlot {
            step,
            top: step * 4,
            columns: x_labels
                .len()
                .max(series.iter().map(|s| s.values.len()).max().unwrap_or(0)),
        }
    }

    /// The x of build `i`.
    fn x(&self, i: usize) -> f64 {
        if self.columns <= 1 {
            (PLOT_LEFT + PLOT_RIGHT) / 2.0
        } else {
            PLOT_LEFT
                + 16.0
                + i as f64 * (PLOT_RIGHT - PLOT_LEFT - 32.0) / (self.columns - 1) as f64
        }
    }

    /// The y of `v` bytes.
    fn y(&self, v: u64) -> f64 {
        PLOT_BOTTOM - v as f64 / self.top as f64 * (PLOT_BOTTOM - PLOT_TOP)
    }

    /// The y axis's gridlines and labels, both axis lines and the y axis's title.
    fn y_axis(&self, out: &mut String) {
        // Y axis: gridlines and labels at quarters of the range.
        for q in 0..=4u64 {
            let value = self.step * q;
            let gy = self.y(value);
            let _ = writeln!(
                out,
                r##"<line x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{gy:.1}" y2="{gy:.1}" stroke="#e3e3e3"/>"##
            );
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                PLOT_LEFT - 8.0,
                gy + 4.0,
                escape(&human_size(value))
            );
        }
        let _ = writeln!(
            out,
            r##"<line class="axis" x1="{PLOT_LEFT}" x2="{PLOT_LEFT}" y1="{PLOT_TOP}" y2="{PLOT_BOTTOM}" stroke="#555"/>"##
        );
        let _ = writeln!(
            out,
            r##"<line class="axis" x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{PLOT_BOTTOM}" y2="{PLOT_BOTTOM}" stroke="#555"/>"##
        );
        let _ = writeln!(
            out,
            r##"<text class="axis-label" x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle" fill="#222">bytes</text>"##,
            (PLOT_TOP + PLOT_BOTTOM) / 2.0,
            (PLOT_TOP + PLOT_BOTTOM) / 2.0
        );
    }

    /// The x axis's ticks, labels and title.
    fn x_axis(&self, out: &mut String, x_labels: &[String]) {
        // X axis: a tick per build, labelled (thinned out when there are many).
        let every = self.columns.div_ceil(12).max(1);
        for (i, label) in x_labels.iter().enumerate() {
            let gx = self.x(i);
            let _ = writeln!(
                out,
                r##"<line x1="{gx:.1}" x2="{gx:.1}" y1="{PLOT_BOTTOM}" y2="{:.1}" stroke="#555"/>"##,
                PLOT_BOTTOM + 4.0
            );
            if i % every == 0 || i + 1 == x_labels.len() {
                let _ = writeln!(
                    out,
                    r##"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                    PLOT_BOTTOM + 18.0,
                    escape(label)
                );
            }
        }
        let _ = writeln!(
            out,
            r##"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">builds, oldest to newest</text>"##,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            PLOT_BOTTOM + 44.0
        );
    }

    /// Series `n`'s line, its markers (each with its exact value) and its legend entry.
    fn series(&self, out: &mut String, n: usize, s: &Series, x_labels: &[String]) {
        let colour = LINE_COLOURS[n % LINE_COLOURS.len()];
        let name = escape(&s.name);
        let _ = writeln!(out, r#"<g class="series" data-series="{name}">"#);
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", self.x(i), self.y(v))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for (i, value) in s.values.iter().enumerate() {
            let Some(value) = *value else { continue };
            let at = x_labels.get(i).map(|l| escape(l)).unwrap_or_default();
            let _ = writeln!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="4" fill="{colour}" data-bytes="{value}"><title>{name}, build {at}: {} ({value} bytes)</title></circle>"#,
                self.x(i),
                self.y(value),
                escape(&human_size(value))
            );
        }
        let ly = PLOT_TOP + 6.0 + n as f64 * 22.0;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}" fill="#222">{name}</text>"##,
            PLOT_RIGHT + 24.0,
            PLOT_RIGHT + 48.0,
            PLOT_RIGHT + 56.0,
            ly + 4.0
        );
        out.push_str("</g>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Error;
    use crate::core::metrics::sample_record;
    use crate::core::preset::Preset;
    use crate::pipeline::compare::Outcome;

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

    #[test]
    fn history_chart_has_a_line_per_series_and_exact_values_in_tooltips() {
        let labels: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let series = [
            Series {
                name: "aggressive".into(),
                values: vec![Some(400_000), Some(376_944), Some(376_944)],
            },
            Series {
                name: "<size>".into(),
                values: vec![Some(300_000), None, Some(1_000_000)],
            },
        ];
        let svg = history_svg("fib & co: binary size", &labels, &series);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains(">fib &amp; co: binary size</title>"), "{svg}");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .collect();
        assert_eq!(lines.len(), 2);
        let groups: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("series"))
            .map(|n| n.attribute("data-series").unwrap().to_string())
            .collect();
        assert_eq!(groups, ["aggressive", "<size>"]);
        let points: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .collect();
        assert_eq!(points.len(), 5, "a failed preset has no point");
        assert!(svg.contains("<title>aggressive, build 2: 368.1 KiB (376944 bytes)</title>"));
        assert!(svg.contains("<title>&lt;size&gt;, build 3: 976.6 KiB (1000000 bytes)</title>"));
        let cy = |bytes: &str| -> f64 {
            points
                .iter()
                .find(|p| p.attribute("data-bytes") == Some(bytes))
                .unwrap()
                .attribute("cy")
                .unwrap()
                .parse()
                .unwrap()
        };
        // y from 0 (at the bottom) to four steps of 250 KiB (at the top).
        let height = PLOT_BOTTOM - PLOT_TOP;
        let expected = |bytes: f64| PLOT_BOTTOM - bytes / 1_024_000.0 * height;
        assert!((cy("1000000") - expected(1e6)).abs() < 0.1);
        assert!((cy("300000") - expected(3e5)).abs() < 0.1);
        // x: first and last build at the ends, in order.
        let xs: Vec<f64> = points[..3]
            .iter()
            .map(|p| p.attribute("cx").unwrap().parse().unwrap())
            .collect();
        assert!(xs[0] < xs[1] && xs[1] < xs[2], "{xs:?}");
        assert_eq!(xs[0], PLOT_LEFT + 16.0);
        assert_eq!(xs[2], PLOT_RIGHT - 16.0);
        // Labelled axes.
        assert!(svg.contains(">bytes</text>"));
        assert!(svg.contains(">builds, oldest to newest</text>"));
        let ticks: Vec<&str> = doc
            .descendants()
            .filter(|n| n.attribute("text-anchor") == Some("end"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(
            ticks,
            ["0 B", "250.0 KiB", "500.0 KiB", "750.0 KiB", "1000.0 KiB"]
        );
    }

    #[test]
    fn axis_steps_are_round_in_the_labels_unit() {
        assert_eq!(axis_step(0), 1);
        assert_eq!(axis_step(3), 1);
        assert_eq!(axis_step(9_000), 2_500);
        // 364.7 KiB: steps of 100 KiB up to 400 KiB.
        assert_eq!(axis_step(373_453), 100 * 1024);
        assert_eq!(axis_step(180_000), 50 * 1024);
        assert_eq!(axis_step(5 << 20), 2 << 20);
        for max in [1, 999, 10_240, 376_944, 1_000_000, 7 << 30] {
            assert!(axis_step(max) * 4 >= max, "{max}");
        }
    }
}
