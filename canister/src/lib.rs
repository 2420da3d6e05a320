//! The Walsh canister: serves Walsh models from the Internet Computer.
//!
//! - [`service`]: the logic (uploads, the loaded model, generation with instruction budgets,
//!   sessions), plain Rust tested natively.
//! - [`storage`]: the stable memory layout (`docs/STORAGE.md`).
//! - [`api`]: the Candid types (`canister/walsh.did`).
//! - [`assets`]: the page (`frontend/dist`, embedded at build time) with certified responses.
//! - `endpoints` (wasm32 only): thin ic-cdk functions over the service.

pub mod api;
pub mod assets;
pub mod service;
pub mod storage;

#[cfg(target_arch = "wasm32")]
mod endpoints;
