//! What a build is: the presets and their flags, platforms, size budgets, the records
//! a build leaves, the events it sends and the one error type. Imports nothing above it.

pub mod budget;
pub mod error;
pub mod event;
pub mod metrics;
pub mod platform;
pub mod preset;
pub mod text;
