//! `ruchy-image`: compile a Ruchy or Rust program with an optimization preset and lay the
//! static binary into a small, reproducible, non-root OCI image.
//!
//! Start at [`plan`]: a plain-data [`plan::Request`] is resolved into a [`plan::Plan`] and run
//! as one build or a comparison of presets; progress leaves as [`event::Event`]s, results as
//! [`metrics::BuildRecord`]s and [`compare::Comparison`]s, which [`report`] renders.
//!
//! The pipeline is one module per stage: [`source`] (prepare) → [`compile`] → [`elf`] (check)
//! → [`oci`] (assemble) → [`publish`], run in order by [`build`]. [`budget`] holds size limits
//! for CI. With the `cli` feature, [`cli`] is the whole command line, ready to be mounted as a
//! subcommand of another clap program (`ruchy image build ...`).

#![deny(missing_docs)]

pub mod base;
pub mod budget;
pub mod build;
pub mod builder;
pub mod cache;
pub mod cleanup;
#[cfg(feature = "cli")]
pub mod cli;
pub mod compare;
pub mod compile;
pub mod dockerfile;
pub mod doctor;
pub mod elf;
pub mod engine;
pub mod error;
pub mod event;
pub mod frontmatter;
pub mod fsutil;
pub mod lambda;
pub mod metrics;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod preset;
pub mod publish;
pub mod report;
pub mod run;
pub mod sbom;
#[cfg(feature = "serve")]
pub mod serve;
pub mod source;
pub mod stdlib;
pub mod toolchain;

pub use error::{Error, Result};
