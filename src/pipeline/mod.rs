//! A build, stage by stage: a [`plan::Request`] resolved into a [`plan::Plan`], then
//! [`source`] (prepare) → [`compile`] → [`elf`] (check) → [`oci`] (assemble, on a [`base`]) →
//! [`publish`], run in order by [`build`]; [`sbom`] and [`attest`]ations, [`lambda`] packaging, [`run_image`]
//! (cold start) and [`compare`] with its [`report`]s. Imports `core` and `adapters`.

pub mod attest;
pub mod auditable;
pub mod base;
pub mod build;
pub mod compare;
pub mod compile;
pub mod elf;
pub mod frontmatter;
pub mod lambda;
pub mod oci;
pub mod plan;
pub mod publish;
pub mod report;
pub mod run_image;
pub mod sbom;
pub mod source;
pub mod verify;
pub mod watch;
