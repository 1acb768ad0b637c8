//! `ruchy-image builder ...`: builder images (pull, import-host) and their cache volumes.

use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::{print_stdout, to_json};
use super::render::{Journal, Mode, Terminal};
use super::{ImportHostArgs, PruneArgs, PullArgs};
use crate::adapters::engine::Engine;

/// `ruchy-image builder prune`: the cache volumes, removed unless --dry-run.
pub(super) async fn prune(args: PruneArgs) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let volumes =
        crate::adapters::cache_volumes::prune(&engine, &args.prefix, !args.dry_run).await?;
    if args.json {
        return Ok(print_stdout(
            "the cache volumes",
            &to_json("the cache volumes", &volumes)?,
        )?);
    }
    if volumes.is_empty() {
        println!("no cache volumes");
        return Ok(());
    }
    let size = |v: &crate::adapters::cache_volumes::CacheVolume| {
        v.size.map(crate::core::metrics::human_size)
    };
    for v in &volumes {
        let what = if v.removed {
            "removed".to_string()
        } else if !v.used_by.is_empty() {
            format!("kept: in use by {}", v.used_by.join(", "))
        } else if let Some(error) = &v.error {
            format!("kept: {error}")
        } else {
            "kept (--dry-run)".to_string()
        };
        println!(
            "{:<40} {:>10}  {:<40} {what}",
            v.name,
            size(v).unwrap_or_else(|| "?".into()),
            v.owner
        );
    }
    let total = |removed: bool| -> u64 {
        volumes
            .iter()
            .filter(|v| v.removed == removed)
            .filter_map(|v| v.size)
            .sum()
    };
    if args.dry_run {
        println!(
            "{} in {} volume(s)",
            crate::core::metrics::human_size(total(false)),
            volumes.len()
        );
    } else {
        println!("freed {}", crate::core::metrics::human_size(total(true)));
    }
    Ok(())
}

/// `ruchy-image builder pull`: the image pulled and what its toolchain is.
pub(super) async fn builder_pull(
    args: PullArgs,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let cache_dir = crate::pipeline::build::default_cache_dir();
    let (terminal, events) = Terminal::new(journal, Mode::Build, false, false);
    let pulled =
        crate::commands::builder_images::pull(&engine, args.image.as_deref(), &cache_dir, &events)
            .await;
    terminal.lock().expect("terminal").finish();
    let image = pulled?;
    println!(
        "✓ Pulled {} ({}, target {})",
        image.reference,
        image.toolchain.version(),
        image.target
    );
    Ok(())
}

pub(super) async fn import_host(
    args: ImportHostArgs,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let tag = args
        .tag
        .as_deref()
        .map(str::parse::<crate::pipeline::oci::ImageRef>)
        .transpose()?;
    let scratch = args
        .cache_dir
        .unwrap_or_else(crate::pipeline::build::default_cache_dir);
    let (terminal, events) = Terminal::new(journal, Mode::Build, false, false);
    let imported = crate::commands::builder_images::import_host(
        &engine,
        tag.as_ref().map(|t| t.full.as_str()),
        args.rustc.as_deref(),
        &scratch,
        &events,
    )
    .await;
    terminal.lock().expect("terminal").finish();
    let imported = imported?;
    if args.json {
        print_stdout(
            "the import result",
            &to_json("the import result", &imported)?,
        )?;
    } else {
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
        if imported.reused {
            println!(
                "✓ {} is up to date ({}, {targets})",
                imported.tag, imported.rustc
            );
        } else {
            println!(
                "✓ Imported {} ({}, {} MB, {targets})",
                imported.tag,
                imported.rustc,
                imported.size / 1_000_000,
            );
        }
    }
    Ok(())
}
