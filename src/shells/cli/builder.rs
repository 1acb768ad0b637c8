//! `ruchy-image builder ...`: builder images (pull, import-host) and their cache volumes.

use std::sync::{Arc, Mutex};

use super::failure::Failure;
use super::output::{print_stdout, to_json};
use super::render::{Journal, Mode, Terminal};
use super::{summary, ImportHostArgs, PruneArgs, PullArgs};
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
    print!("{}", summary::prune(&volumes, args.dry_run));
    Ok(())
}

/// `ruchy-image builder pull`: the image pulled and what its toolchain is.
pub(super) async fn builder_pull(
    args: PullArgs,
    journal: &Arc<Mutex<Journal>>,
) -> Result<(), Failure> {
    let engine = Engine::connect().await?;
    let cache_dir = args
        .cache_dir
        .unwrap_or_else(crate::pipeline::build::default_cache_dir);
    let image = args.image.as_deref();
    let pulled = Terminal::around(journal, Mode::Build, false, false, |events| async move {
        crate::commands::builder_images::pull(&engine, image, &cache_dir, &events).await
    })
    .await?;
    print!("{}", summary::pulled(&pulled));
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
    let (tag, rustc) = (tag.as_ref().map(|t| t.full.as_str()), args.rustc.as_deref());
    let imported = Terminal::around(journal, Mode::Build, false, false, |events| async move {
        crate::commands::builder_images::import_host(&engine, tag, rustc, &scratch, &events).await
    })
    .await?;
    match args.json {
        true => print_stdout(
            "the import result",
            &to_json("the import result", &imported)?,
        )?,
        false => print!("{}", summary::imported(&imported)),
    }
    Ok(())
}
