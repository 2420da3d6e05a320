//! The native side of Walsh: reading PyTorch checkpoints and converting them to `.walsh`.
//! The `walsh` binary (src/main.rs) is a thin command line over these modules and the engine.

pub mod checkpoint;
pub mod compress;
pub mod ic;
pub mod meta_pkl;
pub mod pickle;
pub mod python_json;
pub mod random_model;
