//! Attestations about an image, attached to it as OCI 1.1 referrers beside its SBOM: SLSA
//! provenance v1 in an in-toto Statement v1 ([`provenance`]), wrapped in a DSSE envelope
//! ([`dsse`]) that a `--sign-key` signs.

pub mod dsse;
pub mod provenance;

pub use dsse::{Envelope, Signer, Verifier, ENVELOPE_MEDIA_TYPE};
pub use provenance::{Provenance, Resolved};
