//! Side commands beside the build: builder images (`builder import-host`, `builder
//! prune`), the Dockerfile generator, `doctor` and `dev`'s running side. They use the pipeline; it does not use them.

pub mod builder_images;
pub mod dev;
pub mod dockerfile;
pub mod doctor;
