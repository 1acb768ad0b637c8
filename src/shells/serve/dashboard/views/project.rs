//! A project's page: binary and image sizes per preset over its builds, its latest build's
//! presets compared, and its builds.

use askama::Template;

use super::{builds_table, preset_results, render, Measure, WorkerNames};
use crate::pipeline::report::chart;
use crate::shells::serve::store::{BuildRecord, Status};

/// One chart of a project's history.
struct HistoryChart {
    kind: &'static str,
    title: &'static str,
    svg: String,
}

#[derive(Template)]
#[template(path = "dashboard/charts.html")]
struct HistoryCharts {
    charts: Vec<HistoryChart>,
    builds: usize,
}

/// Binary and image size per preset over the builds (oldest first) that have results.
pub fn history_charts(newest_first: &[BuildRecord]) -> String {
    let builds: Vec<&BuildRecord> = newest_first
        .iter()
        .rev()
        .filter(|r| preset_results(r).iter().any(|p| p.record.is_some()))
        .collect();
    let mut presets: Vec<String> = Vec::new();
    for build in &builds {
        for result in preset_results(build) {
            if !presets.contains(&result.preset) {
                presets.push(result.preset);
            }
        }
    }
    let labels: Vec<String> = (1..=builds.len()).map(|n| n.to_string()).collect();
    let kinds: [(&str, Measure, &str); 2] = [
        ("Binary size per preset", |r| r.binary_size, "binary_size"),
        (
            "Image size per preset (stored, compressed)",
            |r| r.image.compressed_size,
            "image_size",
        ),
    ];
    let charts = match builds.is_empty() {
        true => Vec::new(),
        false => kinds
            .into_iter()
            .map(|(title, measure, kind)| {
                let series: Vec<chart::Series> = presets
                    .iter()
                    .map(|preset| chart::Series {
                        name: preset.clone(),
                        values: builds
                            .iter()
                            .map(|build| {
                                preset_results(build)
                                    .iter()
                                    .find(|r| &r.preset == preset)
                                    .and_then(|r| r.measure(measure))
                            })
                            .collect(),
                    })
                    .collect();
                HistoryChart {
                    kind,
                    title,
                    svg: chart::history_svg(title, &labels, &series),
                }
            })
            .collect(),
    };
    render(&HistoryCharts {
        charts,
        builds: builds.len(),
    })
}

/// The latest successful build's bar chart on a project page.
pub struct Latest {
    id: String,
    svg: String,
}

#[derive(Template)]
#[template(path = "dashboard/project.html")]
struct ProjectPage<'a> {
    name: &'a str,
    count: usize,
    charts: String,
    latest: Option<Latest>,
    table: String,
}

/// A project's page: its size history, its latest presets compared, its builds.
pub fn project_body(name: &str, records: &[BuildRecord], names: &WorkerNames) -> String {
    let latest = records
        .iter()
        .find(|r| r.status == Status::Success && !preset_results(r).is_empty())
        .map(|latest| Latest {
            id: latest.id.clone(),
            svg: chart::svg(&comparison(name, latest)),
        });
    render(&ProjectPage {
        name,
        count: records.len(),
        charts: history_charts(records),
        latest,
        table: builds_table(records, "The project's builds, newest first", names),
    })
}

/// The latest build's results as a [`crate::pipeline::compare::Comparison`], for the bar chart.
fn comparison(project: &str, record: &BuildRecord) -> crate::pipeline::compare::Comparison {
    let outcomes = preset_results(record)
        .into_iter()
        .filter_map(|r| {
            let preset = r.preset.parse().ok()?;
            // A measured record with an error (over a budget) failed: charted as failed.
            let result = match (r.error, r.record) {
                (None, Some(record)) => Ok(record.clone()),
                (error, _) => Err(crate::Error::Remote {
                    message: error.unwrap_or_default().to_string(),
                    usage: false,
                }),
            };
            Some(crate::pipeline::compare::Outcome { preset, result })
        })
        .collect();
    crate::pipeline::compare::Comparison {
        source: project.to_string(),
        outcomes,
    }
}
