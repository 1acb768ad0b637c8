//! `ruchy-image`: compile a Ruchy or Rust program with an optimization preset and lay the
//! static binary into a small, reproducible, non-root OCI image.
//!
//! The tree is in layers, each importing only those before it (tests/architecture.rs checks):
//!
//! - [`core`]: what a build is: presets and flags, platforms, budgets, records, events, errors.
//! - [`adapters`]: the machine: the container engine, the Rust toolchain and std builds,
//!   cache volumes, files and cleanup.
//! - [`pipeline`]: a [`plan::Request`] resolved into a [`plan::Plan`] and run through the
//!   stages: [`pipeline::source`] (prepare) → [`pipeline::compile`] → [`pipeline::elf`]
//!   (check) → [`pipeline::oci`] (assemble) → [`pipeline::publish`], in order by
//!   [`pipeline::build`]; one build or a [`compare`] of presets, rendered by [`report`].
//! - [`commands`]: builder images, the Dockerfile generator, `doctor`.
//! - [`shells`]: the command line and, with the `serve` feature, the HTTP service.
//!
//! Progress leaves as [`event::Event`]s, results as [`metrics::BuildRecord`]s. With the `cli`
//! feature, [`cli`] is the whole command line, ready to be mounted as a subcommand of another
//! clap program (`ruchy image build ...`). The modules a library user starts from are
//! re-exported here under the names they had before the tree was layered.

#![deny(missing_docs)]

pub mod adapters;
pub mod commands;
pub mod core;
pub mod pipeline;
pub mod shells;

pub use crate::core::error::{Error, Result};
pub use crate::core::{budget, event, metrics, preset};
pub use pipeline::{compare, plan, report};
#[cfg(feature = "cli")]
pub use shells::cli;
