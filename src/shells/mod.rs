//! The ways in: the command line and the HTTP service with its dashboard. They turn
//! arguments and requests into a [`crate::pipeline::plan::Request`] and render what comes back.

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "serve")]
pub mod serve;
