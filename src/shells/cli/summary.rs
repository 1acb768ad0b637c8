//! What a command says when it is done: a build's one-screen summary (and a Lambda
//! function's, an index's), `doctor`'s report, `run`'s timings and the builder commands'
//! results. The command handlers print these; they format nothing themselves.

use std::fmt::Write as _;

use crate::core::metrics::{human_ms, human_size, BuildRecord};
use crate::core::preset::{StdSource, StdVariant};

/// The compile's part of the time line: its time and backend, or that there was none.
fn compile_time(ms: u64, builder: &str) -> String {
    match builder {
        "prebuilt" => "no compile (prebuilt)".into(),
        _ => format!("compile {} ({builder})", human_ms(ms)),
    }
}

/// `--verbose`'s account of the settings: the file they came from, and each setting not left
/// at its default with where it came from.
pub(crate) fn settings(
    file: Option<&crate::pipeline::plan::settings::Settings>,
    request: &crate::pipeline::plan::Request,
) -> String {
    let mut s = match file {
        Some(file) => format!(
            "ℹ settings from {} (the command line wins over it, it over the defaults):",
            file.file().display()
        ),
        None => format!(
            "ℹ settings: no {} or {} for {}",
            crate::pipeline::plan::settings::FILE_NAME,
            crate::pipeline::plan::settings::CARGO_TABLE,
            request.source.path.display()
        ),
    };
    let set: Vec<_> = request
        .settings
        .iter()
        .filter(|(_, from)| *from != "default")
        .collect();
    let width = set.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, from) in set {
        let _ = write!(s, "\n    {name:<width$}  {from}");
    }
    s
}

/// What `ruchy-image lambda` made, and the command that deploys it.
pub(crate) fn lambda(record: &crate::core::metrics::LambdaRecord) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "✓ Packaged {} for AWS Lambda ({} preset)",
        record.zip, record.optimization_level
    );
    let _ = writeln!(
        s,
        "  zip       {} ({} bytes), compressed from {} ({} bytes)",
        human_size(record.zip_size),
        record.zip_size,
        human_size(record.binary_size),
        record.binary_size
    );
    let runtime = match record.runtime.as_str() {
        "template" => "handle_request in ruchy-image's Runtime API loop",
        _ => "the program's own Runtime API client",
    };
    let _ = writeln!(
        s,
        "  bootstrap {}, {}, {}; {runtime}",
        record.linkage, record.libc, record.architecture
    );
    let compile = compile_time(record.compile_time_ms, &record.builder);
    let _ = writeln!(s, "  time      {compile}");
    if let Some(image) = &record.image {
        let _ = writeln!(
            s,
            "  image     {} ({} stored, entrypoint {})",
            image.reference,
            human_size(image.compressed_size),
            image.entrypoint.join(" ")
        );
        for out in &record.outputs {
            let _ = writeln!(s, "  output    {:<10} {}", out.kind, out.location);
        }
    }
    let _ = writeln!(
        s,
        "  deploy    aws lambda create-function --function-name NAME --runtime provided.al2023 --handler bootstrap --architectures {} --zip-file fileb://{} --role ROLE_ARN",
        record.architecture, record.zip
    );
    s
}

/// The one-screen summary printed at the end of a build.
pub(crate) fn build(record: &BuildRecord) -> String {
    let i = &record.image;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "✓ Built {} ({} preset)",
        i.reference, record.optimization_level
    );
    let std = match record.std.map(|std| (std.source, std.variant)) {
        None | Some((StdSource::Toolchain, StdVariant::Unwind)) => "",
        Some((StdSource::Rebuilt, StdVariant::Unwind)) => ", std rebuilt from source",
        Some((_, StdVariant::ImmediateAbort)) => ", std for panic=immediate-abort",
    };
    let _ = writeln!(
        s,
        "  binary    {} ({} bytes, {}, {}{std}, {})",
        human_size(record.binary_size),
        record.binary_size,
        record.linkage,
        match record.libc.as_str() {
            "unknown" => "libc unknown",
            libc => libc,
        },
        i.architecture
    );
    let _ = writeln!(
        s,
        "  image     {} stored, {} unpacked, {} layers",
        human_size(i.compressed_size),
        human_size(i.uncompressed_size),
        i.layer_count
    );
    let _ = writeln!(
        s,
        "            {} binary layer + {} overhead",
        human_size(i.binary_layer_size),
        human_size(i.overhead_size)
    );
    if let Some(base) = &i.base {
        let _ = writeln!(
            s,
            "  base      {} ({} in {} layers, {} added)",
            base.reference,
            human_size(base.size),
            base.layer_count,
            human_size(i.added_size)
        );
    }
    if let Some(embedded) = &record.dependencies_from {
        let _ = writeln!(
            s,
            "  deps      {} (from the file's {})",
            match embedded.dependencies.as_slice() {
                [] => "none".to_string(),
                names => names.join(", "),
            },
            embedded.form.describe()
        );
    }
    if let Some(listed) = &record.embedded_deps {
        let _ = writeln!(
            s,
            "  crates    {} listed in the binary ({} build-only; .dep-v0, {} B)",
            listed.crates, listed.build_only, listed.section_size
        );
    }
    let _ = writeln!(s, "  digest    {}", i.digest);
    let _ = writeln!(s, "  runs as   {} -> {}", i.user, i.entrypoint.join(" "));
    let compile = compile_time(record.compile_time_ms, &record.builder);
    let _ = writeln!(
        s,
        "  time      {compile}, assemble {}",
        human_ms(record.assemble_time_ms)
    );
    if let Some(server) = &record.server {
        let _ = writeln!(s, "{}", server_line(server));
    }
    for out in &record.outputs {
        let _ = writeln!(s, "{}", output_line(out, std::slice::from_ref(record)));
        if let Some(push) = &out.push {
            let _ = writeln!(s, "            {}", pushed(push));
        }
        if let Some(engine) = &out.engine {
            let _ = writeln!(
                s,
                "            engine {} sees {} unpacked, {} layers, user {}",
                engine.engine_version,
                human_size(engine.size),
                engine.layer_count,
                engine.user
            );
        }
    }
    match (record.over_budget.is_empty(), record.outputs.is_empty()) {
        (false, _) => {
            let _ = writeln!(s, "{NOT_PUBLISHED}");
        }
        (true, true) => {
            let _ = writeln!(
                s,
                "  output    none (add --oci-layout DIR or --output FILE.tar to keep the image)"
            );
        }
        (true, false) => {}
    }
    s
}

/// Where a `build --server` ran: `  server    build b… on http://… (worker w…)`.
fn server_line(server: &crate::core::metrics::ServerRun) -> String {
    let worker = server
        .worker
        .as_ref()
        .map_or(String::new(), |w| format!(" (worker {w})"));
    format!(
        "  server    build {} on {}{worker}",
        server.build_id, server.url
    )
}

/// Said instead of the outputs of a build that went over a size budget.
const NOT_PUBLISHED: &str =
    "  output    none: over the size budget, nothing was written, tagged or pushed";

/// An output's line; an SBOM or a provenance attached as a referrer says so, with what it
/// lists or who signed it (`records`: the image's, or an index's platforms').
fn output_line(out: &crate::core::metrics::Published, records: &[BuildRecord]) -> String {
    if out.kind != "referrer" {
        return format!("  output    {:<10} {}", out.kind, out.location);
    }
    if let Some(provenance) = records
        .iter()
        .filter_map(|r| r.provenance.as_ref())
        .find(|p| out.location.ends_with(&p.referrer))
    {
        let signed = provenance
            .signed_by
            .as_ref()
            .map_or("unsigned".to_string(), |k| {
                format!("signed by key {}", &k[..16.min(k.len())])
            });
        return format!(
            "  provenance attached as OCI referrer {} (SLSA v1, {signed})",
            out.location
        );
    }
    let sbom = records.iter().find_map(|r| r.sbom.as_ref());
    let format = match sbom.is_some_and(|s| s.format == "spdx") {
        true => "SPDX",
        false => "CycloneDX",
    };
    // An index's line stands for every platform's SBOM: their counts may differ.
    let listing = match (sbom, records.len()) {
        (Some(s), 1) => format!(", {} crates", s.components),
        _ => String::new(),
    };
    format!(
        "  sbom      attached as OCI referrer {} ({format}{listing})",
        out.location
    )
}

/// What a push sent and what the registry already had, e.g. `pushed 3 blobs (181 KB), 0
/// skipped` or `0 pushed, 3 skipped (already there)`.
fn pushed(push: &crate::core::metrics::PushStats) -> String {
    let (n, skipped) = (push.uploaded_blobs, push.skipped_blobs);
    let sent = match n {
        0 => "0 pushed".to_string(),
        1 => format!("pushed 1 blob ({})", human_size(push.uploaded_bytes)),
        n => format!("pushed {n} blobs ({})", human_size(push.uploaded_bytes)),
    };
    let there = if n == 0 && skipped > 0 {
        " (already there)"
    } else {
        ""
    };
    let mounted = match push.mounted_blobs {
        0 => String::new(),
        m => format!(", {m} mounted from another repository"),
    };
    format!("{sent}, {skipped} skipped{there}{mounted}")
}

/// A multi-platform build: each platform's summary (without outputs), then the index and
/// where it went.
pub(crate) fn index(record: &crate::core::metrics::IndexRecord) -> String {
    let mut s = String::new();
    for platform in &record.platforms {
        let mut one = platform.clone();
        one.outputs.clear();
        let text = build(&one);
        // The "output none" hint belongs to the index below.
        let text = text
            .lines()
            .filter(|l| !l.starts_with("  output    none"))
            .collect::<Vec<_>>()
            .join("\n");
        let _ = writeln!(s, "{text}");
    }
    let platforms: Vec<String> = record
        .platforms
        .iter()
        .map(|r| format!("linux/{}", r.image.architecture))
        .collect();
    let _ = writeln!(
        s,
        "✓ Image index {} over {}",
        record.reference,
        platforms.join(", ")
    );
    let _ = writeln!(s, "  digest    {}", record.digest);
    if let Some(server) = &record.server {
        let _ = writeln!(s, "{}", server_line(server));
    }
    for out in &record.outputs {
        let loaded = &record.loaded_platform;
        let note = match out.kind.as_str() {
            "engine" => format!(" ({loaded} only)"),
            "archive" => format!(" (docker load takes {loaded})"),
            _ => String::new(),
        };
        let _ = writeln!(s, "{}{note}", output_line(out, &record.platforms));
        if let Some(push) = &out.push {
            let _ = writeln!(s, "            {}", pushed(push));
        }
    }
    if record.platforms.iter().any(|p| !p.over_budget.is_empty()) {
        let _ = writeln!(s, "{NOT_PUBLISHED}");
    } else if record.outputs.is_empty() {
        let _ = writeln!(
            s,
            "  output    none (add --oci-layout DIR or --push REF to keep the index)"
        );
    }
    s
}

/// `doctor`'s report: a line per check, ✓ or ✗, and the fix under each ✗.
pub(crate) fn doctor(report: &crate::commands::doctor::Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in &report.checks {
        let mark = if check.ok { '✓' } else { '✗' };
        let optional = match (check.ok, check.required) {
            (false, false) => "(optional) ",
            _ => "",
        };
        out.push_str(&format!(
            "{mark} {:<width$}  {optional}{}\n",
            check.name, check.detail
        ));
        if let Some(fix) = check.fix.as_ref().filter(|_| !check.ok) {
            out.push_str(&format!("  {:<width$}  fix: {fix}\n", ""));
        }
    }
    if report.ready {
        out.push_str("ready: the default build (a builder container, a static musl binary, loaded into the engine) can run here\n");
    }
    out
}

/// `builder prune`: one line per cache volume (name, size, owner, what became of it), then
/// what it freed or, with `--dry-run`, would free.
pub(crate) fn prune(
    volumes: &[crate::adapters::cache_volumes::CacheVolume],
    dry_run: bool,
) -> String {
    if volumes.is_empty() {
        return "no cache volumes\n".into();
    }
    let mut s = String::new();
    for v in volumes {
        let what = if v.removed {
            "removed".to_string()
        } else if !v.used_by.is_empty() {
            format!("kept: in use by {}", v.used_by.join(", "))
        } else if let Some(error) = &v.error {
            format!("kept: {error}")
        } else {
            "kept (--dry-run)".to_string()
        };
        let size = v.size.map(human_size).unwrap_or_else(|| "?".into());
        let _ = writeln!(s, "{:<40} {:>10}  {:<40} {what}", v.name, size, v.owner);
    }
    let total = |removed: bool| -> u64 {
        volumes
            .iter()
            .filter(|v| v.removed == removed)
            .filter_map(|v| v.size)
            .sum()
    };
    match dry_run {
        true => {
            let _ = writeln!(
                s,
                "{} in {} volume(s)",
                human_size(total(false)),
                volumes.len()
            );
        }
        false => {
            let _ = writeln!(s, "freed {}", human_size(total(true)));
        }
    }
    s
}

/// `builder pull`: the image and its toolchain.
pub(crate) fn pulled(image: &crate::pipeline::compile::BuilderImage) -> String {
    format!(
        "✓ Pulled {} ({}, target {})\n",
        image.reference,
        image.toolchain.version(),
        image.target
    )
}

/// `builder import-host`: the image made (or found up to date) and the targets it builds.
pub(crate) fn imported(imported: &crate::commands::builder_images::Imported) -> String {
    let mut targets = match &imported.musl {
        Some(musl) => format!(
            "targets {musl} (default for static binaries) and {}",
            imported.target
        ),
        None => format!("target {}", imported.target),
    };
    for cross in &imported.cross_musl {
        targets.push_str(&format!(", cross {cross}"));
    }
    match imported.reused {
        true => format!(
            "✓ {} is up to date ({}, {targets})\n",
            imported.tag, imported.rustc
        ),
        false => format!(
            "✓ Imported {} ({}, {} MB, {targets})\n",
            imported.tag,
            imported.rustc,
            imported.size / 1_000_000,
        ),
    }
}

/// `run`: the cold start over the runs and the peak memory, with the limits they ran under.
pub(crate) fn run(
    report: &crate::pipeline::run_image::RunReport,
    memory_limit: &str,
    cpus: f64,
) -> String {
    let memory = report.peak_memory_bytes.map(human_size).unwrap_or_else(|| {
        "not reported by the engine (the container exited before its first stats sample)".into()
    });
    format!(
        "ℹ cold start: median {:.1} ms (min {:.1}, max {:.1}) over {} run(s); limits {memory_limit} memory, {cpus} CPU\nℹ peak memory: {memory}; exit code {}\n",
        report.cold_start_median_ms,
        report.cold_start_min_ms,
        report.cold_start_max_ms,
        report.iterations,
        report.exit_code
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_says_what_it_sent_and_what_the_registry_had() {
        let first = crate::core::metrics::PushStats {
            uploaded_blobs: 3,
            uploaded_bytes: 185_548,
            ..Default::default()
        };
        assert_eq!(pushed(&first), "pushed 3 blobs (181.2 KiB), 0 skipped");
        let again = crate::core::metrics::PushStats {
            skipped_blobs: 3,
            skipped_bytes: 185_548,
            ..Default::default()
        };
        assert_eq!(pushed(&again), "0 pushed, 3 skipped (already there)");
        let mounted = crate::core::metrics::PushStats {
            uploaded_blobs: 1,
            uploaded_bytes: 900,
            mounted_blobs: 2,
            ..Default::default()
        };
        assert_eq!(
            pushed(&mounted),
            "pushed 1 blob (900 B), 0 skipped, 2 mounted from another repository"
        );
    }

    #[test]
    fn prune_says_what_became_of_each_volume_and_what_it_freed() {
        let volume = |name: &str, size, removed, used_by: &[&str]| {
            crate::adapters::cache_volumes::CacheVolume {
                name: name.into(),
                owner: "shared".into(),
                size,
                used_by: used_by.iter().map(|u| u.to_string()).collect(),
                removed,
                error: None,
            }
        };
        let volumes = [
            volume("ruchy-image-cargo", Some(185_548), true, &[]),
            volume("ruchy-image-deps-0", None, false, &["builder (running)"]),
        ];
        let text = prune(&volumes, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ruchy-image-cargo") && lines[0].ends_with(" removed"));
        assert!(
            lines[1].contains(" ? ") && lines[1].ends_with("kept: in use by builder (running)")
        );
        assert_eq!(lines[2], "freed 181.2 KiB");
        assert_eq!(prune(&[], true), "no cache volumes\n");
        let dry = prune(&volumes[1..], true);
        assert!(dry.ends_with("0 B in 1 volume(s)\n"), "{dry}");
    }
}
