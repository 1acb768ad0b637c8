//! `ruchy-image`: compile a Ruchy or Rust program with an optimization preset and lay the
//! static binary into a small, reproducible, non-root OCI image.
//!
//! The pipeline is one module per stage: [`source`] (prepare) → [`compile`] →
//! [`elf`] (check) → [`oci`] (assemble) → [`publish`], run in order by [`build`], recorded by
//! [`metrics`]. [`compare`] runs that pipeline once per preset and puts the records side by
//! side (with a [`chart`]); [`budget`] holds size limits for CI.

#![deny(missing_docs)]

pub mod base;
pub mod budget;
pub mod build;
pub mod builder;
pub mod chart;
pub mod compare;
pub mod compile;
pub mod dockerfile;
pub mod elf;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod oci;
pub mod preset;
pub mod publish;
pub mod run;
pub mod source;

pub use error::{Error, Result};
